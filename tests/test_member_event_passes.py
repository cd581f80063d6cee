"""The member sums split by the member-event totals they read (`members.member_passes`): the sums
that read none on the member-months alone, a sum a threshold on a total gates (`gates.gate`) on
the members whose total passes it only (an inner join), the rest on every member-month joined to
the totals. The gate analysis on its own, then the interpreter against DuckDB (and PostgreSQL,
Spark when installed) to the cent on members with no events, at the threshold, above it, below it
and with a negative total, for thresholds it recognises and thresholds it must not (zero with
`>=`, negative, a parameter)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from capdsl.errors import Source
from capdsl.evaluation import tree as t
from capdsl.evaluation.interpret import evaluate as interpret
from capdsl.evaluation.periods import parse_period
from capdsl.pipeline import Run, compile_source, evaluate as run_pipeline
from capdsl.sql import evaluate as sql_evaluate
from capdsl.sql.analysis import analyse
from capdsl.sql.compile import compile_query
from capdsl.sql.gates import Gate, gate
from capdsl.sql.members import member_passes
from sql_support import Panel, c, line, mcol, pg_evaluate, program, sum_members

D = Decimal
T = t.MemberEvents("sum", "year", t.Col("event", "points", "decimal"))
Q = t.MemberEvents("count", "quarter", None)
P = t.Param("attachment", "decimal")


def maxz(*args):
    return t.MinMax("max", (c(0), *args))


def minus(a, b):
    return t.Arith("-", a, b)


def times(a, b):
    return t.Arith("*", a, b)


def cmp(op, a, b):
    return t.Cmp(op, a, b)


def count_where(cond):
    return t.Agg("count", "members", None, cond)


def gated(*conds, total=T):
    return Gate(total, frozenset((op, D(str(v))) for op, v in conds))


# ─────────────────────────── the gate analysis ───────────────────────────

@pytest.mark.parametrize("agg, want", [
    # the stop-loss: 80 % of the excess over the attachment point, and its count
    (sum_members(times(c("0.8"), maxz(minus(T, c(150000))))), gated((">", 150000))),
    (sum_members(times(maxz(minus(T, c(150000))), c("0.8"))), gated((">", 150000))),
    (sum_members(times(P, maxz(minus(T, c(10))))), gated((">", 10))),  # a parameter factor: k × 0 = 0
    (sum_members(t.MinMax("max", (minus(T, c(10)), c(0)))), gated((">", 10))),
    (sum_members(maxz(minus(T, c(0)))), gated((">", 0))),  # zero: T ≤ 0 gives max(0, T) = 0
    (sum_members(maxz(minus(T, c(10)), minus(T, c(20)))), gated((">", 10), (">", 20))),
    (count_where(cmp(">", T, c(150000))), gated((">", 150000))),
    (count_where(cmp(">=", T, c(1))), gated((">=", 1))),
    (count_where(cmp("<", c(5), T)), gated((">", 5))),  # written the other way round
    (count_where(cmp("<=", c(5), T)), gated((">=", 5))),
    (count_where(cmp(">", T, c(0))), gated((">", 0))),
    # any term where the condition is false: it is not evaluated there
    (sum_members(t.Arith("/", mcol("x"), mcol("y")), cmp(">", T, c(7))), gated((">", 7))),
    (sum_members(mcol("x"), t.And((cmp(">", mcol("x"), c(1)), cmp(">", T, c(7))))), gated((">", 7))),
    (sum_members(mcol("x"), t.And((cmp(">", T, c(7)), cmp(">", t.Arith("/", c(1), mcol("x")), c(1))))),
     gated((">", 7))),
    (count_where(t.Or((cmp(">", T, c(7)), cmp(">=", T, c(9))))), gated((">", 7), (">=", 9))),
    # sums, negation, absolute value, rounding and `if … else 0` of gated terms on one total
    (sum_members(t.Arith("+", maxz(minus(T, c(1))), times(c(2), maxz(minus(T, c(3)))))), gated((">", 1), (">", 3))),
    (sum_members(t.Neg(maxz(minus(T, c(1))))), gated((">", 1))),
    (sum_members(t.Abs(maxz(minus(T, c(1))))), gated((">", 1))),
    (sum_members(t.Round(maxz(minus(T, c(1))), D("0.01"), "up")), gated((">", 1))),
    (sum_members(t.Case(((cmp(">", T, c(4)), mcol("x")),), c(0))), gated((">", 4))),
    # a non-raising `where` beside a gated term
    (sum_members(maxz(minus(T, c(3))), cmp(">", mcol("x"), c(1))), gated((">", 3))),
])
def test_a_gate_is_found_for_the_forms_that_vanish(agg, want):
    assert gate(agg) == want


@pytest.mark.parametrize("agg", [
    sum_members(maxz(minus(T, c(-100)))),  # a negative threshold: a member with no events has max(0, 100)
    sum_members(maxz(minus(T, P))),  # a parameter threshold: not known when the query is compiled
    sum_members(maxz(t.Arith("+", T, c(100)))),
    sum_members(maxz(T)),
    sum_members(t.MinMax("min", (c(0), minus(T, c(10))))),
    sum_members(t.MinMax("max", (c(1), minus(T, c(10))))),  # max(1, …) is never 0
    sum_members(times(mcol("x"), maxz(minus(T, c(10))))),  # a member column: not a constant factor
    sum_members(t.Arith("/", maxz(minus(T, c(10))), c(2))),
    sum_members(t.Arith("+", maxz(minus(T, c(1))), c(1))),
    sum_members(t.Arith("+", maxz(minus(T, c(1))), maxz(minus(Q, c(1))))),  # two totals
    sum_members(t.Case(((cmp(">", T, c(4)), mcol("x")),), c(1))),
    sum_members(T),
    count_where(cmp(">=", T, c(0))),  # T = 0 passes
    count_where(cmp(">", T, c(-1))),
    count_where(cmp(">", T, P)),
    count_where(cmp("<", T, c(10))),
    count_where(cmp("=", T, c(10))),
    count_where(t.Not(cmp("<=", T, c(10)))),
    count_where(t.Or((cmp(">", T, c(7)), cmp(">", mcol("x"), c(1))))),
    count_where(t.Or((cmp(">", T, c(7)), cmp(">", Q, c(1))))),
    # an item before the gate that may fail: the interpreter evaluates it for every member
    count_where(t.And((cmp(">", t.Arith("/", c(1), mcol("x")), c(1)), cmp(">", T, c(7))))),
    # a `where` that may fail beside a gated term
    sum_members(maxz(minus(T, c(3))), cmp(">", t.Arith("/", c(1), mcol("x")), c(1))),
    count_where(None),
    t.Agg("sum", "events", maxz(minus(T, c(1)))),
])
def test_no_gate_where_a_term_may_not_vanish_or_a_failure_would_be_skipped(agg):
    assert gate(agg) is None


def test_the_member_sums_are_split_by_what_they_read():
    cap = line("cap", sum_members(c(10)))
    stop = line("stop", sum_members(times(c("0.8"), maxz(minus(T, c(100))))), basis=count_where(cmp(">", T, c(100))))
    over = line("over", count_where(cmp(">", T, c(50))))
    every = line("every", sum_members(T))
    prog = program([cap, stop, over, every])
    a = analyse(prog, parse_period("2011-03"))
    aggs = {agg: name for _, name, agg in a.plan.factors.values()}
    passes = member_passes(a, aggs)
    assert [(p.suffix, p.totals, len(p.aggs)) for p in passes] == [("", (), 1), ("_me1", ("_me1",), 3),
                                                                   ("_ev", ("_me1",), 1)]
    assert passes[1].gate == gated((">", 50), (">", 100))
    sql = compile_query(prog, parse_period("2011-03")).sql()
    assert "INNER JOIN mev_me1" in sql and "LEFT JOIN mev_me1" in sql


# ─────────────────────────── interpreter against the engines ───────────────────────────

MEMBERS = """member_id,practice_id,birth_date,enrolled_from,enrolled_to
M1,P1,1970-01-01,2010-01-01,
M2,P1,1980-05-05,2011-02-15,
M3,P1,1990-03-03,2010-01-01,
M4,P1,1926-02-20,2010-01-01,
M5,P2,1975-07-07,2010-01-01,
M6,P2,1985-08-08,2011-06-16,
M7,P3,1995-09-09,2010-01-01,
"""
# the year's totals: M1 1,600 (above 1,000), M2 100, M3 exactly 1,000, M4 none, M5 −300 (a credit),
# M6 1,000.01, M7 none; an event with no member; P3 has no member with events
EVENTS = """practice_id,member_id,date,code,amount
P1,M1,2011-03-01,X,700
P1,M1,2011-11-01,X,900
P1,M2,2011-06-01,X,100
P1,M3,2011-02-01,X,400
P1,M3,2011-12-20,X,600
P2,M5,2011-05-01,X,200
P2,M5,2011-07-01,X,-500
P2,M6,2011-12-01,X,1000.01
P1,,2011-06-01,X,5000
"""

CONTRACT = """
contract "Stop-loss":
    currency EUR
    exposure {exposure}
