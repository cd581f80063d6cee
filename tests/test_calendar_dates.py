"""Intermediate rounding (`round(x, q[, mode])`), the calendar values of the evaluated month
(`calendar.quarter`, `calendar.month_end`, …) and the date functions (`years_between`,
`months_between`, `days_between`): checked, formatted, lowered, and paid the same amounts —
computed by hand here — by the interpreter, DuckDB, PostgreSQL and Spark, and by the Snowflake
and BigQuery SQL read back and run on DuckDB; the language server completes and explains them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlglot

from capdsl.errors import CheckError, Source
from capdsl.evaluation import tree as t
from capdsl.evaluation.interpret import date_diff, evaluate as interpret
from capdsl.evaluation.periods import parse_period
from capdsl.language.check import check
from capdsl.language.fmt import format_source
from capdsl.language.syntax import parse
from capdsl.sql import evaluate
from capdsl.sql.compile import compile_query
from sql_support import Panel, pg_evaluate
from validation_helpers import compile_text

D = Decimal

ROUNDING = """
contract "Intermediate rounding":
    currency EUR
    rounding half_even 0.01 per line
end

line third "Thirds" = sum of round(100 EUR / 3, 0.01) over members
line unrounded "Thirds, unrounded" = sum of 100 EUR / 3 over members
line even "Contract's mode" = round(2.345 EUR, 0.01)
line up "Half up" = round(2.345 EUR, 0.01, half_up)
line down "Down" = round(-2.345 EUR, 0.01, down)
line ceil "Up" = round(2.341 EUR, 0.01, up)
line nickel "To 0.05" = round(1.225 EUR, 0.05, half_up)
line nickel_even "To 0.05 EUR, half even" = round(1.225 EUR, 0.05 EUR, half_even)
line decades "Ages to tens" = sum of round(member.age, 10) * 1 EUR over members
"""

CALENDAR = """
contract "Calendar values":
    currency EUR
end

line month "Month" = calendar.month * 1 EUR
line quarter "Quarter" = calendar.quarter * 10 EUR
line half "Half" = calendar.half * 100 EUR
line year "Year" = calendar.year * 1 EUR
line month_days "Days after the first" = days_between(calendar.month_start, calendar.month_end) * 1 EUR
line quarter_day "Quarter's first day" = days_between(calendar.year_start, calendar.quarter_start) * 1 EUR

line half_yearly "Half-yearly fee":
    amount 600 EUR
    applies when calendar.month = 6 or calendar.month = 12
end

line march "March members" = sum of (if calendar.month = 3 then 1 EUR else 0 EUR) over members

pool yearly "Paid with the year's number":
    amount calendar.year * 1 EUR + 0 EUR * sum of count of members over year
    applies when calendar.half = 2
end
"""

DATES = """
contract "Dates":
    currency EUR
end

define age_on_q = years_between(member.birth_date, calendar.quarter_start)

line age_q "Ages on the quarter's first day" = sum of age_on_q * 1 EUR over members
line age_end "Ages on the month's last day" = sum of years_between(member.birth_date, calendar.month_end) * 1 EUR over members
line months "Months lived" = sum of months_between(member.birth_date, calendar.month_end) * 1 EUR over members
line enrolled "Months enrolled" = \\
    sum of (if member.enrolled_from is present then months_between(member.enrolled_from, calendar.month_start) else 0) * 1 EUR over members
line enrolled_days "Days enrolled" = \\
    sum of (if member.enrolled_from is missing then 0 else days_between(member.enrolled_from, calendar.month_start)) * 1 EUR over members
line backwards "Backwards" = sum of years_between(calendar.month_start, member.birth_date) * 1 EUR over members
"""


def panel() -> Panel:
    p = Panel()
    p.practice("P1")
    p.member("M1", "P1", date(2000, 2, 29))  # a leap-day birthday
    p.member("M2", "P1", date(1980, 5, 31), start=date(2010, 8, 31))
    p.member("M3", "P1", date(1975, 7, 4))
    return p


def amounts(source: str, period: str, engine: str = "python", pg=None, spark=None) -> dict:
    """{(month, line): amount} and {pool: amount} of `source` on `panel()`."""
    _, prog = compile_text(source)
    per = parse_period(period)
    p = panel()
    if engine == "python":
        result = interpret(prog, p.rows(), per.months, {})
    elif engine == "postgres":
        pg.load(p)
        result = pg_evaluate(pg, prog, per)
    elif engine == "spark":
        result = evaluate(prog, p.duckdb(), per, {}, engine="spark", spark=spark)
    else:
        result = evaluate(prog, p.duckdb(), per, {})
    rows = {(m.month, name): amount for _pid, m, name, amount, _applied, _basis in result.rows}
    return rows | {name: amount for _pid, name, _year, amount, _applied in result.pools}


def agree(source: str, period: str) -> dict:
    """The interpreter's amounts, after checking DuckDB pays the same."""
    want = amounts(source, period)
    assert amounts(source, period, "duckdb") == want
    return want


