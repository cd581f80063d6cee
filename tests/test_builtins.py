"""The built-in vocabulary (capdsl/language/builtins.py) is the one table the grammar, the checker,
the lowering, the panel requirements, the language server and the docs agree with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from capdsl.data.panel import CANONICAL, ColumnSpec
from capdsl.data.requirements import ALWAYS_READ, MeasureSpec, ParamSpec, requirements
from capdsl.evaluation import tree as t
from capdsl.language import builtins as b
from capdsl.language.check_expr import BUILTIN_TYPES, OPEN_ENDS
from capdsl.language.syntax import grammar_text
from capdsl.language.units import of_kind
from capdsl.pipeline import compile_source
from capdsl.errors import Source
from capdsl.tools.lsp import analyse, completions, grammar_keywords, hover_markdown

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE_DOC = ROOT / "docs" / "language.md"


def _terminal(name: str) -> set[str]:
    """The words a keyword terminal of the grammar accepts: `NAME.2: /(a|b|c)(?!\\w)/`."""
    found = re.search(rf"^{name}(?:\.\d+)?:\s*/\(([\w|]+)\)\(\?!\\w\)/", grammar_text(), re.M)
    assert found, f"the grammar has no terminal {name}"
    return set(found.group(1).split("|"))


def test_the_grammar_spells_the_age_and_exposure_rules_and_scopes_of_the_table():
    assert _terminal("AGE_RULE") == set(b.AGE_RULES)
    # `exposure` names the rules of a month; `list as of` those taking the list on a quarter's or year's day
    assert _terminal("EXPOSURE") == {name for name, r in b.EXPOSURE_RULES.items() if r.period == "month"}
    assert set(b.LIST_DAYS) <= _terminal("AGE_RULE") and set(b.LIST_DAYS.values()) <= set(b.EXPOSURE_RULES)
    assert {r.period for r in b.EXPOSURE_RULES.values()} <= set(b.PERIOD_MONTHS)
    assert _terminal("FREQUENCY") == set(b.FREQUENCIES)
    assert _terminal("PERIOD_WORD") == set(b.PERIOD_MONTHS)
    assert _terminal("SCOPE") == set(b.SCOPES)
    assert b.DEFAULT_AGE_RULE in b.AGE_RULES and b.DEFAULT_EXPOSURE in b.EXPOSURE_RULES


def test_every_built_in_reads_a_standard_column_or_is_derived():
    for key, builtin in b.BUILTINS.items():
        assert builtin.kind in b.KINDS, key
        if builtin.column is None:
            continue
        column = b.standard_column(builtin.scope, builtin.column)
        assert column is not None and column.kind == builtin.kind, key
    for table, columns in b.STANDARD_COLUMNS.items():
        for column in columns:
            if column.read_as is not None:
                scope, name = column.read_as.split(".")
                assert b.BUILTINS[(scope, name)].column == column.name, column
            assert column.meaning or column.read_as is None, column
    assert set(b.OPTIONAL_FIELDS) == {k for k, x in b.BUILTINS.items() if x.missing}
    assert set(b.TABLE_OF_SCOPE) == set(b.SCOPES) - {"param", "calendar"}


def test_the_checker_types_every_built_in_from_the_table():
    assert set(BUILTIN_TYPES) == set(b.BUILTINS)
    for key, builtin in b.BUILTINS.items():
        assert BUILTIN_TYPES[key] == of_kind(builtin.kind), key
    assert set(OPEN_ENDS) <= set(b.OPTIONAL_FIELDS)


def test_the_panel_loader_reads_the_standard_columns_of_the_table():
    assert list(CANONICAL) == list(b.STANDARD_COLUMNS)
    for table, columns in b.STANDARD_COLUMNS.items():
        assert CANONICAL[table] == [ColumnSpec(c.name, c.kind, c.required, c.default) for c in columns]
        assert ALWAYS_READ[table] == {c.name for c in columns if c.always_read}


USES_EVERY_BUILTIN = """contract "every built-in":
    currency EUR
end
inputs:
    member risk: number = 1
    measure quality: number
    param rate: EUR per member = 10 EUR per member
end
define born = if member.birth_date < 1950-01-01 then 1 else 0
define enrolled = if (member.enrolled_from is missing or member.enrolled_from < 2011-01-01) \\
    and (member.enrolled_to is missing or member.enrolled_to > 2011-12-31) then 1 else 0
define women = if member.sex is present and member.sex = "F" then 1 else 0
define named = if member.id = "M1" or practice.id = "P1" then 1 else 0
line members "Members" = sum of param.rate * member.risk * (born + enrolled + women + named) over members \\
    where member.age >= 0
