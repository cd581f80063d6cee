"""The same compiled SQL on Spark local[2] (few, batched queries: a Spark
query costs seconds). Skips with the reason when PySpark or Java is missing."""

from __future__ import annotations

import re
import socket
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from capdsl.evaluation import tree as t
from capdsl.errors import BackendError, EvalError, InputError
from capdsl.evaluation.interpret import evaluate as interpret, fix, round_to
from capdsl.evaluation.periods import parse_period
from capdsl.sql import evaluate
from capdsl.data.panel import redact_id
from capdsl.pipeline import requirements
from capdsl.sql import Options
from capdsl.sql.spark_engine import run
from sql_support import AGE, Panel, ar, c, line, mcol, pcol, pool_dividing_by_a_monthly_line, program, sum_members
from test_sql_duckdb import DIVISIONS, MODES, ROUNDING_CASES, czech_like

pytestmark = pytest.mark.spark
D = Decimal


@pytest.mark.parametrize("period", ["2011-03", "2011"])
def test_czech_like_contract_matches_the_interpreter(spark, period):
    prog, panel = czech_like()
    per = parse_period(period)
    params = {"nat": D(250)}
    got = evaluate(prog, panel.duckdb(), per, params, engine="spark", spark=spark)
    want = interpret(prog, panel.rows(), per.months, params)
    assert (got.rows, got.pools, got.installments, got.practices) == \
        (want.rows, want.pools, want.installments, want.practices)


def test_a_pool_is_evaluated_on_december_only(spark):
    """January's line is 0 and the pool divides by it: Spark's CASE must not evaluate the guarded
    division on the other months' rows (where the SQL computes pools too)."""
    prog, panel = pool_dividing_by_a_monthly_line(None)
    per = parse_period("2011")
    got = evaluate(prog, panel.duckdb(), per, {}, engine="spark", spark=spark)
    assert got.pools == interpret(prog, panel.rows(), per.months, {}).pools
    assert got.pools[0][3] == D("0.70")


def test_rounding_modes_and_division_in_one_query(spark):
    """One practice per value; one line per (quantum, mode) sums the one member's rounded value."""
    values = sorted({D(v) for v, _ in ROUNDING_CASES})
    # panel decimals hold 10 places (DECIMAL(38, 10)), so only such divisions can come from data
    divisions = [(a, b) for a, b in DIVISIONS if max(-D(a).as_tuple().exponent, -D(b).as_tuple().exponent) <= 10]
    panel = Panel(member_attrs={"x": "decimal"}, practice_attrs={"a": "decimal", "b": "decimal"})
    for i, v in enumerate(values):
        a, b = divisions[i % len(divisions)]
        panel.practice(f"P{i:02d}", a=D(a), b=D(b))
        panel.member(f"M{i}", f"P{i:02d}", date(1970, 1, 1), x=v)
    groups = [(q, m) for q in ("0.01", "1", "0.05") for m in MODES]
    lines = [line(f"r{j}", sum_members(t.Round(mcol("x"), D(q), m))) for j, (q, m) in enumerate(groups)]
    lines.append(line("div", ar("/", pcol("a"), pcol("b"))))
    prog = program(lines, quantum="0.000000000001")
    got = evaluate(prog, panel.duckdb(), parse_period("2011-03"), {}, engine="spark", spark=spark)
    amounts = {(r[0], r[2]): r[3] for r in got.rows}
    for i, v in enumerate(values):
        for j, (q, m) in enumerate(groups):
            assert amounts[(f"P{i:02d}", f"r{j}")] == round_to(v, D(q), m), (v, q, m)
        a, b = divisions[i % len(divisions)]
        assert amounts[(f"P{i:02d}", "div")] == fix(D(a) / D(b))


