"""Resource limits and safety.

- The documented limits (source size E0003, nesting E0104, definitions
  E0105) give clean, located errors, from the API and the CLI.
- Pathological but legal contracts (10,000 bands, a 10,000-entry tier,
  5,000 lines) check and evaluate in bounded time: these are hang guards
  with generous bounds, not timing tests.
- Contracts cannot read files or the environment, import or execute
  anything: capdsl never hands contract text to eval/exec/compile/
  __import__/importlib, and text that looks like code is a syntax error.
- An interrupted run (SIGINT, SIGKILL) leaves no output file and no
  temporary file; Ctrl-C is a clean message and exit code 130.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main
from capdsl.errors import CapError, Source
from capdsl.pipeline import compile_source
from capdsl.language.syntax import MAX_DEFINITIONS, MAX_NESTING, MAX_SOURCE_BYTES, parse

ROOT = Path(__file__).resolve().parent.parent
HEADER = 'contract "limits":\n    currency CZK\nend\n\n'
BOUND = 30.0  # seconds: a hang guard, far above the expected time
SQL_BOUND = 90.0  # DuckDB plans a 10,000-branch CASE slowly on a busy 2-core machine


def _code(text: str) -> str:
    with pytest.raises(CapError) as info:
        parse(Source(text))
    return info.value.code


def _timed(fn, *args):
    start = time.monotonic()
    out = fn(*args)
    return out, time.monotonic() - start


# ───────────────────────────── the documented limits ─────────────────────────────

def test_source_size_limit():
    text = HEADER + "# " + "x" * MAX_SOURCE_BYTES + "\n"
    assert _code(text) == "E0003"


def test_source_size_limit_counts_bytes_not_characters():
    text = HEADER + "# " + "ř" * (MAX_SOURCE_BYTES // 2) + "\n"  # 2 bytes each
    assert _code(text) == "E0003"


def test_source_size_limit_from_the_cli(tmp_path):
    path = tmp_path / "big.cap"
    path.write_text(HEADER + ("# padding\n" * (MAX_SOURCE_BYTES // 10 + 1)), encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert "E0003" in result.output and "internal error" not in result.output


def test_nesting_limit_parentheses():
    ok = HEADER + "define x = " + "(" * MAX_NESTING + "1 CZK" + ")" * MAX_NESTING + "\n"
    parse(Source(ok))
    deep = HEADER + "define x = " + "(" * (MAX_NESTING + 1) + "1 CZK" + ")" * (MAX_NESTING + 1) + "\n"
    assert _code(deep) == "E0104"


@pytest.mark.parametrize("form", ["if", "not", "neg", "call", "sum"])
def test_nesting_limit_without_parentheses(form):
    """Deep trees built without parentheses hit E0104 too, never a RecursionError."""
    k = 5000
    expr = {"if": "if true then " * k + "1" + " else 2" * k,
            "not": "not " * k + "true",
            "neg": "-" * k + "1",
            "call": "min(" * k + "1" + ", 2)" * k,
            "sum": "1" + " + 1" * k}[form]
    with pytest.raises(CapError) as info:
        compile_source(Source(HEADER + f"define x = {expr}\nline l \"L\" = x * 1 CZK\n"))
    assert info.value.code in ("E0104", "E0101")


def test_a_long_chain_of_additions_is_told_it_counts_a_level_per_operator():
    """300 numbers added up are not parenthesised at all: the hint says why it is still too deep."""
    with pytest.raises(CapError) as info:
        compile_source(Source(HEADER + "define x = 1" + " + 1" * 300 + "\nline l \"L\" = x * 1 CZK\n"))
    (diag,) = info.value.diagnostics
    assert diag.code == "E0104" and "long chain such as `a + b + c + …`" in diag.hint


def test_definition_limit():
    text = HEADER + "".join(f"define d{i} = {i}\n" for i in range(MAX_DEFINITIONS + 1))
    with pytest.raises(CapError) as info:
        parse(Source(text))
    assert info.value.code == "E0105"
    assert info.value.diagnostics[0].span.line >= 1


def test_number_digit_limit():
    assert _code(HEADER + "define x = " + "9" * 500 + "\n") == "E0106"
    assert _code(HEADER + "define x = 1e400\n") == "E0101"


# ───────────────────────────── pathological contracts ─────────────────────────────

def bands_contract(n: int) -> str:
    rows = "".join(f"    {i}: {i % 7 + 1}.5\n" for i in range(n))
    return (HEADER + "bands b by member.age:\n" + rows + f"    {n} and over: 1\nend\n\n"
            'line cap "C" = sum of b * 1 CZK over members\n')


def tier_contract(n: int) -> str:
    rows = "".join(f"    {i % 90 + 1} CZK when practice.hours >= {n - i} hours\n" for i in range(n))
    return (HEADER + "inputs:\n    practice hours: hours = 30 hours\nend\n\ntier t:\n" + rows
            + '    1 CZK otherwise\nend\n\nline cap "C" = sum of t over members\n')


def lines_contract(n: int) -> str:
    return HEADER + "".join(f'line l{i} "L{i}" = sum of {i % 50 + 1} CZK over members\n' for i in range(n))


@pytest.fixture(scope="module")
def small_panel(tmp_path_factory):
    d = tmp_path_factory.mktemp("panel")
    (d / "members.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1970-01-01\nM2,P1,2005-06-01\n"
                                   "M3,P2,1940-02-29\n", encoding="utf-8")
    (d / "practices.csv").write_text("practice_id,hours\nP1,30\nP2,12\n", encoding="utf-8")
    return d


def _evaluate(program, panel: Path, engine: str):
    from capdsl.pipeline import Run, evaluate

    run = Run(files={"members": str(panel / "members.csv"), "practices": str(panel / "practices.csv")},
              period="2011-03", engine=engine)
    return evaluate(program, run)[0]


PATHOLOGICAL = {"10,000 bands": (bands_contract, 10_000), "10,000 tiers": (tier_contract, 10_000),
                "5,000 lines": (lines_contract, 5_000)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_contract_checks_and_evaluates_in_bounded_time(name, small_panel):
    make, n = PATHOLOGICAL[name]
    (checked, program), took = _timed(compile_source, Source(make(n)))
    assert took < BOUND, f"check+lower took {took:.1f} s"
    result, took = _timed(_evaluate, program, small_panel, "python")
    assert took < BOUND, f"python evaluation took {took:.1f} s"
    assert result.statements


@pytest.mark.slow
@pytest.mark.parametrize("name", ["10,000 bands", "10,000 tiers"])
def test_pathological_contract_on_duckdb(name, small_panel):
    make, n = PATHOLOGICAL[name]
    _checked, program = compile_source(Source(make(n)))
    python = _evaluate(program, small_panel, "python")
    duck, took = _timed(_evaluate, program, small_panel, "duckdb")
    assert took < SQL_BOUND, f"duckdb evaluation took {took:.1f} s"
    assert [s.total for s in duck.statements] == [s.total for s in python.statements]


@pytest.mark.slow
def test_many_lines_on_duckdb(small_panel):
    """A contract of many independent lines evaluates on DuckDB to the interpreter's amounts
    (docs/reliability.md states the limits: DuckDB's expression depth bounds a chain of lines)."""
    _checked, program = compile_source(Source(lines_contract(200)))
    python = _evaluate(program, small_panel, "python")
    duck, took = _timed(_evaluate, program, small_panel, "duckdb")
    assert took < SQL_BOUND, f"duckdb evaluation took {took:.1f} s"
    assert [s.total for s in duck.statements] == [s.total for s in python.statements]


# ───────────────────────────── no code execution ─────────────────────────────

_DANGEROUS = re.compile(r"(?<![\w.])(eval|exec|compile|__import__|execfile|breakpoint)\s*\(|"
                        r"importlib\.import_module|import_module\(|pickle\.loads?|marshal\.loads|"
                        r"os\.system|os\.popen|subprocess|pty\.spawn|ctypes")


def test_capdsl_never_executes_text():
    """No module of capdsl calls eval/exec/compile/__import__/importlib.import_module (or shells out).

    (`importlib.resources` reads the packaged grammar; `compile_*` functions are
    capdsl's own, matched out by the look-behind on `.` and word characters.)"""
    offenders = []
    for path in sorted((ROOT / "capdsl").rglob("*.py")):
        printer = path == PDF_PRINTER  # its one use of subprocess is checked below
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if printer:
                code = code.replace("subprocess", "")
            if _DANGEROUS.search(code) and not re.search(r"def (compile|eval|exec)\w*\(", code):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == []


#: The one module that starts a program: headless Chromium, to print a statement as PDF.
PDF_PRINTER = ROOT / "capdsl" / "tools" / "statement_doc.py"


def test_the_pdf_printer_starts_chromium_only_with_an_argument_list():
    """Its argv is a list built by capdsl (the browser, fixed flags, a file it wrote): no shell, and no
    text of a contract or a panel is ever a command."""
    text = PDF_PRINTER.read_text(encoding="utf-8")
    assert "shell=True" not in text and "os.system" not in text and "os.popen" not in text
    assert re.findall(r"subprocess\.(\w+)\(", text) == ["Popen"]


@pytest.mark.parametrize("text", [
    "import os\n",
    "from os import system\n",
    "__import__('os').system('touch pwned')\n",
    HEADER + "import os\n",
    HEADER + "define x = __import__(\"os\").system(\"touch pwned\")\n",
    HEADER + "define x = open(\"/etc/passwd\")\n",
    HEADER + "exec(\"print(1)\")\n",
    HEADER + "define x = eval(\"1\")\n",
    HEADER + "define home = env(\"HOME\")\n",
    HEADER + "inputs:\n    param p: text = \"$(touch pwned)\"\nend\n",
])
def test_code_in_a_contract_is_only_text(text, tmp_path, monkeypatch):
    """Code-looking text is a syntax error (or an unknown function), and nothing runs."""
    monkeypatch.chdir(tmp_path)
    try:
        compile_source(Source(text))
    except CapError as exc:
        assert exc.code.startswith(("E01", "E02", "E03"))
    assert not (tmp_path / "pwned").exists()
    if "import" in text.split("\n")[-2] or text.startswith(("import", "from", "__import__")):
        with pytest.raises(CapError) as info:
            parse(Source(text))
        assert info.value.code == "E0101"


# ───────────────────────────── interrupted runs ─────────────────────────────

@pytest.fixture(scope="module")
def big_panel(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "panel_gen.py"), "--members", "150000",
                    "--out", str(d), "--format", "csv"], check=True, capture_output=True, timeout=300)
    return d


