"""The reference interpreter: worked examples, exposure and age rules,
rounding, pools and installments, and the properties every statement has."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capdsl.errors import EvalError, Source
from capdsl.evaluation.interpret import Rows, evaluate, round_to
from capdsl.evaluation.months import completed_years, exposure_weight
from capdsl.pipeline import compile_source
from capdsl.evaluation.statements import build

D = Decimal


def program_of(text: str):
    return compile_source(Source(text, "t.cap"))[1]


def run(text: str, rows: Rows, months, params=None, period="p"):
    program = program_of(text)
    monthly = evaluate(program, rows, tuple(months), params or {})
    return build(program, monthly, period, tuple(months), "python")


def member(mid, pid, born, **attrs):
    return {"member_id": mid, "practice_id": pid, "birth_date": born, "enrolled_from": attrs.pop("start", None),
            "enrolled_to": attrs.pop("end", None), "_row": 1, "_label": mid, **attrs}


MARCH = (date(2011, 3, 1),)
YEAR = tuple(date(2011, m, 1) for m in range(1, 13))

PMPM = """
contract "US PMPM":
    currency USD
end
line capitation "Capitation" = sum of 100 USD over members
"""


def test_us_pmpm_worked_example():
    rows = Rows([], [member(f"M{i}", "P1", date(1970, 1, 1)) for i in range(200)])
    result = run(PMPM, rows, MARCH)
    assert result.statements[0].lines[0].amount == D("20000.00")
    assert result.total == D("20000.00")


SK_PREVENTION = """
contract "SK prevention":
    currency EUR
end
schedule fee by event.code:
    "PREV_ADULT": 350 points * 0.028215 EUR per point
end
line prevention "Prevention" = sum of fee over events where event.code in fee
"""


def test_slovak_prevention_rounds_half_up():
    rows = Rows([], [member("M1", "P1", date(1970, 1, 1))],
                [{"practice_id": "P1", "date": date(2011, 3, 5), "code": "PREV_ADULT", "quantity": D(1), "_row": i}
                 for i in range(50)])
    result = run(SK_PREVENTION, rows, MARCH)
    line = result.statements[0].lines[0]
    assert line.amount == D("493.76")  # 50 × 350 × 0.028215 = 493.7625
    assert line.basis == D(50) and line.basis_unit == "events"


BANDS = """
contract "Bands":
    currency CZK
    age as of {rule}
end
bands idx by member.age:
    0 to 64: 1
    65 and over: 2
end
line cap "Capitation" = sum of 10 CZK * idx over members
"""


@pytest.mark.parametrize("rule, expected", [("month_start", "10.00"), ("month_end", "20.00"),
                                            ("year_start", "10.00")])
def test_age_rules(rule, expected):
    # turns 65 on 2011-03-15
    rows = Rows([], [member("M1", "P1", date(1946, 3, 15))])
    result = run(BANDS.format(rule=rule), rows, MARCH)
    assert result.total == D(expected)


def test_completed_years_birthday_edges():
    assert completed_years(date(2000, 3, 2), date(2011, 3, 1)) == 10
    assert completed_years(date(2000, 3, 1), date(2011, 3, 1)) == 11
    assert completed_years(date(2000, 2, 29), date(2011, 2, 28)) == 10
    assert completed_years(date(2000, 2, 29), date(2011, 3, 1)) == 11


@pytest.mark.parametrize("rule, start, end, expected", [
    ("first_day", date(2011, 3, 1), None, 1),
    ("first_day", date(2011, 3, 2), None, 0),
    ("any_day", date(2011, 3, 31), None, 1),
    ("any_day", None, date(2011, 2, 28), 0),
    ("pro_rata", date(2011, 3, 17), None, D(15) / D(31)),
    ("pro_rata", None, date(2011, 3, 10), D(10) / D(31)),
])
def test_exposure_rules(rule, start, end, expected):
    w = exposure_weight(rule, date(2011, 3, 1), date(1970, 1, 1), start, end)
    assert abs(D(w) - D(expected)) < D("1e-11")


def test_unborn_member_does_not_count():
    assert exposure_weight("first_day", date(2011, 3, 1), date(2011, 5, 1), None, None) == 0


def test_member_in_no_band_is_an_error_naming_the_table():
    """The checker rejects such a table (E0401); the interpreter still guards at run time,
    so a program lowered without the coverage check cannot pay a member silently."""
    from types import SimpleNamespace

    from capdsl.evaluation.lower import lower
    from capdsl.language.syntax import parse

    text = BANDS.format(rule="month_start").replace("65 and over: 2", "65 to 99: 2")
    source = Source(text, "t.cap")
    program = lower(SimpleNamespace(contract=parse(source), source=source, key_types={}))
    with pytest.raises(EvalError) as info:
        evaluate(program, Rows([], [member("M1", "P1", date(1900, 1, 1))]), MARCH, {})
    assert info.value.code == "E0801"
    assert "idx" in info.value.diagnostics[0].message


@pytest.mark.parametrize("value, mode, expected", [
    ("2.345", "half_up", "2.35"), ("-2.345", "half_up", "-2.35"), ("2.345", "half_even", "2.34"),
    ("2.355", "half_even", "2.36"), ("2.349", "down", "2.34"), ("-2.349", "down", "-2.34"),
    ("2.341", "up", "2.35"), ("-2.341", "up", "-2.35"),
])
def test_rounding_modes(value, mode, expected):
    assert round_to(D(value), D("0.01"), mode) == D(expected)


def test_rounding_to_whole_and_five_cents():
    assert round_to(D("12.5"), D("1"), "half_up") == D("13")
    assert round_to(D("1.025"), D("0.05"), "half_up") == D("1.05")


POOL = """
contract "Pool":
    currency CZK
