"""The static checker: what it accepts, what it rejects and why, and that it
never fails with anything but `CheckError`."""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capdsl.language import ast_nodes as n
from capdsl.language.builtins import PAY_TIMES
from capdsl.language import units as u
from capdsl.language.check import Checked, Symbol, check
from capdsl.errors import CheckError, Source
from capdsl.language.syntax import parse
from capdsl.language.units import Level

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "tests" / "fixtures" / "published"
HEADER = 'contract "T":\n    currency CZK\nend\n\n'


def run(text: str, header: bool = True) -> Checked:
    source = Source((HEADER if header else "") + text, "t.cap")
    return check(parse(source), source)


def errors(text: str, header: bool = True) -> list:
    try:
        checked = run(text, header)
    except CheckError as exc:
        return exc.diagnostics
    return list(checked.warnings)


def codes(text: str, header: bool = True) -> list[str]:
    """The codes reported, sorted (the order by position is tested separately)."""
    return sorted(d.code for d in errors(text, header))


# ───────────────────────────── real contracts ─────────────────────────────

def test_cz_vzp_checks_clean():
    path = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
    source = Source(path.read_text(encoding="utf-8"), str(path))
    checked = check(parse(source), source)
    assert checked.warnings == ()
    assert checked.header.currency == "CZK"
    syms = checked.symbols
    assert syms["age_index"].level is Level.MEMBER
    assert syms["base_rate"].level is Level.PRACTICE
    assert syms["point_value"].level is Level.CONST
    assert syms["recalculated_insured"].level is Level.AGGREGATE
    assert syms["capitation"].level is Level.AGGREGATE
    assert syms["akord_bonus"].level is Level.YEAR
    assert syms["national_average_drug_cost"].level is Level.CONST
    assert syms["base_rate"].type.same(u.money("CZK"))
    assert syms["point_value"].type.unit_name() == "CZK per point"
    assert syms["age_index"].type.is_dimensionless
    assert isinstance(syms["age_index"], Symbol)
    assert ("measure", "drug_cost_per_insured") in checked.inputs
    assert ("param", "national_average_drug_cost") in checked.inputs


@pytest.mark.parametrize("path", sorted((ROOT / "contracts").glob("*.cap")), ids=lambda p: p.stem)
def test_shipped_contracts_have_no_errors(path):
    source = Source(path.read_text(encoding="utf-8"), str(path))
    check(parse(source), source)


# ─────────────────────────── published tables ───────────────────────────

@pytest.mark.parametrize("name, code, value", [
    ("cz_age_index_published", "E0401", "ages 100 and over"),
    ("hu_age_points_published", "E0402", "age 60"),
    ("pl_index_published", "E0402", "age 65"),
    ("hu_fixed_sum_published", "E0401", "1501"),
])
def test_published_tables_fail(name, code, value):
    path = PUBLISHED / f"{name}.cap"
    source = Source(path.read_text(encoding="utf-8"), str(path))
    with pytest.raises(CheckError) as info:
        check(parse(source), source)
    diags = info.value.diagnostics
    assert [d.code for d in diags] == [code]
    assert value in diags[0].message


def test_overlap_points_at_the_earlier_band():
    diag = errors("bands a by member.age:\n    0 to 60: 1\n    60 and over: 2\nend\n")[0]
    assert diag.code == "E0402" and diag.span.line == 7
    assert diag.notes[0].span.line == 6


# ─────────────────────────── bands: intervals ───────────────────────────

def bands(body: str, key: str = "member.age", decl: str = "") -> list[str]:
    return codes(decl + f"bands b by {key}:\n{body}end\n")


def test_bands_meeting_exactly_are_fine():
    assert bands("    under 5: 1\n    5 to under 10: 2\n    10: 3\n    over 10: 4\n") == []
    hours = "inputs:\n    practice h: hours\nend\n"
    assert bands("    under 30 hours: 1\n    30 hours and over: 2\n", "practice.h", hours) == []


def test_decimal_keys_have_open_gaps():
    hours = "inputs:\n    practice h: hours\nend\n"
    diags = errors(hours + "bands b by practice.h:\n    0 hours to 4 hours: 1\n    over 5 hours: 2\nend\n")
    assert [d.code for d in diags] == ["E0401"]
    assert "(4, 5]" in diags[0].message
    diags = errors(hours + "bands b by practice.h:\n    0 hours to under 4 hours: 1\n    over 4 hours: 2\nend\n")
    assert [d.code for d in diags] == ["E0401"] and "value 4" in diags[0].message


def test_integer_keys_have_no_gap_between_4_and_5():
    assert bands("    0 to 4: 1\n    5 and over: 2\n") == []
    assert bands("    0 to 4: 1\n    over 4: 2\n") == []


def test_otherwise_silences_gaps_but_not_overlaps():
    assert bands("    0 to 4: 1\n    otherwise: 2\n") == []
    assert bands("    0 to 4: 1\n    4 to 9: 1\n    otherwise: 2\n") == ["E0402"]


def test_gap_at_the_start():
    diags = errors("bands b by member.age:\n    18 and over: 1\nend\n")
    assert diags[0].code == "E0401" and "ages 0 to 17" in diags[0].message


def test_empty_and_descending_ranges():
    assert "E0407" in bands("    0 to 9: 1\n    9 to under 9: 2\n    10 and over: 3\n")
    assert "E0407" in bands("    5 to 1: 1\n    0 and over: 3\n")


def test_negative_bounds_extend_the_domain():
    assert bands("    under 0: 1\n    0 and over: 2\n", "practice.x",
                 "inputs:\n    practice x: number\nend\n") == []


def test_band_bounds_must_carry_the_key_unit():
    hours = "inputs:\n    practice h: hours\nend\n"
    diags = errors(hours + "bands b by practice.h:\n    under 30: 1\n    30 hours and over: 2\nend\n")
    assert [d.code for d in diags] == ["E0302"] and "30 hours" in diags[0].hint


def test_bands_need_a_numeric_key_and_schedules_a_text_key():
    assert "E0208" in bands("    0 and over: 1\n", "practice.id")
    assert "E0208" in codes('schedule s by member.age:\n    "A": 1 CZK\nend\n')


def test_table_entries_share_a_type():
    assert codes("bands b by member.age:\n    0 to 9: 1 CZK\n    10 and over: 2 points\nend\n") == ["E0309"]
    assert codes('schedule s by event.code:\n    "A": 1 CZK\n    "B": 1\nend\n') == ["E0309"]
    assert codes("define d:\n    1 CZK from 2011-01-01\n    2 EUR from 2012-01-01\nend\n") == ["E0303", "E0309"]


