"""`capdsl retro`: retroactive eligibility. A payer paid past months on the panel it had then; today's
panel has retro adds, back-dated terminations, birth-date and category corrections. For each month of
the contract's look-back (`retroactive 12 months` in its header, or `--months`) before the period,
the contract is evaluated on both panels, and what is owed — today's amount less what the panel paid
on gave — becomes an adjustment line of each practice's statement for the period, beside (unless
`--only-adjustments`) the period's own lines. Per member and month, the shares of the attributable
lines (`capdsl.evaluation.shares`) give the adjustment each member brings, with the change of its
record that explains it.

The per-member comparison is SQL over DuckDB: both panels' shares are written to Parquet files that
one connection reads, so the member-months of a large panel are streamed, not held in memory.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from capdsl.data.read import sql_string
from capdsl.errors import UsageError, error
from capdsl.evaluation.periods import parse_period
from capdsl.evaluation.statements import Line, Result, Statement

ZERO = Decimal("0.00")


@dataclass(slots=True)
class MemberAdjustment:
    practice_id: str
    member_id: str
    month: str
    paid: Decimal | None  # the share the member had on the paid panel
    owed: Decimal | None  # today's share
    adjustment: Decimal
    reason: str


@dataclass(slots=True)
class Retro:
    result: Result  # the period's statements with the adjustment lines
    window: tuple[str, str]  # the first and last month looked back at
    members: list[MemberAdjustment] = field(default_factory=list)
    member_lines: tuple[str, ...] = ()


def look_back(period_start: date, months: int) -> list[date]:
    """The `months` months before `period_start`, oldest first."""
    out = []
    y, m = period_start.year, period_start.month
    for _ in range(months):
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        out.append(date(y, m, 1))
    return out[::-1]


def _year_results(contract, run, months: list[date]):
    """Per calendar year of `months`: the statements by month, and the panel (left open)."""
    from capdsl.pipeline import evaluate

    for year in sorted({m.year for m in months}):
        result, panel = evaluate(contract, dataclasses.replace(run, period=str(year)), by_month=True)
        yield year, result, panel


def _amounts(result: Result, window: set[date]) -> dict[tuple[str, str, date], Decimal]:
    out = {}
    for st in result.statements:
        for month in st.months or ():
            start = date.fromisoformat(month.month + "-01")
            if start in window:
                for line in month.lines:
                    out[(st.practice_id, line.id, start)] = line.amount
    return out


def _write_shares(contract, panel, year: int, params: dict, window: set[date], path: str, run):
    """The panel's shares for the window's months of `year`, written as Parquet to `path` (streamed,
    not held in memory) by the run's SQL engine: DuckDB (a file), or Spark, where the statements
    were computed (a folder of part files); False when the contract has no attributable lines.
    Returns (written, the lines, what `read_parquet` reads)."""
    from capdsl.sql import duckdb_engine
    from capdsl.sql.shares import shares_sql

    period = parse_period(str(year))
    months = sorted(m for m in window if m.year == year)
    if run.engine == "spark":
        return _write_spark_shares(contract, panel, period, params, months, path, run.spark_master)
    sql, lines = shares_sql(contract.tree, period, params=params, options=duckdb_engine.panel_options(panel.con),
                            wide=True)
    if not sql:
        return False, lines, path
    panel.con.execute(f"COPY ({_window_rows(sql, lines, months)}) TO {sql_string(path)} (FORMAT parquet)")
    return True, lines, path


def _window_rows(sql: str, lines, months: list[date]) -> str:
    """A row per member-month of the window: its shares added up (what the member-month brings)."""
    share = " + ".join(f"coalesce(s{i}, 0)" for i in range(len(lines)))
    within = ", ".join(f"DATE '{m.isoformat()}'" for m in months)
    return f"SELECT practice_id, member_id, month_start, {share} AS share FROM ({sql}) WHERE month_start IN ({within})"


def _write_spark_shares(contract, panel, period, params: dict, months: list[date], path: str, master):
    from capdsl.sql.spark_engine import shares_on_spark, spark_error

    spark, sql, lines = shares_on_spark(contract.tree, period, params, panel.con, master)
    if not sql:
        return False, lines, path
    try:
        spark.sql(_window_rows(sql, lines, months)).write.mode("overwrite").parquet(path)
    except Exception as exc:  # noqa: BLE001  (py4j and pyspark errors: capdsl's)
        raise spark_error(exc, spark, "computing the member shares") from None
    return True, lines, os.path.join(path, "*.parquet")


def run_retro(contract, run, paid_files: dict, *, months: int | None = None, only_adjustments: bool = False,
              members: bool = False) -> Retro:
    """The period's statements on today's panel (`run`), with an adjustment line per practice and line
    for what the look-back months owe: today's amount less the amount on the panel of `paid_files`."""
    import duckdb

    from capdsl.data.panel import parse_params
    from capdsl.pipeline import CompiledContract, compiled_file, evaluate

    contract = contract if isinstance(contract, CompiledContract) else compiled_file(contract)
    program = contract.tree
    n = months if months is not None else program.retro_months
    if n is None:
        raise UsageError(error("E0934", "the contract does not say how far back eligibility changes are paid",
                               hint="add `retroactive 12 months` to its header, or pass --months 12"))
    if not 1 <= n <= 36:
        raise UsageError(error("E0934", f"--months {n}: look back 1 to 36 months"))
    period = parse_period(run.period)
    window = look_back(period.months[0], n)
    in_window = set(window)
    paid_run = dataclasses.replace(run, files=dict(paid_files))
    params = parse_params(list(run.assignments), run.params_file, contract.requirements())
    owed, paid = {}, {}
    # Per member, both panels' shares and members go to Parquet files (a year's shares each), which
    # one DuckDB connection then compares: a national panel's member-months are never all in memory.
    spill = tempfile.TemporaryDirectory(prefix="capdsl-retro-") if members else None
    shares: dict[str, list[str]] = {"owed": [], "paid": []}
    member_lines: tuple[str, ...] = ()
    try:
        for side, side_run, into in (("owed", run, owed), ("paid", paid_run, paid)):
            for year, result, panel in _year_results(contract, side_run, window):
                try:
                    into.update(_amounts(result, in_window))
                    if spill is not None:
                        path = os.path.join(spill.name, f"{side}_shares_{year}.parquet")
                        written, member_lines, parts = _write_shares(contract, panel, year, params, in_window,
                                                                     path, side_run)
                        if written:
                            shares[side].append(parts)
                        people = os.path.join(spill.name, f"{side}_members.parquet")
                        if not os.path.exists(people):
                            panel.con.execute(f"COPY (SELECT member_id, practice_id, birth_date, {_cols(panel)} "
                                              f"FROM members) TO {sql_string(people)} (FORMAT parquet)")
                finally:
                    panel.close()
        current, panel = evaluate(contract, run, practices=())
        panel.close()
        result = _with_adjustments(current, program, owed, paid, window, only_adjustments)
        adjustments = []
        if spill is not None and shares["owed"] and shares["paid"]:
            con = duckdb.connect()
            try:
                for side in ("owed", "paid"):
                    files = ", ".join(sql_string(f) for f in shares[side])
                    con.execute(f"CREATE VIEW {side}_shares AS SELECT * FROM read_parquet([{files}])")
                    people = sql_string(os.path.join(spill.name, f"{side}_members.parquet"))
                    con.execute(f"CREATE VIEW {side}_members AS SELECT * FROM read_parquet({people})")
                adjustments = _member_adjustments(con)
            finally:
                con.close()
    finally:
        if spill is not None:
            spill.cleanup()
    return Retro(result, (window[0].isoformat()[:7], window[-1].isoformat()[:7]), adjustments, member_lines)


