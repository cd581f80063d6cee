"""Differential tests for rate cells: random well-formed tables (no two rows overlapping; gaps only
where `otherwise` fills them) written as contract text, so they go through the real checker and
lowering, evaluated on random panels by the interpreter and by DuckDB. Panels hold members with no
sex recorded and values the table never names, so members matching no cell take `otherwise` or stop
both engines with E0801. CAPDSL_HYPOTHESIS_EXAMPLES raises the example count."""

from __future__ import annotations

import os
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capdsl.errors import Source
from capdsl.evaluation.interpret import evaluate as interpret
from capdsl.evaluation.periods import parse_period
from capdsl.pipeline import compile_source
from capdsl.sql import evaluate
from fuzz_support import cells_rows, cells_text
from sql_support import Panel
from test_sql_differential import outcome

EXAMPLES = int(os.environ.get("CAPDSL_HYPOTHESIS_EXAMPLES", "80"))
PERIODS = ["2011-03", "2011-Q2"]
KEYS = {"age": "member.age", "sex": "member.sex", "text": "member.category", "bool": "member.flag"}
HEAD = '''contract "Random rate cells":
    currency USD
    rounding half_up 0.01 per line
end

inputs:
    member category: text
    member flag: bool
end

'''


@st.composite
def contracts(draw):
    """(contract text, has otherwise): 2–3 keys, always member.age among them."""
    others = draw(st.lists(st.sampled_from(["sex", "text", "bool"]), min_size=1, max_size=2, unique=True))
    kinds = draw(st.permutations(["age", *others]))
    otherwise = draw(st.booleans())
    r = draw(st.randoms(use_true_random=False))
    value = lambda: f"{r.randint(0, 2000)}.{r.randint(0, 99):02d} USD"  # noqa: E731
    rows = cells_rows(r, list(kinds), value, otherwise)
    text = HEAD + "\n".join(cells_text("rate", [KEYS[k] for k in kinds], rows,
                                       value() if otherwise else None))
    text += "\n\ncells factor by member.flag, member.age:\n    true, any: 1.5\n    false, any: 1\nend\n"
    text += '\nline cap "Capitation" = sum of rate over members\n'
    if draw(st.booleans()):
        text += 'line adjusted "Adjusted" = sum of rate * factor over members\n'
    return text, otherwise


@st.composite
def panels(draw):
    p = Panel(member_attrs={"category": "text", "flag": "bool"})
    practices = ["P1", "P2"][: draw(st.integers(1, 2))]
    for pid in practices:
        p.practice(pid)
    for i in range(draw(st.integers(1, 8))):
        born = date(draw(st.integers(1920, 2011)), draw(st.integers(1, 12)), draw(st.integers(1, 28)))
        p.member(f"M{i}", draw(st.sampled_from(practices)), born,
                 start=draw(st.sampled_from([None, date(2011, 4, 1)])),
                 sex=draw(st.sampled_from(["F", "M", None])),
                 category=draw(st.sampled_from(["A", "B", "C", "D", "Z"])), flag=draw(st.booleans()))
    return p


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(contracts(), panels(), st.sampled_from(PERIODS))
def test_rate_cells_duckdb_equals_the_interpreter(contract, panel, period):
    text, otherwise = contract
    _, program = compile_source(Source(text, "cells.cap"))  # well-formed tables check clean
    per = parse_period(period)
    want = outcome(lambda: interpret(program, panel.rows(), per.months, {}))
    got = outcome(lambda: evaluate(program, panel.duckdb(), per, {}))
    if want[0] == "error" or got[0] == "error":
        assert want == got == ("error", "E0801"), (want, got)
        assert not otherwise, "a table with `otherwise` matches every member"
    else:
        assert got == want