# ─────────────────────────── tiers and modifiers ───────────────────────────

HOURS = "inputs:\n    practice h: hours\n    practice d: days\n    practice kind: text\nend\n"


def tier(body: str) -> list[str]:
    return codes(HOURS + f"tier t:\n{body}end\n")


def test_cz_tier_order_is_reachable():
    assert tier("    50 CZK when practice.h >= 30 hours and practice.d >= 1 day\n"
                "    49 CZK when practice.h >= 25 hours and practice.d >= 1 day\n    47 CZK otherwise\n") == []


def test_unreachable_entries():
    assert tier("    1 CZK when practice.h >= 25 hours\n    2 CZK when practice.h >= 30 hours\n"
                "    3 CZK otherwise\n") == ["W0404"]
    # a conjunction is stronger than one of its parts
    assert tier("    1 CZK when practice.h >= 25 hours\n    2 CZK when practice.h >= 30 hours and practice.d >= 1 day\n"
                "    3 CZK otherwise\n") == ["W0404"]
    # whole days: `> 1` already covers `>= 2`
    assert tier("    1 CZK when practice.d > 1 day\n    2 CZK when practice.d >= 2 days\n    3 CZK otherwise\n") == ["W0404"]
    # same text test twice
    assert tier('    1 CZK when practice.kind = "a"\n    2 CZK when practice.kind = "a"\n    3 CZK otherwise\n') == ["W0404"]
    # each disjunct covered by some earlier entry
    assert tier('    1 CZK when practice.kind = "a"\n    1 CZK when practice.kind = "b"\n'
                '    2 CZK when practice.kind = "a" or practice.kind = "b"\n    3 CZK otherwise\n') == ["W0404"]
    # otherwise after an entry that always applies
    assert tier("    1 CZK when true\n    3 CZK otherwise\n") == ["W0404"]


def test_reachable_entries_are_not_flagged():
    assert tier("    1 CZK when practice.h >= 30 hours\n    2 CZK when practice.h >= 25 hours\n    3 CZK otherwise\n") == []
    assert tier("    1 CZK when practice.h > 30 hours\n    2 CZK when practice.h >= 30 hours\n    3 CZK otherwise\n") == []
    assert tier("    1 CZK when practice.h >= 25 hours or practice.d >= 1 day\n"
                "    2 CZK when practice.h >= 20 hours\n    3 CZK otherwise\n") == []
    assert tier("    1 CZK when not (practice.h >= 25 hours)\n    2 CZK when practice.h >= 20 hours\n"
                "    3 CZK otherwise\n") == []


def test_tier_structure():
    assert tier("    1 CZK when practice.h >= 1 hour\n") == ["E0403"]
    assert tier("    3 CZK otherwise\n    1 CZK when practice.h >= 1 hour\n") == ["E0408"]
    assert tier("    1 CZK when practice.h\n    3 CZK otherwise\n") == ["E0304"]
    assert tier("    -1 CZK when practice.h >= 1 hour\n    3 CZK otherwise\n") == ["W0507"]


def test_modifiers():
    m = "inputs:\n    member flag: bool = false\nend\n"
    assert codes(m + "modifier x combine highest:\n    2 when member.flag\nend\n") == ["E0405"]
    assert codes(m + "modifier x combine lowest:\n    2 when member.flag\n    1\nend\n") == []
    assert codes(m + "modifier x combine highest:\n    2 when member.flag\n    1 otherwise\nend\n") == []
    assert codes(m + "modifier x combine multiply:\n    2 when member.flag\nend\n") == []
    assert codes(m + "modifier x combine first:\n    2\n    3 when member.flag\n    1 otherwise\nend\n") \
        == ["W0404", "W0404"]


def test_schedules():
    assert codes('schedule s by event.code:\n    "A": 1 CZK\n    "A": 2 CZK\nend\n') == ["E0406"]
    assert codes('schedule s by event.code:\n    otherwise: 0 CZK\n    "A": 1 CZK\nend\n') == ["E0408"]


def test_dated_values_ascend():
    assert codes("define d:\n    1 CZK from 2011-07-01\n    2 CZK from 2011-07-01\nend\n") == ["E0409"]


# ─────────────────────────────── names ───────────────────────────────

def test_header_problems():
    assert codes("define x = 1\n", header=False) == ["E0201"]
    assert codes('contract "A":\n    payer "X"\nend\n', header=False) == ["E0202"]
    assert codes('contract "A":\n    currency CZK\n    report in EUR at 25 EUR per CZK\nend\n', header=False) == ["E0303"]
    assert codes('contract "A":\n    currency CZK\n    report in CZK at 1 CZK per CZK\nend\n', header=False) == ["E0303"]


def test_unknown_names_suggest():
    diags = errors("define base_rate = 1 CZK\nline l \"L\" = sum of base_rat over members\n")
    assert diags[0].code == "E0203" and "base_rate" in diags[0].message
    diags = errors("inputs:\n    practice hours: hours\nend\ndefine x = hours\n")
    assert diags[0].code == "E0203" and "practice.hours" in diags[0].message


def test_param_alias_and_unknown_attributes():
    base = "inputs:\n    param rate: CZK = 5 CZK\nend\n"
    assert codes(base + "line l \"L\" = param.rate + rate\n") == []
    assert codes(base + "line l \"L\" = param.rat\n") == ["E0206"]
    assert codes("line l \"L\" = sum of 1 CZK over members where member.sexx = \"F\"\n") == ["E0206"]
    assert codes("line l \"L\" = sum of 1 CZK over members where member.sex is present and member.sex = \"F\"\n") \
        == []
    assert codes("line l \"L\" = sum of 1 CZK over events where event.code = \"A\" and "
                 "event.date >= 2011-01-01 and (event.member is missing or event.member != \"M\")\n") == []


def test_duplicates_and_cycles():
    assert codes("define a = 1\ndefine a = 2\n") == ["E0204"]
    assert codes("inputs:\n    param a: number = 1\nend\ndefine a = 2\n") == ["E0204"]
    diags = errors("define a = a + 1\n")
    assert [d.code for d in diags] == ["E0205"] and "`a` → `a`" in diags[0].message
    diags = errors('line x "X" = y\nline y "Y" = x\n')
    assert [d.code for d in diags] == ["E0205"]