end

inputs:
    event amount: money
    param attachment: EUR = 1000 EUR
end

define annual = sum of event.amount over member events during year
define quarterly = sum of event.amount over member events during quarter

line capitation "Capitation" = sum of 10 EUR over members

line stop_loss "Stop-loss":
    amount sum of 80% of max(0 EUR, annual - {threshold}) over members
    basis count of members where annual > {threshold} "members over"
end

line at_or_over "At or over":
    amount sum of 5 EUR over members where annual >= {threshold}
    basis count of members where {threshold} <= annual "members at or over"
end

line excess "Excess of the quarter":
    amount sum of max(0 EUR, quarterly - {threshold}, annual - {threshold}) * 2 over members
end

line claims "Claims of members over":
    amount sum of annual over members where annual > {threshold}
end

pool reserve "Reserve":
    amount 10% of sum of stop_loss over year
    paid in December
end
"""

# threshold as written, whether the stop-loss sums are gated (an inner join to the totals)
THRESHOLDS = [("1000 EUR", True), ("999.99 EUR", True), ("0 EUR", True), ("-500 EUR", False),
              ("attachment", False)]


def files(tmp_path) -> dict:
    (tmp_path / "members.csv").write_text(MEMBERS, encoding="utf-8")
    (tmp_path / "events.csv").write_text(EVENTS, encoding="utf-8")
    return {"members": str(tmp_path / "members.csv"), "events": str(tmp_path / "events.csv")}


def amounts(text: str, tmp_path, period: str, engine: str, assignments=()) -> dict:
    program_ = compile_source(Source(text, "t.cap"))[1]
    result, _ = run_pipeline(program_, Run(files=files(tmp_path), period=period, engine=engine,
                                           assignments=tuple(assignments), today=date(2012, 6, 1)))
    out = {}
    for st in result.statements:
        for x in st.lines:
            out[(st.practice_id, x.id)] = (x.amount, x.basis)
    return out


@pytest.mark.parametrize("exposure", ["first_day", "pro_rata"])
@pytest.mark.parametrize("threshold, inner", THRESHOLDS)
@pytest.mark.parametrize("period", ["2011-12", "2011-Q4", "2011"])
def test_a_thresholded_sum_of_members_totals_is_the_interpreters(threshold, inner, period, exposure, tmp_path):
    text = CONTRACT.format(threshold=threshold, exposure=exposure)
    assignments = [()] if threshold != "attachment" else [(), ("attachment=-500",), ("attachment=0",)]
    for given in assignments:
        want = amounts(text, tmp_path, period, "python", given)
        assert amounts(text, tmp_path, period, "duckdb", given) == want
        assert any(amount for amount, _ in want.values())
    program_ = compile_source(Source(text, "t.cap"))[1]
    sql = compile_query(program_, parse_period(period)).sql()
    assert ("INNER JOIN mev_me1" in sql) == inner


def test_the_december_figures_by_hand(tmp_path):
    """M1 1,600 and M6 1,000.01 pass 1,000; M3, exactly at it, does not (`>`), but counts for `>=`;
    M4 and M7, with no events, and M5's credit never count."""
    got = amounts(CONTRACT.format(threshold="1000 EUR", exposure="first_day"), tmp_path, "2011-12", "duckdb")
    assert got[("P1", "stop_loss")] == (D("480.00"), D(1))
    assert got[("P2", "stop_loss")] == (D("0.01"), D(1))  # 80 % × 0.01 = 0.008
    assert got[("P3", "stop_loss")] == (D("0.00"), D(0))
    assert got[("P1", "at_or_over")] == (D("10.00"), D(2))  # M1 and M3
    assert got[("P2", "claims")][0] == D("1000.01")
    negative = amounts(CONTRACT.format(threshold="-500 EUR", exposure="first_day"), tmp_path, "2011-12", "duckdb")
    assert negative[("P3", "stop_loss")] == (D("400.00"), D(1))  # M7, no events: 80 % × (0 + 500)
    assert negative[("P2", "stop_loss")][1] == D(2)  # M5's −300 is above −500


