"""`capdsl fmt`: golden layouts and the properties that make it safe to run
on every save — idempotent, meaning-preserving, comment-preserving."""

from __future__ import annotations

import dataclasses
import os
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capdsl.language import ast_nodes as n
from capdsl.errors import Source, SyntaxError_
from capdsl.language.fmt import expr, format_diff, format_source, format_text, ident, quote
from capdsl.language.syntax import parse_text

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "fmt"
INPUTS = sorted(p for p in GOLDEN.glob("*.cap") if not p.name.endswith(".expected.cap"))
CONTRACTS = sorted((ROOT / "contracts").rglob("*.cap")) + sorted((ROOT / "docs").rglob("*.cap"))
SAMPLES = INPUTS + CONTRACTS


def doc_blocks() -> list[tuple[str, str]]:
    """The ```cap blocks of the documentation that parse on their own."""
    out = []
    for md in sorted((ROOT / "docs").rglob("*.md")):
        for k, m in enumerate(re.finditer(r"^```cap\n(.*?)^```", md.read_text(encoding="utf-8"), re.M | re.S)):
            try:
                parse_text(m.group(1))
            except SyntaxError_:
                continue
            out.append((f"{md.stem}-{k}", m.group(1)))
    return out


def structure(text: str) -> tuple:
    """The AST, with header clauses as a set: fmt writes them in a fixed order."""
    contract = parse_text(text)
    return tuple(dataclasses.replace(d, written=tuple(sorted(d.written))) if isinstance(d, n.Header) else d
                 for d in contract.decls)


def comment_texts(text: str) -> list[str]:
    return sorted(c.text for c in parse_text(text).comments)


def check_properties(text: str) -> str:
    out = format_text(text)
    assert format_text(out) == out, "not idempotent"
    assert structure(out) == structure(text), "meaning changed"
    assert comment_texts(out) == comment_texts(text), "comments lost"
    return out


# ───────────────────────────── goldens ─────────────────────────────

