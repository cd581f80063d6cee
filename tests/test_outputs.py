"""Where outputs go, for every command that writes one.

The promises (docs/reliability.md, docs/cli.md): a regular file is replaced
atomically; a device, FIFO or terminal is written through, never renamed
over; a symlink is followed and its target replaced; a folder, a missing
folder or an unwritable place is a usage error found before any work; the
format follows `-o`'s extension unless `--format` says otherwise; `-` is
standard input or output; a closed pipe ends the command quietly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAPDSL = [sys.executable, "-m", "capdsl"]
PMPM = str(ROOT / "contracts" / "us_pmpm.cap")
HU = str(ROOT / "contracts" / "hu_gp.cap")
EX = ROOT / "examples"
PANEL = ["--members", str(EX / "members.csv"), "--practices", str(EX / "practices.csv"),
         "--events", str(EX / "events.csv"), "--measures", str(EX / "measures.csv")]
EVAL = ["eval", HU, *PANEL, "--period", "2011-03", "-q"]


def capdsl(*args, stdin: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CAPDSL, *args], input=stdin, capture_output=True, cwd=cwd, timeout=120)


def no_internal_error(proc: subprocess.CompletedProcess) -> None:
    err = proc.stderr.decode()
    assert "internal error" not in err and "Traceback" not in err, err


# ─────────────────────────── where an output goes ───────────────────────────

def test_a_device_is_written_through_not_replaced():
    proc = capdsl(*EVAL, "-o", os.devnull, "--format", "csv")
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "statements.pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    proc = capdsl(*EVAL, "-o", str(fifo), "--format", "csv")
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received and received[0].startswith(b"practice_id,line,")


def test_a_symlink_is_followed_and_its_target_replaced(tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target.name)
    proc = capdsl(*EVAL, "-o", str(link))
    assert proc.returncode == 0, proc.stderr.decode()
    assert link.is_symlink() and os.readlink(link) == target.name
    assert target.read_text().startswith("practice_id,line,")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to("made.json")
    proc = capdsl(*EVAL, "-o", str(link))
    assert proc.returncode == 0, proc.stderr.decode()
    assert link.is_symlink()
    json.loads((tmp_path / "made.json").read_text())


@pytest.mark.parametrize("where, why", [("{tmp}", "it is a folder"),
                                        ("{tmp}/missing/x.csv", "does not exist"),
                                        ("{tmp}/file.csv/x.csv", "is not a folder")])
def test_a_bad_output_path_is_refused_before_any_work(tmp_path, where, why):
    (tmp_path / "file.csv").write_text("x")
    out = where.format(tmp=tmp_path)
    # the members file does not exist: the output error must come first, before the panel is read
    proc = capdsl("eval", HU, "--members", str(tmp_path / "nowhere.csv"), "--period", "2011-03", "-o", out)
    assert proc.returncode == 1
    no_internal_error(proc)
    err = proc.stderr.decode()
    assert "E0930" in err and why in err and "E0701" not in err


@pytest.mark.parametrize("command", [
    ["diff", PMPM, PMPM, *PANEL, "--period", "2011-03", "-q"],
    ["test", str(ROOT / "contracts" / "us_pmpm.cap")],
    ["schema"],
    ["compile", PMPM, "--tree"],
])
def test_every_command_checks_its_output_path(tmp_path, command):
    proc = capdsl(*command, "-o", str(tmp_path / "missing" / "out.txt"))
    assert proc.returncode == 1
    no_internal_error(proc)
    assert "E0930" in proc.stderr.decode()


def test_diff_checks_the_report_path_first(tmp_path):
    proc = capdsl("diff", PMPM, PMPM, "--members", str(tmp_path / "nowhere.csv"), "--period", "2011-03",
                  "--report", str(tmp_path))
    assert proc.returncode == 1
    assert "E0930" in proc.stderr.decode() and "--report" in proc.stderr.decode()


def test_from_synthea_checks_both_outputs_and_refuses_stdout(tmp_path):
    patients = ROOT / "tests" / "data" / "synthea" / "patients.csv"
    if not patients.exists():
        patients = tmp_path / "patients.csv"
        patients.write_text("Id,BIRTHDATE,DEATHDATE,GENDER\nA,1980-01-01,,F\n")
    proc = capdsl("panel", "from-synthea", str(patients), "-o", str(tmp_path / "no" / "panel.csv"))
    assert proc.returncode == 1 and "E0930" in proc.stderr.decode()
    proc = capdsl("panel", "from-synthea", str(patients), "-o", "-")
    assert proc.returncode == 1 and "E0930" in proc.stderr.decode()


# ─────────────────────────── the format follows the extension ───────────────

def test_the_format_follows_the_extension(tmp_path):
    for name in ("s.csv", "s.json", "s.parquet", "s.txt"):
        proc = capdsl(*EVAL, "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "s.csv").read_text().startswith("practice_id,line,")
    assert json.loads((tmp_path / "s.json").read_text())["statements"]
    assert (tmp_path / "s.parquet").read_bytes()[:4] == b"PAR1"
    assert "Grand total" in (tmp_path / "s.txt").read_text()


def test_format_wins_over_the_extension(tmp_path):
    proc = capdsl(*EVAL, "-o", str(tmp_path / "s.txt"), "--format", "csv")
    assert proc.returncode == 0
    assert (tmp_path / "s.txt").read_text().startswith("practice_id,")


@pytest.mark.parametrize("name", ["s.docx", "statements"])
def test_an_unknown_extension_needs_format(tmp_path, name):
    proc = capdsl(*EVAL, "-o", str(tmp_path / name))
    assert proc.returncode == 1
    assert "E0906" in proc.stderr.decode() and "--format" in proc.stderr.decode()
    assert not (tmp_path / name).exists()


def test_test_report_format_from_extension(tmp_path):
    proc = capdsl("test", PMPM, "-o", str(tmp_path / "r.xml"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "r.xml").read_text().startswith("<?xml")
    proc = capdsl("test", PMPM, "-o", str(tmp_path / "r.txt"))
    assert proc.returncode == 0
    assert (tmp_path / "r.txt").read_text().startswith("PASS ")


def test_parquet_has_the_csv_columns_and_rows(tmp_path):
    import pyarrow.parquet as pq

    assert capdsl(*EVAL, "-o", str(tmp_path / "s.csv")).returncode == 0
    assert capdsl(*EVAL, "-o", str(tmp_path / "s.parquet")).returncode == 0
    rows = list(csv.reader(io.StringIO((tmp_path / "s.csv").read_text())))
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.column_names == rows[0]
    assert str(table.schema.field("basis").type).startswith("decimal128")
    as_text = [["" if v is None else ("true" if v is True else "false" if v is False else str(v)) for v in r]
               for r in zip(*(table.column(c).to_pylist() for c in table.column_names))]
    assert as_text == rows[1:]


# ─────────────────────────── `-` is standard input or output ────────────────

def test_dash_is_standard_output(tmp_path):
    proc = capdsl(*EVAL, "-o", "-", "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"practice_id,line,")
    assert not (tmp_path / "-").exists()
    proc = capdsl(*EVAL, "-o", "-", "--format", "parquet", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout[:4] == b"PAR1"


def test_check_and_fmt_read_standard_input():
    text = (ROOT / "contracts" / "us_pmpm.cap").read_bytes()
    assert capdsl("check", "-", stdin=text).returncode == 0
    messy = text.replace(b"\n    ", b"\n  ", 3)
    proc = capdsl("fmt", "-", stdin=messy)
    assert proc.returncode == 0 and proc.stdout == text
    proc = capdsl("fmt", "--check", "-", stdin=messy)
    assert proc.returncode == 1 and b"<stdin>" in proc.stderr
    bad = capdsl("check", "-", stdin=b'contract "x":\n    currency\nend\n')
    assert bad.returncode == 1 and b"<stdin>:2:" in bad.stderr


def test_members_from_standard_input():
    members = (EX / "members.csv").read_bytes()
    piped = capdsl("eval", HU, "--members", "-", *PANEL[2:], "--period", "2011-03", "-q", "--format", "csv",
                   stdin=members)
    assert piped.returncode == 0, piped.stderr.decode()
    direct = capdsl(*EVAL, "--format", "csv")
    assert piped.stdout == direct.stdout
    broken = members.replace(b"1951-07-14", b"1951-13-14", 1)
    proc = capdsl("eval", HU, "--members", "-", "--period", "2011-03", stdin=broken)
    assert proc.returncode == 1
    no_internal_error(proc)
    assert "<stdin>" in proc.stderr.decode() and "capdsl-stdin" not in proc.stderr.decode()


def test_two_panel_files_cannot_both_be_standard_input():
    proc = capdsl("eval", HU, "--members", "-", "--practices", "-", "--period", "2011-03", stdin=b"")
    assert proc.returncode == 1 and "E0931" in proc.stderr.decode()


# ─────────────────────────── a closed pipe ──────────────────────────────────

def test_a_closed_pipe_is_a_quiet_exit(tmp_path):
    big = tmp_path / "big.cap"
    lines = ['contract "big":\n    currency USD\nend\n'] + [
        f'line l{i} "Line {i}" = sum of {i} USD * member.age over members where member.age > {i % 90}\n'
        for i in range(400)]
    big.write_text("".join(lines))
    for command in (["compile", str(big), "--tree"], ["test", str(ROOT / "contracts")]):
        proc = subprocess.Popen([*CAPDSL, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
        assert "BrokenPipe" not in err and "internal error" not in err, err
        assert code in (0, 1, 141), (command, code, err)
