"""Run compiled SQL on Spark (`pip install capdsl[spark]`).

The same query as DuckDB's, in the spark dialect, through `spark.sql`. Two routes: `evaluate`
runs on a panel the DuckDB loader has read and checked, handed over as Arrow (no CSV/pandas round
trip); `run` runs on tables already in the cluster (catalog tables, views, Parquet paths), on which
the loader's checks run first as Spark SQL (capdsl/sql/spark_checks.py). Decimal precision loss
must be off, or Spark silently rounds wide products to 6 places: `spark_session` sets it.

Spark's failures reach the user as capdsl errors, not JVM traces: a standalone or Kubernetes
master that does not answer is found before a JVM is started (E0923), and memory running out is
named as such, with what to change (E0925).
"""

from __future__ import annotations

import re
import shutil
import socket
import warnings as pywarnings
from datetime import date
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from capdsl.evaluation import tree as t
from capdsl.errors import BackendError, CapError, error
from capdsl.evaluation.amounts import MonthlyResult
from capdsl.evaluation.periods import Period
from capdsl.sql.query import Options
from capdsl.sql.engine import collect_wide, translate

CONF = {
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",  # exact DECIMAL(38, s) arithmetic
    "spark.sql.ansi.enabled": "true",  # overflow raises instead of yielding NULL
    "spark.sql.session.timeZone": "UTC",
    # a contract is a chain of CTEs, several per line: give the analyzer and optimizer room
    "spark.sql.analyzer.maxIterations": "1000",
    "spark.sql.optimizer.maxIterations": "1000",
    # The per-task fast aggregation hash map holds 2^16 groups by default; past that Spark falls
    # back to a slower map, and member-months grouped by practice and month exceed it on large panels.
    "spark.sql.codegen.aggregate.fastHashMap.capacityBit": "20",
}
#: the driver's logging when capdsl starts its JVM (errors only), unless the caller sets its Java options
QUIET_LOG = Path(__file__).with_name("log4j2.properties")
_TABLES = ("members", "practices", "events", "measures")
# tables already in a cluster: no `_row` column, measure values as text, read by the panel loader's
# rules (defaults, trimming, measures normalised: docs/sql.md, the warehouse tables)
CLUSTER = Options(row_column=None, measure_values="text", inputs="warehouse")
MASTER_TIMEOUT = 5.0  # seconds a master's port has to accept a connection before Spark is started


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


def spark_session(master: str | None = None, app: str = "capdsl", conf: dict[str, str] | None = None):
    """A SparkSession on `master` (default local[*]: every core) configured for exact decimals.
    `conf`: more Spark settings, e.g. {"spark.driver.memory": "12g"} (settings of the driver's JVM
    apply only if this call starts it)."""
    why = available()
    if why:
        raise BackendError(error("E0923", f"the spark engine cannot start: {why}"))
    master = master or "local[*]"
    silent = unreachable(master)
    if silent:
        raise BackendError(error("E0923", f"the spark engine cannot start: the Spark master {master} cannot be "
                                          f"reached ({silent})",
                                 hint="check the master URL (a standalone master listens on port 7077; its web "
                                      "page shows the URL) and that this machine can reach it"))
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app).master(master)
    builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
    builder = builder.config("spark.sql.shuffle.partitions", "4")
    settings = {**CONF, **(conf or {})}
    settings.setdefault("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={QUIET_LOG.as_uri()}")
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - py4j and pyspark errors: one line, not a JVM trace
        raise _start_error(master, exc) from None
    spark.sparkContext.setLogLevel("FATAL")  # failures reach the user as capdsl errors, not JVM traces
    for key, value in CONF.items():
        spark.conf.set(key, value)
    return spark


