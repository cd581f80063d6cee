"""A statement to send to a practice: printable HTML, and a PDF of it.

`capdsl eval … --format html` writes one self-contained page per practice
(inline CSS, no script, no external asset; every text escaped): the
practice, the period and its months, each line with its basis, amount,
rule reference and note, the pools' installments, the contract's rounding,
the totals in the contract currency and the report currency, and where the
numbers come from (the contract and panel files with their SHA-256, the
parameters, capdsl's version, the time of the run). A page holds one
practice's figures only: no other practice's amounts, no grand total, no
panel warnings (they may name other practices' rows).

`--format pdf` prints that HTML with headless Chromium (`--print-to-pdf`),
one PDF page per practice (`break-after: page`); the PDF is written
atomically like every other output. Without Chromium the command stops
before any work with E0918 naming what to install.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import click

from capdsl.errors import UsageError, error
from capdsl.evaluation.statements import Line, Result, Statement
from capdsl.tools.render import basis_text, money

#: panel files up to this size are hashed for the provenance (SHA-256 reads ~1 GB/s)
HASH_LIMIT = 1 << 30
#: the practices file's column that names a practice on its statement (the first one found)
NAME_COLUMNS = ("name", "practice_name")
#: where to look for Chromium: $CAPDSL_CHROMIUM, then these names on PATH
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: seconds Chromium may take to print (a few hundred practices print in seconds)
PRINT_TIMEOUT = 600

ROUNDING_WORDS = {"half_up": "half up", "half_even": "half to even", "down": "down (toward zero)",
                  "up": "up (away from zero)"}


# ─────────────────────────────── what a page states ────────────────────────

@dataclass(frozen=True, slots=True)
class InputFile:
    """A file the run read, as the provenance names it."""

    role: str  # members, practices, events, measures, contract, parameters
    path: str  # as given; <stdin> for standard input
    sha256: str | None  # None: not hashed (too large, unreadable)
    size: int | None


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    value: str
    given_by: str  # --set, a parameters file's name, or default


@dataclass(frozen=True, slots=True)
class Document:
    """What a statement page states besides the `Result`: the rounding, practice names and provenance."""

    quantum: Decimal | None = None
    rounding_mode: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    contract: InputFile | None = None
    files: tuple[InputFile, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    params_file: InputFile | None = None
    version: str = ""
    run_at: str = ""


def _sha256(path: Path) -> tuple[str | None, int | None]:
    try:
        size = path.stat().st_size
        if size > HASH_LIMIT:
            return None, size
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest(), size
    except OSError:
        return None, None


def _input_file(role: str, shown: str, real: str | os.PathLike) -> InputFile:
    from capdsl.data.read import split_sheet

    path, _sheet = split_sheet(real)
    digest, size = _sha256(path)
    return InputFile(role, shown, digest, size)


def run_time() -> str:
    """The time of the run, UTC ISO 8601; $SOURCE_DATE_EPOCH fixes it for reproducible documents."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    moment = None
    if epoch.isdigit():
        try:
            moment = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            moment = None
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def collect(compiled, given, piped) -> Document:
    """The document's facts for a run: `compiled` the contract (`pipeline.CompiledContract`), `given`
    the `Run` as the command line stated it (`-` for standard input), `piped` the run as read (standard
    input spooled to a file, still present)."""
    from capdsl import __version__
    from capdsl.data.params import parse_params

    source = compiled.source
    contract_path = source.path if source is not None else compiled.layout.path
    real = Path(contract_path)
    contract = _input_file("contract", contract_path, real) if real.is_file() else None
    if contract is None and source is not None:
        text = source.text.encode("utf-8")
        contract = InputFile("contract", contract_path, hashlib.sha256(text).hexdigest(), len(text))
    files = tuple(_input_file(table, "<stdin>" if path == "-" else str(path), piped.files[table])
                  for table, path in given.files.items())
    params_file = None
    from_file: set[str] = set()
    if given.params_file:
        params_file = _input_file("parameters", str(given.params_file), given.params_file)
        try:
            data = json.loads(Path(given.params_file).read_text(encoding="utf-8"))
            from_file = {str(k).strip() for k in data} if isinstance(data, dict) else set()
        except (OSError, ValueError):
            from_file = set()
    set_names = {str(a).partition("=")[0].strip() for a in given.assignments}
    values = parse_params(list(given.assignments), given.params_file, compiled.requirements())
    params = []
    for name, value in values.items():
        decl = compiled.layout.params.get(name)
        unit = getattr(decl, "unit", "") or ""
        shown = f"{value} {unit}".strip() if isinstance(value, Decimal) else str(value)
        by = "--set" if name in set_names else (str(given.params_file) if name in from_file else "default")
        params.append(Parameter(name, shown, by))
    return Document(quantum=compiled.layout.quantum, rounding_mode=compiled.layout.rounding_mode,
                    names=practice_names(piped), contract=contract, files=files, parameters=tuple(params),
                    params_file=params_file, version=__version__, run_at=run_time())


