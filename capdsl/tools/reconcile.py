"""`capdsl reconcile`: what a contract says a practice is owed (contract × panel) against what a
payer paid (a remittance), per practice, month and line, and — where the remittance is per member —
per member and month, each discrepancy with its reason.

The expected amounts are the statements' (any engine); a member's expected amount is the sum of its
shares of the attributable lines (`capdsl.evaluation.shares`; computed by the SQL query of
`capdsl.sql.shares` on DuckDB and Spark, by the interpreter with `--engine python`). The comparison
itself is SQL over the panel's DuckDB connection: the expected rows, the shares and the remittance
are tables there, so a national panel's member-months are never looped over in Python.

A difference within the tolerance (default 0.00) is *matched*; less paid than expected is
*underpaid*, more is *overpaid*; a payment the contract has no amount for (a practice not on the
panel, a line the contract does not have, a month outside the period, a member not counted) is
*unexplained*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from capdsl.data.panel import Panel
from capdsl.data.read import fetch_all
from capdsl.data.remittance import TABLE as REMITTANCE
from capdsl.evaluation.statements import Result

STATUSES = ("matched", "underpaid", "overpaid", "unexplained")


@dataclass(slots=True)
class Discrepancy:
    """One compared amount: a practice's month (line "total", or a line the remittance itemises), or a
    member's month (`member_id` set). `difference` = paid − expected."""

    level: str  # practice | line | member
    practice_id: str
    month: str
    line: str
    expected: Decimal | None
    paid: Decimal | None
    difference: Decimal
    status: str
    reason: str
    member_id: str | None = None
    label: str | None = None
    age: int | None = None
    reference: str | None = None


@dataclass(slots=True)
class Reconciliation:
    contract: str
    path: str
    period: str
    currency: str
    tolerance: Decimal
    engine: str
    rows: list[Discrepancy] = field(default_factory=list)  # the discrepancies, or (`everything`) every row
    attributable: tuple[str, ...] = ()  # the lines reconciled per member
    warnings: list[str] = field(default_factory=list)
    #: per level and status: how many compared amounts, and their differences' sum (of every row)
    summary: dict[str, dict[str, list]] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, list]]:
        return self.summary

    @property
    def discrepancies(self) -> list[Discrepancy]:
        return [r for r in self.rows if r.status != "matched"]


def _expected_rows(result: Result) -> list[tuple]:
    """(practice_id, month_start, line, label, amount, applied) per practice, reported month and line."""
    labels = {line.id: line.label for st in result.statements for line in st.lines}
    rows = []
    for st in result.statements:
        for month in st.months or ():
            start = date.fromisoformat(month.month + "-01")
            for line in month.lines:
                rows.append((st.practice_id, start, line.id, labels.get(line.id, line.id), line.amount,
                             bool(line.applied)))
    return rows


