"""What a program's tree asks of the query, found before any SQL is written: the months run, the
aggregates and year sums it computes once (with a practice-level factor taken out), the columns and
measures it reads, whether the pools' months can be summed per practice, and which sums keep their
failures apart until a line reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from capdsl.evaluation import tree as t
from capdsl.evaluation.months import run_plan
from capdsl.evaluation.periods import Period
from capdsl.language.builtins import BUILTINS
from capdsl.sql.exprs import AGE_ATTR, PRACTICE_ID
from capdsl.sql.kinds import numeric_type, whole_weights


def run_months(program: t.Program, period: Period) -> tuple[tuple[date, ...], tuple[int, ...]]:
    """Months to evaluate and the pool installment months due (`months.run_plan`: pools need the whole year)."""
    plan = run_plan(program, period.months)
    return plan.run, plan.due if plan.pools_due else ()


MEMBER_OF_EVENT, MEMBER_ID = BUILTINS[("event", "member")].column, BUILTINS[("member", "id")].column

# ─────────────────────────── predicates on inlined nodes ───────────────────────────

def reads_month(node: t.Node) -> bool:
    """Whether it reads something of its month (the month, a monthly measure) besides the member-month."""
    return any(isinstance(n, (t.MonthStart, t.Calendar, t.MemberEvents))
               or (isinstance(n, t.Measure) and n.period != "year") for n in t.walk(node))


def month_invariant(node: t.Node) -> bool:
    """The same in every month of a practice's year: practice-level, and reads nothing of the month."""
    return t.practice_level(node) and not reads_month(node)


def affine(node: t.Node) -> bool:
    """A sum of aggregates times month-invariant factors, plus a month-invariant term (exactly:
    `+ - *` are exact in SQL and in the interpreter; `/` and rounding are not, so not here)."""
    if isinstance(node, t.Agg) or month_invariant(node):
        return True
    if isinstance(node, t.Neg):
        return affine(node.operand)
    if isinstance(node, t.Arith) and node.op in "+-":
        return affine(node.left) and affine(node.right)
    if isinstance(node, t.Arith) and node.op == "*":
        return (month_invariant(node.left) and affine(node.right)) or (
            affine(node.left) and month_invariant(node.right))
    return False


def surely_read(node: t.Node) -> set:
    """The aggregates the interpreter evaluates whenever it evaluates `node`: not those behind a
    condition (a later `if` branch, a later `and`/`or` item, a default)."""
    out, stack = set(), [node]
    while stack:
        n = stack.pop()
        if isinstance(n, t.Agg):
            out.add(n)
        elif isinstance(n, t.Case):
            stack.append(n.whens[0][0] if n.whens else n.otherwise)
        elif isinstance(n, (t.And, t.Or)):
            stack.append(n.items[0])
        elif isinstance(n, t.Coalesce):
            stack.append(n.operand)
        else:
            stack.extend(t.children(n))
    return out


