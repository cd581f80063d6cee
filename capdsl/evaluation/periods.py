"""Evaluation periods: a month (`2011-03`), a quarter (`2011-Q2`) or a year (`2011`).

Contracts pay per month, so every period is also the tuple of its month
starts; a quarter or a year is evaluated month by month and summed. The
measures table uses the same three spellings, and a month reads the most
specific row that contains it (`measure_periods_for_month`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

from capdsl.errors import UsageError, error

_HINT = "write a month as 2011-03, a quarter as 2011-Q2, or a year as 2011"
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_QUARTER = re.compile(r"([0-9]{4})-[Qq]([1-4])")
_YEAR = re.compile(r"([0-9]{4})")
MIN_YEAR, MAX_YEAR = 1800, 2999


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar period; `end` is inclusive, `months` are the first days of its months."""

    text: str
    kind: str  # "month" | "quarter" | "year"
    start: date
    end: date
    months: tuple[date, ...]
    year: int

    def __str__(self) -> str:
        return self.text

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


def month_end(month_start: date) -> date:
    """Last day of the month that starts on `month_start`."""
    return month_start.replace(day=calendar.monthrange(month_start.year, month_start.month)[1])


def quarter_of(month_start: date) -> int:
    """1..4: the quarter a month falls in."""
    return (month_start.month - 1) // 3 + 1


def months_of_year(year: int) -> tuple[date, ...]:
    return tuple(date(year, m, 1) for m in range(1, 13))


def is_quarter_end(month_start: date) -> bool:
    """March, June, September, December: the months pool installments are paid in."""
    return month_start.month % 3 == 0


def measure_periods_for_month(month_start: date) -> tuple[str, str, str]:
    """The measure-period keys that cover a month, most specific first."""
    y = month_start.year
    return (f"{y:04d}-{month_start.month:02d}", f"{y:04d}-Q{quarter_of(month_start)}", f"{y:04d}")


def _bad(text: str, why: str) -> UsageError:
    return UsageError(error("E0901", f"unknown period {text!r}: {why}", hint=_HINT))


def parse_period(text: str) -> Period:
    """Parse a period string; anything but the three forms is a usage error (E0901)."""
    if not isinstance(text, str):
        raise _bad(str(text), "not a string")
    s = text.strip()
    if m := _MONTH.fullmatch(s):
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise _bad(text, f"there is no month {month}")
        _check_year(text, year)
        start = date(year, month, 1)
        return Period(f"{year:04d}-{month:02d}", "month", start, month_end(start), (start,), year)
    if m := _QUARTER.fullmatch(s):
        year, q = int(m.group(1)), int(m.group(2))
        _check_year(text, year)
        months = tuple(date(year, 3 * (q - 1) + i, 1) for i in (1, 2, 3))
        return Period(f"{year:04d}-Q{q}", "quarter", months[0], month_end(months[-1]), months, year)
    if m := _YEAR.fullmatch(s):
        year = int(m.group(1))
        _check_year(text, year)
        months = months_of_year(year)
        return Period(f"{year:04d}", "year", months[0], date(year, 12, 31), months, year)
    raise _bad(text, "not a month, quarter or year")


def _check_year(text: str, year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise _bad(text, f"the year must be between {MIN_YEAR} and {MAX_YEAR}")


def try_parse_period(text: str) -> Period | None:
    """`parse_period` that returns None instead of raising (for data files)."""
    try:
        return parse_period(text)
    except UsageError:
        return None
