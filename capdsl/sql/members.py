"""The months table and the member-months, derived from the member-month rules
(`capdsl.language.builtins`: AGE_RULES, EXPOSURE_RULES, BUILTINS; `capdsl.evaluation.months` gives
them their meaning): which members count in a month, for how much, and at what age.

`member_months` runs the member-month CTE alone, so that tests can hold it against the interpreter's
`capdsl.evaluation.months`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlglot import exp

from capdsl.evaluation import tree as t
from capdsl.evaluation.months import list_day, reference_day, window
from capdsl.evaluation.periods import Period, month_end, parse_period
from capdsl.language.builtins import AGE_RULES, BUILTINS, EXPOSURE_RULES
from capdsl.sql.analysis import Analysis, analyse, member_event_columns
from capdsl.sql.dialects import dec, get, num
from capdsl.sql.emit import Emitter, Scope
from capdsl.sql.exprs import AGE, AGE_ATTR, MONTH, N, WEIGHT, alias, case, col, is_null, lit, literal_table, null, \
    paren, table_as
from capdsl.sql.gates import Gate, gate as gate_of
from capdsl.sql.inputs import input_table
from capdsl.sql.query import Options

BIRTH, ENROLLED_FROM, ENROLLED_TO = (BUILTINS[("member", n)].column for n in ("birth_date", "enrolled_from",
                                                                              "enrolled_to"))
MEMBER_ID = BUILTINS[("member", "id")].column


def reference(rule: str, month: date) -> tuple[int, int]:
    """The day ages are taken on in `month` (`months.reference_day`) as (year, month * 100 + day)."""
    day = reference_day(rule, month)
    return day.year, day.month * 100 + day.day


def windows(a: Analysis) -> tuple[str, ...]:
    """The periods (quarter, year) whose first and last days the months table carries: those of the
    member-event totals' windows (`tree.MemberEvents`; a month's are its own dates)."""
    return tuple(p for p in ("quarter", "year") if any(n.window == p for n in a.member_events))


def span(node: t.MemberEvents) -> tuple[str, str]:
    """The months table's columns holding the first and last day of a member-event total's window."""
    if node.window == "month":
        return "month_start", "month_end"
    return f"{node.window}_first", f"{node.window}_last"


def snapshot(a: Analysis) -> bool:
    """Whether the list of members is taken on a day other than each month's first (`list as of`)."""
    rule = EXPOSURE_RULES[a.program.exposure]
    return rule.counts == "first_day" and rule.period != "month"


def months_query(a: Analysis) -> exp.Expression:
    """One literal row per evaluated month: its dates, days, age reference day, measure keys, and
    where needed the list's day and the member-event windows' bounds."""
    rows = []
    extra = windows(a)
    for m in a.months:
        ref_year, ref_md = reference(a.program.age_rule, m)
        q = (m.month - 1) // 3 + 1
        row = (m, month_end(m), month_end(m).day, ref_year, ref_md,
               f"{m.year:04d}-{m.month:02d}", f"{m.year:04d}-Q{q}", f"{m.year:04d}", m.month, m in a.reported)
        row += (list_day(a.program.exposure, m),) if snapshot(a) else ()
        for period in extra:
            row += window(period, m)
        rows.append(row)
    names = ("month_start", "month_end", "days", "ref_year", "ref_md", "mkey", "qkey", "ykey", "mon", "reported")
    names += ("list_day",) if snapshot(a) else ()
    for period in extra:
        names += (f"{period}_first", f"{period}_last")
    return literal_table(rows, names)


