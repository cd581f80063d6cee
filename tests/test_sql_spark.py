"""The same compiled SQL on Spark local[2] (few, batched queries: a Spark
query costs seconds). Skips with the reason when PySpark or Java is missing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from capdsl import tree as t
from capdsl.errors import EvalError
from capdsl.interpret import evaluate as interpret, fix, round_to
from capdsl.periods import parse_period
from capdsl.sql import evaluate
from capdsl.sql.spark_engine import available
from sql_support import AGE, Panel, ar, c, line, mcol, pcol, pool_dividing_by_a_monthly_line, program, sum_members
from test_sql_duckdb import DIVISIONS, MODES, ROUNDING_CASES, czech_like

pytestmark = pytest.mark.spark
D = Decimal


@pytest.fixture(scope="module")
def spark():
    why = available()
    if why:
        pytest.skip(why)
    from capdsl.sql.spark_engine import spark_session

    session = spark_session("local[2]", app="capdsl-tests")
    yield session
    session.stop()


@pytest.mark.parametrize("period", ["2011-03", "2011"])
def test_czech_like_contract_matches_the_interpreter(spark, period):
    prog, panel = czech_like()
    per = parse_period(period)
    params = {"nat": D(250)}
    got = evaluate(prog, panel.duckdb(), per, params, engine="spark", spark=spark)
    want = interpret(prog, panel.rows(), per.months, params)
    assert (got.rows, got.pools, got.installments, got.practices) == \
        (want.rows, want.pools, want.installments, want.practices)


def test_a_pool_is_evaluated_on_december_only(spark):
    """January's line is 0 and the pool divides by it: Spark's CASE must not evaluate the guarded
    division on the other months' rows (where the SQL computes pools too)."""
    prog, panel = pool_dividing_by_a_monthly_line(None)
    per = parse_period("2011")
    got = evaluate(prog, panel.duckdb(), per, {}, engine="spark", spark=spark)
    assert got.pools == interpret(prog, panel.rows(), per.months, {}).pools
    assert got.pools[0][3] == D("0.70")


def test_rounding_modes_and_division_in_one_query(spark):
    """One practice per value; one line per (quantum, mode) sums the one member's rounded value."""
    values = sorted({D(v) for v, _ in ROUNDING_CASES})
    # panel decimals hold 10 places (DECIMAL(38, 10)), so only such divisions can come from data
    divisions = [(a, b) for a, b in DIVISIONS if max(-D(a).as_tuple().exponent, -D(b).as_tuple().exponent) <= 10]
    panel = Panel(member_attrs={"x": "decimal"}, practice_attrs={"a": "decimal", "b": "decimal"})
    for i, v in enumerate(values):
        a, b = divisions[i % len(divisions)]
        panel.practice(f"P{i:02d}", a=D(a), b=D(b))
        panel.member(f"M{i}", f"P{i:02d}", date(1970, 1, 1), x=v)
    groups = [(q, m) for q in ("0.01", "1", "0.05") for m in MODES]
    lines = [line(f"r{j}", sum_members(t.Round(mcol("x"), D(q), m))) for j, (q, m) in enumerate(groups)]
    lines.append(line("div", ar("/", pcol("a"), pcol("b"))))
    prog = program(lines, quantum="0.000000000001")
    got = evaluate(prog, panel.duckdb(), parse_period("2011-03"), {}, engine="spark", spark=spark)
    amounts = {(r[0], r[2]): r[3] for r in got.rows}
    for i, v in enumerate(values):
        for j, (q, m) in enumerate(groups):
            assert amounts[(f"P{i:02d}", f"r{j}")] == round_to(v, D(q), m), (v, q, m)
        a, b = divisions[i % len(divisions)]
        assert amounts[(f"P{i:02d}", "div")] == fix(D(a) / D(b))


def test_member_in_no_band_is_the_interpreters_error(spark):
    band = t.Case(((t.Cmp("<", AGE, c(100)), c(1)),), t.Fail("E0801", "no band of 'idx' covers the value"), "idx")
    panel = Panel()
    panel.member("M1", "P1", date(1900, 1, 1))
    with pytest.raises(EvalError) as info:
        evaluate(program([line("cap", sum_members(band))]), panel.duckdb(), parse_period("2011-03"), {},
                 engine="spark", spark=spark)
    assert info.value.diagnostics[0].message == \
        "no band of 'idx' covers the value: member at row 2 (id hidden, aged 111) in practice P1"


def test_random_programs_match_the_interpreter(spark):
    """A few of the differential examples (DuckDB runs hundreds): Spark must agree too."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from test_sql_differential import PERIODS, outcome, panels, programs, small

    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(programs(), panels(), st.sampled_from(PERIODS), small)
    def check(prog, panel, period, k):
        per = parse_period(period)
        want = outcome(lambda: interpret(prog, panel.rows(), per.months, {"k": k}))
        got = outcome(lambda: evaluate(prog, panel.duckdb(), per, {"k": k}, engine="spark", spark=spark))
        if want[0] == "ok":
            assert got == want

    check()
