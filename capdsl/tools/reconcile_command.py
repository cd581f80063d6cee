"""`capdsl reconcile`: the command and its outputs (terminal table, CSV, JSON, an HTML page). The
comparison is `capdsl.tools.reconcile`."""

from __future__ import annotations

import csv
import html
import io
import re
import sys
from decimal import Decimal
from typing import TYPE_CHECKING

import click

from capdsl.errors import UsageError, error

if TYPE_CHECKING:  # the comparison loads duckdb: only when a command runs
    from capdsl.tools.reconcile import Reconciliation

FORMATS = {".csv": "csv", ".json": "json", ".txt": "table", ".html": "html", ".htm": "html",
           ".parquet": "parquet", ".pq": "parquet", ".xlsx": "xlsx", ".pdf": "pdf"}
AMOUNT_COLUMNS = ("expected", "paid", "difference")
COLUMNS = ["level", "practice_id", "month", "line", "member_id", "expected", "paid", "difference", "status",
           "reason", "age", "reference"]
EXAMPLES = ("\b\nExamples:\n"
            "  capdsl reconcile contracts/us_pmpm.cap --members members.csv --remittance paid.csv --period 2011-Q1\n"
            "  capdsl reconcile C.cap --members m.csv --remittance feb.820 --period 2011-02 --tolerance 0.01\n"
            "  capdsl reconcile C.cap --panel panel/ --remittance paid.csv --period 2011 -o report.html\n"
            "  capdsl reconcile C.cap --members m.csv --remittance paid.csv --period 2011-03 --all -o all.csv")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def rows_of(rec: Reconciliation, everything: bool) -> list:
    """The rows to show: every compared amount read back (`--all`), else the discrepancies."""
    return rec.rows if everything else rec.discrepancies


def to_csv(rec: Reconciliation, everything: bool) -> str:
    from capdsl.tools.render import spreadsheet_safe

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows_of(rec, everything):
        w.writerow([spreadsheet_safe(_text(getattr(r, c))) if c in ("practice_id", "member_id", "line", "reason",
                                                                     "reference") else _text(getattr(r, c))
                    for c in COLUMNS])
    return buf.getvalue()


def _cents(value: Decimal) -> str:
    """An amount with at least its cents (a status nothing fell into sums to 0.00, as others do)."""
    return _text(value if value.as_tuple().exponent <= -2 else value.quantize(Decimal("0.01")))


def summary(rec: Reconciliation) -> dict:
    return {level: {status: {"count": n, "difference": _cents(total)} for status, (n, total) in by.items()}
            for level, by in rec.counts().items()}


def to_json(rec: Reconciliation, everything: bool) -> str:
    data = {"contract": rec.contract, "path": rec.path, "period": rec.period, "currency": rec.currency,
            "tolerance": _text(rec.tolerance), "engine": rec.engine, "member_lines": list(rec.attributable),
            "summary": summary(rec), "warnings": rec.warnings,
            "rows": [{c: (_text(getattr(r, c)) if isinstance(getattr(r, c), Decimal) else getattr(r, c))
                      for c in COLUMNS} for r in rows_of(rec, everything)]}
    return _json(data)


def _json(data) -> str:
    """`json.dumps(data, ensure_ascii=False, indent=2)`, written by orjson: with an indent, the
    standard library encodes in Python, slower than the reconciliation of a large panel itself."""
    import orjson

    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n"


#: Below this many columns the tables become one line per compared amount: a table's columns
#: would be too narrow to read, and an amount must never be cut short.
NARROW = 72