class _Frame:
    """Fresh expressions for one member-month row: the member `m` joined to the month `mo`. With one
    month, its dates are literals, so the engine pushes the filter into the scan (Parquet row groups)."""

    def __init__(self, a: Analysis, m: str = "m", mo: str = "mo"):
        self.m, self.mo, self.single = m, mo, len(a.months) == 1
        self.first = a.months[0]
        self.exposure, self.snapshot = a.program.exposure, snapshot(a)

    def born(self):
        return col(BIRTH, self.m)

    def start(self):
        return col(ENROLLED_FROM, self.m)

    def end(self):
        return col(ENROLLED_TO, self.m)

    def ms(self):
        return lit(self.first) if self.single else col("month_start", self.mo)

    def me(self):
        return lit(month_end(self.first)) if self.single else col("month_end", self.mo)

    def day(self):
        """The day the first-day rule tests: the month's first, or the list's (`list as of`)."""
        if not self.snapshot:
            return self.ms()
        return lit(list_day(self.exposure, self.first)) if self.single else col("list_day", self.mo)


def counted(rule: str, f: _Frame) -> exp.Expression:
    """Whether a member counts in the month under the exposure rule's `counts`: from birth or
    enrolment, whichever is later, to the end of enrolment (an empty date is open)."""
    counts = EXPOSURE_RULES[rule].counts
    either = lambda *xs: exp.Paren(this=exp.or_(*xs, copy=False))  # noqa: E731
    if counts == "first_day":  # counting on the list's day: born and enrolled by it, not left before it
        return exp.and_(exp.LTE(this=f.born(), expression=f.day()),
                        either(is_null(f.start()), exp.LTE(this=f.start(), expression=f.day())),
                        either(is_null(f.end()), exp.GTE(this=f.end(), expression=f.day())), copy=False)
    if counts == "any_day":  # counting on some day: the counted days [max(born, start), end] meet the month
        return exp.and_(exp.LTE(this=f.born(), expression=f.me()),
                        either(is_null(f.start()), exp.LTE(this=f.start(), expression=f.me())),
                        either(is_null(f.end()), exp.and_(
                            exp.GTE(this=f.end(), expression=f.ms()), exp.GTE(this=f.end(), expression=f.born()),
                            either(is_null(f.start()), exp.GTE(this=f.end(), expression=f.start())),
                            copy=False)), copy=False)
    raise ValueError(f"exposure rule counts {counts!r}")


def weight(em: Emitter, f: _Frame) -> exp.Expression:
    """How much a counted member-month weighs under the exposure rule's `weight`: 1, or the share of
    the month's days counted, to 12 places (a whole month is exactly 1)."""
    rule = EXPOSURE_RULES[em.p.exposure]
    if rule.weight == "whole":
        return num(1)
    if rule.weight != "days":
        raise ValueError(f"exposure rule weight {rule.weight!r}")
    first = exp.Greatest(this=exp.Coalesce(this=f.start(), expressions=[f.born()]), expressions=[f.born(), f.ms()])
    last = exp.Least(this=exp.Coalesce(this=f.end(), expressions=[f.me()]), expressions=[f.me()])
    days = exp.Add(this=exp.Paren(this=em.d.day_diff(last, first)), expression=num(1))
    return case([(exp.EQ(this=days, expression=col("days", f.mo)), dec(num(1)))],
                em.d.fixed_div(days.copy(), col("days", f.mo), exp.Null()))


def age(a: Analysis, f: _Frame) -> exp.Expression:
    """Completed years on the age rule's reference day, never negative (a member born after it but
    counted in the month is a newborn, age 0)."""
    born = f.born
    born_md = exp.Add(this=exp.Mul(this=exp.Month(this=born()), expression=num(100)), expression=exp.Day(this=born()))
    # one month: the reference day as literals, which the engine folds (it cannot across the join)
    ref_year, ref_md = (num(v) for v in reference(a.program.age_rule, f.first)) if f.single else \
        (col("ref_year", f.mo), col("ref_md", f.mo))
    years = exp.Sub(this=exp.Sub(this=ref_year, expression=exp.Year(this=born())),
                    expression=case([(exp.LT(this=ref_md, expression=born_md), num(1))], num(0)))
    # Counting on the first day, a member is born by it, and a reference day in the month is not
    # earlier: the age cannot be negative, no clamp needed. GREATEST is written as a plain function:
    # sqlglot's portable form repeats the age for a NULL guard.
    if EXPOSURE_RULES[a.program.exposure].counts == "first_day" and AGE_RULES[a.program.age_rule].period == "month":
        return years
    return exp.Anonymous(this="GREATEST", expressions=[years, num(0)])