def _cols(panel) -> str:
    have = panel.kinds.get("members", {})
    return ", ".join(c if c in have else f"CAST(NULL AS DATE) AS {c}" for c in ("enrolled_from", "enrolled_to"))


def _with_adjustments(current: Result, program, owed: dict, paid: dict, window: list[date],
                      only_adjustments: bool) -> Result:
    labels = {line.name: line.label for line in program.lines}
    first, last = window[0].isoformat()[:7], window[-1].isoformat()[:7]
    statements = []
    known = {st.practice_id: st for st in current.statements}
    practices = sorted(set(known) | {k[0] for k in owed} | {k[0] for k in paid})
    order = [line.name for line in program.lines if line.kind == "line"]
    for pid in practices:
        base = known.get(pid)
        lines = [] if only_adjustments or base is None else list(base.lines)
        for name in order:
            diffs = {m: owed.get((pid, name, m), ZERO) - paid.get((pid, name, m), ZERO) for m in window}
            changed = [m.isoformat()[:7] for m, d in diffs.items() if d]
            amount = sum(diffs.values(), ZERO)
            if not changed:
                continue
            note = f"{len(changed)} month{'s' if len(changed) > 1 else ''} changed: {', '.join(changed)}"
            lines.append(Line(id=f"{name}:retro", label=f"Retroactive: {labels.get(name, name)} ({first} to {last})",
                              kind="adjustment", amount=amount, note=note, source=f"{current.path}"))
        if not lines:
            continue
        total = sum((line.amount for line in lines), ZERO)
        statements.append(Statement(practice_id=pid, lines=lines, total=total))
    total = sum((st.total for st in statements), ZERO)
    return dataclasses.replace(current, statements=statements, total=total, report_total=None,
                               report_currency=None, report_rate=None)


