"""Periods: the three spellings, their months, and measure-period matching."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capdsl.errors import UsageError
from capdsl.evaluation.periods import (Period, is_quarter_end, measure_periods_for_month, month_end, months_of_year,
                            parse_period, quarter_of, try_parse_period)


def test_month():
    p = parse_period("2011-03")
    assert p == Period("2011-03", "month", date(2011, 3, 1), date(2011, 3, 31), (date(2011, 3, 1),), 2011)
    assert parse_period("2012-02").end == date(2012, 2, 29)
    assert parse_period("2011-02").end == date(2011, 2, 28)


def test_quarter():
    p = parse_period("2011-Q2")
    assert (p.kind, p.start, p.end, p.year) == ("quarter", date(2011, 4, 1), date(2011, 6, 30), 2011)
    assert p.months == (date(2011, 4, 1), date(2011, 5, 1), date(2011, 6, 1))
    assert parse_period("2011-q4").text == "2011-Q4"
    assert parse_period("2011-Q4").end == date(2011, 12, 31)


def test_year():
    p = parse_period(" 2011 ")
    assert (p.text, p.kind, p.start, p.end) == ("2011", "year", date(2011, 1, 1), date(2011, 12, 31))
    assert p.months == months_of_year(2011) and len(p.months) == 12
    assert p.contains(date(2011, 7, 4)) and not p.contains(date(2012, 1, 1))


@pytest.mark.parametrize("text", ["", "2011-3", "2011-13", "2011-00", "2011-Q5", "2011-Q0", "11", "2011-03-01",
                                  "March 2011", "2011/03", "Q2-2011", "0999", "2011-H1", "２０１１"])
def test_bad_periods(text):
    with pytest.raises(UsageError) as info:
        parse_period(text)
    d = info.value.diagnostics[0]
    assert d.code == "E0901" and "2011-03" in d.hint and "2011-Q2" in d.hint and "2011" in d.hint
    assert try_parse_period(text) is None


def test_helpers():
    assert [quarter_of(date(2011, m, 1)) for m in range(1, 13)] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert [m.month for m in months_of_year(2011) if is_quarter_end(m)] == [3, 6, 9, 12]
    assert measure_periods_for_month(date(2011, 5, 1)) == ("2011-05", "2011-Q2", "2011")
    assert month_end(date(2011, 12, 1)) == date(2011, 12, 31)


@given(st.integers(1800, 2999), st.integers(1, 12))
def test_months_tile_their_period(year, month):
    m = parse_period(f"{year:04d}-{month:02d}")
    q = parse_period(f"{year:04d}-Q{quarter_of(m.start)}")
    y = parse_period(f"{year:04d}")
    assert m.start in q.months and m.start in y.months
    assert q.start <= m.start <= m.end <= q.end
    assert measure_periods_for_month(m.start) == (m.text, q.text, y.text)
    assert sum((month_end(s) - s).days + 1 for s in y.months) == (y.end - y.start).days + 1
