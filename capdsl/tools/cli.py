"""The `capdsl` command line: a thin front door over `capdsl.pipeline`.

Every command turns `CapError`s into rendered diagnostics and exit code 1;
an unexpected exception prints one line (the traceback only with --debug)
and exits 2. Heavy modules are imported inside commands so `--help` is fast.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

import click

from capdsl import __version__
from capdsl.errors import CapError, Diagnostic, UsageError, error

EXAMPLES = {
    "check": "  capdsl check contracts/cz_vzp_2011_adult.cap\n  capdsl check contracts/ --format json",
    "fmt": "  capdsl fmt contracts/            # rewrite in place\n  capdsl fmt --check contracts/    # CI: exit 1 if a file would change\n  capdsl fmt --diff my.cap",
    "eval": "  capdsl eval contracts/cz_vzp_2011_adult.cap --members examples/members.csv \\\n      --practices examples/practices.csv --period 2011-03\n  capdsl eval C.cap --members m.parquet --period 2011 --format json -o out.json\n"
            "  capdsl eval C.cap --members m.csv --period 2011-Q1 --by month --practice P001 --format csv\n"
            "  capdsl eval C.cap --members m.csv --period 2011 --summary\n"
            "  capdsl eval C.cap --members m.csv --period 2011-Q1 --by month -o statements.xlsx\n"
            "  capdsl eval C.cap --members m.csv --practices p.csv --period 2011-Q2 -o statements.pdf   # or .html\n"
            "  capdsl eval C.cap --members pojistenci.csv --delimiter ';' --decimal-comma --date-format %d.%m.%Y ...\n"
            "  capdsl eval C.cap --panel data/ --period 2011-Q2   # members.xlsx, practices.csv ... in data/\n"
            "  capdsl eval C.cap                                  # files, period, parameters from capdsl.toml",
    "explain": "  capdsl explain C.cap --members m.csv --practices p.csv --period 2011-03 --practice P001\n"
               "  capdsl explain C.cap ... --practice P001 --line capitation --member M0042\n"
               "  capdsl explain C.cap ... --period 2011 --practice P001 -o P001-2011.txt\n"
               "  capdsl explain C.cap ... --practice P001 --format json -o P001.json",
}


def _epilog(name: str) -> str:
    return "\b\nExamples:\n" + EXAMPLES[name]


class _Ctx:
    debug = False
    color = None


def _stderr_color() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return sys.stderr.isatty()


def report(diags: list[Diagnostic], source=None) -> None:
    from capdsl.errors import render_all

    if diags:
        click.echo(render_all(diags, source, color=_stderr_color()), err=True)


def importing(frame) -> bool:
    """Whether Python is in the middle of importing a module (importlib's frames are on the stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _redeliver_sigint(delay: float = 0.05) -> None:
    import signal
    import threading

    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()


def pipe_closed() -> None:
    """The reader of our output went away (`capdsl … | head`): stop quietly with 141 (128 + SIGPIPE),
    as Unix tools do. Standard output is pointed at /dev/null so the exit's flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already gone or not a real file (tests)
        pass
    sys.exit(141)


def handle_errors(fn):
    """CapError → rendered diagnostics, exit 1; anything else → one line, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import signal

        # DuckDB turns Ctrl-C during a query into `RuntimeError: Query interrupted` (and an engine may
        # wrap that in a CapError): remember that SIGINT arrived, so any error after it is exit 130.
        interrupted: list[int] = []

        def on_sigint(signum, frame):
            interrupted.append(signum)
            if importing(frame):
                # An exception raised while a native module initialises aborts the whole process
                # (DuckDB's nanobind: "Critical nanobind error", SIGABRT). Deliver it again once
                # the import is over.
                _redeliver_sigint()
                return
            raise KeyboardInterrupt

        try:
            previous = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread (embedded use): leave signals alone
            previous = None

        def exit_interrupted():
            # A native engine may re-raise the interrupt once we are on our way out
            # (DuckDB does, at random): ignore it, or it replaces our exit 130 with
            # Python's own death-by-SIGINT.
            if previous is not None:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            click.echo("interrupted; no output was written", err=True)
            sys.exit(130)

        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            exit_interrupted()
        except CapError as exc:
            if interrupted:
                exit_interrupted()
            click.echo(exc.render(color=_stderr_color()), err=True)
            sys.exit(1)
        except BrokenPipeError:
            pipe_closed()
        except click.exceptions.Exit:
            raise
        except (click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if interrupted:
                exit_interrupted()
            if _Ctx.debug:
                raise
            click.echo(f"capdsl: internal error: {type(exc).__name__}: {exc}\n"
                       "  this is a bug in capdsl; rerun with --debug for the traceback and report it", err=True)
            sys.exit(2)
        finally:
            # Always put the caller's handler back (in-process callers and tests run on after us;
            # an ignored SIGINT would even be inherited by their child processes). In the
            # `capdsl` process that is capdsl.tools.launch's handler, which exits 130 at once.
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="\b\nExamples:\n  capdsl check contracts/\n"
                    "  capdsl eval contracts/cz_vzp_2011_adult.cap --panel examples/ --period 2011-03\n"
                    "  capdsl COMMAND --help     # every command's options, with examples")
@click.version_option(__version__, prog_name="capdsl")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for internal errors.")
def main(debug: bool) -> None:
    """capdsl — capitation contracts as code.

    Write contracts in .cap files, check them, and run them against member
    panels, exact to the cent. Start with `capdsl check FILE` and
    `capdsl eval FILE --members ... --period 2011-03`.
    """
    _Ctx.debug = debug


def _cap_files(paths: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if raw == "-":  # standard input (errors.load_source)
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(x for x in p.rglob("*.cap") if x.is_file()))
        else:
            files.append(p)
    if not files:
        raise UsageError(error("E0916", "no .cap files found in " + ", ".join(paths)))
    return files


# ─────────────────────────────── check ───────────────────────────────────

@main.command(epilog=_epilog("check"))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["human", "gnu", "json"]), default="human",
              help="human (with carets), gnu (one line each) or json (for editors and CI).")
