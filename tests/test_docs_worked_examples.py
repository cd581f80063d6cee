"""The worked examples of the documentation hold: every ```cap block of docs/ that is a whole
contract (a `contract` header) with embedded examples is checked as `capdsl check` does, and each
of its `example` blocks — the amounts the text states, computed by hand — is run on the reference
interpreter and on DuckDB."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from capdsl.errors import Source
from capdsl.evaluation.lower import lower
from capdsl.pipeline import check_source
from capdsl.tools.examples import run_example

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```cap\n(.*?)```", re.S)
ENGINES = ["python", "duckdb"]


def worked_examples():
    for path in sorted((ROOT / "docs").rglob("*.md")):
        if path.name == "errors.md":  # its examples show mistakes on purpose
            continue
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            block = m.group(1)
            if re.match(r"contract ", block) and re.search(r"^example ", block, re.M):
                line = text[:m.start()].count("\n") + 2
                yield pytest.param(block, f"{path.relative_to(ROOT)}:{line}", id=f"{path.name}:{line}")


CASES = list(worked_examples())


def test_the_guide_has_worked_examples_of_the_new_constructs():
    blocks = "\n".join(case.values[0] for case in CASES)
    for construct in ("rate per quarter", "rate per year", "paid quarterly", "paid in June, December",
                      "list as of quarter_start", "over member events during year", "paid monthly",
                      "in H1"):
        assert construct in blocks, construct


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("block, where", CASES)
def test_worked_example_holds(block: str, where: str, engine: str):
    source = Source(block, where)
    checked = check_source(source)  # raises on any error, as `capdsl check` reports it
    assert not [d for d in checked.warnings if d.is_error]
    program = lower(checked)
    assert checked.contract.examples
    for example in checked.contract.examples:
        outcome = run_example(program, example, source, engine)
        assert (outcome.error, outcome.failures) == (None, []), (where, example.name)
        assert outcome.checks >= 1
