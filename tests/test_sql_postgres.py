"""The postgres dialect on a real PostgreSQL (a throwaway cluster on a loopback
port, started here): the same results as DuckDB and the interpreter, every
rounding mode on its boundaries, exact division, and the same errors."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from capdsl.evaluation import tree as t
from capdsl.errors import EvalError
from capdsl.evaluation.interpret import evaluate as interpret, fix, round_to
from capdsl.evaluation.periods import parse_period
from capdsl.sql import evaluate
from sql_support import AGE, Panel, ar, c, line, pg_evaluate, program, sum_members
from test_sql_duckdb import DIVISIONS, MODES, ROUNDING_CASES, czech_like, division_program, member_rules_panel, \
    one_practice, rounding_program

pytestmark = pytest.mark.postgres
D = Decimal


@pytest.mark.parametrize("period", ["2011-03", "2011-Q2", "2011"])
def test_czech_like_contract_matches_duckdb_and_the_interpreter(pg, period):
    prog, panel = czech_like()
    pg.load(panel)
    per = parse_period(period)
    params = {"nat": D(250)}
    got = pg_evaluate(pg, prog, per, params)
    want = interpret(prog, panel.rows(), per.months, params)
    duck = evaluate(prog, panel.duckdb(), per, params)
    for field in ("rows", "pools", "installments", "practices"):
        assert getattr(got, field) == getattr(want, field) == getattr(duck, field)


@pytest.mark.parametrize("exposure", ["first_day", "pro_rata"])
def test_exposure_and_age_rules(pg, exposure):
    panel = member_rules_panel()
    pg.load(panel)
    from sql_support import count_members
    prog = program([line("n", count_members(), basis=count_members()), line("age", sum_members(AGE))],
                   exposure=exposure, age_rule="month_end", quantum="0.000000000001")
    per = parse_period("2012-Q1")
    got = pg_evaluate(pg, prog, per)
    assert got.rows == interpret(prog, panel.rows(), per.months, {}).rows


def test_rounding_and_division_to_the_last_digit(pg):
    pg.load(one_practice())
    per = parse_period("2011-03")
    for quantum in ("0.01", "1", "0.05"):
        values = [D(v) for v, q in ROUNDING_CASES if q == quantum]
        for mode in MODES:
            got = pg_evaluate(pg, rounding_program(mode, quantum), per)
            assert [r[3] for r in got.rows] == [round_to(v, D(quantum), mode) for v in values], (quantum, mode)
    got = pg_evaluate(pg, division_program(), per)
    assert [r[3] for r in got.rows] == [fix(D(a) / D(b)) for a, b in DIVISIONS]


def test_errors_are_the_interpreters(pg):
    band = t.Case(((t.Cmp("<", AGE, c(100)), c(1)),), t.Fail("E0801", "no band of 'idx' covers the value"), "idx")
    panel = Panel()
    panel.member("M1", "P1", date(1900, 1, 1))
    pg.load(panel)
    per = parse_period("2011-03")
    with pytest.raises(EvalError) as info:
        pg_evaluate(pg, program([line("cap", sum_members(band))]), per)
    assert info.value.code == "E0801"
    assert info.value.diagnostics[0].message == \
        "no band of 'idx' covers the value: member at row 2 (id hidden, aged 111) in practice P1"
    with pytest.raises(EvalError) as info:
        pg_evaluate(pg, program([line("x", ar("/", c(1), ar("-", c(1), c(1))))]), per)
    assert info.value.code == "E0803"


@pytest.mark.parametrize("period", ["2011-Q1", "2011-12", "2011"])
def test_payment_terms_of_language_v2_match_the_interpreter(pg, period):
    from test_payment_terms import v2_program_and_panel

    prog, panel = v2_program_and_panel()
    pg.load(panel)
    per = parse_period(period)
    got = pg_evaluate(pg, prog, per)
    want = interpret(prog, panel.rows(), per.months, {})
    assert (got.rows, got.pools, got.installments) == (want.rows, want.pools, want.installments)