def tree_case():
    """The stop-loss as a tree, with the panel of `EVENTS` in `points` (for the SQL-only engines)."""
    total = t.MemberEvents("sum", "year", t.Col("event", "points", "decimal"))
    prog = program([
        line("cap", sum_members(c(10))),
        line("stop", sum_members(times(c("0.8"), maxz(minus(total, c(1000))))), basis=count_where(cmp(">", total, c(1000)))),
        line("low", sum_members(maxz(minus(total, c(-500))))),
        line("claims", sum_members(total, cmp(">=", total, c(1000)))),
    ])
    p = Panel()
    for row in MEMBERS.splitlines()[1:]:
        mid, pid, born, start, end = row.split(",")
        p.member(mid, pid, date.fromisoformat(born), date.fromisoformat(start) if start else None,
                 date.fromisoformat(end) if end else None)
    for pid in ("P1", "P2", "P3"):
        p.practice(pid)
    for row in EVENTS.splitlines()[1:]:
        pid, mid, day, code, amount = row.split(",")
        p.event(pid, date.fromisoformat(day), code, points=amount, member_id=mid or None)
    return prog, p


@pytest.mark.parametrize("period", ["2011-12", "2011"])
def test_the_tree_on_duckdb(period):
    prog, panel = tree_case()
    per = parse_period(period)
    got = sql_evaluate(prog, panel.duckdb(), per, {})
    assert got.rows == interpret(prog, panel.rows(), per.months, {}).rows


