"""`capdsl diff` and `capdsl test --generate`: the payer-validation commands.

Kept out of `cli.py` so the CLI module stays a thin index of commands;
`register(main)` adds them to the click group (idempotent). The command
bodies are plain functions (`run_diff`, `run_generate`) so tests and other
front ends call them without click.
"""

from __future__ import annotations

import csv
import io
import shlex
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from capdsl.errors import UsageError, error

DIFF_EXAMPLES = """\b
Examples:
  capdsl diff old.cap new.cap --members m.csv --practices p.csv --period 2011 --report impact.html
  capdsl diff C.cap C.cap --members m.csv --practices p.csv --period 2011-06 --new-period 2011-07
  capdsl diff C.cap C.cap --members m.csv --period 2011 --new-set national_average_drug_cost=260
  capdsl diff contracts/ffs_fee_schedule.cap contracts/cz_vzp_2011_adult.cap --members m.csv \\
      --practices p.csv --events e.csv --measures x.csv --period 2011 --report adequacy.html"""


def _default_engine() -> str:
    """DuckDB when its backend is installed (fast), else the exact Python interpreter."""
    try:
        from capdsl import sql
    except ImportError:
        return "python"
    return "duckdb" if hasattr(sql, "evaluate") else "python"


def parse_rate(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UsageError(error("E0910", f"--rate must be a decimal number such as 25.28, not {text!r}")) from None
    if not value.is_finite() or value <= 0:
        raise UsageError(error("E0910", f"--rate must be a positive number, not {text!r}"))
    return value


IMPACT_FORMATS = {".csv": "csv", ".json": "json", ".txt": "table"}


def run_diff(old_path: str, new_path: str, run, new_run=None, *, rate: str | None = None, drivers: bool = True,
             out_format: str | None = None, output: str | None = None, report: str | None = None,
             quiet: bool = False, progress=None, command: str | None = None) -> object:
    """Compile both contracts, diff them, write the requested outputs; returns the `Impact`.
    `progress` is a context manager giving a `say(text)` told each phase (the CLI's spinner on a
    terminal), left before anything is printed; `command` is the command line the report's
    provenance states."""
    import contextlib

    from capdsl.outputs import check_output, output_format
    from capdsl.tools.impact import diff
    from capdsl.pipeline import compiled_file

    _, out_format = output_format(output, out_format, IMPACT_FORMATS, "table")
    if report:
        from capdsl.tools.report import require_report_extra

        check_output(report, "--report")
        require_report_extra()  # before the work, not after it
    with progress or contextlib.nullcontext(lambda _text: None) as say:
        say("compiling the contracts")
        old_program = compiled_file(old_path).tree
        new_program = compiled_file(new_path).tree
        impact = diff(old_program, new_program, run, new_run, rate=parse_rate(rate), drivers=drivers, progress=say)
        if report:
            from capdsl.tools.report import context_for, write_report

            say("writing the report: practice names, file hashes, charts")
            write_report(impact, report, context_for(impact, run, new_run, command=command))
    if report and not quiet:
        click.echo(f"report written to {report}", err=True)
    if not quiet:
        for w in impact.warnings:
            click.echo(f"warning: {w}", err=True)
    emit_impact(impact, out_format, output)
    return impact


def emit_impact(impact, out_format: str, output: str | None) -> None:
    from capdsl.outputs import STDOUT, atomic_write, stdout_console

    to_file = output is not None and output != STDOUT
    if out_format == "json":
        text = impact.model_dump_json(indent=2) + "\n"
    elif out_format == "csv":
        text = impact_csv(impact)
    else:
        from rich.console import Console

        if to_file:
            import os

            with open(os.devnull, "w") as sink:
                console = Console(record=True, width=140, file=sink)
                impact_table(impact, console)
            atomic_write(output, console.export_text())
        else:
            impact_table(impact, stdout_console())
        return
    if to_file:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)