def practice_names(run) -> dict[str, str]:
    """Practice id → name, from the practices file's `name` (or `practice_name`) column, read as the
    panel was (its format, sheet, separator and column mappings). The panel loader keeps only the
    columns a contract reads, so the name is read here; empty when the file has no such column."""
    import duckdb

    from capdsl.data.read import Problems, ReadOptions, detect_format, fetch_all, read_table, split_sheet
    from capdsl.errors import CapError

    given = run.files.get("practices")
    if not given:
        return {}
    opts = (run.formats or {}).get("practices")
    opts = opts if isinstance(opts, ReadOptions) else ReadOptions(format=opts)
    path, sheet = split_sheet(given)
    if sheet is not None and opts.sheet is None:
        opts = replace(opts, sheet=sheet)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        raw = read_table(con, "practices", path, detect_format(path, opts.format), Problems(), opts)
        name = next((c for c in NAME_COLUMNS if raw is not None and c in raw.columns), None)
        if raw is None or name is None or "practice_id" not in raw.columns:
            return {}
        text = "NULLIF(trim(CAST({} AS VARCHAR)), '')"
        rows = fetch_all(con, f"SELECT {text.format(raw.columns['practice_id'])}, "
                              f"{text.format(raw.columns[name])} FROM raw_practices")
    except (CapError, duckdb.Error, OSError, ValueError):
        return {}  # the panel was read already: a name is a courtesy, never a reason to fail
    finally:
        con.close()
    return {pid: nm for pid, nm in rows if pid is not None and nm is not None}


# ─────────────────────────────── HTML ──────────────────────────────────────

CSS = """
@page{size:A4;margin:11mm 12mm 12mm}
*{box-sizing:border-box}
body{font-family:"DejaVu Sans","Liberation Sans",Arial,Helvetica,sans-serif;font-size:8.5pt;color:#111;margin:0;
background:#e9edf1;line-height:1.3}
.statement{background:#fff;max-width:210mm;margin:12px auto;padding:11mm 12mm;box-shadow:0 1px 4px rgba(0,0,0,.15)}
header.top{border-bottom:2px solid #1f3a5f;padding-bottom:4px}
.contract{color:#1f3a5f;font-weight:600}
h1{font-size:13.5pt;margin:1px 0 0}
h2{font-size:9.5pt;margin:10px 0 3px;color:#1f3a5f;border-bottom:1px solid #c8d1dc;padding-bottom:1px}
dl.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:1px 10px;margin:5px 0 0}
dl.facts dt{color:#555}dl.facts dd{margin:0;font-weight:600;overflow-wrap:anywhere}
dl.prov-facts{grid-template-columns:max-content auto max-content auto max-content 1fr}
dl.prov-facts dd:last-child{grid-column:2/-1}
table{border-collapse:collapse;width:100%;margin:3px 0;table-layout:fixed}
th,td{border-bottom:1px solid #dde3ea;padding:2px 4px;vertical-align:top;text-align:left}
th{background:#f0f3f7;font-weight:600;font-size:8pt}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.basis,th.basis{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{border-top:2px solid #1f3a5f;border-bottom:none;font-weight:700}
.id,.src{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:7pt;color:#555}
.note{font-size:7.5pt;color:#7a4b00}
.neg{color:#b42318;font-weight:700}
.tag{display:inline-block;font-size:6.5pt;border:1px solid currentColor;border-radius:3px;padding:0 2px;
margin-left:3px;font-weight:600}
.withheld{color:#b42318;font-weight:700}.paid{color:#067647;font-weight:600}.not-applied{color:#7a4b00;font-weight:600}
.months td,.months th{font-size:7pt;padding:2px 3px}
.months th{font-size:6.5pt}.months th.n{white-space:normal;overflow-wrap:anywhere}
.lines td.label,.lines td.ref{overflow-wrap:break-word}
.small{font-size:7.5pt;color:#444}
.prov td,.prov th{font-size:7pt;padding:1px 3px}
.hash{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:6.2pt;overflow-wrap:anywhere}
@media print{body{background:#fff}.statement{box-shadow:none;margin:0;padding:0;max-width:none;
break-after:page;page-break-after:always}.statement:last-of-type{break-after:auto;page-break-after:auto}
tr,.pool,.provenance{break-inside:avoid}}
"""