def reconcile(result: Result, panel: Panel, shares: tuple[str, list[tuple] | str] | None, tolerance: Decimal,
              path: str = "", everything: bool = False) -> Reconciliation:
    """Compare `result` (statements built with their months) with the panel's `remittance` table.
    `shares` is (the attributable lines, their share rows or the SQL that gives them) when the
    remittance has member rows, else None. The comparison is the table `compared`; its summary is
    counted there, and only the discrepancies (every row with `everything`) are read back."""
    con = panel.con
    out = Reconciliation(result.contract, path or result.path, result.period, result.currency, tolerance,
                         result.engine, warnings=list(result.warnings))
    _table(con, "expected", _expected_rows(result), EXPECTED_COLUMNS)
    tol = str(tolerance)
    months = ", ".join(f"DATE '{m}-01'" for m in result.months)
    status = (f"CASE WHEN expected IS NULL THEN 'unexplained' WHEN abs(coalesce(paid, 0) - expected) <= {tol} "
              f"THEN 'matched' WHEN coalesce(paid, 0) < expected THEN 'underpaid' ELSE 'overpaid' END")
    practice_sql = f"""
        WITH e AS (SELECT practice_id, month_start, sum(amount) AS expected FROM expected GROUP BY ALL),
        p AS (SELECT practice_id, month_start, sum(amount) AS paid, min(reference) AS reference
              FROM {REMITTANCE} GROUP BY ALL),
        j AS (SELECT coalesce(e.practice_id, p.practice_id) AS practice_id,
                     coalesce(e.month_start, p.month_start) AS month_start, e.expected, p.paid, p.reference
              FROM e FULL JOIN p ON e.practice_id = p.practice_id AND e.month_start = p.month_start)
        SELECT 'practice', j.practice_id, strftime(j.month_start, '%Y-%m'), 'total', j.expected, j.paid,
               coalesce(j.paid, 0) - coalesce(j.expected, 0), {status} AS status,
               CASE WHEN j.expected IS NOT NULL AND j.paid IS NULL THEN 'not paid'
                    WHEN j.expected IS NOT NULL THEN ''
                    WHEN j.month_start NOT IN ({months}) THEN 'paid for a month outside the period reconciled'
                    WHEN NOT EXISTS (SELECT 1 FROM expected x WHERE x.practice_id = j.practice_id)
                         THEN 'the practice is not on the panel'
                    ELSE 'nothing is owed for this month' END,
               NULL, NULL, NULL, j.reference
        FROM j"""
    line_sql = f"""
        WITH named AS (SELECT DISTINCT line FROM {REMITTANCE} WHERE line IS NOT NULL),
        itemised AS (SELECT DISTINCT practice_id, month_start FROM {REMITTANCE} WHERE line IS NOT NULL),
        e AS (SELECT practice_id, month_start, line, label, amount AS expected FROM expected
              WHERE line IN (SELECT line FROM named)
                AND (practice_id, month_start) IN (SELECT (practice_id, month_start) FROM itemised)),
        p AS (SELECT practice_id, month_start, line, sum(amount) AS paid, min(reference) AS reference
              FROM {REMITTANCE} WHERE line IS NOT NULL GROUP BY ALL),
        j AS (SELECT coalesce(e.practice_id, p.practice_id) AS practice_id,
                     coalesce(e.month_start, p.month_start) AS month_start, coalesce(e.line, p.line) AS line,
                     e.label, e.expected, p.paid, p.reference
              FROM e FULL JOIN p ON e.practice_id = p.practice_id AND e.month_start = p.month_start
                                AND e.line = p.line)
        SELECT 'line', j.practice_id, strftime(j.month_start, '%Y-%m'), j.line, j.expected, j.paid,
               coalesce(j.paid, 0) - coalesce(j.expected, 0), {status} AS status,
               CASE WHEN j.expected IS NOT NULL AND j.paid IS NULL THEN 'not paid'
                    WHEN j.expected IS NOT NULL THEN ''
                    WHEN NOT EXISTS (SELECT 1 FROM expected x WHERE x.line = j.line)
                         THEN 'the contract has no line ' || j.line
                    ELSE 'nothing is owed for this line and month' END,
               NULL, j.label, NULL, j.reference
        FROM j"""
    parts = [practice_sql, line_sql] + ([_member_sql(panel, shares, status, out)] if shares is not None else [])
    names = "level, practice_id, month, line, expected, paid, diff, status, reason, member_id, label, age, reference"
    con.execute("CREATE OR REPLACE TEMP TABLE compared AS " + " UNION ALL ".join(
        f"SELECT {k} AS ord, * FROM ({sql}) AS part({names})" for k, sql in enumerate(parts)))
    for level, st, n, total in fetch_all(con, "SELECT level, status, count(*), sum(diff) FROM compared GROUP BY ALL"):
        out.summary.setdefault(level, {s: [0, Decimal(0)] for s in STATUSES})[st] = [n, _amount(total)]
    where = "" if everything else "WHERE status <> 'matched'"
    found = fetch_all(con, f"SELECT {names} FROM compared {where} ORDER BY ord, practice_id, month, line, "
                                f"member_id")
    out.rows = [Discrepancy(level, pid, month, line, _amount(exp_), _amount(paid), _amount(diff) or Decimal("0.00"),
                            st, reason, member_id=mid, label=label, age=age, reference=ref)
                for level, pid, month, line, exp_, paid, diff, st, reason, mid, label, age, ref in found]
    return out


EXPECTED_COLUMNS = (("practice_id", "VARCHAR"), ("month_start", "DATE"), ("line", "VARCHAR"), ("label", "VARCHAR"),
                    ("amount", "DECIMAL(38, 12)"), ("applied", "BOOLEAN"))
SHARE_COLUMNS = (("practice_id", "VARCHAR"), ("member_id", "VARCHAR"), ("month_start", "DATE"), ("line", "VARCHAR"),
                 ("share", "DECIMAL(38, 12)"), ("age", "INTEGER"))


def _empty(columns) -> str:
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in columns) + " LIMIT 0"


