"""Bands lower to a first-match Case that leaves out lower-bound tests the order
already guarantees (capdsl.lower._bands). Property: the lowered Case picks, for
every key, the band a reader of the table would pick: the first whose range
contains the key, else `otherwise`, else no band (E0801)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from capdsl import tree as t
from capdsl.errors import CapError, Source
from capdsl.pipeline import compile_source

FORMS = ("to", "to_under", "and_over", "over", "under", "exact")


def _range_text(form: str, low: Decimal, high: Decimal) -> str:
    return {"to": f"{low} to {high}", "to_under": f"{low} to under {high}", "and_over": f"{low} and over",
            "over": f"over {low}", "under": f"under {high}", "exact": f"{low}"}[form]


def _contains(form: str, low: Decimal, high: Decimal, x: Decimal) -> bool:
    return {"to": low <= x <= high, "to_under": low <= x < high, "and_over": x >= low, "over": x > low,
            "under": x < high, "exact": x == low}[form]


def _holds(cond: t.Node, x: Decimal) -> bool:
    if isinstance(cond, t.And):
        return all(_holds(c, x) for c in cond.items)
    if isinstance(cond, t.Const):
        return bool(cond.value)
    assert isinstance(cond, t.Cmp), cond
    v = cond.right.value
    return {"<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v, "=": x == v}[cond.op]


bands = st.lists(
    st.tuples(st.sampled_from(FORMS), st.integers(-3, 40), st.integers(0, 12), st.sampled_from(["", ".5"])),
    min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(bands, st.booleans(), st.booleans())
def test_lowered_bands_pick_the_band_a_reader_would(entries, by_age, with_otherwise):
    ranges = []
    for form, low, width, frac in entries:
        lo = Decimal(f"{low}{frac if not by_age else ''}")
        hi = lo + width if form != "to_under" else lo + width + 1
        ranges.append((form, lo, hi))
    key = "member.age" if by_age else "practice.hours"
    rows = "\n".join(f"    {_range_text(f, lo, hi)}: {i + 1}" for i, (f, lo, hi) in enumerate(ranges))
    rows += "\n    otherwise: 99" if with_otherwise else ""
    text = (f'contract "B":\n    currency CZK\nend\ninputs:\n    practice hours: number\nend\n'
            f"bands b by {key}:\n{rows}\nend\n"
            f'line l "L" = sum of 1 CZK * b over members\n')
    try:
        _, program = compile_source(Source(text, "b.cap"))
    except CapError:
        assume(False)  # overlapping, empty or out-of-order tables are the checker's business
        return
    case = program.definitions["b"].expr
    assert isinstance(case, t.Case)
    lowest = 0 if by_age else -5
    for x in [Decimal(v) / 2 for v in range(2 * lowest, 2 * 60)]:
        if by_age and x != x.to_integral_value():
            continue
        expected = next((i for i, (f, lo, hi) in enumerate(ranges) if _contains(f, lo, hi, x)), None)
        picked = next((i for i, (cond, _) in enumerate(case.whens) if _holds(cond, x)), None)
        assert picked == expected, (x, ranges, case.whens)