@handle_errors
def check(paths: tuple[str, ...], fmt: str) -> None:
    """Check contracts for errors: syntax, names, types and units, band gaps and
    overlaps, tiers, payout splits. Exit 0 when clean (warnings are printed),
    1 when any file has an error."""
    import json as _json

    from capdsl.errors import render_gnu
    from capdsl.pipeline import check_file

    failed = False
    out: list[dict] = []
    for path in _cap_files(paths):
        try:
            checked = check_file(path)
            diags, source = list(checked.warnings), checked.source
        except CapError as exc:
            diags, source = exc.diagnostics, exc.source
            failed = failed or any(d.is_error for d in diags)
        if fmt == "json":
            out.extend(d.to_dict(source) | ({"path": str(path)} if d.path is None else {}) for d in diags)
        elif fmt == "gnu":
            for d in diags:
                click.echo(render_gnu(d, source) if source else render_gnu(d, None))
        else:
            report(diags, source)
            if not diags:
                click.echo(f"{path}: ok", err=True)
    if fmt == "json":
        click.echo(_json.dumps(out, ensure_ascii=False, indent=2))
    sys.exit(1 if failed else 0)


# ─────────────────────────────── fmt ─────────────────────────────────────

@main.command(epilog=_epilog("fmt"))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--check", "check_only", is_flag=True, help="Do not write; exit 1 if a file would change.")
@click.option("--diff", "show_diff", is_flag=True, help="Do not write; print a unified diff of the changes.")
@handle_errors
def fmt(paths: tuple[str, ...], check_only: bool, show_diff: bool) -> None:
    """Format contracts in the canonical layout (comments kept, idempotent). `-` formats standard input
    to standard output."""
    from capdsl.outputs import atomic_write
    from capdsl.errors import load_source
    from capdsl.language.fmt import format_diff, format_source
    from capdsl.language.syntax import MAX_SOURCE_BYTES

    changed = []
    for path in _cap_files(paths):
        source = load_source(path, MAX_SOURCE_BYTES)
        new = format_source(source)
        if str(path) == "-" and not (check_only or show_diff):
            click.echo(new, nl=False)  # a filter: the formatted contract on standard output
            continue
        if new == source.text:
            continue
        changed.append(path)
        if show_diff:
            click.echo(format_diff(source.path, source.text, new), nl=False)
        elif check_only:
            click.echo(f"would reformat {source.path}", err=True)
        else:
            atomic_write(path, new)
            click.echo(f"reformatted {path}", err=True)
    if (check_only or show_diff) and changed:
        sys.exit(1)


# ─────────────────────────────── eval ────────────────────────────────────

# the reading options panel_options adds; the commands do not take them as parameters: they reach
# `_run` through the click context, so every command that reads a panel has them
_READING = ("panel_dir", "delimiter", "decimal_comma", "date_format", "column_maps", "project_file", "no_project")
_READING_KEY = "capdsl.reading"


def panel_options(fn):
    """The options of every command that reads a panel: the files, how they are written, parameters
    and period. A project file (capdsl.toml) supplies any of them that the command line leaves out."""

    @functools.wraps(fn)
    def reading(*args, **kwargs):
        ctx = click.get_current_context(silent=True)
        extra = {k: kwargs.pop(k, None) for k in _READING}
        if ctx is not None:
            ctx.meta[_READING_KEY] = extra
        return fn(*args, **kwargs)

    for opt in reversed([
        click.option("--members", type=click.Path(),
                     help="Members table (CSV, Parquet, .xlsx or JSON Lines; book.xlsx#Sheet for a sheet)."),
        click.option("--practices", type=click.Path(), help="Practices table."),
        click.option("--events", type=click.Path(), help="Service events table."),
        click.option("--measures", type=click.Path(), help="Measures table (practice, period, measure, value)."),
        click.option("--panel", "panel_dir", type=click.Path(), metavar="DIR",
                     help="A folder of conventionally named files: members.csv (or .parquet, .xlsx, .jsonl, .834), "
                          "practices.*, events.*, measures.*; --members and the others override it."),
        click.option("--input-format", "input_format", type=click.Choice(["csv", "parquet", "jsonl", "json", "xlsx"]),
                     help="Read every table in this format, whatever its extension."),
        click.option("--delimiter", metavar="CHAR",
                     help="CSV field separator, e.g. ';' (default: detected, and reported when not a comma)."),
        click.option("--decimal-comma/--no-decimal-comma", "decimal_comma", default=None,
                     help="Numbers in CSV and .xlsx text are written 1234,5 (default: detected in files not "
                          "separated by commas, and reported)."),
        click.option("--date-format", "date_format", metavar="FORMAT",
                     help="Dates are also accepted in this strptime format, e.g. %d.%m.%Y (YYYY-MM-DD always is)."),
        click.option("--column", "column_maps", multiple=True, metavar="TABLE.NAME=COLUMN",
                     help="Read a panel column from a differently named file column (repeatable), "
                          "e.g. --column members.birth_date=dob."),
        click.option("--project", "project_file", type=click.Path(), metavar="FILE",
                     help="The project file (default: capdsl.toml, or [tool.capdsl] in pyproject.toml, in the "
                          "current folder)."),
        click.option("--no-project", "no_project", is_flag=True, help="Ignore the project file."),
        click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE", help="A contract parameter."),
        click.option("--params", "params_file", type=click.Path(), help="Parameters from a JSON file."),
        click.option("--period", help="2011-03 (month), 2011-Q2 (quarter) or 2011 (year); default: the project "
                                      "file's."),
        click.option("--engine", type=click.Choice(["duckdb", "python", "spark"]), default="duckdb",
                     show_default=True, help="duckdb (fast), python (the exact reference interpreter) or spark."),
        click.option("--master", "spark_master", help="Spark master URL for --engine spark (default local[*])."),
        click.option("--show-ids", is_flag=True, help="Show member ids in messages (hidden by default: health data)."),
    ]):
        reading = opt(reading)
    return reading