def test_functions():
    assert codes("define a = min(1)\n") == ["E0207"]
    assert codes("define a = abs(1, 2)\n") == ["E0207"]
    assert codes("define a = clamp(1, 0, 2)\ndefine b = max(1, 2, 3.5)\n") == []
    assert codes("define f = 1\ndefine a = f(1)\n") == ["E0207"]


def test_wrong_roles():
    assert codes("define a = measure.x is present\n") == ["E0206"]
    assert codes("inputs:\n    practice n: number\nend\ndefine a = practice.n is present\n") == ["E0208"]
    assert codes("define a = count of members where member.age is missing\n") == ["E0208"]
    assert codes("define a = count of members where member.sexx is missing\n") == ["E0206"]
    for field in ("member.enrolled_from", "member.enrolled_to", "member.sex"):
        assert codes(f"define a = count of members where {field} is missing\n") == []
    assert codes("define a = count of events where event.member is present\n") == []
    assert codes("define a = event.code in nothing\n") == ["E0203"]


def test_inputs():
    assert codes("inputs:\n    practice a: bool = 1\nend\n") == ["E0211"]
    assert codes("inputs:\n    practice a: points = 0 points\n    event p: points = 0\nend\n") == ["E0211"]
    assert codes("inputs:\n    practice a: number = 1\n    practice b: integer = 2.5\nend\n") == []
    assert codes("inputs:\n    member id: text\nend\n") == ["E0210"]
    assert codes("inputs:\n    event quantity: number\nend\n") == ["E0210"]


@pytest.mark.parametrize("decl, builtin", [
    ("member member_id: text", "member.id"), ("member practice_id: number", "practice.id"),
    ("practice practice_id: text", "practice.id"), ("event practice_id: text", "practice.id"),
    ("event member_id: text", "event.member")])
def test_inputs_named_like_a_standard_column_of_a_built_in(decl, builtin):
    """The panel reads a declared input from the column of its name: these columns are built-ins,
    and declaring them again (as a number, say) broke the panel's own use of the column."""
    diags = errors(f"inputs:\n    {decl}\nend\n")
    assert [d.code for d in diags] == ["E0210"]
    assert diags[0].hint == f"remove this line and write `{builtin}`"
    span, name = diags[0].span, decl.split()[1].rstrip(":")
    assert (HEADER + f"inputs:\n    {decl}\n").splitlines()[span.line - 1][span.column - 1: span.end_column - 1] == name


def test_standard_columns_that_are_not_built_ins_may_be_declared_as_what_they_hold():
    assert codes("inputs:\n    event points: number\nend\n") == []
    assert codes("inputs:\n    event points: points = 0 points\nend\n") == []
    diags = errors("inputs:\n    event points: text\nend\n")
    assert [d.code for d in diags] == ["E0211"] and "`event points: points`" in diags[0].hint
    assert codes("inputs:\n    event points: bool\nend\n") == ["E0211"]


@pytest.mark.parametrize("text, what", [
    ("define _base = 1 CZK\n", "definition"), ("tier _t:\n    1 CZK otherwise\nend\n", "tier"),
    ('line _l "L" = 1 CZK\n', "line"), ("inputs:\n    member _flag: bool = false\nend\n", "member input"),
    ("inputs:\n    practice _row: number = 1\nend\n", "practice input"),
    ("inputs:\n    event _x: number = 1\nend\n", "event input"),
    ("inputs:\n    measure __m: number = 1\nend\n", "measure input"),
    ("inputs:\n    param _p: number = 1\nend\n", "parameter")])
def test_names_beginning_with_an_underscore_are_reserved(text, what):
    """capdsl's internal tables and columns begin with `_`; an author's name never does."""
    diags = errors(text)
    assert [d.code for d in diags] == ["E0212"]
    assert f"the {what} name `_" in diags[0].message
    line = (HEADER + text).splitlines()[diags[0].span.line - 1]
    name = diags[0].message.split("`")[1]
    assert line[diags[0].span.column - 1: diags[0].span.end_column - 1] == name


def _grammar_words() -> set[str]:
    import re

    from capdsl.language.syntax import grammar_text

    g = grammar_text()
    words = set(re.findall(r'"([a-z_]+)"', g))
    for alternatives in re.findall(r"/\(([a-z_|]+)\)", g):
        words |= set(alternatives.split("|"))
    return words


def test_the_reserved_words_are_exactly_those_an_expression_cannot_read_as_a_name():
    """UNREADABLE_NAMES (E0212, docs/language.md) is what the grammar makes it: a definition named by
    any other keyword is read back by name; one of these never is."""
    from capdsl.errors import CapError
    from capdsl.language.builtins import UNREADABLE_NAMES

    unreadable = set()
    for word in sorted(_grammar_words()):
        try:
            diags = errors(f"define {word} = 2\nline a \"A\" = {word} * 1 CZK\n")
        except CapError:  # a parse error: the word cannot be a definition's name or be read
            unreadable.add(word)
            continue
        if [d for d in diags if d.code != "E0212"]:  # read as something else (`true` as the boolean)
            unreadable.add(word)
        assert ("E0212" in [d.code for d in diags]) == (word in UNREADABLE_NAMES), word
    assert unreadable == set(UNREADABLE_NAMES)


@pytest.mark.parametrize("word", ["sum", "true", "member", "calendar"])
def test_a_definition_named_by_a_word_of_the_language_is_refused(word):
    diags = errors(f"define {word} = 2\n")
    assert [d.code for d in diags] == ["E0212"] and "is a word of the language" in diags[0].message


@pytest.mark.parametrize("word", ["count", "sum", "true", "if"])
def test_an_input_may_be_named_by_a_word_of_the_language(word):
    """An input is read through its scope (`member.count`), never by its bare name."""
    text = f"inputs:\n    member {word}: number = 0\nend\nline l \"L\" = sum of member.{word} * 1 CZK over members\n"
    assert codes(text) == []


def test_a_name_with_an_inner_underscore_is_fine():
    assert codes("inputs:\n    member a_b: bool = false\nend\ndefine x_ = 1 CZK\nline l_1 \"L\" = x_\n") == []


# ─────────────────────────── types and units ───────────────────────────

