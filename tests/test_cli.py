"""The command line, end to end, through click's runner and a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
VZP = str(ROOT / "contracts" / "cz_vzp_2011_adult.cap")
SAMPLE = ["--members", str(ROOT / "examples" / "members.csv"), "--practices", str(ROOT / "examples" / "practices.csv"),
          "--events", str(ROOT / "examples" / "events.csv"), "--measures", str(ROOT / "examples" / "measures.csv")]


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help():
    assert run("--version").output.startswith("capdsl, version")
    for cmd in ("check", "fmt", "eval", "explain", "test", "schema", "compile"):
        result = run(cmd, "--help")
        assert result.exit_code == 0, cmd
        assert "Usage" in result.output


def test_check_clean_contract():
    result = run("check", VZP)
    assert result.exit_code == 0, result.output


def test_check_reports_located_error_with_caret(tmp_path):
    bad = tmp_path / "bad.cap"
    bad.write_text('contract "x":\n    currency CZK\nend\nline a "A" = sum of 1 CZK + 1 EUR over members\n')
    result = run("check", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:4:" in result.output
    assert "^" in result.output


def test_check_json_format(tmp_path):
    bad = tmp_path / "bad.cap"
    bad.write_text('contract "x":\n    currency\nend\n')
    result = run("check", "--format", "json", str(bad))
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data[0]["code"].startswith("E01") and data[0]["line"] == 3 or data[0]["line"] == 2


def test_no_traceback_for_missing_file():
    result = run("check", "/nonexistent/contract.cap")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "E0001" in result.output


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_eval_sample_json(engine):
    result = run("eval", VZP, *SAMPLE, "--period", "2011-03", "--format", "json", "--engine", engine, "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["currency"] == "CZK" and data["statements"]
    for st in data["statements"]:
        assert Decimal(st["total"]) == sum(Decimal(line["amount"]) for line in st["lines"])
    assert Decimal(data["total"]) == sum(Decimal(st["total"]) for st in data["statements"])


def test_eval_engines_agree_to_the_cent():
    outs = {}
    for engine in ("python", "duckdb"):
        result = run("eval", VZP, *SAMPLE, "--period", "2011", "--format", "json", "--engine", engine, "-q")
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        data.pop("engine")
        outs[engine] = data
    assert outs["python"] == outs["duckdb"]


def test_eval_csv_and_output_file(tmp_path):
    out = tmp_path / "s.csv"
    result = run("eval", VZP, *SAMPLE, "--period", "2011-Q1", "--format", "csv", "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.splitlines()[0].startswith("practice_id,line,label")
    assert not list(tmp_path.glob("*.tmp*"))


def test_eval_bad_period_is_a_clear_error():
    result = run("eval", VZP, *SAMPLE, "--period", "2011-13")
    assert result.exit_code == 1
    assert "E0901" in result.output and "Traceback" not in result.output


def test_explain_accounts_for_every_cent():
    result = run("explain", VZP, *SAMPLE, "--period", "2011-03", "--practice", "P00001", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the panel warnings go to stderr
    for line in data["lines"]:
        for month in line["months"]:
            if not month["applied"]:
                continue
            assert Decimal(month["unrounded"]) + Decimal(month["rounding"]) == Decimal(month["amount"])
            for agg in month["aggregates"]:
                assert sum(Decimal(g["subtotal"]) for g in agg["groups"]) == Decimal(agg["value"])


def test_explain_text_names_the_band_and_source():
    result = run("explain", VZP, *SAMPLE, "--period", "2011-03", "--practice", "P00001", "--line", "capitation")
    assert result.exit_code == 0, result.output
    assert "age_index" in result.output and "cz_vzp_2011_adult.cap:" in result.output


def test_schema_is_json_schema():
    result = run("schema")
    data = json.loads(result.output)
    assert data["title"] == "Result" and "statements" in data["properties"]


def test_test_command_runs_embedded_examples():
    result = run("test", VZP)
    assert result.exit_code == 0, result.output
    assert "passed" in result.output


def test_help_is_fast_enough_to_import_lazily():
    """`capdsl --help` must not import the heavy stages (duckdb, pyarrow, pydantic)."""
    code = ("import sys; import capdsl.tools.cli; "
            "print(','.join(m for m in ('duckdb', 'pyarrow', 'pydantic', 'lark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_eval_detail_member_sums_to_the_statement_line(tmp_path):
    import csv
    import io
    import json
    from decimal import Decimal

    detail = run("eval", VZP, *SAMPLE, "--period", "2011-Q1", "--detail", "member", "--format", "csv", "--quiet")
    assert detail.exit_code == 0, detail.output
    rows = list(csv.DictReader(io.StringIO(detail.stdout)))
    statements = json.loads(run("eval", VZP, *SAMPLE, "--period", "2011-Q1", "--format", "json", "--quiet").stdout)
    for st in statements["statements"]:
        line = next(x for x in st["lines"] if x["id"] == "capitation")
        parts = sum(Decimal(r["capitation"]) for r in rows if r["practice_id"] == st["practice_id"])
        # the line is the month-by-month sum, each month rounded to the cent
        by_month = {}
        for r in rows:
            if r["practice_id"] == st["practice_id"]:
                by_month[r["month"]] = by_month.get(r["month"], Decimal(0)) + Decimal(r["capitation"])
        assert sum(v.quantize(Decimal("0.01")) for v in by_month.values()) == Decimal(line["amount"])
        assert abs(parts - Decimal(line["amount"])) < Decimal("0.03")
    assert {r["month"] for r in rows} == {"2011-01", "2011-02", "2011-03"}


def test_eval_detail_redact_and_parquet(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "detail.parquet"
    result = run("eval", VZP, *SAMPLE, "--period", "2011-03", "--detail", "member", "--format", "parquet",
                 "-o", str(out), "--redact", "--quiet")
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert str(table.schema.field("capitation").type) == "decimal128(38, 12)"
    assert all(m.startswith("m:") for m in table.column("member").to_pylist())


def test_explain_text_highlights_source_on_a_terminal_and_orders_groups_naturally():
    from capdsl.tools.explain import explain, render_text
    from capdsl.pipeline import Run, compile_file

    checked, program = compile_file(VZP)
    files = dict(zip(("members", "practices", "events", "measures"), SAMPLE[1::2]))
    e = explain(program, checked.source, Run(files=files, period="2011-03"), "P00001", line_id="akord_supplement")
    plain, coloured = render_text(e), render_text(e, checked.source)
    assert "\x1b[" not in plain and "\x1b[" in coloured
    source_part = coloured.split("source  ")[0]
    assert "applies" in source_part and " 94 " in source_part and " 96 " not in source_part  # the block only
    ages = [int(g["key"]["age"]) for g in e["lines"][0]["months"][0]["aggregates"][0]["groups"]]
    assert ages == sorted(ages)
    assert "0E-" not in plain and ".000000000000" not in plain


# The console script's fast exit (capdsl/tools/launch.py): the command's own atexit handlers still run,
# open panels are closed (DuckDB removes what it spilled), stdout is complete, exit codes unchanged.
FAST_EXIT_PROBE = """
import atexit, os, sys
import capdsl.tools.cli as cli
import capdsl.data.panel as panel
marker = sys.argv[1]
real_close = panel.Panel.close
def close(self):
    open(marker, "a").write("panel closed\\n")
    real_close(self)