# ───────────────────────────── rounding ─────────────────────────────

def test_round_rounds_before_the_sum_with_the_contracts_mode_or_the_one_named():
    got = agree(ROUNDING, "2011-03")
    assert got[(3, "third")] == D("99.99")  # 3 × 33.33, where the unrounded thirds pay 100.00
    assert got[(3, "unrounded")] == D("100.00")
    assert got[(3, "even")] == D("2.34")  # the header's half_even
    assert got[(3, "up")] == D("2.35")
    assert got[(3, "down")] == D("-2.34")
    assert got[(3, "ceil")] == D("2.35")
    assert got[(3, "nickel")] == D("1.25")  # 24.5 steps of 0.05, half up
    assert got[(3, "nickel_even")] == D("1.20")  # 24.5 steps, to the even 24
    # ages on 1 March 2011: 11 (M1, born 29 Feb 2000), 30 (M2), 35 (M3) → 10 + 30 + 40
    assert got[(3, "decades")] == D("80.00")


def test_round_lowers_to_the_trees_round_node():
    _, prog = compile_text(ROUNDING)
    node = next(x for x in t.walk(prog.line("nickel_even").amount) if isinstance(x, t.Round))
    assert (node.quantum, node.mode) == (D("0.05"), "half_even")
    node = next(x for x in t.walk(prog.line("even").amount) if isinstance(x, t.Round))
    assert (node.quantum, node.mode) == (D("0.01"), "half_even")


# ───────────────────────────── calendar ─────────────────────────────

