"""Impact analysis: what a contract change does to every practice, and why.

`diff` evaluates two programs (two contracts, or one contract under two
periods or parameter sets) on the same panel with the same engine, matches
practices and statement lines by id, and reports per practice × line the
old and new amounts, the totals, the distribution of practice deltas and
the drivers of the change.

Drivers, and why they are computed this way
-------------------------------------------
*Lines* are exact: the per-line deltas add up to the total delta.

*Member groups* (age band × member flags such as diabetes) use **restricted
re-evaluation**: for each practice-month, the members are partitioned into
groups and each line is evaluated by the reference interpreter as if the
practice had only that group's members (and only the events of those
members). A group's contribution is that restricted amount, unrounded.
For a line that is additive over members — `sum of E over members` times
practice-level factors, which covers capitation, modifiers, fee schedules
over events — the group contributions add up exactly to the line before
rounding. For non-additive terms (thresholds on counts, `max` over a
practice aggregate, references to rounded lines, pools) they do not, and
the difference is reported explicitly per line as *not attributable*, never
silently spread over groups. Events whose member is unknown form their own
group. Grouping uses the new contract's age rule and its first age-band
table (the old contract's when the new has none; 10-year bands when
neither has one), so old and new are compared on identical groups.

*Tiers and practice-level tables* (tiers, practice-level bands, dated
values) are reported as shifts: for each table, the practices grouped by
(entry matched under old → entry matched under new) with the sum of their
deltas. These partitions overlap across tables: each table is a separate
view of the same practice deltas.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from capdsl.evaluation import tree as t
from capdsl.errors import InputError, UsageError, error
from capdsl.evaluation.amounts import round_to
from capdsl.evaluation.interpret import Env, Interpreter
from capdsl.evaluation.months import Frames, PracticeMonth, member_age
from capdsl.evaluation.statements import Result

Amount = Annotated[Decimal, PlainSerializer(lambda d: str(d), return_type=str, when_used="always")]

ZERO = Decimal(0)
HUNDRED = Decimal(100)
PCT_Q = Decimal("0.01")
THRESHOLD_PCT = Decimal(5)
TOP = 10
QUANTILES = (0, 10, 25, 50, 75, 90, 100)
EVENTS_WITHOUT_MEMBER = "events without a known member"
NOT_ATTRIBUTABLE = "not attributable"


# ─────────────────────────────── output models ───────────────────────────────

class _M(BaseModel):
    model_config = ConfigDict(frozen=True)


class LineDelta(_M):
    id: str
    label: str
    old: Amount
    new: Amount
    delta: Amount
    delta_pct: Amount | None = Field(None, description="delta ÷ |old| × 100; null when old is 0")
    status: Literal["both", "added", "removed"] = Field(
        "both", description="added: only in the new contract; removed: only in the old (missing side counts 0)")


class PracticeImpact(_M):
    practice_id: str
    old: Amount
    new: Amount
    delta: Amount
    delta_pct: Amount | None = None
    status: Literal["both", "added", "removed"] = "both"
    lines: list[LineDelta]


class PracticeRef(_M):
    practice_id: str
    old: Amount
    new: Amount
    delta: Amount
    delta_pct: Amount | None = None


class Quantile(_M):
    q: int = Field(description="percentile, nearest-rank")
    delta_pct: Amount


class Distribution(_M):
    practices: int
    losing_over_5pct: int
    gaining_over_5pct: int
    within_5pct: int
    without_old_amount: int = Field(description="practices whose old amount is 0 (delta % undefined)")
    quantiles: list[Quantile]
    largest_losers: list[PracticeRef]
    largest_gainers: list[PracticeRef]


class LineDriver(_M):
    id: str
    label: str
    delta: Amount
    share_pct: Amount | None = Field(None, description="share of the total delta; null when it is 0")


class GroupDelta(_M):
    dimension: str = Field(description="'age band', a flag name, or 'age band × flags'")
    group: str
    old: Amount
    new: Amount
    delta: Amount
    member_months: Amount = Field(description="exposure-weighted member-months in the group (new side)")


class Unattributed(_M):
    line: str
    old: Amount
    new: Amount
    delta: Amount
    reason: str


class TierShift(_M):
    table: str
    old_entry: str
    new_entry: str
    practices: int
    old: Amount
    new: Amount
    delta: Amount


class Drivers(_M):
    method: str
    lines: list[LineDriver]
    groups: list[GroupDelta]
    unattributed: list[Unattributed]
    tiers: list[TierShift]


class Side(_M):
    contract: str
    path: str
    period: str
    currency: str
    settings: list[str] = Field(default_factory=list, description="--set assignments of this side")
    total: Amount = Field(description="in this side's own currency")


class Impact(_M):
    """The output of `capdsl diff`."""

    old: Side
    new: Side
    currency: str = Field(description="currency of every amount below (the new contract's)")
    rate: Amount | None = Field(None, description="old-currency amounts were multiplied by this rate")
    engine: str
    old_total: Amount
    new_total: Amount
    delta: Amount
    delta_pct: Amount | None = None
    lines: list[LineDelta]
    practices: list[PracticeImpact]
    distribution: Distribution
    drivers: Drivers | None = None
    warnings: list[str] = []


# ─────────────────────────────── arithmetic ──────────────────────────────────

def pct(delta: Decimal, old: Decimal) -> Decimal | None:
    """delta as a percentage of |old|, to 0.01 %; undefined (None) when old is 0.

    The base is |old| so the sign always follows the delta: a deduction that
    shrinks from -100 to -90 is +10 %, a gain for the practice."""
    if old == 0:
        return None
    value = (delta * HUNDRED / abs(old)).quantize(PCT_Q, rounding=ROUND_HALF_UP)
    return value if value != 0 else abs(value)  # no "-0.00 %"


def nearest_rank(sorted_values: list[Decimal], q: int) -> Decimal:
    """Nearest-rank percentile: always an observed value, so it stays exact."""
    n = len(sorted_values)
    index = max(0, math.ceil(q * n / 100) - 1)
    return sorted_values[min(index, n - 1)]


# ─────────────────────────────── the diff ────────────────────────────────────

def check_currencies(old: t.Program, new: t.Program, rate: Decimal | None) -> list[str]:
    """Different currencies need an exchange rate (E0910); a useless rate is only a warning."""
    if old.currency != new.currency:
        if rate is None:
            raise UsageError(error(
                "E0910", f"the contracts pay in different currencies: {old.currency} (old) and "
                         f"{new.currency} (new)",
                hint=f"give an exchange rate: --rate R converts 1 {old.currency} into R {new.currency}"))
        if rate <= 0:
            raise UsageError(error("E0910", f"the exchange rate must be positive, not {rate}"))
        return []
    if rate is not None:
        return [f"--rate {rate} ignored: both contracts pay in {new.currency}"]
    return []


def diff(old_program: t.Program, new_program: t.Program, run, new_run=None, *, rate: Decimal | None = None,
         drivers: bool = True, progress=None) -> Impact:
    """Evaluate both programs on the panel of `run` (and `new_run` for the new side,
    default: the same run) with the same engine, and compare them. `progress(text)`, when given,
    is told each phase as it starts (the CLI shows it on a terminal)."""
    from capdsl.pipeline import evaluate

    say = progress or _silent
    new_run = new_run or run
    if new_run.engine != run.engine:
        new_run = replace(new_run, engine=run.engine)
    warnings = check_currencies(old_program, new_program, rate)
    conv = rate if old_program.currency != new_program.currency else None
    say("old contract: reading the panel and evaluating")
    old_result, old_panel = _evaluate(evaluate, old_program, run)
    try:
        say("new contract: reading the panel and evaluating")
        new_result, new_panel = _evaluate(evaluate, new_program, new_run)
    except BaseException:
        old_panel.close()
        raise
    try:
        _require_members(old_result, new_result)
        impact_practices, lines = compare(old_result, new_result, conv, new_program)
        drv = None
        if drivers:
            drv = driver_analysis(old_program, new_program, (old_panel, run), (new_panel, new_run), conv,
                                  impact_practices, lines, progress=say)
    finally:
        old_panel.close()
        new_panel.close()
    old_total = sum((p.old for p in impact_practices), ZERO)
    new_total = sum((p.new for p in impact_practices), ZERO)
    warnings += [f"old: {w}" for w in old_result.warnings] + [f"new: {w}" for w in new_result.warnings]
    return Impact(
        old=Side(contract=old_result.contract, path=old_result.path, period=old_result.period,
                 currency=old_result.currency, settings=list(run.assignments), total=old_result.total),
        new=Side(contract=new_result.contract, path=new_result.path, period=new_result.period,
                 currency=new_result.currency, settings=list(new_run.assignments), total=new_result.total),
        currency=new_result.currency, rate=conv, engine=run.engine, old_total=old_total, new_total=new_total,
        delta=new_total - old_total, delta_pct=pct(new_total - old_total, old_total), lines=lines,
        practices=impact_practices, distribution=distribution(impact_practices), drivers=drv,
        warnings=list(dict.fromkeys(warnings)))


def _silent(_text: str) -> None:
    """The progress reporter when nobody listens."""


def _evaluate(evaluate, program, run):
    """Evaluate one side; a header-only members file becomes the diff's own E0911."""
    try:
        return evaluate(program, run)
    except InputError as exc:
        if any(d.code == "E0702" for d in exc.diagnostics):
            raise UsageError(error("E0911", "the panel is empty: the members file has no rows, so there is "
                                            "nothing to compare", path=str(run.files.get("members")),
                                   hint="pass a members file with at least one member")) from None
        raise


