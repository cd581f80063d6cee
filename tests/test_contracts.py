"""The contract library (contracts/): every contract checks clean, is in
canonical layout, passes its embedded examples on every engine, and
evaluates on its fixture panel (tests/panels/<contract>/) to the golden
statements in expected/ — month, quarter, quarter-end with pools, and year —
on the reference interpreter and on DuckDB (one period on Spark).

Regenerate a golden file only after reviewing the change:
    capdsl eval contracts/C.cap --members tests/panels/C/members.csv ... --period P --format csv
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main
from capdsl.language.fmt import format_source
from capdsl.errors import Source
from capdsl.pipeline import check_file

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = sorted((ROOT / "contracts").glob("*.cap"))
PANELS = ROOT / "tests" / "panels"
PERIODS = ["2011-03", "2011-Q1", "2011-Q4", "2011"]
ENGINES = ["python", "duckdb"]


def _ids(paths):
    return [p.stem for p in paths]


def panel_args(stem: str) -> list[str]:
    args = []
    for table in ("members", "practices", "events", "measures"):
        path = PANELS / stem / f"{table}.csv"
        if path.exists():
            args += [f"--{table}", str(path)]
    return args


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_every_contract_has_a_panel_and_golden_statements():
    for contract in CONTRACTS:
        for period in PERIODS:
            assert (PANELS / contract.stem / "expected" / f"{period}.csv").exists(), (contract.stem, period)


def test_every_contract_is_documented():
    index = (ROOT / "docs" / "contracts" / "index.md").read_text(encoding="utf-8")
    for contract in CONTRACTS:
        assert (ROOT / "docs" / "contracts" / f"{contract.stem}.md").exists(), contract.stem
        assert contract.stem in index, contract.stem


@pytest.mark.parametrize("contract", CONTRACTS, ids=_ids(CONTRACTS))
def test_contract_checks_clean_and_is_formatted(contract):
    checked = check_file(contract)
    assert not [w for w in checked.warnings if w.code.startswith("E")]
    text = contract.read_text(encoding="utf-8")
    assert format_source(Source(text, str(contract))) == text, f"run `capdsl fmt {contract.name}`"


def test_check_and_fmt_check_pass_on_the_library():
    assert run("check", str(ROOT / "contracts")).exit_code == 0
    assert run("fmt", "--check", str(ROOT / "contracts")).exit_code == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_embedded_examples_pass(engine):
    result = run("test", str(ROOT / "contracts"), "--engine", engine)
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("contract", CONTRACTS, ids=_ids(CONTRACTS))
def test_contract_statements_match_golden(contract, period, engine):
    expected = (PANELS / contract.stem / "expected" / f"{period}.csv").read_text(encoding="utf-8")
    result = run("eval", str(contract), *panel_args(contract.stem), "--period", period, "--format", "csv",
                 "--engine", engine, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout == expected


@pytest.mark.spark
def test_a_contract_with_pools_on_spark_matches_golden():
    """One contract (a Spark session costs tens of seconds); the SQL is the same as DuckDB's,
    and tests/test_sql_spark.py compares Spark with the interpreter construct by construct."""
    from capdsl.sql.spark_engine import available

    why = available()
    if why:
        pytest.skip(why)
    for stem in ("cz_vzp_2011_adult",):
        expected = (PANELS / stem / "expected" / "2011-Q4.csv").read_text(encoding="utf-8")
        result = run("eval", str(ROOT / "contracts" / f"{stem}.cap"), *panel_args(stem), "--period", "2011-Q4",
                     "--format", "csv", "--engine", "spark", "--quiet")
        assert result.exit_code == 0, result.output
        assert result.stdout == expected, stem


EVENTS_ONLY = '''contract "Events at a practice no other line names":
    currency EUR
    period month
end

line fees "Fees" = sum of 10 EUR over events
line capitation "Capitation" = sum of 1 EUR over members

example "P2 has events and no members":
    period 2011-03
    practice P1
    2 members of P1 aged 40
    3 events of P2 code "A" on 2011-03-10
    expect P1 total = 2.00 EUR
    expect P2 fees = 30.00 EUR
    expect total = 32.00 EUR
end
'''


@pytest.mark.parametrize("engine", ENGINES)
def test_an_example_practice_named_only_by_its_events_is_paid_on_every_engine(engine, tmp_path):
    """Events of a practice that no `practice` line or member names put it on the example's panel:
    not dropped by the interpreter, not an error about a practices file on a SQL engine."""
    path = tmp_path / "events_only.cap"
    path.write_text(EVENTS_ONLY, encoding="utf-8")
    result = run("test", str(path), "--engine", engine)
    assert result.exit_code == 0 and "1 passed, 0 failed" in result.output, result.output