panel.Panel.close = close
real_main = cli.main
kept = []
def main(*args, **kwargs):
    atexit.register(lambda: open(marker, "a").write("handler ran\\n"))
    if "--members" in sys.argv:  # a panel still referenced at exit, besides eval's own
        kept.append(panel.load_panel({"members": sys.argv[sys.argv.index("--members") + 1]}))
        if os.environ.get("PROBE_SPILL"):  # make DuckDB write temporary files for it
            kept[0].con.execute("SET memory_limit = '20MB'")
            kept[0].con.execute(f"SET temp_directory = '{os.environ['PROBE_SPILL']}'")
            kept[0].con.execute("CREATE TABLE big AS SELECT range AS a, CAST(range AS VARCHAR) AS b "
                                "FROM range(3000000)")
            open(marker, "a").write(f"spilled {len(os.listdir(os.environ['PROBE_SPILL']))}\\n")
    return real_main(*args, **kwargs)
cli.main = main
from capdsl.tools.launch import main as launch
sys.argv = ["capdsl"] + sys.argv[2:]
launch()
"""


def _probe(tmp_path, *args, env=None):
    marker = tmp_path / "marker.txt"
    proc = subprocess.run([sys.executable, "-c", FAST_EXIT_PROBE, str(marker), *args], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, **(env or {})})
    return proc, (marker.read_text().splitlines() if marker.exists() else [])


def test_fast_exit_runs_handlers_and_keeps_stdout(tmp_path):
    proc, events = _probe(tmp_path, "eval", VZP, *SAMPLE, "--period", "2011-03", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    # eval's own panel is released when the command returns; the probe's, still referenced, wrote no
    # file, so the exit leaves it open and frees its memory
    assert events == ["handler ran"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker.txt"]  # no DuckDB .tmp left behind
    expected = run("eval", VZP, *SAMPLE, "--period", "2011-03", "--format", "csv").stdout
    assert proc.stdout == expected and proc.stdout.count("\n") > 10


def test_eval_keeps_no_panel_open_once_it_returns():
    """No panel outlives its command for the exit to close: eval's is released when eval returns."""
    import gc

    from capdsl.data import panel

    before = len(panel._OPEN)
    assert run("eval", VZP, *SAMPLE, "--period", "2011-03", "--format", "csv").exit_code == 0
    gc.collect()
    assert len(panel._OPEN) <= before


