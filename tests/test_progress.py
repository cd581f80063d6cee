"""Progress on stderr for the long commands (diff, explain, test, eval): shown when stderr is a
terminal — here a pseudo-terminal — and never into a pipe or a file, nor with -q."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capdsl.pipeline import Run
from capdsl.tools.diff_command import run_diff
from validation_helpers import BASE, variant, write, write_panel

ROOT = Path(__file__).resolve().parent.parent
CAPDSL = [sys.executable, "-m", "capdsl"]
SPINNER = re.compile("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# a count's first value is a new phase, drawn at once; later values wait for the spinner's frames
DIFF_PHASES = ["compiling the contracts", "old contract: reading the panel and evaluating",
               "new contract: reading the panel and evaluating", "drivers: reading the members",
               "drivers: grouping members, old contract, practice 1/3",
               "drivers: grouping members, new contract, practice 1/3", "drivers: tiers and practice tables",
               "writing the report: practice names, file hashes, charts"]

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")


def on_terminal(*args: str, stderr_tty: bool = True, cwd=None, timeout: float = 120):
    """Run `capdsl ARGS` with stdout a pipe and stderr a pseudo-terminal (or a pipe):
    (exit code, stdout, stderr as the terminal received it)."""
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "220", "LINES": "40"}
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    if not stderr_tty:
        proc = subprocess.run([*CAPDSL, *args], capture_output=True, cwd=cwd, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CAPDSL, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            cwd=cwd, env=env)
    os.close(slave)
    received, out = b"", []
    deadline = time.monotonic() + timeout
    with contextlib.closing(proc.stdout):
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master, proc.stdout], [], [], 0.2)
            if proc.stdout in ready:
                out.append(proc.stdout.read() or b"")
            if master in ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer has gone
                    chunk = b""
                if not chunk:
                    break
                received += chunk
            elif proc.poll() is not None and master not in ready:
                break
        else:
            proc.kill()
            pytest.fail(f"capdsl {' '.join(args)} did not finish in {timeout} s")
        out.append(proc.stdout.read() or b"")
    os.close(master)
    proc.wait(timeout=30)
    return proc.returncode, b"".join(out).decode(), received.decode("utf-8", "replace")


def phases(terminal: str) -> list[str]:
    """The texts the spinner showed, in order (each once)."""
    seen: list[str] = []
    for text in re.findall(SPINNER.pattern + r" ([^\r\n]*?) …", ANSI.sub("", terminal)):
        if not seen or seen[-1] != text:
            seen.append(text)
    return seen


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    files = write_panel(root / "panel", members=60, practices=3)
    old = write(root / "old.cap", BASE)
    new = write(root / "new.cap", variant(BASE, ("45 CZK otherwise", "40 CZK otherwise")))
    return root, files, old, new


def diff_args(panel, *extra: str) -> list[str]:
    root, files, old, new = panel
    return ["diff", old, new, "--members", files["members"], "--practices", files["practices"],
            "--events", files["events"], "--period", "2011-03", "--engine", "python", *extra]


def test_diff_shows_its_phases_on_a_terminal(panel, tmp_path):
    rc, out, err = on_terminal(*diff_args(panel, "--report", str(tmp_path / "r.html")))
    assert rc == 0, err
    shown = phases(err)
    for phase in DIFF_PHASES:
        assert phase in shown, (phase, shown)
    assert [shown.index(p) for p in DIFF_PHASES] == sorted(shown.index(p) for p in DIFF_PHASES)
    # the terminal is left clean: the cursor shown again, the spinner's line erased before the messages
    assert "\x1b[?25l" in err and "\x1b[?25h" in err
    assert err.index("report written to") > err.rindex("writing the report")
    assert "total" in out and not SPINNER.search(out)  # standard output (a pipe) has no progress


def test_diff_shows_nothing_in_a_pipe_or_with_quiet(panel, tmp_path):
    rc, out, err = on_terminal(*diff_args(panel, "--report", str(tmp_path / "r.html")), stderr_tty=False)
    assert rc == 0, err
    assert not SPINNER.search(err) and "\x1b[" not in err and "reading the panel" not in err
    assert "report written to" in err  # what stderr is for off a terminal
    rc, out, err = on_terminal(*diff_args(panel, "-q"))
    assert rc == 0, err
    assert err == "" and "total" in out  # -q: nothing on stderr, even on a terminal


def test_test_command_counts_examples_on_a_terminal():
    rc, out, err = on_terminal("test", str(ROOT / "contracts"))
    assert rc == 0, err
    shown = phases(err)
    counted = [p for p in shown if p.startswith("example ")]
    total = int(re.search(r"(\d+) passed", err + out).group(1))
    done = [int(re.match(r"example (\d+)/(\d+): ", p).group(1)) for p in counted]
    assert counted[0].startswith(f"example 1/{total}: ") and done == sorted(done) and done[-1] <= total, shown
    assert all(f"/{total}: " in p for p in counted)
    assert any(p.startswith("compiling ") for p in shown)
    assert "\x1b[?25h" in err
    assert not SPINNER.search(out)


def test_test_command_shows_nothing_in_a_pipe():
    rc, out, err = on_terminal("test", str(ROOT / "contracts" / "us_pmpm.cap"), stderr_tty=False)
    assert rc == 0, err
    assert not SPINNER.search(err) and "example " not in err and "\x1b[" not in err


def test_explain_and_eval_on_a_terminal_and_in_a_pipe(panel):
    _root, files, old, _new = panel
    args = [old, "--members", files["members"], "--practices", files["practices"], "--events", files["events"],
            "--period", "2011-03"]
    rc, out, err = on_terminal("explain", *args, "--practice", "P1")
    assert rc == 0, err
    assert "explaining P1 in old.cap for 2011-03" in phases(err) and "P1" in out
    rc, out, err = on_terminal("explain", *args, "--practice", "P1", stderr_tty=False)
    assert rc == 0 and not SPINNER.search(err) and "explaining" not in err
    rc, out, err = on_terminal("eval", *args)
    assert rc == 0 and "evaluating old.cap for 2011-03 (duckdb)" in phases(err)
    rc, out, err = on_terminal("eval", *args, "-q")
    assert rc == 0 and err == ""


def test_run_diff_reports_every_phase_in_order(panel, tmp_path):
    """The phases as the API hears them (what the spinner shows), without a terminal."""
    _root, files, old, new = panel
    heard: list[str] = []

    @contextlib.contextmanager
    def listener():
        yield heard.append

    run = Run(files=files, period="2011-03", engine="python")
    run_diff(old, new, run, report=str(tmp_path / "r.html"), quiet=True, progress=listener(),
             output=os.devnull, out_format="json")
    assert [h for h in heard if "practice 2/" not in h] == [
        "compiling the contracts", "old contract: reading the panel and evaluating",
        "new contract: reading the panel and evaluating", "drivers: reading the members",
        "drivers: grouping members, old contract, practice 1/3",
        "drivers: grouping members, old contract, practice 3/3",
        "drivers: grouping members, new contract, practice 1/3",
        "drivers: grouping members, new contract, practice 3/3",
        "drivers: tiers and practice tables", "writing the report: practice names, file hashes, charts"]


def test_progress_is_a_no_op_off_a_terminal(capsys):
    from capdsl.tools.cli import progress

    with progress(False, "working") as shown:  # pytest's captured stderr is not a terminal
        shown("a phase")
        shown.update("another [bold]phase[/bold]")
    assert capsys.readouterr().err == ""
    with progress(True, "working") as shown:
        assert not shown.shown