@pytest.mark.parametrize("period", ["2011-12", "2011"])
def test_the_tree_on_postgres(pg, period):
    prog, panel = tree_case()
    per = parse_period(period)
    pg.load(panel)
    assert pg_evaluate(pg, prog, per).rows == interpret(prog, panel.rows(), per.months, {}).rows


@pytest.mark.spark
def test_the_tree_on_spark(spark):
    prog, panel = tree_case()
    per = parse_period("2011-12")
    got = sql_evaluate(prog, panel.duckdb(), per, {}, engine="spark", spark=spark)
    assert got.rows == interpret(prog, panel.rows(), per.months, {}).rows


def test_a_failure_inside_a_members_events_names_the_event_on_both_engines(tmp_path):
    """A schedule with no entry for a member's event's code stops the run on both engines with the
    same message: the event (its row and code) at its own practice, not the member who reads it."""
    from capdsl.errors import CapError

    (tmp_path / "m.cap").write_text(
        'contract "M":\n    currency USD\nend\nschedule fee by event.code:\n    "A": 10 USD\nend\n'
        "define annual = sum of fee over member events during year\n"
        'line l "L" = sum of annual over members\n', encoding="utf-8")
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1980-01-01\nM2,P1,1980-01-01\nM3,P2,1980-01-01\n",
                                          encoding="utf-8")
    (tmp_path / "events.csv").write_text("practice_id,member_id,date,code,points,quantity\n"
                                         "P1,M1,2011-03-02,A,0,1\nP2,M2,2011-03-05,Z,0,1\n", encoding="utf-8")
    files = {"members": str(tmp_path / "members.csv"), "events": str(tmp_path / "events.csv")}
    messages = []
    for engine in ("python", "duckdb"):
        with pytest.raises(CapError) as caught:
            run_pipeline(compile_source(Source((tmp_path / "m.cap").read_text(encoding="utf-8"), "m.cap"))[1],
                         Run(files=files, period="2011-03", engine=engine))
        assert caught.value.code == "E0806"
        messages.append(caught.value.diagnostics[0].message)
    assert messages[0] == messages[1]
    assert messages[0].endswith("event at row 3 (code 'Z') in practice P2")
