"""The member-month rules, stated once: which months a run evaluates and reports, the day a
member's age is taken on, how much of a month a member counts for, and what a practice sees in a
month (its counted members, its events, its measures). The interpreter, `diff`'s group
re-evaluation, `explain` and `--detail member` all walk practice-months through `Frames`; the SQL
compiler derives its member-month query from the same rules (`capdsl.language.builtins` names
them).

    plan = run_plan(program, months)
    frames = Frames(program, rows)
    for practice in frames.practices:
        for frame in frames.months(practice, plan.run):
            ...  # frame.members (each with its "age"), frame.weights, frame.events, frame.measures
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from capdsl.evaluation import tree as t
from capdsl.evaluation.amounts import CONTEXT, Q12
from capdsl.evaluation.periods import month_end, months_of_year
from capdsl.language.builtins import AGE_RULES, EXPOSURE_RULES, PERIOD_MONTHS


@dataclass
class Rows:
    """A panel as typed Python rows (what `panel.Panel` hands the interpreter)."""

    practices: list[dict]
    members: list[dict]
    events: list[dict] = field(default_factory=list)
    measures: list[tuple] = field(default_factory=list)  # (practice_id, period, measure, value)


def completed_years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def period_start(period: str, month: date) -> date:
    """The first day of the month, quarter or year containing the month starting `month`."""
    if period == "month":
        return month
    if period == "quarter":
        return date(month.year, 3 * ((month.month - 1) // 3) + 1, 1)
    return date(month.year, 1, 1)


def window(period: str, month: date) -> tuple[date, date]:
    """The first and last day of the month, quarter or year containing the month starting `month`."""
    start = period_start(period, month)
    last = date(start.year, start.month + PERIOD_MONTHS[period] - 1, 1)
    return start, month_end(last)


def reference_day(rule: str, month: date) -> date:
    """The day ages are taken on in the month starting `month`, under the age rule `rule`."""
    r = AGE_RULES[rule]
    if r.end == "start":
        return period_start(r.period, month)
    return window(r.period, month)[1]


def list_day(exposure: str, month: date) -> date:
    """The day a first-day rule takes the list on for the month starting `month`: the month's first
    day, or for a list held for a quarter or year (`list as of quarter_start`), that period's."""
    return period_start(EXPOSURE_RULES[exposure].period, month)


def member_age(rule: str, month: date, born: date) -> int:
    """A member's age in `month`. Never negative: a member born after the reference day but counted
    in the month is a newborn, age 0."""
    return max(0, completed_years(born, reference_day(rule, month)))


def exposure_weight(rule: str, month: date, born: date, start: date | None, end: date | None):
    """How much of `month` a member counts for: 0, 1, or (pro rata) the share of its days, to 12 places.
    A member counts from birth or enrolment, whichever is later; an empty enrolment date is open."""
    r = EXPOSURE_RULES[rule]
    first = born if start is None or start < born else start
    if r.counts == "first_day":
        day = list_day(rule, month)
        counted = first <= day and (end is None or end >= day)
        return 1 if counted else 0
    last_day = month_end(month)
    lo = max(first, month)
    hi = last_day if end is None or end > last_day else end
    if hi < lo:
        return 0
    if r.weight == "whole":
        return 1
    days = (hi - lo).days + 1
    if days == last_day.day:
        return 1
    return (Decimal(days) / Decimal(last_day.day)).quantize(Q12, rounding=ROUND_HALF_UP, context=CONTEXT)


def counted_members(rule: str, exposure: str, members: list[dict], month: date) -> tuple[list[dict], list]:
    """The members counted in `month` and their exposure weights. Each counted row's "age" is set to
    its age in `month` (the row is reused, not copied: the age holds until the next month is built).

    The same rules as `member_age` and `exposure_weight`, with the common case (first-day exposure)
    and the age written out inline: this loop runs once per member-month."""
    ref_day = reference_day(rule, month)
    ref_year, ref_md = ref_day.year, (ref_day.month, ref_day.day)
    active: list[dict] = []
    weights: list = []
    first_day = EXPOSURE_RULES[exposure].counts == "first_day"
    day = list_day(exposure, month) if first_day else month
    for row in members:
        born = row["birth_date"]
        if first_day:
            start, end = row["enrolled_from"], row["enrolled_to"]
            w = 1 if born <= day and (start is None or start <= day) and (end is None or end >= day) else 0
        else:
            w = exposure_weight(exposure, month, born, row["enrolled_from"], row["enrolled_to"])
        if w:
            row["age"] = max(0, ref_year - born.year - (ref_md < (born.month, born.day)))
            active.append(row)
            weights.append(w)
    return active, weights


# ─────────────────────────────── the run's months ───────────────────────────────

@dataclass(frozen=True, slots=True)
class Plan:
    """Which months a run evaluates, which it reports, and which pool installments fall due.

    A period with a month a pool installment is paid in pays it, and a pool is a year sum: then
    every month of the year is evaluated, the months outside the period only for the monthly lines
    and aggregates the year sums read (`year_lines`)."""

    year: int
    reported: tuple[date, ...]  # the period's months, in order
    run: tuple[date, ...]  # the months evaluated, in order
    due: tuple[int, ...]  # the months (1–12) whose pool installments the period pays
    pools_due: bool  # the program has pools and the period pays installments of them
    year_lines: frozenset[str]  # monthly lines a year sum reads (evaluated in every run month)
    _reported: frozenset[date] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_reported", frozenset(self.reported))

    def reports(self, month: date) -> bool:
        return month in self._reported

    def evaluates(self, line: str, month: date) -> bool:
        """Whether monthly line `line` is evaluated in `month`: in a reported month, or for a year sum."""
        return month in self._reported or line in self.year_lines

    @property
    def year_month(self) -> date:
        """The month a pool (a year-level amount) is evaluated in: December of the year."""
        return date(self.year, 12, 1)


