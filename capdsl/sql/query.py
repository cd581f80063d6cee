"""A compiled query as an engine runs it: the SQL text and what the Python side
needs to read its rows (`engine.collect_wide`) and its errors
(`engine.translate`). It holds no sqlglot expression and no tree node, so a
query read from the compiled-contract cache (`pipeline.CompiledContract.query`)
runs without importing sqlglot, the tree or the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from capdsl.errors import Span

FAIL_TAG = "capdsl-fail"


@dataclass(frozen=True, slots=True)
class FailSite:
    """Where a query may stop, as `engine.translate` reports it: a `tree.Fail`'s code and message
    (None for a division by zero) and the source span. Not the tree node itself, so that reading a
    cached query needs no tree classes."""

    code: str | None
    message: str | None
    origin: Span


@dataclass(frozen=True)
class Options:
    """How the input tables look.

    row_column: the 1-based input row number column (`_row` in a loaded panel),
        named in error messages; None when the tables have none.
    measure_values: "typed" reads `value_<kind>` columns (a loaded panel);
        "text" casts the text `value` column (a warehouse table).
    practices: "table" evaluates every row of the practices table; "derive"
        evaluates the practice ids found in members and events (no practices file).
    inputs: "checked" reads tables the panel loader made (every column the
        contract reads present, typed, defaults applied, values checked);
        "warehouse" reads tables as docs/sql.md describes them and applies the
        loader's rules in SQL: a column with a default may be absent, an empty
        value takes the default, text is trimmed, measures are normalised
        (`2011-q4`, `250%`, ` yes `), and a value the loader would refuse
        stops the query with the loader's error code.
    """

    row_column: str | None = "_row"
    measure_values: str = "typed"
    practices: str = "table"
    inputs: str = "checked"


@dataclass(frozen=True)
class Query:
    """`Compiled.runnable()`: the wide query (`Compiled.fetch_sql`) and how to read it."""

    sql: str
    dialect: str
    months: tuple[date, ...]
    fails: tuple[tuple[str, FailSite], ...]  # payload index -> (level, site); level "division": by zero
    lines: tuple[str, ...]  # monthly lines in line order
    pools: tuple[str, ...]
    layout: tuple[tuple[str, str, int | None, bool], ...]  # per item: kind, line, paid month, has a basis
