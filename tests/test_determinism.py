"""Determinism: the same inputs give byte-identical statements.

For several contracts of contracts/ with their panel in tests/panels/<stem>/:
two runs give byte-identical JSON and CSV; the python (reference) and duckdb
engines give identical JSON once the `engine` field is normalised, and
identical CSV; and shuffling the data rows of every input file changes
nothing but the row numbers quoted in warnings.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ["cz_vzp_2011_adult", "cz_vzp_2011_paediatric", "hu_gp", "sk_paediatric_gp_dovera", "us_pmpm",
             "us_shared_savings"]
PERIOD = "2011"  # a whole year: every month, pools and their installments


def _args(panel: Path) -> list[str]:
    args = []
    for table in ("members", "practices", "events", "measures"):
        path = panel / f"{table}.csv"
        if path.exists():
            args += [f"--{table}", str(path)]
    return args


def _run(stem: str, panel: Path, engine: str, fmt: str) -> bytes:
    result = CliRunner().invoke(main, ["eval", str(ROOT / "contracts" / f"{stem}.cap"), *_args(panel), "--period",
                                       PERIOD, "--engine", engine, "--format", fmt, "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def _shuffled(panel: Path, dest: Path, seed: int) -> Path:
    rng = random.Random(seed)
    dest.mkdir()
    for path in panel.glob("*.csv"):
        header, *rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if rows and not rows[-1].endswith("\n"):
            rows[-1] += "\n"
        rng.shuffle(rows)
        (dest / path.name).write_text(header + "".join(rows), encoding="utf-8")
    return dest


def _normalised(data: bytes, drop_warnings: bool = False) -> dict:
    doc = json.loads(data)
    doc.pop("engine", None)
    if drop_warnings:  # warnings quote file row numbers, which a shuffle moves; keep their codes
        doc["warnings"] = sorted(w.split(":", 1)[-1].split("]")[0] for w in doc.get("warnings", []))
    return doc


@pytest.fixture(scope="module", params=CONTRACTS)
def case(request):
    stem = request.param
    panel = ROOT / "tests" / "panels" / stem
    assert (panel / "members.csv").exists()
    return stem, panel


@pytest.mark.parametrize("engine", ["python", "duckdb"])
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_two_runs_are_byte_identical(case, engine, fmt):
    stem, panel = case
    first = _run(stem, panel, engine, fmt)
    assert first
    assert _run(stem, panel, engine, fmt) == first


def test_engines_agree(case):
    stem, panel = case
    python_json = _run(stem, panel, "python", "json")
    duckdb_json = _run(stem, panel, "duckdb", "json")
    assert json.loads(python_json)["engine"] == "python"
    assert _normalised(python_json) == _normalised(duckdb_json)
    # byte-identical once the engine name is the same
    assert python_json.replace(b'"engine": "python"', b'"engine": "duckdb"') == duckdb_json
    assert _run(stem, panel, "python", "csv") == _run(stem, panel, "duckdb", "csv")


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_row_order_does_not_matter(case, engine, tmp_path):
    stem, panel = case
    want_json = _run(stem, panel, engine, "json")
    want_csv = _run(stem, panel, engine, "csv")
    for seed in (1, 2):
        shuffled = _shuffled(panel, tmp_path / f"s{seed}", seed)
        assert _run(stem, shuffled, engine, "csv") == want_csv
        assert _normalised(_run(stem, shuffled, engine, "json"), True) == _normalised(want_json, True)
