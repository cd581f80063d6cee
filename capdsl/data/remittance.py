"""A remittance: what a payer paid, per practice and month — per line or in one sum, per member or
for the practice — read into a loaded panel's connection as the table `remittance`, for
`capdsl reconcile`.

    practice_id  month (YYYY-MM)  line (a contract line, or empty: the practice's payment)
    member_id (empty: not per member)  amount  reference (where the payer's file says it)

CSV, Parquet, JSON and .xlsx files are read with the panel's own checks (`panel.load_table`); an
ASC X12 820 file (`.820`, `.x12`, `.edi`, or a file that starts with an ISA segment) through
`capdsl.data.x12.read_820`, whose rejected records are errors with their segment position.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from capdsl.data.panel import Panel, load_table
from capdsl.data.read import LIMIT, Problems, ReadOptions, fetch_all
from capdsl.data.requirements import ColumnSpec
from capdsl.errors import Diagnostic, InputError, error

TABLE = "remittance"
TYPED = "remittance_typed"  # the rows as read and typed, under the view `remittance`
NEED = "a remittance (capdsl reconcile)"
SPECS = [ColumnSpec("practice_id", "text", True, needed_by=NEED), ColumnSpec("month", "text", True, needed_by=NEED),
         ColumnSpec("line", "text", needed_by=NEED), ColumnSpec("member_id", "text", needed_by=NEED),
         ColumnSpec("amount", "decimal", True, needed_by=NEED), ColumnSpec("reference", "text", needed_by=NEED)]
X12_SUFFIXES = (".820", ".x12", ".edi")
MONTH = re.compile("[0-9]{4}-(0[1-9]|1[0-2])")


def is_x12(path: Path) -> bool:
    if path.suffix.lower() in X12_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(3) == b"ISA"
    except OSError:
        return False


def load_remittance(panel: Panel, path: str | Path, options: ReadOptions | None = None,
                    practices: tuple[str, ...] = ()) -> list[Diagnostic]:
    """Read the remittance into `panel` as the view `remittance`, with `month_start` the month's first
    day (only `practices`' rows when given); raise InputError naming every row that cannot be read.
    Returns the warnings. The typed rows stay where the panel's checks put them (a view over a
    Parquet file, else a table), so a million-row file is not copied once more for a column."""
    path = Path(path)
    if is_x12(path) and (options is None or options.format is None):
        warnings = _load_820(panel, path)
    else:
        warnings = load_table(panel, TABLE, path, SPECS, options)
    not_a_month = f"NOT regexp_full_match(month, '{MONTH.pattern}')"
    # The distinct months are few (DuckDB finds them from a Parquet file's dictionaries) and are
    # checked here, not in SQL, where the filter would be pushed down to every row: the rows are
    # scanned for their numbers only when a month is wrong.
    months = fetch_all(panel.con, f"SELECT DISTINCT month FROM {TABLE}")
    if any(m is not None and not MONTH.fullmatch(m) for m, in months):
        bad = fetch_all(panel.con, f"SELECT _row, month FROM {TABLE} WHERE {not_a_month} ORDER BY _row LIMIT {LIMIT}")
        probs = Problems()
        total = fetch_all(panel.con, f"SELECT count(*) FROM {TABLE} WHERE {not_a_month}")[0][0]
        probs.rows("E0740", str(path), bad, total, "rows with a month that is not YYYY-MM",
                   lambda r: f"row {r[0]}, column month: {r[1]!r} is not a month",
                   hint="write the month paid for as YYYY-MM, e.g. 2011-02")
        raise InputError(probs.items)
    con = panel.con
    kind = fetch_all(con, f"SELECT CASE table_type WHEN 'VIEW' THEN 'VIEW' ELSE 'TABLE' END "
                          f"FROM information_schema.tables WHERE table_name = '{TABLE}'")[0][0]
    con.execute(f"ALTER {kind} {TABLE} RENAME TO {TYPED}")
    keep = ""
    if practices:
        keep = " WHERE practice_id IN (" + ", ".join("'" + p.replace("'", "''") + "'" for p in practices) + ")"
    con.execute(f"CREATE VIEW {TABLE} AS SELECT *, CAST(month || '-01' AS DATE) AS month_start FROM {TYPED}{keep}")
    return warnings


def _load_820(panel: Panel, path: Path) -> list[Diagnostic]:
    try:
        from capdsl.data.x12 import read_820
    except ImportError as exc:  # the `x12` extra is not installed
        raise InputError([error("E0741", f"an X12 820 file needs pyx12, which is not installed ({exc})",
                                path=str(path), hint="pip install 'capdsl[x12]'")]) from None
    reading = read_820(path)
    problems = [error("E0742", f"{position}: {reason}", path=str(path),
                      hint="correct the record, or remove it and reconcile it by hand")
                for position, reason in reading.rejected]
    if problems:
        raise InputError(problems)
    rows = []
    for i, r in enumerate(reading.remittance, start=1):
        try:
            amount = Decimal(str(r["amount"]))
        except (InvalidOperation, KeyError):
            raise InputError([error("E0742", f"{r.get('reference') or f'record {i}'}: amount "
                                             f"{r.get('amount')!r} is not a number", path=str(path))]) from None
        rows.append((i, r.get("practice_id"), r.get("month"), r.get("line") or None, r.get("member_id") or None,
                     amount, r.get("reference")))
    con = panel.con
    con.execute(f"CREATE OR REPLACE TABLE {TABLE} (_row BIGINT, practice_id VARCHAR, month VARCHAR, line VARCHAR, "
                f"member_id VARCHAR, amount DECIMAL(38, 12), reference VARCHAR)")
    if rows:
        con.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    missing = fetch_all(con, f"SELECT _row, reference FROM {TABLE} WHERE practice_id IS NULL OR month IS NULL "
                             f"ORDER BY _row LIMIT {LIMIT}")
    if missing:
        raise InputError([error("E0742", f"{ref or f'record {row}'}: no payee practice or month", path=str(path))
                          for row, ref in missing])
    panel.kinds[TABLE] = {"_row": "integer", **{s.name: s.kind for s in SPECS}}
    return []
