"""The Pygments lexer: registered under `cap`, colours every construct, never
loses text, and shows source lines for `capdsl explain`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Literal, Name, Number, Operator, Punctuation, String

from capdsl.language.highlight import CapLexer, highlight_lines, to_ansi

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = sorted((ROOT / "contracts").rglob("*.cap")) + sorted((ROOT / "tests" / "golden" / "fmt").glob("*.cap"))


def tokens(text: str) -> list[tuple[object, str]]:
    return [(t, v) for t, v in CapLexer().get_tokens(text) if v.strip()]


def test_registered_with_pygments():
    assert isinstance(get_lexer_by_name("cap"), CapLexer)
    assert isinstance(get_lexer_by_name("capdsl"), CapLexer)
    assert isinstance(get_lexer_for_filename("contract.cap"), CapLexer)


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_contracts_lex_without_errors_or_loss(path: Path):
    text = path.read_text(encoding="utf-8")
    toks = list(CapLexer(stripnl=False).get_tokens(text))
    assert "".join(v for _, v in toks) == text
    assert not [v for t, v in toks if t in Error]


SAMPLE = '''# a comment
contract "VZP \\"2011\\"":
    currency CZK
    rounding half_up 0.01 per line
end
inputs:
    event points: points = 0 points
    measure share: percent
end
define point_value = 1.08 CZK per point ref "§2"
tier base_rate:
    50 CZK when practice.weekly_hours >= 30 hours and not practice.akord  # trailing
    47 CZK otherwise
end
line cap "Capitation" = sum of max(base_rate, 1 CZK) * 15% of x over members
example "e":
    period 2011-Q2
    member M1 of P1 born 1940-05-01
end
'''


@pytest.mark.parametrize("text, kind", [
    ("# a comment", Comment.Single),
    ("# trailing", Comment.Single),
    ("contract", Keyword.Declaration),
    ("tier", Keyword.Declaration),
    ("currency", Keyword),
    ("when", Keyword),
    ("otherwise", Keyword),
    ("end", Keyword),
    ("CZK", Keyword.Type),
    ("hours", Keyword.Type),
    ("percent", Keyword.Type),
    ("half_up", Name.Constant),
    ("1.08", Number.Float),
    ("15%", Number.Float),
    ("30", Number.Integer),
    ("2011-Q2", Literal.Date),
    ("1940-05-01", Literal.Date),
    ('\\"', String.Escape),
    ("practice", Name.Builtin),
    ("weekly_hours", Name.Attribute),
    ("point_value", Name.Function),
    ("base_rate", Name.Function),
    ("max", Name.Function),
    ("share", Name.Variable),
    (">=", Operator),
    ("and", Operator.Word),
    ("of", Operator.Word),
    ("x", Name),
])
def test_token_kinds(text: str, kind):
    kinds = {t for t, v in tokens(SAMPLE) if v == text}
    assert kind in kinds, (text, kinds)


def test_input_name_that_is_a_unit_word():
    toks = tokens("inputs:\n    event points: points\nend\n")
    assert toks[3] == (Name.Variable, "points") and toks[5] == (Keyword.Type, "points")


def test_per_line_is_a_keyword_not_a_declaration():
    toks = tokens("    rounding half_up 0.01 per line\n    amount 1 CZK\n")
    assert (Keyword, "line") in toks and (Keyword, "amount") in toks


def test_unclosed_string_ends_with_its_line():
    toks = tokens('define x = "open\ndefine y = 1\n')
    assert (Keyword.Declaration, "define") in toks[3:]


def test_highlight_lines_renders_the_requested_lines():
    lines = SAMPLE.splitlines()
    target = lines.index("tier base_rate:") + 1
    out = to_ansi(highlight_lines(SAMPLE, [target, target + 1, target + 4]), width=200)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "\x1b[" in out
    for n in (target, target + 1, target + 4):
        assert re.search(rf"^ *{n} +{re.escape(lines[n - 1])}$", plain, re.M), (n, plain)
    assert lines[target + 1] not in plain  # line target+2 was not asked for


def test_highlight_lines_clamps_out_of_range_lines():
    out = to_ansi(highlight_lines("define a = 1\n", [0, 1, 7], context=2))
    assert "define a = 1" in re.sub(r"\x1b\[[0-9;]*m", "", out)


# ─────────────────────── payment periods, list days, a member's own events ───────────────────────

V2 = '''contract "GP registration fee":
    currency EUR
    list as of quarter_start
    age as of quarter_start
end
inputs:
    event allowed: money
    member events: number
end
line registration "Registration fee":
    amount sum of registration_fee over members
    rate per quarter
    paid quarterly
end
line fee "Fee":
    amount 10 EUR
    paid monthly
end
line out_of_hours "Out of hours":
    amount 2400 EUR
    rate per year
    paid in June, December
end
line stop_loss "Individual stop-loss":
    amount sum of 80% of max(0 USD, sum of event.allowed over member events during year - 150000 USD) over members
    rate per year
    paid in December
end
define visits = count of member events during quarter where event.code = "GP"
define this_month = sum of event.allowed over member events
pool quality "Quality payment":
    amount 10% of sum of registration over year
    paid 50% in H1, rest in December when measure.quality_met
end
pool parts "In parts":
    amount 1200 EUR
    paid in Q2, H2, March
end
define q = calendar.quarter_start
'''


def test_every_new_construct_lexes_without_errors_or_loss():
    toks = list(CapLexer(stripnl=False).get_tokens(V2))
    assert "".join(v for _, v in toks) == V2
    assert not [v for t, v in toks if t in Error]
    assert not [v for t, v in toks if t is Name and v in ("list", "rate", "during", "quarterly", "monthly")]


@pytest.mark.parametrize("text, kind", [
    ("list", Keyword),
    ("rate", Keyword),
    ("during", Keyword),
    ("quarter_start", Name.Constant),
    ("quarterly", Name.Constant),
    ("monthly", Name.Constant),
    ("June", Name.Constant),
    ("December", Name.Constant),
    ("March", Name.Constant),
    ("H1", Name.Constant),
    ("H2", Name.Constant),
    ("Q2", Name.Constant),
    ("quarter", Keyword.Type),  # `rate per quarter`, `during quarter`: a period, like the unit after `per`
    ("year", Keyword.Type),
    ("events", Keyword.Type),
    ("per", Keyword),
])
def test_new_token_kinds(text: str, kind):
    kinds = {t for t, v in tokens(V2) if v == text}
    assert kind in kinds, (text, kinds)


def test_member_events_is_a_source_like_members():
    toks = tokens("    amount sum of 1 USD * count of member events during year over members\n")
    i = toks.index((Keyword.Type, "member"))
    assert toks[i:i + 4] == [(Keyword.Type, "member"), (Keyword.Type, "events"), (Keyword, "during"),
                             (Keyword.Type, "year")]
    assert toks[-1] == (Keyword.Type, "members")
    # a member input named `events` stays a declaration; `member.x` stays an attribute
    assert tokens("    member events: number\n")[:2] == [(Name.Builtin, "member"), (Name.Variable, "events")]
    assert tokens("member.events")[2] == (Name.Attribute, "events")


def test_calendar_values_are_attributes():
    assert tokens("calendar.quarter_start") == [(Name.Builtin, "calendar"), (Punctuation, "."),
                                                (Name.Attribute, "quarter_start")]


def test_every_word_of_the_grammar_is_coloured():
    """Each keyword the Lark grammar spells (quoted words and keyword terminals' words) is a token of
    its own kind, never a plain name: a word added to the grammar is added to the lexer."""
    from capdsl.tools.lsp import grammar_keywords

    plain = [w for w in grammar_keywords() if [t for t, v in tokens(w)] == [Name]]
    assert plain == []