def test_member_in_no_band_is_the_interpreters_error(spark):
    band = t.Case(((t.Cmp("<", AGE, c(100)), c(1)),), t.Fail("E0801", "no band of 'idx' covers the value"), "idx")
    panel = Panel()
    panel.member("M1", "P1", date(1900, 1, 1))
    with pytest.raises(EvalError) as info:
        evaluate(program([line("cap", sum_members(band))]), panel.duckdb(), parse_period("2011-03"), {},
                 engine="spark", spark=spark)
    assert info.value.diagnostics[0].message == \
        "no band of 'idx' covers the value: member at row 2 (id hidden, aged 111) in practice P1"


def test_random_programs_match_the_interpreter(spark):
    """A few of the differential examples (DuckDB runs hundreds): Spark must agree too."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from test_sql_differential import PERIODS, outcome, panels, programs, small

    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(programs(), panels(), st.sampled_from(PERIODS), small)
    def check(prog, panel, period, k):
        per = parse_period(period)
        want = outcome(lambda: interpret(prog, panel.rows(), per.months, {"k": k}))
        got = outcome(lambda: evaluate(prog, panel.duckdb(), per, {"k": k}, engine="spark", spark=spark))
        if want[0] == "ok":
            assert got == want

    check()


# ───────────── tables already in the cluster: spark_engine.run and its checks ─────────────

ROOT = Path(__file__).resolve().parent.parent
MARCH = parse_period("2011-03")
TODAY = date(2020, 1, 1)
MEMBERS_DDL = "member_id STRING, practice_id STRING, birth_date DATE, enrolled_from DATE, enrolled_to DATE"
PRACTICES_DDL = "practice_id STRING, apm_participant BOOLEAN"
EVENTS_DDL = ("practice_id STRING, member_id STRING, date DATE, code STRING, points DECIMAL(12, 2), "
              "quantity DECIMAL(12, 2)")
MEASURES_DDL = "practice_id STRING, period STRING, measure STRING, value STRING"
STANDARD = "(needed by every contract (a standard column))"


@pytest.fixture(scope="module")
def pmpm():
    """A contract reading members, a practice attribute with a default, event points and a measure."""
    from capdsl.pipeline import compile_file

    return compile_file(ROOT / "contracts" / "us_pmpm.cap")[1]


def view(spark, name: str, ddl: str, rows) -> str:
    spark.createDataFrame(rows, ddl).createOrReplaceTempView(name)
    return name


def diagnostics(exc) -> list[tuple[str, str | None, str]]:
    return [(d.code, d.path, d.message) for d in exc.diagnostics]


def test_a_duplicated_member_in_a_cluster_table_is_refused_not_paid_twice(spark, pmpm):
    members = view(spark, "dup_members", MEMBERS_DDL, [("M1", "P1", date(1970, 1, 1), None, None),
                                                        ("M2", "P1", date(1980, 1, 1), None, None),
                                                        ("M2", "P1", date(1980, 1, 1), None, None)])
    with pytest.raises(InputError) as info:
        run(pmpm, spark, MARCH, {}, {"members": members}, today=TODAY)
    assert diagnostics(info.value) == [
        ("E0706", "dup_members", f"member_id {redact_id('M2')} appears 2 times"),
        ("W0718", None, "no events table was given; the contract reads events, which count as empty"),
        ("W0718", None, "no measures table was given; the contract reads measures, which count as empty")]


def test_every_check_of_the_loader_runs_on_cluster_tables(spark, pmpm):
    """One problem of each kind the loader finds across rows and tables, named by redacted member id
    or practice id (cluster tables have no row numbers), errors first, then warnings. With
    `inputs="checked"` the query reads measures as they are, so their rows are checked too."""
    born = date(1980, 1, 1)
    members = view(spark, "bad_members", MEMBERS_DDL, [
        ("M1", "P1", born, None, None), ("M2", "P1", born, None, None), ("M2", "P1", born, None, None),
        (None, "P1", born, None, None), ("M4", "P1", None, None, None), ("M5", None, born, None, None),
        ("M6", "P9", born, None, None), ("M7", "P1", date(2021, 1, 1), None, None),
        ("M8", "P1", born, date(2011, 5, 1), date(2011, 4, 1)), ("M9", "P1", date(1900, 1, 1), None, None)])
    practices = view(spark, "bad_practices", PRACTICES_DDL, [("P1", True), ("P1", False), (None, True)])
    day = date(2011, 3, 2)
    events = view(spark, "bad_events", EVENTS_DDL, [
        ("P1", "M1", day, "A", D(1), D(1)), ("P1", "M1", None, "B", D(1), D(1)), ("P8", "M1", day, "A", D(1), D(1)),
        ("P1", "M1", day, "N", D(-5), D(1)), ("P1", "M1", day, "N", D(-50), D(1)),
        ("P1", "M1", day, "Q", D(1), D(-2)), ("P1", "M99", day, "A", D(1), D(1))])
    measures = view(spark, "bad_measures", MEASURES_DDL, [
        ("P1", "2011", "quality_score", "0.9"), ("P1", "2011", "quality_score", "0.9"),
        ("P1", "2011-q4", "quality_score", "0.9"), ("P1", "2011-03", "quality_score", "90%"),
        ("P7", "2011", "quality_score", "0.5"), ("P1", "2011", "qualty_score", "1")])
    tables = {"members": members, "practices": practices, "events": events, "measures": measures}
    with pytest.raises(InputError) as info:
        run(pmpm, spark, MARCH, {}, tables, Options(row_column=None, measure_values="text"), today=TODAY)
    declared = requirements(pmpm).measures["quality_score"].needed_by
    m = lambda mid: redact_id(mid)  # noqa: E731
    assert diagnostics(info.value) == [
        ("E0705", members, f"1 row: column member_id is empty; it is required {STANDARD}"),
        ("E0705", members, f"member {m('M5')}: column practice_id is empty; it is required {STANDARD}"),
        ("E0705", members, f"member {m('M4')}: column birth_date is empty; it is required {STANDARD}"),
        ("E0706", members, f"member_id {m('M2')} appears 2 times"),
        ("E0707", members, "practice_id 'P9' (1 row) is not in the practices table bad_practices"),
        ("E0708", members, f"member {m('M7')} has a birth date after {TODAY}"),
        ("E0713", members, f"member {m('M8')} has enrolled_to before enrolled_from"),
        ("E0705", practices, f"1 row: column practice_id is empty; it is required {STANDARD}"),
        ("E0706", practices, "practice_id 'P1' appears 2 times"),
        ("E0705", events, f"1 event of practice 'P1' with code 'B': column date is empty; it is required {STANDARD}"),
        ("E0707", events, "practice_id 'P8' (1 row) is not in the practices table bad_practices"),
        ("E0709", events, "1 event of practice 'P1' with code 'Q': quantity is negative (-2)"),
        ("E0709", events, "2 events of practice 'P1' with code 'N': points is negative (-50)"),
        ("E0706", measures, "measure 'quality_score' of practice 'P1' for 2011 appears 2 times"),
        ("E0707", measures, "practice_id 'P7' (1 row) is not in the practices table bad_practices"),
        ("E0704", measures, "measure 'quality_score' of practice 'P1': '2011-q4' is not a period"),
        ("E0704", measures, f"measure 'quality_score' of practice 'P1' for 2011-03: '90%' is not a valid number "
                            f"(declared at {declared})"),
        ("W0714", members, f"member {m('M9')} is aged 110 or over on 2011-03-01"),
        ("W0715", events, f"member {m('M99')} (1 event) is not in the members table"),
        ("W0712", measures, "measure 'qualty_score' (1 row) is not declared by the contract and is ignored; "
                            "did you mean 'quality_score'?")]


def test_checked_cluster_tables_pay_what_the_loaded_files_pay(spark, pmpm, tmp_path):
    """The same panel as files through the DuckDB loader and as cluster tables (members as a Parquet
    path, without enrolment columns; events without a quantity column; a practice attribute with a
    default left NULL): the same statements and the same warnings. The loader gives missing and
    empty columns their defaults; so must `run`."""
    import duckdb

    from capdsl.data.panel import load_panel

    (tmp_path / "members.csv").write_text("member_id,practice_id,birth_date\nM1,P1,1970-05-01\nM2,P1,1900-01-01\n"
                                          "M3,P2,2011-02-10\n")
    (tmp_path / "practices.csv").write_text("practice_id,apm_participant\nP1,true\nP2,\n")
    (tmp_path / "events.csv").write_text("practice_id,member_id,date,code,points\nP1,M1,2011-03-04,DEVICE,120.5\n"
                                         "P2,M7,2011-03-09,DEVICE,30\nP2,M3,2011-03-09,SPECIALTY_DRUG,\n")
    (tmp_path / "measures.csv").write_text("practice_id,period,measure,value\nP1,2011-q4,quality_score,85%\n")
    files = {t: tmp_path / f"{t}.csv" for t in ("members", "practices", "events", "measures")}
    panel = load_panel(files, requirements(pmpm), today=TODAY, period=MARCH)
    try:
        want = evaluate(pmpm, panel.con, MARCH, {}, engine="duckdb")
        want_warnings = sorted(w.code for w in panel.warnings)
    finally:
        panel.close()
    con = duckdb.connect()
    con.execute(f"COPY (SELECT member_id, practice_id, CAST(birth_date AS DATE) AS birth_date FROM "
                f"read_csv('{files['members']}', all_varchar=true)) TO '{tmp_path / 'm.parquet'}' (FORMAT parquet)")
    practices = view(spark, "ok_practices", PRACTICES_DDL, [("P1", True), ("P2", None)])
    events = view(spark, "ok_events", "practice_id STRING, member_id STRING, date DATE, code STRING, "
                                      "points DECIMAL(12, 2)",
                  [("P1", "M1", date(2011, 3, 4), "DEVICE", D("120.5")),
                   ("P2", "M7", date(2011, 3, 9), "DEVICE", D(30)),
                   ("P2", "M3", date(2011, 3, 9), "SPECIALTY_DRUG", None)])
    measures = view(spark, "ok_measures", MEASURES_DDL, [("P1", "2011-q4", "quality_score", "85%")])
    found: list[str] = []
    got = run(pmpm, spark, MARCH, {}, {"members": str(tmp_path / "m.parquet"), "practices": practices,
                                       "events": events, "measures": measures}, today=TODAY, warnings=found)
    assert (got.rows, got.practices) == (want.rows, want.practices)
    assert sorted(re.search(r"warning\[(\w+)\]", w).group(1) for w in found) == want_warnings == ["W0714", "W0715"]


def test_cluster_tables_with_missing_or_mistyped_columns_are_refused_before_any_scan(spark, pmpm):
    members = view(spark, "typed_members", "member_id STRING, practice_id BIGINT, birth_date STRING",
                   [("M1", 1, "1970-01-01")])
    practices = view(spark, "typed_practices", "id STRING", [("P1",)])
    events = view(spark, "typed_events", "practice_id STRING, date DATE, code STRING, points DOUBLE",
                  [("P1", date(2011, 3, 1), "DEVICE", 1.5)])
    with pytest.raises(InputError) as info:
        run(pmpm, spark, MARCH, {}, {"members": members, "practices": practices, "events": events,
                                     "measures": "no_such_measures"})
    points = next(c.needed_by for c in requirements(pmpm).events if c.name == "points")
    assert diagnostics(info.value) == [
        ("E0704", members, f"column practice_id is BIGINT, not a text (STRING), needed by every contract "
                           "(a standard column)"),
        ("E0704", members, "column birth_date is STRING, not a date (DATE), needed by every contract "
                           "(a standard column)"),
        ("E0703", practices, "the practices table has no column 'practice_id' (text), needed by every contract "
                             "(a standard column)"),
        ("E0704", events, f"column points is DOUBLE, not a number (DECIMAL with at most 12 decimal places, or an "
                          f"integer type), needed by {points}; floating point is not exact"),
        ("E0701", "no_such_measures", "no such measures table: no_such_measures")]
    assert info.value.diagnostics[3].hint == \
        "cast it in a view over the table: CAST(points AS DECIMAL(38, 10)) AS points"
    with pytest.raises(InputError) as info:
        run(pmpm, spark, MARCH, {}, {"practices": practices})
    assert diagnostics(info.value) == [("E0701", None, "no members table was given")]


# ───────────── Spark's own failures: memory, an unreachable master ─────────────

# What py4j raises when the driver's heap runs out while Spark collects a result (Spark 4.0, local[2],
# --driver-memory 512m): the Java exception's text comes after py4j's "An error occurred …" line.
DRIVER_OOM = ("An error occurred while calling o48.collectToPython.\n: java.lang.OutOfMemoryError: Java heap space\n"
              "\tat org.apache.spark.sql.execution.SparkPlan$$anon$1._next(SparkPlan.scala:447)\n"
              "\tat org.apache.spark.sql.execution.SparkPlan.executeCollect(SparkPlan.scala:480)\n"
              "\tat org.apache.spark.sql.classic.Dataset.$anonfun$collectToPython$1(Dataset.scala:2143)\n")
# A standalone master that accepts the connection but never the application (Spark gives up after a minute).
NO_MASTER = ("An error occurred while calling None.org.apache.spark.sql.classic.SparkSession.\n"
             ": java.lang.IllegalStateException: Cannot call methods on a stopped SparkContext.\n"
             "This stopped SparkContext was created at:\n\n"
             "org.apache.spark.api.java.JavaSparkContext.<init>(JavaSparkContext.scala:59)\n")


def java_error(text: str, readable: bool = True):
    """A py4j Java error as Spark raises it, whose text (asked of the JVM) is `text`, or cannot be
    read when the JVM is gone."""
    from py4j.protocol import Py4JJavaError, Py4JNetworkError

    class Raised(Py4JJavaError):
        def __init__(self):
            Exception.__init__(self, text.split("\n")[0])
            self.errmsg = text.split("\n")[0] + "\n"

        def __str__(self):
            if not readable:
                raise Py4JNetworkError("Answer from Java side is empty")
            return text

    return Raised()


def failing_collect(monkeypatch, spark, exc):
    frame = type(spark.sql("SELECT 1"))
    monkeypatch.setattr(frame, "collect", lambda self: (_ for _ in ()).throw(exc))


def lost_connection():
    from py4j.protocol import Py4JError

    return Py4JError("An error occurred while calling o48.collectToPython")


@pytest.mark.parametrize("make, said", [
    (lambda: java_error(DRIVER_OOM), "the Spark driver ran out of memory (OutOfMemoryError: Java heap space)"),
    (lambda: java_error(DRIVER_OOM, readable=False), "the connection to the Spark driver was lost: its JVM "
                                                     "stopped, most often because it ran out of memory"),
    (lost_connection, "the connection to the Spark driver was lost: its JVM stopped, most often because it ran "
                      "out of memory")])
def test_a_driver_out_of_memory_says_so_and_how_to_fix_it(spark, pmpm, monkeypatch, make, said):
    members = view(spark, "oom_members", MEMBERS_DDL, [("M1", "P1", date(1970, 1, 1), None, None)])
    failing_collect(monkeypatch, spark, make())
    with pytest.raises(BackendError) as info:
        run(pmpm, spark, MARCH, {}, {"members": members}, checks=False, warnings=[])
    d = info.value.diagnostics[0]
    assert (d.code, d.message) == ("E0925", said)
    assert "spark.driver.memory" in d.hint and "fewer practices per run" in d.hint
    with pytest.raises(BackendError) as info:  # the checks' queries too
        run(pmpm, spark, MARCH, {}, {"members": members}, warnings=[])
    assert info.value.code == "E0925" and "while checking the tables" in info.value.diagnostics[0].message


def test_an_executor_out_of_memory_on_a_cluster_names_the_executors(monkeypatch):
    from capdsl.sql.spark_engine import spark_error

    text = ("An error occurred while calling o91.collectToPython.\n: org.apache.spark.SparkException: Job aborted "
            "due to stage failure: Task 3 in stage 5.0 failed 4 times, most recent failure: Lost task 3.3 in stage "
            "5.0 (TID 20) (10.0.0.7 executor 2): java.lang.OutOfMemoryError: Java heap space\n")

    class Cluster:
        class sparkContext:
            master = "spark://head:7077"

    found = spark_error(java_error(text), Cluster())
    assert found.code == "E0925" and found.diagnostics[0].message.startswith("Spark executors ran out of memory")
    assert "spark.executor.memory" in found.diagnostics[0].hint


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_master_is_one_line_before_any_jvm_starts(tmp_path):
    from click.testing import CliRunner

    from capdsl.tools.cli import main

    port = closed_port()
    examples = ROOT / "examples"
    result = CliRunner().invoke(main, ["eval", str(ROOT / "contracts" / "us_pmpm.cap"),
                                       "--members", str(examples / "members.csv"), "--period", "2011-03",
                                       "--engine", "spark", "--master", f"spark://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert f"error[E0923]: the spark engine cannot start: the Spark master spark://127.0.0.1:{port} cannot be " \
           f"reached (127.0.0.1:{port}: connection refused)" in result.output
    assert "Traceback" not in result.output and "\tat " not in result.output


def test_a_master_that_does_not_take_the_application_is_one_line(monkeypatch):
    from pyspark.sql import SparkSession

    from capdsl.sql import spark_engine

    monkeypatch.setattr(spark_engine, "unreachable", lambda master: None)  # it answers …
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", lambda self: (_ for _ in ()).throw(
        java_error(NO_MASTER)))  # … and Spark gives up on it
    with pytest.raises(BackendError) as info:
        spark_engine.spark_session("spark://head:7077")
    assert (info.value.code, info.value.diagnostics[0].message) == (
        "E0923", "the spark engine cannot start: the Spark master spark://head:7077 did not accept the application")


@pytest.mark.parametrize("period", ["2011-Q1", "2011"])
def test_payment_terms_of_language_v2_match_the_interpreter(spark, period):
    """Quarter-start lists, a quarterly fee, twelfths of a yearly rate, a member's own events, a pool paid
    monthly and settlements (tests/test_payment_terms.py)."""
    from test_payment_terms import v2_program_and_panel

    prog, panel = v2_program_and_panel()
    per = parse_period(period)
    got = evaluate(prog, panel.duckdb(), per, {}, engine="spark", spark=spark)
    want = interpret(prog, panel.rows(), per.months, {})
    assert (got.rows, got.pools, got.installments) == (want.rows, want.pools, want.installments)
    assert any(row[2] == "stop_loss" and row[3] == D("480.00") for row in want.rows) == (period == "2011")


def test_the_driver_capdsl_starts_logs_errors_only(spark):
    """Spark's start-up warnings and its default profile's banner stay off the user's terminal:
    the JVM capdsl starts reads capdsl's log4j2 settings (errors only, on stderr)."""
    from capdsl.sql.spark_engine import QUIET_LOG

    assert spark.sparkContext._jvm.System.getProperty("log4j2.configurationFile") == QUIET_LOG.as_uri()
    assert "rootLogger.level = error" in QUIET_LOG.read_text(encoding="utf-8")
