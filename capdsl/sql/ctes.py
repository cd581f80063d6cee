"""The practice-month CTEs: the practices evaluated (`prac`), practice × month with attributes and
measures (`pm`), events with their month (`ev`), one conditional sum per aggregate over member-months
or events (`am` / `ae`), and `base`, the practice-months with their aggregates."""

from __future__ import annotations

from sqlglot import exp

from capdsl.evaluation import tree as t
from capdsl.evaluation.periods import month_end
from capdsl.language.builtins import BUILTINS, EXPOSURE_RULES
from capdsl.sql.analysis import event_months
from capdsl.sql.dialects import dec, num
from capdsl.sql.emit import Emitter, Scope
from capdsl.sql.exprs import MONTH, N, WEIGHT, alias, case, col, is_null, lit, null, paren, table_as
from capdsl.sql.inputs import RULE_COLUMNS, input_table, measure_value, source


def prac_query(em: Emitter) -> exp.Expression:
    """The practices evaluated, with their attributes `p__*`: the practices table's rows, or (options
    `practices="derive"`) the practice ids of members and events."""
    attrs = sorted(em.a.practice_cols.items())
    if em.o.practices == "derive":
        ids = exp.union(exp.select(col("practice_id"), copy=False).from_(source(em, "members"), copy=False),
                        exp.select(col("practice_id"), copy=False).from_(source(em, "events"), copy=False),
                        distinct=True, copy=False)
        return checked(em, exp.select(col("practice_id"), *[alias(null(k), f"p__{n}") for n, k in attrs],
                                      copy=False).from_(
            exp.Subquery(this=ids, alias=exp.TableAlias(this=exp.to_identifier("ids"))), copy=False))
    sel = exp.select(col("practice_id"), *[alias(col(n), f"p__{n}") for n, _ in attrs],
                     copy=False).from_(exp.alias_(input_table(em, "practices"), "_p", copy=False), copy=False)
    return checked(em, sel)


def checked(em: Emitter, sel: exp.Select) -> exp.Select:
    """With warehouse measures, `prac` stops the query on a measures row the loader would refuse."""
    if em.o.inputs != "warehouse" or not em.a.measure_uses:
        return sel
    bad = col("_bad", "mcheck")
    stop = case([(is_null(bad), exp.true())], em.raised(bad.copy(), "bool"))
    return sel.join(table_as("mcheck", "mcheck"), join_type="cross", copy=False).where(stop, copy=False)


def pm_query(em: Emitter) -> exp.Expression:
    """Practice × month: the practice's attributes, the month's columns, and each measure the program
    reads resolved for the month (`ms__<name>__m`: the month's, else the quarter's, else the year's
    value) and for the year (`ms__<name>__y`)."""
    sel = exp.select(col("practice_id", "p"), *[col(f"p__{n}", "p") for n in sorted(em.a.practice_cols)],
                     *[col(c, "mo") for c in ("month_start", "month_end", "days", "ref_year", "ref_md",
                                              "mon", "reported")], copy=False)
    sel = sel.from_(table_as("prac", "p"), copy=False).join(table_as("months", "mo"), join_type="cross", copy=False)
    for name, uses in sorted(em.a.measure_uses.items()):
        kind = sorted(uses)[0][0]
        levels = ("m", "q", "y") if any(period == "month" for _, period in uses) else ("y",)
        for lv in levels:
            table = f"ms_{lv}_{name}"
            on = exp.and_(
                exp.EQ(this=col("practice_id", table), expression=col("practice_id", "p")),
                exp.EQ(this=col("measure", table), expression=exp.Literal.string(name)),
                exp.EQ(this=col("period", table), expression=col(f"{lv}key", "mo")), copy=False)
            rows = exp.to_table("msr") if em.o.inputs == "warehouse" else source(em, "measures")
            sel = sel.join(exp.alias_(rows, table, copy=False), on=on, join_type="left", copy=False)
        if "m" in levels:
            ifs = [(exp.Not(this=is_null(col("practice_id", f"ms_{lv}_{name}"))),
                    measure_value(em, f"ms_{lv}_{name}", kind)) for lv in ("m", "q")]
            sel = sel.select(alias(case(ifs, measure_value(em, f"ms_y_{name}", kind)), f"ms__{name}__m"), copy=False)
        sel = sel.select(alias(measure_value(em, f"ms_y_{name}", kind), f"ms__{name}__y"), copy=False)
    return sel