def test_units():
    assert codes('line l "L" = 1 CZK + 2 EUR\n') == ["E0301", "E0303"]
    assert codes('line l "L" = 1 CZK + 2\n') == ["E0301"]
    assert codes('line l "L" = 350 points * 1.08 CZK per point\n') == []
    assert codes('line l "L" = 250 CZK per member * 10 members\n') == []
    assert codes('line l "L" = 15% of 100 CZK\n') == []
    assert codes('line l "L" = 100 CZK / 0\n') == ["E0310"]
    assert codes('line l "L" = 100 CZK / -0.0\n') == ["E0310"]
    assert codes('line l "L" = "a" + 1 CZK\n') == ["E0312"]
    assert codes('line l "L" = 2011-01-01 - 1 CZK\n') == ["E0312"]
    assert codes('line l "L" = 1 point\n') == ["E0307"]
    assert codes('define x = 1 CZK < 2\n') == ["E0302"]
    assert codes('define x = "a" < "b"\n') == ["E0302"]
    assert codes('define x = 2011-01-01 < 2012-01-01\n') == []
    assert codes('define x = 1 in (1, "a")\n') == ["E0309"]
    assert codes('define x = if true then 1 CZK else 2 EUR\n') == ["E0303", "E0309"]
    assert codes('define x = 1 CZK of 1 CZK\n') == ["E0311"]
    assert codes('define x = 15 of 1 CZK\n') == ["W0506"]
    assert codes('define x = 120% of 1 CZK\n') == []
    assert codes('define x = (1 and true) or not 2\n') == ["E0304", "E0304"]


def test_foreign_currency_everywhere():
    assert codes("inputs:\n    param p: EUR per member\nend\n") == ["E0303"]
    assert codes('define x = 1 CZK per EUR\n') == ["E0303"]


def test_levels():
    idx = "bands idx by member.age:\n    0 and over: 1\nend\n"
    assert codes(idx + 'line l "L" = sum of 1 CZK * idx over members\n') == []
    assert codes(idx + 'line l "L" = 1 CZK * idx\n') == ["E0305"]
    assert codes(idx + 'line l "L" = sum of 1 CZK * idx over events\n') == ["E0305"]
    assert codes('line l "L" = sum of event.quantity * 1 CZK over members\n') == ["E0305"]
    assert codes('line l "L" = count of members where event.code = "A"\n') == ["E0305", "E0307"]
    assert codes('define t = sum of 1 CZK over members\nline l "L" = sum of t over members\n') == ["E0305"]
    assert codes('line l "L":\n    amount 1 CZK\n    applies when member.age > 5\nend\n') == ["E0305"]


def test_year_only_in_pools():
    cap = 'line cap "C" = sum of 50 CZK over members\n'
    assert codes(cap + 'pool p "P":\n    amount 10% of sum of cap over year\nend\n') == []
    assert codes(cap + 'pool p "P":\n    amount 10% of cap\nend\n') == ["E0306"]
    assert codes(cap + 'pool p "P":\n    amount 1000 CZK\nend\n') == []
    assert codes(cap + 'line y "Y" = sum of cap over year\n') == ["E0306"]
    assert codes(cap + 'define y = sum of cap over year\nline z "Z" = y\n') == ["E0306"]
    assert codes(cap + 'pool p "P":\n    amount 1000 CZK\nend\nline z "Z" = p\n') == ["E0306"]
    assert codes(cap + 'pool p "P":\n    amount sum of sum of cap over year over year\nend\n') == ["E0305"]
    assert codes('pool p "P":\n    amount sum of member.age * 1 CZK over year\nend\n') == ["E0305"]


MEASURE = "inputs:\n    measure m: CZK\n    measure q: bool = false\nend\n"


def test_measure_presence():
    assert codes(MEASURE + 'line l "L" = measure.m\n') == ["E0308"]
    assert codes(MEASURE + 'line l "L":\n    amount measure.m\n    applies when measure.m is present\nend\n') == []
    assert codes(MEASURE + 'line l "L":\n    amount measure.m\n    applies when measure.q and measure.m is present\nend\n') == []
    # `or` guarantees nothing
    assert codes(MEASURE + 'line l "L":\n    amount measure.m\n    applies when measure.q or measure.m is present\nend\n') \
        == ["E0308"]
    # the test guards what follows it: `is missing or …`, `not (… is missing) and …`, tier entries
    assert codes(MEASURE + 'line l "L" = if measure.m is missing or measure.m > 5 CZK then 1 CZK else 0 CZK\n') == []
    assert codes(MEASURE + 'line l "L" = if not (measure.m is missing) and measure.m > 5 CZK then 1 CZK '
                 'else 0 CZK\n') == []
    assert codes(MEASURE + 'line l "L" = if measure.m > 5 CZK or measure.m is missing then 1 CZK else 0 CZK\n') \
        == ["E0308"]
    assert codes(MEASURE + 'tier t:\n    0 CZK when measure.m is missing\n    measure.m when measure.m > 5 CZK\n'
                 '    1 CZK otherwise\nend\nline l "L" = t\n') == []
    assert codes(MEASURE + 'tier t:\n    measure.m when measure.m > 5 CZK\n    0 CZK when measure.m is missing\n'
                 '    1 CZK otherwise\nend\nline l "L" = t\n') == ["E0308"]
    # through a definition
    diags = errors(MEASURE + 'define d = measure.m * 2\nline l "L" = d\n')
    assert [d.code for d in diags] == ["E0308"] and "applies when measure.m is present" in diags[0].hint
    # guarded inside the expression
    assert codes(MEASURE + 'line l "L" = if measure.m is present then measure.m else 0 CZK\n') == []
    assert codes(MEASURE + 'line l "L" = if measure.m is missing then 0 CZK else measure.m\n') == []
    # measures with a default need no guard; a line reference does not propagate the need
    assert codes(MEASURE + 'line l "L" = if measure.q then 1 CZK else 0 CZK\n') == []
    assert codes(MEASURE + 'line l "L":\n    amount measure.m\n    applies when measure.m is present\nend\n'
                 'line k "K" = 2 * l\n') == []


def test_installment_conditions():
    base = MEASURE + 'pool p "P":\n    amount 100 CZK\n'
    assert codes(base + '    paid 100% in Q4 when measure.m is present and measure.m > 5 CZK\nend\n') == []
    assert codes(base + '    paid 100% in Q4 when measure.m > 5 CZK\nend\n') == ["E0308"]
    assert codes(base + '    paid 100% in Q4 when measure.m + 1 CZK = 5 CZK\nend\n') == ["E0308"]
    assert codes(base + '    paid 100% in Q4 when measure.m\nend\n') == ["E0304"]
    # a missing measure makes `=` false: the installment is withheld, which is what the author means;
    # `measure.m = 5 CZK` holding proves the measure there, so what follows it under `and` may use it
    assert codes(base + '    paid 100% in Q4 when measure.m = 5 CZK and not (measure.m != 3 CZK)\nend\n') == []
    assert codes(base + '    paid 100% in Q4 when measure.m = 5 CZK or measure.m = 7 CZK\nend\n') == []