#: the page runs no script and loads nothing: a text that escaped escaping still could not act
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _amount(value: Decimal | None) -> str:
    """An amount cell's content: a negative amount in red with its minus sign (marked in black and
    white print too)."""
    if value is None:
        return ""
    text = _e(money(value))
    return f'<span class="neg">{text}</span>' if value < 0 else text


def _columns(*widths: int | None) -> str:
    """A table's column widths in % (None: the rest): a fixed layout, the same on every page."""
    return "<colgroup>" + "".join("<col>" if w is None else f'<col style="width:{w}%">' for w in widths) + \
        "</colgroup>"


def _period_words(result: Result) -> str:
    months = result.months
    if len(months) <= 1:
        return result.period
    return f"{result.period} ({months[0]} to {months[-1]}, {len(months)} months)"


def _rounding_text(result: Result, doc: Document) -> str:
    if doc.quantum is None or doc.rounding_mode is None:
        text = "Rounding: with the contract's rule, once per line and month"
    else:
        mode = ROUNDING_WORDS.get(doc.rounding_mode, doc.rounding_mode)
        text = (f"Rounding: {mode} to {doc.quantum:f} {result.currency}, once per line and month "
                f"(`rounding {doc.rounding_mode} {doc.quantum:f} per line`)")
    text += "; a period's amount is the sum of its rounded months; a pool is rounded once a year and paid in shares."
    if result.report_currency and result.report_rate is not None:
        text += (f" {result.report_currency} amounts: converted at {result.report_rate:f} {result.currency} "
                 f"per {result.report_currency}, rounded the same way.")
    return text


def _line_row(line: Line, result: Result) -> str:
    label = f"{_e(line.label)} <span class=\"id\">{_e(line.id)}</span>"
    if line.amount < 0:
        label += ' <span class="tag neg">deduction</span>'
    if line.kind == "pool":
        label += ' <span class="tag">pool</span>'
    if line.note:
        label += f'<div class="note">{_e(line.note)}</div>'
    if line.kind == "pool" and line.pool_amount is not None:
        basis = f"annual pool {_e(money(line.pool_amount))} {_e(result.currency)}"
    else:
        basis = _e(basis_text(line.basis, line.basis_unit))
    path, _, number = line.source.rpartition(":")
    where = f"line {number}" if path == result.path and number.isdigit() else line.source
    ref = f"{_e(line.ref) if line.ref else '—'} <span class=\"src\">{_e(where)}</span>"
    cells = [f'<td class="label">{label}</td>', f'<td class="basis">{basis}</td>',
             f'<td class="n amount">{_amount(line.amount)}</td>']
    if result.report_currency:
        cells.append(f'<td class="n report">{_amount(line.report_amount)}</td>')
    cells.append(f'<td class="ref">{ref}</td>')
    return f'<tr class="line" data-line="{_e(line.id)}">{"".join(cells)}</tr>'


def _lines_table(st: Statement, result: Result) -> str:
    cur, rep = _e(result.currency), _e(result.report_currency or "")
    head = ['<th>Line</th>', '<th class="basis">Basis</th>', f'<th class="n">Amount {cur}</th>']
    if result.report_currency:
        head.append(f'<th class="n">Amount {rep}</th>')
    head.append('<th>Rule (contract line)</th>')
    total = [f'<td>Total</td><td></td><td class="n total">{_amount(st.total)}</td>']
    if result.report_currency:
        total.append(f'<td class="n report-total">{_amount(st.report_total)}</td>')
    total.append("<td></td>")
    rows = "".join(_line_row(line, result) for line in st.lines)
    cols = _columns(28, 20, 14, 12, 26) if result.report_currency else _columns(33, 21, 15, 31)
    return (f'<table class="lines">{cols}<thead><tr>{"".join(head)}</tr></thead><tbody>{rows}</tbody>'
            f'<tfoot><tr class="total-row">{"".join(total)}</tr></tfoot></table>')


