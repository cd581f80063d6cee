""".xlsx statements out (`capdsl eval … -o statements.xlsx`, `--format xlsx`, `--detail member`):
real workbooks read back with openpyxl and python-calamine, every amount compared exactly with the
JSON output, text cells spreadsheet-safe and never formulas, the header bold and frozen, written
atomically, bytes to a pipe, refused on a terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main
from statement_panel import contract, eval_argv, write_panel

openpyxl = pytest.importorskip("openpyxl")
calamine = pytest.importorskip("python_calamine")

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '=HYPERLINK("x")'

BODY = '''inputs:
    practice akord: bool = false
    measure quality: percent
end

define rate = 100.333 CZK

line capitation "Capitation (age-weighted, per registered insured person)" = sum of rate over members

line supplement "AKORD supplement":
    amount 10 CZK * count of members
    applies when practice.akord
end

'''
BETWEEN = '''line big "A large fixed amount" = 9876543210.99 CZK
'''
CONTRACT = contract("Spreadsheet test", BODY, between=BETWEEN)

MEMBERS = """member_id,practice_id,birth_date,enrolled_from,enrolled_to
M1,P1,1970-01-01,,
M2,P1,1980-05-05,2011-02-01,
M3,P1,1990-01-01,,2011-11-30
"=HYPERLINK(""m"")","=HYPERLINK(""x"")",1960-01-01,,
M5,Příbram,1950-03-03,,
"""
PRACTICES = """practice_id,akord
P1,true
Příbram,false
"=HYPERLINK(""x"")",true
"""


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    folder = write_panel(tmp_path_factory.mktemp("xlsx"), CONTRACT, MEMBERS, PRACTICES)
    return folder


argv = eval_argv


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def as_json(panel, *more: str) -> dict:
    out = run(*argv(panel, "--format", "json", *more))
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def write(panel, tmp_path, name: str, *more: str) -> Path:
    target = tmp_path / name
    out = run(*argv(panel, "-o", str(target), *more))
    assert out.exit_code == 0, out.output
    return target


def exact(value) -> Decimal:
    """A spreadsheet number as the decimal it stands for: the shortest text that gives the same double
    (a decimal of up to 15 significant digits comes back as itself)."""
    assert isinstance(value, (int, float)) and not isinstance(value, bool), value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def openpyxl_rows(path: Path, sheet: str) -> tuple[list[str], list[dict]]:
    book = openpyxl.load_workbook(path)
    rows = list(book[sheet].iter_rows(values_only=True))
    header = list(rows[0])
    return header, [dict(zip(header, r)) for r in rows[1:]]


def calamine_rows(path: Path, sheet: str) -> tuple[list[str], list[dict]]:
    rows = calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_name(sheet).to_python()
    header = list(rows[0])
    return header, [{k: (None if v == "" else v) for k, v in zip(header, r)} for r in rows[1:]]


READERS = [openpyxl_rows, calamine_rows]


def expected_rows(data: dict) -> dict:
    """(practice_id, month, line) → the JSON's amount, basis and report amount."""
    out = {}
    for st in data["statements"]:
        by_id = {line["id"]: line for line in st["lines"]}
        for m in st.get("months", ()):
            for line in m["lines"]:
                out[(st["practice_id"], m["month"], line["id"])] = (line["amount"], line["basis"],
                                                                   line["report_amount"], by_id[line["id"]]["label"])
            out[(st["practice_id"], m["month"], "total")] = (m["total"], None, m["report_total"], "Total")
        for line in st["lines"]:
            out[(st["practice_id"], None, line["id"])] = (line["amount"], line["basis"], line["report_amount"],
                                                          line["label"])
        out[(st["practice_id"], None, "total")] = (st["total"], None, st["report_total"], "Total")
    return out


def unsafe(text: str) -> str:
    return text[1:] if text.startswith("'") else text


# ─────────────────────────── amounts, exactly ───────────────────────────

@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("period, more", [("2011-03", ()), ("2011-Q2", ()), ("2011", ("--by", "month"))])
def test_every_amount_is_the_json_amount(panel, tmp_path, reader, period, more):
    data = as_json(panel, "--period", period, *more)
    target = write(panel, tmp_path, "s.xlsx", "--period", period, *more)
    header, rows = reader(target, "Statements")
    assert header == (["practice_id", "month"] if more else ["practice_id"]) + \
        ["line", "label", "kind", "amount", "currency", "basis", "basis_unit", "applied", "note", "report_amount",
         "report_currency"]
    expected = expected_rows(data)
    assert len(rows) == len(expected)
    seen = set()
    for row in rows:
        key = (unsafe(row["practice_id"]), row.get("month"), row["line"])
        amount, basis, report, label = expected[key]
        seen.add(key)
        assert exact(row["amount"]) == Decimal(amount), key
        assert exact(row["report_amount"]) == Decimal(report), key
        assert (row["basis"] is None) if basis is None else exact(row["basis"]) == Decimal(basis), key
        assert row["label"] == label and row["currency"] == "CZK" and row["report_currency"] == "EUR"
        assert isinstance(row["applied"], bool)
    assert seen == set(expected)
    if period == "2011-03":  # 12 digits and cents: kept exactly by the spreadsheet's double
        assert [exact(r["amount"]) for r in rows if r["line"] == "big"] == [Decimal("9876543210.99")] * 3