def ev_query(em: Emitter) -> exp.Expression:
    """Events with their month: the columns the aggregates read (never `e.*`, whose names could be
    anything an author declared), `code` for error messages and `quantity` for counts."""
    e, mo = "e", "mo"
    date_col = BUILTINS[("event", "date")].column
    names = [c for c in RULE_COLUMNS["events"] if c != date_col] + ([em.o.row_column] if em.o.row_column else [])
    names += [c for c in sorted(em.a.event_cols) if c not in names]
    sel = exp.select(*[col(c, e) for c in names], alias(col("month_start", mo), MONTH),
                     copy=False).from_(exp.alias_(input_table(em, "events"), e, copy=False), copy=False)
    months = event_months(em.a)
    if len(months) == 1:  # literal dates: the engine filters the scan (Parquet row groups)
        m = months[0]
        cond = exp.and_(exp.GTE(this=col(date_col, e), expression=lit(m)),
                        exp.LTE(this=col(date_col, e), expression=lit(month_end(m))),
                        exp.EQ(this=col("month_start", mo), expression=lit(m)), copy=False)
        return sel.join(table_as("months", mo), join_type="cross", copy=False).where(cond, copy=False)
    cond = exp.and_(exp.GTE(this=col(date_col, e), expression=col("month_start", mo)),
                    exp.LTE(this=col(date_col, e), expression=col("month_end", mo)), copy=False)
    if months != em.a.months:
        cond = exp.and_(cond, col("reported", mo), copy=False)
    return sel.join(table_as("months", mo), on=cond, join_type="inner", copy=False)


def agg_query(em: Emitter, rows: str, aggs: dict, level: str) -> exp.Expression:
    """One row per practice and month of `rows` (mg or ev) with a conditional sum per aggregate;
    `aggs` maps each (factored) aggregate to its column."""
    scope = Scope(level, row=rows, pm="pm")
    months = event_months(em.a) if level == "event" else em.a.months  # the rows' months
    outs = []
    for agg, name in aggs.items():
        outs += agg_columns(em, agg, name, scope, months)
    needs_pm = any(isinstance(node, (t.Measure, t.MonthStart, t.Calendar)) or (isinstance(node, t.Col) and node.table == "practice")
                   for agg in aggs for node in t.walk(agg))
    # One month: it is a constant, so the rows are grouped by practice alone (a second hash key
    # costs a noticeable share of a large panel's member aggregate)
    single = len(months) == 1
    month = alias(lit(months[0]) if single else col(MONTH, rows), "month_start")
    sel = exp.select(col("practice_id", rows), month, *outs, copy=False).from_(rows, copy=False)
    if needs_pm:
        sel = sel.join("pm", on=exp.and_(
            exp.EQ(this=col("practice_id", "pm"), expression=col("practice_id", rows)),
            exp.EQ(this=col("month_start", "pm"), expression=col(MONTH, rows)), copy=False),
            join_type="inner", copy=False)
    if single:
        return sel.group_by(col("practice_id", rows), copy=False)
    return sel.group_by(col("practice_id", rows), col(MONTH, rows), copy=False)