end
inputs:
    measure quality_met: bool
end
line cap "Capitation" = sum of 49 CZK over members
pool bonus "Bonus":
    amount 15% of sum of cap over year
    paid 10% in Q1, 10% in Q2, 10% in Q3, rest in Q4 when measure.quality_met = true
end
"""


def test_pool_installments_add_up_to_the_pool():
    rows = Rows([], [member(f"M{i}", "P1", date(1970, 1, 1)) for i in range(7)],
                measures=[("P1", "2011", "quality_met", True)])
    result = run(POOL, rows, YEAR)
    pool = result.statements[0].lines[1]
    assert pool.pool_amount == D("617.40")  # 15 % × 12 × 7 × 49
    assert sum(i.amount for i in pool.installments) == pool.pool_amount
    assert [str(i.amount) for i in pool.installments] == ["61.74", "61.74", "61.74", "432.18"]


def test_pool_installment_withheld_when_condition_fails():
    rows = Rows([], [member("M1", "P1", date(1970, 1, 1))], measures=[("P1", "2011", "quality_met", False)])
    result = run(POOL, rows, (date(2011, 12, 1),))
    pool = result.statements[0].lines[1]
    assert pool.installments[0].paid is False and pool.amount == D("0.00")
    assert "withheld" in pool.note


def test_pool_only_due_in_quarter_end_months():
    rows = Rows([], [member("M1", "P1", date(1970, 1, 1))], measures=[("P1", "2011", "quality_met", True)])
    result = run(POOL, rows, (date(2011, 2, 1),))
    assert result.statements[0].lines[1].amount == D("0.00")


def test_split_without_rest_gives_remainder_to_last():
    text = POOL.replace("10% in Q1, 10% in Q2, 10% in Q3, rest in Q4 when measure.quality_met = true",
                        "33.33% in Q1, 33.33% in Q2, 33.34% in Q3")
    rows = Rows([], [member("M1", "P1", date(1970, 1, 1))])
    result = run(text, rows, YEAR)
    pool = result.statements[0].lines[1]
    assert sum(i.amount for i in pool.installments) == pool.pool_amount


# ─────────────────────────────── properties ───────────────────────────────

PROPERTY_CONTRACT = """
contract "Property":
    currency CZK
    exposure {exposure}
end
inputs:
    member diabetes: bool = false
    practice weekly_hours: hours
end
bands idx by member.age:
    0 to 4: 3.91
    5 to 64: 1.05
    65 and over: 2.4
end
tier base:
    50 CZK when practice.weekly_hours >= 30 hours
    47 CZK otherwise
end
modifier risk combine highest:
    1.5 when member.diabetes
    1
