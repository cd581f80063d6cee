"""The reference interpreter: exact `Decimal` evaluation of a `tree.Program`.

It is the semantic oracle every other backend is tested against, so it is
written for clarity first; it is fast enough because member- and
event-level values are memoised per practice-month on the columns they
read (a practice of 1,500 members has a few hundred distinct
(age, flags) combinations, not 1,500).

Input rows come from `panel.Panel` accessors (typed Python values) and are
walked practice-month by practice-month through `capdsl.evaluation.months`
(which months run, who counts, at what age and weight); output is a
`MonthlyResult` that `capdsl.evaluation.statements` turns into statements.
With a `Tracer`, the same evaluator records every step for `capdsl explain`.

The public pieces other tools evaluate with: `Interpreter` (`ev`,
`eval_practice_level`, `member_value`), `Env` (entered with a
`months.PracticeMonth`) and `Failure` (a `tree.Fail` reached).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from capdsl.evaluation import tree as t
from capdsl.evaluation.values import shown
from capdsl.evaluation.amounts import CONTEXT, MODES, ONE, Q12, ZERO, MonthlyResult, fix, quantum_places, round_to, rounder  # noqa: F401
from capdsl.errors import EvalError, error
# Rows, the interpreter's input, is defined with the frames built from it and importable from here too
from capdsl.evaluation.months import (Frames, PracticeMonth, Rows, completed_years, member_events_in,  # noqa: F401
                                      run_plan, visible_measure, visible_period)
from capdsl.evaluation.periods import month_end, quarter_of
from capdsl.language.builtins import month_label

# ─────────────────────────────── tracing ─────────────────────────────────

@dataclass
class Step:
    """One recorded evaluation step for `explain`."""

    kind: str  # ref | case | agg | line | round | measure | param
    name: str
    value: object
    detail: str = ""
    origin: object = None
    depth: int = 0


@dataclass
class Group:
    """Rows of an aggregate that share the columns it reads, hence one value."""

    key: dict
    weight: Decimal
    value: object
    subtotal: Decimal
    steps: list


class Tracer:
    """Records evaluation steps for `explain`, bucketed by (month, line)."""

    def __init__(self):
        self.scope: tuple = (None, None)
        self.steps: dict[tuple, list[Step]] = defaultdict(list)
        self.groups: dict[tuple, list[Group]] = {}
        self.lines: dict[tuple, tuple] = {}
        self.years: dict[tuple, tuple] = {}  # (month, id(YearSum)) → (the month's value, its steps)
        self.conditions: dict[tuple, tuple] = {}  # (pool, id(an installment's when)) → (value, its steps)
        self.installments: dict[str, list] = defaultdict(list)  # pool → (amount, paid, due) of each, in order
        self.depth = 0
        self._stack: list[list[Step]] = []

    def add(self, kind, name, value, detail="", origin=None):
        step = Step(kind, name, value, detail, origin, self.depth)
        if self._stack:
            self._stack[-1].append(step)
        else:
            self.steps[self.scope].append(step)

    def capture(self) -> list[Step]:
        bucket: list[Step] = []
        self._stack.append(bucket)
        return bucket

    def release(self) -> None:
        self._stack.pop()

    def record(self, store: dict, key, compute):
        """`compute()`, its steps kept apart in `store[key]` with its value (not in the line's steps)."""
        bucket = self.capture()
        try:
            value = compute()
        finally:
            self.release()
        store[key] = (value, bucket)
        return value


# ─────────────────────────────── evaluator ───────────────────────────────

class Env:
    """What an expression is evaluated against: the practice-month (`enter`), the member or event
    row an aggregate is at, the parameters, and the lines already computed in the month."""

    __slots__ = ("month", "practice", "member", "event", "params", "aggs", "lines", "measures", "year_level",
                 "year_values", "memo", "agg_rows", "member_events")

    def __init__(self, params):
        self.month = None
        self.practice = None
        self.member = None
        self.event = None
        self.params = params
        self.aggs = {}
        self.lines = {}
        self.measures = {}
        self.year_level = False
        self.year_values = None
        self.memo = {}
        self.agg_rows = ((), (), ())
        self.member_events = {}

    def enter(self, frame: PracticeMonth) -> None:
        """Evaluate in `frame` from now on: its rows feed the aggregates (each computed when first
        read), and no line or aggregate of another month is seen."""
        self.practice = frame.practice
        self.measures = frame.measures
        self.month = frame.month
        self.aggs = {}
        self.lines = {}
        self.memo = {}
        self.agg_rows = (frame.members, frame.weights, frame.events)
        self.member_events = frame.member_events


class Failure(Exception):
    """A `tree.Fail` reached (no band or tier entry applies): raised through the evaluation to the
    row or practice it happened at, which names it in the EvalError."""

    def __init__(self, node: t.Fail):
        self.node = node


class Interpreter:
    """Evaluates a program over Python rows. One instance per run."""

    def __init__(self, program: t.Program, params: dict, tracer: Tracer | None = None):
        self.program = program
        self.params = params
        self.tracer = tracer
        self.defs = program.definitions
        # per aggregate: the row columns it reads and how far its values can be reused
        self._agg_keys: dict[int, tuple[tuple[str, ...], str]] = {}
        self._memo: dict[tuple, dict] = {}
        self._pools = frozenset(line.name for line in program.lines if line.kind == "pool")

    # --- expression evaluation -------------------------------------------------
    def ev(self, node: t.Node, env: Env):
        cls = type(node)
        if cls is t.Const:
            return node.value
        if cls is t.Ref:
            return self._ref(node, env)
        if cls is t.Col:
            if node.table == "member":
                return env.member[node.name]
            if node.table == "event":
                return env.event[node.name]
            return env.practice[node.name]
        if cls is t.Arith:
            a = self.ev(node.left, env)
            b = self.ev(node.right, env)
            op = node.op
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return fix(CONTEXT.multiply(a, b))
            if b == 0:
                raise EvalError(error("E0803", "division by zero", node.origin,
                                      hint="guard the division with `if … then … else`"))
            return fix(CONTEXT.divide(a, b))
        if cls is t.Cmp:
            a = self.ev(node.left, env)
            b = self.ev(node.right, env)
            op = node.op
            if op == "=":
                return a == b
            if op == "!=":
                return a != b
            if op == "<":
                return a < b
            if op == "<=":
                return a <= b
            if op == ">":
                return a > b
            return a >= b
        if cls is t.Case:
            return self._case(node, env)
        if cls is t.And:
            for item in node.items:
                if not self.ev(item, env):
                    return False
            return True
        if cls is t.Or:
            for item in node.items:
                if self.ev(item, env):
                    return True
            return False
        if cls is t.Not:
            return not self.ev(node.operand, env)
        if cls is t.Neg:
            return -self.ev(node.operand, env)
        if cls is t.MinMax:
            values = [self.ev(a, env) for a in node.args]
            return min(values) if node.op == "min" else max(values)
        if cls is t.Abs:
            return abs(self.ev(node.operand, env))
        if cls is t.In:
            v = self.ev(node.operand, env)
            return any(v == self.ev(o, env) for o in node.options)
        if cls is t.Param:
            return env.params[node.name]
        if cls is t.Measure:
            return self._measure(node, env)
        if cls is t.Present:
            return self.ev(node.operand, env) is not None
        if cls is t.Coalesce:
            v = self.ev(node.operand, env)
            return self.ev(node.default, env) if v is None else v
        if cls is t.MonthStart:
            return env.month
        if cls is t.Calendar:
            return calendar_value(node.part, env.month)
        if cls is t.DateDiff:
            return date_diff(node.unit, self.ev(node.start, env), self.ev(node.end, env))
        if cls is t.Round:
            value = self.ev(node.operand, env)  # an integer (`member.age`, a count of days) rounds as a Decimal
            return round_to(Decimal(value) if isinstance(value, int) else value, node.quantum, node.mode)
        if cls is t.Agg:
            hit = env.aggs.get(id(node))
            if hit is None:  # evaluated on first use: a line that does not apply never reads its aggregates
                members, weights, events = env.agg_rows
                is_members = node.source == "members"
                hit = env.aggs[id(node)] = self.aggregate(node, members if is_members else events, env,
                                                          weights if is_members else None)
            return hit
        if cls is t.MemberEvents:
            return self._member_events(node, env)
        if cls is t.LineRef:
            if self.tracer is not None and node.name in self._pools:
                self.tracer.add("line", node.name, env.lines[node.name], "paid in the year")
            return env.lines[node.name]
        if cls is t.YearSum:
            return env.year_values[id(node)]
        if cls is t.Fail:
            raise Failure(node)
        raise EvalError(error("E0899", f"the interpreter has no rule for {cls.__name__}"))  # pragma: no cover

    def _member_events(self, node: t.MemberEvents, env: Env) -> Decimal:
        """Σ over the current member's events in the window (as `Agg` over events: a count adds
        quantities)."""
        outer = env.event
        total = ZERO
        try:
            for event in member_events_in(env.member_events.get(env.member["member_id"], ()), node.window,
                                          env.month):
                env.event = event
                try:
                    if node.where is not None and not self.ev(node.where, env):
                        continue
                    total += event["quantity"] if node.kind == "count" else self.ev(node.expr, env)
                except Failure as failure:  # the event is named, at its own practice (as the SQL backend does)
                    raise self._row_failure(failure.node, event, False, env, event.get("practice_id")) from None
        finally:
            env.event = outer
        if self.tracer is not None:
            self.tracer.add("member_events", f"{node.kind} over member events during {node.window}", total, "",
                            node.origin)
        return total

    def _ref(self, node: t.Ref, env: Env):
        definition = self.defs[node.name]
        if self.tracer is None:
            return self.ev(definition.expr, env)
        self.tracer.depth += 1
        value = self.ev(definition.expr, env)
        self.tracer.depth -= 1
        self.tracer.add("ref", node.name, value, definition.ref or "", definition.origin)
        return value

    def _case(self, node: t.Case, env: Env):
        for index, (cond, value) in enumerate(node.whens):
            if self.ev(cond, env):
                result = self.ev(value, env)
                if self.tracer is not None and node.table:
                    label = node.labels[index] if index < len(node.labels) else ""
                    self.tracer.add("case", node.table, result, label, node.origin)
                return result
        result = self.ev(node.otherwise, env)
        if self.tracer is not None and node.table:
            label = node.labels[len(node.whens)] if len(node.labels) > len(node.whens) else "otherwise"
            self.tracer.add("case", node.table, result, label, node.origin)
        return result

    def _measure(self, node: t.Measure, env: Env):
        whole_year = env.year_level or node.period == "year"
        value = visible_measure(env.measures.get(node.name), env.month, whole_year)
        if self.tracer is not None:  # the detail: the period of the row read
            self.tracer.add("measure", node.name, value,
                            visible_period(env.measures.get(node.name), env.month, whole_year) or "")
        return value

    # --- aggregates --------------------------------------------------------------
    def _agg_info(self, agg: t.Agg) -> tuple[tuple[str, ...], str]:
        """The row columns an aggregate reads (through definitions), and how widely
        a value computed for one combination of them can be reused:
        "run" (reads nothing practice- or month-specific), "practice" or "month"."""
        cached = self._agg_keys.get(id(agg))
        if cached is not None:
            return cached
        table = "member" if agg.source == "members" else "event"
        cols: set[str] = set()
        seen: set[str] = set()
        scope = "run"
        stack = [x for x in (agg.expr, agg.where) if x is not None]
        while stack:
            cur = stack.pop()
            if isinstance(cur, t.Col):
                if cur.table == table:
                    cols.add(cur.name)
                elif cur.table == "practice" and scope == "run":
                    scope = "practice"
            elif isinstance(cur, t.MemberEvents):  # the member's own total, in the month's window
                cols.add("member_id")
                scope = "month"
                continue
            elif isinstance(cur, (t.Measure, t.MonthStart, t.Calendar, t.LineRef, t.Agg)):
                scope = "month"
            elif isinstance(cur, t.Ref) and cur.name not in seen:
                seen.add(cur.name)
                stack.append(self.defs[cur.name].expr)
            stack.extend(t.children(cur))
        info = (tuple(sorted(cols)), scope)
        self._agg_keys[id(agg)] = info
        return info

    def _groups(self, key_cols: tuple[str, ...], rows: list[dict], weights: list | None, env: Env) -> dict:
        """Rows grouped by (values of key_cols, weight or quantity) → (count, first row)."""
        cache_key = (weights is None, key_cols)
        hit = env.memo.get(cache_key)
        if hit is not None:
            return hit
        groups: dict = {}
        if weights is not None:
            for row, w in zip(rows, weights):
                key = (tuple([row[c] for c in key_cols]), w)
                g = groups.get(key)
                if g is None:
                    groups[key] = [1, row]
                else:
                    g[0] += 1
        else:
            for row in rows:
                key = (tuple([row[c] for c in key_cols]), row["quantity"])
                g = groups.get(key)
                if g is None:
                    groups[key] = [1, row]
                else:
                    g[0] += 1
        env.memo[cache_key] = groups
        return groups

    def aggregate(self, agg: t.Agg, rows: list[dict], env: Env, weights: list | None) -> Decimal:
        """Σ weight × expr over rows where `where` holds.

        Rows are grouped by the columns the expression reads (and their weight),
        the value is computed once per group — and reused across practices and
        months when it cannot differ — then multiplied by the group's size.
        Σ fix(w × v) over a group of n equal (w, v) is exactly n × fix(w × v)."""
        key_cols, scope = self._agg_info(agg)
        is_members = agg.source == "members"
        slot = "member" if is_members else "event"
        scope_key = () if scope == "run" else (env.practice["practice_id"],) if scope == "practice" \
            else (env.practice["practice_id"], env.month)
        memo = self._memo.setdefault((id(agg), scope_key), {}) if self.tracer is None else {}
        tracer = self.tracer
        traced: dict = {}
        total = ZERO
        for (key, w), (count, row) in self._groups(key_cols, rows, weights if is_members else None, env).items():
            hit = memo.get(key)
            if hit is None:
                setattr(env, slot, row)
                steps = tracer.capture() if tracer is not None else None
                try:
                    ok = agg.where is None or self.ev(agg.where, env)
                    if not ok:
                        value = None
                    elif agg.kind == "count":
                        value = ONE
                    else:
                        value = self.ev(agg.expr, env)
                except Failure as failure:
                    raise self._row_failure(failure.node, row, is_members, env) from None
                finally:
                    if tracer is not None:
                        tracer.release()
                hit = (value, steps)
                memo[key] = hit
            value = hit[0]
            if value is None:
                continue
            if is_members:
                part = value if w == 1 else fix(CONTEXT.multiply(w, value))
                weight = w * count
            elif agg.kind == "count":
                part, weight = w, count  # w is the event's quantity
            else:
                part, weight = value, count
            subtotal = part * count
            total += subtotal
            if tracer is not None:
                g = traced.get(key)
                if g is None:
                    traced[key] = Group(dict(zip(key_cols, key)), weight, value, subtotal, hit[1] or [])
                else:
                    g.weight += weight
                    g.subtotal += subtotal
        setattr(env, slot, None)
        if tracer is not None:
            tracer.groups[(env.month, id(agg))] = list(traced.values())
        return total

    def _row_failure(self, node: t.Fail, row: dict, is_members: bool, env: Env,
                     practice_id: str | None = None) -> EvalError:
        who = f"member at row {row.get('_row', '?')} ({row.get('_label', 'id hidden')}, aged {row.get('age')})" \
            if is_members else f"event at row {row.get('_row', '?')} (code {row.get('code')!r})"
        practice_id = practice_id if practice_id is not None else env.practice["practice_id"]
        message = node.message
        if node.shows and is_members:
            try:
                message += f" ({shown(self.ev(v, env) for v in node.shows)})"
            except Failure:  # a value that cannot be read itself: the message names none
                pass
        return EvalError(error(node.code, f"{message}: {who} in practice {practice_id}",
                               node.origin,
                               hint="add the missing band/entry, or an `otherwise:` entry"))

    def member_value(self, agg: t.Agg, env: Env, row: dict):
        """One member's value in a member-level aggregate, before its exposure weight: None when the
        aggregate's `where` leaves it out. `env` has entered the member's practice-month."""
        env.member = row
        try:
            if agg.where is not None and not self.ev(agg.where, env):
                return None
            return ONE if agg.kind == "count" else self.ev(agg.expr, env)
        except Failure as failure:
            raise self._row_failure(failure.node, row, True, env) from None
        finally:
            env.member = None

    # --- a practice-month ------------------------------------------------------
    def eval_practice_level(self, node: t.Node, env: Env):
        try:
            return self.ev(node, env)
        except Failure as failure:
            raise EvalError(error(failure.node.code, f"{failure.node.message} (practice {env.practice['practice_id']})",
                                  failure.node.origin)) from None


def collect_aggs(program: t.Program) -> tuple[list[t.Agg], list[t.YearSum]]:
    """Every distinct Agg and YearSum node reachable from the lines (through definitions)."""
    aggs: dict[int, t.Agg] = {}
    years: dict[int, t.YearSum] = {}
    seen: set[str] = set()
    roots = []
    for line in program.lines:
        roots += [x for x in (line.amount, line.applies, line.basis) if x is not None]
        roots += [i.when for i in line.installments if i.when is not None]
    stack = list(roots)
    while stack:
        cur = stack.pop()
        if isinstance(cur, t.Agg):
            aggs.setdefault(id(cur), cur)
        elif isinstance(cur, t.YearSum):
            years.setdefault(id(cur), cur)
        elif isinstance(cur, t.Ref) and cur.name not in seen:
            seen.add(cur.name)
            stack.append(program.definitions[cur.name].expr)
        stack.extend(t.children(cur))
    return list(aggs.values()), list(years.values())


# ─────────────────────────────── the driver ───────────────────────────────

def evaluate(program: t.Program, rows: Rows, months: tuple[date, ...], params: dict, *,
             tracer: Tracer | None = None, only_practice: str | None = None) -> MonthlyResult:
    """Evaluate every practice for the given months (one calendar year at most)."""
    interp = Interpreter(program, params, tracer)
    _, years = collect_aggs(program)
    plan = run_plan(program, months)
    frames = Frames(program, rows, only_practice=only_practice)

    result = MonthlyResult(practices=[p["practice_id"] for p in frames.practices])
    monthly = [program.line(name) for name in program.line_order if program.line(name).kind == "line"]
    pool_order = [program.line(name) for name in program.line_order if program.line(name).kind == "pool"]
    quantum, mode = program.quantum, program.rounding_mode

    for practice in frames.practices:
        pid = practice["practice_id"]
        env = Env(params)
        year_sums = {id(y): ZERO for y in years}
        for frame in frames.months(practice, plan.run):
            m = frame.month
            reported = plan.reports(m)
            env.enter(frame)
            if tracer is not None:
                tracer.scope = (m, None)
                tracer.add("month", m.isoformat(), len(frame.members), f"{len(frame.events)} events")
            for line in monthly:
                if not plan.evaluates(line.name, m):
                    continue  # a month evaluated only for the pools' year sums
                if tracer is not None:
                    tracer.scope = (m, line.name)
                applied = line.applies is None or bool(interp.eval_practice_level(line.applies, env))
                raw = interp.eval_practice_level(line.amount, env) if applied else ZERO
                amount = round_to(raw, quantum, mode) if applied else ZERO
                env.lines[line.name] = amount
                if reported:
                    basis = interp.eval_practice_level(line.basis, env) if line.basis is not None else None
                    result.rows.append((pid, m, line.name, amount, applied, basis))
                    if tracer is not None:
                        tracer.lines[(m, line.name)] = (raw, amount, applied, basis)
            if plan.pools_due:  # year sums feed pools only
                for ys in years:
                    if tracer is None:
                        year_sums[id(ys)] += interp.eval_practice_level(ys.operand, env)
                    else:  # explain's year breakdown; kept out of the month's last line
                        year_sums[id(ys)] += tracer.record(tracer.years, (m, id(ys)),
                                                           lambda: interp.eval_practice_level(ys.operand, env))
        if not plan.pools_due:
            continue
        env.practice, env.measures = practice, frames.measures_of(pid)
        env.year_level = True
        env.month = plan.year_month
        env.year_values = year_sums
        env.aggs = {}
        for pool in pool_order:
            if tracer is not None:
                tracer.scope = (None, pool.name)
            applied = pool.applies is None or bool(interp.eval_practice_level(pool.applies, env))
            raw = interp.eval_practice_level(pool.amount, env) if applied else ZERO
            amount = round_to(raw, quantum, mode) if applied else ZERO
            if tracer is not None:
                tracer.lines[(None, pool.name)] = (raw, amount, applied, None)
            result.pools.append((pid, pool.name, plan.year, amount, applied))
            paid_in_year = ZERO

            def condition(node, pool=pool):
                if tracer is None:
                    return interp.eval_practice_level(node, env)
                return tracer.record(tracer.conditions, (pool.name, id(node)),
                                     lambda: interp.eval_practice_level(node, env))

            for month, inst_amount, paid in split_installments(pool, amount, quantum, mode, condition):
                paid_in_year += inst_amount
                if tracer is not None:
                    tracer.installments[pool.name].append((inst_amount, paid, month in plan.due))
                if month in plan.due:
                    result.installments.append((pid, pool.name, plan.year, month, inst_amount, paid))
                    if tracer is not None:
                        tracer.add("installment", f"{pool.name} {month_label(month)}", inst_amount,
                                   "paid" if paid else "withheld", pool.origin)
            # what a later pool reads of this one (tree.LineRef): paid, not the annual amount
            env.lines[pool.name] = paid_in_year
    return result


def calendar_value(part: str, month: date):
    """`tree.Calendar`: a value of the month starting `month`."""
    if part == "month":
        return month.month
    if part == "quarter":
        return quarter_of(month)
    if part == "half":
        return 1 if month.month <= 6 else 2
    if part == "year":
        return month.year
    if part == "month_start":
        return month
    if part == "month_end":
        return month_end(month)
    if part == "quarter_start":
        return date(month.year, 3 * quarter_of(month) - 2, 1)
    if part == "year_start":
        return date(month.year, 1, 1)
    raise EvalError(error("E0899", f"no calendar value {part!r}"))  # pragma: no cover


def date_diff(unit: str, start: date, end: date) -> int:
    """`tree.DateDiff`: completed years (as `member.age` counts them) or months, or days."""
    if unit == "day":
        return (end - start).days
    if end < start:
        return -date_diff(unit, end, start)
    if unit == "year":
        return completed_years(start, end)
    return (end.year - start.year) * 12 + end.month - start.month - (end.day < start.day)


def split_installments(pool: t.LineDef, amount: Decimal, quantum: Decimal, mode: str, evaluate_condition):
    """Installments exact to the cent: each share is rounded, and the `rest`
    installment (or, without one, the last installment listed) takes the pool
    minus the others, so they always add up to the pool.

    An equal part (`paid monthly`: `parts` 12) is the pool ÷ parts, rounded.

    Yields (month, amount, paid). A withheld installment still counts toward
    the split (the others do not change) but is paid as 0."""
    taker = rest_taker(pool)
    shares = {id(i): round_to(fix(CONTEXT.multiply(i.share, amount)) if i.share is not None
                              else fix(CONTEXT.divide(amount, Decimal(i.parts))), quantum, mode)
              for i in pool.installments if i is not taker}
    shares[id(taker)] = amount - sum(shares.values(), ZERO)
    for inst in pool.installments:
        paid = inst.when is None or bool(evaluate_condition(inst.when))
        yield inst.month, (shares[id(inst)] if paid else ZERO), paid


def rest_taker(pool: t.LineDef) -> t.Installment:
    """The installment that takes the pool less the others: the `rest`, else the last listed."""
    return next((i for i in pool.installments if i.share is None and not i.parts), pool.installments[-1])


# ─────────────────────────── why a condition failed ──────────────────────

def condition_parts(text: str | None, node: t.Node | None) -> list[tuple[str, t.Node]] | None:
    """The parts of a condition written `a and b and …` (its text split at the top-level `and`s,
    paired with the items of its `tree.And`), or None when it is not such a condition or the text does
    not split into as many parts as the tree has items."""
    if text is None or not isinstance(node, t.And):
        return None
    parts, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and text.startswith("and", i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) \
                and (i + 3 == len(text) or not (text[i + 3].isalnum() or text[i + 3] == "_")):
            parts.append(text[start:i].strip())
            start = i = i + 3
            continue
        i += 1
    parts.append(text[start:].strip())
    if len(parts) != len(node.items) or not all(parts):
        return None
    return list(zip(parts, node.items))


def failed_parts(program: t.Program, rows: Rows, months: tuple[date, ...], params: dict,
                 wanted) -> dict[tuple, tuple[str, ...]]:
    """For each (practice_id, month, line) of `wanted` — month None for a pool, whose condition is
    taken on the year — the parts of the line's `and` condition that are false there, each as
    "`text` is false" (a yes/no value) or "`text` does not hold".

    The parts are evaluated by this interpreter on the practice's attributes, its measures and the
    parameters; a part that reads an aggregate, a year sum or another line is not (it would need the
    practice's members and lines), so when only such a part failed the answer is empty."""
    by_line = {}
    for line in program.lines:
        parts = condition_parts(line.applies_text, line.applies)
        if parts:
            simple = [(text, node) for text, node in parts
                      if not any(isinstance(n, (t.Agg, t.YearSum, t.LineRef)) for n in t.walk(t.inline(node, program)))]
            by_line[line.name] = simple
    frames = Frames(program, Rows(rows.practices, [], [], rows.measures))
    practices = {p["practice_id"]: p for p in frames.practices}
    interp = Interpreter(program, params)
    out: dict[tuple, tuple[str, ...]] = {}
    for key in wanted:
        pid, month, name = key
        parts, practice = by_line.get(name), practices.get(pid)
        if not parts or practice is None:
            continue
        env = Env(params)
        if month is None:  # as the driver evaluates a pool: on the year, after its months
            env.practice, env.measures, env.year_level = practice, frames.measures_of(pid), True
            env.month, env.year_values = run_plan(program, months).year_month, {}
        else:
            env.enter(frames.month(practice, month))
        false = []
        for text, node in parts:
            try:
                value = interp.ev(node, env)
            except (Failure, EvalError):
                continue
            if not value:
                is_flag = isinstance(node, (t.Col, t.Measure, t.Param, t.Ref))
                false.append(f"`{text}` is false" if is_flag and value is False else f"`{text}` does not hold")
        if false:
            out[key] = tuple(false)
    return out
