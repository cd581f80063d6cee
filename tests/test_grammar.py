"""The grammar itself: it builds in Lark's strict mode, and keywords end at a word boundary.

Strict mode fails on any shift/reduce conflict or terminal collision, so a
grammar change that introduces one fails here (capdsl parses with
strict=False, to keep Lark's start-up cheap). Names that begin with a
keyword (`membership_fee`, `practiced`, `eventual`) are names: both parser
paths (the fast LALR driver and Lark's) must read them as a NAME wherever a
name may stand, and the contract must evaluate."""

from __future__ import annotations

from datetime import date

import pytest

from lark import Lark

from capdsl.errors import Source
from capdsl.evaluation.interpret import Rows, evaluate
from capdsl.pipeline import compile_source
from capdsl.language.syntax import grammar_text
from test_lalr import agree


def test_the_grammar_builds_in_strict_mode():
    Lark(grammar_text(), parser="lalr", lexer="contextual", strict=True, propagate_positions=True,
         maybe_placeholders=True)

PREFIXED = ["membership_fee", "practiced", "eventual", "parameter_value", "measured_rate", "members_total",
            "events_seen", "yearly", "monthly_rate", "half_upper", "upward", "downstream", "first_rate",
            "adder", "highest_band", "Q1_share", "texts", "money_rate", "number_of", "pointsy", "days_open",
            "hours_x", "paramx"]

CONTRACT = """\
contract "t":
    currency USD
end

define {name} = 10 USD

line fee "Fee" = sum of {name} over members
"""


@pytest.mark.parametrize("name", PREFIXED)
def test_a_name_beginning_with_a_keyword_is_a_name(name):
    text = CONTRACT.format(name=name)
    agree(text, must_take=True)
    _, program = compile_source(Source(text, "t.cap"))
    rows = Rows(practices=[{"practice_id": "P1"}],
                members=[{"member_id": "M1", "practice_id": "P1", "birth_date": date(1980, 1, 1),
                          "enrolled_from": None, "enrolled_to": None, "_row": 2, "_label": "m"}])
    result = evaluate(program, rows, (date(2011, 3, 1),), {})
    assert [r[3] for r in result.rows] == [10]


def test_an_input_whose_name_begins_with_a_scope_word():
    text = """\
contract "t":
    currency USD
end

inputs:
    member membership: bool
    practice practiced_hours: hours
end

line fee "Fee" = sum of 10 USD over members where member.membership and practice.practiced_hours > 1 hours
"""
    agree(text, must_take=True)
    compile_source(Source(text, "t.cap"))