def shares_on_spark(program, period, params: dict, con, master: str | None = None):
    """The member shares' query (`shares.shares_sql`, wide) in Spark SQL over a loaded panel's tables
    handed to Spark (`register_panel`): (the session, the SQL or "" when no line is attributable,
    the lines). For the comparisons that compute shares where the statements are: reconcile, retro."""
    from capdsl.sql.query import Options
    from capdsl.sql.shares import shares_sql

    spark = spark_session(master)
    tables = register_panel(spark, con)
    empty = not con.execute("SELECT 1 FROM practices LIMIT 1").fetchall()
    sql, lines = shares_sql(program, period, "spark", params=params, tables=tables,
                            options=Options(practices="derive" if empty else "table"), wide=True)
    return spark, sql, lines


def unreachable(master: str) -> str | None:
    """Why no master named by a standalone (`spark://h:7077[,h2:7077]`) or Kubernetes
    (`k8s://https://h:443`) URL accepts a connection; None when one does, and for other masters
    (local, yarn: Spark finds those itself). Spark would retry for a minute, logging a trace a try."""
    if master.startswith("spark://"):
        addresses = []
        for part in master[len("spark://"):].split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or "]" in port:
                host, port = part.strip(), "7077"
            addresses.append((host.strip("[]"), port))
    elif master.startswith("k8s://"):
        rest = master[len("k8s://"):]
        url = urlsplit(rest if "://" in rest else "https://" + rest)
        try:
            port = url.port
        except ValueError:
            return f"{url.netloc}: not a host and port"
        addresses = [(url.hostname or "", str(port or (443 if url.scheme == "https" else 80)))]
    else:
        return None
    why = []
    for host, port in addresses:
        if not port.isdigit():
            why.append(f"{host}:{port}: not a port number")
            continue
        try:
            with socket.create_connection((host, int(port)), timeout=MASTER_TIMEOUT):
                return None
        except socket.gaierror:
            why.append(f"{host}: no such host")
        except (socket.timeout, TimeoutError):
            why.append(f"{host}:{port}: no answer within {MASTER_TIMEOUT:g} s")
        except OSError as exc:
            why.append(f"{host}:{port}: {(exc.strerror or str(exc)).lower()}")
    return "; ".join(why)


def register_panel(spark, con, prefix: str = "capdsl_") -> dict[str, str]:
    """Hand the panel's DuckDB tables to Spark as Arrow; returns table → view name."""
    names = {}
    for table in _TABLES:
        arrow = con.sql(f"SELECT * FROM {table}").to_arrow_table()
        try:
            spark.createDataFrame(arrow).createOrReplaceTempView(prefix + table)
        except Exception as exc:  # noqa: BLE001
            raise spark_error(exc, spark, f"handing the {table} table to Spark") from None
        names[table] = prefix + table
    return names


def evaluate(program: t.Program, con, period: Period, params: dict, *, master: str | None = None, spark=None,
             member_label: Callable[[str], str] | None = None) -> MonthlyResult:
    """Evaluate a panel loaded (and checked) in DuckDB (`con`) on Spark."""
    spark = spark or spark_session(master)
    for key, value in CONF.items():
        spark.conf.set(key, value)
    tables = register_panel(spark, con)
    empty = con.execute("SELECT count(*) FROM (SELECT 1 FROM practices LIMIT 1)").fetchall()[0][0] == 0
    options = Options(practices="derive" if empty else "table")
    return _execute(program, spark, period, params, tables, options, member_label)