def _require_members(*results: Result) -> None:
    """A panel with nobody counted and no events in the period gives a meaningless 0 → 0 diff."""
    counted = any(ln.basis for r in results for s in r.statements for ln in s.lines
                  if ln.basis is not None and ln.basis != 0)
    if not counted and all(r.total == 0 for r in results):
        periods = " / ".join(dict.fromkeys(r.period for r in results))
        raise UsageError(error(
            "E0911", f"the panel is empty for {periods}: no member is enrolled and no event is dated in the "
                     f"period, so both contracts pay 0",
            hint="check --period and the members' enrolment dates"))


def _convert(amount: Decimal, rate: Decimal | None, program: t.Program) -> Decimal:
    if rate is None:
        return amount
    return round_to(amount * rate, program.quantum, program.rounding_mode)


def compare(old: Result, new: Result, rate: Decimal | None, new_program: t.Program):
    """Practice × line table and per-line totals (old converted into the new currency)."""
    old_by = {s.practice_id: s for s in old.statements}
    new_by = {s.practice_id: s for s in new.statements}
    labels: dict[str, str] = {}
    order: list[str] = []
    for result in (new, old):
        for s in result.statements[:1]:
            for ln in s.lines:
                if ln.id not in labels:
                    labels[ln.id] = ln.label
                    order.append(ln.id)
    old_ids = {ln.id for s in old.statements[:1] for ln in s.lines}
    new_ids = {ln.id for s in new.statements[:1] for ln in s.lines}
    line_old: dict[str, Decimal] = defaultdict(lambda: ZERO)
    line_new: dict[str, Decimal] = defaultdict(lambda: ZERO)
    practices = []
    for pid in sorted(set(old_by) | set(new_by)):
        o_lines = {ln.id: _convert(ln.amount, rate, new_program) for ln in old_by[pid].lines} if pid in old_by else {}
        n_lines = {ln.id: ln.amount for ln in new_by[pid].lines} if pid in new_by else {}
        rows = []
        for lid in order:
            o, n = o_lines.get(lid, ZERO), n_lines.get(lid, ZERO)
            line_old[lid] += o
            line_new[lid] += n
            rows.append(LineDelta(id=lid, label=labels[lid], old=o, new=n, delta=n - o, delta_pct=pct(n - o, o),
                                  status=_status(lid, old_ids, new_ids)))
        o_total, n_total = sum(o_lines.values(), ZERO), sum(n_lines.values(), ZERO)
        status = "both" if pid in old_by and pid in new_by else ("added" if pid in new_by else "removed")
        practices.append(PracticeImpact(practice_id=pid, old=o_total, new=n_total, delta=n_total - o_total,
                                        delta_pct=pct(n_total - o_total, o_total), status=status, lines=rows))
    lines = [LineDelta(id=lid, label=labels[lid], old=line_old[lid], new=line_new[lid],
                       delta=line_new[lid] - line_old[lid], delta_pct=pct(line_new[lid] - line_old[lid], line_old[lid]),
                       status=_status(lid, old_ids, new_ids)) for lid in order]
    return practices, lines


