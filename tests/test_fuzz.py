"""Fuzzing the front end: parse → check → lower, and fmt on whatever parses.

The invariant (tests/fuzz_support.py, `run_one`): any text gives either a
checked, lowered program or a `CapError` whose diagnostics have a code and
spans inside the source (1 ≤ line ≤ lines + 1) and render; never another
exception, never a hang (SIGALRM limit per input). On anything that parses,
`capdsl fmt` is idempotent and keeps the AST.

Inputs: contracts generated from the grammar's constructs (mostly well
typed, so the checker and lowering run too), the same mutated, every file of
contracts/ mutated (byte flips, truncation, token swaps/deletions/
duplications, odd Unicode, huge numbers, deep nesting, long lines, NUL,
CRLF, tabs), token soup and arbitrary text. The in-suite run is bounded
(≈ 60 s with -n 2); `benchmarks/fuzz.py` is the long run (see
docs/reliability.md). Every bug the fuzzer found has a regression test at
the end of this file, with its minimal input.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_support as F
from capdsl.errors import CapError, Source

def fuzz(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)

generated = st.builds(F.contract, st.randoms(use_true_random=False))


def _mutated(base: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(lambda text, r: F.mutate(r, text)[0], base, st.randoms(use_true_random=False))


corpus = st.sampled_from(sorted(F.CONTRACT_TEXTS.values()))

GRAMMAR_TOKENS = F.KEYWORDS + F.CURRENCIES + F.UNIT_WORDS + F.STRINGS + [
    ":", "(", ")", ",", "=", "+", "-", "*", "/", "%", ">=", "<=", "!=", "==", "<", ">", ".", "\n", "\\\n",
    "1", "0.5", "2011-03-01", "2011-Q2", "Q4", "x", "member.age", "practice.id", "# c", "min", "max", "clamp",
    "abs", "half_up", "month_start", "pro_rata", "highest", "multiply", "1e400", "9" * 45]
soup = st.lists(st.sampled_from(GRAMMAR_TOKENS), max_size=80).map(lambda ts: " ".join(ts) + "\n")
header = 'contract "x":\n    currency CZK\nend\n'


def run(text: str) -> str:
    return F.run_one(text, limit=10.0)


@fuzz(150)
@given(generated)
def test_generated_contracts(text):
    run(text)


@fuzz(150)
@given(_mutated(generated))
def test_mutated_generated_contracts(text):
    run(text)


@fuzz(25)
@given(st.randoms(use_true_random=False))
@pytest.mark.parametrize("name", sorted(F.CONTRACT_TEXTS))
def test_mutated_library_contracts(name, r):
    run(F.mutate(r, F.CONTRACT_TEXTS[name])[0])


@fuzz(150)
@given(soup)
def test_token_soup(text):
    run(text)
    run(header + text)


@fuzz(100)
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    run(text)
    run(header + "define x = " + text)


def test_generated_contracts_mostly_check():
    """The generator is useful only if many of its contracts get through the checker and lowering."""
    import random

    outcomes = [run(F.contract(random.Random(seed))) for seed in range(60)]
    assert outcomes.count("ok") >= 15, outcomes


def test_every_library_contract_passes_the_oracle():
    for name, text in F.CONTRACT_TEXTS.items():
        assert run(text) == "ok", name


# ───────────────────────────── the edge cases, by name ─────────────────────────────

ADULT = F.CONTRACT_TEXTS["cz_vzp_2011_adult.cap"]
EDGES = {
    "1e400": header + "define x = 1e400\n",
    "500-digit int": header + "define x = " + "9" * 500 + "\n",
    "10^500 as digits": header + "define x = 1" + "0" * 500 + " CZK\n",
    "long decimal": header + "define x = 0." + "0" * 500 + "1\n",
    "1000 parens": header + "define x = " + "(" * 1000 + "1" + ")" * 1000 + "\n",
    "100 parens (the limit)": header + "define x = " + "(" * 100 + "1 CZK" + ")" * 100 + "\nline l \"L\" = x\n",
    "unclosed parens": header + "define x = " + "(" * 5000 + "\n",
    "1000 nested ifs": header + "define x = " + "if true then " * 1000 + "1" + " else 2" * 1000 + "\n",
    "5000 nots": header + "define x = " + "not " * 5000 + "true\n",
    "3000 minus": header + "define x = " + "-" * 3000 + "1\n",
    "3000 min(": header + "define x = " + "min(" * 3000 + "1" + ", 2)" * 3000 + "\n",
    "long sum": header + "define x = " + " + ".join(["1 CZK"] * 5000) + "\nline l \"L\" = x\n",
    "100k-char line": header + "define x = " + "a" * 100_000 + "$\n",
    "100k-char string": header + 'line l "' + "x" * 100_000 + '" = 1 CZK\n',
    "100k-char comment": header + "# " + "y" * 100_000 + "\n",
    "2000 continuations": header + "define x = 1" + " \\\n" * 2000 + "\n",
    "NUL": header.replace("x", "\x00"),
    "NUL mid-contract": ADULT[:300] + "\x00" + ADULT[300:],
    "CRLF": ADULT.replace("\n", "\r\n"),
    "CR only": ADULT.replace("\n", "\r"),
    "tabs": ADULT.replace("    ", "\t"),
    "BOM in text": "\ufeff" + ADULT,
    "lone surrogate": header + "define x\udcff = 1\n",
    "surrogate-escaped bytes": (ADULT.encode()[:200] + b"\xff\xfe\x80" + ADULT.encode()[200:]).decode(
        "utf-8", "surrogateescape"),
    "RTL override": header + "define x\u202e = 1\n",
    "zero-width in name": header + "define a\u200bb = 1\n",
    "line separator": header + "define x = 1\u2028define y = 2\n",
    "vertical tab and form feed": header + "define x = 1\x0b\x0cdefine y = 2\n",
    "only newlines": "\n" * 10000,
    "empty": "",
    "truncated": ADULT[: len(ADULT) // 2],
    "import os": "import os\n",
    "__import__": header + "define x = __import__(\"os\")\n",
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_edge_case(name):
    start = time.monotonic()
    run(EDGES[name])
    assert time.monotonic() - start < 10


# ───────────────────────────── regressions: bugs the fuzzer found ─────────────────────────────

def test_regression_quadratic_previous_word_on_a_long_line():
    """syntax._previous_word ran a `[^\\s]+$` search over the whole text before an error: quadratic,
    a minute on a 100k-character word (benchmarks/fuzz.py: nul+longline)."""
    from capdsl.language.syntax import _previous_word, parse

    text = header + "define x = " + "a" * 100_000 + "\x00\n"
    start = time.monotonic()
    with pytest.raises(CapError) as info:
        parse(Source(text))
    assert time.monotonic() - start < 5
    F.check_diagnostics(info.value, text)
    start = time.monotonic()
    _previous_word("a" * 100_000 + "$", 100_000)
    assert time.monotonic() - start < 1


def test_run_one_is_the_invariant():
    """The oracle itself: a clean contract is 'ok', a broken one a located CapError."""
    assert run(header + 'line l "L" = 1 CZK\n') == "ok"
    assert run("contract") == "syntax"
    with pytest.raises(CapError):
        from capdsl.language.syntax import parse
        parse(Source("contract"))


def test_regression_nested_ifs_format_within_the_nesting_limit():
    """101 `if`s nested in `then` branches parsed (tree depth under 300), but fmt parenthesises each
    nested `if`, giving 101 parentheses: its own output failed E0104. Now E0104 counts if/sum/count
    forms too, so what parses formats to what parses."""
    from capdsl.language.fmt import format_text
    from capdsl.language.syntax import parse_text

    def nested(k: int) -> str:
        return header + "define x = " + "if true then " * k + "1 CZK" + " else 2 CZK" * k + "\n"

    with pytest.raises(CapError) as info:
        parse_text(nested(101))
    assert info.value.code == "E0104"
    F.check_diagnostics(info.value, nested(101))
    out = format_text(nested(100))
    assert F.structure(parse_text(out)) == F.structure(parse_text(nested(100)))
    assert run(nested(100)) in ("ok", "check")