def raises(node: t.Node) -> bool:
    """May evaluating this (inlined) node stop the query: a `Fail` or a division. Not one inside a
    member's event total: that is computed, and stops the query, in its own CTE
    (`members.member_events_query`), whatever reads it."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, t.Fail) or (isinstance(n, t.Arith) and n.op == "/"):
            return True
        if not isinstance(n, t.MemberEvents):
            stack.extend(t.children(n))
    return False


def line_roots(line: t.LineDef) -> list[t.Node]:
    """The expressions of a line or pool, uninlined: amount, condition, basis and installment conditions."""
    return [x for x in (line.amount, line.applies, line.basis, *(i.when for i in line.installments))
            if x is not None]


# ─────────────────────────── the analysis ───────────────────────────

@dataclass
class Plan:
    """Columns the query computes once: aggregates and year sums, keyed by tree node."""

    aggs: dict = field(default_factory=dict)  # Agg -> column name
    years: dict = field(default_factory=dict)  # YearSum -> column name
    sums: dict = field(default_factory=dict)  # (kind, source, expr, where) -> column name of am / ae
    factors: dict = field(default_factory=dict)  # Agg -> (factor or None, its sum's column, the sum)
    year_sums: set = field(default_factory=set)  # sums some pool reads in every month
    deferred: set = field(default_factory=set)  # sums whose failures wait for a reader (emit.Scope.deferred)


@dataclass
class Analysis:
    """A program's tree as the query needs it (`analyse`). Filled once; read by every CTE builder."""

    program: t.Program
    months: tuple[date, ...]  # evaluated: the reported ones, or the whole year when a pool is due
    reported: tuple[date, ...]
    due: tuple[int, ...]  # months (1–12) whose pool installments are reported
    lines: list[t.LineDef]  # monthly lines in line order
    pools: list[t.LineDef]  # pools in line order, when an installment is due
    pool_names: frozenset
    year_lines: set  # monthly lines the pools read in every month
    year_aggs: set  # aggregates the pools read in every month, inlined
    plan: Plan = field(default_factory=Plan)
    practice_cols: dict = field(default_factory=dict)  # name -> kind
    member_cols: dict = field(default_factory=dict)
    event_cols: dict = field(default_factory=dict)
    measure_uses: dict = field(default_factory=dict)  # name -> {(kind, period)}
    spread: bool = False  # see spreads_year
    member_events: dict = field(default_factory=dict)  # MemberEvents (inlined) -> its member-month column
    inlined: dict = field(default_factory=dict)  # id(node) -> (node, inlined node)

    @property
    def grouped(self) -> bool:
        """Whether some months are read only for the pools' year sums (see members.mg_query)."""
        return len(self.months) > len(self.reported)

    def tree(self, node: t.Node | None) -> t.Node | None:
        """`node` with its references inlined, computed once per node."""
        if node is None:
            return None
        key = id(node)
        if key not in self.inlined:
            self.inlined[key] = (node, t.inline(node, self.program))
        return self.inlined[key][1]


def analyse(program: t.Program, period: Period) -> Analysis:
    """The analysis of `program` run over `period`."""
    run = run_plan(program, period.months)
    due = run.due if run.pools_due else ()
    ordered = [program.line(n) for n in program.line_order]
    year_lines, year_aggs = t.year_closure(program)
    a = Analysis(program, run.run, run.reported, due,
                 lines=[line for line in ordered if line.kind == "line"],
                 pools=[line for line in ordered if line.kind == "pool"] if due else [],
                 pool_names=frozenset(line.name for line in program.lines if line.kind == "pool"),
                 year_lines=year_lines, year_aggs={t.inline(x, program) for x in year_aggs})
    collect(a)
    defer_failures(a)
    a.spread = spreads_year(a)
    return a


def collect(a: Analysis) -> None:
    """Aggregates, year sums and the columns and measures the program reads."""
    roots = [a.tree(x) for line in a.lines + a.pools for x in line_roots(line)]
    for root in roots:
        for node in t.walk(root):
            if isinstance(node, t.Agg) and node not in a.plan.aggs:
                a.plan.aggs[node] = f"agg_{len(a.plan.aggs) + 1}"
                factor, inner = factor_out(node, a.program.exposure)
                key = (inner.kind, inner.source, inner.expr, inner.where)
                name = a.plan.sums.setdefault(key, f"s_{len(a.plan.sums) + 1}")
                a.plan.factors[node] = (factor, name, inner)
                if node in a.year_aggs:
                    a.plan.year_sums.add(name)
            elif isinstance(node, t.MemberEvents) and node not in a.member_events:
                a.member_events[node] = f"_me{len(a.member_events) + 1}"
                a.event_cols.setdefault(MEMBER_OF_EVENT, "text")  # the events are matched on it,
                a.member_cols.setdefault(MEMBER_ID, "text")  # and the member on its id
            elif isinstance(node, t.YearSum) and node not in a.plan.years:
                a.plan.years[node] = f"ys_{len(a.plan.years) + 1}"
            elif isinstance(node, t.Col):
                if node.table == "practice" and node.name != PRACTICE_ID:
                    a.practice_cols[node.name] = node.kind
                elif node.table == "member" and node.name != AGE_ATTR:
                    a.member_cols[node.name] = node.kind
                elif node.table == "event":
                    a.event_cols[node.name] = node.kind
            elif isinstance(node, t.Measure):
                a.measure_uses.setdefault(node.name, set()).add((node.kind, node.period))


