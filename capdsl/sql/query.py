"""A compiled query as an engine runs it: the SQL text and what the Python side
needs to read its rows (`engine.collect_wide`) and its errors
(`engine.translate`). It holds no sqlglot expression, so a query taken from the
compiled-contract cache (capdsl/cache.py) runs without importing sqlglot or
compiling anything; `prepare` decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Callable

from capdsl import cache
from capdsl.errors import Span
from capdsl.evaluation.periods import Period

if TYPE_CHECKING:
    from capdsl.evaluation import tree as t

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
    layout: tuple[tuple[str, str, int | None, bool], ...]  # per item: kind, line, quarter, has a basis


def prepare(program: t.Program, period: Period, dialect: str, tables=None, params=None,
            options: Options = Options(), *, cached: bool = False) -> Query:
    """The query for `program` over `period`. With `cached`, a query compiled before for the same
    program, period, dialect, tables, parameters and options is read from the cache instead."""
    entry = _entry(program, period, dialect, tables, params, options) if cached else None
    return _cached_or_compiled(entry, lambda: program, period, dialect, tables, params, options)


def prepare_keyed(contract_key: str, load: Callable[[], t.Program], period: Period, dialect: str, tables=None,
                  params=None, options: Options = Options()) -> Query:
    """`prepare` with the cache, for a contract known by its compiled-contract entry (which covers
    its text, path and capdsl's code, and so its tree): the key needs no tree, and `load` is
    called for the tree only if the query must be compiled."""
    entry = _key(contract_key.encode(), period, dialect, tables, params, options)
    return _cached_or_compiled(entry, load, period, dialect, tables, params, options)


def _cached_or_compiled(entry: str | None, load: Callable[[], t.Program], period, dialect, tables, params,
                        options) -> Query:
    """The query stored under `entry`, or compiled from `load()` (and stored; None: no cache)."""
    if entry is not None:
        hit = cache.load(entry)
        if isinstance(hit, Query):
            return hit
    from capdsl.sql.compile import compile_query

    query = compile_query(load(), period, dialect, tables=tables, params=params, options=options).runnable()
    if entry is not None:
        cache.store(entry, query)
    return query


def _entry(program, period, dialect, tables, params, options) -> str | None:
    """A query's entry keyed by the whole tree (for a program that has no contract entry)."""
    return _key(json.dumps(cache.encode(program), separators=(",", ":")).encode(), period, dialect, tables,
                params, options)


def _key(contract: bytes, period, dialect, tables, params, options) -> str | None:
    """The entry of the query for `contract` (its identity: a contract entry or an encoded tree) and
    everything else the compiler reads; None when a parameter value cannot be written."""
    try:
        described = cache.encode((period.text, tuple(period.months), dialect, sorted((tables or {}).items()),
                                  sorted((params or {}).items()), options))
    except TypeError:  # a parameter value the cache cannot write: compile every time
        return None
    return cache.entry_key("query", contract + b"\0" + json.dumps(described, separators=(",", ":")).encode())
