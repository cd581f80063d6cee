"""The member-month rules, stated once: the day a member's age is taken on, how much of a month a
member counts for, and the age itself. Every engine and every tool reads them from here; the SQL
compiler derives its member-month query from the same rules (`capdsl.language.builtins` names
them)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from capdsl.evaluation.amounts import CONTEXT, Q12
from capdsl.evaluation.periods import month_end
from capdsl.language.builtins import AGE_RULES, EXPOSURE_RULES


def completed_years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def reference_day(rule: str, month: date) -> date:
    """The day ages are taken on in the month starting `month`, under the age rule `rule`."""
    r = AGE_RULES[rule]
    start = month if r.period == "month" else date(month.year, 1, 1)
    if r.end == "start":
        return start
    return month_end(month) if r.period == "month" else date(month.year, 12, 31)


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
        counted = first <= month and (end is None or end >= month)
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