def defer_failures(a: Analysis) -> None:
    """A sum that may fail and that no reader is sure to evaluate defers its failure: its rows sum
    without raising, and the query raises only where a line reads the aggregate, as the interpreter
    evaluates an aggregate on first use."""
    sure = set()
    for line in a.lines:
        for x in ((line.applies, line.basis) if line.applies is not None else (line.amount, line.basis)):
            sure |= surely_read(a.tree(x)) if x is not None else set()
    for node in a.plan.years:
        sure |= surely_read(node.operand)
    for _, name, inner in a.plan.factors.values():
        if raises(inner):
            a.plan.deferred.add(name)
    for agg in sure:
        a.plan.deferred.discard(a.plan.factors[agg][1])


def factor_out(agg: t.Agg, exposure: str) -> tuple[t.Node | None, t.Agg]:
    """Σ (F × v) over members = F × Σ v when F is the same for every member of the practice-month
    (a tier, a rate): F is then computed once per practice-month, and the rows sum v alone, a
    narrow decimal (Spark adds those as longs, and multiplies any decimal as BigDecimal). Exact
    when F × v needs at most 12 places (the types are known and small): then so does F × Σ v.
    Not with weights of a share of the month (w × F × v is rounded per row), nor when F may stop
    the query (a practice with no members in the month must not evaluate it)."""
    expr = agg.expr
    if (agg.kind != "sum" or agg.source != "members" or not whole_weights(exposure)
            or not isinstance(expr, t.Arith) or expr.op != "*" or numeric_type(expr) is None):
        return None, agg
    for factor, rest in ((expr.left, expr.right), (expr.right, expr.left)):
        if t.practice_level(factor) and not raises(factor):
            inner_factor, inner = factor_out(t.Agg("sum", "members", rest, agg.where, agg.origin), exposure)
            if inner_factor is not None:
                factor = t.Arith("*", factor, inner_factor)
            return factor, inner
    return None, agg


def spreads_year(a: Analysis) -> bool:
    """Whether the member-months read only for the pools can be added up per practice, onto one
    month's row, instead of per month (a hand-written query's GROUP BY practice: a second key is
    costly on Spark at scale). Exact when every year sum is affine in its aggregates with
    coefficients that are the same in every month, Σ_m (F × a_m + G) = F × Σ_m a_m + 12 G, so
    the sum does not care which month's row holds which part of Σ_m a_m; and when the member
    aggregates read nothing of the month but the member-month itself (age, weight, columns)."""
    if not a.grouped or a.year_lines:
        return False
    if not all(affine(node.operand) for node in a.plan.years):
        return False
    return not any(reads_month(agg) for agg in a.year_aggs if agg.source == "members")


def member_event_columns(a: Analysis, aggs) -> set[str]:
    """The member-month columns of the member-event totals the aggregates read."""
    return {a.member_events[n] for agg in aggs for n in t.walk(agg) if isinstance(n, t.MemberEvents)}


def event_months(a: Analysis) -> tuple[date, ...]:
    """The months whose events are read: the reported ones, unless a pool sums events over the year."""
    event_sums = {n for (_, source, _, _), n in a.plan.sums.items() if source == "events"}
    return a.months if event_sums & a.plan.year_sums else a.reported