def _member_adjustments(con) -> list[MemberAdjustment]:
    """The member-months whose shares differ between the panels, with what changed. A side's shares
    are a row per member-month (a member is on a panel once), so they are joined as they are."""
    rows = con.execute("""
        WITH j AS (SELECT coalesce(o.practice_id, p.practice_id) AS practice_id,
                          coalesce(o.member_id, p.member_id) AS member_id,
                          coalesce(o.month_start, p.month_start) AS month_start, o.share AS owed, p.share AS paid
                   FROM owed_shares o FULL JOIN paid_shares p
                        ON o.practice_id = p.practice_id AND o.member_id = p.member_id
                           AND o.month_start = p.month_start
                   WHERE coalesce(o.share, 0) <> coalesce(p.share, 0))
        SELECT j.practice_id, j.member_id, strftime(j.month_start, '%Y-%m'), j.paid, j.owed,
               coalesce(j.owed, 0) - coalesce(j.paid, 0),
               CASE WHEN b.member_id IS NULL THEN 'added since (a retroactive enrolment)'
                    WHEN n.member_id IS NULL THEN 'removed since'
                    ELSE coalesce(nullif(concat_ws('; ',
                        CASE WHEN n.practice_id IS DISTINCT FROM b.practice_id
                             THEN 'moved from practice ' || b.practice_id || ' to ' || n.practice_id END,
                        CASE WHEN n.birth_date IS DISTINCT FROM b.birth_date
                             THEN 'birth date corrected from ' || CAST(b.birth_date AS VARCHAR) || ' to '
                                  || CAST(n.birth_date AS VARCHAR) END,
                        CASE WHEN n.enrolled_from IS DISTINCT FROM b.enrolled_from
                             THEN 'enrolment start changed from ' || coalesce(CAST(b.enrolled_from AS VARCHAR), 'open')
                                  || ' to ' || coalesce(CAST(n.enrolled_from AS VARCHAR), 'open') END,
                        CASE WHEN n.enrolled_to IS DISTINCT FROM b.enrolled_to
                             THEN 'enrolment end changed from ' || coalesce(CAST(b.enrolled_to AS VARCHAR), 'open')
                                  || ' to ' || coalesce(CAST(n.enrolled_to AS VARCHAR), 'open') END), ''),
                        'another of the member''s attributes or events changed') END
        FROM j LEFT JOIN owed_members n ON n.member_id = j.member_id
               LEFT JOIN paid_members b ON b.member_id = j.member_id
        ORDER BY 1, 2, 3""").fetchall()
    q = Decimal("0.01")
    return [MemberAdjustment(pid, mid, month, None if p is None else Decimal(p).quantize(q),
                             None if o is None else Decimal(o).quantize(q), Decimal(d).quantize(q), reason)
            for pid, mid, month, p, o, d, reason in rows]