def table(rec: Reconciliation, console, everything: bool, plain: bool) -> None:
    from rich import box
    from rich.table import Table

    from capdsl.tools.reconcile import STATUSES

    console.print(f"{rec.contract} — reconciliation for {rec.period} ({rec.currency}, tolerance "
                  f"{rec.tolerance:f})", markup=False, highlight=False)
    counts = rec.counts()
    cells = {level: [f"{n} ({_signed(total)})" if n else "0" for n, total in (counts[level][s] for s in STATUSES)]
             for level in ("practice", "line", "member") if level in counts}
    shown = rows_of(rec, everything)
    notes = []
    rows = []
    for r in shown:
        who = r.member_id if r.level == "member" else r.line
        mark = ""
        if r.reason:
            notes.append(r.reason)
            mark = f" [{len(notes)}]"
        rows.append((r.practice_id, r.month, f"{who}{mark}", _text(r.expected), _text(r.paid),
                     _signed(r.difference), r.status))
    if console.width < NARROW:
        for level, values in cells.items():
            console.print(f"{level}: " + ", ".join(f"{s} {v}" for s, v in zip(STATUSES, values)),
                          markup=False, highlight=False)
        if not shown:
            console.print("every amount matches")
        for practice, month, who, expected, paid, difference, status in rows:
            console.print(f"{practice} {month} {who}: expected {expected or '—'}, paid {paid or '—'}, "
                          f"{status} {difference}", markup=False, highlight=False)
    else:
        t = Table(box=None if plain else box.SIMPLE, show_edge=False, pad_edge=False)
        t.add_column("level")
        for status in STATUSES:
            t.add_column(status, justify="right", no_wrap=True)
        for level, values in cells.items():
            t.add_row(level, *values)
        console.print(t)
        if not shown:
            console.print("every amount matches")
            return
        d = Table(box=None if plain else box.SIMPLE, show_edge=False, pad_edge=False)
        for name, justify in (("practice", "left"), ("month", "left"), ("line / member", "left"),
                              ("expected", "right"), ("paid", "right"), ("difference", "right"),
                              ("status", "left")):
            d.add_column(name, justify=justify, overflow="fold", no_wrap=justify == "right")
        for row in rows:
            d.add_row(*row)
        console.print(d)
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] {note}", markup=False, highlight=False)


def _signed(value: Decimal) -> str:
    """A difference with its sign and cents, and its last digit when finer than a cent."""
    if not value:
        return "0.00"
    places = max(2, -int(value.as_tuple().exponent))
    return f"{value:+,.{places}f}"


def to_html(rec: Reconciliation, everything: bool) -> str:
    """A self-contained page: the summary and the rows, escaped, readable on a narrow screen."""
    from capdsl.tools.reconcile import STATUSES

    e = html.escape
    counts = rec.counts()
    head = "".join(f"<th>{s}</th>" for s in STATUSES)
    summary_rows = "".join(
        f"<tr><th>{level}</th>" + "".join(f"<td>{n} ({e(_signed(total))})</td>" for n, total in
                                          (counts[level][s] for s in STATUSES)) + "</tr>"
        for level in ("practice", "line", "member") if level in counts)
    rows = "".join(
        f"<tr class='{r.status}'><td>{e(r.level)}</td><td>{e(r.practice_id)}</td><td>{e(r.month)}</td>"
        f"<td>{e(_text(r.member_id if r.level == 'member' else r.line))}</td><td class=n>{e(_text(r.expected))}</td>"
        f"<td class=n>{e(_text(r.paid))}</td><td class=n>{e(_signed(r.difference))}</td><td>{e(r.status)}</td>"
        f"<td>{e(r.reason)}</td></tr>" for r in rows_of(rec, everything))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Reconciliation — {e(rec.contract)} — {e(rec.period)}</title>
