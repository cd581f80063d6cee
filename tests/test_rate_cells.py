"""Rate cells (`cells NAME by k1, k2, …`): parsing, the checker's key types and
coverage of the product of keys (E0410–E0414), lowering into one `Case`, the
formatter's aligned columns, and amounts by hand on the interpreter, DuckDB
and (when installed) PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from capdsl.errors import CapError, CheckError, EvalError, Source
from capdsl.evaluation import tree as t
from capdsl.evaluation.interpret import evaluate as interpret
from capdsl.evaluation.lower import lower
from capdsl.evaluation.periods import parse_period
from capdsl.language import ast_nodes as n
from capdsl.language.check import check
from capdsl.language.fmt import format_source
from capdsl.language.syntax import parse
from capdsl.sql import evaluate
from sql_support import Panel, pg_evaluate

D = Decimal
HEAD = '''contract "Rate cells":
    currency USD
end

inputs:
    member category: text
    member region: text
end
'''
CELLS = HEAD + '''
cells base_rate by member.category, member.age, member.sex ref "illustrative":
    "TANF",         under 1,     any: 512.30 USD
    "TANF",         1 to 20,     any: 180.10 USD
    "TANF",         21 and over, "F": 310.00 USD
    "TANF",         21 and over, "M": 250.00 USD
    ("SSI", "ABD"), any,         any: 1210.00 USD
end

cells region_factor by member.region:
    "NORTH": 1.000
    "METRO": 1.085
end

line capitation "Capitation" = sum of base_rate * region_factor over members
'''


def checked(text: str):
    source = Source(text, "cells.cap")
    return check(parse(source), source)


def codes(text: str) -> list[str]:
    source = Source(text, "cells.cap")
    try:
        result = check(parse(source), source)
    except CapError as exc:
        return [d.code for d in exc.diagnostics]
    return [w.code for w in result.warnings]


def messages(text: str) -> list[str]:
    source = Source(text, "cells.cap")
    with pytest.raises(CheckError) as info:
        check(parse(source), source)
    return [d.message for d in info.value.diagnostics]


def table(rows: str, by: str = "member.category, member.age, member.sex", otherwise: bool = False) -> str:
    body = "".join(f"    {r}\n" for r in rows.strip().splitlines())
    if otherwise:
        body += "    otherwise: 0 USD\n"
    return HEAD + f"\ncells rate by {by}:\n{body}end\n\nline cap \"Cap\" = sum of rate over members\n"


# ─────────────────────────────── parse ───────────────────────────────

def test_parse_keys_rows_and_forms():
    decl = next(d for d in parse(Source(CELLS, "c.cap")).decls if isinstance(d, n.Cells))
    assert decl.name == "base_rate" and len(decl.keys) == 3 and decl.ref.text == "illustrative"
    first, ssi = decl.entries[0], decl.entries[4]
    assert [k.form for k in first.keys] == ["values", "range", "any"]
    assert first.keys[0].values == ("TANF",) and first.keys[1].range.form == "under"
    assert ssi.keys[0].values == ("SSI", "ABD")


def test_bool_keys_and_otherwise_parse():
    text = HEAD + '''
inputs:
    member pregnant: bool = false
end

cells rate by member.pregnant, member.category:
    true,  any:    400 USD
    false, "TANF": 200 USD
    otherwise: 0 USD
end
'''
    decl = next(d for d in parse(Source(text, "c.cap")).decls if isinstance(d, n.Cells))
    assert decl.entries[0].keys[0].values == (True,) and decl.entries[-1].keys is None


def test_fmt_aligns_columns_and_round_trips():
    messy = CELLS.replace('"TANF",         under 1,     any: 512.30 USD', '"TANF", under 1, any:512.30 USD')
    out = format_source(Source(messy, "c.cap"))
    assert out == CELLS
    assert parse(Source(out, "c.cap")) == parse(Source(messy, "c.cap"))
    assert format_source(Source(out, "c.cap")) == out


# ─────────────────────────────── check ───────────────────────────────

def test_a_complete_table_checks_clean():
    assert not [c for c in codes(CELLS) if c.startswith("E")]


def test_an_optional_text_key_needs_no_presence_test():
    # member.sex may be empty: it then matches only `any` and `otherwise` (no E0313)
    assert "E0313" not in codes(CELLS)


def test_E0410_wrong_number_of_keys():
    assert "E0410" in codes(table('"TANF", any, any: 1 USD\n"SSI", any: 2 USD', otherwise=True))


def test_E0411_key_kinds():
    cs = codes(table('"TANF", "adult": 1 USD\n0 to 20, any: 2 USD', by="member.category, member.age",
                     otherwise=True))
    assert cs.count("E0411") == 2
    assert "E0411" in codes(table('"TANF", any: 1 USD', by="member.category, member.birth_date", otherwise=True))
    assert "E0411" in codes(table('true: 1 USD', by="member.category", otherwise=True))


def test_E0302_cell_bound_units():
    text = HEAD + '''
cells rate by practice.hours, member.category:
    0 to 20, any: 1 USD
    otherwise: 0 USD
end

inputs:
    practice hours: hours
end

line cap "Cap" = sum of rate over members
'''
    assert "E0302" in codes(text)


def test_E0412_overlap_names_the_common_cell():
    rows = '"TANF", 0 to 20, any: 1 USD\n"TANF", 18 and over, "F": 2 USD\n"TANF", 21 and over, "M": 3 USD'
    (msg,) = [m for m in messages(table(rows, otherwise=True)) if "overlap" in m]
    assert 'member.category "TANF", member.age 18 to 20, member.sex "F"' in msg


def test_E0413_a_row_covered_by_earlier_rows_together():
    rows = '"SSI", under 65, any: 1 USD\n"SSI", 65 and over, any: 2 USD\n"SSI", 70 to 80, "F": 3 USD'
    cs = codes(table(rows, otherwise=True))
    assert "E0413" in cs and "E0412" not in cs


def test_E0414_gap_within_a_combination_of_the_other_keys():
    rows = '"TANF", under 21, any: 1 USD\n"TANF", 21 and over, "F": 2 USD\n"TANF", 25 and over, "M": 3 USD'
    (msg,) = messages(table(rows))
    assert msg == 'no cell of `rate` covers members with member.category "TANF", member.age 21 to 24, member.sex "M"'


def test_otherwise_silences_gaps_but_not_overlaps():
    gap = '"TANF", under 21, any: 1 USD'
    assert codes(table(gap)) == ["E0414"]
    assert not [c for c in codes(table(gap, otherwise=True)) if c.startswith("E")]
    assert "E0408" in codes(HEAD + '\ncells rate by member.category:\n    otherwise: 0 USD\n    "A": 1 USD\nend\n')


def test_a_gap_of_a_second_numeric_key_is_found_per_range_of_the_first():
    text = HEAD + '''
inputs:
    member months: integer
end

cells rate by member.age, member.months:
    under 18,    any:      1 USD
    18 and over, under 12: 2 USD
    18 to 64,    12 to 24: 3 USD
    65 and over, 12 and over: 4 USD
end

line cap "Cap" = sum of rate over members
'''
    (msg,) = messages(text)
    assert msg == "no cell of `rate` covers members with member.age 18 to 64, member.months 25 and over"


# ─────────────────────────────── lower ───────────────────────────────

def test_lowers_to_one_case_of_ands_with_a_failure():
    program = lower(checked(CELLS))
    case = program.definitions["base_rate"].expr
    assert isinstance(case, t.Case) and len(case.whens) == 5
    cond, _ = case.whens[2]
    assert isinstance(cond, t.And) and len(cond.items) == 3  # = "TANF", >= 21, = "F"
    cond, _ = case.whens[4]
    assert isinstance(cond, t.In)  # ("SSI", "ABD"), any, any: one test
    assert isinstance(case.otherwise, t.Fail) and case.otherwise.code == "E0801"
    assert "member.category, member.age, member.sex" in case.otherwise.message
    assert case.labels[0] == '"TANF", under 1, any'


# ─────────────────────────────── amounts ───────────────────────────────

MARCH = parse_period("2011-03")


def panel(extra: bool = False) -> Panel:
    p = Panel(member_attrs={"category": "text", "region": "text"})
    p.practice("P1")
    # ages on 2011-03-01
    p.member("M1", "P1", date(2010, 12, 1), category="TANF", region="NORTH", sex="F")   # 0: 512.30
    p.member("M2", "P1", date(2000, 1, 1), category="TANF", region="METRO", sex=None)   # 11: 180.10 × 1.085
    p.member("M3", "P1", date(1980, 1, 1), category="TANF", region="METRO", sex="F")    # 31: 310.00 × 1.085
    p.member("M4", "P1", date(1950, 6, 1), category="TANF", region="NORTH", sex="M")    # 60: 250.00
    p.member("M5", "P1", date(1990, 1, 1), category="ABD", region="METRO", sex="M")     # 1210.00 × 1.085
    if extra:
        p.member("M6", "P1", date(1970, 1, 1), category="TANF", region="NORTH", sex=None)  # adult, no sex
    return p


# 512.30 + 195.4085 + 336.35 + 250.00 + 1312.85 = 2606.9085 → 2606.91
EXPECTED = D("2606.91")


def amount(result) -> Decimal:
    (row,) = [r for r in result.rows if r[2] == "capitation"]  # (practice, month, line, amount, …)
    return row[3]


def test_interpreter_and_duckdb_pay_by_hand():
    program = lower(checked(CELLS))
    p = panel()
    got = interpret(program, p.rows(), MARCH.months, {})
    duck = evaluate(program, p.duckdb(), MARCH, {})
    assert amount(got) == EXPECTED
    assert got.rows == duck.rows


def test_a_member_in_no_cell_stops_the_run_on_every_engine():
    program = lower(checked(CELLS))
    p = panel(extra=True)
    with pytest.raises(EvalError) as py:
        interpret(program, p.rows(), MARCH.months, {})
    with pytest.raises(EvalError) as dk:
        evaluate(program, p.duckdb(), MARCH, {})
    for info in (py, dk):
        (d,) = info.value.diagnostics
        assert d.code == "E0801" and "no cell of 'base_rate'" in d.message and "row 7" in d.message
        # the values that matched no row, as both engines name them
        assert 'member.category, member.age, member.sex ("TANF", 41, missing): member at row 7' in d.message
    assert py.value.diagnostics[0].message == dk.value.diagnostics[0].message


@pytest.mark.postgres
def test_postgres_names_the_values_no_cell_matches(pg):
    program = lower(checked(CELLS))
    p = panel(extra=True)
    pg.load(p)
    with pytest.raises(EvalError) as info:
        pg_evaluate(pg, program, MARCH)
    with pytest.raises(EvalError) as py:
        interpret(program, p.rows(), MARCH.months, {})
    assert info.value.diagnostics[0].message == py.value.diagnostics[0].message


@pytest.mark.postgres
def test_postgres_pays_the_same(pg):
    program = lower(checked(CELLS))
    p = panel()
    pg.load(p)
    got = pg_evaluate(pg, program, MARCH)
    assert amount(got) == EXPECTED
    assert got.rows == interpret(program, p.rows(), MARCH.months, {}).rows


# ─────────────────────────────── tools ───────────────────────────────

def _line_of(text: str, needle: str) -> tuple[int, int]:
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i, line.index(needle) + 1
    raise AssertionError(needle)


def test_lsp_hover_outline_and_completion():
    from capdsl.tools.lsp import analyse, completions, grammar_keywords, hover_markdown, outline

    analysis = analyse(CELLS, "cells.cap")
    line, col = _line_of(CELLS, "cells base_rate")
    text, _span = hover_markdown(analysis, line, col + 7)
    assert "**rate cells** `base_rate`" in text
    assert "| member.category | member.age | member.sex | value |" in text
    assert '| ("SSI", "ABD") | any | any | `1210.00 USD` |' in text
    items = outline(analysis.contract, analysis.source)
    cells = next(i for i in items if i.name == "base_rate")
    assert cells.kind == "cells" and cells.detail == "by member.category, member.age, member.sex"
    assert [c.name for c in cells.children][:2] == ['"TANF", under 1, any', '"TANF", 1 to 20, any']
    labels = {c.label: c for c in completions(analysis, len(CELLS.splitlines()), 1)}
    assert labels["base_rate"].kind == "cells"
    assert "cells" in grammar_keywords() and "any" in grammar_keywords()


def test_highlighting_knows_the_keywords():
    from pygments.token import Keyword, Name

    from capdsl.language.highlight import CapLexer

    tokens = [(tok, value) for tok, value in CapLexer().get_tokens(CELLS) if value.strip()]
    assert (Keyword.Declaration, "cells") in tokens and (Name.Function, "base_rate") in tokens
    assert (Keyword, "any") in tokens


def test_an_unquoted_text_key_is_a_friendly_syntax_error():
    text = HEAD + '\ncells rate by member.age, member.sex:\n    0 to 20, F: 1 USD\nend\n'
    with pytest.raises(CapError) as info:
        parse(Source(text, "c.cap"))
    (d,) = info.value.diagnostics
    assert d.code == "E0101" and "rate-cell key" in d.message and d.hint == 'write the value in quotes: "F"'


def test_a_key_that_says_who_the_member_is_is_not_named():
    """Keyed by the member's id, the message names the key but not its value (ids are shown only with
    --show-ids)."""
    text = ('contract "C":\n    currency USD\nend\n'
            'cells rate by member.id:\n    "M1": 10 USD\nend\n'
            'line cap "Capitation" = sum of rate over members\n')
    program = lower(checked(text))
    p = Panel()
    p.practice("P1")
    p.member("M2", "P1", date(1970, 1, 1))
    for run in (lambda: interpret(program, p.rows(), MARCH.months, {}), lambda: evaluate(program, p.duckdb(), MARCH, {})):
        with pytest.raises(EvalError) as info:
            run()
        message = info.value.diagnostics[0].message
        assert "matches the member's member.id: member at row" in message and "M2" not in message