def _pools(st: Statement, result: Result) -> str:
    pools = [line for line in st.lines if line.kind == "pool"]
    if not pools:
        return ""
    year = result.months[0][:4] if result.months else ""
    out = ['<h2>Pool installments</h2>']
    for line in pools:
        head = f"<b>{_e(line.label)}</b> <span class=\"id\">{_e(line.id)}</span>"
        if line.pool_amount is not None:
            head += f" — annual pool {_amount(line.pool_amount)} {_e(result.currency)}"
        out.append(f'<div class="pool" data-pool="{_e(line.id)}"><div>{head}</div>')
        if not line.installments:
            out.append(f'<div class="small">{_e(line.note or "no installment is due in this period")}</div></div>')
            continue
        rows = []
        for inst in line.installments:
            if not line.applied:
                status = '<span class="not-applied">not applied</span>'
            elif inst.paid:
                status = '<span class="paid">paid</span>'
            else:
                status = '<span class="withheld">withheld</span>'
            when = getattr(inst, "when", None) or f"Q{inst.quarter}"  # as the contract names it: Q2, H1, June
            rows.append(f'<tr class="installment"><td>{_e(when)} {_e(year)}</td><td class="n">{_e(inst.share)}'
                        f'</td><td class="n">{_amount(inst.amount)}</td><td class="status">{status}</td>'
                        f'<td>{_e(inst.condition) if inst.condition else "—"}</td></tr>')
        out.append(f'<table class="installments">{_columns(14, 12, 18, 14, None)}<thead><tr><th>Due</th>'
                   f'<th class="n">Share</th><th class="n">Amount {_e(result.currency)}</th><th>Status</th>'
                   f'<th>Condition</th></tr></thead>'
                   f'<tbody>{"".join(rows)}</tbody></table></div>')
    return "".join(out)


def _months(st: Statement, result: Result) -> str:
    if not st.months:
        return ""
    labels = [(line.id, line.label) for line in st.lines]
    head = "".join(f'<th class="n">{_e(label)}</th>' for _id, label in labels)
    rep = result.report_currency
    head = f'<th>Month</th>{head}<th class="n">Total {_e(result.currency)}</th>' + \
        (f'<th class="n">Total {_e(rep)}</th>' if rep else "")
    rows = []
    marked = False
    for m in st.months:
        cells = []
        for line in m.lines:
            mark = ""
            if not line.applied:
                mark, marked = ' <span class="small" title="not applied">†</span>', True
            cells.append(f'<td class="n" data-line="{_e(line.id)}">{_amount(line.amount)}{mark}</td>')
        rows.append(f'<tr class="month" data-month="{_e(m.month)}"><td>{_e(m.month)}</td>{"".join(cells)}'
                    f'<td class="n month-total">{_amount(m.total)}</td>'
                    + (f'<td class="n month-report-total">{_amount(m.report_total)}</td>' if rep else "") + "</tr>")
    foot = "".join(f'<td class="n">{_amount(line.amount)}</td>' for line in st.lines)
    foot = f'<td>{_e(result.period)}</td>{foot}<td class="n">{_amount(st.total)}</td>' + \
        (f'<td class="n">{_amount(st.report_total)}</td>' if rep else "")
    legend = '<div class="small">† not applied in that month.</div>' if marked else ""
    cols = _columns(9, *[None] * (len(labels) + 1 + bool(rep)))
    return (f'<h2>By month</h2><table class="months">{cols}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody><tfoot><tr>{foot}</tr></tfoot></table>{legend}')


def _file_row(f: InputFile) -> str:
    digest = f'<span class="hash">{_e(f.sha256)}</span>' if f.sha256 else \
        ("not hashed (over 1 GiB)" if f.size is not None and f.size > HASH_LIMIT else "—")
    size = f"{f.size:,} bytes" if f.size is not None else ""
    return (f'<tr><td>{_e(f.role)}</td><td class="src">{_e(f.path)}</td><td>{digest}</td>'
            f'<td class="n">{_e(size)}</td></tr>')


