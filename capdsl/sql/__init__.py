"""The columnar backend: a `tree.Program` compiled to SQL (sqlglot) and run
on DuckDB (embedded, the default), Spark, or any warehouse via the printed SQL.

    compile_program(program, period, dialect, tables) -> str   readable SQL
    evaluate(program, con, period, params, engine)    -> MonthlyResult

`evaluate` returns the interpreter's `MonthlyResult`, so `statements.build`
does not know which engine ran. Nothing here caches: a run whose query is in
the compiled-contract cache hands `duckdb_engine.run` the `Query`
(`pipeline.CompiledContract.query`). See docs/sql.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

from capdsl.errors import UsageError, error
from capdsl.evaluation.periods import Period, parse_period
from capdsl.sql.query import Options, Query

if TYPE_CHECKING:
    from capdsl.evaluation import tree as t

__all__ = ["compile_program", "compile_query", "evaluate", "Compiled", "Query", "Options", "DIALECTS", "run_months"]


def __getattr__(name: str):
    """The compiler's names, imported on first use: importing the package does not load sqlglot."""
    if name in ("Compiled", "compile_query", "run_months"):
        from capdsl.sql import compile as compiler

        return getattr(compiler, name)
    if name == "DIALECTS":
        from capdsl.sql.dialects import DIALECTS

        return DIALECTS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _period(period) -> Period:
    return period if isinstance(period, Period) else parse_period(str(period))


# Printed before Spark SQL: without them a default session cuts a DECIMAL(38, 12) product to 6
# places and turns an overflow into NULL, silently (docs/sql.md).
SPARK_SETTINGS = ("spark.sql.decimalOperations.allowPrecisionLoss=false", "spark.sql.ansi.enabled=true")


def compile_program(program: t.Program, period, dialect: str = "duckdb", tables: Mapping[str, str] | None = None,
                    params: Mapping[str, object] | None = None, options: Options | None = None) -> str:
    """Readable SQL computing the statements' rows from warehouse tables (docs/sql.md); `tables` maps
    members/practices/events/measures to the warehouse's names. Parameters without a value or
    default are left as `:name` placeholders. Spark SQL starts with the `SET` statements it needs."""
    from capdsl.sql.compile import compile_query

    defaults = Options(row_column=None, measure_values="text", inputs="warehouse") if options is None else options
    text = compile_query(program, _period(period), dialect, tables, params, defaults).sql(pretty=True) + ";\n"
    if dialect == "spark":
        text = "".join(f"SET {setting};\n" for setting in SPARK_SETTINGS) + text
    return text


def evaluate(program: t.Program, con, period, params: dict, engine: str = "duckdb", *, master: str | None = None,
             spark=None, member_label: Callable[[str], str] | None = None):
    """Evaluate on a loaded panel's DuckDB connection with `engine` duckdb | spark."""
    period = _period(period)
    if engine == "duckdb":
        from capdsl.sql import duckdb_engine

        return duckdb_engine.evaluate(program, con, period, params, member_label=member_label)
    if engine == "spark":
        from capdsl.sql import spark_engine

        return spark_engine.evaluate(program, con, period, params, master=master, spark=spark,
                                     member_label=member_label)
    raise UsageError(error("E0924", f"unknown engine {engine!r}", hint="use duckdb, spark or python"))
