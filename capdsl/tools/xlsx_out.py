"""Statements and member detail as .xlsx workbooks (openpyxl), for payers who open them in a spreadsheet.

The first sheet has the columns and rows of the CSV (`render.columns_of`, `render.statement_rows`):

- amounts, bases and totals are numeric cells written from their `Decimal`, with a number format of
  the column's decimal places (`#,##0.00`). A spreadsheet holds a number as a double, which keeps a
  decimal of up to 15 significant digits exactly: every amount below 10^13 with cents;
- `applied` is a boolean cell; an empty text (the period's `month`) is an empty cell;
- text is always a string cell, never a formula, and is made spreadsheet-safe as in CSV (a leading
  `'` before =, +, -, @, tab, CR) unless `raw_cells`; characters XML cannot carry (control
  characters other than tab, LF, CR) are written as U+FFFD;
- the header row is bold and frozen, with a filter; columns are as wide as their contents (up to 60).

A second sheet says what was run (statements: contract, period, currency, engine, totals,
warnings; detail: what each aggregate column sums). Written with openpyxl's write-only mode (rows
stream to the file) into a temporary file renamed into place (capdsl.outputs).
"""

from __future__ import annotations

import re
from decimal import Decimal

from capdsl.errors import UsageError, error
from capdsl.tools.render import columns_of, decimal_places, spreadsheet_safe, statement_rows

MAX_ROWS = 1_048_576  # rows in one sheet, the header's included
MAX_WIDTH = 60
_SAMPLE = 2000  # rows looked at for column widths
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_AMOUNTS = {"amount", "report_amount", "total", "report_total"}


def _text(value: str, raw: bool) -> str:
    value = _NOT_XML.sub("\ufffd", value)
    return value if raw else spreadsheet_safe(value)


def _number_format(places: int) -> str:
    return "#,##0" + ("." + "0" * places if places else "")


def _display(value) -> str:
    """About how the cell shows, for its column's width."""
    if isinstance(value, Decimal):
        return f"{value:,}"
    return "" if value is None else str(value)


class _Sheet:
    """A write-only sheet with a bold, frozen header row, a filter and columns sized to a sample."""

    def __init__(self, book, title: str, columns: list[str], sample: list, raw: bool,
                 formats: dict[int, str] | None = None, filtered: bool = True, rows: int | None = None):
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        self.ws = book.create_sheet(title)
        self.raw = raw
        self.formats = formats or {}
        self._cell = WriteOnlyCell
        for i, name in enumerate(columns):
            width = max([len(name)] + [len(_display(row[i])) for row in sample[:_SAMPLE]])
            self.ws.column_dimensions[get_column_letter(i + 1)].width = min(width + 2, MAX_WIDTH)
        self.ws.freeze_panes = "A2"
        if filtered and rows is not None:
            self.ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{rows + 1}"
        bold = Font(bold=True)
        header = []
        for name in columns:
            cell = WriteOnlyCell(self.ws, value=name)
            cell.font = bold
            header.append(cell)
        self.ws.append(header)

    def cell(self, value, fmt: str | None = None):
        if isinstance(value, str):
            if not value:
                return None
            value = _text(value, self.raw)
            if value.startswith("=") and len(value) > 1:  # raw text openpyxl would take for a formula
                cell = self._cell(self.ws, value=value)
                cell.data_type = "s"
                return cell
            return value
        if fmt is not None and value is not None and not isinstance(value, bool):
            cell = self._cell(self.ws, value=value)
            cell.number_format = fmt
            return cell
        return value

    def append(self, row) -> None:
        formats = self.formats
        self.ws.append([self.cell(v, formats.get(i)) for i, v in enumerate(row)])


def _too_many_rows(what: str, rows: int, hint: str) -> UsageError:
    return UsageError(error("E0932", f"{what} has {rows:,} rows; an .xlsx sheet holds {MAX_ROWS - 1:,} "
                                     "(and a header row)", hint=hint))


def _book():
    from openpyxl import Workbook

    from capdsl import __version__

    book = Workbook(write_only=True)
    book.properties.creator = f"capdsl {__version__}"
    return book


