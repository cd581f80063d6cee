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
from capdsl.data.read import fetch_all, sql_string
from capdsl.data.remittance import TABLE as REMITTANCE
from capdsl.evaluation.statements import Result

STATUSES = ("matched", "underpaid", "overpaid", "unexplained")
CENT = Decimal("0.01")
OUTSIDE = "paid for a month outside the period reconciled"


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
    # what was paid per practice, month and line, in one pass over the remittance (the practice and
    # line comparisons read this, not the file)
    con.execute(f"CREATE OR REPLACE TEMP TABLE paid_lines AS SELECT practice_id, month_start, line, "
                f"sum(amount) AS amount, min(reference) AS reference FROM {REMITTANCE} GROUP BY ALL")
    tol = str(tolerance)
    months = ", ".join(f"DATE '{m}-01'" for m in result.months)
    status = (f"CASE WHEN expected IS NULL THEN 'unexplained' WHEN abs(coalesce(paid, 0) - expected) <= {tol} "
              f"THEN 'matched' WHEN coalesce(paid, 0) < expected THEN 'underpaid' ELSE 'overpaid' END")
    practice_sql = f"""
        WITH e AS (SELECT practice_id, month_start, sum(amount) AS expected FROM expected GROUP BY ALL),
        p AS (SELECT practice_id, month_start, sum(amount) AS paid, min(reference) AS reference
              FROM paid_lines GROUP BY ALL),
        j AS (SELECT coalesce(e.practice_id, p.practice_id) AS practice_id,
                     coalesce(e.month_start, p.month_start) AS month_start, e.expected, p.paid, p.reference
              FROM e FULL JOIN p ON e.practice_id = p.practice_id AND e.month_start = p.month_start)
        SELECT 'practice', j.practice_id, strftime(j.month_start, '%Y-%m'), 'total', j.expected, j.paid,
               coalesce(j.paid, 0) - coalesce(j.expected, 0), {status} AS status,
               CASE WHEN j.expected IS NOT NULL AND j.paid IS NULL THEN 'not paid'
                    WHEN j.expected IS NOT NULL THEN ''
                    WHEN j.month_start NOT IN ({months}) THEN '{OUTSIDE}'
                    WHEN NOT EXISTS (SELECT 1 FROM expected x WHERE x.practice_id = j.practice_id)
                         THEN 'the practice is not on the panel'
                    ELSE 'nothing is owed for this month' END,
               NULL, NULL, NULL, j.reference
        FROM j"""
    line_sql = f"""
        WITH named AS (SELECT DISTINCT line FROM paid_lines WHERE line IS NOT NULL),
        itemised AS (SELECT DISTINCT practice_id, month_start FROM paid_lines WHERE line IS NOT NULL),
        e AS (SELECT practice_id, month_start, line, label, amount AS expected FROM expected
              WHERE line IN (SELECT line FROM named)
                AND (practice_id, month_start) IN (SELECT (practice_id, month_start) FROM itemised)),
        p AS (SELECT practice_id, month_start, line, amount AS paid, reference
              FROM paid_lines WHERE line IS NOT NULL),
        j AS (SELECT coalesce(e.practice_id, p.practice_id) AS practice_id,
                     coalesce(e.month_start, p.month_start) AS month_start, coalesce(e.line, p.line) AS line,
                     e.label, e.expected, p.paid, p.reference
              FROM e FULL JOIN p ON e.practice_id = p.practice_id AND e.month_start = p.month_start
                                AND e.line = p.line)
        SELECT 'line', j.practice_id, strftime(j.month_start, '%Y-%m'), j.line, j.expected, j.paid,
               coalesce(j.paid, 0) - coalesce(j.expected, 0), {status} AS status,
               CASE WHEN j.expected IS NOT NULL AND j.paid IS NULL THEN 'not paid'
                    WHEN j.expected IS NOT NULL THEN ''
                    WHEN j.month_start NOT IN ({months}) THEN '{OUTSIDE}'
                    WHEN NOT EXISTS (SELECT 1 FROM expected x WHERE x.line = j.line)
                         THEN 'the contract has no line ' || j.line
                    ELSE 'nothing is owed for this line and month' END,
               NULL, j.label, NULL, j.reference
        FROM j"""
    names = "level, practice_id, month, line, expected, paid, diff, status, reason, member_id, label, age, reference"
    parts = [practice_sql, line_sql]
    if shares is not None:
        _member_summary(con, panel, shares, status, out, everything)
        parts.append(_member_rows(panel, out.attributable, months))
    con.execute("CREATE OR REPLACE TEMP TABLE compared AS " + " UNION ALL ".join(
        f"SELECT {k} AS ord, * FROM ({sql}) AS part({names})" for k, sql in enumerate(parts)))
    counted = "SELECT level, status, count(*), sum(diff) FROM compared WHERE level <> 'member' GROUP BY ALL"
    if shares is not None:
        counted += " UNION ALL SELECT 'member', status, n, total FROM member_summary"
    for level, st, n, total in fetch_all(con, counted):
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
    """An amount in cents; one finer than a cent (a payment of 100.004) to its last digit, so that
    it does not read as a match it is not."""
    if value is None:
        return None
    exact = Decimal(value)
    cents = exact.quantize(CENT)
    return cents if cents == exact else exact.normalize()


