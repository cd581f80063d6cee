"""Run compiled SQL on Spark (`pip install capdsl[spark]`).

The same query as DuckDB's, in the spark dialect, through `spark.sql`. The
panel is handed over from DuckDB as Arrow (no CSV/pandas round trip), or read
from Parquet paths. Decimal precision loss must be off, or Spark silently
rounds wide products to 6 places: `spark_session` sets it.
"""

from __future__ import annotations

import shutil
from typing import Callable

from .. import tree as t
from ..errors import BackendError, error
from ..amounts import MonthlyResult
from ..periods import Period
from .query import Options, prepare
from .engine import collect_wide, translate

CONF = {
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",  # exact DECIMAL(38, s) arithmetic
    "spark.sql.ansi.enabled": "true",  # overflow raises instead of yielding NULL
    "spark.sql.session.timeZone": "UTC",
    # a contract is a chain of CTEs (two per line): give the analyzer and optimizer room
    "spark.sql.analyzer.maxIterations": "1000",
    "spark.sql.optimizer.maxIterations": "1000",
    # The per-task fast aggregation hash map holds 2^16 groups by default; past that Spark falls
    # back to a slower map. Member-months grouped by practice and month exceed it at 10 M members:
    # 2^20 made VZP ~25 % faster there (measured before the year was summed per practice, performance.md).
    "spark.sql.codegen.aggregate.fastHashMap.capacityBit": "20",
}
_TABLES = ("members", "practices", "events", "measures")


def available() -> str | None:
    """Why Spark cannot run here (None when it can)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed (pip install 'capdsl[spark]')"
    if shutil.which("java") is None:
        import os

        if not os.environ.get("JAVA_HOME"):
            return "Java is not installed (Spark needs a Java 17 runtime)"
    return None


def spark_session(master: str | None = None, app: str = "capdsl"):
    """A SparkSession on `master` (default local[*]: every core) configured for exact decimals."""
    why = available()
    if why:
        raise BackendError(error("E0923", f"the spark engine cannot start: {why}"))
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app).master(master or "local[*]")
    builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
    builder = builder.config("spark.sql.shuffle.partitions", "4")
    for key, value in CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("FATAL")  # failures reach the user as capdsl errors, not JVM traces
    for key, value in CONF.items():
        spark.conf.set(key, value)
    return spark


def register_panel(spark, con, prefix: str = "capdsl_") -> dict[str, str]:
    """Hand the panel's DuckDB tables to Spark as Arrow; returns table → view name."""
    names = {}
    for table in _TABLES:
        arrow = con.sql(f"SELECT * FROM {table}").to_arrow_table()
        spark.createDataFrame(arrow).createOrReplaceTempView(prefix + table)
        names[table] = prefix + table
    return names


def evaluate(program: t.Program, con, period: Period, params: dict, *, master: str | None = None, spark=None,
             member_label: Callable[[str], str] | None = None) -> MonthlyResult:
    """Evaluate a panel loaded in DuckDB (`con`) on Spark."""
    spark = spark or spark_session(master)
    for key, value in CONF.items():
        spark.conf.set(key, value)
    tables = register_panel(spark, con)
    empty = con.execute("SELECT count(*) FROM (SELECT 1 FROM practices LIMIT 1)").fetchall()[0][0] == 0
    options = Options(practices="derive" if empty else "table")
    return run(program, spark, period, params, tables, options, member_label)


def run(program: t.Program, spark, period: Period, params: dict, tables: dict, options: Options = Options(),
        member_label: Callable[[str], str] | None = None) -> MonthlyResult:
    """Evaluate on tables Spark already knows (views, catalog tables or parquet.`path`)."""
    query = prepare(program, period, "spark", tables=tables, params=params, options=options)
    try:
        rows = [tuple(r) for r in spark.sql(query.sql).collect()]
    except Exception as exc:  # py4j / pyspark errors: turned into the interpreter's error
        raise translate(query, exc, member_label) from None
    return collect_wide(query, program.quantum, rows)