def test_fast_exit_closes_a_panel_that_spilled_to_disk(tmp_path):
    spill = tmp_path / "spill"
    proc, events = _probe(tmp_path, "eval", VZP, *SAMPLE, "--period", "2011-03", "--format", "csv",
                          env={"PROBE_SPILL": str(spill)})
    assert proc.returncode == 0, proc.stderr
    assert events[0].startswith("spilled ") and int(events[0].split()[1]) > 1
    assert events[1:] == ["handler ran", "panel closed"]  # only the panel that spilled
    assert not spill.exists()  # DuckDB removed its files when the panel was closed


@pytest.mark.parametrize("args, code", [
    (["check", str(ROOT / "tests" / "no-such.cap")], 1),
    (["eval", VZP, "--period", "2011-03", "--no-such-option"], 2),
    (["--version"], 0),
])
def test_fast_exit_keeps_the_exit_code_and_messages(tmp_path, args, code):
    proc, events = _probe(tmp_path, *args)
    assert proc.returncode == code
    assert events == ["handler ran"]
    if code:
        assert proc.stderr.strip() and "Traceback" not in proc.stderr
    else:
        assert proc.stdout.startswith("capdsl, version")


GC_PROBE = """
import gc, sys
import click
import capdsl.tools.cli as cli
import capdsl.tools.lsp as lsp
lsp.serve = lambda: print("server: collector", gc.isenabled())
cli.main.add_command(click.Command("probe", callback=lambda: print("command: collector", gc.isenabled())))
from capdsl.tools.launch import main
sys.argv = ["capdsl", sys.argv[1]]
main()
"""


@pytest.mark.parametrize("command, expected", [("probe", "command: collector False"),
                                               ("lsp", "server: collector True")])
def test_console_script_collects_cycles_only_in_the_language_server(command, expected):
    pytest.importorskip("pygls")
    proc = subprocess.run([sys.executable, "-c", GC_PROBE, command], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_explain_reports_the_panels_warnings_as_eval_does():
    """The measures file has a measure the contract does not declare (W0712): eval and explain both say so,
    on stderr, and explain's JSON carries it."""
    result = run("explain", VZP, *SAMPLE, "--period", "2011-03", "--practice", "P00001", "--format", "json")
    assert "W0712" in result.stderr
    assert any("W0712" in w for w in json.loads(result.stdout)["warnings"])
    assert "W0712" in run("eval", VZP, *SAMPLE, "--period", "2011-03").stderr


@pytest.mark.parametrize("command, source", [("from-atr", "examples/fhir_atr"),
                                             ("from-834", "examples/x12/members_2011-01.834"),
                                             ("from-820", "examples/x12/remittance_2011-02.820")])
def test_a_parquet_panel_is_not_written_onto_a_terminal(command, source, tmp_path):
    """`panel from-… -o - --format parquet` onto a terminal is E0917 and writes nothing there; into a
    pipe it is the Parquet file."""
    import pty

    argv = [sys.executable, "-m", "capdsl", "panel", command, source, "-o", "-", "--format", "parquet"]
    primary, replica = pty.openpty()
    try:
        done = subprocess.run(argv, cwd=ROOT, stdout=replica, stderr=subprocess.PIPE, timeout=300)
    finally:
        os.close(replica)
        os.close(primary)
    assert done.returncode == 1 and b"E0917" in done.stderr and b"Traceback" not in done.stderr
    piped = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout[:4] == b"PAR1"
