"""The SQL backend on DuckDB: hand-computed amounts, rounding and division to
the last digit, exposure and age rules, pools, errors, and every dialect's
SQL compiling. The interpreter is the oracle wherever it applies."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlglot

from capdsl.evaluation import tree as t
from capdsl.errors import EvalError
from capdsl.evaluation.interpret import evaluate as interpret, fix, round_to
from capdsl.evaluation.periods import parse_period
from capdsl.sql import DIALECTS, compile_program, evaluate
from capdsl.sql.duckdb_engine import evaluate_files
from sql_support import (AGE, MARCH, Panel, ar, c, count_members, line, pcol, pool_dividing_by_a_monthly_line,
                         program, sum_members)

D = Decimal


def both(prog, panel: Panel, period: str, params=None):
    """(interpreter result, DuckDB result) for one period."""
    per = parse_period(period)
    return (interpret(prog, panel.rows(), per.months, params or {}),
            evaluate(prog, panel.duckdb(), per, params or {}))


def same(prog, panel, period, params=None):
    a, b = both(prog, panel, period, params)
    assert b.rows == a.rows
    assert b.pools == a.pools
    assert b.installments == a.installments
    assert b.practices == a.practices
    return b


def one_practice(n=1, born=date(1970, 1, 1)):
    p = Panel()
    for i in range(n):
        p.member(f"M{i}", "P1", born)
    return p


def test_us_pmpm_worked_example():
    prog = program([line("capitation", sum_members(c(100)), basis=count_members())])
    result = same(prog, one_practice(200), "2011-03")
    assert result.rows == [("P1", MARCH, "capitation", D("20000.00"), True, D(200))]


# The boundaries every mode must get right: exact halves either side of zero,
# just below/above a half, and quanta of 0.01, 0.05 and 1.
ROUNDING_CASES = [(v, q) for q in ("0.01",) for v in
                  ("2.345", "-2.345", "2.355", "-2.355", "2.3449999999", "-2.3450000001", "0.005", "-0.005",
                   "2.340", "-2.341", "0")] + \
                 [(v, "1") for v in ("12.5", "-12.5", "13.5", "-13.5", "0.5", "-0.5", "12.4999", "-12.50001")] + \
                 [(v, "0.05") for v in ("1.025", "-1.025", "1.075", "-1.075", "1.0249", "1.05")]
MODES = ("half_up", "half_even", "down", "up")


def rounding_program(mode, quantum):
    """One line per case, amount = the constant, so the SQL rounds each value once."""
    lines = [line(f"v{i}", c(v)) for i, (v, q) in enumerate(ROUNDING_CASES) if q == quantum]
    return program(lines, mode=mode, quantum=quantum)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("quantum", ["0.01", "1", "0.05"])
def test_rounding_modes_on_every_boundary(mode, quantum):
    prog = rounding_program(mode, quantum)
    result = evaluate(prog, one_practice().duckdb(), parse_period("2011-03"), {})
    values = [D(v) for v, q in ROUNDING_CASES if q == quantum]
    assert [r[3] for r in result.rows] == [round_to(v, D(quantum), mode) for v in values]


DIVISIONS = [("1", "3"), ("-1", "3"), ("2", "3"), ("-2", "-3"), ("1", "-7"), ("0.000000000005", "10"),
             ("-0.000000000005", "10"), ("0.000000000015", "10"), ("123456789.123456789", "0.01"),
             ("10", "4"), ("5", "0.000000000002"), ("-999999999999.999999999999", "7"), ("7", "8")]


def division_program():
    return program([line(f"d{i}", ar("/", c(a), c(b))) for i, (a, b) in enumerate(DIVISIONS)],
                   quantum="0.000000000001")


def test_division_is_exact_half_away_to_twelve_places():
    result = evaluate(division_program(), one_practice().duckdb(), parse_period("2011-03"), {})
    assert [r[3] for r in result.rows] == [fix(D(a) / D(b)) for a, b in DIVISIONS]


def test_multiplication_rounds_half_away_to_twelve_places():
    cases = [("0.0000005", "0.0000005"), ("-0.0000005", "0.0000015"), ("1.000001", "1.0000005"), ("-3.5", "2")]
    prog = program([line(f"m{i}", ar("*", t.Param(f"a{i}", "decimal"), c(b))) for i, (_, b) in enumerate(cases)],
                   quantum="0.000000000001")
    params = {f"a{i}": D(a) for i, (a, _) in enumerate(cases)}
    result = evaluate(prog, one_practice().duckdb(), parse_period("2011-03"), params)
    assert [r[3] for r in result.rows] == [fix(D(a) * D(b)) for a, b in cases]


def member_rules_panel():
    p = Panel()
    dates = [None, date(2011, 3, 1), date(2011, 3, 2), date(2011, 3, 17), date(2011, 3, 31), date(2011, 4, 1),
             date(2011, 2, 28)]
    born = [date(1970, 3, 1), date(1970, 3, 2), date(1970, 3, 31), date(2000, 2, 29), date(2011, 3, 10),
            date(1946, 3, 15), date(2011, 4, 2), date(1999, 1, 1)]
    i = 0
    for b in born:
        for s in dates:
            for e in dates:
                p.member(f"M{i}", f"P{i % 3}", b, s, e)
                i += 1
    return p


@pytest.mark.parametrize("exposure", ["first_day", "any_day", "pro_rata"])
@pytest.mark.parametrize("age_rule", ["month_start", "month_end", "year_start"])
def test_exposure_and_age_rules_match_the_interpreter(exposure, age_rule):
    lines = [line("n", count_members(), basis=count_members()), line("age", sum_members(AGE)),
             line("old", count_members(t.Cmp(">=", AGE, c(41))))]
    prog = program(lines, exposure=exposure, age_rule=age_rule, quantum="0.000000000001")
    same(prog, member_rules_panel(), "2011-Q1")
    same(prog, member_rules_panel(), "2012-02")  # a leap February: the 29 February birthday


@pytest.mark.parametrize("exposure", ["first_day", "any_day", "pro_rata"])
@pytest.mark.parametrize("age_rule", ["month_start", "month_end", "year_start"])
def test_member_months_are_the_member_month_rules(exposure, age_rule):
    """`member_months` runs the query's member-month CTE alone: every member-month counted, with the
    age and weight `capdsl.evaluation.months` gives it (a leap February included)."""
    from capdsl.evaluation.months import exposure_weight, member_age
    from capdsl.sql.members import member_months

    panel = member_rules_panel()
    prog = program([line("n", count_members())], exposure=exposure, age_rule=age_rule)
    for period in ("2011-Q1", "2012-02"):
        want = sorted((m["practice_id"], m["member_id"], month, member_age(age_rule, month, m["birth_date"]), w)
                      for month in parse_period(period).months for m in panel.members
                      if (w := exposure_weight(exposure, month, m["birth_date"], m["enrolled_from"],
                                               m["enrolled_to"])) != 0)
        got = member_months(prog, panel.duckdb(), period)
        assert got == want


def test_feb_29_birthday_turns_older_on_march_1():
    p = Panel()
    p.member("M1", "P1", date(2000, 2, 29))
    prog = program([line("age", sum_members(AGE))], age_rule="month_end")
    result = same(prog, p, "2011-Q1")
    assert [r[3] for r in result.rows] == [D("10.00"), D("10.00"), D("11.00")]


def czech_like():
    """Age bands × an office-hour tier, fee schedule, a measure-guarded line, a line ref, an annual pool."""
    bands = [(0, 4, "3.91"), (5, 64, "1.05"), (65, 200, "2.40")]
    age_index = t.Case(tuple((t.And((t.Cmp(">=", AGE, c(lo)), t.Cmp("<=", AGE, c(hi)))), c(v)) for lo, hi, v in bands),
                       t.Fail("E0801", "no band of 'age_index' covers the value"), "age_index")
    base_rate = t.Case(((t.Cmp(">=", pcol("weekly_hours"), c(30)), c(50)),), c(47), "base_rate")
    defs = {"age_index": t.Definition("age_index", "member", age_index, "decimal"),
            "base_rate": t.Definition("base_rate", "practice", base_rate, "decimal")}
    drug = t.Measure("drug", "decimal")
    quality = t.Measure("quality", "bool", "year")
    lines = [
        line("capitation", sum_members(ar("*", t.Ref("base_rate"), t.Ref("age_index"))), basis=count_members()),
        line("ffs", t.Agg("sum", "events", ar("*", t.Col("event", "points", "decimal"), c("1.08"))),
             basis=t.Agg("count", "events", None)),
        line("drug", ar("*", c("-0.25"), t.MinMax("max", (c(0), ar("-", drug, ar("*", c("1.2"), t.Param(
            "nat", "decimal")))))), applies=t.Present(drug)),
        line("third", ar("/", t.LineRef("capitation"), c(3))),
        line("bonus", ar("*", c("0.15"), t.YearSum(ar("*", t.Ref("base_rate"), count_members()))),
             applies=pcol("akord", "bool"), kind="pool",
             installments=(t.Installment(3, D("0.1")), t.Installment(6, D("0.1")), t.Installment(9, D("0.1")),
                           t.Installment(12, None, t.Cmp("=", quality, c(True, "bool"))))),
    ]
    prog = program(lines, defs, params={"nat": ("decimal", D(250), "", "")},
                   measures={"drug": ("decimal", None, ""), "quality": ("bool", None, "")})
    p = Panel(practice_attrs={"weekly_hours": "decimal", "akord": "bool"},
              measure_kinds={"drug": "decimal", "quality": "bool"})
    p.practice("P1", weekly_hours=D(31), akord=True)
    p.practice("P2", weekly_hours=D(20), akord=True)
    p.practice("P3", weekly_hours=D(40), akord=False)  # no members at all
    for i in range(60):
        p.member(f"M{i}", "P1" if i % 3 else "P2", date(1930 + i, (i % 12) + 1, 1 + i % 28),
                 start=date(2011, (i % 12) + 1, 1) if i % 5 == 0 else None,
                 end=date(2011, 8, 31) if i % 7 == 0 else None)
    p.event("P1", date(2011, 3, 5), "X", points="12.5", quantity=2)
    p.event("P1", date(2011, 3, 31), "Y", points="0.333")
    p.event("P2", date(2011, 6, 1), "X", points="7")
    p.measures += [("P1", "2011-Q1", "drug", D("400.5")), ("P1", "2011", "drug", D("100")),
                   ("P1", "2011-03", "drug", D("333.25")), ("P1", "2011", "quality", True),
                   ("P2", "2011", "quality", False)]
    return prog, p


@pytest.mark.parametrize("period", ["2011-03", "2011-02", "2011-Q2", "2011"])
def test_czech_like_contract_matches_the_interpreter(period):
    prog, p = czech_like()
    result = same(prog, p, period, {"nat": D(250)})
    if period == "2011":
        assert len(result.installments) == 12
        q4 = [i for i in result.installments if i[3] == 12]
        assert [i[5] for i in q4] == [True, False, False]  # P2's quality is false: withheld


def test_practices_are_derived_when_the_practices_table_is_empty():
    p = Panel()
    p.member("M1", "P2", date(1970, 1, 1))
    p.member("M2", "P1", date(1970, 1, 1))
    p.event("P3", date(2011, 3, 1), "X", points=1)
    prog = program([line("cap", sum_members(c(10))), line("ffs", t.Agg("sum", "events", t.Col(
        "event", "points", "decimal")))])
    result = same(prog, p, "2011-03")
    assert result.practices == ["P1", "P2", "P3"]


def error_of(prog, panel, period="2011-03", engine=None):
    per = parse_period(period)
    with pytest.raises(EvalError) as sql_error:
        evaluate(prog, panel.duckdb(), per, {})
    with pytest.raises(EvalError) as ref_error:
        interpret(prog, panel.rows(), per.months, {})
    return sql_error.value, ref_error.value


def test_member_in_no_band_is_the_interpreters_error():
    band = t.Case(((t.Cmp("<", AGE, c(100)), c(1)),), t.Fail("E0801", "no band of 'idx' covers the value"), "idx")
    p = Panel()
    p.member("M1", "P1", date(1970, 1, 1))
    p.member("M2", "P1", date(1900, 1, 1))
    got, want = error_of(program([line("cap", sum_members(band))]), p)
    assert got.code == want.code == "E0801"
    assert got.diagnostics[0].message == want.diagnostics[0].message
    assert "member at row 3" in got.diagnostics[0].message and "aged 111" in got.diagnostics[0].message


def test_event_without_a_schedule_entry_is_the_interpreters_error():
    code = t.Col("event", "code", "text")
    fee = t.Case(((t.Cmp("=", code, c("A", "text")), c(5)),), t.Fail("E0806", "schedule 'fee' has no entry"), "fee")
    p = one_practice()
    p.event("P1", date(2011, 3, 2), "A|B", points=1)
    got, want = error_of(program([line("ffs", t.Agg("sum", "events", fee))]), p)
    assert got.code == "E0806"
    assert got.diagnostics[0].message == want.diagnostics[0].message


def test_practice_level_failure_and_division_by_zero():
    tier = t.Case(((t.Cmp(">", pcol("hours"), c(40)), c(1)),), t.Fail("E0807", "no entry of 'tier' applies"))
    p = one_practice()
    p.practice_attrs = {"hours": "decimal"}
    p.practice("P1", hours=D(10))
    got, want = error_of(program([line("x", tier)]), p)
    assert (got.code, got.diagnostics[0].message) == (want.code, want.diagnostics[0].message)
    got, want = error_of(program([line("x", ar("/", c(1), ar("-", pcol("hours"), c(10))))]), p)
    assert got.code == want.code == "E0803"
    assert got.diagnostics[0].message == want.diagnostics[0].message


def test_guarded_division_by_zero_is_not_an_error():
    hours = pcol("hours")
    guarded = t.Case(((t.Cmp("!=", hours, c(0)), ar("/", c(100), hours)),), c(0))
    p = one_practice()
    p.practice_attrs = {"hours": "decimal"}
    p.practice("P1", hours=D(0))
    p.practice("P2", hours=D(3))
    same(program([line("x", guarded), line("y", sum_members(guarded))]), p, "2011-03")


def test_not_applied_line_does_not_evaluate_its_amount():
    hours = pcol("hours")
    p = one_practice()
    p.practice_attrs = {"hours": "decimal"}
    p.practice("P1", hours=D(0))
    result = same(program([line("x", ar("/", c(1), hours), applies=t.Cmp(">", hours, c(0)))]), p, "2011-03")
    assert result.rows == [("P1", MARCH, "x", D(0), False, None)]


def test_overflow_is_an_eval_error_not_an_engine_trace():
    prog = program([line("x", ar("*", t.Param("a", "decimal"), t.Param("a", "decimal")))])
    big = {"a": D("100000000000000000")}
    with pytest.raises(EvalError) as info:
        evaluate(prog, one_practice().duckdb(), parse_period("2011-03"), big)
    assert info.value.code == "E0808"


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_dialect_compiles_to_sql_it_parses(dialect):
    prog, _ = czech_like()
    sql = compile_program(prog, parse_period("2011-Q1"), dialect, tables={"members": "claims.members"})
    assert "claims.members" in sql
    parsed = sqlglot.parse_one(sql.rstrip().rstrip(";"), read=dialect)
    assert parsed.find(sqlglot.exp.With) is not None


def test_compiled_sql_runs_on_duckdb_from_parquet_files(tmp_path):
    prog, p = czech_like()
    con = p.duckdb()
    files = {}
    for table in ("members", "practices", "events"):
        path = tmp_path / f"{table}.parquet"
        con.execute(f"COPY (SELECT * EXCLUDE (_row) FROM {table}) TO '{path}' (FORMAT parquet)")
        files[table] = str(path)
    path = tmp_path / "measures.parquet"
    con.execute(f"COPY (SELECT practice_id, period, measure, value FROM measures) TO '{path}' (FORMAT parquet)")
    files["measures"] = str(path)
    per = parse_period("2011")
    want = interpret(prog, p.rows(), per.months, {"nat": D(250)})
    got = evaluate_files(prog, files, per, {"nat": D(250)})
    assert (got.rows, got.pools, got.installments) == (want.rows, want.pools, want.installments)


CONTRACTS = sorted(__import__("pathlib").Path(__file__).resolve().parent.parent.glob("contracts/*.cap"))


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda p: p.stem)
def test_bundled_contracts_on_the_sample_panel_every_period_kind(contract):
    from capdsl.data.panel import load_panel, parse_params
    from capdsl.pipeline import compile_file, requirements, run_engine

    from capdsl.errors import InputError

    _, prog = compile_file(contract)
    reqs = requirements(prog)

    def files_in(folder):
        return {t: str(folder / f"{t}.csv") for t in ("members", "practices", "events", "measures")
                if (folder / f"{t}.csv").exists()}

    try:
        panel = load_panel(files_in(contract.parent.parent / "examples"), reqs, today=date(2012, 1, 1))
    except InputError:  # the contract reads inputs the sample panel lacks: its own fixture panel
        panel = load_panel(files_in(contract.parent.parent / "tests" / "panels" / contract.stem), reqs,
                           today=date(2012, 1, 1))
    params = parse_params([], None, reqs)
    for period in ("2011-03", "2011-02", "2011-Q2", "2011"):
        per = parse_period(period)
        want = run_engine(prog, panel, per, params, "python")
        got = run_engine(prog, panel, per, params, "duckdb")
        assert (got.rows, got.pools, got.installments, got.practices) == \
            (want.rows, want.pools, want.installments, want.practices), period


@pytest.mark.parametrize("text", ["1502.000000000000", "1.500000000000", "-2.250000000000", "0.000000000000",
                                  "-0.000000000000", "12", "0.000000000001", "1E+3", "1.50E-7"])
def test_a_basis_fetched_as_text_reads_as_the_decimal_would(text):
    """Engines fetch bases as text (faster than the drivers' decimals); the reading must not differ
    from reading the decimal, digits and exponent included (a statement prints it)."""
    from capdsl.sql.engine import _plain

    as_text, as_decimal = _plain(text), _plain(D(text))
    assert as_text == as_decimal and str(as_text) == str(as_decimal)


def test_a_pool_is_evaluated_on_december_only():
    prog, p = pool_dividing_by_a_monthly_line(None)
    result = same(prog, p, "2011")  # every month reported: January's line is computed, and 0
    assert result.pools[0][3] == D("0.70")  # 14 member-months of the year / December's 20.00


def test_a_pool_failing_on_december_is_the_interpreters_error():
    prog, p = pool_dividing_by_a_monthly_line(date(2011, 11, 30))
    sql_error, ref_error = error_of(prog, p, "2011")
    assert sql_error.code == ref_error.code == "E0803"


def test_a_line_no_pool_reads_is_not_evaluated_in_months_read_only_for_the_pools():
    """March's statement evaluates the whole year for the pool; January's `100 / count` divides by
    zero (no member yet), but the interpreter never evaluates that line in January: neither may SQL."""
    bonus = line("bonus", t.YearSum(count_members()), kind="pool",
                 installments=(t.Installment(3, D("0.5")), t.Installment(6, None)))
    prog = program([line("per", ar("/", c(100), count_members())), bonus])
    p = Panel()
    p.practice("P1")
    p.member("M1", "P1", date(1970, 1, 1), start=MARCH)
    result = same(prog, p, "2011-03")
    assert result.rows == [("P1", MARCH, "per", D("100.00"), True, None)]


def spread_panel() -> Panel:
    """Members whose age bands change during 2011, joining and leaving mid-year, two practices."""
    p = Panel(practice_attrs={"rate": "decimal"}, measure_kinds={"m": "decimal"})
    p.practice("P1", rate=D("3.5"))
    p.practice("P2", rate=D("4"))
    for i in range(40):
        p.member(f"M{i}", "P1" if i % 3 else "P2", date(1946 + i % 30, 1 + i % 12, 1 + i % 27),
                 start=date(2011, 1 + i % 12, 1) if i % 4 == 0 else None,
                 end=date(2011, 1 + (i * 5) % 12, 28) if i % 6 == 0 else None)
    p.measures += [("P1", f"2011-{m:02d}", "m", D(m)) for m in range(1, 13)] + [("P2", "2011", "m", D("2.5"))]
    return p


def band_by_age():
    return t.Case(((t.Cmp("<", AGE, c(50)), c("1.25")), (t.Cmp("<", AGE, c(60)), c("1.5"))), c("2.75"), "b")


@pytest.mark.parametrize("operand, spread", [
    # affine in the aggregates with month-invariant factors: the other months are summed per practice
    (lambda: ar("+", ar("*", pcol("rate"), sum_members(band_by_age())), c(7)), True),
    (lambda: t.Neg(ar("-", count_members(), ar("*", c(2), sum_members(band_by_age())))), True),
    # a monthly measure as a factor, or a non-linear use of an aggregate: summed month by month
    (lambda: ar("*", t.Measure("m", "decimal"), count_members()), False),
    (lambda: t.MinMax("max", (count_members(), c(3))), False),
])
@pytest.mark.parametrize("period", ["2011-03", "2011-Q2", "2011-11"])
def test_year_sums_match_the_interpreter_whether_or_not_months_are_summed_per_practice(operand, spread, period):
    from capdsl.sql.analysis import affine

    assert affine(operand()) is spread
    bonus = line("bonus", ar("*", c("0.15"), t.YearSum(operand())), kind="pool",
                 installments=(t.Installment(3, D("0.25")), t.Installment(6, D("0.25")), t.Installment(9, D("0.25")),
                               t.Installment(12, None)))
    prog = program([line("cap", sum_members(ar("*", pcol("rate"), band_by_age()))), bonus],
                   measures={"m": ("decimal", None, "")})
    same(prog, spread_panel(), period)


def test_a_practice_level_factor_that_may_fail_is_not_taken_out_of_a_member_sum():
    """Σ (F × v) is computed as F × Σ v when F is the same for every member; a factor that may stop
    the query stays inside: P2 has no members, so the interpreter never looks up its 0 hours."""
    hours = pcol("hours")
    band = t.Case(((t.Cmp("<", AGE, c(50)), c("1.5")),), c(2), "b")
    tier = t.Case(((t.Cmp(">", hours, c(0)), c("2.5")),), t.Fail("E0807", "no entry of 'tier' applies"), "tier")
    p = Panel(practice_attrs={"hours": "decimal"})
    p.practice("P1", hours=D(4))
    p.practice("P2", hours=D(0))
    p.member("M1", "P1", date(1970, 1, 1))
    p.member("M2", "P1", date(1950, 6, 1))
    prog = program([line("a", sum_members(ar("*", tier, band))),
                    line("b", sum_members(ar("*", ar("*", c(3), hours), band)))])
    result = same(prog, p, "2011-03")
    assert [r[3] for r in result.rows] == [D("8.75"), D("42.00"), D(0), D(0)]


@pytest.mark.parametrize("period", ["2011-03", "2011-Q3"])
def test_a_pool_summing_events_over_the_year_reads_every_months_events(period):
    points = t.Col("event", "points", "decimal")
    bonus = line("bonus", t.YearSum(ar("*", c("0.5"), t.Agg("sum", "events", points))), kind="pool",
                 installments=(t.Installment(3, D("0.5")), t.Installment(9, None)))
    prog = program([line("ffs", t.Agg("sum", "events", points)), bonus])
    p = Panel()
    p.practice("P1")
    for month in range(1, 13):
        p.event("P1", date(2011, month, 1 + month), "X", points=month * 10)
    result = same(prog, p, period)
    assert result.pools[0][3] == D("390.00")


def test_a_schedule_read_only_by_a_line_that_does_not_apply_is_not_looked_up():
    """SQL computes every aggregate before the lines; a failure inside one waits for a line that reads it."""
    code = t.Col("event", "code", "text")
    fee = t.Case(((t.Cmp("=", code, c("A", "text")), c(5)),), t.Fail("E0806", "schedule 'fee' has no entry"), "fee")
    p = Panel(practice_attrs={"contracted": "bool"})
    p.practice("P1", contracted=False)
    p.event("P1", date(2011, 3, 2), "B", points=1)
    prog = program([line("ffs", t.Agg("sum", "events", fee), applies=pcol("contracted", "bool"))])
    assert same(prog, p, "2011-03").rows == [("P1", MARCH, "ffs", D(0), False, None)]
    p.practices[0]["contracted"] = True  # now the line reads the schedule: the interpreter's error
    got, want = error_of(prog, p)
    assert (got.code, got.diagnostics[0].message) == (want.code, want.diagnostics[0].message)


@pytest.mark.parametrize("period", ["2011-03", "2011-Q4", "2011"])
def test_the_long_result_and_the_engines_wide_rows_read_the_same(period):
    """`compile --sql` prints a row per statement line; the engines fetch a row per practice-month
    (`fetch_sql`). Both are read back to the same result, pools and installments included."""
    from capdsl.sql.compile import Options, compile_query
    from capdsl.sql.engine import collect, collect_wide

    prog, p = czech_like()
    con = p.duckdb()
    compiled = compile_query(prog, parse_period(period), "duckdb", params={"nat": D(250)}, options=Options())
    long = collect(compiled, prog, con.execute(compiled.sql()).fetchall())
    query = compiled.runnable()
    wide = collect_wide(query, prog.quantum, con.execute(query.sql).fetchall())
    assert (wide.rows, wide.pools, wide.installments, wide.practices) == (
        long.rows, long.pools, long.installments, long.practices)
    assert [str(r[3]) for r in wide.rows] == [str(r[3]) for r in long.rows]  # exponents too
    assert wide.installments or period != "2011"


def test_a_product_of_bands_behind_an_absent_measure_does_not_overflow():
    """With the bands' failure deferred (the `if` is not always taken), its NULL keeps the band's own
    narrow type: typed DECIMAL(38, 12), band × band would be DECIMAL(38, 24), and the pro-rata
    weight's multiplication would overflow (E0808) where the interpreter pays 0."""
    def band(value):
        return t.Case(((t.Cmp("<", AGE, c(18)), c(value)), (t.Cmp("<", AGE, c(90)), c(0))),
                      t.Fail("E0801", "no band of 'idx' covers the value"), table="idx")

    measure = t.Measure("m", "decimal")
    amount = t.Case(((t.Present(measure), sum_members(ar("*", band(33), band(14)))),), c(0))
    prog = program([line("l0", amount)], exposure="pro_rata", measures={"m": ("decimal", None, "")})
    p = Panel(measure_kinds={"m": "decimal"})
    p.member("M0", "P0", date(2000, 1, 1), date(2010, 6, 1))
    p.practice("P0")
    assert same(prog, p, "2011-03").rows[0][3] == D("0.00")
    p.measures.append(("P0", "2011-03", "m", D(1)))
    assert same(prog, p, "2011-03").rows[0][3] == D("462.00")


def test_an_if_between_sums_of_different_scales_keeps_the_cents():
    """`if present(m) then sum of (band) else sum of 0.01` puts a DECIMAL(38, 1) and a DECIMAL(38, 2)
    in one CASE, which DuckDB types DECIMAL(38, 1) (0.01 would pay 0.00): values of unknown types are
    cast to DECIMAL(38, 12), and so are min/max arguments."""
    band = t.Case(((t.Cmp("<", AGE, c(90)), c(0)),), c("0.5"), table="idx")
    measure = t.Measure("m", "decimal")
    amount = t.Case(((t.Present(measure), sum_members(band)),), sum_members(c("0.01")))
    smallest = t.MinMax("max", (sum_members(band), sum_members(c("0.01"))))
    prog = program([line("l0", amount), line("l1", smallest)], measures={"m": ("decimal", None, "")})
    p = Panel(measure_kinds={"m": "decimal"})
    p.member("M0", "P0", date(2000, 1, 1))
    p.practice("P0")
    assert [r[3] for r in same(prog, p, "2011-03").rows] == [D("0.01"), D("0.01")]


NAMES = ("weight", "month_start", "month", "n", "count", "value", "period", "mon", "reported", "days")
NAMED_LIKE_COLUMNS = '''contract "Inputs named like the query's own columns":
    currency CZK
    period month
    exposure pro_rata
    rounding half_up 0.01 per line
end

inputs:
''' + "".join(f"    member {n}: number = 2\n" for n in NAMES) + \
    "".join(f"    event {n}: number = 3\n" for n in NAMES) + \
    "".join(f"    practice {n}: number = 4\n" for n in NAMES) + '''end

line a "Weight" = sum of 1 CZK * member.weight over members
line b "Members" = sum of 1 CZK * (''' + " + ".join(f"member.{n}" for n in NAMES) + ''') over members
line c "Events" = sum of 1 CZK * (''' + " + ".join(f"event.{n}" for n in NAMES) + ''') over events
line d "Practice" = 1 CZK * (''' + " + ".join(f"practice.{n}" for n in NAMES) + ''')
line e "Counted" = 1 CZK * (count of members where member.mon > 1 and member.reported < 3)
line f "Counted events" = 1 CZK * (count of events where event.month_start > 0)

pool p "Pool":
    amount sum of (sum of 1 CZK * (member.n + member.weight) over members) over year
    paid 100% in Q4
end
'''


def named_like_columns_panel(tmp_path):
    """Members, events and practices whose columns are the NAMES, varying by row (one value blank:
    its default applies), with enrolments that make pro-rata weights other than 1."""
    import csv

    def write(name, header, rows):
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])

    write("practices", ["practice_id", *NAMES], [[f"P{p}", *[str(p + i) for i in range(len(NAMES))]] for p in (1, 2)])
    members = []
    for i in range(12):
        values = [str((i * 7 + k) % 5) for k in range(len(NAMES))]
        values[i % len(NAMES)] = ""
        members.append([f"M{i}", f"P{i % 2 + 1}", "1970-01-01", f"2011-{i % 12 + 1:02d}-{i + 3:02d}", "", *values])
    write("members", ["member_id", "practice_id", "birth_date", "enrolled_from", "enrolled_to", *NAMES], members)
    events = [[f"P{i % 2 + 1}", f"2011-{i % 12 + 1:02d}-10", "X", str(i % 3 + 1), *[str((i + k) % 4) for k in range(len(NAMES))]]
              for i in range(30)]
    write("events", ["practice_id", "date", "code", "quantity", *NAMES], events)
    (tmp_path / "c.cap").write_text(NAMED_LIKE_COLUMNS)
    return tmp_path


@pytest.mark.parametrize("period", ["2011-02", "2011-03", "2011-Q4"])
def test_inputs_named_like_internal_columns_are_the_authors_columns(tmp_path, period):
    """`member weight` is the author's column, not the exposure weight, and `month_start`, `n`,
    `reported` … never meet the query's own columns (E0922 binder errors before, or wrong amounts)."""
    from capdsl.data.panel import load_panel, parse_params
    from capdsl.pipeline import compile_file, requirements, run_engine

    files = named_like_columns_panel(tmp_path)
    _, prog = compile_file(files / "c.cap")
    reqs = requirements(prog)
    panel = load_panel({t: str(files / f"{t}.csv") for t in ("members", "practices", "events")}, reqs,
                       today=date(2012, 1, 1))
    per = parse_period(period)
    want = run_engine(prog, panel, per, {}, "python")
    got = run_engine(prog, panel, per, {}, "duckdb")
    assert (got.rows, got.pools, got.installments) == (want.rows, want.pools, want.installments)
    assert all(any(r[3] != 0 for r in want.rows if r[2] == name) for name in "abcdef")
