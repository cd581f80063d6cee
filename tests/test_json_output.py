"""`capdsl eval --format json` and `--detail member --format json`: orjson's output, streamed a chunk
at a time, is byte for byte what `json.dumps(to_jsonable(result), ensure_ascii=False, indent=2)`
wrote (the reference kept here), in every view; amounts stay decimal strings."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.evaluation.detail import DetailTable
from capdsl.evaluation.statements import summarise, to_jsonable
from capdsl.pipeline import Run, compiled_file, evaluate, member_detail
from capdsl.tools import render
from capdsl.tools.cli import main
from statement_panel import contract, write_panel

ROOT = Path(__file__).resolve().parent.parent

BODY = '''inputs:
    practice akord: bool = false
    measure quality: percent
end

define rate = 100.333 CZK

line capitation "Kapitace (věkově vážená) — „per capita“" = sum of rate over members

line supplement "AKORD supplement":
    amount 10 CZK * count of members
    applies when practice.akord
end

'''
CONTRACT = contract("JSON – výstup", BODY, regulation="Regulation")

MEMBERS = """member_id,practice_id,birth_date,enrolled_from,enrolled_to
M1,P1,1970-01-01,,
M2,P1,1980-05-05,2011-02-01,
M3,P1,1990-01-01,,2011-11-30
=HYPERLINK("m"),"=HYPERLINK(""x"")",1960-01-01,,
M5,Příbram 2,1950-03-03,,
M6,"tab\tand ""quote"" \\ back",1955-03-03,,
"""
PRACTICES = """practice_id,akord
P1,true
Příbram 2,false
"=HYPERLINK(""x"")",true
"tab\tand ""quote"" \\ back",false
"""


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    folder = write_panel(tmp_path_factory.mktemp("json"), CONTRACT, MEMBERS, PRACTICES)
    return folder


def files(folder: Path) -> dict[str, str]:
    return {t: str(folder / f"{t}.csv") for t in ("members", "practices", "measures")}


def result_of(folder: Path, period: str, *, by_month: bool = False, summary: bool = False):
    result, _ = evaluate(compiled_file(folder / "c.cap"), Run(files=files(folder), period=period), by_month=by_month)
    return summarise(result) if summary else result


def reference(result) -> str:
    """How the JSON was written before orjson: pydantic's plain data, the standard library's encoder."""
    return json.dumps(to_jsonable(result), ensure_ascii=False, indent=2) + "\n"


def detail_reference(detail) -> str:
    def text(v):
        return format(v.normalize(), "f") if isinstance(v, Decimal) else str(v)

    return json.dumps({"columns": list(detail.columns), "aggregates": detail.aggregates,
                       "rows": [[None if v is None else v if isinstance(v, int) else text(v) for v in row]
                                for row in detail.rows]}, ensure_ascii=False, indent=1) + "\n"


VIEWS = [("2011-03", False, False), ("2011-Q2", False, False), ("2011", True, False), ("2011", False, True),
         ("2011-Q4", True, True)]


@pytest.mark.parametrize("period, by_month, summary", VIEWS)
@pytest.mark.parametrize("chunk", [1, 2, 512])
def test_statements_are_byte_identical_to_the_reference(panel, monkeypatch, period, by_month, summary, chunk):
    monkeypatch.setattr(render, "_CHUNK", chunk)  # 1 and 2: every join between chunks is exercised
    result = result_of(panel, period, by_month=by_month, summary=summary)
    assert render.to_json(result) == reference(result)


def test_amounts_stay_decimal_strings(panel):
    data = json.loads(render.to_json(result_of(panel, "2011-Q2", by_month=True)))
    st = data["statements"][0]
    assert isinstance(data["total"], str) and isinstance(st["lines"][0]["amount"], str)
    assert Decimal(data["total"]) == sum(Decimal(s["total"]) for s in data["statements"])
    assert data["report_rate"] == "25.28"
    assert isinstance(st["months"][0]["lines"][0]["report_amount"], str)


def test_every_character_is_escaped_as_the_standard_library_does(panel):
    """Control characters, quotes, backslashes, U+2028, astral characters: the same escapes."""
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    result = result_of(panel, "2011-03")
    result.statements[0].practice_id = text
    result.statements[0].lines[0].note = text[:5000]
    result.warnings = [text[::-1]]
    assert render.to_json(result) == reference(result)


def test_odd_decimals_are_written_as_pydantic_wrote_them(panel):
    result = result_of(panel, "2011-03")
    line = result.statements[0].lines[0]
    for value in ("1E+3", "-0", "0E-8", "-0.00", "123456789012345678901234567890.12", "1E-7"):
        line.amount = line.basis = Decimal(value)
        assert render.to_json(result) == reference(result), value


def test_no_statements_and_no_summary_rows(panel):
    result = dataclasses.replace(result_of(panel, "2011-03"), statements=[])
    assert render.to_json(result) == reference(result)
    empty = dataclasses.replace(summarise(result_of(panel, "2011-03")), summary=[])
    assert render.to_json(empty) == reference(empty)


def test_large_lists_are_written_a_chunk_at_a_time(panel, monkeypatch):
    monkeypatch.setattr(render, "_CHUNK", 1)
    result = result_of(panel, "2011-03")
    writes: list[bytes] = []

    class Sink(io.BytesIO):
        def write(self, data):
            writes.append(bytes(data))
            return super().write(data)

    sink = Sink()
    render.write_json(result, sink)
    assert sink.getvalue().decode() == reference(result)
    assert max(len(w) for w in writes) < len(sink.getvalue()) / 2  # never the whole output at once
    assert sum(b'"practice_id"' in w for w in writes) == len(result.statements)


def test_the_json_writer_does_not_load_pydantic(panel):
    """pydantic's import and serializer were most of the time the JSON output took."""
    code = f"""
import sys
from pathlib import Path
from capdsl.pipeline import Run, compiled_file, evaluate
folder = Path({str(panel)!r})
files = {{t: str(folder / f"{{t}}.csv") for t in ("members", "practices", "measures")}}
result, _ = evaluate(compiled_file(folder / "c.cap"), Run(files=files, period="2011-Q2"), by_month=True)
before = "pydantic" in sys.modules
from capdsl.tools.render import to_json
assert to_json(result).startswith("{{")
print(before, "pydantic" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    before, after = done.stdout.split()
    assert after == before  # loaded only if something else (not the writer) loaded it


# ─────────────────────────────── the command ───────────────────────────────

def cli(folder: Path, *more: str):
    argv = ["eval", str(folder / "c.cap"), "--members", str(folder / "members.csv"), "--practices",
            str(folder / "practices.csv"), "--measures", str(folder / "measures.csv"), "--quiet", *more]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def test_stdout_and_a_file_get_the_reference_bytes(panel, tmp_path):
    expected = reference(result_of(panel, "2011", by_month=True))
    out = cli(panel, "--period", "2011", "--by", "month", "--format", "json")
    assert out.exit_code == 0, out.output
    assert out.stdout == expected
    target = tmp_path / "s.json"
    assert cli(panel, "--period", "2011", "--by", "month", "-o", str(target)).exit_code == 0
    assert target.read_text(encoding="utf-8") == expected
    dash = cli(panel, "--period", "2011", "--by", "month", "--format", "json", "-o", "-")
    assert dash.stdout == expected


def test_summary_json_from_the_command(panel):
    out = cli(panel, "--period", "2011-Q4", "--by", "month", "--summary", "--format", "json")
    assert out.stdout == reference(result_of(panel, "2011-Q4", by_month=True, summary=True))


def test_the_output_matches_the_schema(panel):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(CliRunner().invoke(main, ["schema"]).stdout)
    for period, by_month, summary in VIEWS:
        jsonschema.validate(json.loads(render.to_json(result_of(panel, period, by_month=by_month, summary=summary))),
                            schema)


# ─────────────────────────────── member detail ─────────────────────────────

def test_detail_is_byte_identical_to_the_reference(panel, monkeypatch):
    detail, _ = member_detail(compiled_file(panel / "c.cap"), Run(files=files(panel), period="2011-Q2"))
    assert len(detail.rows) > 3
    for chunk in (1, 2, 512):
        monkeypatch.setattr(render, "_CHUNK", chunk)
        assert render.detail_to_json(detail) == detail_reference(detail)


def test_detail_values_of_every_kind():
    rows = [("P1", "M1", "2011-03", 40, Decimal("1"), Decimal("72.500000000000"), None, True),
            ("=X", "„M“\t\\", "2011-03", 0, Decimal("0.032258064516"), Decimal("-0E-12"), Decimal("0E-12"), False),
            ("P2", "M3", "2011-04", 101, Decimal("1E+2"), Decimal("-1.250000000000"), Decimal("1.5E-11"), None)]
    detail = DetailTable(("practice_id", "member", "month", "age", "weight", "a", "b", "c"), rows,
                         {"a": "sum of rate over members", "b": "count of members – „x“", "c": ""})
    assert render.detail_to_json(detail) == detail_reference(detail)
    data = json.loads(render.detail_to_json(detail))
    assert data["rows"][1][5] == "-0" and data["rows"][1][6] == "0"  # -0 and 0 are not confused
    assert data["rows"][0][3] == 40 and data["rows"][0][7] is True
    empty = DetailTable(detail.columns, [], {})
    assert render.detail_to_json(empty) == detail_reference(empty)


def test_detail_csv_keeps_its_text_and_is_spreadsheet_safe():
    rows = [("=HYPERLINK(\"x\")", "+M1", "2011-03", 40, Decimal("1"), Decimal("-0E-12"), None)]
    detail = DetailTable(("practice_id", "member", "month", "age", "weight", "a", "b"), rows, {})
    lines = render.detail_to_csv(detail).splitlines()
    assert lines[1] == "\"'=HYPERLINK(\"\"x\"\")\",'+M1,2011-03,40,1,-0,"
    assert render.detail_to_csv(detail, raw_cells=True).splitlines()[1] == \
        "\"=HYPERLINK(\"\"x\"\")\",+M1,2011-03,40,1,-0,"


def test_detail_json_from_the_command(panel, tmp_path):
    detail, _ = member_detail(compiled_file(panel / "c.cap"), Run(files=files(panel), period="2011-03"))
    out = cli(panel, "--period", "2011-03", "--detail", "member", "--format", "json")
    assert out.exit_code == 0, out.output
    assert out.stdout == detail_reference(detail)
    target = tmp_path / "d.json"
    assert cli(panel, "--period", "2011-03", "--detail", "member", "-o", str(target)).exit_code == 0
    assert target.read_text(encoding="utf-8") == detail_reference(detail)

