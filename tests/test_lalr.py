"""The fast LALR driver (capdsl.language.lalr) against Lark's own driver and tree.

The fast path may decline an input (it then goes through Lark), but it must
never accept an input Lark rejects, and what it accepts must be the same
AST, spans included."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_support as F
from capdsl.language import syntax
from capdsl.errors import Source, SyntaxError_
from capdsl.language.lalr import Fallback

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "contracts").glob("*.cap"))
DOC_BLOCKS = [b for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "errors.md"
              for b in p.read_text(encoding="utf-8").split("```cap")[1:]]


def exact(value):
    """A comparable image of an AST with every span, which node equality leaves out."""
    if dataclasses.is_dataclass(value):
        return (type(value).__name__,) + tuple(
            exact(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return tuple(exact(v) for v in value)
    return (type(value).__name__, value)


def fast_and_slow(text: str):
    """(fast result or None if declined, slow result or the SyntaxError_ Lark's path raised)."""
    if not text.endswith("\n"):
        text += "\n"
    source = Source(text, "t.cap")
    try:
        fast = syntax._driver().parse(text, syntax._Builder(source))
    except Fallback:
        fast = None
    try:
        slow = syntax._parse_with_lark(text, source)
    except SyntaxError_ as exc:
        slow = exc
    return fast, slow


def agree(text: str, must_take: bool = False) -> None:
    fast, slow = fast_and_slow(text)
    if isinstance(slow, SyntaxError_):
        assert fast is None, f"fast path accepted what Lark rejects: {slow}"
        return
    if fast is None:
        assert not must_take, "fast path declined a valid contract"
        return
    assert exact(fast) == exact(slow)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_contracts_take_the_fast_path_to_the_same_ast(path):
    agree(path.read_text(encoding="utf-8"), must_take=True)


def test_documentation_examples_agree():
    assert DOC_BLOCKS
    for block in DOC_BLOCKS:
        agree(block.split("```")[0])


def test_a_large_generated_contract_agrees():
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_parse import generate_contract

    agree(generate_contract(2000), must_take=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_generated_contracts_agree(r: random.Random):
    agree(F.contract(r), must_take=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.sampled_from(LIBRARY))
def test_mutated_contracts_agree(r: random.Random, path):
    text, _ = F.mutate(r, path.read_text(encoding="utf-8"))
    agree(text)


@pytest.mark.parametrize("text", [
    "",                                   # empty file
    "\n\n# only a comment\n",
    "define x = 1\r\n",                   # CRLF
    "define x = 1   \t\n",                # trailing white space
    "define x = (1 + \\\n 2)\n",          # line continuation
    "define x = 1 # note\nline a \"A\" = x\n",
    "define x = " + "(" * 100 + "1" + ")" * 100 + "\n",
    "define x = " + " + ".join(["1"] * 400) + "\n",   # deeper than the fast path's height bound
    "define x = " + "if a then 1 else " * 101 + "0\n",
    "contract \"c\":\n    currency CZK\n    currency EUR\nend\n",  # a builder error
])
def test_edge_cases_agree(text):
    agree(text)


def test_nesting_beyond_the_height_bound_still_parses_through_lark():
    # 100 nested if-forms are within the limit, but past the fast path's conservative bound
    text = "define x = " + "if a then 1 else " * 100 + "0\n"
    fast, slow = fast_and_slow(text)
    assert fast is None and not isinstance(slow, SyntaxError_)
    assert syntax.parse_text(text).decls