def test_installment_conditions_that_would_pay_on_a_missing_measure_need_the_test():
    """`!=` and `not` turn the failed test of a missing measure into a payment in Python (None != x
    is true) but not in SQL (NULL is not true): the engines disagreed, so the test is required."""
    base = MEASURE + 'pool p "P":\n    amount 100 CZK\n'
    assert codes(base + '    paid 100% in Q4 when measure.m != 5 CZK\nend\n') == ["E0308"]
    assert codes(base + '    paid 100% in Q4 when not (measure.m = 5 CZK)\nend\n') == ["E0308"]
    assert codes(base + '    paid 100% in Q4 when measure.m is present and measure.m != 5 CZK\nend\n') == []
    assert codes(base + '    paid 100% in Q4 when measure.m is missing or not (measure.m = 5 CZK)\nend\n') == []
    # two missing measures are equal to Python, never to SQL
    two = "inputs:\n    measure a: CZK\n    measure b: CZK\nend\n" + 'pool p "P":\n    amount 100 CZK\n'
    assert codes(two + '    paid 100% in Q4 when measure.a = measure.b\nend\n') == ["E0308", "E0308"]


def test_applies_guards_the_amount_only():
    """The basis and a pool's installment conditions are evaluated whether the line applies or
    not, and `applies` itself from left to right: a missing measure crashed the interpreter there."""
    assert codes(MEASURE + 'line l "L":\n    amount 1 CZK\n    applies when measure.m > 5 CZK and measure.m is present\n'
                 'end\n') == ["E0308"]
    diags = errors(MEASURE + 'line l "L":\n    amount 1 CZK\n    applies when measure.m is present\n'
                   '    basis measure.m * count of members "x"\nend\n')
    assert [d.code for d in diags] == ["E0308"] and "basis" in diags[0].hint
    diags = errors(MEASURE + 'pool p "P":\n    amount 100 CZK\n    applies when measure.m is present\n'
                   '    paid 100% in Q4 when measure.m > 5 CZK\nend\n')
    assert [d.code for d in diags] == ["E0308"] and "decided even when the pool does not apply" in diags[0].hint
    assert codes(MEASURE + 'line l "L":\n    amount 1 CZK\n    applies when measure.m is missing or measure.m > 5 CZK\n'
                 'end\n') == []


# ─────────────────────────── optional fields ───────────────────────────

def members_where(cond: str) -> str:
    return f'line l "L" = sum of 1 CZK over members where {cond}\n'


def test_an_optional_date_in_a_comparison_needs_a_test():
    """An empty `enrolled_from` crashed the interpreter (None <= date) and dropped the member in SQL.
    The checker now asks the author to say what an empty value does, with the rewrite the docs
    promise: an empty `enrolled_from` means enrolled since always."""
    diags = errors(members_where("member.enrolled_from <= 2010-12-31"))
    assert [d.code for d in diags] == ["E0313"]
    d = diags[0]
    assert d.message == ("`member.enrolled_from` may be empty (empty means the member has been enrolled since "
                         "always), and a comparison with an empty value has no answer")
    assert d.hint.startswith("write `member.enrolled_from is missing or member.enrolled_from <= 2010-12-31`")
    assert (d.span.line, d.span.column, d.span.end_column) == (5, 46, 66)


@pytest.mark.parametrize("cond, rewrite", [
    ("member.enrolled_from <= 2010-12-31", "member.enrolled_from is missing or member.enrolled_from <= 2010-12-31"),
    ("member.enrolled_from > 2010-12-31", "member.enrolled_from is present and member.enrolled_from > 2010-12-31"),
    ("2010-12-31 >= member.enrolled_from", "member.enrolled_from is missing or 2010-12-31 >= member.enrolled_from"),
    ("member.enrolled_to >= 2011-12-31", "member.enrolled_to is missing or member.enrolled_to >= 2011-12-31"),
    ("member.enrolled_to < 2011-12-31", "member.enrolled_to is present and member.enrolled_to < 2011-12-31"),
    ("member.enrolled_to = 2011-12-31", "member.enrolled_to is present and member.enrolled_to = 2011-12-31"),
    ("member.enrolled_to != 2011-12-31", "member.enrolled_to is missing or member.enrolled_to != 2011-12-31"),
    ("member.age > 3 and member.enrolled_from <= 2010-12-31",
     "(member.enrolled_from is missing or member.enrolled_from <= 2010-12-31)"),
])
def test_the_hint_treats_an_empty_enrolment_date_as_open(cond, rewrite):
    diags = errors(members_where(cond))
    assert [d.code for d in diags] == ["E0313"]
    assert diags[0].hint.startswith(f"write `{rewrite}`"), diags[0].hint
    fixed = errors(members_where(cond.replace(rewrite.strip("()").split(" or ")[-1].split(" and ")[-1],
                                              rewrite)))
    assert fixed == []


@pytest.mark.parametrize("text", [
    members_where('member.sex = "F"'), members_where('member.sex != "F"'), members_where('member.sex in ("F", "M")'),
    members_where('not (member.sex = "F")'),
    'line l "L" = sum of 1 CZK over events where event.member = "M1"\n',
    'line l "L" = sum of 1 CZK over events where event.code = "A" and event.member != "M1"\n',
    'schedule s by member.sex:\n    "F": 1 CZK\n    otherwise: 0 CZK\nend\nline l "L" = sum of s over members\n',
    'define same = member.enrolled_from = member.enrolled_to\nline l "L" = sum of 1 CZK over members where same\n',
    'tier t:\n    member.sex when member.age > 3\n    "U" otherwise\nend\n'
    'line l "L" = sum of 1 CZK over members where t = "F"\n',
])
def test_every_use_of_an_optional_field_needs_a_test(text):
    assert set(codes(text)) == {"E0313"}


@pytest.mark.parametrize("cond", [
    "member.enrolled_from is missing or member.enrolled_from <= 2010-12-31",
    "member.enrolled_from is present and member.enrolled_from <= 2010-12-31",
    "(if member.enrolled_from is present then member.enrolled_from <= 2010-12-31 else true)",
    "not (member.enrolled_from is present and member.enrolled_from <= 2010-12-31)",
    "not (member.enrolled_from is missing or member.enrolled_from <= 2010-12-31)",
    "not (member.enrolled_from is missing) and member.enrolled_from <= 2010-12-31",
    "member.age > 3 and member.enrolled_to is present and member.enrolled_to < 2011-06-30 or member.age > 90",
    "member.enrolled_from is present and member.enrolled_to is present and member.enrolled_from = member.enrolled_to",
    'member.sex is present and member.sex in ("F")',
    'member.sex is missing or not (member.sex = "F")',
])
def test_guarded_uses_check(cond):
    assert codes(members_where(cond)) == []