def run(program: t.Program, spark, period: Period, params: dict, tables: dict, options: Options | None = None,
        member_label: Callable[[str], str] | None = None, *, checks: bool = True, today: date | None = None,
        show_ids: bool = False, warnings: list[str] | None = None) -> MonthlyResult:
    """Evaluate on tables Spark already knows (views, catalog tables or Parquet paths), which no
    loader has checked: the panel loader's checks run on them first, as Spark SQL
    (capdsl/sql/spark_checks.py), and raise its InputError (a duplicated member, an orphan
    practice, an empty birth date …). Their warnings are appended to `warnings` as statement lines
    take them (`statement.build(…, warnings)`), or else issued with Python's `warnings` module.

    `checks=False` skips the checks' scans of the data: the caller's promise that the tables pass
    them (their columns and types are still checked; that reads no data). `today` bounds birth
    dates (default: the real date); `show_ids` names members by their ids instead of a hash.
    `options` default (`CLUSTER`): no `_row` column, measure values as text, the tables read by the
    loader's rules (docs/sql.md, the warehouse tables); without a practices table the practices
    are those named by members and events."""
    from capdsl.sql.spark_checks import prepare as prepare_tables

    for key, value in CONF.items():
        spark.conf.set(key, value)
    ready = prepare_tables(spark, program, dict(tables), options or CLUSTER, period, today=today,
                           show_ids=show_ids, scan=checks, sql=lambda text: _collect(spark, text),
                           failure=lambda exc, doing: spark_error(exc, spark, doing))
    lines = [f"{w.path}: warning[{w.code}]: {w.message}" if w.path else f"warning[{w.code}]: {w.message}"
             for w in ready.warnings]
    if warnings is not None:
        warnings.extend(lines)
    else:
        for line in lines:
            pywarnings.warn(line, stacklevel=2)
    return _execute(program, spark, period, params, ready.tables, ready.options, member_label)


def _collect(spark, sql: str) -> list[tuple]:
    """Rows of a checks' query; Spark's failures as capdsl errors."""
    try:
        return [tuple(r) for r in spark.sql(sql).collect()]
    except Exception as exc:  # noqa: BLE001
        raise spark_error(exc, spark, "checking the tables") from None


def _execute(program: t.Program, spark, period: Period, params: dict, tables: dict, options: Options,
             member_label: Callable[[str], str] | None) -> MonthlyResult:
    from capdsl.sql.compile import compile_query

    query = compile_query(program, period, "spark", tables=tables, params=params, options=options).runnable()
    try:
        rows = [tuple(r) for r in spark.sql(query.sql).collect()]
    except Exception as exc:  # py4j / pyspark errors: turned into the interpreter's error
        raise spark_error(exc, spark, query=query, member_label=member_label) from None
    return collect_wide(query, program.quantum, rows)


# ───────────────────────────── Spark's failures ─────────────────────────────

_OUT_OF_MEMORY = re.compile(r"OutOfMemoryError|GC overhead limit exceeded|Java heap space|"
                            r"exceeding memory limits|OOMKilled", re.I)
_RESULT_SIZE = re.compile(r"spark\.driver\.maxResultSize")
_IN_EXECUTOR = re.compile(r"stage failure|Lost task|ExecutorLostFailure|Container killed|executor \d+ exited", re.I)
_FEWER = "or evaluate fewer practices per run (views over the tables filtered by practice_id)"
DRIVER_MEMORY_HINT = ("give the Spark driver more memory before it starts: spark.driver.memory "
                      "(spark_session(conf={'spark.driver.memory': '12g'}), spark-submit --driver-memory 12g, or "
                      "PYSPARK_SUBMIT_ARGS=\"--driver-memory 12g pyspark-shell\" for capdsl eval), " + _FEWER)


def message(exc: BaseException) -> tuple[str, bool]:
    """An exception's text, and whether the JVM could not be asked for it: a py4j error's text
    comes from the JVM, which may be gone."""
    try:
        return str(exc), False
    except Exception:  # noqa: BLE001 - the JVM cannot be asked: the Python side's part of it
        return str(getattr(exc, "errmsg", "") or type(exc).__name__), True


def summary(text: str) -> str:
    """The line of a Spark failure that says what happened: its `[ERROR_CLASS] …` line, or the first
    Java exception's message, never "An error occurred while calling …" or a stack frame."""
    lines = [x.strip() for x in text.strip().splitlines()]
    lines = [x.removeprefix(": ") for x in lines if x and not x.startswith(("at ", "..."))]
    for x in lines:
        found = re.search(r"\[[A-Z][A-Z0-9_.]+\] .*", x)
        if found:
            return found.group(0)[:300]
    for x in lines:
        found = re.match(r"(?:Caused by: )?(?:[\w$]+\.)*([\w$]+(?:Exception|Error)): (.+)", x)
        if found:
            return f"{found.group(1)}: {found.group(2)}"[:300]
    useful = [x for x in lines if not x.startswith("An error occurred while calling")]
    return (useful or lines or ["no message"])[0][:300]


