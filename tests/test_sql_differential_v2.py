"""Differential tests of the expression-level nodes `Round` (intermediate rounding), `Calendar`
(the evaluated month's values) and `DateDiff` (completed years and months, days): random programs
built from them and from the base generators of tests/test_sql_differential.py, on random panels
(birth dates and enrolment dates anywhere, 29 February included), evaluated by the interpreter
and by DuckDB — and PostgreSQL when installed: identical to the cent, or the same error.
CAPDSL_HYPOTHESIS_EXAMPLES raises the example count."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from capdsl.errors import EvalError
from capdsl.evaluation import tree as t
from capdsl.evaluation.interpret import evaluate as interpret
from capdsl.evaluation.periods import parse_period
from sql_support import Panel, line, pg_evaluate, program
from test_sql_differential import EXAMPLES, PERIODS, aggs, assert_engines_agree, combinators, const, member_conds, \
    member_leaf, outcome, panels, practice_conds, practice_leaf, small

D = Decimal
V2_PERIODS = PERIODS + ["2012", "2012-Q1", "2011-Q4"]

INT_PARTS = ("month", "quarter", "half", "year")
DATE_PARTS = ("month_start", "month_end", "quarter_start", "year_start")
UNITS = st.sampled_from(("year", "month", "day"))
MODES = st.sampled_from(("half_up", "half_even", "down", "up"))
QUANTA = st.sampled_from((D("0.01"), D("0.05"), D("1"), D("10"), D("0.25")))
BORN = t.Col("member", "birth_date", "date")
OPTIONAL_DATES = (t.Col("member", "enrolled_from", "date"), t.Col("member", "enrolled_to", "date"))

calendar_number = st.sampled_from(INT_PARTS).map(t.Calendar)
calendar_date = st.sampled_from(DATE_PARTS).map(t.Calendar)
# dates near the panel's, and the leap days around them
literal_date = st.one_of(st.dates(min_value=date(1990, 1, 1), max_value=date(2013, 12, 31)),
                         st.sampled_from([date(2012, 2, 29), date(2008, 2, 29), date(2011, 2, 28)])).map(
    lambda d: t.Const(d, "date"))
practice_date = st.one_of(calendar_date, literal_date)
member_date = st.one_of(practice_date, st.just(BORN))


def date_diff(dates):
    return st.builds(lambda unit, a, b: t.DateDiff(unit, a, b), UNITS, dates, dates)


# an optional date read only where a `Present` test decides (as the checker's E0313 demands)
optional_diff = st.builds(
    lambda unit, field, other, backwards, otherwise: t.Case(
        ((t.Present(field), t.DateDiff(unit, other, field) if backwards else t.DateDiff(unit, field, other)),),
        const(otherwise)),
    UNITS, st.sampled_from(OPTIONAL_DATES), member_date, st.booleans(), small)


def rounded(children):
    return st.builds(t.Round, children, QUANTA, MODES)


calendar_conds = st.one_of(
    st.builds(lambda part, op, v: t.Cmp(op, t.Calendar(part), const(D(v))), st.sampled_from(INT_PARTS),
              st.sampled_from(["=", "!=", "<", ">="]), st.integers(1, 12)),
    st.builds(lambda a, op, b: t.Cmp(op, a, b), calendar_date, st.sampled_from(["<", "<=", "=", ">"]), literal_date))
member_v2_conds = st.one_of(member_conds, calendar_conds,
                            st.builds(lambda d, v: t.Cmp(">=", d, const(D(v))), date_diff(member_date),
                                      st.integers(-40, 40)))
practice_v2_conds = st.one_of(practice_conds, calendar_conds)

member_v2_leaf = st.one_of(member_leaf, calendar_number, date_diff(member_date), optional_diff)
member_v2_expr = st.recursive(member_v2_leaf, lambda ch: st.one_of(combinators(ch, member_v2_conds), rounded(ch)),
                              max_leaves=5)
practice_v2_leaf = st.one_of(practice_leaf, calendar_number, date_diff(practice_date))
v2_aggs = st.one_of(
    aggs,
    st.builds(lambda e, w: t.Agg("sum", "members", e, w), member_v2_expr, st.none() | member_v2_conds),
    st.builds(lambda w: t.Agg("count", "members", None, w), member_v2_conds))


def decimal(node):
    """A line's amount is a Decimal in the interpreter: an integer value (a calendar number) × 1.0."""
    return t.Arith("*", node, const(D("1.0")))


line_v2_amount = st.recursive(st.one_of(v2_aggs, practice_v2_leaf),
                              lambda ch: st.one_of(combinators(ch, practice_v2_conds), rounded(ch)), max_leaves=4)