def run_plan(program: t.Program, months: Iterable[date]) -> Plan:
    """The plan of a run of `program` over `months` (one calendar year at most)."""
    months = tuple(months)
    year = months[0].year
    paid_in = {i.month for line in program.lines if line.kind == "pool" for i in line.installments}
    due = tuple(sorted({m.month for m in months} & paid_in))
    pools_due = bool(due)
    run = months_of_year(year) if pools_due else months
    year_lines = t.year_closure(program)[0] if pools_due else frozenset()
    return Plan(year, months, tuple(run), due, pools_due, year_lines)


# ─────────────────────────────── practice-months ───────────────────────────────

@dataclass(slots=True)
class PracticeMonth:
    """What a practice sees in a month: its row, its counted members (each row's "age" is the age
    in this month) with their exposure weights, its events dated in the month, and its measures
    (name → period text → value; `visible_measure` picks the month's)."""

    practice: dict
    month: date
    members: list[dict]
    weights: list
    events: list[dict]
    measures: dict
    #: every event of the panel with a member, by member id, by date (for `tree.MemberEvents`)
    member_events: dict = field(default_factory=dict)


class Frames:
    """A panel's rows indexed by practice, to build each practice-month's frame."""

    def __init__(self, program: t.Program, rows: Rows, *, only_practice: str | None = None):
        self.rule, self.exposure = program.age_rule, program.exposure
        members: dict[str, list[dict]] = defaultdict(list)
        for row in rows.members:
            members[row["practice_id"]].append(row)
        events: dict[tuple[str, date], list[dict]] = defaultdict(list)
        for row in rows.events:
            d = row["date"]
            events[(row["practice_id"], date(d.year, d.month, 1))].append(row)
        measures: dict[str, dict[str, dict[str, object]]] = defaultdict(lambda: defaultdict(dict))
        for pid, period_text, name, value in rows.measures:
            measures[pid][name][period_text] = value
        self._members, self._events, self._measures = members, events, measures
        by_member: dict[str, list[dict]] = defaultdict(list)
        if uses_member_events(program):
            for row in sorted((r for r in rows.events if r.get("member_id") is not None), key=lambda r: r["date"]):
                by_member[row["member_id"]].append(row)
        self._by_member = by_member
        if rows.practices:
            practices = sorted(rows.practices, key=lambda p: p["practice_id"])
        else:  # no practices file: the practices members and events name
            ids = sorted({r["practice_id"] for r in rows.members} | {r["practice_id"] for r in rows.events})
            practices = [{"practice_id": pid} for pid in ids]
        if only_practice is not None:
            practices = [p for p in practices if p["practice_id"] == only_practice]
        #: The practices evaluated, by id.
        self.practices: list[dict] = practices

    def members_of(self, practice_id: str) -> list[dict]:
        """Every member registered with the practice, counted in a month or not."""
        return self._members.get(practice_id, [])

    def measures_of(self, practice_id: str) -> dict:
        return self._measures.get(practice_id, {})

    def month(self, practice: dict, month: date) -> PracticeMonth:
        pid = practice["practice_id"]
        active, weights = counted_members(self.rule, self.exposure, self._members.get(pid, []), month)
        return PracticeMonth(practice, month, active, weights, self._events.get((pid, month), []),
                             self._measures.get(pid, {}), self._by_member)

    def months(self, practice: dict, months: Iterable[date]) -> Iterator[PracticeMonth]:
        for m in months:
            yield self.month(practice, m)


def uses_member_events(program: t.Program) -> bool:
    roots = [d.expr for d in program.definitions.values()]
    roots += [x for line in program.lines for x in (line.amount, line.applies, line.basis) if x is not None]
    return any(isinstance(node, t.MemberEvents) for root in roots for node in t.walk(root))


def member_events_in(events: list[dict], period: str, month: date) -> list[dict]:
    """The events of a member's list (by date) dated in the `period` containing `month`."""
    start, end = window(period, month)
    return [e for e in events if start <= e["date"] <= end]


def practice_months(program: t.Program, rows: Rows, months: Iterable[date], *,
                    only_practice: str | None = None) -> Iterator[PracticeMonth]:
    """Every practice-month of `months`, practice by practice (by id), month by month."""
    frames = Frames(program, rows, only_practice=only_practice)
    months = tuple(months)
    for practice in frames.practices:
        yield from frames.months(practice, months)


def visible_measure(periods: dict[str, object] | None, month: date, whole_year: bool):
    """The value of a measure a practice-month sees: the month's, else its quarter's, else its year's;
    only the year's for a year-level amount (a pool) or a measure declared per year. None: not reported."""
    if not periods:
        return None
    year = str(month.year)
    if whole_year:
        return periods.get(year)
    return periods.get(f"{year}-{month.month:02d}",
                       periods.get(f"{year}-Q{(month.month - 1) // 3 + 1}", periods.get(year)))


def visible_period(periods: dict[str, object] | None, month: date, whole_year: bool) -> str | None:
    """The period of the row `visible_measure` reads ("2011-03", "2011-Q1" or "2011"), for explain's
    audit trail; None when there is none."""
    if not periods:
        return None
    year = str(month.year)
    keys = (year,) if whole_year else (f"{year}-{month.month:02d}", f"{year}-Q{(month.month - 1) // 3 + 1}", year)
    return next((k for k in keys if k in periods), None)
