"""`capdsl eval`'s statement outputs: `--by month`, `--practice`, `--summary`, the terminal table at
80 columns (goldens in tests/golden/statements/), spreadsheet-safe CSV and the W0960 warning for a
period nobody is enrolled in.

Regenerate a golden only after reviewing the change: `CAPDSL_REGOLD=1 pytest tests/test_statement_outputs.py`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from capdsl.tools.cli import main
from statement_panel import contract, eval_argv, write_panel

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "statements"

BODY = '''inputs:
    practice akord: bool = false
    practice weekly_hours: number = 0
    measure quality: percent
end

define rate = 100.333 CZK

line capitation "Capitation (age-weighted, per registered insured person)" = sum of rate over members

line supplement "AKORD supplement":
    amount 10 CZK * count of members
    applies when practice.akord and practice.weekly_hours >= 30
end

'''
CONTRACT = contract("Outputs test", BODY)

MEMBERS = """member_id,practice_id,birth_date,enrolled_from,enrolled_to
M1,P1,1970-01-01,,
M2,P1,1980-05-05,2011-02-01,
M3,P1,1990-01-01,,2011-11-30
M4,=HYPERLINK("x"),1960-01-01,,
M5,P2,1950-03-03,,
"""
PRACTICES = """practice_id,akord,weekly_hours
P1,true,20
P2,false,40
"=HYPERLINK(""x"")",true,40
"""


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    folder = write_panel(tmp_path_factory.mktemp("outputs"), CONTRACT, MEMBERS, PRACTICES)
    return folder


args = eval_argv


def run(*argv: str, env=None):
    return CliRunner(env=env).invoke(main, list(argv), catch_exceptions=False)


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# ─────────────────────────────── --by month ──────────────────────────────

@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_months_add_up_to_the_period_in_csv(panel, engine):
    out = run(*args(panel, "--period", "2011", "--by", "month", "--format", "csv", "--engine", engine))
    assert out.exit_code == 0, out.output
    table = rows(out.stdout)
    assert list(table[0]) == ["practice_id", "month", "line", "label", "kind", "amount", "currency", "basis",
                              "basis_unit", "applied", "note", "report_amount", "report_currency"]
    period = {(r["practice_id"], r["line"]): r for r in table if r["month"] == ""}
    months = sorted({r["month"] for r in table if r["month"]})
    assert months == [f"2011-{m:02d}" for m in range(1, 13)]
    for (pid, line), total in period.items():
        parts = [r for r in table if r["month"] and r["practice_id"] == pid and r["line"] == line]
        assert len(parts) == 12
        # exact in both currencies: each month is rounded by the backend, the report amounts are the
        # running total's conversion less the months before
        assert sum(Decimal(r["amount"]) for r in parts) == Decimal(total["amount"]), (pid, line)
        assert sum(Decimal(r["report_amount"]) for r in parts) == Decimal(total["report_amount"]), (pid, line)
    # a pool's installments fall in the last month of their quarter
    bonus = {r["month"]: Decimal(r["amount"]) for r in table if r["practice_id"] == "P1" and r["line"] == "bonus"
             and r["month"]}
    assert bonus["2011-06"] == Decimal("600.00") and bonus["2011-12"] == Decimal("600.00")
    assert sum(bonus.values()) == Decimal("1200.00")
    # the basis is the month's members, the period's member-months
    cap = [r for r in table if r["practice_id"] == "P1" and r["line"] == "capitation"]
    assert cap[0]["basis_unit"] == "members" and cap[-1]["basis_unit"] == "member-months"


def test_rounding_rule_a_period_is_the_sum_of_its_rounded_months(panel):
    """100.333 CZK a member: each month is rounded (2 members → 200.67 in January), and the period is
    the sum of those rounded months, not the period's exact sum rounded once."""
    out = run(*args(panel, "--period", "2011-Q1", "--by", "month", "--format", "csv", "--practice", "P1"))
    table = [r for r in rows(out.stdout) if r["line"] == "capitation"]
    by_month = {r["month"]: Decimal(r["amount"]) for r in table}
    assert by_month["2011-01"] == Decimal("200.67")  # 2 × 100.333 = 200.666
    assert by_month["2011-02"] == Decimal("301.00")  # 3 × 100.333 = 300.999
    assert by_month[""] == by_month["2011-01"] + by_month["2011-02"] + by_month["2011-03"]
    assert by_month[""] != (Decimal("100.333") * 8).quantize(Decimal("0.01"))  # 802.66, not 802.67