@st.composite
def v2_programs(draw):
    lines = [line(f"l{i}", decimal(draw(line_v2_amount)), applies=draw(st.none() | practice_v2_conds))
             for i in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):  # a pool reads December's calendar values
        inner = draw(st.recursive(v2_aggs, lambda ch: st.one_of(combinators(ch, practice_v2_conds), rounded(ch)),
                                  max_leaves=3))
        amount = t.Arith("+", decimal(t.Arith("*", const(draw(small)), t.YearSum(inner))),
                         decimal(draw(st.one_of(calendar_number, date_diff(practice_date)))))
        lines.append(line("pool", amount, applies=draw(st.none() | calendar_conds), kind="pool",
                          installments=(t.Installment(6, D("0.5"), draw(st.none() | calendar_conds)),
                                        t.Installment(12, None))))
    return program(lines, exposure=draw(st.sampled_from(["first_day", "any_day", "pro_rata"])),
                   age_rule=draw(st.sampled_from(["month_start", "month_end", "year_start"])),
                   mode=draw(st.sampled_from(["half_up", "half_even", "down", "up"])),
                   quantum=draw(st.sampled_from(["0.01", "1", "0.05"])),
                   params={"k": ("decimal", D(3), "", "")}, measures={"m": ("decimal", None, ""),
                                                                      "ok": ("bool", None, "")})


@st.composite
def leap_panels(draw):
    """The base panels, with members born on 29 February and enrolled on month ends."""
    p = draw(panels())
    pids = [x["practice_id"] for x in p.practices]
    for i in range(draw(st.integers(0, 3))):
        born = draw(st.sampled_from([date(2000, 2, 29), date(1996, 2, 29), date(2008, 2, 29), date(1980, 1, 31)]))
        start = draw(st.none() | st.sampled_from([date(2010, 8, 31), date(2011, 1, 31), date(2012, 2, 29)]))
        p.member(f"L{i}", draw(st.sampled_from(pids)), born, start, None, score=draw(small), flag=draw(st.booleans()))
    return p


def leap_day_case() -> tuple:
    """A fixed example: the age on the quarter's first day of a member born on 29 February."""
    p = Panel(member_attrs={"score": "decimal", "flag": "bool"},
              practice_attrs={"hours": "decimal", "rate": "decimal", "akord": "bool"},
              measure_kinds={"m": "decimal", "ok": "bool"})
    p.practice("P0", hours=D(1), rate=D(1), akord=False)
    p.member("M0", "P0", date(2000, 2, 29), date(2011, 1, 31), None, score=D(1), flag=True)
    amount = decimal(t.Agg("sum", "members", t.Arith("+", t.DateDiff("year", BORN, t.Calendar("month_end")),
                                                     t.DateDiff("month", t.Col("member", "birth_date", "date"),
                                                                t.Calendar("quarter_start"))), None))
    return program([line("l0", amount)], params={"k": ("decimal", D(3), "", "")},
                   measures={"m": ("decimal", None, ""), "ok": ("bool", None, "")}), p


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(v2_programs(), leap_panels(), st.sampled_from(V2_PERIODS), small)
@example(*leap_day_case(), "2012-02", D(1))
@example(*leap_day_case(), "2011-02", D(1))
def test_round_calendar_and_date_differences_duckdb_equals_the_interpreter(prog, panel, period, k):
    assert_engines_agree(prog, panel, period, {"k": k})


@pytest.mark.postgres
def test_round_calendar_and_date_differences_postgres_equals_the_interpreter(pg):
    @settings(max_examples=max(8, EXAMPLES // 6), deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(v2_programs(), leap_panels(), st.sampled_from(V2_PERIODS), small)
    def check(prog, panel, period, k):
        per = parse_period(period)
        want = outcome(lambda: interpret(prog, panel.rows(), per.months, {"k": k}))
        pg.load(panel)
        got = outcome(lambda: pg_evaluate(pg, prog, per, {"k": k}))
        if want[0] == "error" and got[0] == "error":
            assert got[1] in {"E0801", "E0803"}
        else:
            assert got == want

    check()


def test_the_fixed_leap_day_example_by_hand():
    """29 Feb 2000 → 29 Feb 2012: 12 years; → 1 Jan 2012: 11 years 10 months = 142 months."""
    prog, panel = leap_day_case()
    per = parse_period("2012-02")
    try:
        result = interpret(prog, panel.rows(), per.months, {"k": D(1)})
    except EvalError as exc:  # pragma: no cover
        raise AssertionError(exc)
    assert [r[3] for r in result.rows] == [D("154.00")]