def impact_csv(impact) -> str:
    """One row per practice × line (plus a `total` row per practice); amounts as exact decimals."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["practice_id", "line", "status", "old", "new", "delta", "delta_pct", "currency"])
    for p in impact.practices:
        for ln in p.lines:
            w.writerow([p.practice_id, ln.id, ln.status, ln.old, ln.new, ln.delta,
                        "" if ln.delta_pct is None else ln.delta_pct, impact.currency])
        w.writerow([p.practice_id, "total", p.status, p.old, p.new, p.delta,
                    "" if p.delta_pct is None else p.delta_pct, impact.currency])
    return buf.getvalue()


def impact_table(impact, console) -> None:
    from rich.table import Table

    def sgn(v):
        return "—" if v is None else f"{v:+,.2f}"

    cur = impact.currency
    d = impact.distribution
    console.print(f"[bold]old[/bold] {impact.old.contract} — {impact.old.period} ({impact.old.path})")
    console.print(f"[bold]new[/bold] {impact.new.contract} — {impact.new.period} ({impact.new.path})")
    if impact.rate is not None:
        console.print(f"old amounts converted at {impact.rate} {cur} per {impact.old.currency}")
    console.print(f"total {impact.old_total:,.2f} {cur} → {impact.new_total:,.2f} {cur}: "
                  f"{sgn(impact.delta)} {cur} ({sgn(impact.delta_pct)} %)")
    console.print(f"{d.practices} practices: {d.losing_over_5pct} lose more than 5 %, "
                  f"{d.gaining_over_5pct} gain more than 5 %, {d.within_5pct} within ±5 %"
                  + (f", {d.without_old_amount} without an old amount" if d.without_old_amount else ""))
    lines = Table(title="Per line")
    for col in ("line", "old", "new", "delta", "delta %", ""):
        lines.add_column(col, justify="left" if col in ("line", "") else "right")
    for ln in impact.lines:
        lines.add_row(ln.id, f"{ln.old:,.2f}", f"{ln.new:,.2f}", sgn(ln.delta), sgn(ln.delta_pct),
                      "" if ln.status == "both" else ln.status)
    console.print(lines)
    for title, refs in (("Largest losers", d.largest_losers), ("Largest gainers", d.largest_gainers)):
        if not refs:
            continue
        table = Table(title=title)
        for col in ("practice", "old", "new", "delta", "delta %"):
            table.add_column(col, justify="left" if col == "practice" else "right")
        for r in refs:
            table.add_row(r.practice_id, f"{r.old:,.2f}", f"{r.new:,.2f}", sgn(r.delta), sgn(r.delta_pct))
        console.print(table)
    if impact.drivers is not None:
        table = Table(title="Drivers: member groups")
        for col in ("dimension", "group", "delta"):
            table.add_column(col, justify="right" if col == "delta" else "left")
        for g in impact.drivers.groups:
            if g.dimension != "age band × flags" and g.delta:
                table.add_row(g.dimension, g.group, sgn(g.delta))
        for u in impact.drivers.unattributed:
            if u.delta:
                table.add_row("not attributable", u.line, sgn(u.delta))
        console.print(table)
        shifts = [s for s in impact.drivers.tiers if s.old_entry != s.new_entry]
        if shifts:
            table = Table(title="Drivers: practices that changed tier/table entry")
            for col in ("table", "old entry", "new entry", "practices", "delta"):
                table.add_column(col, justify="right" if col in ("practices", "delta") else "left")
            for s in shifts:
                table.add_row(s.table, s.old_entry, s.new_entry, str(s.practices), sgn(s.delta))
            console.print(table)


def run_generate(contract: str, *, period: str | None = None, append: bool = False,
                 output: str | None = None) -> str:
    """Generate boundary examples for a contract; print them, write them to `output` or append them
    to the file."""
    from capdsl.outputs import STDOUT, atomic_write, check_output
    from capdsl.pipeline import compile_file

    if output is not None:
        check_output(output)  # before any work, as every -o
    from capdsl.tools.testgen import generate

    checked, program = compile_file(contract)
    text = generate(program, checked.contract, checked.source, period=period)
    if append:
        original = Path(contract).read_text(encoding="utf-8")
        sep = "" if original.endswith("\n\n") else ("\n" if original.endswith("\n") else "\n\n")
        atomic_write(contract, original + sep + text)
        click.echo(f"appended generated examples to {contract}; review every amount, then run "
                   f"`capdsl test {contract}`", err=True)
    elif output is not None and output != STDOUT:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)
    return text


# ─────────────────────────────── click wiring ────────────────────────────────

def register(main: click.Group) -> None:
    """Add `diff` to the group and `--generate` to its `test` command (idempotent; call after
    both exist). The shared option sets and error handling come from the module that defines
    `main`, so this also works when cli.py runs as `__main__`."""
    cli = sys.modules[main.callback.__module__]

    if "diff" not in main.commands:
        main.add_command(_diff_command(cli))
    test = main.commands.get("test")
    if test is not None and not any(p.name == "generate" for p in test.params):
        _add_generate(test, cli)


def _diff_command(cli) -> click.Command:
    @click.command("diff", epilog=DIFF_EXAMPLES)
    @click.argument("old", type=click.Path())
    @click.argument("new", type=click.Path())
    @cli.panel_options
    @click.option("--new-period", help="Evaluate the new side for this period instead (before/after within "
                                       "one contract, e.g. dated terms).")
    @click.option("--new-set", "new_assignments", multiple=True, metavar="NAME=VALUE",
                  help="Parameters of the new side only (default: the same as --set).")
    @click.option("--new-params", "new_params_file", type=click.Path(), help="Parameters file of the new side.")
    @click.option("--rate", help="Exchange rate when the currencies differ: 1 old-currency unit = RATE new.")
    @click.option("--report", type=click.Path(), help="Write a self-contained HTML report (charts included).")
    @click.option("--format", "out_format", type=click.Choice(["table", "csv", "json"]), default=None,
                  help="table, csv or json (default: from -o's extension, else table).")
    @click.option("-o", "--output", type=click.Path(), help="Write the table/csv/json here (atomically); - is "
                                                            "stdout.")
    @click.option("--no-drivers", is_flag=True, help="Skip the member-group and tier analysis (faster).")
    @click.option("-q", "--quiet", is_flag=True, help="No warnings or progress on stderr.")
    @cli.handle_errors
    def diff_cmd(old, new, members, practices, events, measures, input_format, assignments, params_file, period,
                 engine, spark_master, show_ids, new_period, new_assignments, new_params_file, rate, report,
                 out_format, output, no_drivers, quiet):
        """Compare two contracts (or one contract in two periods or settings) on the
        same panel: per practice and line old, new, delta, delta %; the distribution
        of practice deltas; and the drivers (lines, age bands, flags, tiers).

        Lines present in only one contract count 0 on the other side and are marked."""
        from dataclasses import replace

        source = click.get_current_context().get_parameter_source("engine")
        if source is not None and source.name == "DEFAULT":
            engine = _default_engine()
        run = cli._run(old, members, practices, events, measures, input_format, assignments, params_file, period,
                       engine, spark_master, show_ids)
        new_run = None
        if new_period or new_assignments or new_params_file:
            new_run = replace(run, period=new_period or run.period,
                              assignments=tuple(new_assignments) if new_assignments else run.assignments,
                              params_file=new_params_file or run.params_file)
        shown = cli.progress(quiet, f"diff {Path(old).name} → {Path(new).name}")
        run_diff(old, new, run, new_run, rate=rate, drivers=not no_drivers, out_format=out_format, output=output,
                 report=report, quiet=quiet, progress=shown, command=_command_line())

    return diff_cmd


def _command_line() -> str | None:
    """The command as typed (for the report's provenance), when this process is `capdsl … diff …`."""
    args = sys.argv[1:]
    return shlex.join(["capdsl", *args]) if "diff" in args else None


def _add_generate(test: click.Command, cli) -> None:
    test.params.extend([
        click.Option(["--generate", "generate"], type=click.Path(), metavar="CONTRACT",
                     help="Write boundary-case examples (every band edge, every tier/modifier condition "
                          "true and false) with the amounts the contract computes today, for review (to "
                          "standard output, or -o FILE)."),
        click.Option(["--append", "append"], is_flag=True,
                     help="With --generate: append the examples to the contract instead of printing them."),
        click.Option(["--generate-period", "generate_period"], metavar="PERIOD",
                     help="With --generate: the month the examples use (default: the first month every "
                          "dated value covers, else 2011-01, or the first month after it in which the most "
                          "lines are paid)."),
    ])
    original = test.callback

    @cli.handle_errors
    def callback(*args, generate=None, append=False, generate_period=None, **kwargs):
        if generate:
            output, unused = kwargs.get("output"), [
                option for option, given in (("PATHS", kwargs.get("paths")), ("--format", kwargs.get("out_format")),
                                             ("-k", kwargs.get("keyword")), ("--append with -o", append and
                                                                             kwargs.get("output")))
                if given]
            if unused:  # an option that would otherwise be ignored without a word
                raise UsageError(error("E0914", f"{', '.join(unused)} cannot be used with --generate",
                                       hint="--generate writes examples to standard output, to -o FILE, or "
                                            "into the contract with --append"))
            run_generate(generate, period=generate_period, append=append, output=output)
            sys.exit(0)
        if append or generate_period:
            raise UsageError(error("E0914", "--append and --generate-period only work with --generate"))
        return original(*args, **kwargs)

    test.callback = callback
    test.epilog = (test.epilog or "") + "\n  capdsl test --generate contracts/cz_vzp_2011_adult.cap --append"