end
line cap "Capitation" = sum of base * idx * risk over members
line bonus "Bonus" = 5% of cap
line fee "Fees" = sum of event.quantity * 1.08 CZK over events
pool pool "Pool":
    amount 10% of sum of cap over year
    paid 25% in Q1, 25% in Q2, 25% in Q3, rest in Q4
end
"""

members_strategy = st.lists(
    st.tuples(st.sampled_from(["P1", "P2", "P3"]), st.dates(date(1920, 1, 1), date(2011, 6, 30)), st.booleans(),
              st.one_of(st.none(), st.dates(date(2010, 1, 1), date(2011, 12, 31)))),
    min_size=1, max_size=40)


def _rows(spec, events=()):
    members = [member(f"M{i}", pid, born, diabetes=diab, start=start) for i, (pid, born, diab, start) in
               enumerate(spec)]
    practices = [{"practice_id": p, "weekly_hours": D(h)} for p, h in (("P1", 32), ("P2", 25), ("P3", 30))]
    return Rows(practices, members, list(events))


@settings(max_examples=40, deadline=None)
@given(members_strategy, st.sampled_from(["first_day", "any_day", "pro_rata"]), st.randoms())
def test_statement_properties(spec, exposure, rnd):
    program = program_of(PROPERTY_CONTRACT.format(exposure=exposure))
    rows = _rows(spec)
    months = YEAR[:6]
    result = build(program, evaluate(program, rows, months, {}), "h1", months, "python")
    # the total of a statement is the sum of its lines; the grand total the sum of statements
    for s in result.statements:
        assert s.total == sum(line.amount for line in s.lines)
        for line in s.lines:
            if line.kind == "pool" and line.pool_amount is not None:
                assert sum(i.amount for i in line.installments) <= line.pool_amount
    assert result.total == sum(s.total for s in result.statements)
    # permuting input rows changes nothing
    shuffled = Rows(list(rows.practices), list(rows.members), list(rows.events))
    rnd.shuffle(shuffled.members)
    rnd.shuffle(shuffled.practices)
    again = build(program, evaluate(program, shuffled, months, {}), "h1", months, "python")
    assert again == result
    # evaluating each practice separately gives the same statements
    for s in result.statements:
        part = Rows([p for p in rows.practices if p["practice_id"] == s.practice_id],
                    [m for m in rows.members if m["practice_id"] == s.practice_id])
        alone = build(program, evaluate(program, part, months, {}), "h1", months, "python")
        assert alone.statements[0] == s


@settings(max_examples=30, deadline=None)
@given(st.decimals(min_value=D("0.01"), max_value=D("10000000"), places=2),
       st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=4))
def test_installments_always_sum_to_the_pool(pool_amount, shares):
    from capdsl.evaluation import tree as t
    from capdsl.evaluation.interpret import split_installments

    total = sum(shares)
    parts = [D(s) / D(total) for s in shares]
    insts = tuple(t.Installment(3 * (q + 1), p.quantize(D("0.0001"))) for q, p in enumerate(parts[:-1])) + \
        (t.Installment(3 * (len(parts)), None),)
    line = t.LineDef("p", "p", "pool", t.Const(D(0), "decimal"), installments=insts)
    got = list(split_installments(line, pool_amount, D("0.01"), "half_up", lambda node: True))
    assert sum(a for _, a, _ in got) == pool_amount


def test_interpreter_throughput_is_not_silly():
    """Not a timing test: a guard that memoisation still collapses members to groups."""
    from capdsl.evaluation.interpret import Tracer

    program = program_of(PROPERTY_CONTRACT.format(exposure="first_day"))
    rows = _rows([("P1", date(1950 + i % 60, 1 + i % 12, 1), i % 2 == 0, None) for i in range(3000)])
    tracer = Tracer()
    evaluate(program, rows, MARCH, {}, tracer=tracer)
    groups = [g for gs in tracer.groups.values() for g in gs]
    assert len(groups) < 400  # 3,000 members collapse to (age, diabetes) groups


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_newborn_counted_under_any_day_is_age_zero(engine, tmp_path):
    """Regression: a member born on 2 January and exposed in January (any_day) was aged -1
    and fell in no band. Every backend treats such a member as age 0."""
    from capdsl.pipeline import Run, evaluate as run_pipeline

    text = BANDS.format(rule="month_start").replace("    age as of month_start\n",
                                                    "    age as of month_start\n    exposure any_day\n")
    contract = tmp_path / "c.cap"
    contract.write_text(text, encoding="utf-8")
    members = tmp_path / "m.csv"
    members.write_text("member_id,practice_id,birth_date\nM1,P1,2011-01-02\n", encoding="utf-8")
    result, _ = run_pipeline(program_of(text), Run(files={"members": str(members)}, period="2011-01",
                                                    engine=engine, today=date(2011, 2, 1)))
    assert str(result.total) == "10.00"


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_line_that_does_not_apply_never_reads_its_missing_measure(engine, tmp_path):
    """Regression: the interpreter computed every aggregate up front, so a line guarded by
    `applies when measure.share is present` crashed (TypeError) when the measure was missing."""
    from capdsl.pipeline import Run, evaluate as run_pipeline

    text = ('contract "M":\n    currency CZK\nend\ninputs:\n    measure share: number\nend\n'
            'line bonus "Bonus":\n    amount sum of 10 CZK * measure.share over members\n'
            '    applies when measure.share is present\nend\n')
    members = tmp_path / "m.csv"
    members.write_text("member_id,practice_id,birth_date\nM1,P1,1970-01-01\n", encoding="utf-8")
    result, _ = run_pipeline(program_of(text), Run(files={"members": str(members)}, period="2011-03",
                                                    engine=engine, today=date(2011, 4, 1)))
    line = result.statements[0].lines[0]
    assert (str(line.amount), line.applied) == ("0.00", False)


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_months_read_only_for_pools_do_not_evaluate_other_lines(engine, tmp_path):
    """With a pool due (Q1 in March) every month of the year is read — but only for what the
    pool's year sum needs. A member in no band of a line's table in January fails a January
    statement, and no longer fails the March one (both engines agree; t.year_closure)."""
    from types import SimpleNamespace

    from capdsl.errors import CapError
    from capdsl.evaluation.lower import lower
    from capdsl.pipeline import Run, evaluate as run_pipeline
    from capdsl.language.syntax import parse

    text = ('contract "Gap":\n    currency CZK\nend\n'
            'bands idx by member.age:\n    0 to 64: 1\n    66 and over: 2\nend\n'
            'line cap "Capitation" = sum of 10 CZK * idx over members\n'
            'pool bonus "Bonus":\n    amount 1 CZK * sum of count of members over year\n'
            '    paid 50% in Q1, rest in Q4\nend\n')
    source = Source(text, "gap.cap")
    program = lower(SimpleNamespace(contract=parse(source), source=source, key_types={}))  # the checker would reject the gap
    members = tmp_path / "m.csv"
    members.write_text("member_id,practice_id,birth_date\nM1,P1,1945-01-15\nM2,P1,1980-06-01\n", encoding="utf-8")
    run = lambda period: run_pipeline(program, Run(files={"members": str(members)}, period=period,  # noqa: E731
                                                   engine=engine, today=date(2012, 1, 1)))[0]
    march = run("2011-03")
    amounts = {line.id: str(line.amount) for line in march.statements[0].lines}
    assert amounts["cap"] == "30.00" and amounts["bonus"] == "12.00"  # 24 member-months, half in Q1
    with pytest.raises(CapError) as info:
        run("2011-01")
    assert info.value.code == "E0801"


@settings(max_examples=500, deadline=None)
@given(value=st.decimals(min_value=-10**12, max_value=10**12, places=14, allow_nan=False, allow_infinity=False),
       quantum=st.sampled_from(["1", "0.1", "0.01", "0.001", "0.05", "0.25", "5", "10", "1.00"]),
       mode=st.sampled_from(["half_up", "half_even", "down", "up"]))
def test_rounder_is_round_to(value, quantum, mode):
    """The statement builder's fast rounding (one quantize for a power-of-ten quantum) is round_to."""
    from capdsl.evaluation.interpret import rounder, round_to

    q = Decimal(quantum)
    fast, slow = rounder(q, mode)(value), round_to(value, q, mode)
    assert fast == slow and str(fast) == str(slow)
