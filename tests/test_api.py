"""The Python API (`import capdsl`): the same statements, errors and warnings as the CLI, on files
and on in-memory tables."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import capdsl

ROOT = Path(__file__).resolve().parent.parent
VZP = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
PANEL = {t: str(ROOT / "examples" / f"{t}.csv") for t in ("members", "practices", "events", "measures")}


def _cli_json(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "capdsl", "eval", str(VZP), *args, "--format", "json", "-q"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_import_capdsl_loads_nothing_else():
    code = "import sys, capdsl; print(sorted(m for m in sys.modules if m.startswith('capdsl')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['capdsl']"


def test_evaluate_on_files_equals_the_cli():
    contract = capdsl.load(VZP)
    assert contract.currency == "CZK" and "capitation" in contract.lines and contract.warnings == []
    result = contract.evaluate("2011-03", **PANEL)
    cli = _cli_json(*(f"--{t}={p}" for t, p in PANEL.items()), "--period", "2011-03")
    assert result.total == Decimal(cli["total"])
    assert {s.practice_id: s.total for s in result.statements} == \
        {s["practice_id"]: Decimal(s["total"]) for s in cli["statements"]}
    assert json.loads(result.to_json())["total"] == cli["total"]


def test_in_memory_tables_give_the_files_answer():
    from_files = capdsl.evaluate(VZP, "2011-Q1", **PANEL)
    members = pacsv.read_csv(PANEL["members"])
    practices = duckdb.sql(f"SELECT * FROM read_csv_auto('{PANEL['practices']}')")

    class Frame:  # any data frame with the Arrow C stream interface (polars, pandas >= 2.2)
        def __init__(self, table):
            self.table = table

        def __arrow_c_stream__(self, requested_schema=None):
            return self.table.__arrow_c_stream__(requested_schema)

    events = Frame(pacsv.read_csv(PANEL["events"]))
    result = capdsl.evaluate(VZP, "2011-Q1", members, practices, events, PANEL["measures"])
    assert result.total == from_files.total
    assert [s.total for s in result.statements] == [s.total for s in from_files.statements]


def test_statements_as_arrow_keep_exact_decimals():
    result = capdsl.evaluate(VZP, "2011-03", **PANEL)
    table = result.to_arrow()
    assert table.schema.field("amount").type == pa.decimal128(38, 2)
    totals = [a for kind, a in zip(table.column("kind").to_pylist(), table.column("amount").to_pylist())
              if kind == "total"]
    assert sum(totals) == result.total


def test_a_contract_error_raises_the_diagnostics(tmp_path):
    bad = tmp_path / "bad.cap"
    bad.write_text('contract "X":\n    currency CZK\nend\n\nline a "A" = 10 CZK * nothing\n', encoding="utf-8")
    with pytest.raises(capdsl.CheckError) as info:
        capdsl.load(bad)
    assert isinstance(info.value, capdsl.CapError)
    assert info.value.code == "E0203"  # an unknown name
    assert "bad.cap:5" in info.value.render()


def test_a_bad_in_memory_table_is_named_not_its_temporary_file():
    members = pa.table({"member_id": ["a", "a"], "practice_id": ["P1", "P1"],
                        "birth_date": pa.array([19700101, 19700101]).cast(pa.int64())})
    with pytest.raises(capdsl.InputError) as info:
        capdsl.evaluate(VZP, "2011-03", members, PANEL["practices"])
    text = info.value.render()
    assert "<members table>" in text and "capdsl-panel-" not in text


def test_what_cannot_be_a_table_is_a_usage_error():
    with pytest.raises(capdsl.UsageError) as info:
        capdsl.evaluate(VZP, "2011-03", members=42)
    assert info.value.code == "E0940"
    with pytest.raises(capdsl.UsageError) as info:
        capdsl.evaluate(VZP, "2011-03", engine="excel", **PANEL)
    assert info.value.code == "E0924"


def test_parameters_are_typed_as_the_clis(tmp_path):
    contract = tmp_path / "p.cap"
    contract.write_text('contract "P":\n    currency CZK\nend\n\ninputs:\n    param rate: CZK = 10 CZK\nend\n\n'
                        'line cap "Capitation" = count of members * rate\n', encoding="utf-8")
    default = capdsl.evaluate(contract, "2011-03", PANEL["members"])
    doubled = capdsl.evaluate(contract, "2011-03", PANEL["members"], params={"rate": "20 CZK"})
    assert doubled.total == 2 * default.total > 0


def test_explain_and_diff_through_the_api():
    contract = capdsl.load(VZP)
    first = contract.evaluate("2011-03", **PANEL).statements[0].practice_id
    trail = contract.explain("2011-03", first, **PANEL)
    assert {line["id"] for line in trail["lines"]} == set(contract.lines)
    impact = contract.diff(contract, "2011-03", **PANEL)
    assert impact.delta == 0 and impact.old_total == impact.new_total > 0


def test_the_docs_first_example_runs(monkeypatch):
    """docs/api.md's opening example, run as written from the repository root."""
    import re

    block = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), re.S).group(1)
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(block, "docs/api.md", "exec"), scope)  # the docs' own snippet, not contract input
    assert scope["result"].total == capdsl.evaluate(VZP, "2011-03", **PANEL).total
