"""Bands lower to a first-match Case that leaves out lower-bound tests the order
already guarantees (capdsl.evaluation.lower._bands). Property: the lowered Case picks, for
every key, the band a reader of the table would pick: the first whose range
contains the key, else `otherwise`, else no band (E0801)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from capdsl.evaluation import tree as t
from capdsl.errors import CapError, Source
from capdsl.pipeline import compile_source

FORMS = ("to", "to_under", "and_over", "over", "under", "exact")


def _range_text(form: str, low: Decimal, high: Decimal) -> str:
    return {"to": f"{low} to {high}", "to_under": f"{low} to under {high}", "and_over": f"{low} and over",
            "over": f"over {low}", "under": f"under {high}", "exact": f"{low}"}[form]


def _contains(form: str, low: Decimal | None, high: Decimal | None, x: Decimal) -> bool:
    if form == "under":
        return x < high
    if form == "and_over":
        return x >= low
    if form == "over":
        return x > low
    if form == "exact":
        return x == low
    return low <= x <= high if form == "to" else low <= x < high


def _holds(cond: t.Node, x: Decimal) -> bool:
    if isinstance(cond, t.And):
        return all(_holds(c, x) for c in cond.items)
    if isinstance(cond, t.Const):
        return bool(cond.value)
    assert isinstance(cond, t.Cmp), cond
    v = cond.right.value
    return {"<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v, "=": x == v}[cond.op]


# Tables built ascending (the checker rejects overlaps): each band starts `gap` after the one
# before (0: they meet), is `width` wide, and has a form; "under" may only open a table and
# "and over"/"over" only close it.
bands = st.lists(st.tuples(st.sampled_from(("to", "to_under", "exact")), st.integers(0, 2), st.integers(0, 12)),
                 min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(bands, st.sampled_from(["", "under", "and_over", "over", "both"]), st.integers(-3, 10),
       st.sampled_from(["", ".5"]), st.booleans(), st.booleans())
def test_lowered_bands_pick_the_band_a_reader_would(entries, ends, start, frac, by_age, with_otherwise):
    ranges = []
    cursor = Decimal(f"{start}{'' if by_age else frac}")
    if ends in ("under", "both"):
        ranges.append(("under", None, cursor))
    for form, gap, width in entries:
        lo = cursor + gap
        hi = lo + width + (1 if form == "to_under" else 0)
        ranges.append((form, lo, lo if form == "exact" else hi))
        cursor = (lo if form == "exact" else hi) + (0 if form == "to_under" else 1)
    if ends in ("and_over", "over", "both"):
        ranges.append(("over" if ends == "over" else "and_over", cursor, None))
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



def _lowered(key_definition: str, key: str) -> t.Case:
    text = (f'contract "B":\n    currency CZK\nend\ninputs:\n    member flag: bool = false\nend\n'
            f"{key_definition}\n"
            f"bands b by {key}:\n    under 0: 0\n    0 to 4: 1\n    5 to 9: 2\n    otherwise: 3\nend\n"
            f'line l "L" = sum of 1 CZK * b over members\n')
    _, program = compile_source(Source(text, "b.cap"))
    return program.definitions["b"].expr


def test_a_whole_number_key_needs_no_lower_test_past_the_band_before():
    """An age is a whole number for the checker (which then sees no gap between 4 and 5) and so for
    the lowerer: past `0 to 4` it is at least 5, so `5 to 9` tests its upper bound only."""
    case = _lowered("", "member.age")
    assert [c.op for c, _ in case.whens] == ["<", "<=", "<="]


def test_a_key_that_may_be_a_fraction_keeps_its_lower_tests():
    """A key is a whole number only when all its branches are (the checker's type, not the first
    branch's): past `under 0` and `0 to 4` this key may be 4.5, which `5 to 9` must not take."""
    case = _lowered("define k = if member.flag then member.age else 4.5", "k")
    second = case.whens[2][0]
    assert isinstance(second, t.And) and [c.op for c in second.items] == [">=", "<="]
    assert [i for i, (cond, _) in enumerate(case.whens) if _holds(cond, Decimal("4.5"))] == []