def _table(con, name: str, rows: list[tuple], columns) -> None:
    """`rows` as the temporary table `name`, handed to DuckDB as one Arrow table (a row at a time is slow)."""
    import pyarrow as pa

    types = {"VARCHAR": pa.string(), "DATE": pa.date32(), "BOOLEAN": pa.bool_(), "INTEGER": pa.int32(),
             "DECIMAL(38, 12)": pa.decimal128(38, 12)}
    arrays = [pa.array([r[i] for r in rows], type=types[t]) for i, (_, t) in enumerate(columns)]
    con.register(f"{name}_rows", pa.table(arrays, names=[n for n, _ in columns]))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_rows")
    con.unregister(f"{name}_rows")


def _amount(value) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(Decimal("0.01"))


def _member_sql(panel: Panel, shares, status: str, out: Reconciliation) -> str:
    con = panel.con
    lines, source = shares
    out.attributable = tuple(lines)
    if isinstance(source, str):
        con.execute(f"CREATE OR REPLACE TEMP TABLE shares AS {source}" if source else
                    "CREATE OR REPLACE TEMP TABLE shares AS SELECT * FROM (" + _empty(SHARE_COLUMNS) + ")")
    else:
        _table(con, "shares", source, SHARE_COLUMNS)
    attributable = ", ".join(f"'{name}'" for name in lines) or "NULL"
    # Member rows of a line without member shares are compared with the line, per practice, only.
    # The reasons are written for the discrepancies only: a national panel's matched member-months
    # then cost a sum and a join, not a string each.
    sql = f"""
        WITH s AS (SELECT s.practice_id, s.member_id, s.month_start,
                          sum(CASE WHEN e.applied THEN s.share ELSE 0 END) AS expected, max(s.age) AS age
                   FROM shares s JOIN expected e ON e.practice_id = s.practice_id
                        AND e.month_start = s.month_start AND e.line = s.line
                   GROUP BY ALL),
        p AS (SELECT practice_id, member_id, month_start, sum(amount) AS paid, min(reference) AS reference
              FROM {REMITTANCE} WHERE member_id IS NOT NULL AND (line IS NULL OR line IN ({attributable}))
              GROUP BY ALL),
        j0 AS (SELECT coalesce(s.practice_id, p.practice_id) AS practice_id, coalesce(s.member_id, p.member_id)
                      AS member_id, coalesce(s.month_start, p.month_start) AS month_start, s.expected, s.age,
                      p.paid, p.reference
               FROM s FULL JOIN p ON s.practice_id = p.practice_id AND s.member_id = p.member_id
                                 AND s.month_start = p.month_start),
        j AS MATERIALIZED (SELECT *, {status} AS status FROM j0),
        bad AS (SELECT practice_id, member_id, month_start, expected FROM j WHERE status <> 'matched'),
        parts AS (SELECT s.practice_id, s.member_id, s.month_start,
                         coalesce(string_agg(s.line || ' ' || CAST(CAST(s.share AS DECIMAL(38, 2)) AS VARCHAR),
                                             ' + ' ORDER BY s.line) FILTER (WHERE e.applied AND s.share <> 0),
                                  'nothing') AS parts
                  FROM shares s SEMI JOIN bad b ON b.practice_id = s.practice_id AND b.member_id = s.member_id
                       AND b.month_start = s.month_start
                       JOIN expected e ON e.practice_id = s.practice_id
                       AND e.month_start = s.month_start AND e.line = s.line
                  GROUP BY ALL),
        m AS (SELECT member_id, min(practice_id) AS practice_id, min(birth_date) AS birth_date,
                     min({_col(panel, "enrolled_from")}) AS enrolled_from,
                     max({_col(panel, "enrolled_to")}) AS enrolled_to
              FROM members SEMI JOIN (SELECT member_id FROM bad WHERE expected IS NULL) b
                   ON b.member_id = members.member_id
              GROUP BY member_id)
        SELECT 'member', j.practice_id, strftime(j.month_start, '%Y-%m'), NULL, j.expected, j.paid,
               coalesce(j.paid, 0) - coalesce(j.expected, 0), j.status,
               CASE WHEN j.status = 'matched' THEN ''
                    WHEN j.expected IS NOT NULL AND j.paid IS NULL THEN 'not paid; the contract gives ' || x.parts
                    WHEN j.expected IS NOT NULL THEN 'the contract gives ' || x.parts
                    WHEN m.member_id IS NULL THEN 'the member is not on the panel'
                    WHEN m.practice_id <> j.practice_id THEN 'the member is registered with ' || m.practice_id
                    WHEN m.birth_date > last_day(j.month_start) THEN 'the member is not born yet'
                    ELSE 'the member does not count in ' || strftime(j.month_start, '%Y-%m') || ' (enrolled '
                         || coalesce(CAST(m.enrolled_from AS VARCHAR), '…') || ' to '
                         || coalesce(CAST(m.enrolled_to AS VARCHAR), '…') || ')' END,
               j.member_id, NULL, j.age, j.reference
        FROM j LEFT JOIN parts x ON x.practice_id = j.practice_id AND x.member_id = j.member_id
                                AND x.month_start = j.month_start
               LEFT JOIN m ON m.member_id = j.member_id
        """
    return sql