def _column_maps(items, project) -> dict[str, tuple[tuple[str, str], ...]]:
    """Column mappings: the project file's, then --column TABLE.NAME=COLUMN over them."""
    from capdsl.data.project import TABLES

    maps = {t: dict(pairs) for t, pairs in (project.columns.items() if project else ())}
    for item in items:
        target, eq, column = item.partition("=")
        table, dot, name = target.strip().partition(".")
        if not eq or not dot or table not in TABLES or not name.strip() or not column.strip():
            raise UsageError(error("E0953", f"--column takes TABLE.NAME=COLUMN, not {item!r}",
                                   hint="TABLE is members, practices, events or measures: "
                                        "--column members.birth_date=dob"))
        maps.setdefault(table, {})[name.strip()] = column.strip()
    return {t: tuple(m.items()) for t, m in maps.items() if m}


def _params_file_names(path) -> set[str]:
    """The names a parameters file sets (nothing if it cannot be read: loading it reports that)."""
    import json as _json

    try:
        data = _json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(k).strip() for k in data} if isinstance(data, dict) else set()


def _run(contract: str, members, practices, events, measures, input_format, assignments, params_file, period,
         engine, spark_master, show_ids):
    """The Run a command asks for: the command line's options over the project file's."""
    from capdsl.data.project import find_project, load_project, panel_folder
    from capdsl.data.read import ReadOptions
    from capdsl.pipeline import Run

    ctx = click.get_current_context(silent=True)
    extra = dict.fromkeys(_READING) | ((ctx.meta.get(_READING_KEY) or {}) if ctx is not None else {})
    project = None
    if extra["project_file"] and not extra["no_project"]:
        project = load_project(extra["project_file"])
    elif not extra["no_project"]:
        found = find_project(Path("."))
        project = load_project(found) if found is not None else None
    files: dict = dict(project.files) if project else {}
    if extra["panel_dir"]:
        files = dict(panel_folder(Path(extra["panel_dir"])))
    for name, value in (("members", members), ("practices", practices), ("events", events), ("measures", measures)):
        if value:
            files[name] = value
    if "members" not in files:
        raise UsageError(error("E0701", "no members file was given",
                               hint="pass --members FILE or --panel DIR, or name them in capdsl.toml"))
    period = period or (project.period if project else None)
    if period is None:
        raise UsageError(error("E0901", "no period was given",
                               hint="pass --period 2011-03 (a month), 2011-Q2 (a quarter) or 2011 (a year), or set "
                                    "period in capdsl.toml"))
    fmt = input_format or (project.input_format if project else None)
    columns = _column_maps(extra["column_maps"] or (), project)
    reading = {key: extra[key] if extra[key] is not None else getattr(project, key, None)
               for key in ("delimiter", "decimal_comma", "date_format")}
    formats = None
    if fmt or columns or any(v is not None for v in reading.values()):
        formats = {name: ReadOptions(format=fmt, columns=columns.get(name, ()), **reading) for name in files}
    sets = tuple(assignments)
    if project and project.params:
        overridden = _params_file_names(params_file) if params_file else set()
        sets = tuple(f"{k}={v}" for k, v in project.params.items() if k not in overridden) + sets
    params_file = params_file or (str(project.params_file) if project and project.params_file else None)
    return Run(files={k: str(v) for k, v in files.items()}, period=period, assignments=sets, params_file=params_file,
               formats=formats, engine=engine, show_ids=show_ids, spark_master=spark_master)


@contextlib.contextmanager
def standard_input(run):
    """A panel file given as `-` is standard input: spooled to a private temporary file (DuckDB reads
    files), typed by --input-format or by its first bytes, and named <stdin> in every message."""
    import dataclasses
    import shutil
    import tempfile

    dashes = [table for table, path in run.files.items() if path == "-"]
    if not dashes:
        yield run
        return
    if len(dashes) > 1:
        raise UsageError(error("E0931", "only one panel file can be read from standard input, not "
                                        + " and ".join(f"--{t}" for t in dashes),
                               hint="pass the others as files"))
    table = dashes[0]
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(error("E0931", f"--{table} - reads standard input, which is a terminal",
                               hint=f"pipe the file in: capdsl eval … --{table} - < {table}.csv"))
    folder = tempfile.mkdtemp(prefix="capdsl-stdin-")
    try:
        head = sys.stdin.buffer.peek(64)[:64] if hasattr(sys.stdin.buffer, "peek") else b""
        given = (run.formats or {}).get(table)
        fmt = (getattr(given, "format", None) if given is not None and not isinstance(given, str) else given) \
            or _sniff(head)
        read_as = dataclasses.replace(given, format=fmt) if given is not None and not isinstance(given, str) else fmt
        spooled = os.path.join(folder, f"{table}.{fmt}")
        with open(spooled, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out)

        def named(diag):
            rename = lambda text: text.replace(spooled, "<stdin>") if text else text  # noqa: E731
            return dataclasses.replace(diag, message=rename(diag.message), hint=rename(diag.hint),
                                       path="<stdin>" if diag.path == spooled else diag.path)

        try:
            yield dataclasses.replace(run, files={**run.files, table: spooled},
                                      formats={**(run.formats or {}), table: read_as})
        except CapError as exc:
            exc.diagnostics = [named(d) for d in exc.diagnostics]
            raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stdin_named(text: str, run, piped) -> str:
    """A message about the spooled copy of standard input, naming it <stdin>."""
    for table, given in run.files.items():
        if given == "-":
            text = text.replace(str(piped.files[table]), "<stdin>")
    return text