@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_golden(path: Path):
    expected_path = path.with_name(path.stem + ".expected.cap")
    out = format_source(Source(path.read_text(encoding="utf-8"), str(path)))
    if os.environ.get("CAPDSL_UPDATE_GOLDENS") == "1":
        expected_path.write_text(out, encoding="utf-8")
    assert out == expected_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_properties_on_files(path: Path):
    check_properties(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("text", [pytest.param(t, id=i) for i, t in doc_blocks()])
def test_properties_on_documentation_examples(text: str):
    check_properties(text)


def test_goldens_are_fixed_points():
    for path in GOLDEN.glob("*.expected.cap"):
        text = path.read_text(encoding="utf-8")
        assert format_text(text) == text, path.name


def test_bundled_contract_is_canonical():
    path = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
    text = path.read_text(encoding="utf-8")
    assert format_text(text) == text


# ───────────────────────────── layout details ─────────────────────────

def test_defaults_stay_unwritten_and_header_order_is_fixed():
    out = format_text('contract "C":\n  ref "r"\n  currency EUR\nend\n')
    assert out == 'contract "C":\n    currency EUR\n    ref "r"\nend\n'


def test_blank_lines_between_items():
    text = 'define a = 1\ndefine b = 2\n\n\n\ndefine c = 3\ntier t:\n 1 otherwise\nend\ndefine d = 4\n'
    assert format_text(text) == ('define a = 1\ndefine b = 2\n\ndefine c = 3\n\ntier t:\n    1 otherwise\nend\n\n'
                                 'define d = 4\n')


def test_blank_lines_inside_blocks():
    text = 'tier t:\n\n  1 when a\n\n\n  2 when b\n\nend\n'
    assert format_text(text) == 'tier t:\n    1 when a\n\n    2 when b\nend\n'


def test_comments_keep_their_place():
    text = ("# file\n\n# about t\ntier t:   # opener\n  # first\n  1 when a  # one\n  22 when b # two\n"
            "  # last\nend # closing\n# tail\n")
    assert format_text(text) == ("# file\n\n# about t\ntier t:  # opener\n    # first\n    1 when a   # one\n"
                                 "    22 when b  # two\n    # last\nend  # closing\n# tail\n")


def test_continuations_are_kept_where_the_author_broke_the_line():
    text = 'define a = 1 + \\\n    2 \\\n  # on the last line\n'
    assert format_text(text) == "define a = 1 + \\\n    2  # on the last line\n"
    text = 'tier t:\n 1 when (a) and \\\n b  ==  c\n 2 otherwise\nend\n'
    assert format_text(text) == "tier t:\n    1 when a and \\\n        b = c\n    2 otherwise\nend\n"


def test_crlf_and_missing_newline():
    assert format_text("define a=1\r\ndefine b=2") == "define a = 1\ndefine b = 2\n"


def test_empty_and_comment_only():
    assert format_text("") == ""
    assert format_text("\n\n# only\n\n") == "# only\n"


def test_hash_inside_string_is_not_a_comment():
    text = 'define a = "#1"  # real\n'
    assert format_text(text) == text


def test_unparsable_input_raises_the_parse_error():
    with pytest.raises(SyntaxError_) as info:
        format_text("define = 1\n")
    assert info.value.diagnostics[0].code.startswith("E01")


def test_format_diff():
    diff = format_diff("a.cap", "define a=1\n", "define a = 1\n")
    assert diff.startswith("--- a.cap (original)\n+++ a.cap (formatted)\n")
    assert "-define a=1\n+define a = 1\n" in diff
    assert format_diff("a.cap", "x\n", "x\n") == ""
    assert "\\ No newline at end of file" in format_diff("a.cap", "define a=1", "define a = 1\n")


@pytest.mark.parametrize("source, printed", [
    ("a - (b - c)", "a - (b - c)"),
    ("(a - b) - c", "a - b - c"),
    ("a + (b + c)", "a + (b + c)"),
    ("(a * b) / c", "a * b / c"),
    ("a / (b * c)", "a / (b * c)"),
    ("-(a)", "-a"),
    ("-(a * b)", "-(a * b)"),
    ("(a or b) and c", "(a or b) and c"),
    ("a or (b and c)", "a or b and c"),
    ("a and (b and c)", "a and b and c"),
    ("not (a = b)", "not a = b"),
    ("not (a and b)", "not (a and b)"),
    ("(a = b) = c", "(a = b) = c"),
    ("a == b", "a = b"),
    ("15 % of x", "15% of x"),
    ("1 +(if a then b else c)", "1 + (if a then b else c)"),
    ("(sum of x over members where y) * 2", "(sum of x over members where y) * 2"),
    ("(sum of x over members) * 2", "sum of x over members * 2"),
    ("(a + b) in (1, 2,)", "a + b in (1, 2)"),
    ("(a in (1)) = b", "(a in (1)) = b"),
    ("a + b in (1)", "a + b in (1)"),
    ("max((a), (b))", "max(a, b)"),
])
def test_parentheses(source: str, printed: str):
    out = format_text(f"define x = {source}\n")
    assert out == f"define x = {printed}\n"
    check_properties(f"define x = {source}\n")


# ───────────────────────────── generated expressions ──────────────────

NAMES = st.sampled_from(["a", "b", "rate", "základná_sadzba", "díjszabás", "x_1"])
UNITS = st.sampled_from([None, n.UnitExpr("%"), n.UnitExpr("CZK"), n.UnitExpr("points"),
                         n.UnitExpr("CZK", "point"), n.UnitExpr("EUR", "member"), n.UnitExpr("hours")])
NUMBER_TEXT = st.from_regex(r"\A(0|[1-9][0-9]{0,5})(\.[0-9]{1,4})?\Z")
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
               max_size=12)


@st.composite
def quantities(draw):
    text = draw(NUMBER_TEXT)
    u = draw(UNITS)
    value = Decimal(text) / 100 if u is not None and u.word == "%" else Decimal(text)
    return n.Quantity(value, text, u)


LEAVES = st.one_of(
    quantities(),
    TEXT.map(n.String),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)).map(n.DateLit),
    st.booleans().map(n.BoolLit),
    NAMES.map(n.Name),
    st.builds(n.Attr, st.sampled_from(["member", "practice", "event", "measure"]), NAMES),
    st.builds(n.CountOf, st.sampled_from(["members", "events"])),
)