def _spark_shares(program, period, params: dict, panel: Panel, master: str | None):
    """The member shares' query run on Spark over the panel's tables, its rows handed back as Arrow."""
    from capdsl.sql.query import Options
    from capdsl.sql.shares import shares_sql
    from capdsl.sql.spark_engine import CONF, register_panel, spark_error, spark_session

    spark = spark_session(master)
    for key, value in CONF.items():
        spark.conf.set(key, value)
    tables = register_panel(spark, panel.con)
    empty = not fetch_all(panel.con, "SELECT 1 FROM practices LIMIT 1")
    sql, lines = shares_sql(program, period, "spark", params=params, tables=tables,
                            options=Options(practices="derive" if empty else "table"))
    if not sql:
        return lines, []
    try:
        arrow = spark.sql(sql).toArrow()
    except Exception as exc:  # noqa: BLE001  (py4j and pyspark errors: capdsl's)
        raise spark_error(exc, spark, "computing the member shares") from None
    panel.con.register("shares_rows", arrow)
    return lines, "SELECT practice_id, member_id, month_start, line, CAST(share AS DECIMAL(38, 12)) AS share, " \
                  "CAST(age AS INTEGER) AS age FROM shares_rows"


def _col(panel: Panel, name: str) -> str:
    """A members column, or NULL when the panel's members table has none."""
    return name if name in panel.kinds.get("members", {}) else "CAST(NULL AS DATE)"


def run_reconcile(contract, run, remittance: str, *, tolerance: Decimal = Decimal(0), read_options=None,
                  practices: tuple[str, ...] = (), everything: bool = False) -> Reconciliation:
    """Evaluate the contract on the run's panel (statements with their months), read the remittance
    into the panel, compute the member shares where the remittance pays per member, and compare."""
    from capdsl.data.panel import parse_params
    from capdsl.data.remittance import load_remittance
    from capdsl.evaluation.periods import parse_period
    from capdsl.pipeline import CompiledContract, compiled_file, evaluate, panel_rows, warning_text

    contract = contract if isinstance(contract, CompiledContract) else compiled_file(contract)
    result, panel = evaluate(contract, run, by_month=True, practices=practices)
    try:
        warnings = load_remittance(panel, remittance, read_options)
        if practices:
            keep = ", ".join("'" + p.replace("'", "''") + "'" for p in practices)
            panel.con.execute(f"DELETE FROM {REMITTANCE} WHERE practice_id NOT IN ({keep})")
        per_member = fetch_all(panel.con, f"SELECT count(*) FROM {REMITTANCE} WHERE member_id IS NOT NULL")[0][0]
        shares = None
        if per_member:
            program = contract.tree
            period = parse_period(run.period)
            params = parse_params(list(run.assignments), run.params_file, contract.requirements())
            if run.engine == "python":
                from capdsl.evaluation.shares import evaluate_shares, line_shares

                rows = evaluate_shares(program, panel_rows(program, panel), period.months, params)
                shares = (tuple(line_shares(program)), rows)
            elif run.engine == "spark":  # the shares computed where the statements were: on Spark
                shares = _spark_shares(program, period, params, panel, run.spark_master)
            else:
                from capdsl.sql import duckdb_engine
                from capdsl.sql.shares import shares_sql

                sql, lines = shares_sql(program, period, params=params,
                                        options=duckdb_engine.panel_options(panel.con))
                shares = (lines, sql)
        out = reconcile(result, panel, shares, tolerance, everything=everything)
        out.warnings += [warning_text(w) for w in warnings]
        return out
    finally:
        panel.close()