def test_the_test_must_come_first():
    diags = errors(members_where("member.enrolled_from <= 2010-12-31 or member.enrolled_from is missing"))
    assert [d.code for d in diags] == ["E0313"] and "must come before the use" in diags[0].hint
    assert codes(members_where('member.sex = "F" and member.sex is present')) == ["E0313"]


def test_guards_in_values_sums_tiers_and_modifiers():
    assert codes('line l "L" = sum of (if member.sex is present and member.sex = "F" then 2 CZK else 1 CZK) '
                 'over members\n') == []
    # the sum's `where` guards the summed value
    assert codes('tier t:\n    2 CZK when member.sex = "F"\n    1 CZK otherwise\nend\n'
                 'line l "L" = sum of t over members where member.sex is present\n') == ["E0313"]
    assert codes('line l "L" = sum of (if member.sex = "F" then 2 CZK else 1 CZK) over members '
                 'where member.sex is present\n') == []
    # an earlier tier entry that applies when the field is missing guards the later ones
    tier = ('tier t:\n    3 CZK when member.enrolled_from is missing\n    2 CZK when member.enrolled_from <= '
            '2010-06-30\n    1 CZK otherwise\nend\nline l "L" = sum of t over members\n')
    assert codes(tier) == []
    assert codes(tier.replace("is missing", "is present")) == ["E0313"]
    # so does an earlier entry of a `combine first` modifier, but not of `highest`
    mod = ('modifier m combine {}:\n    1.5 when member.sex is missing\n    1.2 when member.sex = "F"\n'
           '    1 otherwise\nend\nline l "L" = sum of m * 1 CZK over members\n')
    assert codes(mod.format("first")) == []
    assert codes(mod.format("highest")) == ["E0313"]
    # a value is guarded by its own condition
    assert codes('modifier m combine highest:\n    1.5 when member.sex is present and member.sex = "F"\n'
                 '    1 otherwise\nend\nline l "L" = sum of m * 1 CZK over members\n') == []
    # a definition is checked on its own, and reported once however often it is used
    diags = errors('define early = member.enrolled_from <= 2010-12-31\n'
                   'line l "L" = sum of 1 CZK over members where member.enrolled_from is present and early\n'
                   'line k "K" = sum of 1 CZK over members where early\n')
    assert [d.code for d in diags] == ["E0313"] and diags[0].span.line == 5


def test_reading_an_optional_field_as_a_value_needs_a_test():
    diags = errors('schedule s by member.sex:\n    "F": 1 CZK\n    otherwise: 0 CZK\nend\n'
                   'line l "L" = sum of s over members\n')
    assert [d.code for d in diags] == ["E0313"]
    assert diags[0].hint == "test it first: `if member.sex is present then … else …`"
    assert codes('schedule s by (if member.sex is present then member.sex else "U"):\n    "F": 1 CZK\n'
                 '    otherwise: 0 CZK\nend\nline l "L" = sum of s over members\n') == []


def test_the_shipped_contracts_and_examples_need_no_test():
    """Exposure reads empty enrolment dates itself; `enrolled from` in an example is data."""
    assert codes('line l "L" = sum of 1 CZK over members\nexample "E":\n    period 2011-03\n'
                 '    member M1 of P1 born 1950-01-01 enrolled from 2011-01-01 with sex = "F"\n'
                 '    expect P1 l = 1.00 CZK\nend\n') == []


OPTIONAL_EXAMPLE = HEADER.replace("CZK", "USD") + """\
tier since:
    3 USD when member.enrolled_from is missing
    2 USD when member.enrolled_from <= 2010-06-30
    1 USD otherwise
end

line cap "Cap" = sum of since over members
line women "Women" = sum of 1 USD over members where member.sex is present and member.sex = "F"
line unknown "Unknown patient" = sum of 1 USD over events where event.member is missing

example "Empty optional fields":
    period 2011-03
    member M1 of P1 born 1950-01-01
    member M2 of P1 born 1950-01-01 enrolled from 2010-01-01 with sex = "F"
    member M3 of P1 born 1950-01-01 enrolled from 2011-01-01 with sex = "M"
    2 events of P1 code "A" on 2011-03-10
    1 events of P1 code "A" on 2011-03-10 with member = "M1"
    expect P1 cap = 6.00 USD
    expect P1 women = 1.00 USD
    expect P1 unknown = 2.00 USD
end
"""


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_optional_fields_in_an_embedded_example(engine):
    """`is missing` works on every optional field on both engines; an example's events
    `with member = "M1"` set `event.member` (they were read as empty)."""
    from capdsl.tools.examples import run_example
    from capdsl.evaluation.lower import lower

    checked = run(OPTIONAL_EXAMPLE, header=False)
    outcome = run_example(lower(checked), checked.contract.examples[0], checked.source, engine)
    assert outcome.error is None and outcome.failures == [] and outcome.checks == 3


# ─────────────────────────────── payouts ───────────────────────────────

def pool(paid: str) -> list[str]:
    return codes(f'pool p "P":\n    amount 100 CZK\n    paid {paid}\nend\n')


def test_pool_shares():
    assert pool("10% in Q1, 10% in Q2, 10% in Q3, rest in Q4") == []
    assert pool("25% in Q1, 25% in Q2, 25% in Q3, 25% in Q4") == []
    assert pool("33.33% in Q1, 33.33% in Q2, 33.34% in Q3") == []
    diags = errors('pool p "P":\n    amount 100 CZK\n    paid 10% in Q1, 80% in Q4\nend\n')
    assert [d.code for d in diags] == ["E0501"] and "90 %" in diags[0].message
    assert pool("rest in Q1, rest in Q4") == ["E0502"]
    assert pool("60% in Q1, 50% in Q2, rest in Q4") == ["E0502"]
    assert pool("50% in Q1, 50% in Q1") == ["E0503"]
    assert pool("0.5 in Q1, rest in Q4") == ["E0505"]
    assert pool("150% in Q1, rest in Q4") == ["E0502", "W0506"]