def test_calendar_values_of_every_month_of_a_leap_year():
    got = agree(CALENDAR, "2012")
    assert [got[(m, "month")] for m in range(1, 13)] == [D(m) for m in range(1, 13)]
    assert [got[(m, "quarter")] for m in range(1, 13)] == [D(10 * ((m + 2) // 3)) for m in range(1, 13)]
    assert [got[(m, "half")] for m in range(1, 13)] == [D(100)] * 6 + [D(200)] * 6
    assert {got[(m, "year")] for m in range(1, 13)} == {D(2012)}
    # days from the first to the last day: February 2012 has 29 days
    assert [got[(m, "month_days")] for m in range(1, 13)] == \
        [D(x) for x in (30, 28, 30, 29, 30, 29, 30, 30, 29, 30, 29, 30)]
    # 1 Jan, 1 Apr (31 + 29 + 31 = 91 days on), 1 Jul (91 + 30 + 31 + 30), 1 Oct (182 + 31 + 31 + 30)
    assert [got[(m, "quarter_day")] for m in (1, 4, 7, 10, 12)] == [D(0), D(91), D(182), D(274), D(274)]
    assert [got[(m, "half_yearly")] for m in range(1, 13)] == [D(0)] * 5 + [D(600)] + [D(0)] * 5 + [D(600)]
    assert got[(3, "march")] == D(3) and got[(4, "march")] == D(0)
    assert got["yearly"] == D(2012)  # a pool reads December's calendar values


def test_calendar_values_in_a_common_year_quarter():
    got = agree(CALENDAR, "2011-Q1")
    assert got[(2, "month_days")] == D(27)
    assert got[(1, "quarter_day")] == got[(3, "quarter_day")] == D(0)
    assert got[(2, "year")] == D(2011)


# ───────────────────────────── dates ─────────────────────────────

def test_date_functions_with_a_leap_day_birthday():
    feb11, mar11, feb12 = agree(DATES, "2011-02"), agree(DATES, "2011-03"), agree(DATES, "2012-02")
    # on 1 Jan 2011: M1 (29 Feb 2000) 10, M2 (31 May 1980) 30, M3 (4 Jul 1975) 35
    assert feb11[(2, "age_q")] == D(75)
    # on 28 Feb 2011 M1 is still 10 (the birthday falls on 1 March); 31 Mar 2011: 11
    assert feb11[(2, "age_end")] == D(10 + 30 + 35)
    assert mar11[(3, "age_end")] == D(11 + 30 + 35)
    # on 29 Feb 2012 M1 is 12; M2 31, M3 36
    assert feb12[(2, "age_end")] == D(12 + 31 + 36)
    # months to 28 Feb 2011: M1 11×12 − 1 (day 28 < 29) = 131; M2 31×12 − 3 − 1 (28 < 31) = 368;
    # M3 36×12 − 5 (Feb − Jul; day 28 ≥ 4) = 427
    assert feb11[(2, "months")] == D(131 + 368 + 427)
    # to 29 Feb 2012: M1 12×12 exactly; M2 32×12 − 3 − 1 = 380; M3 37×12 − 5 = 439
    assert feb12[(2, "months")] == D(144 + 380 + 439)
    # M2 enrolled 31 Aug 2010: to 1 Feb 2011, 6 months less one (1 < 31) = 5; 1 + 153 days
    assert feb11[(2, "enrolled")] == D(5)
    assert feb11[(2, "enrolled_days")] == D(154)
    # from 1 Feb 2011 back to the birthdays: −10 (M1: 10 completed years the other way), −30, −35
    assert feb11[(2, "backwards")] == D(-75)


@pytest.mark.parametrize("start, end, years, months, days", [
    (date(2000, 2, 29), date(2001, 2, 28), 0, 11, 365),
    (date(2000, 2, 29), date(2001, 3, 1), 1, 12, 366),
    (date(2000, 2, 29), date(2004, 2, 29), 4, 48, 1461),
    (date(2011, 1, 31), date(2011, 2, 28), 0, 0, 28),
    (date(2011, 1, 31), date(2011, 3, 1), 0, 1, 29),
    (date(2011, 3, 1), date(2011, 1, 31), 0, -1, -29),
    (date(2011, 5, 10), date(2011, 5, 10), 0, 0, 0),
])
def test_the_date_differences_by_hand(start, end, years, months, days):
    assert (date_diff("year", start, end), date_diff("month", start, end), date_diff("day", start, end)) == \
        (years, months, days)


# ───────────────────────────── the checker ─────────────────────────────

HEADER = 'contract "T":\n    currency EUR\nend\n\n'


def codes(body: str) -> list[str]:
    source = Source(HEADER + body, "t.cap")
    try:
        check(parse(source), source)
    except CheckError as exc:
        return [d.code for d in exc.diagnostics if d.severity == "error"]
    return []


@pytest.mark.parametrize("body, code", [
    ('define x = round(1 EUR, 0)\n', "E0314"),
    ('define x = round(1 EUR, -0.01)\n', "E0314"),
    ('define q = 0.01\ndefine x = round(1 EUR, q)\n', "E0314"),
    ('define x = round(1 EUR, 0.01 points)\n', "E0314"),
    ('define x = round(1 EUR, 0.01, sideways)\n', "E0314"),
    ('define x = round(1 EUR, 0.01, "half_up")\n', "E0314"),
    ('define x = round("a", 0.01)\n', "E0312"),
    ('define x = round(1 EUR)\n', "E0207"),
    ('define x = round(1 EUR, 0.01, half_up, 2)\n', "E0207"),
    ('define x = years_between(member.birth_date)\n', "E0207"),
    ('define x = days_between(member.birth_date, 3)\n', "E0315"),
    ('define x = months_between("2011-01-01", calendar.month_start)\n', "E0315"),
    ('define x = calendar.week\n', "E0206"),
    ('define x = calendar.month + 1 EUR\n', "E0301"),
    ('define x = years_between(member.enrolled_from, calendar.month_start)\n', "E0313"),
    ('inputs:\n    calendar day: integer\nend\n', "E0210"),
])
def test_wrong_arguments_are_located_errors(body, code):
    assert code in codes(body)


@pytest.mark.parametrize("body", [
    'define x = round(1 EUR, 0.05 EUR)\n',
    'define x = round(3, 1, down)\n',
    'define x = round(12.34%, 0.5%)\n',
    'define x = if member.enrolled_to is present then days_between(calendar.month_start, member.enrolled_to) else 0\n',
    'define x = years_between(member.birth_date, 2011-07-01) >= 18\n',
    'define x = calendar.month_end > 2011-06-30 and calendar.quarter = 3\n',
])
def test_well_formed_uses_check(body):
    assert codes(body) == []


def test_fmt_prints_the_new_forms_canonically_and_round_trips():
    for text in (ROUNDING, CALENDAR, DATES):
        source = Source(text, "t.cap")
        out = format_source(source)
        assert parse(Source(out, "t.cap")) == parse(source)
        assert format_source(Source(out, "t.cap")) == out
    out = format_source(Source(HEADER + "define x = round( 1 EUR,0.05 ,half_even )\n", "t.cap"))
    assert "round(1 EUR, 0.05, half_even)" in out


# ───────────────────────────── other engines ─────────────────────────────

@pytest.mark.parametrize("dialect", ["postgres", "spark", "snowflake", "bigquery"])
def test_every_dialect_compiles_the_new_nodes_to_sql_it_parses(dialect):
    for text in (ROUNDING, CALENDAR, DATES):
        _, prog = compile_text(text)
        sql = compile_query(prog, parse_period("2012"), dialect).sql()
        sqlglot.parse_one(sql, read=dialect)
        if dialect == "postgres":
            assert "DATE_FROM_PARTS" not in sql  # PostgreSQL has MAKE_DATE only


@pytest.mark.parametrize("dialect, source, period", [
    ("snowflake", ROUNDING, "2011-03"), ("snowflake", CALENDAR, "2012"), ("snowflake", DATES, "2012-02"),
    # BigQuery's decimal arithmetic does not survive transpilation to DuckDB (BIGNUMERIC), so only the
    # calendar values and date differences, which are whole numbers and dates
    ("bigquery", CALENDAR, "2012"), ("bigquery", DATES, "2012-02"), ("bigquery", DATES, "2011-02")])
def test_warehouse_sql_transpiled_to_duckdb_pays_the_interpreters_amounts(dialect, source, period):
    """No Snowflake or BigQuery server here: their SQL is read back in their dialect, written for
    DuckDB and run on the panel, so the date functions each dialect is given keep their meaning."""
    from capdsl.sql.compile import Options
    from capdsl.sql.engine import collect

    _, prog = compile_text(source)
    compiled = compile_query(prog, parse_period(period), dialect, params={}, options=Options(practices="table"))
    duck = sqlglot.transpile(compiled.sql(), read=dialect, write="duckdb")[0]
    result = collect(compiled, prog, panel().duckdb().execute(duck).fetchall())
    got = {(m.month, name): amount for _pid, m, name, amount, _applied, _basis in result.rows}
    got |= {name: amount for _pid, name, _year, amount, _applied in result.pools}
    assert got == amounts(source, period)


@pytest.mark.postgres
@pytest.mark.parametrize("source, period", [(ROUNDING, "2011-03"), (CALENDAR, "2012"), (DATES, "2011-02"),
                                            (DATES, "2012-02")])
def test_postgres_pays_the_interpreters_amounts(pg, source, period):
    assert amounts(source, period, "postgres", pg=pg) == amounts(source, period)


@pytest.mark.spark
def test_spark_pays_the_interpreters_amounts(spark):
    for source, period in ((ROUNDING, "2011-03"), (CALENDAR, "2012"), (DATES, "2012-02")):
        assert amounts(source, period, "spark", spark=spark) == amounts(source, period)


# ───────────────────────────── the language server ─────────────────────────────

def test_the_language_server_completes_and_explains_calendar_values_and_functions():
    from capdsl.tools.lsp import analyse, completions, hover_markdown

    text = DATES + "line draft \"Draft\" = calendar.\n"
    analysis = analyse(text, "t.cap")
    last = len(text.splitlines())
    members = {c.label: c for c in completions(analysis, last, len("line draft \"Draft\" = calendar.") + 1)}
    assert set(members) == {"month", "quarter", "half", "year", "month_start", "month_end", "quarter_start",
                            "year_start"}
    assert "date" in members["quarter_start"].detail
    everything = {c.label: c for c in completions(analysis, 1, 1)}
    for name in ("round", "years_between", "months_between", "days_between"):
        assert everything[name].kind == "function" and name in everything[name].detail
    assert everything["calendar"].kind == "scope"

    analysis = analyse(DATES, "t.cap")
    lines = DATES.splitlines()
    row = next(i for i, x in enumerate(lines) if x.startswith("define age_on_q")) + 1
    text_, span = hover_markdown(analysis, row, lines[row - 1].index("years_between") + 2)
    assert "completed years" in text_ and span.column == lines[row - 1].index("years_between") + 1
    text_, _ = hover_markdown(analysis, row, lines[row - 1].index("calendar.quarter_start") + 12)
    assert "first day of the evaluated month's quarter" in text_


def test_the_language_doc_names_every_calendar_value_and_function():
    from pathlib import Path

    from capdsl.language.builtins import CALENDAR as VALUES, FUNCTIONS

    text = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    missing = [v.written for v in VALUES.values() if f"`{v.written}`" not in text]
    missing += [f for f in FUNCTIONS if f"`{f}(" not in text]
    assert missing == []