line events "Events" = sum of 1 EUR * event.quantity over events \\
    where event.code = "A" and event.date >= 2011-01-01 and event.member is present
line quality "Quality":
    amount 5 EUR * measure.quality
    applies when measure.quality is present
end
"""


def test_the_lowering_reads_each_built_in_from_its_column_and_requirements_skip_the_columns_always_read():
    _, program = compile_source(Source(USES_EVERY_BUILTIN, "every.cap"))
    cols = {(c.table, c.name): c for node in _nodes(program) for c in t.walk(node) if isinstance(c, t.Col)}
    for builtin in b.BUILTINS.values():
        col = cols[(builtin.scope, builtin.tree_column)]
        assert col.kind == builtin.kind, builtin
    read = {(c.table, c.name) for c in program.columns}
    assert ("member", "age") not in read  # derived, not read
    reqs = requirements(program)
    members = {c.name: c for c in reqs.members}
    assert "sex" in members and members["sex"].needed_by == "built-in"  # not read by every evaluation
    assert {"member_id", "birth_date", "enrolled_from", "enrolled_to"}.isdisjoint(members)
    assert {c.name for c in reqs.events} == set() and "risk" in members
    assert isinstance(reqs.measures["quality"], t.MeasureDecl) and reqs.measures["quality"].kind == "decimal"
    assert isinstance(reqs.params["rate"], t.ParamDecl) and reqs.params["rate"].unit == "EUR per member"


def _nodes(program: t.Program):
    for d in program.definitions.values():
        yield d.expr
    for line in program.lines:
        yield from (x for x in (line.amount, line.applies, line.basis) if x is not None)


def test_hand_written_specs_have_the_fields_of_the_tree_records():
    for spec, record in ((MeasureSpec, t.MeasureDecl), (ParamSpec, t.ParamDecl)):
        assert spec.__dataclass_fields__.keys() == record.__dataclass_fields__.keys()


@pytest.fixture(scope="module")
def every():
    return analyse(USES_EVERY_BUILTIN, "every.cap")


@pytest.mark.parametrize("scope", ["member", "practice", "event"])
def test_the_language_server_completes_every_built_in_of_a_scope(every, scope):
    line = USES_EVERY_BUILTIN.count("\n") + 1
    probe = Source(USES_EVERY_BUILTIN + f"define x = {scope}.\n", "every.cap")
    analysis = type(every)(probe, [], every.contract, every.index)
    got = {c.label: c.detail for c in completions(analysis, line, len(f"define x = {scope}.") + 1)}
    for (s, name), builtin in b.BUILTINS.items():
        if s == scope:
            assert got[name].startswith("built-in: " + of_kind(builtin.kind).describe()), name
            assert ("may be empty" in got[name]) == ((s, name) in b.OPTIONAL_FIELDS), name


def test_the_language_server_describes_every_built_in_and_rule(every):
    lines = USES_EVERY_BUILTIN.splitlines()
    for (scope, name), builtin in b.BUILTINS.items():
        written = f"{scope}.{name}"
        row = next(i for i, text in enumerate(lines) if re.search(rf"{re.escape(written)}(?!\w)", text))
        column = re.search(rf"{re.escape(written)}(?!\w)", lines[row]).start() + 1
        text, _ = hover_markdown(every, row + 1, column)
        assert text.startswith(f"**built-in** `{written}`") and builtin.doc[1:] in text, written
    keywords = {c.label: c.detail for c in completions(every, 1, 1) if c.kind == "keyword"}
    for name, rule in b.AGE_RULES.items():
        assert name in grammar_keywords()
        assert keywords[name].startswith(f"age rule: {rule.doc}")
    for name, rule in b.EXPOSURE_RULES.items():
        assert name in grammar_keywords()
        if rule.period == "month":
            assert keywords[name] == f"exposure rule: {rule.doc}"
        else:  # `list as of quarter_start`: the word is also an age rule's
            assert keywords[name].endswith(f"list day: {rule.doc}")
    functions = {c.label for c in completions(every, 1, 1) if c.kind == "function"}
    assert functions == set(b.FUNCTIONS)


def test_the_language_doc_names_every_built_in_and_rule():
    text = LANGUAGE_DOC.read_text(encoding="utf-8")
    missing = [x.written for x in b.BUILTINS.values() if not re.search(rf"`{re.escape(x.written)}`", text)]
    missing += [name for name in (*b.AGE_RULES, *b.EXPOSURE_RULES) if name not in text]
    assert missing == [], f"docs/language.md does not mention {missing}"
