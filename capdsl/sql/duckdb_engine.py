"""Run compiled SQL on DuckDB: on a loaded panel's connection, or straight on
Parquet files (the benchmark path: no loading, DuckDB streams the files)."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Mapping

from capdsl.evaluation.amounts import MonthlyResult
from capdsl.evaluation.periods import Period
from capdsl.sql.engine import collect_wide, translate
from capdsl.sql.query import Options, Query

if TYPE_CHECKING:
    from capdsl.evaluation import tree as t

# Empty stand-ins for tables a run on files does not provide.
_EMPTY = {
    "events": "SELECT CAST(NULL AS VARCHAR) AS practice_id, CAST(NULL AS VARCHAR) AS member_id, "
              "CAST(NULL AS DATE) AS date, CAST(NULL AS VARCHAR) AS code, CAST(NULL AS DECIMAL(38,10)) AS points, "
              "CAST(NULL AS DECIMAL(38,10)) AS quantity LIMIT 0",
    "measures": "SELECT CAST(NULL AS VARCHAR) AS practice_id, CAST(NULL AS VARCHAR) AS period, "
                "CAST(NULL AS VARCHAR) AS measure, CAST(NULL AS VARCHAR) AS value LIMIT 0",
}


def use_all_cores(con) -> None:
    con.execute(f"SET threads TO {max(2, os.cpu_count() or 2)}")


def _practices_empty(con, table: str) -> bool:
    return con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)").fetchall()[0][0] == 0


def panel_options(con) -> Options:
    """How the compiled query must read a panel connection's typed tables (members, practices,
    events, measures): without practice rows, the practices are those its members and events name."""
    return Options(practices="derive" if _practices_empty(con, "practices") else "table")


def run(query: Query, con, quantum: Decimal, *, member_label: Callable[[str], str] | None = None) -> MonthlyResult:
    """Run a compiled `query` (compiled with `panel_options(con)`) on a panel connection; amounts
    are shown with `quantum`'s places, a failing member is named by `member_label`."""
    use_all_cores(con)
    try:
        rows = con.execute(query.sql).fetchall()
    except Exception as exc:  # duckdb.Error: turned into the interpreter's error
        raise translate(query, exc, member_label) from None
    return collect_wide(query, quantum, rows)


def evaluate(program: t.Program, con, period: Period, params: dict, *,
             member_label: Callable[[str], str] | None = None) -> MonthlyResult:
    """Compile `program` for a panel connection and run it (no cache: `pipeline.CompiledContract`
    is the cached route)."""
    from capdsl.sql.compile import compile_query

    query = compile_query(program, period, "duckdb", params=params, options=panel_options(con)).runnable()
    return run(query, con, program.quantum, member_label=member_label)


def evaluate_files(program: t.Program, files: Mapping[str, str], period: Period, params: dict,
                   con=None) -> MonthlyResult:
    """Evaluate straight on Parquet files with canonical typed columns (measures: text `value`)."""
    import duckdb

    con = con or duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    use_all_cores(con)
    tables = {}
    for name in ("members", "practices", "events", "measures"):
        if name in files:
            tables[name] = str(files[name])
        elif name in _EMPTY:
            con.execute(f"CREATE OR REPLACE TEMP VIEW capdsl_empty_{name} AS {_EMPTY[name]}")
            tables[name] = f"capdsl_empty_{name}"
    options = Options(row_column=None, measure_values="text",
                      practices="table" if "practices" in files else "derive")
    from capdsl.sql.compile import compile_query

    query = compile_query(program, period, "duckdb", tables=tables, params=params, options=options).runnable()
    try:
        rows = con.execute(query.sql).fetchall()
    except Exception as exc:
        raise translate(query, exc) from None
    return collect_wide(query, program.quantum, rows)