@pytest.mark.parametrize("reader", READERS)
def test_summary_rows_are_the_json_rows(panel, tmp_path, reader):
    for more in ((), ("--by", "month")):
        data = as_json(panel, "--period", "2011-Q4", "--summary", *more)
        target = write(panel, tmp_path, "sum.xlsx", "--period", "2011-Q4", "--summary", *more)
        header, rows = reader(target, "Summary")
        assert header[:2] == (["practice_id", "month"] if more else ["practice_id", "total"])
        assert len(rows) == len(data["summary"])
        for row, want in zip(rows, data["summary"]):
            assert unsafe(row["practice_id"]) == want["practice_id"]
            assert row.get("month") == want.get("month")
            assert exact(row["total"]) == Decimal(want["total"])
            assert exact(row["report_total"]) == Decimal(want["report_total"])
            assert exact(row["lines"]) == want["lines"]


def test_the_run_sheet_has_the_grand_total(panel, tmp_path):
    data = as_json(panel, "--period", "2011-Q2")
    target = write(panel, tmp_path, "s.xlsx", "--period", "2011-Q2")
    items = {k: v for k, v in openpyxl.load_workbook(target)["Run"].iter_rows(min_row=2, values_only=True)}
    assert exact(items["total"]) == Decimal(data["total"])
    assert exact(items["report total"]) == Decimal(data["report_total"])
    assert items["period"] == "2011-Q2" and items["currency"] == "CZK" and items["practices"] == 3


# ─────────────────────────── the cells ───────────────────────────