def _sniff(head: bytes) -> str:
    """A piped panel's format from its first bytes (Parquet's magic, a JSON bracket), else CSV."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04"):  # a zip: an .xlsx workbook
        return "xlsx"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    return "csv"


STATEMENT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet", ".txt": "table",
                     ".html": "html", ".htm": "html", ".pdf": "pdf", ".xlsx": "xlsx"}


@main.command("eval", epilog=_epilog("eval"))
@click.argument("contract", type=click.Path())
@panel_options
@click.option("--format", "out_format", type=click.Choice(["table", "csv", "json", "parquet", "xlsx", "html", "pdf"]),
              default=None, help="table (terminal), csv, json, parquet, xlsx (a spreadsheet), or html / pdf: a "
                                 "printable statement per practice (default: from -o's extension, else table).")
@click.option("-o", "--output", type=click.Path(), help="Write to this file (atomically) instead of stdout; - is "
                                                        "stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")
@click.option("--detail", type=click.Choice(["member"]), default=None,
              help="Instead of statements, one row per member and month: age, exposure weight and the member's "
                   "contribution to every member-level aggregate (computed by the reference interpreter).")
@click.option("--redact", is_flag=True, help="With --detail: hash member ids.")
@click.option("--by", "by", type=click.Choice(["period", "month"]), default="period", show_default=True,
              help="month: each month's statement as well as the period's (for a quarter or a year).")
@click.option("--practice", "only_practices", multiple=True, metavar="ID",
              help="Only this practice's statement (repeatable).")
@click.option("--summary", is_flag=True, help="One row per practice: its total in both currencies and its "
                                              "number of lines.")
@click.option("--raw-cells", is_flag=True, help="CSV and xlsx: write text cells as they are, even those a "
                                                "spreadsheet would run as a formula (=, +, -, @ …).")
@handle_errors
def eval_(contract, members, practices, events, measures, input_format, assignments, params_file, period, engine,
          spark_master, show_ids, out_format, output, quiet, detail, redact, by, only_practices, summary, raw_cells):
    """Evaluate a contract on a panel and print the payment statements."""
    from capdsl.outputs import output_format
    from capdsl.pipeline import compiled_file, evaluate, member_detail

    target, out_format = output_format(output, out_format, STATEMENT_FORMATS, "table")
    _parquet_needs_a_file(out_format, target, "detail.parquet" if detail else f"statements.{out_format}")
    document = None  # html and pdf: what the statement pages state besides the amounts
    if out_format in ("html", "pdf") and detail:
        raise UsageError(error("E0906", f"--detail member is written as table, csv, json, parquet or xlsx, "
                                        f"not {out_format}",
                               hint="drop --detail for a statement per practice, or pass --format csv"))
    if out_format == "pdf":
        from capdsl.tools.statement_doc import require_pdf

        require_pdf()  # before any work: no Chromium, no run
    compiled = compiled_file(contract)
    run = _run(contract, members, practices, events, measures, input_format, assignments, params_file, period,
               engine, spark_master, show_ids)
    with progress(quiet, f"evaluating {Path(contract).name} for {run.period} ({'detail' if detail else engine})"), \
            standard_input(run) as piped:
        if detail:
            table, warnings = member_detail(compiled, piped, redact=redact)
        else:
            result, _ = evaluate(compiled, piped, by_month=by == "month",  # reads the tree only if the query
                                 practices=only_practices)                  # is not cached
            if summary:
                from capdsl.evaluation.statements import summarise

                result = summarise(result)
            warnings = result.warnings = [stdin_named(w, run, piped) for w in result.warnings]
            if out_format in ("html", "pdf"):  # hashes and practice names, while standard input is spooled
                from capdsl.tools.statement_doc import collect

                document = collect(compiled, run, piped)
        warnings = [stdin_named(w, run, piped) for w in warnings]
    if not quiet:
        for w in compiled.warnings:
            report([w], compiled.source)
        for w in warnings:
            click.echo(w, err=True)
    if detail:
        emit_detail(table, out_format, output, raw_cells=raw_cells)
    else:
        emit(result, out_format, output, raw_cells=raw_cells, document=document)


def _parquet_needs_a_file(out_format: str, target, example: str) -> None:
    """Parquet, xlsx and PDF are binary: to a file, a pipe or a device, never to a terminal."""
    if out_format not in ("parquet", "xlsx", "pdf"):
        return
    if target is None or (target.kind == "stdout" and sys.stdout.isatty()):
        raise UsageError(error("E0917", f"--format {out_format} is not printed to a terminal",
                               hint=f"add -o {example}, or -o - and a pipe"))


class Progress:
    """A spinner and what the command is doing, on stderr — only when stderr is a terminal, never
    with --quiet: pipes, files and CI logs get nothing. `update(text)` (or calling it) replaces the
    text; off a terminal it does nothing. A new phase is drawn at once; a count within a phase
    (`practice 3/200`: the same text but for its digits) waits for the spinner's next frame, so a
    fast loop costs no terminal writes."""

    def __init__(self, quiet: bool, what: str):
        self.shown = (not quiet and sys.stderr is not None and sys.stderr.isatty()
                      and os.environ.get("TERM") != "dumb")
        self._what = what
        self._live = self._spinner = None
        self._shape = ""

    def __enter__(self) -> Progress:
        if self.shown:
            from rich.console import Console
            from rich.live import Live
            from rich.spinner import Spinner

            self._spinner = Spinner("dots", text=self._line(self._what), style="status.spinner")
            # stdout is not redirected: it may be a pipe whose bytes must not land on the terminal
            self._live = Live(self._spinner, console=Console(stderr=True, highlight=False), transient=True,
                              refresh_per_second=12.5, redirect_stdout=False)
            self._live.start(refresh=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()  # the line is erased: what follows on stderr starts clean
            self._live = self._spinner = None

    @staticmethod
    def _line(text: str):
        from rich.text import Text

        return Text(text + " …")  # Text, not markup: a file name may hold [brackets]

    def update(self, text: str) -> None:
        if self._live is None:
            return
        import re

        self._spinner.update(text=self._line(text))
        shape = re.sub(r"\d+", "#", text)
        if shape != self._shape:
            self._shape = shape
            self._live.refresh()

    __call__ = update


def progress(quiet: bool, what: str) -> Progress:
    """`with progress(quiet, "evaluating …") as p:` around a command's work (see `Progress`)."""
    return Progress(quiet, what)