def _boolop(op: str, children):
    def not_same(e):
        return not (isinstance(e, n.BoolOp) and e.op == op)
    return st.lists(children.filter(not_same), min_size=2, max_size=3).map(lambda items: n.BoolOp(op, tuple(items)))


def _extend(children):
    return st.one_of(
        st.builds(n.Neg, children),
        st.builds(n.Binary, st.sampled_from(["+", "-", "*", "/", "of"]), children, children),
        st.builds(n.Compare, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), children, children),
        _boolop("and", children),
        _boolop("or", children),
        st.builds(n.Not, children),
        st.builds(n.InList, children, st.lists(children, min_size=1, max_size=3).map(tuple)),
        st.builds(n.InTable, children, NAMES.map(n.Name)),
        st.builds(n.Present, children, st.booleans()),
        st.builds(n.IfExpr, children, children, children),
        st.builds(n.Call, st.sampled_from(["min", "max", "clamp", "abs"]),
                  st.lists(children, min_size=1, max_size=3).map(tuple)),
        st.builds(n.SumOver, children, st.sampled_from(["members", "events", "year"]),
                  st.none() | children),
        st.builds(n.CountOf, st.sampled_from(["members", "events"]), children),
    )


EXPRS = st.recursive(LEAVES, _extend, max_leaves=8)


# hypothesis describes a recursive strategy by its whole expansion (37 kB here) and warns that building
# the description is costly: a cost of a few milliseconds, not a problem with the test
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRS)
def test_generated_expressions_round_trip(e):
    text = f"define x = {expr(e)}\n"
    assert parse_text(text).decls[0].expr == e, text
    assert format_text(text) == text


@settings(max_examples=100, deadline=None)
@given(EXPRS, EXPRS)
def test_generated_expressions_in_block_slots(value, cond):
    text = (f"tier t:\n    {expr(value)} when {expr(cond)}\n    {expr(value)} otherwise\nend\n\n"
            f"line l \"L\":\n    amount {expr(value)}\n    applies when {expr(cond)}\n    basis {expr(value)}\nend\n")
    contract = parse_text(text)
    assert contract.decls[0].entries[0] == n.Choice(value, cond)
    assert contract.decls[1].amount == value and contract.decls[1].applies == cond
    assert format_text(text) == text


@given(TEXT)
def test_strings_round_trip(s):
    assert parse_text(f"define x = {quote(s)}\n").decls[0].expr == n.String(s)


@given(st.one_of(TEXT.filter(bool), st.sampled_from(["P1", "end", "members", "ABC", "Q1", "P 1", "1P", "pro_rata"])))
def test_ids_round_trip(practice):
    text = f'example "e":\n    practice {ident(practice)}\nend\n'
    assert parse_text(text).decls[0].entries[0].practice == practice


# ───────────────────────────── generated layouts ──────────────────────

COMMENT = TEXT.map(lambda t: "#" + t.replace("\n", " ").replace("\t", " "))


@st.composite
def relayouts(draw, text: str):
    """The same contract with other indentation, blank lines and comments."""
    out = []
    continued = False
    for raw in text.splitlines():
        if not continued and draw(st.integers(0, 5)) == 0:
            out.append(" " * draw(st.integers(0, 6)) + draw(COMMENT))
        if not continued and draw(st.integers(0, 5)) == 0:
            out.append("")
        line = raw.strip()
        continued = line.endswith("\\")
        if continued:
            pass
        elif line and not line.startswith("#") and "#" not in line and draw(st.integers(0, 3)) == 0:
            line += " " * draw(st.integers(0, 3)) + draw(COMMENT)
        elif line and not line.startswith("#") and "#" not in line and " = " in line and draw(st.booleans()) \
                and ('"' not in line or line.index(" = ") < line.index('"')):  # never inside a string
            line = line.replace(" = ", " = \\\n        ", 1)
        out.append(" " * draw(st.integers(0, 8)) + line)
    return "\n".join(out) + "\n"


LAYOUT_SOURCES = [p.read_text(encoding="utf-8") for p in SAMPLES]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LAYOUT_SOURCES).flatmap(relayouts))
def test_generated_layouts(text):
    out = check_properties(text)
    assert not re.search(r"\n\n\n", out)
    assert not out.startswith("\n")