def mm_query(em: Emitter, totals: tuple[str, ...] | None = None, gate: Gate | None = None) -> exp.Expression:
    """Member-months: one row per member and month the member counts in, with `_age`, `_weight` and
    the member-event totals `totals` (their columns; None: all of them), a member with no events
    having 0. With `gate` (`gates.Gate`), only the members whose gate total meets one of its
    conditions: the totals passing it are joined, not left-joined."""
    a, f = em.a, _Frame(em.a)
    names = list(a.member_events.values()) if totals is None else list(totals)
    gated = a.member_events[gate.total] if gate is not None else None
    cond = counted(em.p.exposure, f)
    cols = [col("practice_id", f.m), alias(col("month_start", f.mo), MONTH)]
    if em.o.row_column:
        cols.append(col(em.o.row_column, f.m))
    cols += [col(c, f.m) for c in sorted(a.member_cols) if c != "practice_id"]
    cols += [alias(age(a, f), AGE), alias(weight(em, f), WEIGHT)]
    cols += [alias(dec(exp.Coalesce(this=col("total", name), expressions=[num(0)])), name) for name in names]
    sel = exp.select(*cols, copy=False).from_(exp.alias_(input_table(em, "members"), f.m, copy=False), copy=False)
    if f.single:
        sel = sel.join(table_as("months", f.mo), join_type="cross", copy=False).where(cond, copy=False)
    else:
        sel = sel.join(table_as("months", f.mo), on=cond, join_type="inner", copy=False)
    nodes = {name: node for node, name in a.member_events.items()}
    for name in sorted(names, key=lambda n: n != gated):  # the member's event totals of the month's windows
        on = exp.EQ(this=col(MEMBER_ID, name), expression=col(MEMBER_ID, f.m))
        if len(spans(a, nodes[name])) > 1:  # one window: every total is of it
            on = exp.and_(on, exp.EQ(this=col("window_first", name), expression=col(span(nodes[name])[0], f.mo)),
                          copy=False)
        if name == gated:
            on = exp.and_(on, paren(passes(em, gate, col("total", name))), copy=False)
        sel = sel.join(table_as(f"mev{name}", name), on=on, join_type="inner" if name == gated else "left",
                       copy=False)
    return sel


def passes(em: Emitter, gate: Gate, total: exp.Expression) -> exp.Expression:
    """Whether a total meets one of the gate's conditions."""
    ops = {">": exp.GT, ">=": exp.GTE}
    return exp.or_(*[ops[op](this=total.copy(), expression=em.ex(t.Const(c, "decimal"), Scope("member")))
                     for op, c in sorted(gate.conds)], copy=False)


@dataclass(frozen=True)
class Pass:
    """One pass over the member-months for the member sums `aggs` (sum -> its column): the CTEs
    `mm<suffix>`, `mg<suffix>` and `am<suffix>`, joining the member-event totals `totals`, and
    with `gate` only the members whose total passes it."""

    suffix: str
    aggs: dict
    totals: tuple[str, ...] = ()
    gate: Gate | None = None


def member_passes(a: Analysis, aggs: dict) -> list[Pass]:
    """The member sums split by what they read, so that the member-months are joined to the members'
    event totals only for the sums that read them: the sums reading none on the member-months alone
    (`mm`, `mg`, `am`); the sums a gate (`gates.gate`) holds, per total, on the members passing
    it (`mm_me1`, ...); the others on every member-month joined to the totals they read (`mm_ev`)."""
    plain, gated, general = {}, {}, {}
    for agg, name in aggs.items():
        if not member_event_columns(a, [agg]):
            plain[agg] = name
        elif (g := gate_of(agg)) is None:
            general[agg] = name
        else:
            gated.setdefault(a.member_events[g.total], []).append((agg, name, g))
    order = list(a.member_events.values())
    ordered = lambda read: tuple(n for n in order if n in read)  # noqa: E731
    out = [Pass("", plain)] if plain else []
    for total in ordered(gated):
        items = gated[total]
        joined = Gate(items[0][2].total, frozenset().union(*(g.conds for _, _, g in items)))
        out.append(Pass(total, {agg: name for agg, name, _ in items},
                        ordered(member_event_columns(a, [agg for agg, _, _ in items])), joined))
    if general:
        out.append(Pass("_ev", general, ordered(member_event_columns(a, general))))
    return out