def emit_detail(table, out_format: str, output: str | None, *, raw_cells: bool = False) -> None:
    from capdsl.tools import render

    if out_format in ("json", "xlsx"):  # streamed to the file or standard output
        if out_format == "json":
            render.write_out(output, lambda fh: render.write_detail_json(table, fh))
        else:
            from capdsl.tools.xlsx_out import write_detail

            write_detail(table, output, raw_cells=raw_cells)
        return
    _emit(out_format, output, lambda path: render.write_detail_parquet(table, path),
          lambda console, plain=False: render.detail_table(table, console, plain=plain),
          lambda: render.detail_to_csv(table, raw_cells=raw_cells))


def emit(result, out_format: str, output: str | None, *, raw_cells: bool = False, document=None) -> None:
    from capdsl.tools import render

    if out_format in ("html", "pdf"):  # a printable statement per practice (`document`: its provenance)
        from capdsl.tools import statement_doc

        statement_doc.emit(result, document, out_format, output)
        return
    if out_format in ("json", "xlsx"):  # streamed to the file or standard output
        if out_format == "json":
            render.write_out(output, lambda fh: render.write_json(result, fh))
        else:
            from capdsl.tools.xlsx_out import write_statements

            write_statements(result, output, raw_cells=raw_cells)
        return
    _emit(out_format, output, lambda path: render.write_parquet(result, path),
          lambda console, plain=False: render.table(result, console, plain=plain),
          lambda: render.to_csv(result, raw_cells=raw_cells))


def _emit(out_format: str, output: str | None, write_parquet, draw_table, text) -> None:
    """Print or write (atomically; `-` is standard output) in the chosen format."""
    from capdsl.outputs import STDOUT, atomic_write, stdout_console

    to_file = output is not None and output != STDOUT
    if out_format == "parquet":
        write_parquet(output)
        return
    if out_format == "table":
        from rich.console import Console

        # no box drawing and no number highlighting off a terminal (a file, a pipe)
        if to_file:
            with open(os.devnull, "w") as sink:
                buf = Console(record=True, width=160, file=sink, highlight=False)
                draw_table(buf, plain=True)
            atomic_write(output, buf.export_text())
        else:
            console = stdout_console(highlight=False)
            draw_table(console, plain=not console.is_terminal)
        return
    if to_file:
        atomic_write(output, text())
    else:
        click.echo(text(), nl=False)


# ─────────────────────────────── explain ─────────────────────────────────

@main.command(epilog=_epilog("explain"))
@click.argument("contract", type=click.Path())
@panel_options
@click.option("--practice", "practice_id", required=True, help="The practice to explain.")
@click.option("--line", "line_id", help="Only this line.")
@click.option("--member", "member_id", help="Also show how one member's values were computed.")
@click.option("--format", "out_format", type=click.Choice(["text", "json"]), default=None,
              help="text or json (default: from -o's extension, .json or .txt; else text).")
@click.option("-o", "--output", type=click.Path(), help="Write to this file (atomically) instead of stdout; - is "
                                                        "stdout.")
@click.option("--redact", is_flag=True, help="Hash member ids in the output (and never show a birth date).")
@handle_errors
def explain(contract, members, practices, events, measures, input_format, assignments, params_file, period, engine,
            spark_master, show_ids, practice_id, line_id, member_id, out_format, output, redact):
    """Explain every amount of one practice's statement: the rule, its file:line,
    the parameters, measures and practice attributes read, the band or tier that
    matched, the groups of members, the rounding; for a pool the year's sums and
    each installment. The --member id is shown as given (--redact hashes it);
    birth dates and other member ids only with --show-ids."""
    from capdsl.outputs import STDOUT, atomic_write, output_format
    from capdsl.tools.explain import explain as run_explain
    from capdsl.tools.explain import render_json, render_text
    from capdsl.pipeline import compiled_file

    _, out_format = output_format(output, out_format, {".json": "json", ".txt": "text"}, "text")  # before any work
    to_file = output is not None and output != STDOUT
    compiled = compiled_file(contract)
    run = _run(contract, members, practices, events, measures, input_format, assignments, params_file, period,
               "python", None, show_ids)
    given = {str(a).partition("=")[0].strip() for a in assignments}  # the others in run.assignments: capdsl.toml's
    from_project = {name: "project file" for name in (str(a).partition("=")[0].strip() for a in run.assignments)
                    if name not in given}
    with progress(False, f"explaining {practice_id} in {Path(contract).name} for {run.period}"):
        explanation = run_explain(compiled.tree, compiled.source, run, practice_id, line_id=line_id,
                                  member_id=member_id, redact=redact, param_sources=from_project)
    for w in compiled.warnings:
        report([w], compiled.source)
    for w in explanation["warnings"]:  # the panel's, as eval prints them
        click.echo(w, err=True)
    if out_format == "json":
        text = render_json(explanation)
    else:  # a terminal: source lines highlighted, lines wrapped to its width; a file or a pipe: plain, whole lines
        terminal = not to_file and sys.stdout.isatty()
        color = terminal and not os.environ.get("NO_COLOR")
        text = render_text(explanation, compiled.source if color else None,
                           width=None if to_file else _text_width(terminal))
    if to_file:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)


def _text_width(terminal: bool) -> int | None:
    """The width to wrap text at: the terminal's, or COLUMNS when set (also for a pipe); None: do not wrap."""
    import shutil

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(int(columns), 40)
    return max(shutil.get_terminal_size().columns, 40) if terminal else None


# ─────────────────────────────── test ────────────────────────────────────

@main.command("test", epilog="\b\nExamples:\n  capdsl test contracts/\n  capdsl test contracts/ --format junit -o report.xml")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "out_format", type=click.Choice(["text", "junit"]), default=None,
              help="text or junit (default: from -o's extension, .xml is junit; else text).")
@click.option("-o", "--output", type=click.Path(), help="Write the report to this file (atomically); - is stdout.")
@click.option("--engine", type=click.Choice(["python", "duckdb", "spark"]), default="python", show_default=True,
              help="Engine the examples run on.")