def test_lines_need_amounts_and_money():
    assert codes('line l "L":\n    basis count of members\nend\n') == ["E0504"]
    assert codes('pool p "P":\n    applies when true\nend\n') == ["E0504"]
    assert codes('line l "L":\n    amount 1 CZK\n    basis "x"\nend\n') == ["E0312"]


# ─────────────────────────────── examples ───────────────────────────────

EXAMPLE_BASE = ("inputs:\n    practice h: hours\n    member flag: bool = false\n    event p: points = 0 points\n"
                "    measure m: CZK\n    param r: CZK = 1 CZK\nend\n"
                'line cap "C" = sum of r over members\n')


def example(body: str) -> list[str]:
    return codes(EXAMPLE_BASE + f'example "E":\n{body}end\n')


def test_good_example():
    assert example("    period 2011-03\n    set r = 2 CZK\n    practice P with h = 30 hours\n"
                   "    10 members of P aged 40 with flag = true, sex = \"F\"\n"
                   "    member M of P born 1950-01-01 enrolled from 2011-01-01 to 2011-12-31\n"
                   "    5 events of P code \"A\" on 2011-03-01 with p = 5 points, quantity = 2\n"
                   "    measure m of P for 2011 = 340\n"
                   "    expect P cap = 20.00 CZK\n    expect P total = 20.00 CZK\n    expect total = 20.00 CZK\n") == []


def test_example_errors():
    assert example("    period 2011-03\n    expect P cap = 1 CZK\n") == ["E0602"]
    assert example("    period 2011-03\n    practice P\n    expect P cop = 1 CZK\n") == ["E0601"]
    assert example("    period 2011-03\n    practice P\n    expect P r = 1 CZK\n") == ["E0601"]
    assert example("    period 2011-03\n    practice P with x = 1\n") == ["E0603"]
    assert example("    period 2011-03\n    10 members of P aged 4 with age = 1\n") == ["E0603"]
    assert example("    period 2011-03\n    set cap = 1 CZK\n") == ["E0604"]
    assert example("    practice P\n") == ["E0605"]
    assert example("    period 2011-03\n    period 2011-04\n") == ["E0605"]
    assert example("    period 2011-03\n    measure z of P = 1\n") == ["E0606"]
    assert example("    period 2011-03\n    expect total = 5 points\n") == ["E0607"]


# ───────────────────────────── the result ─────────────────────────────

def test_error_carries_sorted_diagnostics_and_warnings():
    with pytest.raises(CheckError) as info:
        run('define z = 15 of 1 CZK\ndefine a = b\ndefine c = d\n')
    diags = info.value.diagnostics
    assert [d.code for d in diags] == ["W0506", "E0203", "E0203"]
    assert [d.span.line for d in diags] == sorted(d.span.line for d in diags)


def test_warnings_only_returns_checked():
    checked = run('define z = 15 of 1 CZK\n')
    assert [d.code for d in checked.warnings] == ["W0506"]


# ─────────────────────────────── robustness ───────────────────────────────

def test_very_deep_ast_does_not_overflow():
    """Deeper than any parse (the parser stops at ~300 levels), to prove no recursion."""
    expr: object = n.Quantity(Decimal(1), "1", n.UnitExpr("CZK"))
    for i in range(sys.getrecursionlimit() * 3):
        expr = n.Binary("+", expr, n.Quantity(Decimal(1), "1", n.UnitExpr("CZK")))
        if i % 3 == 0:
            expr = n.Neg(expr)
    cond: object = n.BoolLit(True)
    for _ in range(sys.getrecursionlimit() * 3):
        cond = n.BoolOp("or", (n.Not(cond), n.Compare(">", n.Attr("practice", "id"), n.String("x"))))
    contract = n.Contract((
        n.Header("T", currency="CZK"),
        n.Define("d", expr),
        n.Tier("t", (n.Choice(n.Quantity(Decimal(1), "1", n.UnitExpr("CZK")), cond),
                     n.Choice(n.Quantity(Decimal(1), "1", n.UnitExpr("CZK")), None))),
        n.Line("line", "l", "L", n.Name("d")),
    ))
    with pytest.raises(CheckError):  # `>` on text
        check(contract, Source("", "deep.cap"))


def test_long_definition_chain_has_no_recursion():
    text = "".join(f"define d{i} = d{i + 1} + 1 CZK\n" for i in range(3000)) + "define d3000 = 1 CZK\n"
    checked = run(text + 'line l "L" = d0\n')
    assert checked.symbols["d0"].type.same(u.money("CZK"))


def test_a_5000_line_contract_checks():
    """Size, not speed: benchmarks/bench_parse.py measures the time."""
    source = Source(big_contract(), "big.cap")
    checked = check(parse(source), source)
    assert len([d for d in checked.contract.decls if isinstance(d, n.Line)]) == (5000 - 16) // 2


def big_contract(lines: int = 5000) -> str:
    out = [HEADER, "inputs:\n    practice h: hours\nend\n",
           "bands idx by member.age:\n    0 to 4: 3.91\n    5 to 84: 1.00\n    85 and over: 3.40\nend\n",
           "tier base:\n    50 CZK when practice.h >= 30 hours\n    47 CZK otherwise\nend\n"]
    for i in range((lines - 16) // 2):
        prev = f"d{i - 1}" if i else "base"
        out.append(f"define d{i} = {prev} + 1 CZK * idx\nline l{i} \"Line {i}\" = sum of d{i} * 2 over members\n")
    return "".join(out)


# Random ASTs built from the node types: whatever the parser could hand over,
# the checker answers with a result or a CheckError, never a crash.

NAMES = st.sampled_from(["a", "b", "c", "rate", "idx", "cap", "p", "min", "max", "clamp", "abs", "total", "m"])
UNITS = st.one_of(st.none(), st.builds(n.UnitExpr, st.sampled_from(["CZK", "EUR", "points", "hour", "days", "%", "member"]),
                                       st.one_of(st.none(), st.sampled_from(["point", "member", "EUR", "hours"]))))
QTY = st.builds(lambda v, unit: n.Quantity(Decimal(v), str(v), unit), st.integers(-3, 200), UNITS)
ATTR = st.builds(n.Attr, st.sampled_from(["member", "practice", "event", "measure", "param"]),
                 st.sampled_from(["age", "id", "code", "h", "m", "flag", "x", "quantity", "a", "rate"]))
LEAF = st.one_of(QTY, ATTR, st.builds(n.Name, NAMES), st.builds(n.String, st.sampled_from(["A", "B"])),
                 st.builds(n.BoolLit, st.booleans()), st.builds(n.DateLit, st.just(date(2011, 1, 1))))


def _extend(children):
    return st.one_of(
        st.builds(n.Neg, children), st.builds(n.Not, children),
        st.builds(n.Binary, st.sampled_from(["+", "-", "*", "/", "of"]), children, children),
        st.builds(n.Compare, st.sampled_from(["=", "!=", "<", ">="]), children, children),
        st.builds(n.BoolOp, st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=3).map(tuple)),
        st.builds(n.InList, children, st.lists(children, min_size=1, max_size=3).map(tuple)),
        st.builds(n.InTable, children, st.builds(n.Name, NAMES)),
        st.builds(n.Present, children, st.booleans()),
        st.builds(n.IfExpr, children, children, children),
        st.builds(n.Call, NAMES, st.lists(children, min_size=1, max_size=3).map(tuple)),
        st.builds(n.SumOver, children, st.sampled_from(["members", "events", "year"]), st.one_of(st.none(), children)),
        st.builds(n.CountOf, st.sampled_from(["members", "events", "year"]), st.one_of(st.none(), children)),
    )


