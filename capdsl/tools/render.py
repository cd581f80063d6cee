"""Rendering statements: a terminal table, CSV, JSON and Parquet (.xlsx: capdsl/tools/xlsx_out.py).

Money is formatted from `Decimal` (thousands separators in the terminal,
plain decimal strings in machine formats). Files are written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, Callable

from capdsl.evaluation.statements import PracticeTotal, Result, Statement


def money(value: Decimal | None) -> str:
    if value is None:
        return ""
    exp = value.as_tuple().exponent
    places = -exp if isinstance(exp, int) and exp < 0 else 0
    return f"{value:,.{places}f}"


def basis_text(value: Decimal | None, unit: str | None) -> str:
    """A basis as a reader sees it: a fraction (pro-rata member-months, 26.880875576037) to two places
    (26.88); CSV, JSON, Parquet and xlsx carry it exactly."""
    if value is None:
        return ""
    exp = value.as_tuple().exponent
    if isinstance(exp, int) and exp < -2:
        value = value.quantize(Decimal("0.01"))
    return f"{money(value)} {unit or ''}".strip()


# ─────────────────────────────── JSON ─────────────────────────────────────
#
# orjson writes what `json.dumps(to_jsonable(result), ensure_ascii=False, indent=2)` writes, byte for
# byte (tests/test_json_output.py holds them equal), without pydantic's import and serializer, which
# were most of the output's time. Long lists (statements, summary rows, detail rows) are encoded a
# chunk at a time and written as they come, so a large output is never one string in memory.

#: fields `to_jsonable` leaves out when they are None (the views not asked for)
_OMITTED_WHEN_NONE = {Statement: ("months",), Result: ("summary",), PracticeTotal: ("month",)}
_FIELDS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}
_CHUNK = 512  # list items encoded at a time


def _json_default(value):
    """orjson's hook for what it does not encode itself: a Decimal as its string (as pydantic writes
    it: `str(value)`), a statement dataclass as a dict of its fields in order, the views not asked
    for left out."""
    if isinstance(value, Decimal):
        return str(value)
    kind = type(value)
    spec = _FIELDS.get(kind)
    if spec is None:
        if not dataclasses.is_dataclass(kind):
            raise TypeError(f"{kind.__name__} is not JSON serializable")
        spec = _FIELDS[kind] = (tuple(f.name for f in dataclasses.fields(kind)), _OMITTED_WHEN_NONE.get(kind, ()))
    names, omitted = spec
    data = {}
    for name in names:  # Decimals written here, not in a call back each
        field = getattr(value, name)
        data[name] = str(field) if type(field) is Decimal else field
    for name in omitted:
        if data[name] is None:
            del data[name]
    return data


def _orjson(value) -> bytes:
    import orjson

    return orjson.dumps(value, default=_json_default,
                        option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS)


def _splice(fh: BinaryIO, head: bytes, lists: dict[str, list], encode_items: Callable[[list], bytes],
            key_indent: bytes, close_indent: bytes) -> None:
    """Write `head` with each empty `"key": []` of `lists` filled with that list's items, encoded
    `_CHUNK` at a time by `encode_items` (each chunk's items, already indented, joined by ",\n").
    A key is found by its indentation after a newline: JSON strings hold no raw newline."""
    pos = 0
    for key, items in lists.items():
        marker = b"\n" + key_indent + json.dumps(key).encode() + b": []"
        at = head.index(marker, pos) + len(marker) - 1  # the "]"
        fh.write(head[pos:at])
        fh.write(b"\n")
        for start in range(0, len(items), _CHUNK):
            if start:
                fh.write(b",\n")
            fh.write(encode_items(items[start:start + _CHUNK]))
        fh.write(b"\n" + close_indent)
        pos = at
    fh.write(head[pos:])


def _statement_items(items: list) -> bytes:
    """Items of a list at depth 1 of the result (4 spaces), orjson's indent of 2 kept."""
    body = _orjson(items)[2:-2]  # without "[\n" and "\n]": the items at 2 spaces
    return b"  " + body.replace(b"\n", b"\n  ")


def write_json(result: Result, fh: BinaryIO) -> None:
    """The result as JSON (UTF-8, 2-space indent, amounts as decimal strings, a final newline)."""
    head = _json_default(result)
    lists = {key: head[key] for key in ("statements", "summary") if head.get(key)}
    head.update(dict.fromkeys(lists, ()))
    _splice(fh, _orjson(head) + b"\n", lists, _statement_items, b"  ", b"  ")


def to_json(result: Result) -> str:
    buf = io.BytesIO()
    write_json(result, buf)
    return buf.getvalue().decode("utf-8")


def write_out(output: str | None, write: Callable[[BinaryIO], None]) -> None:
    """Stream bytes to standard output (`output` None or `-`) or atomically to a file."""
    from capdsl.outputs import STDOUT, atomic_path

    if output is None or output == STDOUT:
        sys.stdout.flush()
        out = getattr(sys.stdout, "buffer", None)
        if out is None:  # a text-only stream (an embedding program's)
            import click

            buf = io.BytesIO()
            write(buf)
            click.echo(buf.getvalue().decode("utf-8"), nl=False)
            return
        write(out)
        out.flush()
        return
    with atomic_path(output) as tmp, open(tmp, "wb") as fh:
        write(fh)


COLUMNS = ["practice_id", "line", "label", "kind", "amount", "currency", "basis", "basis_unit", "applied",
           "note", "report_amount", "report_currency"]
CSV_COLUMNS = COLUMNS  # every tabular format has these columns, in this order
#: with --by month: `month` follows practice_id (YYYY-MM on a month's rows, empty on the period's)
MONTH_COLUMNS = ["practice_id", "month", *COLUMNS[1:]]
#: --summary: one row per practice (and per practice and month with --by month)
SUMMARY_COLUMNS = ["practice_id", "total", "currency", "report_total", "report_currency", "lines"]
#: the numeric columns: never rewritten for spreadsheets, DECIMAL in Parquet
NUMERIC = {"amount", "basis", "report_amount", "total", "report_total", "lines"}


def _by_month(result: Result) -> bool:
    return any(st.months is not None for st in result.statements) or \
        any(row.month is not None for row in result.summary or ())


def columns_of(result: Result) -> list[str]:
    """The columns of the result's tabular rows: COLUMNS, MONTH_COLUMNS or the summary's."""
    if result.summary is not None:
        return ["practice_id", "month", *SUMMARY_COLUMNS[1:]] if _by_month(result) else SUMMARY_COLUMNS
    return MONTH_COLUMNS if _by_month(result) else COLUMNS


def statement_rows(result: Result):
    """The rows of CSV and Parquet as typed values in `columns_of(result)` order: one row per
    practice × line, then the practice's `total` row (kind "total"); with --by month each month's
    rows (and its total) come first, then the period's; with --summary one row per practice."""
    cur, rep = result.currency, result.report_currency
    months = _by_month(result)
    if result.summary is not None:
        for row in result.summary:
            head = (row.practice_id, row.month or "") if months else (row.practice_id,)
            yield (*head, row.total, cur, row.report_total, rep, row.lines)
        return
    for st in result.statements:
        head = (st.practice_id, "") if months else (st.practice_id,)
        if months:
            labels = {line.id: (line.label, line.kind, line.basis_unit) for line in st.lines}
            for m in st.months or ():
                for line in m.lines:
                    label, kind, _ = labels[line.id]
                    yield (st.practice_id, m.month, line.id, label, kind, line.amount, cur, line.basis,
                           line.basis_unit, line.applied, line.note, line.report_amount, rep)
                yield (st.practice_id, m.month, "total", "Total", "total", m.total, cur, None, None, True, None,
                       m.report_total, rep)
        for line in st.lines:
            yield (*head, line.id, line.label, line.kind, line.amount, cur, line.basis, line.basis_unit,
                   line.applied, line.note, line.report_amount, rep)
        yield (*head, "total", "Total", "total", st.total, cur, None, None, True, None, st.report_total, rep)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet would run as a formula (it begins with =, +, -, @, a tab or a carriage
    return) behind a leading apostrophe, as OWASP's CSV-injection guidance says; other text as is."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(result: Result, *, raw_cells: bool = False) -> str:
    """The rows as CSV. Text cells (ids, labels, notes — never the amounts) are made spreadsheet-safe
    unless `raw_cells`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = columns_of(result)
    writer.writerow(columns)
    text_at = [] if raw_cells else [i for i, name in enumerate(columns) if name not in NUMERIC]
    for row in statement_rows(result):
        cells = [_cell(v) for v in row]
        for i in text_at:
            if cells[i]:
                cells[i] = spreadsheet_safe(cells[i])
        writer.writerow(cells)
    return buf.getvalue()


def decimal_places(values, least: int) -> int:
    """The decimal places a DECIMAL column needs to hold every value exactly (at least `least`)."""
    scale = least
    for v in values:
        if v is not None:
            exp = v.as_tuple().exponent
            scale = max(scale, -exp if isinstance(exp, int) and exp < 0 else 0)
    return scale


def write_parquet(result: Result, path) -> None:
    """The CSV's rows and columns (raw text: Parquet is not opened as a spreadsheet), amounts and bases
    as DECIMAL(38, scale) (never floats)."""
    import pyarrow.parquet as pq

    from capdsl.outputs import atomic_path

    table = to_arrow(result)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def to_arrow(result: Result):
    """The CSV's rows and columns as an Arrow table (raw text), amounts and bases as DECIMAL(38, scale)."""
    import pyarrow as pa

    names = columns_of(result)
    columns = list(zip(*statement_rows(result))) or [()] * len(names)
    data = dict(zip(names, columns))
    text, flag = pa.string(), pa.bool_()
    types = {name: text for name in names}
    if "applied" in types:
        types["applied"] = flag
    if "lines" in types:
        types["lines"] = pa.int32()
    for name, least in (("amount", 2), ("basis", 0), ("report_amount", 2), ("total", 2), ("report_total", 2)):
        if name in types:
            types[name] = pa.decimal128(38, decimal_places(data[name], least))
    return pa.table({name: pa.array(list(data[name]), types[name]) for name in names},
                    metadata={"contract": result.contract, "period": result.period})


# ─────────────────────────────── the terminal ─────────────────────────────

def _amount_cell(value: Decimal | None):
    """An amount, right-aligned; a negative one in red on a terminal (its minus sign marks it in plain
    text)."""
    from rich.text import Text

    text = money(value)
    return Text(text, style="bold red") if value is not None and value < 0 else Text(text)


def _pool_note(line) -> str | None:
    note = line.note
    if line.kind == "pool" and line.pool_amount is not None:
        pool = f"annual pool {money(line.pool_amount)}"
        parts = ", ".join(f"{i.when} {i.share}{'' if i.paid else ' withheld'}" for i in line.installments)
        pool += f": {parts}" if parts else ""
        note = f"{note}; {pool}" if note else pool
    return note


class _Notes:
    """Notes as numbered footnotes under a table, so that the table's columns stay narrow: one number
    per distinct text."""

    def __init__(self) -> None:
        self.texts: dict[str, int] = {}

    def mark(self, note: str | None) -> str:
        if not note:
            return ""
        number = self.texts.setdefault(note, len(self.texts) + 1)
        return f" [{number}]"

    def print(self, console) -> None:
        from rich.table import Table
        from rich.text import Text

        if not self.texts:
            return
        grid = Table.grid(padding=(0, 1, 0, 0))
        grid.add_column(justify="right", no_wrap=True, style="dim")
        grid.add_column(style="dim")
        for note, number in self.texts.items():
            grid.add_row(f"[{number}]", Text(note))
        console.print(grid)


def _statement_table(currency: str, rep: str | None, plain: bool):
    from rich import box
    from rich.table import Table

    tab = Table(show_lines=False, header_style="bold", box=None if plain else box.SIMPLE_HEAD, pad_edge=False)
    # an amount is never cut: on a narrow terminal the label and the basis wrap instead
    tab.add_column("line", ratio=1, min_width=12)
    tab.add_column("basis", justify="right", overflow="fold", min_width=5)
    tab.add_column(f"amount ({currency})", justify="right", no_wrap=True)
    if rep:
        tab.add_column(f"({rep})", justify="right", style="dim", no_wrap=True)
    return tab


def _practices(n: int) -> str:
    return f"{n} practice" if n == 1 else f"{n} practices"


def table(result: Result, console, *, plain: bool = False) -> None:
    """A table per practice (its notes numbered beneath it), then the grand total; `plain` draws no
    box (for pipes and files). With --by month, each month's lines come before the period's, under a
    heading row; with --summary, one table of practices. Amounts never wrap; labels wrap at spaces."""
    if plain:  # the same text without the spaces Rich pads wrapped rows with
        with console.capture() as captured:
            _table(result, console, plain)
        console.out("\n".join(line.rstrip() for line in captured.get().splitlines()), highlight=False)
    else:
        _table(result, console, plain)


def _table(result: Result, console, plain: bool) -> None:
    from rich.text import Text

    rep = result.report_currency
    if result.summary is not None:
        _summary_table(result, console, plain)
    for st in result.statements:
        notes = _Notes()
        console.print(Text(f"{result.contract} — practice {st.practice_id} — {result.period}", style="bold"))
        tab = _statement_table(result.currency, rep, plain)
        labels = {line.id: line.label for line in st.lines}
        blank = [""] * (3 if rep else 2)

        def add(label: str, line, note: str | None) -> None:
            tab.add_row(Text(label + notes.mark(note), style="" if line.applied else "dim"),
                        basis_text(line.basis, line.basis_unit), _amount_cell(line.amount),
                        *([_amount_cell(line.report_amount)] if rep else []))

        def total_row(label: str, amount, report) -> None:
            cell = _amount_cell(amount)
            cell.stylize("bold")
            tab.add_row(Text(label, style="bold"), "", cell, *([_amount_cell(report)] if rep else []))

        for m in st.months or ():
            tab.add_row(Text(m.month, style="bold underline"), *blank)
            for line in m.lines:
                add(labels[line.id], line, line.note)
            total_row(f"Total {m.month}", m.total, m.report_total)
            tab.add_section()
        if st.months is not None:
            tab.add_row(Text(result.period, style="bold underline"), *blank)
        for line in st.lines:
            add(line.label, line, _pool_note(line))
        tab.add_section()
        total_row("Total" if st.months is None else f"Total {result.period}", st.total, st.report_total)
        console.print(tab)
        notes.print(console)
        console.print()
    count = len({r.practice_id for r in result.summary}) if result.summary is not None else len(result.statements)
    grand = f"Grand total ({_practices(count)}): {money(result.total)} {result.currency}"
    if rep:
        grand += f" ({money(result.report_total)} {rep} at {result.report_rate} {result.currency}/{rep})"
    console.print(Text(grand, style="bold"))


def _summary_table(result: Result, console, plain: bool) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rep = result.report_currency
    months = _by_month(result)
    console.print(Text(f"{result.contract} — {result.period}", style="bold"))
    tab = Table(header_style="bold", box=None if plain else box.SIMPLE_HEAD, pad_edge=False)
    tab.add_column("practice", ratio=1, overflow="fold")
    if months:
        tab.add_column("month", no_wrap=True)
    tab.add_column("lines", justify="right", no_wrap=True)
    tab.add_column(f"total ({result.currency})", justify="right", no_wrap=True)
    if rep:
        tab.add_column(f"({rep})", justify="right", style="dim", no_wrap=True)
    for row in result.summary or ():
        cells = [row.practice_id] + ([row.month or result.period] if months else [])
        tab.add_row(*cells, str(row.lines), _amount_cell(row.total),
                    *([_amount_cell(row.report_total)] if rep else []))
    console.print(tab)
    console.print(Text(""))


# ─────────────────────────── member-level detail ─────────────────────────

def _detail_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _detail_decimals():
    """`_detail_text` of a value other than None, remembered by its exact written form (a detail has
    few distinct values; `str` tells 0 from -0, which equality and hashing do not)."""
    seen: dict[str, str] = {}

    def text(value) -> str:
        key = str(value)
        found = seen.get(key)
        if found is None:
            found = seen[key] = format(value.normalize(), "f") if isinstance(value, Decimal) else key
        return found

    return text


def detail_to_csv(detail, *, raw_cells: bool = False) -> str:
    """Member-month rows; an empty cell means the member is not in that aggregate (its `where` fails).
    The ids are made spreadsheet-safe unless `raw_cells`, as in the statements' CSV."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(detail.columns)
    text = _detail_decimals()
    safe = (lambda v: v) if raw_cells else spreadsheet_safe
    for row in detail.rows:
        out.writerow(["" if v is None else safe(v) if isinstance(v, str) else text(v) for v in row])
    return buf.getvalue()


def write_detail_json(detail, fh: BinaryIO) -> None:
    """Member-month rows as JSON with a 1-space indent: integers as numbers, other numbers as decimal
    strings, None as null."""
    import orjson

    text = _detail_decimals()  # orjson's hook: it writes str, int, bool and None itself

    def rows(chunk: list) -> bytes:
        # orjson indents by 2: rows at 2 spaces stay, their values at 4 move to 3 (no deeper level)
        encoded = orjson.dumps(chunk, default=text, option=orjson.OPT_INDENT_2)
        return encoded[2:-2].replace(b"\n    ", b"\n   ")

    head = {"columns": list(detail.columns), "aggregates": detail.aggregates, "rows": []}
    encoded = (json.dumps(head, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    _splice(fh, encoded, {"rows": detail.rows} if detail.rows else {}, rows, b" ", b" ")


def detail_to_json(detail) -> str:
    buf = io.BytesIO()
    write_detail_json(detail, buf)
    return buf.getvalue().decode("utf-8")


def write_detail_parquet(detail, path: Path) -> None:
    """Contributions as DECIMAL(38, 12): exact, the interpreter's working scale."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from capdsl.outputs import atomic_path

    types = [pa.string(), pa.string(), pa.string(), pa.int32(), pa.decimal128(38, 12)]
    types += [pa.decimal128(38, 12)] * (len(detail.columns) - 5)
    columns = list(zip(*detail.rows)) if detail.rows else [[] for _ in detail.columns]
    arrays = []
    for values, kind in zip(columns, types):
        if pa.types.is_decimal(kind):
            values = [None if v is None else Decimal(v).quantize(Decimal("1e-12")) for v in values]
        arrays.append(pa.array(list(values), kind))
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(dict(zip(detail.columns, arrays))), tmp)


def detail_table(detail, console, *, plain: bool = False) -> None:
    from rich.table import Table

    grid = Table(title="Member-level detail", show_lines=False, **({"box": None} if plain else {}))
    for i, name in enumerate(detail.columns):
        grid.add_column(name, justify="right" if i >= 3 else "left")
    for row in detail.rows:
        grid.add_row(*[_detail_text(v) for v in row])
    console.print(grid)
    for name, text in detail.aggregates.items():
        console.print(f"[dim]{name}: {text}[/dim]")