def _status(lid: str, old_ids: set[str], new_ids: set[str]) -> str:
    if lid in old_ids and lid in new_ids:
        return "both"
    return "added" if lid in new_ids else "removed"


def distribution(practices: list[PracticeImpact]) -> Distribution:
    pcts = sorted(p.delta_pct for p in practices if p.delta_pct is not None)
    refs = [PracticeRef(practice_id=p.practice_id, old=p.old, new=p.new, delta=p.delta, delta_pct=p.delta_pct)
            for p in practices]
    losers = sorted((r for r in refs if r.delta < 0), key=lambda r: (r.delta, r.practice_id))[:TOP]
    gainers = sorted((r for r in refs if r.delta > 0), key=lambda r: (-r.delta, r.practice_id))[:TOP]
    return Distribution(
        practices=len(practices),
        losing_over_5pct=sum(1 for v in pcts if v < -THRESHOLD_PCT),
        gaining_over_5pct=sum(1 for v in pcts if v > THRESHOLD_PCT),
        within_5pct=sum(1 for v in pcts if -THRESHOLD_PCT <= v <= THRESHOLD_PCT),
        without_old_amount=len(practices) - len(pcts),
        quantiles=[Quantile(q=q, delta_pct=nearest_rank(pcts, q)) for q in QUANTILES] if pcts else [],
        largest_losers=losers, largest_gainers=gainers)