@click.option("-k", "keyword", help="Only examples whose name contains this text.")
@handle_errors
def test_cmd(paths, out_format, output, engine, keyword):
    """Run the examples embedded in contracts and compare every expected amount.
    Exit 1 when any expectation fails."""
    from capdsl.outputs import STDOUT, atomic_write, output_format
    from capdsl.tools.examples import junit, run_example
    from capdsl.pipeline import compile_file

    target, out_format = output_format(output, out_format, {".xml": "junit", ".txt": "text"}, "text")
    outcomes = []
    broken = []
    with progress(False, "compiling the contracts") as shown:
        todo = []
        for path in _cap_files(paths or ("contracts",)):
            shown(f"compiling {path}")
            try:
                checked, program = compile_file(path)
            except CapError as exc:
                broken.append(exc)
                continue
            todo += [(checked, program, example) for example in checked.contract.examples
                     if not keyword or keyword in example.name]
        for done, (checked, program, example) in enumerate(todo):
            shown(f"example {done + 1}/{len(todo)}: {example.name}")
            outcomes.append((checked.source, run_example(program, example, checked.source, engine)))
    to_file = output is not None and output != STDOUT
    if out_format == "junit":
        text = junit([o for _, o in outcomes])
    else:
        from capdsl.errors import render

        color = not to_file and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        lines = []
        for source, o in outcomes:
            mark = click.style("PASS", fg="green") if o.passed else click.style("FAIL", fg="red")
            lines.append(f"{mark if color else click.unstyle(mark)} {o.path}:{o.span.line} {o.name} "
                         f"({o.checks} checks)")
            for f in o.failures:
                lines.append(f"     {o.path}:{f.span.line}: {f.message}")
                lines.append(f"     | {source.line_text(f.span.line).strip()}")
            if o.error is not None:
                lines.append("     " + render(o.error, source).replace("\n", "\n     "))
        text = "".join(line + "\n" for line in lines)
    if to_file:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)
    for exc in broken:
        click.echo(exc.render(color=_stderr_color()), err=True)
    passed = sum(1 for _, o in outcomes if o.passed)
    failed = len(outcomes) - passed
    summary = f"{passed} passed, {failed} failed" + (f", {len(broken)} contracts with errors" if broken else "")
    click.echo(summary, err=out_format == "junit" or to_file)
    sys.exit(1 if failed or broken else 0)


# ─────────────────────────────── compile ─────────────────────────────────

@main.command("compile", epilog="\b\nExamples:\n  capdsl compile C.cap --sql --dialect postgres --period 2011-03 \\\n"
              "      --table members=claims.members --set \"national_average_drug_cost=250 CZK per member\"\n"
              "  capdsl compile C.cap --tree")
@click.argument("contract", type=click.Path())
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL that computes the statements.")
@click.option("--tree", "as_tree", is_flag=True, help="Print the evaluation tree (what every backend runs).")
@click.option("--dialect", type=click.Choice(["duckdb", "spark", "postgres", "snowflake", "bigquery"]),
              default="duckdb", show_default=True)
@click.option("--period", default=None, help="The period the SQL computes (required with --sql): 2011-03 (month), "
                                             "2011-Q2 (quarter) or 2011 (year).")
@click.option("--table", "tables", multiple=True, metavar="NAME=TABLE",
              help="A table's name in your warehouse, NAME one of members, practices, events, measures, "
                   "e.g. --table members=claims.members.")
@click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE",
              help="A contract parameter, inlined in the SQL as a literal (repeatable).")
@click.option("--params", "params_file", type=click.Path(), help="Parameters from a JSON file.")
@click.option("-o", "--output", type=click.Path(), help="Write to this file (atomically) instead of stdout; - is "
                                                        "stdout.")
@handle_errors
def compile_cmd(contract, as_sql, as_tree, dialect, period, tables, assignments, params_file, output):
    """Compile a contract: the evaluation tree, or SQL for a warehouse (docs/sql.md says what its
    tables must hold)."""
    from capdsl.evaluation import tree as t
    from capdsl.outputs import STDOUT, atomic_write, check_output
    from capdsl.pipeline import compiled_file

    if output:
        check_output(output)
    parts: list[str] = []
    program = compiled_file(contract).tree
    if as_tree or not as_sql:
        for name, definition in program.definitions.items():
            parts.append(f"define {name} ({definition.level}, {definition.kind})")
            parts.append(t.dump(definition.expr, 1))
        for line in program.lines:
            parts.append(f"{line.kind} {line.name} \"{line.label}\"")
            parts.append(t.dump(line.amount, 1))
            if line.applies is not None:
                parts.append("  applies when")
                parts.append(t.dump(line.applies, 2))
    text = "".join(p + "\n" for p in parts)
    if as_sql:
        text += _compiled_sql(program, dialect, period, tables, assignments, params_file)
    if output and output != STDOUT:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)


def _compiled_sql(program, dialect, period, tables, assignments, params_file) -> str:
    from capdsl import sql
    from capdsl.data.panel import parse_params
    from capdsl.evaluation.periods import parse_period
    from capdsl.pipeline import requirements

    if period is None:
        raise UsageError(error("E0901", "compile --sql needs --period: the SQL computes the statements of one period",
                               hint="e.g. --period 2011-03 (a month), 2011-Q2 (a quarter) or 2011 (a year)"))
    when = parse_period(period)
    params = parse_params(list(assignments), params_file, requirements(program))
    mapping = _pairs(tables, "--table", "NAME=TABLE", "E0912")
    return sql.compile_program(program, when, dialect=dialect, tables=mapping or None, params=params)


# ─────────────────────────────── panel ───────────────────────────────────

@main.group(epilog="\b\nExamples:\n  capdsl panel from-synthea patients.csv conditions.csv -o members.parquet "
                   "--as-of 2011-01-01\n"
                   "  capdsl panel from-834 examples/x12/members_2011-01.834 -o members.csv\n"
                   "  capdsl panel from-synthea --help")
def panel() -> None:
    """Build member panels from other data sets."""


@panel.command("from-synthea", epilog="\b\nExamples:\n  capdsl panel from-synthea patients.csv conditions.csv "
                                      "-o panel.parquet --as-of 2011-01-01\n"
                                      "  capdsl panel from-synthea patients.csv conditions.csv -o members.csv "
                                      "--practices 40 --practice-attr weekly_hours=30")