def _lost(exc: BaseException, text: str) -> bool:
    """Did the connection to the driver's JVM break (the JVM died, most often killed for its memory)?"""
    if isinstance(exc, ConnectionError):
        return True
    try:
        from py4j.protocol import Py4JError, Py4JJavaError, Py4JNetworkError
    except ImportError:
        return False
    if isinstance(exc, Py4JNetworkError):
        return True
    # an error answer with no Java exception in it: py4j's "An error occurred while calling o48.collectToPython"
    return isinstance(exc, Py4JError) and not isinstance(exc, Py4JJavaError) and \
        re.fullmatch(r"An error occurred while calling [\w.$]+", text.strip()) is not None


def _local(spark) -> bool:
    try:
        return str(spark.sparkContext.master).startswith("local")
    except Exception:  # noqa: BLE001 - a Spark Connect session, or a dead JVM: not known to be local
        return False


def spark_error(exc: BaseException, spark=None, doing: str | None = None, *, query=None,
                member_label: Callable[[str], str] | None = None) -> CapError:
    """The capdsl error for a Spark failure: memory (E0925) or a lost driver, the interpreter's
    error for a failure of the compiled `query` (engine.translate), else E0922 with one line."""
    text, gone = message(exc)
    where = f" while {doing}" if doing else ""
    if isinstance(exc, MemoryError):
        return BackendError(error("E0925", f"the Python process ran out of memory{where} (collecting Spark's "
                                           "result)", hint=_FEWER.removeprefix("or ")))
    if gone or _lost(exc, text):
        return BackendError(error("E0925", f"the connection to the Spark driver was lost{where}: its JVM stopped, "
                                           "most often because it ran out of memory", hint=DRIVER_MEMORY_HINT))
    if _RESULT_SIZE.search(text):
        return BackendError(error("E0925", f"the result is larger than the Spark driver may collect{where} "
                                           f"({summary(text)})",
                                  hint="raise spark.driver.maxResultSize (and spark.driver.memory with it), "
                                       + _FEWER))
    if _OUT_OF_MEMORY.search(text):
        cause = summary(text)
        if _IN_EXECUTOR.search(text) and not _local(spark):
            return BackendError(error("E0925", f"Spark executors ran out of memory{where} ({cause})",
                                      hint="give the executors more memory (spark.executor.memory, "
                                           "spark.executor.memoryOverhead) or more, smaller tasks "
                                           "(spark.sql.shuffle.partitions), " + _FEWER))
        return BackendError(error("E0925", f"the Spark driver ran out of memory{where} ({cause})",
                                  hint=DRIVER_MEMORY_HINT))
    if query is not None:
        found = translate(query, RuntimeError(text), member_label)
        if not (isinstance(found, BackendError) and found.code == "E0922"):
            return found  # the contract's own error (a member in no band, an overflow …)
    return BackendError(error("E0922", f"the spark engine failed{where}: {summary(text)}"))


def _start_error(master: str, exc: BaseException) -> CapError:
    """E0923 for a session that cannot start, in one line."""
    text = message(exc)[0]
    if master.startswith(("spark://", "k8s://")) and re.search(
            r"All masters are unresponsive|stopped SparkContext|Failed to connect to master", text):
        return BackendError(error("E0923", f"the spark engine cannot start: the Spark master {master} did not "
                                           "accept the application",
                                  hint="check the master URL (its web page shows it) and that the master is "
                                       "running and has workers"))
    hint = DRIVER_MEMORY_HINT if re.search(r"driver memory|OutOfMemoryError", text, re.I) else \
        "check the master URL, JAVA_HOME and PYSPARK_SUBMIT_ARGS"
    return BackendError(error("E0923", f"the spark engine cannot start: {summary(text)}", hint=hint))