# ─────────────────────────────── drivers ─────────────────────────────────────

def age_band_table(program: t.Program) -> t.Case | None:
    """The first band table keyed by member.age (the contract's own age bands)."""
    for d in program.definitions.values():
        e = d.expr
        if isinstance(e, t.Case) and e.table and e.whens and all(_reads_only_age(c) for c, _ in e.whens):
            return e
    return None


def _reads_only_age(cond: t.Node) -> bool:
    cols = [n for n in t.walk(cond) if isinstance(n, t.Col)]
    return bool(cols) and all(c.table == "member" and c.name == "age" for c in cols) and \
        not any(isinstance(n, (t.Ref, t.Param, t.Measure, t.Agg)) for n in t.walk(cond))


class Grouper:
    """Maps a member in a month to (age band, flags) — identical for both sides."""

    def __init__(self, old: t.Program, new: t.Program):
        self.rule = new.age_rule
        table = age_band_table(new) or age_band_table(old)
        self.flags = sorted({c.name for p in (old, new) for c in p.columns
                             if c.table == "member" and c.kind == "bool"})
        self.order: dict[str, int] = {}
        self._labels: dict[int, str] = {}
        self._table, self._interp, self._env = table, Interpreter(new, {}), Env({})
        if table is not None:
            for i, label in enumerate(table.labels):
                self.order[label] = i
            self.order["outside every band"] = len(table.labels)

    def band(self, age: int) -> str:
        label = self._labels.get(age)
        if label is None:
            if self._table is None:
                lo = (age // 10) * 10
                label = f"{lo} to {lo + 9}"
                self.order.setdefault(label, lo)
            else:
                self._env.member = {"age": age}
                label = next((lbl for (cond, _), lbl in zip(self._table.whens, self._table.labels)
                              if self._interp.ev(cond, self._env)), "outside every band")
            self._labels[age] = label
        return label

    def key(self, attrs: dict, m: date) -> tuple:
        age = member_age(self.rule, m, attrs["birth_date"])
        return (self.band(age),) + tuple(bool(attrs.get(f)) for f in self.flags)


def _side_rows(program: t.Program, panel):
    """Interpreter rows, with each event's member id (for grouping events by member)."""
    from capdsl.pipeline import panel_rows

    rows = panel_rows(program, panel)
    if "member_id" in panel.kinds["events"] and rows.events:
        owner = dict(panel.event_rows(["_row", "member_id"]))
        for ev in rows.events:
            ev["_member"] = owner.get(ev["_row"])
    return rows


def _params(program: t.Program, run) -> dict:
    from capdsl.data.panel import parse_params
    from capdsl.pipeline import requirements

    return parse_params(list(run.assignments), run.params_file, requirements(program))


def group_contributions(program: t.Program, rows, months, params: dict, grouper: Grouper, attrs: dict,
                        progress=None, what: str = "member groups"):
    """Σ over practice-months of each monthly line evaluated on each group's members alone (unrounded).
    `progress(text)` hears of each practice ("what 3/200").

    Returns ({(line, group): amount}, {group: member-months})."""
    interp = Interpreter(program, params)
    monthly = [program.line(n) for n in program.line_order if program.line(n).kind == "line"]
    frames = Frames(program, rows)
    contrib: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    exposure: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    for i, practice in enumerate(frames.practices):
        if progress is not None:
            progress(f"{what} {i + 1}/{len(frames.practices)}")
        env = Env(params)
        for frame in frames.months(practice, months):
            m = frame.month
            buckets: dict[tuple, tuple[list, list, list]] = {}
            for row, w in zip(frame.members, frame.weights):
                key = grouper.key(attrs.get(row["member_id"], row), m)
                b = buckets.setdefault(key, ([], [], []))
                b[0].append(row)
                b[1].append(w)
                exposure[key] += w
            for ev in frame.events:
                owner = attrs.get(ev.get("_member"))
                key = grouper.key(owner, m) if owner is not None else (EVENTS_WITHOUT_MEMBER,)
                buckets.setdefault(key, ([], [], []))[2].append(ev)
            for key, (rows_g, weights, events_g) in buckets.items():
                env.enter(PracticeMonth(frame.practice, m, rows_g, weights, events_g, frame.measures))
                for line in monthly:
                    applied = line.applies is None or bool(interp.eval_practice_level(line.applies, env))
                    raw = interp.eval_practice_level(line.amount, env) if applied else ZERO
                    env.lines[line.name] = raw
                    contrib[(line.name, key)] += raw
    return contrib, exposure


def _member_attrs(sides) -> dict:
    """member id → birth date and every flag either contract reads (ids are unique in a panel,
    so an event at another practice still finds its member)."""
    attrs: dict[str, dict] = {}
    for rows in sides:
        for row in rows.members:
            attrs.setdefault(row["member_id"], {}).update(row)
    return attrs


def _group_name(grouper: Grouper, key: tuple) -> tuple[str, str]:
    if key[0] == EVENTS_WITHOUT_MEMBER:
        return EVENTS_WITHOUT_MEMBER, EVENTS_WITHOUT_MEMBER
    on = [f for f, v in zip(grouper.flags, key[1:]) if v]
    return key[0], "no flags" if not on else " + ".join(on)


def driver_analysis(old_p: t.Program, new_p: t.Program, old_side, new_side, rate: Decimal | None,
                    practices: list[PracticeImpact], lines: list[LineDelta], progress=None) -> Drivers:
    from capdsl.evaluation.periods import parse_period

    say = progress or _silent
    (old_panel, old_run), (new_panel, new_run) = old_side, new_side
    say("drivers: reading the members")
    old_rows, new_rows = _side_rows(old_p, old_panel), _side_rows(new_p, new_panel)
    grouper = Grouper(old_p, new_p)
    attrs = _member_attrs([old_rows, new_rows])
    o_c, _ = group_contributions(old_p, old_rows, parse_period(old_run.period).months, _params(old_p, old_run),
                                 grouper, attrs, say, "drivers: grouping members, old contract, practice")
    n_c, n_exp = group_contributions(new_p, new_rows, parse_period(new_run.period).months, _params(new_p, new_run),
                                     grouper, attrs, say, "drivers: grouping members, new contract, practice")
    q = new_p.quantum

    def money(value: Decimal, convert: bool) -> Decimal:
        exact = value * rate if (convert and rate is not None) else value
        return exact.quantize(q, rounding=ROUND_HALF_UP) if q.as_tuple().exponent < 0 else exact

    keys = sorted({k for _, k in o_c} | {k for _, k in n_c}, key=lambda k: (grouper.order.get(k[0], 10 ** 6), k))
    cells: dict[tuple, list[Decimal]] = {}
    attributed: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for lid in {ln.id for ln in lines}:
        for key in keys:
            o, n = money(o_c.get((lid, key), ZERO), True), money(n_c.get((lid, key), ZERO), False)
            cell = cells.setdefault(key, [ZERO, ZERO])
            cell[0] += o
            cell[1] += n
            attributed[lid][0] += o
            attributed[lid][1] += n
    groups: list[GroupDelta] = []
    by_dim: dict[tuple[str, str], list[Decimal]] = {}
    for key in keys:
        o, n = cells[key]
        band, flags = _group_name(grouper, key)
        mm = n_exp.get(key, ZERO)
        dims = [("age band", band)]
        if key[0] != EVENTS_WITHOUT_MEMBER:
            dims += [(f, f if v else f"no {f}") for f, v in zip(grouper.flags, key[1:])]
        for dim in dims:
            acc = by_dim.setdefault(dim, [ZERO, ZERO, ZERO])
            acc[0] += o
            acc[1] += n
            acc[2] += mm
        if grouper.flags and key[0] != EVENTS_WITHOUT_MEMBER:
            groups.append(GroupDelta(dimension="age band × flags", group=f"{band}, {flags}", old=o, new=n,
                                     delta=n - o, member_months=mm))
    cross = sorted(groups, key=lambda g: (-abs(g.delta), g.group))[:20]
    marginal = [GroupDelta(dimension=d, group=g, old=v[0], new=v[1], delta=v[1] - v[0], member_months=v[2])
                for (d, g), v in by_dim.items()]
    unattributed = []
    for ln in lines:
        o_a, n_a = attributed[ln.id]
        rest_o, rest_n = ln.old - o_a, ln.new - n_a
        if rest_o or rest_n:
            unattributed.append(Unattributed(line=ln.id, old=rest_o, new=rest_n, delta=rest_n - rest_o,
                                             reason=_reason(ln.id, old_p, new_p)))
    say("drivers: tiers and practice tables")
    total_delta = sum((ln.delta for ln in lines), ZERO)
    drivers = [LineDriver(id=ln.id, label=ln.label, delta=ln.delta,
                          share_pct=pct(ln.delta, total_delta) if total_delta else None)
               for ln in sorted(lines, key=lambda x: (-abs(x.delta), x.id))]
    return Drivers(method="restricted re-evaluation by member group (see capdsl.tools.impact)", lines=drivers,
                   groups=marginal + cross, unattributed=unattributed,
                   tiers=tier_shifts(old_p, new_p, old_rows, new_rows, old_run, new_run, practices))


def _reason(lid: str, old_p: t.Program, new_p: t.Program) -> str:
    for p in (new_p, old_p):
        try:
            if p.line(lid).kind == "pool":
                return "an annual pool: not decomposed by member group"
        except KeyError:
            continue
    return "rounding, or terms that are not additive over members (thresholds, max/min of aggregates)"


def practice_tables(program: t.Program) -> list[tuple[str, t.Case]]:
    """Tiers, practice-level bands and dated values: tables a whole practice matches one entry of."""
    out = []
    for d in program.definitions.values():
        if isinstance(d.expr, t.Case) and d.expr.table and d.level in ("const", "practice"):
            out.append((d.name, d.expr))
    return out


def matched_entries(program: t.Program, rows, months, params: dict) -> dict[tuple[str, str], str]:
    """(table, practice) → the entry label matched in every month ('varies by month' otherwise)."""
    tables = practice_tables(program)
    if not tables:
        return {}
    interp = Interpreter(program, params)
    frames = Frames(program, rows)
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    env = Env(params)
    for practice in frames.practices:
        for frame in frames.months(practice, months):
            env.enter(frame)
            for name, case in tables:
                label = "no entry applies"
                for i, (cond, _v) in enumerate(case.whens):
                    try:
                        hit = bool(interp.ev(cond, env))
                    except Exception:  # noqa: BLE001 - a failing condition simply does not match
                        hit = False
                    if hit:
                        label = case.labels[i] if i < len(case.labels) else f"entry {i + 1}"
                        break
                else:
                    if not isinstance(case.otherwise, t.Fail):
                        label = "otherwise"
                seen[(name, practice["practice_id"])].add(label)
    return {k: (next(iter(v)) if len(v) == 1 else "varies by month") for k, v in seen.items()}


def tier_shifts(old_p, new_p, old_rows, new_rows, old_run, new_run, practices) -> list[TierShift]:
    from capdsl.evaluation.periods import parse_period

    o = matched_entries(old_p, old_rows, parse_period(old_run.period).months, _params(old_p, old_run))
    n = matched_entries(new_p, new_rows, parse_period(new_run.period).months, _params(new_p, new_run))
    tables = list(dict.fromkeys([k[0] for k in n] + [k[0] for k in o]))
    acc: dict[tuple[str, str, str], list] = {}
    for table in tables:
        for p in practices:
            key = (table, o.get((table, p.practice_id), "not in the contract"),
                   n.get((table, p.practice_id), "not in the contract"))
            a = acc.setdefault(key, [0, ZERO, ZERO])
            a[0] += 1
            a[1] += p.old
            a[2] += p.new
    shifts = [TierShift(table=k[0], old_entry=k[1], new_entry=k[2], practices=v[0], old=v[1], new=v[2],
                        delta=v[2] - v[1]) for k, v in acc.items()]
    return sorted(shifts, key=lambda s: (tables.index(s.table), -abs(s.delta), s.old_entry, s.new_entry))