def _save(book, path) -> None:
    from capdsl.outputs import atomic_path

    with atomic_path(path) as tmp:
        book.save(tmp)


def write_statements(result, path, *, raw_cells: bool = False) -> None:
    """The statements (or the --summary rows) and a sheet about the run, as an .xlsx workbook."""
    columns = columns_of(result)
    rows = list(statement_rows(result))
    if len(rows) >= MAX_ROWS:
        raise _too_many_rows("the statement", len(rows), "write --format csv or parquet, or fewer practices "
                                                         "(--practice) or a shorter period")
    formats = {}
    for i, name in enumerate(columns):
        if name in _AMOUNTS or name == "basis":
            formats[i] = _number_format(decimal_places((row[i] for row in rows), 0))
        elif name == "lines":
            formats[i] = "0"
    book = _book()
    title = "Summary" if result.summary is not None else "Statements"
    sheet = _Sheet(book, title, columns, rows, raw_cells, formats, rows=len(rows))
    for row in rows:
        sheet.append(row)
    _run_sheet(book, result, raw_cells)
    _save(book, path)


def _run_sheet(book, result, raw: bool) -> None:
    from capdsl import __version__

    money = _number_format(decimal_places([result.total, result.report_total], 0))
    practices = len({r.practice_id for r in result.summary}) if result.summary is not None \
        else len(result.statements)
    items = [("contract", result.contract, None), ("file", result.path, None), ("period", result.period, None),
             ("months", ", ".join(result.months), None), ("engine", result.engine, None),
             ("currency", result.currency, None), ("practices", practices, "0"), ("total", result.total, money)]
    if result.report_currency:
        items += [("report currency", result.report_currency, None),
                  ("report rate", result.report_rate, None),
                  ("report total", result.report_total, money)]
    items += [("warning", w, None) for w in result.warnings]
    items.append(("capdsl", __version__, None))
    sheet = _Sheet(book, "Run", ["item", "value"], [(k, v) for k, v, _ in items], raw, filtered=False)
    for key, value, fmt in items:
        sheet.ws.append([sheet.cell(key), sheet.cell(value, fmt)])


def write_detail(detail, path, *, raw_cells: bool = False) -> None:
    """Member-month rows (numbers as numeric cells, in the General format) and a sheet naming what
    each aggregate column sums."""
    rows = detail.rows
    if len(rows) >= MAX_ROWS:
        raise _too_many_rows("the member detail", len(rows), "write --format csv or parquet, or a shorter period")
    book = _book()
    sheet = _Sheet(book, "Detail", list(detail.columns), rows, raw_cells, rows=len(rows))
    for row in rows:
        sheet.append(row)
    about = _Sheet(book, "Aggregates", ["column", "aggregate"], list(detail.aggregates.items()), raw_cells,
                   filtered=False)
    for name, text in detail.aggregates.items():
        about.append((name, text))
    _save(book, path)



def write_tables(path, sheets: list[tuple[str, list[str], list[tuple], set[int]]], *,
                 raw_cells: bool = False) -> None:
    """Sheets of rows, one per (title, columns, rows, amount columns): the amount columns' Decimals
    as numeric cells with their column's decimal places; the first sheet's header filtered. For
    the outputs that are tables of their own (a reconciliation: its summary, its rows, its run)."""
    for title, _, rows, _ in sheets:
        if len(rows) >= MAX_ROWS:
            raise _too_many_rows(f"the {title.lower()} sheet", len(rows), "write --format csv or parquet, or "
                                                                          "fewer practices (--practice)")
    book = _book()
    for n, (title, columns, rows, amounts) in enumerate(sheets):
        formats = {i: _number_format(decimal_places((row[i] for row in rows), 2)) for i in amounts}
        sheet = _Sheet(book, title, columns, rows, raw_cells, formats, filtered=n == 0 or len(rows) > 1,
                       rows=len(rows))
        for row in rows:
            sheet.append(row)
    _save(book, path)