@click.argument("patients", type=click.Path())
@click.argument("conditions", type=click.Path(), required=False)
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The members file (.csv or .parquet); the practices table is written beside it.")
@click.option("--as-of", "as_of", default=None, help="Snapshot date YYYY-MM-DD for ages and condition flags "
                                                     "(default: today).")
@click.option("--practices", "n_practices", default=10, show_default=True, type=int,
              help="How many practices to spread the patients over (stable hash of the patient id).")
@click.option("--practice-attr", "practice_attrs", multiple=True, metavar="NAME=VALUE",
              help="A column every practice gets (repeatable), e.g. weekly_hours=30.")
@click.option("--format", "out_format", type=click.Choice(["csv", "parquet"]), default=None,
              help="Output format (default: from the file extension).")
@click.option("--json", "as_json", is_flag=True, help="Print the conversion report as JSON.")
@handle_errors
def from_synthea_cmd(patients, conditions, output, as_of, n_practices, practice_attrs, out_format, as_json):
    """Convert a Synthea export (patients.csv, optionally conditions.csv) into a members table and a
    practices table. Diabetes and cardiovascular flags come from conditions active on the as-of date;
    patients not yet born are excluded and the deceased kept with enrolled_to = death date — all counted
    in the report."""
    import json as _json
    from datetime import date

    from capdsl.data.synthea import from_synthea

    try:
        snapshot = date.fromisoformat(as_of) if as_of else date.today()
    except ValueError:
        raise UsageError(error("E0915", f"--as-of takes a date YYYY-MM-DD, not {as_of!r}")) from None
    attrs = _pairs(practice_attrs, "--practice-attr", "NAME=VALUE", "E0915")
    report = from_synthea(patients, conditions, output, as_of=snapshot, practices=n_practices, fmt=out_format,
                          practice_attrs=attrs or None)
    if as_json:
        click.echo(_json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)


@panel.command("from-atr", epilog="\b\nExamples:\n  capdsl panel from-atr examples/fhir_atr -o members.csv\n"
                                  "  capdsl panel from-atr export/ -o members.parquet --json\n"
                                  "  capdsl panel from-atr attribution-bundle.json -o members.csv")
