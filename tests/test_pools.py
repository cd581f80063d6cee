"""What a pool sees of another pool: what it paid in the year, installment by
installment (a withheld installment counts 0, a pool not applied pays 0) —
on the interpreter, DuckDB, PostgreSQL and Spark, for every period shape —
and what the checker lets a pool read."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from capdsl.evaluation import tree as t
from capdsl.errors import CapError, EvalError, Source
from capdsl.evaluation.interpret import evaluate as interpret
from capdsl.evaluation.periods import parse_period
from capdsl.pipeline import Run, check_source, compile_source, evaluate as run_pipeline
from capdsl.sql import DIALECTS, compile_program, evaluate as sql_evaluate
from capdsl.evaluation.statements import to_jsonable
from sql_support import Panel, line, program

D = Decimal
ENGINES = ["python", "duckdb"]

ISSUE = """
contract "t":
    currency USD
end
pool a "A":
    amount 100 USD
    paid 1% in Q1, rest in Q4 when false
end
pool c "C":
    amount a
    paid 100% in Q4
end
"""

# A reads the year's capitation; B reads A; C reads A and B (amount, `applies` and a `when`).
# Withheld: A's Q2 (q2_met) and Q4 (q4_met), B's Q1 (q2_met), C's Q4 (A paid 50 USD or less).
CHAIN = """
contract "Chain":
    currency USD
end
inputs:
    measure q2_met: bool
    measure q4_met: bool
end
line cap "Capitation" = sum of 10 USD over members
pool c "C":
    amount a + b
    applies when b > 0 USD
    paid 40% in Q2, rest in Q4 when a > 50 USD
end
pool b "B":
    amount 50% of a
    paid 50% in Q1 when measure.q2_met, rest in Q3
end
pool a "A":
    amount 10% of sum of cap over year
    paid 25% in Q1, 25% in Q2 when measure.q2_met, 25% in Q3, rest in Q4 when measure.q4_met