def _provenance(result: Result, doc: Document) -> str:
    files = ([doc.contract] if doc.contract else [InputFile("contract", result.path, None, None)]) + \
        list(doc.files) + ([doc.params_file] if doc.params_file else [])
    rows = "".join(_file_row(f) for f in files)
    params = ", ".join(f"{p.name} = {p.value} ({p.given_by})" for p in doc.parameters) or "none"
    facts = [("Engine", result.engine), ("capdsl", doc.version or "—"), ("Run at (UTC)", doc.run_at or "—"),
             ("Parameters", params)]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return (f'<div class="provenance"><h2>Rounding and provenance</h2>'
            f'<div class="small rounding">{_e(_rounding_text(result, doc))}</div>'
            f'<table class="prov">{_columns(10, 27, 50, 13)}<thead><tr><th>File</th><th>Path</th><th>SHA-256</th>'
            f'<th class="n">Size</th></tr></thead><tbody>{rows}</tbody></table>'
            f'<dl class="facts small prov-facts">{dl}</dl></div>')


def _header(result: Result, doc: Document, practice: str | None, title: str) -> str:
    facts = []
    if practice is not None:
        facts.append(("Practice", practice))
        if practice in doc.names:
            facts.append(("Name", doc.names[practice]))
    facts.append(("Period", _period_words(result)))
    facts.append(("Currency", result.currency))
    if result.report_currency and result.report_rate is not None:
        facts.append(("Report currency", f"{result.report_currency} at {result.report_rate:f} {result.currency} "
                                         f"per {result.report_currency}"))
    dl = "".join(f'<dt>{_e(k)}</dt><dd class="{_e(k.lower().replace(" ", "-"))}">{_e(v)}</dd>' for k, v in facts)
    return (f'<header class="top"><div><div class="contract">{_e(result.contract)}</div><h1>{_e(title)}</h1>'
            f'<dl class="facts">{dl}</dl></div></header>')


def _statement_page(st: Statement, result: Result, doc: Document) -> str:
    negative = any(line.amount < 0 for line in st.lines) or st.total < 0
    legend = '<div class="small">Amounts in red with a minus sign are deductions.</div>' if negative else ""
    return (f'<section class="statement" data-practice="{_e(st.practice_id)}">'
            f'{_header(result, doc, st.practice_id, "Payment statement")}'
            f'<h2>Lines</h2>{_lines_table(st, result)}{legend}{_pools(st, result)}{_months(st, result)}'
            f'{_provenance(result, doc)}</section>')


