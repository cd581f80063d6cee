"""Panels as people have them: .xlsx workbooks, and Central European CSV exports (`;` separators,
decimal commas, day-first dates), read exactly as the comma-separated ISO panel they stand for."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.data.panel import load_panel
from capdsl.data.read import ReadOptions, _number_text, detect_delimiter
from capdsl.data.requirements import ColumnSpec, Requirements
from capdsl.errors import InputError, UsageError
from capdsl.tools.cli import main

openpyxl = pytest.importorskip("openpyxl")

ROOT = Path(__file__).resolve().parent.parent
PANEL = ROOT / "tests" / "panels" / "cz_vzp_2011_adult"
CONTRACT = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
TABLES = ("members", "practices", "events", "measures")
DATES = {"birth_date", "enrolled_from", "enrolled_to", "date"}


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:
        return result.output


def _eval(*args, cwd: Path | None = None):
    argv = ["eval", str(CONTRACT), "--period", "2011-Q1", "--format", "csv", *map(str, args)]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def _csv_files(folder: Path) -> list[str]:
    return [arg for t in TABLES for arg in (f"--{t}", str(folder / f"{t}.csv"))]


@pytest.fixture(scope="module")
def baseline() -> str:
    result = _eval(*_csv_files(PANEL))
    assert result.exit_code == 0, _stderr(result)
    return result.stdout


def _typed(header: str, text: str):
    """A CSV value as the cell a spreadsheet would hold: dates, numbers and booleans typed."""
    if text == "":
        return None
    if header in DATES:
        return dt.date.fromisoformat(text)
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _write_workbook(path: Path, rows: list[list], title: str = "Data", before: int = 0, extra_sheet: bool = False):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for _ in range(before):
        sheet.append([])
    for row in rows:
        sheet.append(row)
    if extra_sheet:
        book.create_sheet("Other").append(["nothing", "here"])
    book.save(path)
    return path


@pytest.fixture(scope="module")
def workbooks(tmp_path_factory) -> Path:
    """The CZ panel as four workbooks with typed cells (members on a second sheet, under two empty rows)."""
    folder = tmp_path_factory.mktemp("xlsx")
    for t in TABLES:
        rows = list(csv.reader((PANEL / f"{t}.csv").open(encoding="utf-8")))
        typed = [rows[0]] + [[_typed(h, v) for h, v in zip(rows[0], r)] for r in rows[1:]]
        if t == "members":
            book = openpyxl.Workbook()
            book.active.title = "Readme"
            book.active.append(["exported from the registry"])
            sheet = book.create_sheet("Pojištěnci")
            sheet.append([])  # the header is the first row that is not empty
            sheet.append([])
            for row in typed:
                sheet.append(row)
            book.save(folder / "members.xlsx")
        else:
            _write_workbook(folder / f"{t}.xlsx", typed)
    return folder


# ─────────────────────────────── .xlsx ───────────────────────────────

@pytest.mark.parametrize("value, text", [
    (0.1, "0.1"), (1234.56, "1234.56"), (0.1 + 0.2, "0.3"), (1e-07, "0.0000001"), (3.0, "3"),
    (1234567890123.0, "1234567890123"), (-2.5, "-2.5"), (1e20, "100000000000000000000"),
    (999999999999999.0, "999999999999999"),
])
def test_a_number_cell_is_its_decimal_text(value, text):
    assert _number_text(value, False) == (text, False)


def test_a_number_with_more_digits_than_a_spreadsheet_keeps_is_flagged():
    assert _number_text(float(12345678901234567), False)[1] is True
    assert _number_text(1234.5, True) == ("1234,5", False)


def test_an_xlsx_panel_gives_the_statements_of_its_csv(workbooks, baseline):
    args = ["--members", f"{workbooks / 'members.xlsx'}#Pojištěnci"]
    for t in TABLES[1:]:
        args += [f"--{t}", workbooks / f"{t}.xlsx"]
    result = _eval(*args)
    assert result.exit_code == 0, _stderr(result)
    assert result.stdout == baseline
    python = _eval(*args, "--engine", "python")
    assert python.stdout == baseline


def test_a_folder_of_workbooks(workbooks, baseline, tmp_path):
    for t in TABLES[1:]:
        (tmp_path / f"{t}.xlsx").write_bytes((workbooks / f"{t}.xlsx").read_bytes())
    (tmp_path / "members.csv").write_bytes((PANEL / "members.csv").read_bytes())
    result = _eval("--panel", tmp_path)
    assert result.exit_code == 0, _stderr(result)
    assert result.stdout == baseline


def _req(**columns: str) -> Requirements:
    return Requirements(members=[ColumnSpec(name, kind, True, None, "test") for name, kind in columns.items()])


def test_cells_become_exact_text_with_the_rows_the_spreadsheet_shows(tmp_path):
    path = _write_workbook(tmp_path / "m.xlsx", [
        ["member_id", "practice_id", "birth_date", "risk", "flag"],
        [1234567890123, "P1", dt.date(1950, 1, 2), 0.1, True],
        [None, None, None, None, None],  # a blank row: skipped, its number kept
        ["M2", 101, dt.datetime(1960, 5, 6, 0, 0), 1234.56, False],
        ["M3", "P1", "1970-07-08", 2, "yes"],
    ], before=2)
    req = _req(risk="decimal", flag="bool")
    panel = load_panel({"members": path}, req, today=dt.date(2026, 1, 1))
    try:
        rows = panel.member_rows(["_row", "member_id", "practice_id", "birth_date", "risk", "flag"])
    finally:
        panel.close()
    from decimal import Decimal

    assert sorted(rows) == sorted([
        (4, "1234567890123", "P1", dt.date(1950, 1, 2), Decimal("0.1"), True),
        (6, "M2", "101", dt.date(1960, 5, 6), Decimal("1234.56"), False),
        (7, "M3", "P1", dt.date(1970, 7, 8), Decimal("2"), True),
    ])


def test_a_bad_cell_is_reported_at_its_spreadsheet_row(tmp_path):
    path = _write_workbook(tmp_path / "m.xlsx", [
        ["member_id", "practice_id", "birth_date"],
        ["M1", "P1", dt.date(1950, 1, 2)],
        ["M2", "P1", "02.03.1950"],
        ["M3", None, dt.date(1950, 1, 2)],
    ], before=1)
    with pytest.raises(InputError) as info:
        load_panel({"members": path}, today=dt.date(2026, 1, 1))
    text = info.value.render()
    assert "row 4, column birth_date" in text and "--date-format %d.%m.%Y" in text
    assert "row 5: column practice_id is empty" in text


def test_the_first_sheet_unless_one_is_named(tmp_path):
    path = _write_workbook(tmp_path / "m.xlsx", [["member_id", "practice_id", "birth_date"],
                                                 ["M1", "P1", dt.date(1950, 1, 2)]], extra_sheet=True)
    panel = load_panel({"members": path}, today=dt.date(2026, 1, 1))
    assert panel.count("members") == 1
    panel.close()
    with pytest.raises(InputError) as info:
        load_panel({"members": f"{path}#Other"}, today=dt.date(2026, 1, 1))
    assert "no column 'member_id'" in info.value.render()
    with pytest.raises(InputError) as info:
        load_panel({"members": f"{path}#data"}, today=dt.date(2026, 1, 1))
    assert info.value.code == "E0717" and "did you mean 'Data'?" in info.value.render()


def test_a_file_that_is_not_a_workbook(tmp_path):
    path = tmp_path / "m.xlsx"
    path.write_text("member_id,practice_id\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_panel({"members": path})
    assert info.value.code == "E0711" and "not a workbook" in info.value.render()


def test_a_long_id_typed_as_a_number_is_refused_only_where_it_is_read(tmp_path):
    rows = [["member_id", "practice_id", "birth_date", "note"],
            ["M1", "P1", dt.date(1950, 1, 2), 12345678901234567]]
    panel = load_panel({"members": _write_workbook(tmp_path / "a.xlsx", rows)}, today=dt.date(2026, 1, 1))
    panel.close()  # `note` is not read by the contract
    rows[1][0] = 12345678901234567
    with pytest.raises(InputError) as info:
        load_panel({"members": _write_workbook(tmp_path / "b.xlsx", rows)}, today=dt.date(2026, 1, 1))
    assert info.value.code == "E0721" and "row 2, column member_id" in info.value.render()


def test_an_error_cell_is_not_read_as_empty(tmp_path):
    rows = [["member_id", "practice_id", "birth_date", "diabetes"],
            ["M1", "P1", dt.date(1950, 1, 2), "#N/A"], ["M2", "P1", dt.date(1950, 1, 2), False]]
    path = _write_workbook(tmp_path / "m.xlsx", rows, before=1)
    panel = load_panel({"members": path}, today=dt.date(2026, 1, 1))  # `diabetes` is not read
    panel.close()
    req = Requirements(members=[ColumnSpec("diabetes", "bool", True, False, "test")])
    with pytest.raises(InputError) as info:  # read with its default, the error would become `false`
        load_panel({"members": path}, req, today=dt.date(2026, 1, 1))
    assert info.value.code == "E0723"
    assert "row 3, column diabetes: the cell holds the spreadsheet error #N/A" in info.value.render()


# ─────────────────────────────── Central European CSV ───────────────────────────────

def _czech(folder: Path, numbers=True, dates=True) -> Path:
    """The CZ panel as a Czech spreadsheet exports it: `;`, decimal commas, 31.12.2011."""
    folder.mkdir(exist_ok=True)
    for t in TABLES:
        rows = list(csv.reader((PANEL / f"{t}.csv").open(encoding="utf-8")))
        out = [rows[0]]
        for r in rows[1:]:
            cells = []
            for h, v in zip(rows[0], r):
                if dates and h in DATES and v:
                    y, m, d = v.split("-")
                    v = f"{d}.{m}.{y}"
                if numbers and h in ("value", "coefficient", "weekly_hours"):
                    v = v.replace(".", ",")
                cells.append(v)
            out.append(cells)
        with (folder / f"{t}.csv").open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter=";").writerows(out)
    return folder


def test_a_czech_export_is_detected_and_says_so(tmp_path, baseline):
    folder = _czech(tmp_path / "cz")
    result = _eval(*_csv_files(folder), "--date-format", "%d.%m.%Y")
    err = _stderr(result)
    assert result.exit_code == 0, err
    assert result.stdout == baseline
    assert err.count("warning[W0720]: the file is read as ';'-separated") == 4
    assert "measures.csv: warning[W0720]: numbers are read with decimal commas (detected: column value, row 2" in err


def test_a_czech_export_with_its_options_given_is_read_silently(tmp_path, baseline):
    folder = _czech(tmp_path / "cz")
    result = _eval(*_csv_files(folder), "--delimiter", ";", "--decimal-comma", "--date-format", "%d.%m.%Y")
    assert result.exit_code == 0, _stderr(result)
    assert result.stdout == baseline
    assert "W0720" not in _stderr(result)


def test_day_first_dates_without_the_option_name_it(tmp_path):
    folder = _czech(tmp_path / "cz")
    result = _eval(*_csv_files(folder))
    err = _stderr(result)
    assert result.exit_code == 1
    assert "row 2, column birth_date" in err and "pass --date-format %d.%m.%Y" in err
    assert "malformed CSV" not in err  # the separator was found: no misleading field counts


def test_decimal_commas_are_not_guessed_in_a_comma_separated_file(tmp_path):
    (tmp_path / "p.csv").write_text('practice_id,weekly_hours\nP1,"30,5"\n', encoding="utf-8")
    req = Requirements(practices=[ColumnSpec("weekly_hours", "decimal", True, None, "test")])
    files = {"members": tmp_path / "m.csv", "practices": tmp_path / "p.csv"}
    (tmp_path / "m.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1950-01-01\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_panel(files, req)
    text = info.value.render()
    assert "row 2, column weekly_hours: '30,5' is not a valid number" in text and "--decimal-comma" in text
    panel = load_panel(files, req, formats={"practices": ReadOptions(decimal_comma=True)})
    assert panel.practice_rows(["weekly_hours"]) == [(__import__("decimal").Decimal("30.5"),)]
    panel.close()


def test_with_decimal_commas_a_dot_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text("member_id;practice_id;birth_date;risk\nM1;P1;1950-01-01;1,5\n"
                                    "M2;P1;1950-01-01;1.500\n", encoding="utf-8")
    req = _req(risk="decimal")
    with pytest.raises(InputError) as info:  # mixed: decimal commas are not detected, and the comma is named
        load_panel({"members": tmp_path / "m.csv"}, req)
    text = info.value.render()
    assert "row 2, column risk: '1,5' is not a valid number" in text and "--decimal-comma" in text
    assert "decimal commas (detected" not in text
    with pytest.raises(InputError) as info:
        load_panel({"members": tmp_path / "m.csv"}, req, formats={"members": ReadOptions(decimal_comma=True)})
    text = info.value.render()
    assert "row 3, column risk: '1.500' is not a valid number" in text and "thousands" in text
    assert "row 2" not in text


def test_a_semicolon_file_read_as_comma_separated_says_why(tmp_path):
    (tmp_path / "m.csv").write_text("member_id;practice_id;birth_date;risk\nM1;P1;1950-01-01;\"1,5\"\n",
                                    encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_panel({"members": tmp_path / "m.csv"}, _req(risk="decimal"),
                   formats={"members": ReadOptions(delimiter=",")})
    text = info.value.render()
    assert "--delimiter" in text


def test_detection_of_the_separator():
    assert detect_delimiter("a;b;c\n1;2,5;3\n") == ";"
    assert detect_delimiter("a,b\n1,2\n") == ","
    assert detect_delimiter("a\tb\n1\t2\n") == "\t"
    assert detect_delimiter("name;note\n\"Novák, Jan\";x\n") == ";"
    assert detect_delimiter("only\n1\n") == ","


@pytest.mark.parametrize("option, fragment", [
    (ReadOptions(delimiter=";;"), "separator"),
    (ReadOptions(delimiter="a"), "separator"),
    (ReadOptions(date_format="%d.%m."), "needs a day"),
    (ReadOptions(date_format="%d.%m.%Y %Q"), "cannot be used"),
])
def test_unusable_reading_options(tmp_path, option, fragment):
    (tmp_path / "m.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1950-01-01\n", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        load_panel({"members": tmp_path / "m.csv"}, formats={"members": option})
    assert info.value.code == "E0722" and fragment in info.value.render()


def test_a_column_mapping_on_the_command_line(tmp_path):
    (tmp_path / "m.csv").write_text("member_id,practice_id,dob,birth_date\nM1,P1,1950-01-01,x\n"
                                    "M2,P1,1950-13-01,x\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["eval", str(CONTRACT), "--members", str(tmp_path / "m.csv"),
                                       "--period", "2011-03", "--column", "members.birth_date=dob"])
    err = _stderr(result)
    assert "row 3, column dob (birth_date)" in err, err
    bad = CliRunner().invoke(main, ["eval", str(CONTRACT), "--members", str(tmp_path / "m.csv"),
                                    "--period", "2011-03", "--column", "birth_date=dob"])
    assert bad.exit_code == 1 and "E0953" in _stderr(bad)