@click.argument("source", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The members file (.csv or .parquet; - is CSV on standard output, the report then on stderr).")
@click.option("--format", "out_format", type=click.Choice(["csv", "parquet"]), default=None,
              help="Output format (default: from the file extension).")
@click.option("--json", "as_json", is_flag=True, help="Print the conversion report as JSON.")
@handle_errors
def from_atr_cmd(source, output, out_format, as_json):
    """Convert a FHIR Da Vinci ATR member-attribution list (SOURCE: the folder of a $davinci-data-export's
    NDJSON files, or one Bundle .json file) into a members table. Each resource is validated with
    fhir.resources (the 'fhir' extra); every member that cannot be converted, and every inactive one, is
    listed with its position and the reason. Exit 1 only if no member could be read."""
    import json as _json

    from capdsl.data.fhir_atr import from_atr

    _table_to_terminal(output, out_format, "members.parquet")
    reading = from_atr(source, output, fmt=out_format)
    to_stderr = output == "-"
    if as_json:
        click.echo(_json.dumps({**reading.to_dict(), "output": output}, indent=2, ensure_ascii=False),
                   err=to_stderr)
    else:
        for line in [*reading.lines(), f"members table -> {output}"]:
            click.echo(line, err=to_stderr)


def _table_to_terminal(output: str, out_format: str | None, example: str) -> None:
    """A Parquet table on standard output goes to a pipe or a file, never onto a terminal (E0917)."""
    if output == "-" and out_format == "parquet" and sys.stdout.isatty():
        raise UsageError(error("E0917", "--format parquet is not printed to a terminal",
                               hint=f"add -o {example}, or keep -o - and pipe it into a file or a program"))


def _x12_report(reading, output: str, as_json: bool) -> None:
    """The conversion report of from-834 / from-820: on stderr when the table itself goes to stdout."""
    import json as _json

    to_stderr = output == "-"
    if as_json:
        click.echo(_json.dumps(reading.to_dict(), indent=2, ensure_ascii=False), err=to_stderr)
    else:
        for line in reading.lines():
            click.echo(line, err=to_stderr)


@panel.command("from-834", epilog="\b\nExamples:\n  capdsl panel from-834 examples/x12/members_2011-01.834 "
                                  "-o members.csv\n"
                                  "  capdsl panel from-834 enrollment.834 -o members.parquet "
                                  "--practices examples/practices.csv\n"
                                  "  capdsl panel from-834 enrollment.834 -o - --json > members.csv")
@click.argument("file", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The members file (.csv or .parquet; - is CSV on standard output, the report then on stderr).")
@click.option("--practices", "practices_file", default=None, type=click.Path(),
              help="A practices table: a member whose primary care provider it does not list is rejected; an "
                   "'npi' column maps NPIs (NM108 XX) to practice ids.")
@click.option("--format", "out_format", type=click.Choice(["csv", "parquet"]), default=None,
              help="Output format (default: from the file extension).")
@click.option("--show-ids", is_flag=True, help="Show member ids in the report (hidden by default: health data).")
@click.option("--json", "as_json", is_flag=True, help="Print the conversion report as JSON.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes that read a large file of several transaction sets (default: the free cores, at "
                   "most 8; 1 on a busy machine).")
@handle_errors
def from_834_cmd(file, output, practices_file, out_format, show_ids, as_json, jobs):
    """Convert an X12 5010 834 benefit enrollment file into a members table. pyx12 (the 'x12' extra)
    walks and validates the file; every member loop that cannot be used (no id, birth date or primary care
    provider, a segment pyx12 finds invalid, a cancellation) is listed with its segment position and the
    reason. Exit 1 only if no member could be read."""
    from capdsl.data.x12 import from_834

    _table_to_terminal(output, out_format, "members.parquet")
    reading = from_834(file, output, practices=practices_file, fmt=out_format, show_ids=show_ids, jobs=jobs)
    _x12_report(reading, output, as_json)


@panel.command("from-820", epilog="\b\nExamples:\n  capdsl panel from-820 examples/x12/remittance_2011-02.820 "
                                  "-o remittance.csv\n"
                                  "  capdsl panel from-820 payment.820 -o remittance.parquet --json")
@click.argument("file", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The remittance file (.csv or .parquet; - is CSV on standard output, the report then on "
                   "stderr).")
@click.option("--format", "out_format", type=click.Choice(["csv", "parquet"]), default=None,
              help="Output format (default: from the file extension).")
@click.option("--show-ids", is_flag=True, help="Show member ids in the report (hidden by default: health data).")
@click.option("--json", "as_json", is_flag=True, help="Print the conversion report as JSON.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes that read a large file of several transaction sets (default: the free cores, at "
                   "most 8; 1 on a busy machine).")
@handle_errors
def from_820_cmd(file, output, out_format, show_ids, as_json, jobs):
    """Convert an X12 5010 820 premium payment (member-level capitation remittance) into a remittance
    table: one row per paid amount (RMR) and per adjustment (ADX), with practice, member, month, capdsl
    line and reference. Every record that cannot be used is listed with its segment position and the
    reason. Exit 1 only if nothing could be read."""
    from capdsl.data.x12 import from_820

    _table_to_terminal(output, out_format, "remittance.parquet")
    reading = from_820(file, output, fmt=out_format, show_ids=show_ids, jobs=jobs)
    _x12_report(reading, output, as_json)


# ─────────────────────────────── cache ───────────────────────────────────

@main.group("cache", epilog="\b\nExamples:\n  capdsl cache info\n  capdsl cache clear\n"
                            "  CAPDSL_NO_CACHE=1 capdsl eval ...   # one run without the cache")
def cache_group() -> None:
    """Where compiled contracts, queries and panel checks are remembered, and how much space they take."""


def _cache_directory():
    """The cache's directory, or None (having said so) when the cache is off."""
    from capdsl import store

    where = store.directory()
    if where is None:
        click.echo("the cache is off (CAPDSL_NO_CACHE is set)")
    return where


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


@cache_group.command("info", epilog="\b\nExamples:\n  capdsl cache info\n"
                                     "  CAPDSL_CACHE_DIR=/scratch/capdsl capdsl cache info")
@handle_errors
def cache_info() -> None:
    """Print the cache's directory, its entries by kind and their size."""
    from collections import Counter

    from capdsl import store

    where = _cache_directory()
    if where is None:
        return
    entries = [(name, size) for name, size, _ in store.listing(where) if name.endswith(".json")]
    # an entry is named `kind-<hash>`; a file named otherwise is counted as "other"
    kinds = Counter(name.split("-", 1)[0] if "-" in name else "other" for name, _ in entries)
    click.echo(f"directory: {where}")
    click.echo(f"entries:   {len(entries)} ({_size(sum(size for _, size in entries))}; the least recently used "
               f"are removed beyond {store.max_bytes() // 2**20} MiB, CAPDSL_CACHE_MAX_MB)")
    if kinds:
        click.echo("by kind:   " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))


@cache_group.command("clear", epilog="\b\nExamples:\n  capdsl cache clear\n"
                                      "  CAPDSL_CACHE_MAX_MB=64 capdsl eval ...   (or bound it instead)")
@handle_errors
def cache_clear() -> None:
    """Remove every entry (always safe: the next runs compile and check again)."""
    from capdsl import store

    where = _cache_directory()
    if where is None:
        return
    before = sum(size for _, size, _ in store.listing(where))
    removed = store.prune(where, 0)  # a bound of 0: every entry goes (a writer's fresh temporary file stays)
    freed = before - sum(size for _, size, _ in store.listing(where))
    click.echo(f"removed {removed} {'file' if removed == 1 else 'files'} ({_size(freed)}) from {where}")


# ─────────────────────────────── schema ──────────────────────────────────

@main.command(epilog="\b\nExamples:\n  capdsl schema -o statements.schema.json\n"
                     "  capdsl eval C.cap ... --format json --by month | check-jsonschema --schemafile "
                     "statements.schema.json -")
@click.option("--output", "-o", type=click.Path(), help="Write the schema to this file (atomically); - is stdout.")
@handle_errors
def schema(output):
    """Print the JSON Schema of `capdsl eval --format json` output."""
    import json as _json

    from capdsl.outputs import atomic_write, check_output
    from capdsl.evaluation.statements import json_schema

    if output:
        check_output(output)  # the path is checked before the work
    text = _json.dumps(json_schema(), indent=2) + "\n"
    if output and output != "-":
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)


def _pairs(items, option: str, form: str, code: str) -> dict[str, str]:
    """Repeated `NAME=VALUE` options as a dict; a malformed one is a usage error."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(error(code, f"{option} takes {form}, not {item!r}"))
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _register_commands() -> None:
    """Commands owned by their own modules (kept out of this file to keep it thin)."""
    from capdsl.tools.diff_command import register as register_validation
    from capdsl.tools.reconcile_command import register as register_reconcile, register_retro

    register_validation(main)
    register_reconcile(main)
    register_retro(main)


@main.command("lsp", epilog="\b\nExamples:\n  capdsl lsp     # an editor starts it and talks LSP on stdin/stdout\n"
                            "  pip install 'capdsl[lsp]'   # what it needs\n"
                            "  (VS Code: editors/vscode/; other editors: docs/editors.md)")
def lsp_cmd() -> None:
    """Start the language server on stdio (for editors; needs the `lsp` extra)."""
    try:
        import pygls  # noqa: F401
    except ImportError:
        raise click.ClickException("the language server needs pygls: pip install 'capdsl[lsp]'") from None
    import gc

    from capdsl.tools.lsp import serve  # imported here: the server pulls in the whole front end

    gc.enable()  # the console script turns it off for short commands; a server runs for hours
    serve()


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