def test_cells_have_types_formats_and_a_bold_frozen_header(panel, tmp_path):
    target = write(panel, tmp_path, "s.xlsx", "--period", "2011-Q2", "--by", "month")
    book = openpyxl.load_workbook(target)
    assert book.sheetnames == ["Statements", "Run"]
    ws = book["Statements"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:M{ws.max_row}"
    header = [c for c in ws[1]]
    assert all(c.font.bold for c in header)
    names = [c.value for c in header]
    for i, name in enumerate(names):
        width = ws.column_dimensions[openpyxl.utils.get_column_letter(i + 1)].width
        assert len(name) < width <= 60, name
    label_width = ws.column_dimensions["D"].width  # the labels: as wide as the longest, here 56 letters
    assert label_width >= len("Capitation (age-weighted, per registered insured person)")
    col = {name: i for i, name in enumerate(names)}
    row = [c for c in ws[2]]
    assert row[col["amount"]].data_type == "n" and row[col["amount"]].number_format == "#,##0.00"
    assert row[col["report_amount"]].number_format == "#,##0.00"
    assert row[col["applied"]].data_type == "b"
    assert row[col["practice_id"]].data_type == "s" and not row[col["practice_id"]].font.bold
    period_rows = [r for r in ws.iter_rows(min_row=2) if r[col["month"]].value is None]
    assert period_rows  # the period's rows have an empty month cell, not ""


def test_a_hostile_id_is_a_safe_string_cell(panel, tmp_path):
    target = write(panel, tmp_path, "s.xlsx", "--period", "2011-03")
    ws = openpyxl.load_workbook(target)["Statements"]
    cells = [r[0] for r in ws.iter_rows(min_row=2) if "HYPERLINK" in str(r[0].value)]
    assert cells and all(c.data_type == "s" and c.value == "'" + HOSTILE for c in cells)
    assert not _formulas(target)
    negative = [r[4].value for r in ws.iter_rows(min_row=2) if r[1].value == "regulation"]
    assert negative and all(isinstance(v, (int, float)) and v < 0 for v in negative)  # never rewritten


def test_raw_cells_keep_the_text_but_never_make_a_formula(panel, tmp_path):
    target = write(panel, tmp_path, "raw.xlsx", "--period", "2011-03", "--raw-cells")
    ws = openpyxl.load_workbook(target)["Statements"]
    cells = [r[0] for r in ws.iter_rows(min_row=2) if "HYPERLINK" in str(r[0].value)]
    assert cells and all(c.data_type == "s" and c.value == HOSTILE for c in cells)
    assert not _formulas(target)
    values = calamine.CalamineWorkbook.from_path(str(target)).get_sheet_by_name("Statements").to_python()
    assert HOSTILE in {r[0] for r in values}


def _formulas(path: Path) -> bool:
    with zipfile.ZipFile(path) as z:
        return any(b"<f>" in z.read(n) or b"<f " in z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/"))


def test_characters_xml_cannot_hold_are_replaced(panel, tmp_path):
    from capdsl.pipeline import Run, compiled_file, evaluate
    from capdsl.tools.xlsx_out import write_statements

    files = {t: str(panel / f"{t}.csv") for t in ("members", "practices", "measures")}
    result, _ = evaluate(compiled_file(panel / "c.cap"), Run(files=files, period="2011-03"))
    result.statements[0].practice_id = "P\x01\x1f\tx"
    write_statements(result, tmp_path / "c.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "c.xlsx")["Statements"]
    assert ws["A2"].value == "P\ufffd\ufffd\tx"


# ─────────────────────────── member detail ───────────────────────────

@pytest.mark.parametrize("reader", READERS)
def test_detail_numbers_are_the_json_numbers(panel, tmp_path, reader):
    data = as_json(panel, "--period", "2011-Q2", "--detail", "member")
    target = write(panel, tmp_path, "d.xlsx", "--period", "2011-Q2", "--detail", "member")
    header, rows = reader(target, "Detail")
    assert header == data["columns"]
    assert len(rows) == len(data["rows"]) > 0
    for row, want in zip(rows, data["rows"]):
        for name, value in zip(header, want):
            got = row[name]
            if value is None:
                assert got is None
            elif name in ("practice_id", "member", "month"):
                assert unsafe(got) == value
            else:
                assert exact(got) == Decimal(str(value)), (name, got, value)
    book = openpyxl.load_workbook(target)
    assert book.sheetnames == ["Detail", "Aggregates"]
    aggregates = dict(book["Aggregates"].iter_rows(min_row=2, values_only=True))
    assert aggregates == data["aggregates"]
    ws = book["Detail"]
    assert ws.freeze_panes == "A2" and all(c.font.bold for c in ws[1])
    hostile = [r[1] for r in ws.iter_rows(min_row=2) if "HYPERLINK" in str(r[1].value)]
    assert hostile and all(c.data_type == "s" and c.value == "'=HYPERLINK(\"m\")" for c in hostile)


# ─────────────────────────── where it goes ───────────────────────────

def test_format_xlsx_wins_over_the_extension(panel, tmp_path):
    target = write(panel, tmp_path, "s.bin", "--period", "2011-03", "--format", "xlsx")
    assert target.read_bytes()[:4] == b"PK\x03\x04"
    assert openpyxl.load_workbook(io.BytesIO(target.read_bytes())).sheetnames == ["Statements", "Run"]


def _command(panel, *more: str) -> list[str]:
    return [sys.executable, "-m", "capdsl.tools.cli", *argv(panel, *more)]


def test_dash_writes_the_bytes_to_a_pipe(panel, tmp_path):
    done = subprocess.run(_command(panel, "--period", "2011-03", "--format", "xlsx", "-o", "-"), cwd=ROOT,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout[:4] == b"PK\x03\x04"
    piped = openpyxl.load_workbook(io.BytesIO(done.stdout))
    filed = openpyxl.load_workbook(write(panel, tmp_path, "s.xlsx", "--period", "2011-03"))
    for name in ("Statements", "Run"):
        assert list(piped[name].values) == list(filed[name].values)


def test_a_terminal_is_refused(panel):
    out = run(*argv(panel, "--period", "2011-03", "--format", "xlsx"))
    assert out.exit_code == 1 and "E0917" in out.output and "-o statements.xlsx" in out.output
    primary, replica = pty.openpty()  # -o - onto a real terminal
    try:
        done = subprocess.run(_command(panel, "--period", "2011-03", "--format", "xlsx", "-o", "-"), cwd=ROOT,
                              stdout=replica, stderr=subprocess.PIPE, timeout=300)
    finally:
        os.close(replica)
        os.close(primary)
    assert done.returncode == 1 and b"E0917" in done.stderr


def test_too_many_rows_is_an_error_and_leaves_no_file(panel, tmp_path, monkeypatch):
    from capdsl.tools import xlsx_out

    monkeypatch.setattr(xlsx_out, "MAX_ROWS", 5)
    target = tmp_path / "s.xlsx"
    for more in ((), ("--detail", "member")):
        out = run(*argv(panel, "--period", "2011-03", "-o", str(target), *more))
        assert out.exit_code == 1 and "E0932" in out.output, out.output
        assert not any(tmp_path.iterdir())  # neither the file nor a temporary one


def test_a_failed_write_keeps_the_old_file(panel, tmp_path, monkeypatch):
    target = write(panel, tmp_path, "s.xlsx", "--period", "2011-03")
    before = target.read_bytes()

    save = openpyxl.Workbook.save

    def broken(book, path):  # the workbook is finished, then Ctrl-C before the file is in place
        save(book, io.BytesIO())
        raise KeyboardInterrupt

    monkeypatch.setattr(openpyxl.Workbook, "save", broken)
    out = CliRunner().invoke(main, argv(panel, "--period", "2011-Q2", "-o", str(target)))
    assert out.exit_code == 130
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["s.xlsx"]


def test_xlsx_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "`.xlsx`" in text and "--raw-cells" in text and "E0932" in (ROOT / "docs" / "errors.md").read_text()
    help_text = run("eval", "--help").output
    assert "xlsx" in help_text and "statements.xlsx" in help_text

