"""`capdsl test --generate`: boundary examples that parse, check, pass today and
fail when a rate changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from capdsl.language import ast_nodes as n
from capdsl.errors import Source
from capdsl.tools.examples import run_example
from capdsl.language.syntax import parse
from capdsl.tools.testgen import Atom, generate, vectors
from validation_helpers import BASE, compile_path, compile_text, variant, write

CONTRACTS = sorted(Path(__file__).resolve().parent.parent.glob("contracts/*.cap"))


def outcomes(text: str, path: str = "t.cap"):
    checked, program = compile_text(text, path)
    return [run_example(program, e, checked.source) for e in checked.contract.examples
            if e.name.startswith("generated: ")]


def test_generated_block_passes_and_covers_every_edge():
    checked, program = compile_text(BASE)
    text = generate(program, checked.contract, checked.source)
    results = outcomes(BASE + "\n" + text)
    assert len(results) == 3 and all(o.passed for o in results), [o.failures or o.error for o in results]
    assert sum(o.checks for o in results) == 2 * 9  # 5 band + 2 tier + 2 modifier cases
    for age in (0, 17, 18, 64, 65):
        assert f"aged {age}\n" in text or f"aged {age} with" in text
    assert "weekly_hours = 30 hours" in text and "weekly_hours = 29.99 hours" in text
    assert "diabetes = true" in text and "diabetes = false" in text
    # one member aged 65+ at the basic tier pays 45 × 2.00
    assert "expect G05 capitation = 90.00 CZK" in text
    assert "`0 to 17` just above; `18 to 64` low edge" in text


def test_a_rate_change_makes_a_generated_case_fail():
    checked, program = compile_text(BASE)
    text = generate(program, checked.contract, checked.source)
    changed = variant(BASE, ("65 and over: 2.00", "65 and over: 2.10"))
    failed = [o for o in outcomes(changed + "\n" + text) if not o.passed]
    assert [o.name for o in failed] == ["generated: bands age_index"]
    messages = [f.message for o in failed for f in o.failures]
    assert any("expected 90.00, got 94.50" in m for m in messages), messages


def test_mcdc_vectors_flip_each_comparison_alone():
    src = Source('contract "x":\n    currency CZK\nend\ndefine c = practice.a >= 1 hour and '
                 '(practice.b or practice.k < 2 days)\n')
    cond = next(d for d in parse(src).decls if isinstance(d, n.Define)).expr
    vecs = vectors(cond)
    a, b, k = Atom("practice", "a", ">=", 1), Atom("practice", "b", "bool"), Atom("practice", "k", "<", 2)
    truths = {(o, tuple(sorted((x.name, v) for x, v in asg.items()))) for o, asg in vecs}
    assert (True, (("a", True), ("b", True), ("k", False))) in truths or \
           (True, (("a", True), ("b", True), ("k", True))) in truths
    assert (False, (("a", False), ("b", True), ("k", False))) in truths  # a alone decides
    assert (False, (("a", True), ("b", False), ("k", False))) in truths  # the `or` false: b and k together
    assert (True, (("a", True), ("b", False), ("k", True))) in truths  # k alone makes the `or` true
    assert all(set(asg) <= {a, b, k} for _, asg in vecs)


def test_conditions_on_aggregates_are_listed_not_guessed():
    text = BASE + 'line big "Large list" :\n    amount 100 CZK\n    applies when count of members >= 1000 members\nend\n'
    text = text.replace('"Large list" :', '"Large list":')
    checked, program = compile_text(text)
    out = generate(program, checked.contract, checked.source)
    assert "# Not generated:" in out and "count of members >= 1000 members" in out


def test_nothing_to_probe():
    text = 'contract "flat":\n    currency CZK\nend\nline cap "Cap" = sum of 10 CZK over members\n'
    checked, program = compile_text(text)
    assert "nothing to probe" in generate(program, checked.contract, checked.source)


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.name)
def test_bundled_contracts(path):
    checked, program = compile_path(path)
    text = generate(program, checked.contract, checked.source)  # raises if a block would not pass
    combined = path.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + text
    assert all(o.passed for o in outcomes(combined, str(path)))


def test_cli_generate_print_append_and_test(tmp_path):
    from capdsl.tools.cli import main
    from capdsl.tools.diff_command import register

    register(main)
    path = write(tmp_path / "c.cap", BASE)
    r = CliRunner().invoke(main, ["test", "--generate", path])
    assert r.exit_code == 0, r.output
    assert 'example "generated: bands age_index":' in r.stdout
    assert Path(path).read_text() == BASE
    r = CliRunner().invoke(main, ["test", "--generate", path, "--append", "--generate-period", "2011-05"])
    assert r.exit_code == 0, r.output
    assert "period 2011-05" in Path(path).read_text()
    r = CliRunner().invoke(main, ["test", path])
    assert r.exit_code == 0, r.output
    assert "3 passed, 0 failed" in r.output
    r = CliRunner().invoke(main, ["test", path, "--append"])
    assert r.exit_code == 1 and "E0914" in r.output


CELLS = '''contract "Cells":
    currency USD
    period month
    age as of month_start
    exposure first_day
end

inputs:
    member category: text
    member region: text
end

cells base by member.category, member.age, member.sex:
    "A", under 21,    any: 100.00 USD
    "A", 21 and over, "F": 200.00 USD
    "A", 21 and over, "M": 210.00 USD
    "B", any,         any: 50.00 USD
end

cells factor by member.region, member.category:
    "N", any: 1.0
    "S", "A": 0.5
    otherwise: 2.0
end

line capitation "Capitation" = sum of base * factor over members
'''


def test_rate_cells_are_probed_row_by_row_and_at_the_edges_between_cells():
    """Each cell row is reached, a numeric key's range edges are probed with the neighbouring row's
    other keys (the 21-year-old lands in a sexed cell, not in a gap), the other table's keys are
    filled so the member falls in one of its cells, and `otherwise` gets a case."""
    checked, program = compile_text(CELLS)
    text = generate(program, checked.contract, checked.source)
    assert "Not generated" not in text, text
    results = outcomes(CELLS + "\n" + text)
    assert [o.name for o in results] == ["generated: cells base", "generated: cells factor"]
    assert all(o.passed for o in results), [o.failures or o.error for o in results]
    for amount in ("100.00", "200.00", "210.00", "50.00"):  # the rows (and factor's "S", "A": 100 × 0.5)
        assert f"capitation = {amount} USD" in text, amount
    assert "row 1, member.age `under 21` just above (excluded)" in text  # age 21: a sexed cell
    assert 'aged 21 with category = "A", sex = "F"' in text
    otherwise = text[text.index("otherwise (values no row lists)"):]
    assert 'region = "other", category = "A"' in otherwise and "capitation = 200.00 USD" in otherwise  # 100 × 2
    changed = variant(CELLS, ('"A", 21 and over, "M": 210.00 USD', '"A", 21 and over, "M": 211.00 USD'))
    failed = [o.name for o in outcomes(changed + "\n" + text) if not o.passed]
    assert failed == ["generated: cells base"]


def test_every_contract_of_the_library_generates_its_cases_without_a_refusal():
    for path in CONTRACTS:
        checked, program = compile_path(path)
        text = generate(program, checked.contract, checked.source)
        assert "not generated, the contract fails on it" not in text, (path.name, text)