<style>body{{font:14px/1.4 system-ui,sans-serif;margin:1rem;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:.2rem .5rem;border-bottom:1px solid #ddd;text-align:left}}.n{{text-align:right;
font-variant-numeric:tabular-nums}}.wrap{{overflow-x:auto}}.underpaid td{{background:#fff3f0}}
.overpaid td{{background:#f0f6ff}}.unexplained td{{background:#fffbe6}}</style></head><body>
<h1>Reconciliation: {e(rec.contract)}</h1>
<p>{e(rec.path)} — period {e(rec.period)}, amounts in {e(rec.currency)}, tolerance {e(_text(rec.tolerance))},
engine {e(rec.engine)}; lines reconciled per member: {e(", ".join(rec.attributable) or "none")}.</p>
<div class=wrap><table><tr><th>level</th>{head}</tr>{summary_rows}</table></div>
<h2>{"Every amount" if everything else "Discrepancies"}</h2>
<div class=wrap><table><tr><th>level</th><th>practice</th><th>month</th><th>line / member</th><th>expected</th>
<th>paid</th><th>difference</th><th>status</th><th>reason</th></tr>{rows}</table></div>
</body></html>
"""


def write_parquet(rec: Reconciliation, everything: bool, path) -> None:
    """The CSV's rows and columns, the amounts as DECIMAL(38, scale) (never floats), the age an integer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from capdsl.outputs import atomic_path
    from capdsl.tools.render import decimal_places

    rows = rows_of(rec, everything)
    arrays = {}
    for c in COLUMNS:
        values = [getattr(r, c) for r in rows]
        if c in AMOUNT_COLUMNS:
            kind = pa.decimal128(38, decimal_places(values, 2))
            values = [None if v is None else v.quantize(Decimal(1).scaleb(-kind.scale)) for v in values]
        else:
            kind = pa.int32() if c == "age" else pa.string()
        arrays[c] = pa.array(values, kind)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(arrays), tmp)


def write_xlsx(rec: Reconciliation, everything: bool, path) -> None:
    """A workbook: the compared amounts (numeric cells), the summary per level and status, the run."""
    from capdsl.tools.reconcile import STATUSES
    from capdsl.tools.xlsx_out import write_tables

    rows = [tuple(getattr(r, c) for c in COLUMNS) for r in rows_of(rec, everything)]
    counts = rec.counts()
    summary_rows = [(level, status, *counts[level][status]) for level in ("practice", "line", "member")
                    if level in counts for status in STATUSES]
    run = [("contract", rec.contract), ("file", rec.path), ("period", rec.period), ("currency", rec.currency),
           ("tolerance", _text(rec.tolerance)), ("engine", rec.engine),
           ("lines reconciled per member", ", ".join(rec.attributable) or "none")]
    run += [("warning", w) for w in rec.warnings]
    write_tables(path, [("Compared" if everything else "Discrepancies", COLUMNS, rows,
                         {COLUMNS.index(c) for c in AMOUNT_COLUMNS}),
                        ("Summary", ["level", "status", "count", "difference"], summary_rows, {3}),
                        ("Run", ["item", "value"], run, set())])


def emit(rec: Reconciliation, out_format: str, output: str | None, everything: bool) -> None:
    from capdsl.outputs import STDOUT, atomic_write, stdout_console

    to_file = output is not None and output != STDOUT
    if out_format == "parquet":
        write_parquet(rec, everything, output)
        return
    if out_format == "xlsx":
        write_xlsx(rec, everything, output)
        return
    if out_format == "pdf":
        from capdsl.outputs import atomic_path
        from capdsl.tools.statement_doc import print_pdf

        with atomic_path(output) as tmp:
            print_pdf(to_html(rec, everything), tmp)
        return
    if out_format == "table":
        import os

        from rich.console import Console

        if to_file:
            with open(os.devnull, "w") as sink:
                console = Console(record=True, width=160, file=sink, highlight=False)
                table(rec, console, everything, plain=True)
            atomic_write(output, console.export_text())
        else:
            console = stdout_console(highlight=False)
            table(rec, console, everything, plain=not console.is_terminal)
        return
    text = {"csv": to_csv, "json": to_json, "html": to_html}[out_format](rec, everything)
    if to_file:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)


#: A tolerance is written as a plain amount: digits, optionally a point and up to 12 decimals (the
#: comparison's scale). An exponent (`1e-9999999999`) would be expanded digit by digit, and a
#: literal beyond DECIMAL(38, 12) would be compared as a float.
TOLERANCE = re.compile(r"(?:[0-9]{1,24}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})")


def parse_tolerance(text: str) -> Decimal:
    written = text.strip()
    if TOLERANCE.fullmatch(written):
        return Decimal(written)
    if written.startswith("-"):
        hint = "a difference up to the tolerance either way counts as matched: pass e.g. --tolerance 0.01"
    elif any(c.isalpha() for c in written.replace("e", "").replace("E", "")):
        hint = "write the amount alone, in the contract's currency and without its unit: --tolerance 0.01"
    elif "," in written:
        hint = "write decimals with a point, without thousands separators: --tolerance 0.01"
    else:
        hint = "write a plain amount with at most 12 decimals, in the contract's currency: --tolerance 0.01"
    raise UsageError(error("E0933", f"--tolerance {text!r}: not a non-negative amount", hint=hint))


def register(main: click.Group) -> None:
    cli = sys.modules[main.callback.__module__]
    if "reconcile" in main.commands:
        return

    @click.command("reconcile", epilog=EXAMPLES)
    @click.argument("contract", type=click.Path())
    @cli.panel_options
    @click.option("--remittance", required=True, type=click.Path(),
                  help="What the payer paid: CSV, Parquet, JSON or .xlsx (practice_id, month, line, member_id, "
                       "amount, reference) or an X12 820 file.")
    @click.option("--tolerance", default="0.00", show_default=True,
                  help="A difference up to this amount counts as matched.")
    @click.option("--practice", "only_practices", multiple=True, metavar="ID", help="Only this practice (repeatable).")
    @click.option("--all", "everything", is_flag=True, help="List every compared amount, not only discrepancies.")
    @click.option("--check", is_flag=True, help="Exit 1 when any amount does not match (for scripts).")
    @click.option("--format", "out_format", type=click.Choice(["table", "csv", "json", "html", "parquet", "xlsx",
                                                                "pdf"]), default=None,
                  help="table, csv, json, html, parquet, xlsx or pdf (default: from -o's extension, else table).")
    @click.option("-o", "--output", type=click.Path(), help="Write here (atomically); - is stdout.")
    @click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")
    @cli.handle_errors
    def reconcile_cmd(contract, members, practices, events, measures, input_format, assignments, params_file, period,
                      engine, spark_master, show_ids, remittance, tolerance, only_practices, everything, check,
                      out_format, output, quiet):
        """Compare what a payer paid (a remittance) with what the contract says, per practice, month and
        line, and per member and month where the remittance pays per member: matched, underpaid,
        overpaid and unexplained amounts, each discrepancy with its reason."""
        from pathlib import Path

        from capdsl.outputs import output_format
        from capdsl.tools.reconcile import run_reconcile

        target, out_format = output_format(output, out_format, FORMATS, "table")
        cli._parquet_needs_a_file(out_format, target, f"reconciliation.{out_format}")
        if out_format == "pdf":
            from capdsl.tools.statement_doc import require_pdf

            require_pdf()  # before any work
        tol = parse_tolerance(tolerance)
        run = cli._run(contract, members, practices, events, measures, input_format, assignments, params_file,
                       period, engine, spark_master, show_ids)
        with cli.progress(quiet, f"reconciling {Path(contract).name} for {run.period} against "
                                 f"{Path(remittance).name}"):
            rec = run_reconcile(contract, run, remittance, tolerance=tol, practices=only_practices,
                                everything=everything)
        if not quiet:
            for w in rec.warnings:
                click.echo(w, err=True)
        emit(rec, out_format, output, everything)
        if check and rec.discrepancies:
            sys.exit(1)

    main.add_command(reconcile_cmd)


RETRO_EXAMPLES = ("\b\nExamples:\n"
                  "  capdsl retro C.cap --members members_2011-06.csv --paid-members members_2011-05.csv "
                  "--period 2011-06\n"
                  "  capdsl retro C.cap --members now.csv --paid-members then.csv --period 2011-06 --months 6 "
                  "--only-adjustments\n"
                  "  capdsl retro C.cap --members now.csv --paid-members then.csv --period 2011-06 --detail member "
                  "-o retro.csv")


def member_adjustments_csv(retro) -> str:
    from capdsl.tools.render import spreadsheet_safe

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["practice_id", "member_id", "month", "paid", "owed", "adjustment", "reason"])
    for a in retro.members:
        w.writerow([spreadsheet_safe(a.practice_id), spreadsheet_safe(a.member_id), a.month, _text(a.paid),
                    _text(a.owed), _text(a.adjustment), a.reason])
    return buf.getvalue()


def member_adjustments_json(retro) -> str:
    return _json({"window": list(retro.window), "member_lines": list(retro.member_lines),
                  "adjustments": [{"practice_id": a.practice_id, "member_id": a.member_id, "month": a.month,
                                   "paid": _text(a.paid) or None, "owed": _text(a.owed) or None,
                                   "adjustment": _text(a.adjustment), "reason": a.reason}
                                  for a in retro.members]})


#: what `retro --detail member` writes: a row per member-month, not statements
DETAIL_FORMATS = {".csv": "csv", ".json": "json"}


def register_retro(main: click.Group) -> None:
    cli = sys.modules[main.callback.__module__]
    if "retro" in main.commands:
        return

    @click.command("retro", epilog=RETRO_EXAMPLES)
    @click.argument("contract", type=click.Path())
    @cli.panel_options
    @click.option("--paid-members", required=True, type=click.Path(),
                  help="The members file the past months were paid on.")
    @click.option("--paid-practices", type=click.Path(), help="Its practices file (default: today's).")
    @click.option("--paid-events", type=click.Path(), help="Its events file (default: today's).")
    @click.option("--paid-measures", type=click.Path(), help="Its measures file (default: today's).")
    @click.option("--months", type=int, default=None,
                  help="How many months before the period to look back (default: the contract's "
                       "`retroactive N months`).")
    @click.option("--only-adjustments", is_flag=True, help="Only the adjustment lines, not the period's own lines.")
    @click.option("--detail", type=click.Choice(["member"]), default=None,
                  help="Instead of statements, the adjustment of each member and month, with what changed.")
    @click.option("--format", "out_format", default=None,
                  type=click.Choice(["table", "csv", "json", "parquet", "xlsx", "html", "pdf"]),
                  help="The statements' formats (default: from -o's extension, else table); with --detail "
                       "member: csv (the default) or json.")
    @click.option("-o", "--output", type=click.Path(), help="Write here (atomically); - is stdout.")
    @click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")
    @cli.handle_errors
    def retro_cmd(contract, members, practices, events, measures, input_format, assignments, params_file, period,
                  engine, spark_master, show_ids, paid_members, paid_practices, paid_events, paid_measures, months,
                  only_adjustments, detail, out_format, output, quiet):
        """Adjustments for past months that today's panel pays differently (retro adds, back-dated
        terminations, corrected birth dates): the period's statements with a line per practice and line
        for what the look-back months owe."""
        from pathlib import Path

        from capdsl.outputs import output_format
        from capdsl.tools.retro import run_retro

        if detail:
            target, out_format = output_format(output, out_format, DETAIL_FORMATS, "csv")
            if out_format not in DETAIL_FORMATS.values():
                raise UsageError(error("E0906", f"retro --detail member is written as csv or json, not {out_format}",
                                       hint="pass --format csv (or -o adjustments.csv), or drop --detail for "
                                            "the statements"))
        else:
            target, out_format = output_format(output, out_format, cli.STATEMENT_FORMATS, "table")
            cli._parquet_needs_a_file(out_format, target, f"statements.{out_format}")
            if out_format == "pdf":
                from capdsl.tools.statement_doc import require_pdf

                require_pdf()  # before any work: no Chromium, no run
        run = cli._run(contract, members, practices, events, measures, input_format, assignments, params_file,
                       period, engine, spark_master, show_ids)
        paid = {"members": paid_members}
        for table, given in (("practices", paid_practices), ("events", paid_events), ("measures", paid_measures)):
            if given or run.files.get(table):
                paid[table] = given or run.files[table]
        with cli.progress(quiet, f"evaluating {Path(contract).name} on both panels"):
            retro = run_retro(contract, run, paid, months=months, only_adjustments=only_adjustments,
                              members=detail == "member")
        if not quiet:
            for w in retro.result.warnings:
                click.echo(w, err=True)
            if not any(line.kind == "adjustment" for st in retro.result.statements for line in st.lines):
                first, last = retro.window
                click.echo(f"no adjustment: no practice's amounts for {first} to {last} differ between the "
                           f"two panels", err=True)
        if detail:
            from capdsl.outputs import STDOUT, atomic_write

            text = member_adjustments_csv(retro) if out_format == "csv" else member_adjustments_json(retro)
            if output is not None and output != STDOUT:
                atomic_write(output, text)
            else:
                click.echo(text, nl=False)
            return
        cli.emit(retro.result, out_format, output)

    main.add_command(retro_cmd)