EXPR = st.recursive(LEAF, _extend, max_leaves=12)
RANGE = st.builds(lambda form, lo, hi: n.Range(form, None if form == "under" else lo,
                                                None if form in ("and_over", "over") else hi),
                  st.sampled_from(["to", "to_under", "and_over", "over", "under", "exact"]), QTY, QTY)
CHOICE = st.builds(n.Choice, EXPR, st.one_of(st.none(), EXPR), st.booleans())
DECL = st.one_of(
    st.builds(n.Define, NAMES, EXPR),
    st.builds(n.Dated, NAMES, st.lists(st.builds(n.DatedEntry, EXPR, st.dates()), min_size=1, max_size=3).map(tuple)),
    st.builds(n.Bands, NAMES, EXPR, st.lists(st.builds(n.BandEntry, st.one_of(st.none(), RANGE), EXPR),
                                             min_size=1, max_size=4).map(tuple)),
    st.builds(n.Tier, NAMES, st.lists(CHOICE, min_size=1, max_size=4).map(tuple)),
    st.builds(n.Modifier, NAMES, st.sampled_from(["highest", "lowest", "multiply", "add", "first"]),
              st.lists(CHOICE, min_size=1, max_size=4).map(tuple)),
    st.builds(n.Schedule, NAMES, EXPR, st.lists(st.builds(n.ScheduleEntry, st.one_of(st.none(), st.sampled_from(["A", "B"])),
                                                          EXPR), min_size=1, max_size=3).map(tuple)),
    st.builds(lambda kind, name, amount, applies, paid, payment, rate: n.Line(
        kind, name, "L", amount, applies, paid=paid, block=True, payment=payment, rate_per=rate),
              st.sampled_from(["line", "pool"]), NAMES, st.one_of(st.none(), EXPR), st.one_of(st.none(), EXPR),
              st.lists(st.builds(lambda when, share, cond: n.Installment(PAY_TIMES[when], when, share, cond),
                                 st.sampled_from(sorted(PAY_TIMES)), st.one_of(st.none(), QTY),
                                 st.one_of(st.none(), EXPR)), max_size=3).map(tuple),
              st.one_of(st.none(), st.builds(n.Payment, st.sampled_from([None, "monthly", "quarterly"]),
                                             st.lists(st.sampled_from(sorted(PAY_TIMES)).map(
                                                 lambda w: n.PayTime(PAY_TIMES[w], w)), max_size=3).map(tuple))),
              st.one_of(st.none(), st.sampled_from(["month", "quarter", "year"]))),
    st.builds(n.Inputs, st.lists(st.builds(n.InputDecl, st.sampled_from(["member", "practice", "event", "measure", "param"]),
                                            st.sampled_from(["h", "m", "flag", "x", "a", "rate", "age"]),
                                            st.builds(n.TypeExpr, st.sampled_from(["bool", "text", "number", "integer",
                                                                                   "hours", "CZK", "money", "percent"]),
                                                      st.one_of(st.none(), st.sampled_from(["member", "point"]))),
                                            st.one_of(st.none(), EXPR)), max_size=4).map(tuple)),
    st.builds(n.Example, st.just("E"), st.lists(st.one_of(
        st.builds(n.ExPeriod, st.just("2011-03")), st.builds(n.ExSet, NAMES, EXPR),
        st.builds(n.ExPractice, st.sampled_from(["P", "Q"]), st.lists(st.builds(n.Assignment, NAMES, EXPR), max_size=2).map(tuple)),
        st.builds(n.ExMeasure, NAMES, st.sampled_from(["P", "Q"]), st.none(), EXPR),
        st.builds(n.ExExpect, st.sampled_from([None, "P", "Q"]), NAMES, EXPR)), max_size=5).map(tuple)),
)
HEADERS = st.lists(st.builds(n.Header, st.just("T"), currency=st.sampled_from([None, "CZK", "EUR"])), max_size=2)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(HEADERS, st.lists(DECL, max_size=6))
def test_random_asts_only_raise_check_error(headers, decls):
    contract = n.Contract(tuple(headers) + tuple(decls))
    try:
        result = check(contract, Source("", "fuzz.cap"))
    except CheckError as exc:
        assert exc.diagnostics and any(d.is_error for d in exc.diagnostics)
        exc.render()
    else:
        assert not any(d.is_error for d in result.warnings)


def test_symbol_levels_and_types():
    checked = run("inputs:\n    event p: points = 0 points\n    param r: CZK per point = 1 CZK per point\nend\n"
                  'schedule fee by event.code:\n    "A": 1 CZK\nend\n'
                  "define n_events = count of events\n"
                  "define pts = sum of event.p over events\n"
                  'line cap "C" = sum of 5 CZK over members\n'
                  "define annual = sum of cap over year\n"
                  'pool bonus "B":\n    amount 10% of annual\nend\n'
                  "define price = r * 2\n")
    s = checked.symbols
    assert s["fee"].level is Level.EVENT
    assert s["n_events"].level is Level.AGGREGATE
    assert s["pts"].type.unit_name() == "points"
    assert s["annual"].level is Level.YEAR
    assert s["price"].level is Level.CONST and s["price"].type.unit_name() == "CZK per point"
    assert s["r"].level is Level.CONST and isinstance(s["r"].decl, n.InputDecl)
    assert s["bonus"].type.same(u.money("CZK"))