def agg_columns(em: Emitter, agg: t.Agg, name: str, scope: Scope, months: tuple) -> list[exp.Expression]:
    """The sum `name` of one aggregate over the rows, and, for a sum whose failure is deferred
    (`Plan.deferred`), `fail__<name>`: the first failure a row of the sum meets, as a payload."""
    plan, rows, level = em.a.plan, scope.row, scope.level
    if name in plan.deferred:
        scope = Scope(scope.level, scope.row, scope.pm, deferred=True)
    days = EXPOSURE_RULES[em.p.exposure].weight == "days"
    where = em.ex(agg.where, scope) if agg.where is not None else None
    if agg.kind == "count":
        value = col("quantity", rows) if level == "event" else (
            dec(exp.Mul(this=col(WEIGHT, rows), expression=col(N, rows)))
            if days else col(N, rows) if em.a.grouped else None)
    else:
        value = em.ex(agg.expr, scope)
        if level == "member" and days:
            value = dec(exp.Mul(this=col(WEIGHT, rows), expression=paren(value)))
        if level == "member" and em.a.grouped and (name in plan.year_sums or em.d.groups_member_months):
            # a group of _n equal member-months (members.mg_query): exact
            value = dec(exp.Mul(this=paren(value), expression=col(N, rows)))
    guarded = name not in plan.year_sums and len(months) > len(em.a.reported)
    if guarded:
        # read only in the reported months (t.year_closure): CASE is lazy in every engine,
        # so the other months neither cost the expression nor raise its failures
        month = exp.In(this=col(MONTH, rows), expressions=[lit(m) for m in em.a.reported])
        where = exp.and_(month, paren(where), copy=False) if where is not None else month
    if value is None:  # one per member-month: a plain count
        total = exp.Count(this=exp.Star()) if where is None else exp.Sum(this=case([(where, num(1))], None))
    else:
        total = exp.Sum(this=case([(where, value)], None) if where is not None else value)
    outs = [alias(total, name)]
    if scope.deferred:
        found = []
        if agg.where is not None and (f := em.failure(agg.where, scope)) is not None:
            found.append((exp.Not(this=is_null(f)), f.copy()))
        if agg.expr is not None and agg.kind != "count" and (f := em.failure(agg.expr, scope)) is not None:
            found.append((where.copy(), f) if where is not None else (exp.true(), f))
        if guarded:
            reported = exp.In(this=col(MONTH, rows), expressions=[lit(m) for m in em.a.reported])
            found = [(exp.and_(reported.copy(), paren(c), copy=False), f) for c, f in found]
        outs.append(alias(exp.Min(this=case(found, exp.Null())), f"fail__{name}"))
    return outs


def base_query(em: Emitter, member_sums: dict[str, str], events: bool) -> exp.Expression:
    """`pm` with the aggregates `agg_*` = F × s_* (0 when a practice had no rows) and the deferred
    failures `fail__*` of their sums; `member_sums` maps each member sum to its table (`am`,
    `am_me1`, ...: `members.member_passes`), the event sums are in `ae`."""
    plan = em.a.plan
    table = lambda inner, source: member_sums[inner] if source == "members" else "ae"  # noqa: E731
    cols = [exp.Column(this=exp.Star(), table=exp.to_identifier("pm"))]
    sel = exp.select(copy=False).from_("pm", copy=False)
    for agg, name in plan.aggs.items():
        factor, inner, _ = plan.factors[agg]
        total = exp.Coalesce(this=col(inner, table(inner, agg.source)), expressions=[num(0)])
        if factor is not None:
            total = dec(exp.Mul(this=paren(em.ex(factor, Scope("practice", pm="pm"))), expression=total))
        cols.append(alias(total, name))
    for (_, source_table, _, _), inner in plan.sums.items():
        if inner in plan.deferred:
            cols.append(alias(col(f"fail__{inner}", table(inner, source_table)), f"fail__{inner}"))
    joined = list(dict.fromkeys(member_sums.values())) + (["ae"] if events else [])
    for src in joined:
        sel = sel.join(src, on=exp.and_(
            exp.EQ(this=col("practice_id", src), expression=col("practice_id", "pm")),
            exp.EQ(this=col("month_start", src), expression=col("month_start", "pm")), copy=False),
            join_type="left", copy=False)
    return sel.select(*cols, copy=False)