def spans(a: Analysis, node: t.MemberEvents) -> list[tuple[date, date]]:
    """The windows (first and last day) of a member-event total that contain an evaluated month."""
    return sorted({window(node.window, m) for m in a.months})


def member_events_query(em: Emitter, node: t.MemberEvents) -> exp.Expression:
    """A member's own events (`tree.MemberEvents`) added up per member and window (month, quarter or
    year) containing an evaluated month, keyed by the window's first day: one row per member with
    events there. The months of a window share its total, so a year's events are read once, not once
    per month. With one window, its dates are literals (the engine filters the scan by them)."""
    e, mo = "e", "mo"
    date_col, member_col = BUILTINS[("event", "date")].column, BUILTINS[("event", "member")].column
    scope = Scope("event", row=e)
    value = col("quantity", e) if node.kind == "count" else dec(em.ex(node.expr, scope))
    where = exp.Not(this=is_null(col(member_col, e)))
    if node.where is not None:
        where = exp.and_(where, paren(em.ex(node.where, scope)), copy=False)
    events = exp.alias_(input_table(em, "events"), e, copy=False)
    found = spans(em.a, node)
    if len(found) == 1:
        (lo, hi), = found
        within = exp.and_(exp.GTE(this=col(date_col, e), expression=lit(lo)),
                          exp.LTE(this=col(date_col, e), expression=lit(hi)), copy=False)
        return exp.select(alias(col(member_col, e), MEMBER_ID), alias(lit(lo), "window_first"),
                          alias(dec(exp.Sum(this=value)), "total"), copy=False).from_(events, copy=False).where(
            exp.and_(within, where, copy=False), copy=False).group_by(col(member_col, e), copy=False)
    first, last = span(node)
    bounds = exp.select(col(first), col(last), copy=False).from_("months", copy=False).distinct(copy=False)
    cond = exp.and_(exp.GTE(this=col(date_col, e), expression=col(first, mo)),
                    exp.LTE(this=col(date_col, e), expression=col(last, mo)), copy=False)
    return exp.select(alias(col(member_col, e), MEMBER_ID), alias(col(first, mo), "window_first"),
                      alias(dec(exp.Sum(this=value)), "total"), copy=False).from_(events, copy=False).join(
        exp.alias_(exp.Subquery(this=bounds), mo, copy=False), on=cond, join_type="inner", copy=False).where(
        where, copy=False).group_by(col(member_col, e), col(first, mo), copy=False)


def mm_null(a: Analysis, name: str) -> exp.Expression:
    """A typed NULL for a member-month column a group does not keep."""
    if name == AGE:
        return null("integer")
    if name == WEIGHT or name in a.member_events.values():
        return dec(exp.Null())
    return null(a.member_cols[name])