def test_json_carries_the_months_and_matches_the_schema(panel):
    out = run(*args(panel, "--period", "2011-Q4", "--by", "month", "--format", "json"))
    data = json.loads(out.stdout)
    st = data["statements"][0]
    assert [m["month"] for m in st["months"]] == ["2011-10", "2011-11", "2011-12"]
    for i, line in enumerate(st["lines"]):
        assert sum(Decimal(m["lines"][i]["amount"]) for m in st["months"]) == Decimal(line["amount"])
    assert sum(Decimal(m["total"]) for m in st["months"]) == Decimal(st["total"])
    assert sum(Decimal(m["report_total"]) for m in st["months"]) == Decimal(st["report_total"])
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(run("schema").stdout)
    jsonschema.validate(data, schema)
    assert "months" in schema["$defs"]["Statement"]["properties"]
    assert "MonthStatement" in schema["$defs"] and "PracticeTotal" in schema["$defs"]
    # without --by month the JSON is as before: no `months`, no `summary`
    plain = json.loads(run(*args(panel, "--period", "2011-Q4", "--format", "json")).stdout)
    assert "months" not in plain["statements"][0] and "summary" not in plain
    jsonschema.validate(plain, schema)


def test_parquet_has_the_month_column(panel, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "s.parquet"
    out = run(*args(panel, "--period", "2011-Q1", "--by", "month", "-o", str(target)))
    assert out.exit_code == 0, out.output
    table = pq.read_table(target)
    assert table.column_names[:3] == ["practice_id", "month", "line"]
    assert str(table.schema.field("amount").type).startswith("decimal128")
    csv_rows = rows(run(*args(panel, "--period", "2011-Q1", "--by", "month", "--format", "csv",
                              "--raw-cells")).stdout)
    assert table.num_rows == len(csv_rows)


def test_by_month_of_a_month_is_that_month(panel):
    table = rows(run(*args(panel, "--period", "2011-03", "--by", "month", "--format", "csv")).stdout)
    assert {r["month"] for r in table} == {"2011-03", ""}


# ───────────────────────────── --practice, --summary ─────────────────────

def test_practice_filters_and_totals_follow(panel):
    out = run(*args(panel, "--period", "2011-03", "--format", "json", "--practice", "P2", "--practice", "P1"))
    data = json.loads(out.stdout)
    assert [s["practice_id"] for s in data["statements"]] == ["P1", "P2"]  # the panel's order
    assert Decimal(data["total"]) == sum(Decimal(s["total"]) for s in data["statements"])


def test_an_unknown_practice_is_an_error_with_the_closest_ids(panel):
    out = run(*args(panel, "--period", "2011-03", "--practice", "P3"))
    assert out.exit_code == 1
    assert "E0908" in out.output and "did you mean" in out.output and "P1" in out.output


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_summary_one_row_per_practice(panel, fmt):
    out = run(*args(panel, "--period", "2011-Q1", "--summary", "--format", fmt), env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    if fmt == "csv":
        table = rows(out.stdout)
        assert list(table[0]) == ["practice_id", "total", "currency", "report_total", "report_currency", "lines"]
        assert [r["practice_id"] for r in table] == ["'=HYPERLINK(\"x\")", "P1", "P2"]
        assert all(r["lines"] == "4" for r in table)
    elif fmt == "json":
        data = json.loads(out.stdout)
        assert data["statements"] == [] and len(data["summary"]) == 3
        assert Decimal(data["total"]) == sum(Decimal(r["total"]) for r in data["summary"])
    else:
        assert "Grand total (3 practices)" in out.stdout and "Capitation" not in out.stdout


def test_summary_by_month(panel):
    table = rows(run(*args(panel, "--period", "2011-Q1", "--summary", "--by", "month", "--format", "csv")).stdout)
    assert list(table[0])[:2] == ["practice_id", "month"]
    p1 = [r for r in table if r["practice_id"] == "P1"]
    assert [r["month"] for r in p1] == ["2011-01", "2011-02", "2011-03", ""]
    assert sum(Decimal(r["total"]) for r in p1[:3]) == Decimal(p1[3]["total"])


# ─────────────────────────── the terminal table ──────────────────────────

def _table_text(panel, *more: str, plain: bool) -> str:
    """The table as `eval` draws it on an 80-column terminal (plain: into a pipe or file)."""
    from capdsl.pipeline import compiled_file, evaluate
    from capdsl.pipeline import Run
    from capdsl.tools import render

    run_ = Run(files={"members": str(panel / "members.csv"), "practices": str(panel / "practices.csv"),
                      "measures": str(panel / "measures.csv")}, period=more[0], engine="python")
    result, _ = evaluate(compiled_file(panel / "c.cap"), run_, by_month="month" in more, practices=("P1", "P2"))
    result.path = "c.cap"
    buf = io.StringIO()
    console = Console(file=buf, width=80, highlight=False, color_system=None, force_terminal=False)
    render.table(result, console, plain=plain)
    return buf.getvalue()


@pytest.mark.parametrize("name, more, plain", [
    ("quarter_80", ("2011-Q4",), False),
    ("quarter_80_plain", ("2011-Q4",), True),
    ("by_month_80_plain", ("2011-Q2", "month"), True),
])
def test_table_at_80_columns_matches_golden(panel, name, more, plain):
    text = _table_text(panel, *more, plain=plain)
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("CAPDSL_REGOLD"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    for line in text.splitlines():
        assert len(line) <= 80, line
    if plain:
        assert not set("│┃━─┏┓") & set(text) and all(line == line.rstrip() for line in text.splitlines())


def test_table_notes_name_the_failed_part_and_do_not_dangle(panel):
    text = _table_text(panel, "2011-Q4", plain=True)
    assert "not applied: `practice.weekly_hours >= 30` does not hold" in text  # P1: akord, 20 hours
    assert "not applied: `practice.akord` is false" in text  # P2
    assert "annual pool 1,200.00: Q4 rest" in text  # only the period's installments
    assert "annual pool 0.00:" not in text and ": \n" not in text
    # every identifier of a note on one line: footnotes wrap at spaces only
    assert "`practice.weekly_hours" in text and "`practice.akord`" in text
    assert "-2.00" in text or "-3.00" in text  # the deduction is marked with its sign


def test_negative_amounts_are_red_on_a_terminal(panel, tmp_path):
    from capdsl.tools.render import _amount_cell

    assert "red" in str(_amount_cell(Decimal("-1.00")).style) and not str(_amount_cell(Decimal("1.00")).style)


def test_piped_table_is_plain_text(panel):
    env = {**os.environ, "COLUMNS": "80", "CAPDSL_NO_CACHE": "1"}
    proc = subprocess.run([sys.executable, "-m", "capdsl", *args(panel, "--period", "2011-Q4")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout and not set("│┃━┏┓╇") & set(proc.stdout)
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_table_to_a_file_is_plain(panel, tmp_path):
    out = run(*args(panel, "--period", "2011-03", "-o", str(tmp_path / "s.txt")))
    assert out.exit_code == 0, out.output
    text = (tmp_path / "s.txt").read_text(encoding="utf-8")
    assert "Capitation" in text and not set("│┃━┏┓╇") & set(text)


def test_condition_parts_split_at_top_level_and_only():
    from capdsl.evaluation import tree as t
    from capdsl.evaluation.interpret import condition_parts

    node = t.And((t.Const(True, "bool"), t.Const(True, "bool")))
    assert [p for p, _ in condition_parts("a and (b or c and d)", node)] == ["a", "(b or c and d)"]
    assert [p for p, _ in condition_parts('x = "band and" and brand', node)] == ['x = "band and"', "brand"]
    assert condition_parts("a and b and c", node) is None  # three parts, two items: not split
    assert condition_parts("a", t.Const(True, "bool")) is None


# ─────────────────────────── spreadsheet-safe CSV ────────────────────────

def test_csv_text_cells_are_spreadsheet_safe(panel):
    table = rows(run(*args(panel, "--period", "2011-03", "--format", "csv")).stdout)
    ids = {r["practice_id"] for r in table}
    assert "'=HYPERLINK(\"x\")" in ids and '=HYPERLINK("x")' not in ids
    # amounts are never rewritten: a negative amount stays a number
    assert any(r["amount"].startswith("-") for r in table)
    assert not any(r["amount"].startswith("'") or r["report_amount"].startswith("'") for r in table)


def test_raw_cells_writes_text_as_is(panel):
    table = rows(run(*args(panel, "--period", "2011-03", "--format", "csv", "--raw-cells")).stdout)
    assert '=HYPERLINK("x")' in {r["practice_id"] for r in table}


@pytest.mark.parametrize("text, safe", [("=1+1", "'=1+1"), ("+420", "'+420"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"),
                                        ("\tx", "'\tx"), ("\rx", "'\rx"), ("P1", "P1"), ("a=b", "a=b"), ("", "")])
def test_spreadsheet_safe(text, safe):
    from capdsl.tools.render import spreadsheet_safe

    assert spreadsheet_safe(text) == safe


def test_json_and_parquet_keep_text_raw(panel, tmp_path):
    data = json.loads(run(*args(panel, "--period", "2011-03", "--format", "json")).stdout)
    assert '=HYPERLINK("x")' in {s["practice_id"] for s in data["statements"]}


# ─────────────────────────── nobody enrolled ─────────────────────────────

def test_a_period_nobody_is_enrolled_in_warns(tmp_path):
    (tmp_path / "c.cap").write_text(CONTRACT, encoding="utf-8")
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date,enrolled_from,enrolled_to\n"
                                          "M1,P1,1970-01-01,2010-01-01,2010-06-30\n"
                                          "M2,P1,1970-01-01,2012-01-01,\n", encoding="utf-8")
    base = ["eval", str(tmp_path / "c.cap"), "--members", str(tmp_path / "members.csv"), "--format", "csv"]
    out = run(*base, "--period", "2011-Q1")
    assert out.exit_code == 0
    assert "warning[W0960]" in out.stderr and "none of the 2 members is enrolled in 2011-Q1" in out.stderr
    assert "2010-01-01" in out.stderr
    # JSON carries it too, and a period someone is enrolled in does not warn
    data = json.loads(run(*base[:-1], "json", "--period", "2011-Q1", "--quiet").stdout)
    assert any("W0960" in w for w in data["warnings"])
    assert "W0960" not in run(*base, "--period", "2010-03").stderr


def test_a_panel_born_after_the_period_warns(tmp_path):
    (tmp_path / "c.cap").write_text(CONTRACT, encoding="utf-8")
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date\nM1,P1,2015-01-01\n", encoding="utf-8")
    out = run("eval", str(tmp_path / "c.cap"), "--members", str(tmp_path / "members.csv"), "--period", "2011-03",
              "--format", "csv")
    assert "W0960" in out.stderr


def test_eval_options_are_documented():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for option in ("--by month", "--practice", "--summary", "--raw-cells", "W0960"):
        assert option in text, option


def test_summary_parquet(panel, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "summary.parquet"
    assert run(*args(panel, "--period", "2011-Q1", "--summary", "-o", str(target))).exit_code == 0
    table = pq.read_table(target)
    assert table.column_names == ["practice_id", "total", "currency", "report_total", "report_currency", "lines"]
    assert str(table.schema.field("total").type).startswith("decimal128") and table.num_rows == 3


def test_a_failed_part_that_reads_members_falls_back_to_the_whole_condition(panel, tmp_path):
    """`count of members > 100` needs the practice's members, which the note does not re-read: when
    only such a part failed, the note quotes the whole condition."""
    text = CONTRACT.replace("applies when practice.akord and practice.weekly_hours >= 30",
                            "applies when practice.akord and count of members > 100")
    (tmp_path / "c.cap").write_text(text, encoding="utf-8")
    table = rows(run("eval", str(tmp_path / "c.cap"), "--members", str(panel / "members.csv"), "--practices",
                     str(panel / "practices.csv"), "--measures", str(panel / "measures.csv"), "--quiet",
                     "--period", "2011-03", "--format", "csv").stdout)
    notes = {r["practice_id"]: r["note"] for r in table if r["line"] == "supplement"}
    assert notes["P1"] == "not applied: `practice.akord and count of members > 100` does not hold"
    assert notes["P2"] == "not applied: `practice.akord` is false"


@pytest.mark.parametrize("width", ["80", "60", "40"])
def test_a_long_basis_label_never_cuts_an_amount(tmp_path, width):
    """A narrow terminal wraps the label and the basis; every amount is printed whole."""
    contract = tmp_path / "long.cap"
    contract.write_text('contract "Long":\n    currency GBP\nend\n\nline global_sum "Global sum for the registered list":\n'
                        '    amount sum of 112.50 GBP over members\n'
                        '    basis count of members "weighted registered patients on the list"\nend\n', "utf-8")
    members = tmp_path / "members.csv"
    members.write_text("member_id,practice_id,birth_date\n" + "".join(f"M{i},P1,1970-01-01\n" for i in range(381)),
                       "utf-8")
    out = subprocess.run([sys.executable, "-m", "capdsl.tools.cli", "eval", str(contract), "--members", str(members),
                          "--period", "2011-Q1", "--engine", "python"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": width}, check=True).stdout
    assert out.count("128,587.50") == 3  # the line, the total and the grand total
    assert max(len(line) for line in out.splitlines()) <= int(width)


def test_a_fractional_basis_reads_to_two_places_in_the_table_and_exactly_in_csv(tmp_path):
    """Pro-rata member-months: 26.880875576037 in the data, 26.88 member-months for the reader."""
    from decimal import Decimal

    from capdsl.tools.render import basis_text

    assert basis_text(Decimal("26.880875576037"), "member-months") == "26.88 member-months"
    assert basis_text(Decimal("3"), "members") == "3 members"
    assert basis_text(Decimal("1.5"), "points") == "1.5 points"
    (tmp_path / "c.cap").write_text('contract "P":\n    currency EUR\n    exposure pro_rata\nend\n'
                                    'line cap "Cap" = sum of 10 EUR over members\n', encoding="utf-8")
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date,enrolled_from\n"
                                          "M1,P1,1970-01-01,2011-03-10\n", encoding="utf-8")
    base = ["eval", str(tmp_path / "c.cap"), "--members", str(tmp_path / "members.csv"), "--period", "2011-03", "-q"]
    table = CliRunner().invoke(main, base).stdout
    csv_text = CliRunner().invoke(main, [*base, "--format", "csv"]).stdout
    assert "0.71 members" in table  # 22 of 31 days
    assert "0.709677419355" in csv_text
