"""`capdsl reconcile` (what was paid against what the contract says) and `capdsl retro` (what past
months owe once the panel has changed), on the interpreter and DuckDB, end to end."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.errors import CapError
from capdsl.pipeline import Run
from capdsl.tools.cli import main
from capdsl.tools.reconcile import run_reconcile
from capdsl.tools.retro import look_back, run_retro
from test_payment_terms import EVENTS, MEMBERS, QUARTERLY

D = Decimal
ENGINES = ["python", "duckdb"]

# January: M3 underpaid by 1, M2 paid before joining, M9 unknown; February: M1 only, and the global sum
# itemised short by 10; a practice that is not on the panel
REMITTANCE = """practice_id,month,line,member_id,amount,reference
P1,2011-01,,M1,20.00,chk 1
P1,2011-01,,M3,19.00,chk 1
P1,2011-01,,M4,20.00,chk 1
P1,2011-01,,M2,20.00,chk 1
P1,2011-01,,M9,10.00,chk 1
P1,2011-02,,M1,10.00,chk 2
P1,2011-02,global_sum,,20.00,chk 2
P2,2011-02,,,50.00,chk 2
"""
# the panel the past months were paid on: no M2 yet, M3 still enrolled, M4 with another birth date and an end
PAID_MEMBERS = """member_id,practice_id,birth_date,enrolled_from,enrolled_to
M1,P1,1970-01-01,2010-01-01,
M3,P1,1990-03-03,2010-01-01,
M4,P1,1926-03-20,2010-01-01,2011-03-31
"""


@pytest.fixture
def files(tmp_path) -> dict:
    for name, text in (("q.cap", QUARTERLY), ("members.csv", MEMBERS), ("events.csv", EVENTS),
                       ("remit.csv", REMITTANCE), ("paid.csv", PAID_MEMBERS)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    return {k: str(tmp_path / v) for k, v in (("contract", "q.cap"), ("members", "members.csv"),
                                               ("events", "events.csv"), ("remittance", "remit.csv"),
                                               ("paid", "paid.csv"))}


def reconcile(files, engine, **kw):
    run = Run(files={"members": files["members"], "events": files["events"]}, period="2011-Q1", engine=engine)
    return run_reconcile(files["contract"], run, files["remittance"], **{"everything": True, **kw})


def rows(rec) -> list[tuple]:
    return [(r.level, r.practice_id, r.month, r.line, r.member_id, r.expected, r.paid, r.difference, r.status)
            for r in rec.rows]


@pytest.mark.parametrize("engine", ENGINES)
def test_every_discrepancy_with_its_reason(files, engine):
    rec = reconcile(files, engine)
    got = {(r.level, r.practice_id, r.month, r.line or r.member_id): r for r in rec.rows}
    assert got["practice", "P1", "2011-01", "total"].status == "overpaid"
    assert got["practice", "P1", "2011-01", "total"].difference == D("27.75")  # 89 paid, 61.25 (with the pool)
    assert got["practice", "P1", "2011-03", "total"].reason == "not paid"
    assert got["practice", "P2", "2011-02", "total"].reason == "the practice is not on the panel"
    line = got["line", "P1", "2011-02", "global_sum"]
    assert (line.expected, line.paid, line.status) == (D("30.00"), D("20.00"), "underpaid")
    assert ("line", "P1", "2011-01", "global_sum") not in got  # January is paid per member, not itemised
    m3 = got["member", "P1", "2011-01", "M3"]
    assert (m3.expected, m3.paid, m3.status) == (D("20.00"), D("19.00"), "underpaid")
    assert m3.reason == "the contract gives global_sum 10.00 + registration 10.00"
    assert got["member", "P1", "2011-01", "M2"].reason == "the member does not count in 2011-01 (enrolled " \
                                                          "2011-02-15 to …)"
    assert got["member", "P1", "2011-01", "M9"].reason == "the member is not on the panel"
    assert got["member", "P1", "2011-01", "M1"].status == "matched"
    assert got["member", "P1", "2011-03", "M1"].reason == "not paid; the contract gives claims 700.00 + global_sum 10.00"
    assert rec.attributable == ("registration", "global_sum", "stop_loss", "claims")
    assert rec.counts()["member"]["matched"] == [3, D("0.00")]
    only = reconcile(files, engine, everything=False)
    assert only.counts() == rec.counts() and only.rows == rec.discrepancies


def test_the_interpreter_and_duckdb_reconcile_alike(files):
    assert rows(reconcile(files, "python")) == rows(reconcile(files, "duckdb"))


def test_a_tolerance_matches_small_differences(files):
    rec = reconcile(files, "duckdb", tolerance=D("1.00"))
    m3 = next(r for r in rec.rows if r.member_id == "M3" and r.month == "2011-01")
    assert m3.status == "matched" and m3.difference == D("-1.00")


def test_the_command_in_every_format(files, tmp_path):
    base = ["reconcile", files["contract"], "--members", files["members"], "--events", files["events"],
            "--remittance", files["remittance"], "--period", "2011-Q1"]
    table = CliRunner().invoke(main, base)
    assert table.exit_code == 0, table.output
    assert "underpaid" in table.stdout and "[1] not paid" in table.stdout
    checked = CliRunner().invoke(main, base + ["--check", "-q"])
    assert checked.exit_code == 1
    data = json.loads(CliRunner().invoke(main, base + ["--format", "json"]).stdout)
    assert data["summary"]["member"]["unexplained"] == {"count": 2, "difference": "30.00"}
    assert all(r["status"] != "matched" for r in data["rows"])
    everything = CliRunner().invoke(main, base + ["--all", "-o", str(tmp_path / "out" / "all.csv")])
    assert everything.exit_code != 0 and "E0" in everything.output  # a missing folder: a clear error
    out = tmp_path / "all.csv"
    assert CliRunner().invoke(main, base + ["--all", "-o", str(out)]).exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("level,practice_id,month,line,member_id,expected,paid,difference,status,reason")
    assert ",matched," in text
    html = tmp_path / "r.html"
    assert CliRunner().invoke(main, base + ["-o", str(html)]).exit_code == 0
    assert "<title>Reconciliation — Quarterly — 2011-Q1</title>" in html.read_text(encoding="utf-8")


def _as_parquet(csv_path: str, out: Path, month=None) -> str:
    import duckdb

    con = duckdb.connect()
    select = "SELECT * REPLACE (CAST(amount AS DECIMAL(18, 2)) AS amount"
    select += f", CASE WHEN member_id = 'M4' THEN '{month}' ELSE month END AS month)" if month else ")"
    con.execute(f"COPY ({select} FROM read_csv('{csv_path}', all_varchar = true)) TO '{out}' (FORMAT parquet)")
    con.close()
    return str(out)


def test_a_parquet_remittance_is_read_where_it_lies_and_reconciles_as_csv(files, tmp_path):
    """A Parquet remittance is checked and read through a view over the file (not copied): the same
    comparison as the CSV's, and a bad month is still named by its row (a Parquet row is its record
    number: no header)."""
    parquet = _as_parquet(files["remittance"], tmp_path / "remit.parquet")
    assert rows(reconcile({**files, "remittance": parquet}, "duckdb")) == rows(reconcile(files, "duckdb"))
    bad = _as_parquet(files["remittance"], tmp_path / "bad.parquet", month="2011-13")
    with pytest.raises(CapError) as caught:
        reconcile({**files, "remittance": bad}, "duckdb")
    assert "row 3, column month: '2011-13' is not a month" in str(caught.value.diagnostics[0].message)


@pytest.mark.parametrize("engine", ENGINES)
def test_only_the_practices_asked_for_are_reconciled(files, engine):
    rec = reconcile(files, engine, practices=("P1",))
    assert {r.practice_id for r in rec.rows} == {"P1"}
    every = reconcile(files, engine)
    assert [r for r in every.rows if r.practice_id == "P1"] == rec.rows


def test_a_remittance_month_that_is_not_a_month_is_named_by_row(files, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("practice_id,month,amount\nP1,2011-01,10\nP1,2011-2,10\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["reconcile", files["contract"], "--members", files["members"],
                                       "--remittance", str(bad), "--period", "2011-Q1"])
    assert result.exit_code == 1
    assert "error[E0740]: row 3, column month: '2011-2' is not a month" in result.output
    assert "Traceback" not in result.output


def test_an_amount_that_is_not_a_number_is_named_by_row_and_column(files, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("practice_id,month,amount\nP1,2011-01,ten\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["reconcile", files["contract"], "--members", files["members"],
                                       "--remittance", str(bad), "--period", "2011-Q1"])
    assert result.exit_code == 1 and "row 2" in result.output and "amount" in result.output


def test_retro_pays_what_past_months_owe_as_lines_of_the_period(files):
    run = Run(files={"members": files["members"], "events": files["events"]}, period="2011-06", engine="duckdb")
    retro = run_retro(files["contract"], run, {"members": files["paid"], "events": files["events"]}, months=5,
                      members=True)
    (st,) = retro.result.statements
    adjustments = {line.id: line for line in st.lines if line.kind == "adjustment"}
    assert adjustments["registration:retro"].amount == D("20.00")  # April's list: M2 and M4 at 20, not M3
    assert adjustments["global_sum:retro"].amount == D("20.00")
    assert adjustments["global_sum:retro"].note == "2 months changed: 2011-04, 2011-05"
    assert any(line.kind == "line" for line in st.lines)  # the period's own lines too
    by_member = {(a.member_id, a.month): a for a in retro.members}
    assert by_member["M2", "2011-04"].reason == "added since (a retroactive enrolment)"
    assert by_member["M3", "2011-04"].adjustment == D("-20.00")
    assert by_member["M4", "2011-04"].reason == ("birth date corrected from 1926-03-20 to 1926-02-20; "
                                                 "enrolment end changed from 2011-03-31 to open")
    assert sum(a.adjustment for a in retro.members) == sum(a.amount for a in adjustments.values())
    assert retro.window == ("2011-01", "2011-05")


def test_retro_streams_the_member_shares_through_files_it_removes(files, tmp_path, monkeypatch):
    """Per member, both panels' shares go through Parquet files (a national panel's member-months
    are not held in memory), in a folder of their own that is gone afterwards, also after a
    failure."""
    import tempfile

    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    run = Run(files={"members": files["members"], "events": files["events"]}, period="2011-06", engine="duckdb")
    retro = run_retro(files["contract"], run, {"members": files["paid"], "events": files["events"]}, months=5,
                      members=True)
    assert retro.members and list(spill.iterdir()) == []
    broken = tmp_path / "broken.csv"
    broken.write_text("member_id,practice_id,birth_date\nM1,P1,not a date\n", encoding="utf-8")
    with pytest.raises(CapError):
        run_retro(files["contract"], run, {"members": str(broken)}, months=5, members=True)
    assert list(spill.iterdir()) == []


def test_retro_needs_a_look_back(files):
    run = Run(files={"members": files["members"]}, period="2011-06", engine="duckdb")
    with pytest.raises(CapError) as caught:
        run_retro(files["contract"], run, {"members": files["paid"]})
    assert caught.value.code == "E0934"


def test_the_contract_states_its_look_back(files, tmp_path):
    contract = Path(files["contract"])
    text = contract.read_text(encoding="utf-8").replace("    list as of quarter_start\n",
                                                        "    list as of quarter_start\n    retroactive 3 months\n")
    (tmp_path / "r.cap").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["retro", str(tmp_path / "r.cap"), "--members", files["members"],
                                       "--events", files["events"], "--paid-members", files["paid"], "--period",
                                       "2011-06", "--only-adjustments", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "registration:retro" in result.stdout and "(2011-03 to 2011-05)" in result.stdout
    bad = CliRunner().invoke(main, ["check", str(tmp_path / "r.cap").replace("r.cap", "bad.cap")])
    (tmp_path / "bad.cap").write_text(text.replace("retroactive 3 months", "retroactive 0 months"), "utf-8")
    bad = CliRunner().invoke(main, ["check", str(tmp_path / "bad.cap")])
    assert "E0112" in bad.output


def test_look_back_crosses_the_year():
    from datetime import date

    assert look_back(date(2011, 2, 1), 3) == [date(2010, 11, 1), date(2010, 12, 1), date(2011, 1, 1)]


ROOT = Path(__file__).resolve().parent.parent


def _doc_block(after: str) -> list[str]:
    text = (ROOT / "docs" / "reconcile.md").read_text(encoding="utf-8")
    block = text[text.index(after):].split("```text\n", 1)[1].split("```", 1)[0]
    return [line.rstrip() for line in block.splitlines()]


def test_the_worked_example_of_the_docs_is_what_the_command_prints():
    ex = ROOT / "examples"
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, [
        "reconcile", str(ROOT / "contracts" / "us_pmpm.cap"), "--members", str(ex / "members.csv"),
        "--practices", str(ex / "practices.csv"), "--events", str(ex / "events.csv"), "--measures",
        str(ex / "measures.csv"), "--period", "2011-03", "--remittance", str(ex / "remittance_2011-03.csv"),
        "--practice", "P00001", "--practice", "P00002", "-q"])
    assert result.exit_code == 0, result.output
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    block = _doc_block("## A worked example")
    assert printed[-len(block):] == block


def test_the_retro_example_of_the_docs_is_what_the_command_prints():
    ex = ROOT / "examples" / "retro"
    base = ["retro", str(ROOT / "contracts" / "us_pmpm.cap"), "--members", str(ex / "members.csv"),
            "--paid-members", str(ex / "members_paid.csv"), "--period", "2011-06", "--months", "12", "-q"]
    detail = CliRunner().invoke(main, base + ["--detail", "member"])
    assert [line.rstrip() for line in detail.stdout.splitlines()] == _doc_block("`--detail member` gives")
    table = CliRunner(env={"COLUMNS": "80"}).invoke(main, base + ["--only-adjustments"])
    shown = [line for line in _doc_block("examples/retro/members_paid.csv") if line != "…"]
    printed = [line.rstrip() for line in table.stdout.splitlines()]
    assert all(line in printed for line in shown) and printed[-1] == shown[-1]


@pytest.mark.spark
def test_spark_reconciles_as_duckdb(files, spark):
    """The statements and the member shares computed on Spark (the session the fixture started)."""
    assert rows(reconcile(files, "spark")) == rows(reconcile(files, "duckdb"))


@pytest.mark.spark
def test_spark_retro_is_duckdbs(files, spark):
    """With the spark engine the per-member shares are computed where the statements are, on Spark
    (written as Parquet part files), and give the same adjustments to the cent."""
    def retro(engine):
        run = Run(files={"members": files["members"], "events": files["events"]}, period="2011-06", engine=engine)
        return run_retro(files["contract"], run, {"members": files["paid"], "events": files["events"]}, months=5,
                         members=True)

    on_spark, on_duckdb = retro("spark"), retro("duckdb")
    assert on_spark.members == on_duckdb.members and on_spark.members
    assert [(st.practice_id, [(line.id, line.amount) for line in st.lines]) for st in on_spark.result.statements] \
        == [(st.practice_id, [(line.id, line.amount) for line in st.lines]) for st in on_duckdb.result.statements]


def test_from_the_payers_files_834_and_820(tmp_path):
    """The sample X12 files end to end: the February 834 as the panel, the 820 as the remittance, and
    the January 834 as the panel January was paid on."""
    pytest.importorskip("pyx12")
    x12 = ROOT / "examples" / "x12"
    for month in ("01", "02"):
        made = CliRunner().invoke(main, ["panel", "from-834", str(x12 / f"members_2011-{month}.834"),
                                         "-o", str(tmp_path / f"members_{month}.csv")])
        assert made.exit_code == 0, made.output
    contract = str(ROOT / "contracts" / "us_pmpm.cap")
    result = CliRunner().invoke(main, ["reconcile", contract, "--members", str(tmp_path / "members_02.csv"),
                                       "--remittance", str(x12 / "remittance_2011-02.820"), "--period", "2011-02",
                                       "--format", "json", "-q"])
    assert result.exit_code == 0, result.output
    got = {(r["level"], r["line"] or r["member_id"]): r for r in json.loads(result.stdout)["rows"]}
    assert got["member", "M90000003"]["status"] == "overpaid" and got["member", "M90000003"]["paid"] == "110.00"
    assert got["member", "M90000007"]["status"] == "underpaid" and got["member", "M90000007"]["paid"] == "80.00"
    assert got["member", "M90000005"]["reason"].startswith("the member does not count in 2011-02")
    assert got["member", "M90000099"]["reason"] == "the member is not on the panel"
    assert got["line", "adjustment:53"]["status"] == "unexplained"
    retro = CliRunner().invoke(main, ["retro", contract, "--members", str(tmp_path / "members_02.csv"),
                                      "--paid-members", str(tmp_path / "members_01.csv"), "--period", "2011-02",
                                      "--months", "1", "--detail", "member", "-q"])
    assert retro.exit_code == 0, retro.output
    assert "M90000009,2011-01,,100.00,100.00,added since (a retroactive enrolment)" in retro.stdout


EXAMPLE = ["reconcile", "contracts/us_pmpm.cap", "--panel", "examples", "--remittance",
           "examples/remittance_2011-03.csv", "--period", "2011-03", "-q"]
ROOT = Path(__file__).resolve().parent.parent


def test_a_narrow_terminal_gets_every_amount_whole():
    """Below 72 columns the tables are a line per amount: nothing is cut short with an ellipsis."""
    import os
    import subprocess
    import sys

    data = json.loads(CliRunner().invoke(main, [*EXAMPLE, "--format", "json"]).stdout)
    env = {**os.environ, "COLUMNS": "40"}
    text = subprocess.run([sys.executable, "-m", "capdsl", *EXAMPLE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300).stdout
    assert "…" not in text
    joined = " ".join(text.split())  # a line may wrap at a space
    for r in data["rows"][:50]:
        assert f"expected {r['expected'] or '—'}, paid {r['paid'] or '—'}" in joined, r


def test_a_closed_pipe_ends_the_table_quietly_with_141():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "capdsl", *EXAMPLE], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and "Traceback" not in err, err
