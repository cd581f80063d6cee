"""`capdsl reconcile`, `capdsl retro` and `capdsl panel from-atr` driven as a user drives them: odd
option values, output formats, ids with quotes and commas, exports with a file missing. Each
command's answer is a clear message or the right rows, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.errors import UsageError
from capdsl.tools.cli import main
from capdsl.tools.reconcile_command import parse_tolerance

ROOT = Path(__file__).resolve().parent.parent
PMPM = str(ROOT / "contracts" / "us_pmpm.cap")
RETRO = ROOT / "examples" / "retro"

# ids a payer's file may well hold: quotes, a comma, letters outside ASCII
MEMBERS = """member_id,practice_id,birth_date,enrolled_from,enrolled_to
"O'Brien",P'1,1970-01-01,2010-01-01,
"M""q",P'1,1970-01-01,2010-01-01,
"M,c",P'1,1970-01-01,2010-01-01,
Müller-Ž,P'1,1970-01-01,2010-01-01,
plain,"P,2",1970-01-01,2010-01-01,
"""
# O'Brien paid twice, M,c a negative amount, M"q 10 short, Müller-Ž with spaces around the id, an
# unknown member, plain paid to the wrong practice, and a withhold row for P'1
REMITTANCE = '''practice_id,month,line,member_id,amount,reference
P'1,2011-03,capitation,"O'Brien",100.00,"chk 'a'"
P'1,2011-03,capitation,"O'Brien",100.00,"chk 'a'"
P'1,2011-03,capitation,"M,c",-100.00,"chk ""b"""
P'1,2011-03,capitation,"M""q",90.00,c
P'1,2011-03,capitation, Müller-Ž ,100.00,d
P'1,2011-03,capitation,"X'""y",5.00,e
P'1,2011-03,capitation,plain,100.00,f
P'1,2011-03,withhold,,-40.00,g
'''


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def panel(tmp_path) -> dict:
    (tmp_path / "members.csv").write_text(MEMBERS, encoding="utf-8")
    (tmp_path / "remit.csv").write_text(REMITTANCE, encoding="utf-8")
    return {"members": str(tmp_path / "members.csv"), "remittance": str(tmp_path / "remit.csv")}


def reconcile_args(panel, *more: str) -> list[str]:
    return ["reconcile", PMPM, "--members", panel["members"], "--remittance", panel["remittance"],
            "--period", "2011-03", "-q", *more]


# ─────────────────────────────── --tolerance ───────────────────────────────

@pytest.mark.parametrize("given, hint", [
    ("-1", "either way"), ("-0.01", "either way"), ("abc", "without its unit"), ("1 USD", "without its unit"),
    ("NaN", "without its unit"), ("Infinity", "without its unit"), ("0,01", "with a point"),
    ("1,000.00", "with a point"), ("1e2", "plain amount"), ("1e-9999999999", "plain amount"), ("", "plain amount"),
    ("0.0000000000001", "at most 12 decimals"),
])
def test_a_tolerance_that_is_not_a_plain_amount_is_refused_with_a_hint(panel, given, hint):
    """An exponent is refused, not expanded: `1e-9999999999` would be written out digit by digit
    (and a literal past DECIMAL(38, 12) compared as a float)."""
    with pytest.raises(UsageError) as caught:
        parse_tolerance(given)
    (diag,) = caught.value.diagnostics
    assert diag.code == "E0933" and hint in diag.hint
    result = invoke(*reconcile_args(panel, "--tolerance", given))
    assert result.exit_code == 1 and "error[E0933]" in result.output


@pytest.mark.parametrize("given, value", [("0.005", "0.005"), (" 0.01 ", "0.01"), (".5", "0.5"), ("3", "3"),
                                          ("0.000000000001", "0.000000000001")])
def test_a_plain_tolerance_is_taken_as_written(given, value):
    assert parse_tolerance(given) == Decimal(value)


def test_a_tolerance_of_half_a_cent_matches_what_it_covers(panel, tmp_path):
    remit = tmp_path / "close.csv"
    remit.write_text("practice_id,month,line,member_id,amount\nP'1,2011-03,capitation,\"O'Brien\",100.004\n",
                     encoding="utf-8")
    result = invoke(*reconcile_args({**panel, "remittance": str(remit)}, "--tolerance", "0.005", "--all",
                                    "--format", "json"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tolerance"] == "0.005"
    (row,) = [r for r in data["rows"] if r["member_id"] == "O'Brien"]
    assert row["status"] == "matched"


# ─────────────────────────────── reconcile's outputs ───────────────────────────────

def test_the_json_summary_gives_every_difference_with_its_cents(panel):
    """A status no row fell into sums to 0.00, written as the others are (not `0`)."""
    result = invoke(*reconcile_args(panel, "--format", "json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    differences = [s["difference"] for by in summary.values() for s in by.values()]
    assert "0.00" in differences
    assert all(re.fullmatch(r"-?[0-9]+\.[0-9]{2,}", d) for d in differences), differences


def test_ids_with_quotes_commas_and_accents_reconcile_alike_on_both_engines(panel):
    got = {}
    for engine in ("python", "duckdb"):
        result = invoke(*reconcile_args(panel, "--engine", engine, "--all", "--format", "json"))
        assert result.exit_code == 0, result.output
        got[engine] = json.loads(result.stdout)["rows"]
    assert got["python"] == got["duckdb"]
    members = {r["member_id"]: r for r in got["duckdb"] if r["level"] == "member"}
    assert (members["O'Brien"]["paid"], members["O'Brien"]["status"]) == ("200.00", "overpaid")  # paid twice
    assert (members["M,c"]["paid"], members["M,c"]["difference"]) == ("-100.00", "-200.00")
    assert members["M\"q"]["status"] == "underpaid" and members["M\"q"]["reference"] == "c"
    assert members["Müller-Ž"]["status"] == "matched"  # the spaces around the paid id are not part of it
    assert members["X'\"y"]["reason"] == "the member is not on the panel"
    by_practice = {(r["practice_id"], r["member_id"]): r for r in got["duckdb"] if r["level"] == "member"}
    assert by_practice["P'1", "plain"]["reason"] == "the member is registered with P,2"
    assert by_practice["P,2", "plain"]["reason"] == "not paid; the contract gives capitation 100.00"


def test_the_csv_report_quotes_ids_as_a_spreadsheet_reads_them(panel):
    import csv
    import io

    result = invoke(*reconcile_args(panel, "--format", "csv"))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["member_id"] for r in rows if r["level"] == "member"} >= {"O'Brien", "M\"q", "M,c", "X'\"y"}
    assert next(r for r in rows if r["member_id"] == "M,c")["reference"] == 'chk "b"'


# ─────────────────────────────── remittance formats ───────────────────────────────

@pytest.mark.parametrize("kind", ["xlsx", "jsonl"])
def test_an_xlsx_or_json_remittance_reconciles_as_its_csv(panel, tmp_path, kind):
    """The panel's connection has no result left open once evaluated (every query fetched whole), so
    a remittance read through `register` (.xlsx, JSON Lines) can follow."""
    path = tmp_path / f"remit.{kind}"
    rows = [("practice_id", "month", "amount"), ("P'1", "2011-03", "360.00"), ("P,2", "2011-03", "90")]
    if kind == "xlsx":
        import openpyxl

        book = openpyxl.Workbook()
        for row in rows:
            book.active.append(row)
        book.save(path)
    else:
        path.write_text("".join(json.dumps(dict(zip(rows[0], row))) + "\n" for row in rows[1:]), encoding="utf-8")
    result = invoke(*reconcile_args({**panel, "remittance": str(path)}, "--all", "--format", "json"))
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in json.loads(result.stdout)["rows"]} == {"matched"}


# ─────────────────────────────── retro ───────────────────────────────

def retro_args(*more: str, paid: Path = RETRO / "members_paid.csv", quiet: bool = True) -> list[str]:
    return ["retro", PMPM, "--members", str(RETRO / "members.csv"), "--paid-members", str(paid),
            "--period", "2011-06", "--months", "12", *(["-q"] if quiet else []), *more]


@pytest.mark.parametrize("fmt", ["xlsx", "table", "html", "parquet", "pdf"])
def test_retro_detail_member_refuses_the_statements_formats(tmp_path, fmt):
    """The member adjustments are csv or json: another --format is an error before any work, never
    JSON written into a file named .xlsx."""
    out = tmp_path / f"detail.{fmt}"
    result = invoke(*retro_args("--detail", "member", "--format", fmt, "-o", str(out)))
    assert result.exit_code == 1
    assert f"error[E0906]: retro --detail member is written as csv or json, not {fmt}" in result.output
    assert not out.exists()


def test_retro_detail_member_in_csv_and_json(tmp_path):
    as_csv = invoke(*retro_args("--detail", "member"))
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.splitlines()[0] == "practice_id,member_id,month,paid,owed,adjustment,reason"
    out = tmp_path / "detail.json"
    assert invoke(*retro_args("--detail", "member", "-o", str(out))).exit_code == 0
    assert len(json.loads(out.read_text(encoding="utf-8"))["adjustments"]) == len(as_csv.stdout.splitlines()) - 1


def test_retro_offers_parquet_by_format_as_by_extension(tmp_path):
    by_name = tmp_path / "retro.parquet"
    assert invoke(*retro_args("--only-adjustments", "-o", str(by_name))).exit_code == 0
    by_format = tmp_path / "retro.out"
    result = invoke(*retro_args("--only-adjustments", "--format", "parquet", "-o", str(by_format)))
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    assert pq.read_table(by_format).equals(pq.read_table(by_name))


def test_retro_pdf_without_a_printer_is_refused_before_any_work(tmp_path, monkeypatch):
    import capdsl.tools.retro

    def no_work(*args, **kwargs):
        raise AssertionError("the panels were evaluated")

    monkeypatch.setattr(capdsl.tools.retro, "run_retro", no_work)
    monkeypatch.setenv("CAPDSL_CHROMIUM", str(tmp_path / "no-such-chromium"))
    out = tmp_path / "retro.pdf"
    result = invoke(*retro_args("-o", str(out)))
    assert result.exit_code == 1 and "error[E0918]" in result.output
    assert not out.exists()


def test_retro_on_identical_panels_says_nothing_changed():
    result = CliRunner().invoke(main, retro_args("--only-adjustments", paid=RETRO / "members.csv", quiet=False))
    assert result.exit_code == 0, result.output
    assert "no adjustment: no practice's amounts for 2010-06 to 2011-05 differ between the two panels" \
        in result.stderr
    quiet = invoke(*retro_args("--only-adjustments", paid=RETRO / "members.csv"))
    assert "no adjustment" not in quiet.output


def test_retro_swapped_panels_give_the_opposite_adjustments():
    forward = invoke(*retro_args("--detail", "member", "--format", "json"))
    backward = invoke("retro", PMPM, "--members", str(RETRO / "members_paid.csv"), "--paid-members",
                      str(RETRO / "members.csv"), "--period", "2011-06", "--months", "12", "-q", "--detail",
                      "member", "--format", "json")
    assert forward.exit_code == backward.exit_code == 0

    def adjustments(result):
        return {(a["member_id"], a["month"]): Decimal(a["adjustment"])
                for a in json.loads(result.stdout)["adjustments"]}

    there, back = adjustments(forward), adjustments(backward)
    assert there and there.keys() == back.keys()
    assert all(back[k] == -v for k, v in there.items())


# ─────────────────────────────── panel from-atr ───────────────────────────────

@pytest.mark.parametrize("missing, kind, refs", [("Organization.ndjson", "Organization", "5 references"),
                                                 ("Practitioner.ndjson", "Practitioner", "1 reference"),
                                                 ("Coverage.ndjson", "Coverage", "7 references")])
def test_an_export_without_one_resource_file_says_so_once(tmp_path, missing, kind, refs):
    pytest.importorskip("fhir.resources")
    export = tmp_path / "export"
    shutil.copytree(ROOT / "examples" / "fhir_atr", export)
    (export / missing).unlink()
    result = invoke("panel", "from-atr", str(export), "-o", str(tmp_path / "members.csv"), "--json")
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    assert warnings[0] == {"position": "export", "message": f"the export has no {kind} resource (no {kind}.ndjson "
                                                            f"file): {refs} to one cannot be followed"}
    assert sum("the export has no" in w["message"] for w in warnings) == 1


def test_the_full_sample_export_warns_of_no_missing_file(tmp_path):
    pytest.importorskip("fhir.resources")
    result = invoke("panel", "from-atr", str(ROOT / "examples" / "fhir_atr"), "-o", str(tmp_path / "m.csv"),
                    "--json")
    assert result.exit_code == 0, result.output
    assert not any("the export has no" in w["message"] for w in json.loads(result.stdout)["warnings"])


def test_an_export_without_patients_names_the_missing_file_in_its_hint(tmp_path):
    pytest.importorskip("fhir.resources")
    export = tmp_path / "export"
    shutil.copytree(ROOT / "examples" / "fhir_atr", export)
    (export / "Patient.ndjson").unlink()
    out = tmp_path / "members.csv"
    result = invoke("panel", "from-atr", str(export), "-o", str(out))
    assert result.exit_code == 1 and "error[E0702]" in result.output
    assert "hint: the export has no Patient resource: add Patient.ndjson to the folder" in result.output
    assert not out.exists()


# ─────────────────────────────── amounts and reasons ───────────────────────────────

def rows_of(result) -> list[dict]:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)["rows"]


def test_a_payment_finer_than_a_cent_is_shown_to_its_last_digit(tmp_path):
    """100.004 paid for 100.00 owed is overpaid by 0.004: shown so, not as 100.00 paid, 0.00 apart."""
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1970-01-01\n", encoding="utf-8")
    (tmp_path / "remit.csv").write_text("practice_id,month,line,member_id,amount\n"
                                        "P1,2011-03,capitation,M1,100.004\n", encoding="utf-8")
    panel = {"members": str(tmp_path / "members.csv"), "remittance": str(tmp_path / "remit.csv")}
    rows = rows_of(invoke(*reconcile_args(panel, "--format", "json")))
    (member,) = [r for r in rows if r["level"] == "member"]
    assert (member["paid"], member["difference"], member["status"]) == ("100.004", "0.004", "overpaid")
    table = invoke(*reconcile_args(panel, "--format", "table")).stdout
    assert "1 (+0.004)" in table and "+0.00 " not in table


def test_a_month_outside_the_period_is_the_reason_at_every_level(tmp_path):
    """Paid for May in a reconciliation of March: the practice, its line and its member all say so
    (not 'nothing is owed' nor 'the member does not count')."""
    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1970-01-01\n", encoding="utf-8")
    (tmp_path / "remit.csv").write_text("practice_id,month,line,member_id,amount\n"
                                        "P1,2011-03,capitation,M1,100.00\nP1,2011-05,capitation,M1,100.00\n",
                                        encoding="utf-8")
    panel = {"members": str(tmp_path / "members.csv"), "remittance": str(tmp_path / "remit.csv")}
    rows = rows_of(invoke(*reconcile_args(panel, "--format", "json")))
    may = {r["level"]: r["reason"] for r in rows if r["month"] == "2011-05"}
    assert may == dict.fromkeys(("practice", "line", "member"), "paid for a month outside the period reconciled")


def test_the_json_is_what_the_standard_library_would_write(panel):
    """orjson writes it (the standard library's indented encoder is slow on a large panel's
    discrepancies), byte for byte as `json.dumps(…, ensure_ascii=False, indent=2)`."""
    out = invoke(*reconcile_args(panel, "--all", "--format", "json")).stdout
    assert "Müller-Ž" in out
    assert out == json.dumps(json.loads(out), ensure_ascii=False, indent=2) + "\n"
    detail = invoke(*retro_args("--detail", "member", "--format", "json")).stdout
    assert detail == json.dumps(json.loads(detail), ensure_ascii=False, indent=2) + "\n"


# ─────────────────────────────── every output format ───────────────────────────────

def test_parquet_keeps_the_amounts_exact(panel, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "rec.parquet"
    assert invoke(*reconcile_args(panel, "--all", "-o", str(out))).exit_code in (0, 1)
    table = pq.read_table(out)
    assert str(table.schema.field("expected").type) == "decimal128(38, 2)"
    assert str(table.schema.field("age").type) == "int32"
    csv_rows = list(csv.DictReader(io.StringIO(invoke(*reconcile_args(panel, "--all", "--format", "csv")).stdout)))
    assert [r["member_id"] or None for r in csv_rows] == table.column("member_id").to_pylist()
    assert [Decimal(r["difference"]) for r in csv_rows] == table.column("difference").to_pylist()


def test_xlsx_is_the_rows_the_summary_and_the_run(panel, tmp_path):
    import openpyxl

    out = tmp_path / "rec.xlsx"
    assert invoke(*reconcile_args(panel, "-o", str(out))).exit_code in (0, 1)
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["Discrepancies", "Summary", "Run"]
    rows = list(book["Discrepancies"].iter_rows(values_only=True))
    assert rows[0][:8] == ("level", "practice_id", "month", "line", "member_id", "expected", "paid", "difference")
    o_brien = next(r for r in rows[1:] if r[4] == "O'Brien")
    assert (o_brien[5], o_brien[6], o_brien[8]) == (100, 200, "overpaid")  # numeric cells
    summary = {(lvl, st): n for lvl, st, n, _ in book["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["member", "overpaid"] >= 1
    assert ("tolerance", "0.00") in list(book["Run"].iter_rows(min_row=2, values_only=True))


@pytest.mark.parametrize("fmt", ["parquet", "xlsx", "pdf"])
def test_binary_formats_go_to_a_file_or_a_pipe(panel, fmt, tmp_path):
    """Without -o they would land on the terminal: E0917, before any work; `-o -` is a pipe."""
    result = invoke(*reconcile_args(panel, "--format", fmt))
    assert result.exit_code == 1 and "E0917" in result.output
    if fmt != "pdf":
        piped = CliRunner().invoke(main, reconcile_args(panel, "--format", fmt, "-o", "-"))
        assert piped.exit_code in (0, 1) and piped.stdout_bytes[:4] in (b"PAR1", b"PK\x03\x04")


def test_pdf_is_the_page_printed(panel, tmp_path):
    from capdsl.tools.statement_doc import chromium

    if chromium() is None:
        pytest.skip("no Chromium")
    out = tmp_path / "rec.pdf"
    result = invoke(*reconcile_args(panel, "-o", str(out)))
    assert result.exit_code in (0, 1), result.output
    assert out.read_bytes()[:5] == b"%PDF-"