end
"""
MEMBERS = {"P1": 7, "P2": 5, "P3": 1, "P4": 0}
MEASURES = [("P1", "q2_met", "false"), ("P1", "q4_met", "true"), ("P2", "q2_met", "true"),
            ("P2", "q4_met", "false")]  # P3, P4: none (a bare `when measure.x` without a row withholds)


def files(tmp_path, members: dict[str, int] = MEMBERS, measures=MEASURES) -> dict:
    m = tmp_path / "members.csv"
    rows = [f"M{pid}{i},{pid},1970-01-01" for pid, n in members.items() for i in range(n)]
    m.write_text("member_id,practice_id,birth_date\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    p = tmp_path / "practices.csv"
    p.write_text("practice_id\n" + "".join(f"{pid}\n" for pid in members), encoding="utf-8")
    q = tmp_path / "measures.csv"
    q.write_text("practice_id,period,measure,value\n"
                 + "".join(f"{pid},2011,{name},{v}\n" for pid, name, v in measures), encoding="utf-8")
    return {"members": str(m), "practices": str(p), "measures": str(q)}


def run(text: str, tmp_path, period: str, engine: str, **kw):
    program = compile_source(Source(text, "t.cap"))[1]
    result, _ = run_pipeline(program, Run(files=files(tmp_path, **kw), period=period, engine=engine,
                                          today=date(2012, 6, 1)))
    return result


def lines(result) -> dict:
    return {(s.practice_id, line.id): line for s in result.statements for line in s.lines}


def paid(line) -> list[tuple[int, str, bool]]:
    return [(i.quarter, str(i.amount), i.paid) for i in line.installments]


# ─────────────────────────────── the issue ───────────────────────────────

@pytest.mark.parametrize("engine", ENGINES)
def test_a_pool_reads_what_another_pool_paid_not_its_annual_amount(engine, tmp_path):
    got = lines(run(ISSUE, tmp_path, "2011", engine, members={"P1": 1}, measures=[]))
    a, c = got["P1", "a"], got["P1", "c"]
    assert (str(a.pool_amount), str(a.amount)) == ("100.00", "1.00")
    assert paid(a) == [(1, "1.00", True), (4, "0.00", False)]
    assert (str(c.pool_amount), str(c.amount)) == ("1.00", "1.00")  # not 100.00


# ─────────────────────────────── a chain of three ───────────────────────────────

@pytest.mark.parametrize("engine", ENGINES)
def test_a_chain_of_three_pools_with_withheld_installments(engine, tmp_path):
    got = lines(run(CHAIN, tmp_path, "2011", engine))
    # P1: cap 7 × 10 × 12 = 840, A = 84.00 in quarters of 21.00, Q2 withheld: paid 63.00
    assert paid(got["P1", "a"]) == [(1, "21.00", True), (2, "0.00", False), (3, "21.00", True), (4, "21.00", True)]
    # B = 50 % of 63.00 = 31.50; Q1 withheld: paid 15.75
    assert (str(got["P1", "b"].pool_amount), paid(got["P1", "b"])) == \
        ("31.50", [(1, "0.00", False), (3, "15.75", True)])
    # C = 63.00 + 15.75 = 78.75, applies (B paid 15.75 > 0); A paid 63.00 > 50: Q4 paid
    assert (str(got["P1", "c"].pool_amount), paid(got["P1", "c"])) == \
        ("78.75", [(2, "31.50", True), (4, "47.25", True)])
    # P2: A = 60.00, Q4 withheld: paid 45.00; B = 22.50 all paid; C = 67.50, Q4 withheld (45 ≤ 50)
    assert str(got["P2", "a"].amount) == "45.00"
    assert (str(got["P2", "b"].pool_amount), str(got["P2", "b"].amount)) == ("22.50", "22.50")
    assert (str(got["P2", "c"].pool_amount), paid(got["P2", "c"])) == \
        ("67.50", [(2, "27.00", True), (4, "0.00", False)])
    # P3: no measure rows: A = 12.00 paid 6.00; B = 3.00 paid 1.50; C = 7.50, Q4 withheld
    assert [str(got["P3", x].amount) for x in "abc"] == ["6.00", "1.50", "3.00"]
    assert str(got["P3", "c"].pool_amount) == "7.50"
    # P4: nothing paid: B paid 0, so C does not apply, and pays 0
    c4 = got["P4", "c"]
    assert (c4.applied, str(c4.amount), c4.note) == (False, "0.00", "not applied: `b > 0 USD` does not hold")
    for s in run(CHAIN, tmp_path, "2011", engine).statements:
        for pool in (x for x in s.lines if x.kind == "pool"):
            assert sum(i.amount for i in pool.installments) <= pool.pool_amount
            assert pool.amount == sum(i.amount for i in pool.installments if i.paid)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_quarter_statement_reads_what_was_paid_in_the_whole_year(engine, tmp_path):
    """A pool's amount is annual whatever the period: C's Q2 installment in a 2011-Q2 statement is
    40 % of A's and B's payments over the year, Q4 included."""
    got = lines(run(CHAIN, tmp_path, "2011-Q2", engine))
    assert paid(got["P1", "a"]) == [(2, "0.00", False)]
    assert paid(got["P1", "b"]) == [] and str(got["P1", "b"].pool_amount) == "31.50"
    assert (str(got["P1", "c"].pool_amount), paid(got["P1", "c"])) == ("78.75", [(2, "31.50", True)])
    assert paid(got["P2", "c"]) == [(2, "27.00", True)]
    assert str(got["P1", "cap"].amount) == "210.00"  # the quarter's three months


@pytest.mark.parametrize("period", ["2011", "2011-Q2", "2011-03", "2011-12", "2011-02"])
def test_the_engines_agree_on_the_chain(period, tmp_path):
    python, duckdb = (to_jsonable(run(CHAIN, tmp_path, period, engine)) for engine in ENGINES)
    python.pop("engine"), duckdb.pop("engine")
    assert duckdb == python


@pytest.mark.parametrize("engine", ENGINES)
def test_a_pool_not_applied_pays_nothing_to_a_pool_that_reads_it(engine, tmp_path):
    text = ISSUE.replace('    amount 100 USD\n', '    amount 100 USD\n    applies when false\n')
    got = lines(run(text, tmp_path, "2011", engine, members={"P1": 1}, measures=[]))
    assert (got["P1", "a"].applied, str(got["P1", "c"].pool_amount)) == (False, "0.00")


# ─────────────────────────────── every backend ───────────────────────────────

def chain_panel() -> Panel:
    p = Panel(measure_kinds={"q2_met": "bool", "q4_met": "bool"})
    for pid, n in MEMBERS.items():
        p.practice(pid)
        for i in range(n):
            p.member(f"M{pid}{i}", pid, date(1970, 1, 1))
    p.measures += [(pid, "2011", name, value == "true") for pid, name, value in MEASURES]
    return p


def monthly(result):
    return result.rows, result.pools, result.installments, result.practices


@pytest.mark.parametrize("period", ["2011", "2011-Q2"])
def test_the_sql_computes_each_pool_before_the_pools_that_read_it(period):
    prog = compile_source(Source(CHAIN, "t.cap"))[1]
    per = parse_period(period)
    want = interpret(prog, chain_panel().rows(), per.months, {})
    assert monthly(sql_evaluate(prog, chain_panel().duckdb(), per, {})) == monthly(want)
    assert ("P1", "c", 2011, D("78.75"), True) in want.pools


def test_pools_come_out_in_the_interpreters_order_whatever_their_steps():
    """x reads a, y reads nothing: the SQL computes a and y, then x, but reports them in line order."""
    text = ('contract "t":\n    currency USD\nend\npool x "X":\n    amount a\nend\n'
            'pool y "Y":\n    amount 5 USD\nend\npool a "A":\n    amount 100 USD\n'
            '    paid 50% in Q2, rest in Q4 when false\nend\n')
    prog = compile_source(Source(text, "t.cap"))[1]
    per = parse_period("2011")
    want = interpret(prog, chain_panel().rows(), per.months, {})
    assert [p[1] for p in want.pools[:3]] == ["a", "x", "y"]
    assert monthly(sql_evaluate(prog, chain_panel().duckdb(), per, {})) == monthly(want)


def test_every_dialect_compiles_a_chain_of_pools():
    import sqlglot

    prog = compile_source(Source(CHAIN, "t.cap"))[1]
    for dialect in sorted(DIALECTS):
        sql = compile_program(prog, parse_period("2011"), dialect)
        sqlglot.parse_one(sql.rstrip().rstrip(";"), read=dialect)
        # A's installments and what it paid come before the step that reads them
        at = [re.search(rf"\b{name}\b", sql).start() for name in ("ypaid__a", "raw__b", "ypaid__b", "raw__c")]
        assert at == sorted(at)


@pytest.mark.postgres
@pytest.mark.parametrize("period", ["2011", "2011-Q2"])
def test_postgres_pays_the_chain_as_the_interpreter(pg, period):
    from sql_support import pg_evaluate

    prog = compile_source(Source(CHAIN, "t.cap"))[1]
    pg.load(chain_panel())
    per = parse_period(period)
    got = pg_evaluate(pg, prog, per)
    assert monthly(got) == monthly(interpret(prog, chain_panel().rows(), per.months, {}))
    assert ("P1", "c", 2011, D("78.75"), True) in got.pools


@pytest.mark.spark
def test_spark_pays_the_chain_as_the_interpreter():
    from capdsl.sql.spark_engine import available, spark_session

    why = available()
    if why:
        pytest.skip(why)
    prog = compile_source(Source(CHAIN, "t.cap"))[1]
    per = parse_period("2011")
    session = spark_session("local[2]", app="capdsl-tests-pools")
    try:
        got = sql_evaluate(prog, chain_panel().duckdb(), per, {}, engine="spark", spark=session)
    finally:
        session.stop()
    assert monthly(got) == monthly(interpret(prog, chain_panel().rows(), per.months, {}))
    assert ("P1", "c", 2011, D("78.75"), True) in got.pools


def test_a_failing_condition_on_a_pool_read_is_the_interpreters_error():
    """C's `when` divides by what A paid: 0 once A's only installment is withheld."""
    a = line("a", t.Const(D(100), "decimal"), kind="pool",
             installments=(t.Installment(12, None, t.Const(False, "bool")),))
    c = line("c", t.Const(D(10), "decimal"), kind="pool",
             installments=(t.Installment(12, None, t.Cmp(">", t.Arith("/", t.Const(D(1), "decimal"),
                                                                     t.LineRef("a")), t.Const(D(0), "decimal"))),))
    prog = program([a, c])
    p = Panel()
    p.practice("P1")
    per = parse_period("2011")
    with pytest.raises(EvalError) as want:
        interpret(prog, p.rows(), per.months, {})
    with pytest.raises(EvalError) as got:
        sql_evaluate(prog, p.duckdb(), per, {})
    assert got.value.code == want.value.code == "E0803"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_documented_worked_example_holds(engine):
    """docs/language.md's pools-reading-pools contract: its `example` block's amounts, on both engines."""
    from pathlib import Path

    from capdsl.tools.examples import run_example
    from capdsl.evaluation.lower import lower

    text = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```cap\n(.*?)```", text, re.S) if "Pools reading pools" in b]
    source = Source(block, "language.md")
    checked = check_source(source)
    (example,) = checked.contract.examples
    outcome = run_example(lower(checked), example, source, engine)
    assert (outcome.error, outcome.failures, outcome.checks) == (None, [], 2)


# ─────────────────────────────── explain ───────────────────────────────

def test_explain_shows_what_the_pool_read(tmp_path):
    from capdsl.tools.explain import explain, render_text

    source = Source(CHAIN, "t.cap")
    out = explain(compile_source(source)[1], source, Run(files=files(tmp_path), period="2011",
                                                         today=date(2012, 6, 1)), "P1")
    c = next(x for x in out["lines"] if x["id"] == "c")
    assert c["pool"]["amount"] == "78.75" and c["amount"] == "78.75"
    reads = {(s["name"], s["value"], s["detail"]) for s in c["pool"]["steps"] if s["kind"] == "line"}
    assert reads == {("a", "63.00", "paid in the year"), ("b", "15.75", "paid in the year")}
    assert "Q4: 47.25" in render_text(out)


# ─────────────────────────────── the checker ───────────────────────────────

def codes(text: str) -> list[str]:
    head = 'contract "t":\n    currency USD\nend\nline cap "Cap" = sum of 10 USD over members\n' \
           'pool a "A":\n    amount 100 USD\nend\n'
    try:
        return [d.code for d in check_source(Source(head + text, "t.cap")).warnings]
    except CapError as exc:
        return [d.code for d in exc.diagnostics]


def test_a_pool_reads_another_pool_in_its_amount_applies_and_installments():
    assert codes('pool c "C":\n    amount 50% of a\n    applies when a > 0 USD\n'
                 '    paid 50% in Q1 when a > 10 USD, rest in Q4\nend\n') == []


def test_a_pool_is_not_added_up_over_the_year():
    with pytest.raises(CapError) as info:
        check_source(Source('contract "t":\n    currency USD\nend\npool a "A":\n    amount 100 USD\nend\n'
                            'pool c "C":\n    amount sum of a over year\nend\n', "t.cap"))
    (diag,) = info.value.diagnostics
    assert diag.code == "E0305" and "without `over year`" in diag.hint


def test_a_monthly_line_does_not_read_a_pool():
    assert codes('line z "Z" = a\n') == ["E0306"]
    assert codes('line z "Z":\n    amount 1 USD\n    applies when a > 0 USD\nend\n') == ["E0306"]


@pytest.mark.parametrize("monthly, yearly", [
    ("applies when cap > 0 USD", "applies when sum of cap over year > 0 USD"),
    ("applies when count of members > 5", "applies when sum of count of members over year > 5"),
    ("paid 50% in Q1 when cap > 0 USD, rest in Q4", "paid 50% in Q1 when sum of cap over year > 0 USD, rest in Q4")])
def test_a_pools_conditions_read_no_monthly_value(monthly, yearly):
    """Decided once for the year: a monthly line or sum there has no meaning (the interpreter read
    December's, or failed; the SQL could not compile it). Its sum over the year is fine."""
    assert codes(f'pool c "C":\n    amount 10 USD\n    {monthly}\nend\n') == ["E0306"]
    assert codes(f'pool c "C":\n    amount 10 USD\n    {yearly}\nend\n') == []


def test_pools_that_read_each_other_are_a_cycle():
    assert "E0205" in codes('pool c "C":\n    amount 10 USD\n    paid 100% in Q4 when d > 0 USD\nend\n'
                            'pool d "D":\n    amount c\nend\n')