def _summary_page(result: Result, doc: Document) -> str:
    rep = result.report_currency
    by_month = any(row.month is not None for row in result.summary or ())
    head = "<th>Practice</th><th>Name</th>" + ("<th>Month</th>" if by_month else "") + \
        f'<th class="n">Total {_e(result.currency)}</th>' + (f'<th class="n">Total {_e(rep)}</th>' if rep else "") + \
        '<th class="n">Lines</th>'
    rows = []
    for row in result.summary or ():
        rows.append(f'<tr class="summary-row" data-practice="{_e(row.practice_id)}"><td>{_e(row.practice_id)}</td>'
                    f'<td>{_e(doc.names.get(row.practice_id, ""))}</td>'
                    + (f"<td>{_e(row.month or result.period)}</td>" if by_month else "")
                    + f'<td class="n">{_amount(row.total)}</td>'
                    + (f'<td class="n">{_amount(row.report_total)}</td>' if rep else "")
                    + f'<td class="n">{row.lines}</td></tr>')
    return (f'<section class="statement summary">{_header(result, doc, None, "Summary of payment statements")}'
            f'<table class="lines"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'{_provenance(result, doc)}</section>')


def render_html(result: Result, doc: Document | None = None) -> str:
    """The statements as one self-contained HTML page, a printed page per practice."""
    doc = doc or Document(run_at=run_time())
    if result.summary is not None:
        body = _summary_page(result, doc)
    elif result.statements:
        body = "".join(_statement_page(st, result, doc) for st in result.statements)
    else:
        body = (f'<section class="statement">{_header(result, doc, None, "Payment statements")}'
                f'<p>No practice has a statement for this period.</p>{_provenance(result, doc)}</section>')
    title = f"{result.contract} — payment statements {result.period}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"capdsl {_e(doc.version)}\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")


# ─────────────────────────────── PDF ───────────────────────────────────────

def chromium() -> str | None:
    """The Chromium (or Chrome) to print with: $CAPDSL_CHROMIUM, else the first on PATH."""
    chosen = os.environ.get("CAPDSL_CHROMIUM", "").strip()
    if chosen:
        return shutil.which(chosen) or (chosen if os.access(chosen, os.X_OK) and os.path.isfile(chosen) else None)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def require_pdf() -> str:
    """The PDF printer, or E0918 (before any work) saying what to install."""
    found = chromium()
    if found is None:
        chosen = os.environ.get("CAPDSL_CHROMIUM", "").strip()
        why = f"CAPDSL_CHROMIUM={chosen} is not an executable" if chosen else \
            "no Chromium or Chrome was found on PATH"
        raise UsageError(error("E0918", f"--format pdf prints with headless Chromium: {why}",
                               hint="install Chromium (Debian/Ubuntu: apt-get install chromium; `make system-deps` "
                                    "does it) or set CAPDSL_CHROMIUM to a Chrome binary; --format html writes the "
                                    "page to print yourself"))
    return found


# Chromium prints capdsl's own page: no script (its CSP allows none), no external asset, every text
# escaped, and the network unreachable; so its sandbox, which cannot start as root or in most
# containers, is left off.
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
          "--no-default-browser-check", "--mute-audio", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
          "--no-pdf-header-footer"]


def print_pdf(page: str, pdf_path: str | os.PathLike, *, binary: str | None = None) -> None:
    """Print the HTML `page` to `pdf_path` with headless Chromium; E0919 if it fails."""
    binary = binary or require_pdf()
    with tempfile.TemporaryDirectory(prefix="capdsl-pdf-") as work:
        source = Path(work) / "statements.html"
        source.write_text(page, encoding="utf-8")
        profile = Path(work) / "profile"
        out = Path(pdf_path)
        try:
            out.unlink()  # the atomic writer's empty placeholder: Chromium's own file or none
        except FileNotFoundError:
            pass
        argv = [binary, *_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={out}", source.as_uri()]
        try:
            # its own process group: a timeout or Ctrl-C ends Chromium's helper processes too
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env={**os.environ, "LANG": "C.UTF-8"}, start_new_session=True)
        except OSError as exc:
            raise UsageError(error("E0919", f"Chromium could not be started ({binary}: {exc.strerror or exc})",
                                   hint="check the installation, or set CAPDSL_CHROMIUM")) from None
        try:
            _, err = proc.communicate(timeout=PRINT_TIMEOUT)
        except subprocess.TimeoutExpired:
            _end(proc)
            raise UsageError(error("E0919", f"Chromium did not print the PDF within {PRINT_TIMEOUT} s",
                                   hint="print fewer practices per run (--practice), or --format html")) from None
        except BaseException:
            _end(proc)
            raise
        head = out.read_bytes()[:5] if out.exists() else b""
        if proc.returncode != 0 or head != b"%PDF-":
            lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip() and "dbus" not in ln]
            why = lines[-1][:300] if lines else f"exit code {proc.returncode}"
            raise UsageError(error("E0919", f"Chromium did not print the PDF: {why}",
                                   hint="run with --format html and open the page in a browser to print it"))


def _end(proc: subprocess.Popen) -> None:
    """Stop Chromium and the processes it started (its process group)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.communicate()


def emit(result: Result, doc: Document | None, out_format: str, output: str | None) -> None:
    """Write the statements as HTML or PDF to `output` (atomically; None or `-` is standard output)."""
    from capdsl.outputs import STDOUT, atomic_path, atomic_write

    page = render_html(result, doc)
    if out_format == "html":
        if output is not None and output != STDOUT:
            atomic_write(output, page)
        else:
            click.echo(page, nl=False)
        return
    binary = require_pdf()
    with atomic_path(output or STDOUT) as tmp:
        print_pdf(page, tmp, binary=binary)