def _member_summary(con, panel: Panel, shares, status: str, out: Reconciliation, everything: bool) -> None:
    """The member-months compared in one pass, as the table `member_summary`: per status, how many
    and their differences' sum, with the discrepancies (every row with `everything`) as a list that
    the table `member_compared` unnests. The shares come a row per member-month (`wide`, each line's
    share a column), so only the payments are grouped before the join; a payment's reference is
    carried through the join (as cheap as the sum it is grouped with, and no second pass)."""
    lines, source = shares
    out.attributable = tuple(lines)
    n = len(lines)
    cols = "".join(f", s{i}" for i in range(n))
    if isinstance(source, str):  # the wide shares query itself, inlined
        wide = source or ("SELECT CAST(NULL AS VARCHAR) AS practice_id, CAST(NULL AS VARCHAR) AS member_id, "
                          "CAST(NULL AS DATE) AS month_start, CAST(NULL AS INTEGER) AS age LIMIT 0")
    else:  # the rows of another engine, a row per member-month and line: turned to the same shape
        _table(con, "shares", source, SHARE_COLUMNS)
        per_line = "".join(f", sum(share) FILTER (WHERE line = {sql_string(name)}) AS s{i}" for i, name in enumerate(lines))
        wide = f"SELECT practice_id, member_id, month_start, max(age) AS age{per_line} FROM shares GROUP BY ALL"
    attributable = ", ".join(sql_string(name) for name in lines) or "NULL"
    flags = "".join(f", bool_or(applied) FILTER (WHERE line = {sql_string(name)}) AS ok{i}" for i, name in enumerate(lines))
    # A share counts where the practice's statement has the line for the month, and is paid where
    # the line is applied; a member-month with no such line has no expected amount.
    owed = " + ".join(f"CASE WHEN o.ok{i} THEN coalesce(sh.s{i}, 0) ELSE 0 END" for i in range(n)) or "0"
    has = " OR ".join(f"(o.ok{i} IS NOT NULL AND sh.s{i} IS NOT NULL)" for i in range(n)) or "FALSE"
    found = ("{'practice_id': practice_id, 'member_id': member_id, 'month_start': month_start, "
             "'expected': expected, 'paid': paid, 'diff': diff, 'status': status, 'age': age, "
             "'reference': reference"
             + "".join(f", 's{i}': s{i}, 'ok{i}': ok{i}" for i in range(n)) + "}")
    # Member rows of a line without member shares are compared with the line, per practice, only.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE member_summary AS
        WITH sh AS ({wide}),
        o AS (SELECT practice_id, month_start{flags} FROM expected GROUP BY ALL),
        s AS (SELECT sh.practice_id, sh.member_id, sh.month_start, CASE WHEN {has} THEN sh.age END AS age,
                     CASE WHEN {has} THEN {owed} END AS expected{"".join(f", sh.s{i}, o.ok{i}" for i in range(n))}
              FROM sh LEFT JOIN o ON o.practice_id = sh.practice_id AND o.month_start = sh.month_start),
        p AS (SELECT practice_id, member_id, month_start, sum(amount) AS paid, min(reference) AS reference
              FROM {REMITTANCE}
              WHERE member_id IS NOT NULL AND (line IS NULL OR line IN ({attributable}))
              GROUP BY practice_id, member_id, month_start),
        j AS (SELECT coalesce(s.practice_id, p.practice_id) AS practice_id, coalesce(s.member_id, p.member_id)
                     AS member_id, coalesce(s.month_start, p.month_start) AS month_start, s.expected, s.age,
                     p.paid, p.reference{cols}{"".join(f", ok{i}" for i in range(n))}
              FROM s FULL JOIN p ON s.practice_id = p.practice_id AND s.member_id = p.member_id
                                AND s.month_start = p.month_start
              WHERE s.expected IS NOT NULL OR p.paid IS NOT NULL),
        k AS (SELECT *, coalesce(paid, 0) - coalesce(expected, 0) AS diff, {status} AS status FROM j)
        SELECT status, count(*) AS n, sum(diff) AS total,
               list({found}) {"" if everything else "FILTER (WHERE status <> 'matched')"} AS found
        FROM k GROUP BY status""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE member_compared AS
        SELECT unnest(found, recursive := true) FROM member_summary WHERE found IS NOT NULL""")


def _member_rows(panel: Panel, lines: tuple[str, ...], months: str) -> str:
    """The compared member-months (`member_compared`) with their reasons: the shares the contract
    gives (each line applied, in the lines' order by name), or why it gives nothing."""
    order = sorted(range(len(lines)), key=lambda i: lines[i])
    terms = ", ".join(f"CASE WHEN b.ok{i} AND b.s{i} <> 0 THEN {sql_string(lines[i] + ' ')} || "
                      f"CAST(CAST(b.s{i} AS DECIMAL(38, 2)) AS VARCHAR) END" for i in order)
    parts = f"coalesce(NULLIF(concat_ws(' + ', {terms}), ''), 'nothing')" if lines else "'nothing'"
    return f"""
        WITH m AS (SELECT member_id, min(practice_id) AS practice_id, min(birth_date) AS birth_date,
                          min({_col(panel, "enrolled_from")}) AS enrolled_from,
                          max({_col(panel, "enrolled_to")}) AS enrolled_to
                   FROM members SEMI JOIN (SELECT member_id FROM member_compared WHERE expected IS NULL) b
                        ON b.member_id = members.member_id
                   GROUP BY member_id)
        SELECT 'member', b.practice_id, strftime(b.month_start, '%Y-%m'), NULL, b.expected, b.paid, b.diff, b.status,
               CASE WHEN b.status = 'matched' THEN ''
                    WHEN b.expected IS NOT NULL AND b.paid IS NULL THEN 'not paid; the contract gives ' || {parts}
                    WHEN b.expected IS NOT NULL THEN 'the contract gives ' || {parts}
                    WHEN b.month_start NOT IN ({months}) THEN '{OUTSIDE}'
                    WHEN m.member_id IS NULL THEN 'the member is not on the panel'
                    WHEN m.practice_id <> b.practice_id THEN 'the member is registered with ' || m.practice_id
                    WHEN m.birth_date > last_day(b.month_start) THEN 'the member is not born yet'
                    ELSE 'the member does not count in ' || strftime(b.month_start, '%Y-%m') || ' (enrolled '
                         || coalesce(CAST(m.enrolled_from AS VARCHAR), '…') || ' to '
                         || coalesce(CAST(m.enrolled_to AS VARCHAR), '…') || ')' END,
               b.member_id, NULL, b.age, b.reference
        FROM member_compared b LEFT JOIN m ON m.member_id = b.member_id
        """


def _spark_shares(program, period, params: dict, panel: Panel, master: str | None):
    """The member shares' query (`wide`) run on Spark over the panel's tables, its rows handed back as
    Arrow."""
    from capdsl.sql.spark_engine import shares_on_spark, spark_error

    spark, sql, lines = shares_on_spark(program, period, params, panel.con, master)
    if not sql:
        return lines, ""
    try:
        arrow = spark.sql(sql).toArrow()
    except Exception as exc:  # noqa: BLE001  (py4j and pyspark errors: capdsl's)
        raise spark_error(exc, spark, "computing the member shares") from None
    panel.con.register("shares_rows", arrow)
    values = "".join(f", CAST(s{i} AS DECIMAL(38, 12)) AS s{i}" for i in range(len(lines)))
    return lines, f"SELECT practice_id, member_id, month_start, CAST(age AS INTEGER) AS age{values} FROM shares_rows"


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
        warnings = load_remittance(panel, remittance, read_options, practices)
        per_member = fetch_all(panel.con, f"SELECT count(*) FROM (SELECT 1 FROM {REMITTANCE} "
                                          f"WHERE member_id IS NOT NULL LIMIT 1)")[0][0]
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
                                        options=duckdb_engine.panel_options(panel.con), wide=True)
                shares = (lines, sql)
        out = reconcile(result, panel, shares, tolerance, everything=everything)
        out.warnings += [warning_text(w) for w in warnings]
        return out
    finally:
        panel.close()