def mg_query(em: Emitter, source: str = "mm", totals: tuple[str, ...] | None = None) -> exp.Expression:
    """Member-months (`source`, with the member-event totals `totals`; None: all) grouped by
    everything an expression can read (practice, month, age, weight, member columns, totals), with
    the group's size `_n`: each aggregate's expression is then computed once per group, as the
    interpreter does. Σ over a group of n equal values is exactly n × value."""
    a, row = em.a, em.o.row_column
    totals = tuple(a.member_events.values()) if totals is None else totals
    names = [AGE, WEIGHT] + [c for c in sorted(a.member_cols) if c != "practice_id"] + list(totals)
    if not a.grouped:
        # no year-only months: grouping costs about what it saves, so each member-month is its own group
        return exp.select(exp.Star(), alias(num(1), N), copy=False).from_(source, copy=False)

    def grouped(read: set[str], where: exp.Expression | None, month: date | None = None) -> exp.Expression:
        """Grouped by practice, month and `read`; with `month`, not by month: on that month's row."""
        keys = [col("practice_id")] + ([col(MONTH)] if month is None else []) + [col(c) for c in names if c in read]
        outs = [col(c) if c in read else alias(mm_null(a, c), c) for c in names]
        outs.append(alias(exp.Count(this=exp.Star()), N))
        if row:  # the first row of the group names it in error messages
            outs.append(alias(exp.Min(this=col(row)), row))
        sel = exp.select(col("practice_id"), col(MONTH) if month is None else alias(lit(month), MONTH), *outs,
                         copy=False).from_(source, copy=False)
        return (sel.where(where, copy=False) if where is not None else sel).group_by(*keys, copy=False)

    def each(month: exp.Expression, where: exp.Expression | None) -> exp.Expression:
        """Each member-month its own group (Dialect.groups_member_months false: Spark)."""
        outs = [col(c) for c in names] + [alias(num(1), N)] + ([col(row)] if row else [])
        sel = exp.select(col("practice_id"), alias(month, MONTH), *outs, copy=False).from_(source, copy=False)
        return sel.where(where, copy=False) if where is not None else sel

    # months read only for the pools' year sums: grouped by just what those aggregates read,
    # and with `spread` (analysis.spreads_year) not by month: their sum lands on the first such month
    reported = exp.In(this=col(MONTH), expressions=[lit(m) for m in a.reported])
    year_read = {WEIGHT} | {AGE if n.name == AGE_ATTR else n.name for agg in a.year_aggs for n in t.walk(agg)
                            if isinstance(n, t.Col) and n.table == "member"} | (member_event_columns(a, a.year_aggs) & set(totals))
    first = next(m for m in a.months if m not in a.reported) if a.spread else None
    if a.spread and not em.d.groups_member_months:
        # one pass, as a hand-written query: the other months' rows are moved onto the first
        # such month, and the aggregates' `_month_start IN reported` guards still hold
        return each(case([(reported, col(MONTH))], lit(first)), None)
    rows = grouped(set(names), reported) if em.d.groups_member_months else each(col(MONTH), reported)
    return exp.union(rows, grouped(year_read, exp.Not(this=reported.copy()), first), distinct=False, copy=False)


def member_months(program: t.Program, con, period: Period | str, options: Options | None = None) -> list[tuple]:
    """The member-months the SQL query counts for `program` over `period`, run alone on the DuckDB
    connection `con` of a loaded panel (or over warehouse tables with `options.inputs`): a list of
    (practice_id, member_id, month_start, age, weight), sorted. The months are those the query
    evaluates (`analysis.run_months`: the whole year when a pool installment is due); the weight is
    1 or, pro rata, the Decimal share of the month's days. It is the `mm` CTE of the compiled query,
    so a differential test can hold it against `capdsl.evaluation.months`."""
    period = period if isinstance(period, Period) else parse_period(str(period))
    a = analyse(program, period)
    a.member_cols.setdefault(MEMBER_ID, BUILTINS[("member", "id")].kind)
    em = Emitter(a, get("duckdb"), {}, options or Options())
    parts = [("months", months_query(a))]
    parts += [(f"mev{name}", member_events_query(em, node)) for node, name in a.member_events.items()]
    parts.append(("mm", mm_query(em)))
    ctes = exp.With(expressions=[exp.CTE(this=q, alias=exp.TableAlias(this=exp.to_identifier(n))) for n, q in parts])
    keys = [col("practice_id"), col(MEMBER_ID), col(MONTH)]
    query = exp.select(*keys, col(AGE), col(WEIGHT), copy=False).from_("mm", copy=False).order_by(*keys, copy=False)
    query.set("with_", ctes)
    return [tuple(r) for r in con.execute(em.d.finish(query).sql(dialect="duckdb")).fetchall()]