def _start(big: Path, out_dir: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "capdsl", "eval", str(ROOT / "contracts" / "cz_vzp_2011_adult.cap"),
            "--members", str(big / "members.csv"), "--practices", str(big / "practices.csv"),
            "--events", str(big / "events.csv"), "--measures", str(big / "measures.csv"),
            "--period", "2011", "--engine", "python", "--format", "csv", "-o", str(out_dir / "out.csv"), "-q"]
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.Popen(argv, cwd=out_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.fixture(scope="module")
def run_seconds(big_panel, tmp_path_factory) -> float:
    """The control: the run left alone writes exactly out.csv; its duration scales the interruptions."""
    out_dir = tmp_path_factory.mktemp("whole")
    began = time.monotonic()
    proc = _start(big_panel, out_dir)
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert _leftovers(out_dir) == ["out.csv"]
    return time.monotonic() - began


def _running(big: Path, out_dir: Path, delay: float) -> subprocess.Popen:
    """A run still going `delay` seconds after its start. A loaded machine makes run times vary: when
    a run finishes first, its output is removed and the next try waits half as long."""
    for _ in range(4):
        proc = _start(big, out_dir)
        time.sleep(delay)
        if proc.poll() is None:
            return proc
        proc.communicate()
        for leftover in out_dir.iterdir():
            leftover.unlink()
        delay /= 2
    raise AssertionError("every run finished before it could be interrupted; use a bigger panel")


# Interruptions at fractions of an uninterrupted run (a fixed delay would outlast it on a fast
# machine); 0.3 s is still importing.
@pytest.mark.slow
@pytest.mark.parametrize("when", ["0.3s", 0.1, 0.25, 0.4, 0.6, 0.8])
def test_sigint_leaves_nothing_and_exits_130(big_panel, run_seconds, tmp_path, when):
    proc = _running(big_panel, tmp_path, 0.3 if when == "0.3s" else when * run_seconds)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err and "internal error" not in err, err
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("when", [0.3, 0.8])
def test_sigkill_leaves_no_output(big_panel, run_seconds, tmp_path, when):
    proc = _running(big_panel, tmp_path, when * run_seconds)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _leftovers(tmp_path) == []


def _eval_in_process(tmp_path):
    """`capdsl eval` through click's runner on a one-member panel, writing tmp_path/out.csv."""
    (tmp_path / "m.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1970-01-01\n", encoding="utf-8")
    return CliRunner().invoke(main, ["eval", str(ROOT / "contracts" / "us_pmpm.cap"), "--members",
                                     str(tmp_path / "m.csv"), "--period", "2011-03", "-o",
                                     str(tmp_path / "out.csv")])


def test_keyboard_interrupt_in_a_command_is_exit_130(monkeypatch, tmp_path):
    """In-process: a KeyboardInterrupt anywhere in a command becomes the message and exit 130."""
    import capdsl.pipeline

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(capdsl.pipeline, "evaluate", boom)
    result = _eval_in_process(tmp_path)
    assert result.exit_code == 130
    assert "interrupted" in result.output
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("wrap", ["plain", "engine"])
def test_ctrl_c_turned_into_an_error_by_duckdb_is_still_exit_130(monkeypatch, tmp_path, wrap):
    """Regression: Ctrl-C during a DuckDB query surfaces as `RuntimeError: Query interrupted` (or,
    through an engine, a BackendError), which printed "internal error" and exit 2. The CLI now
    remembers that SIGINT arrived."""
    import capdsl.pipeline
    from capdsl.errors import BackendError, error

    def interrupted_query(*_a, **_k):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:  # what DuckDB does: catch the signal, abort the query, raise its own error
            pass
        if wrap == "plain":
            raise RuntimeError("Query interrupted")
        raise BackendError(error("E0922", "the duckdb engine failed: Query interrupted"))

    monkeypatch.setattr(capdsl.pipeline, "evaluate", interrupted_query)
    before = signal.getsignal(signal.SIGINT)
    result = _eval_in_process(tmp_path)
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "internal error" not in result.output
    assert not (tmp_path / "out.csv").exists()
    # the caller's handler is back: an in-process caller (and its child processes, which inherit an
    # ignored SIGINT) must not be left unable to interrupt (found when test_atomic's child ignored it)
    assert signal.getsignal(signal.SIGINT) is before


_CHILD = """
import os, signal, sys, threading, time
from capdsl.tools.cli import handle_errors

@handle_errors
def run():
    threading.Timer(float(sys.argv[1]), os.kill, (os.getpid(), signal.SIGINT)).start()
    import duckdb  # noqa: F401  (a native module: nanobind aborts on an exception during its init)
    import pyarrow  # noqa: F401
    time.sleep(5)

run()
"""


@pytest.mark.slow
def test_ctrl_c_while_a_native_module_is_imported_is_still_exit_130():
    """Regression (fresh clone, no bytecode cache): SIGINT landing inside DuckDB's module init made
    our handler raise there, and nanobind aborted the process (SIGABRT, "Critical nanobind error")."""
    for delay in [i * 0.02 for i in range(12)]:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(delay)], capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        assert proc.returncode == 130, (delay, proc.returncode, proc.stderr[-2000:])
        assert "nanobind" not in proc.stderr and "Traceback" not in proc.stderr


def test_importing_is_seen_from_a_frame_inside_an_import(tmp_path, monkeypatch):
    from capdsl.tools.cli import importing

    (tmp_path / "probe_import_frame.py").write_text(
        "import sys\nfrom capdsl.tools.cli import importing\nSEEN = importing(sys._getframe())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_import_frame

    assert probe_import_frame.SEEN is True
    assert importing(sys._getframe()) is False
