"""Rendering statements: a terminal table, CSV, JSON and Parquet.

Money is formatted from `Decimal` (thousands separators in the terminal,
plain decimal strings in machine formats). Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

from capdsl.evaluation.statements import Result


def money(value: Decimal | None) -> str:
    if value is None:
        return ""
    exp = value.as_tuple().exponent
    places = -exp if isinstance(exp, int) and exp < 0 else 0
    return f"{value:,.{places}f}"


def basis_text(value: Decimal | None, unit: str | None) -> str:
    if value is None:
        return ""
    return f"{money(value)} {unit or ''}".strip()


def to_json(result: Result) -> str:
    from capdsl.evaluation.statements import to_jsonable

    return json.dumps(to_jsonable(result), ensure_ascii=False, indent=2) + "\n"


COLUMNS = ["practice_id", "line", "label", "kind", "amount", "currency", "basis", "basis_unit", "applied",
           "note", "report_amount", "report_currency"]
CSV_COLUMNS = COLUMNS  # every tabular format has these columns, in this order


def statement_rows(result: Result):
    """One row per practice × line, then the practice's `total` row (kind "total"), as typed values in
    `COLUMNS` order: the single row layout of CSV and Parquet."""
    cur, rep = result.currency, result.report_currency
    for st in result.statements:
        for line in st.lines:
            yield (st.practice_id, line.id, line.label, line.kind, line.amount, cur, line.basis, line.basis_unit,
                   line.applied, line.note, line.report_amount, rep)
        yield (st.practice_id, "total", "Total", "total", st.total, cur, None, None, True, None, st.report_total,
               rep)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(result: Result) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in statement_rows(result):
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def _scale(values, least: int) -> int:
    """The decimal places a DECIMAL column needs to hold every value exactly (at least `least`)."""
    scale = least
    for v in values:
        if v is not None:
            exp = v.as_tuple().exponent
            scale = max(scale, -exp if isinstance(exp, int) and exp < 0 else 0)
    return scale


def write_parquet(result: Result, path) -> None:
    """The CSV's rows and columns, amounts and bases as DECIMAL(38, scale) (never floats)."""
    import pyarrow.parquet as pq

    from capdsl.outputs import atomic_path

    table = to_arrow(result)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def to_arrow(result: Result):
    """The CSV's rows and columns as an Arrow table, amounts and bases as DECIMAL(38, scale)."""
    import pyarrow as pa

    columns = list(zip(*statement_rows(result))) or [()] * len(COLUMNS)
    data = dict(zip(COLUMNS, columns))
    text, flag = pa.string(), pa.bool_()
    types = {name: text for name in COLUMNS}
    types["applied"] = flag
    for name, least in (("amount", 2), ("basis", 0), ("report_amount", 2)):
        types[name] = pa.decimal128(38, _scale(data[name], least))
    return pa.table({name: pa.array(list(data[name]), types[name]) for name in COLUMNS},
                    metadata={"contract": result.contract, "period": result.period})


def table(result: Result, console) -> None:
    """A rich table per practice, then the grand total."""
    from rich.table import Table

    rep = result.report_currency
    for st in result.statements:
        tab = Table(title=f"{result.contract} — practice {st.practice_id} — {result.period}", title_justify="left",
                    show_lines=False, header_style="bold")
        tab.add_column("line")
        tab.add_column("basis", justify="right")
        tab.add_column(f"amount ({result.currency})", justify="right")
        if rep:
            tab.add_column(f"({rep})", justify="right", style="dim")
        tab.add_column("note", style="dim")
        for line in st.lines:
            label = line.label if line.applied else f"[dim]{line.label}[/dim]"
            row = [label, basis_text(line.basis, line.basis_unit), money(line.amount)]
            if rep:
                row.append(money(line.report_amount))
            note = line.note or ""
            if line.kind == "pool" and line.pool_amount is not None:
                parts = ", ".join(f"Q{i.quarter} {i.share}{'' if i.paid else ' withheld'}" for i in line.installments)
                note = (note + "; " if note else "") + f"annual pool {money(line.pool_amount)}: {parts}"
            row.append(note)
            tab.add_row(*row)
        total_row = ["[bold]Total[/bold]", "", f"[bold]{money(st.total)}[/bold]"]
        if rep:
            total_row.append(money(st.report_total))
        total_row.append("")
        tab.add_section()
        tab.add_row(*total_row)
        console.print(tab)
    grand = f"Grand total ({len(result.statements)} practices): {money(result.total)} {result.currency}"
    if rep:
        grand += f"  ({money(result.report_total)} {rep} at {result.report_rate} {result.currency}/{rep})"
    console.print(f"[bold]{grand}[/bold]")


# ─────────────────────────── member-level detail ─────────────────────────

def _detail_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def detail_to_csv(detail) -> str:
    """Member-month rows; an empty cell means the member is not in that aggregate (its `where` fails)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(detail.columns)
    for row in detail.rows:
        out.writerow([_detail_text(v) for v in row])
    return buf.getvalue()


def detail_to_json(detail) -> str:
    return json.dumps({"columns": list(detail.columns), "aggregates": detail.aggregates,
                       "rows": [[None if v is None else _detail_text(v) if not isinstance(v, int) else v
                                 for v in row] for row in detail.rows]},
                      ensure_ascii=False, indent=1) + "\n"


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


def detail_table(detail, console) -> None:
    from rich.table import Table

    grid = Table(title="Member-level detail", show_lines=False)
    for i, name in enumerate(detail.columns):
        grid.add_column(name, justify="right" if i >= 3 else "left")
    for row in detail.rows:
        grid.add_row(*[_detail_text(v) for v in row])
    console.print(grid)
    for name, text in detail.aggregates.items():
        console.print(f"[dim]{name}: {text}[/dim]")
