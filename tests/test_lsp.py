"""The language server: the pure index/hover/completion/outline functions,
then a real client talking to `python -m capdsl lsp` over stdio (pytest-lsp)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from capdsl.errors import Source
from capdsl.language.fmt import format_source
from capdsl.tools.lsp import (analyse, attributes_in_text, build_index, completions, format_edit, grammar_keywords,
                        hover_markdown, names_in_text, outline)
from capdsl.language.syntax import parse_text

ROOT = Path(__file__).resolve().parent.parent
ADULT = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
ADULT_TEXT = ADULT.read_text(encoding="utf-8")
CONTRACTS = sorted((ROOT / "contracts").glob("*.cap"))
TIMEOUT = 30  # seconds for any single exchange with the server


def line_of(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the `nth` occurrence of `needle`."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    return line, start - (text.rfind("\n", 0, start) + 1) + 1


# ─────────────────────────────── pure functions ────────────────────────────

@pytest.fixture(scope="module")
def adult():
    return analyse(ADULT_TEXT, str(ADULT))


def test_index_definitions_point_at_the_name(adult):
    lines = ADULT_TEXT.splitlines()
    for key, d in adult.index.definitions.items():
        written = lines[d.span.line - 1][d.span.column - 1:d.span.end_column - 1]
        assert written == key.split(".", 1)[-1], key
    assert adult.index.definitions["age_index"].kind == "bands"
    assert adult.index.definitions["base_rate"].kind == "tier"
    assert adult.index.definitions["practice.weekly_hours"].kind == "input"
    assert adult.index.definitions["national_average_drug_cost"].kind == "param"
    assert adult.index.definitions["akord_bonus"].kind == "pool"


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_every_reference_span_is_the_name_written(path):
    text = path.read_text(encoding="utf-8")
    source = Source(text, str(path))
    index = build_index(parse_text(text, str(path)), source)
    lines = text.splitlines()
    for occ in index.occurrences:
        written = lines[occ.span.line - 1][occ.span.column - 1:occ.span.end_column - 1]
        assert written in (occ.key, occ.key.split(".", 1)[-1], f"param.{occ.key}"), (occ, written)
    analysis = analyse(text, str(path))
    for occ in index.occurrences:  # every name hovers, without an exception
        found = hover_markdown(analysis, occ.span.line, occ.span.column)
        assert found is not None and found[1] == occ.span
    assert outline(analysis.contract, analysis.source)


def test_hover_on_dated_value_and_schedule():
    text = ('contract "x":\n    currency CZK\nend\n\ndefine rate ref "tariff":\n    50 CZK from 2011-01-01\n'
            '    52 CZK from 2012-01-01\nend\n\nschedule fee by event.code:\n    "A": 10 CZK\n    otherwise: 0 CZK\n'
            'end\n\nline l "L" = rate * count of members + sum of fee over events\n')
    analysis = analyse(text)
    assert analysis.diagnostics == []
    dated, _ = hover_markdown(analysis, *line_of(text, "rate *"))
    assert "**dated value** `rate`" in dated and "| 2012-01-01 | `52 CZK` |" in dated and "Ref: “tariff”" in dated
    schedule, _ = hover_markdown(analysis, *line_of(text, "fee over"))
    assert "**schedule** `fee`" in schedule and '| "A" | `10 CZK` |' in schedule and "| otherwise | `0 CZK` |" in schedule


def test_references_of_a_band_table(adult):
    refs = adult.index.references("age_index")
    assert refs[0] == adult.index.definitions["age_index"].span
    used_on = [s.line for s in refs[1:]]
    assert used_on == [line_of(ADULT_TEXT, "define recalculated_insured")[0],
                       line_of(ADULT_TEXT, "line capitation")[0],
                       line_of(ADULT_TEXT, "amount sum of akord_supplement_rate")[0]]
    assert adult.index.references("age_index", include_definition=False) == refs[1:]


def test_references_reach_examples(adult):
    # `expect P1 capitation = …`, `set national_average_drug_cost = …`, `with weekly_hours = …`
    assert line_of(ADULT_TEXT, "expect P1 capitation")[0] in [s.line for s in adult.index.references("capitation")]
    assert line_of(ADULT_TEXT, "set national_average_drug_cost = ")[0] in [
        s.line for s in adult.index.references("national_average_drug_cost")]
    assert line_of(ADULT_TEXT, "practice P1 with weekly_hours")[0] in [
        s.line for s in adult.index.references("practice.weekly_hours")]
    assert line_of(ADULT_TEXT, "measure insurer_share of P2")[0] in [
        s.line for s in adult.index.references("measure.insurer_share")]


def test_definition_at_a_use(adult):
    line, col = line_of(ADULT_TEXT, "age_index over members", 1)
    d = adult.index.definition_at(line, col + 3)
    assert d is not None and d.key == "age_index" and d.span.line == line_of(ADULT_TEXT, "bands age_index")[0]
    assert adult.index.definition_at(line, col - 2) is None or adult.index.definition_at(line, col - 2).key != "age_index"


def test_hover_on_a_band_shows_its_table(adult):
    line, col = line_of(ADULT_TEXT, "bands age_index")
    text, span = hover_markdown(adult, line, col + 8)
    assert "**bands** `age_index`" in text
    assert "| 0 to 4 | `3.91` |" in text and "| 85 and over | `3.40` |" in text
    assert f"Defined on line {line}" in text
    assert "a bare number" in text  # the checker's type
    assert (span.line, span.column) == (line, col + 6)


def test_hover_on_tier_input_and_builtin(adult):
    line, col = line_of(ADULT_TEXT, "base_rate * age_index")
    text, _ = hover_markdown(adult, line, col)
    assert "**tier** `base_rate`" in text and "| `47 CZK` | otherwise |" in text and "CZK" in text
    line, col = line_of(ADULT_TEXT, "practice.weekly_hours >= 30")
    text, _ = hover_markdown(adult, line, col + 10)
    assert "`practice.weekly_hours`" in text and "hours" in text
    line, col = line_of(ADULT_TEXT, "member.age")
    text, _ = hover_markdown(adult, line, col)
    assert "built-in" in text
    assert hover_markdown(adult, 1, 1) is None  # a comment


def test_hover_types_survive_check_errors():
    broken = ADULT_TEXT.replace("line capitation \"Capitation\" = sum of base_rate",
                                "line capitation \"Capitation\" = sum of base_rat")
    analysis = analyse(broken)
    assert any(d.code == "E0203" for d in analysis.diagnostics)
    line, col = line_of(broken, "bands age_index")
    text, _ = hover_markdown(analysis, line, col + 8)
    assert "| 0 to 4 | `3.91` |" in text


def test_analyse_reports_syntax_and_check_errors():
    syntax = analyse('contract "x":\n    currency CZK\nend\ndefine a =\n')
    assert not syntax.parsed and syntax.diagnostics[0].code.startswith("E01")
    check = analyse('contract "x":\n    currency CZK\nend\nline l "L" = missing_name\n')
    assert check.parsed and [d.code for d in check.diagnostics] == ["E0203"]
    d = check.diagnostics[0]
    assert (d.span.line, d.span.column, d.span.end_line, d.span.end_column) == (4, 14, 4, 26)


def test_completion_names_keywords_and_attributes(adult):
    labels = {c.label: c for c in completions(adult, 87, 1)}
    assert labels["age_index"].kind == "bands" and labels["capitation"].kind == "line"
    assert labels["national_average_drug_cost"].kind == "param"
    for kw in ("bands", "tier", "otherwise", "applies", "sum", "over", "expect", "month_start"):
        assert kw in labels and kw in grammar_keywords()
    line, col = line_of(ADULT_TEXT, "practice.weekly_hours >= 30")
    attrs = {c.label for c in completions(adult, line, col + len("practice."))}
    assert {"weekly_hours", "late_days", "booking_days", "akord", "id"} <= attrs
    assert "age_index" not in attrs


def test_completion_on_a_document_that_does_not_parse(adult):
    text = ADULT_TEXT + "\nline new_line \"New\" = member.\n"
    analysis = analyse(text)
    assert not analysis.parsed
    last = text.count("\n")
    attrs = {c.label for c in completions(analysis, last, len('line new_line "New" = member.') + 1,
                                          fallback=adult.index)}
    assert {"age", "sex", "birth_date"} <= attrs
    names = {c.label for c in completions(analysis, last, 1, fallback=adult.index)}
    assert {"age_index", "base_rate", "new_line", "define"} <= names


def test_text_scans():
    text = "define a = 1\nbands b by member.age:\n    0 and over: 1\nend\ninputs:\n    param p: number\n" \
           "    practice open: bool\nend\n"
    assert names_in_text(text) == {"a": "define", "b": "bands", "p": "param"}
    attrs = attributes_in_text(text)
    assert attrs["member"] == {"age"} and attrs["practice"] == {"open"} and attrs["param"] == {"p"}


def test_outline(adult):
    items = outline(adult.contract, adult.source)
    kinds = [(i.kind, i.name) for i in items]
    assert kinds[0] == ("contract", "VZP 2011 – general practitioner for adults")
    assert ("inputs", "inputs") in kinds and ("bands", "age_index") in kinds and ("tier", "base_rate") in kinds
    assert ("line", "capitation") in kinds and ("pool", "akord_bonus") in kinds
    assert [k for k, _ in kinds].count("example") == 2
    bands = next(i for i in items if i.name == "age_index")
    assert len(bands.children) == 18 and bands.children[-1].name == "85 and over"
    inputs = next(i for i in items if i.kind == "inputs")
    assert "practice.weekly_hours" in [c.name for c in inputs.children]
    for item in items:  # the selection (the name) lies inside the range, which ends at `end`
        assert (item.span.line, item.span.column) <= (item.selection.line, item.selection.column)
        assert (item.selection.end_line, item.selection.end_column) <= (item.span.end_line, item.span.end_column)
    assert ADULT_TEXT.splitlines()[bands.span.end_line - 1].strip() == "end"


def test_format_edit():
    messy = 'contract "x":\n  currency CZK\nend\ndefine   a=1+2\n'
    assert format_edit(messy) == format_source(Source(messy))
    assert format_edit(format_source(Source(messy))) is None
    assert format_edit('contract "x":\n  currency CZK\nend\ndefine a =\n') is None


def test_a_failing_handler_answers_nothing(caplog):
    from capdsl.tools.lsp import _safe

    @_safe
    def handler(ls, params):
        raise RuntimeError("a bug")

    assert handler(None, None) is None
    assert "handler failed" in caplog.text and "a bug" in caplog.text


def test_lsp_command_is_registered():
    out = subprocess.run([sys.executable, "-m", "capdsl", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "lsp" in out.stdout
    assert "Start the language server on stdio" in out.stdout


# ─────────────── payment periods, list days, a member's own events ───────────────

V2 = '''contract "GP registration fee":
    currency EUR
    list as of quarter_start
    age as of quarter_start
end

inputs:
    event allowed: money
    measure quality_met: bool
end

line registration "Registration fee":
    amount sum of 15 EUR over members
    rate per quarter
    paid quarterly
end

line out_of_hours "Out of hours":
    amount 2400 EUR
    rate per year
    paid in June, December
end

line stop_loss "Individual stop-loss":
    amount sum of 80% of max(0 EUR, sum of event.allowed over member events during year - 150000 EUR) over members
    rate per year
    paid in December
end

pool quality "Quality payment":
    amount 10% of sum of registration over year
    paid 50% in H1, rest in Q4 when measure.quality_met
end
'''


@pytest.fixture(scope="module")
def v2():
    analysis = analyse(V2)
    assert analysis.parsed and analysis.diagnostics == []
    return analysis


def hover_at(analysis, needle: str, nth: int = 0, offset: int = 0) -> str:
    line, col = line_of(analysis.source.text, needle, nth)
    found = hover_markdown(analysis, line, col + offset)
    assert found is not None, needle
    return found[0]


def test_hover_on_the_list_day_and_the_age_day(v2):
    from capdsl.language.builtins import AGE_RULES, EXPOSURE_RULES

    for offset in (0, len("list as of ")):
        text = hover_at(v2, "list as of quarter_start", offset=offset)
        assert text.startswith("**list as of quarter_start**")
        assert "enrolled on the quarter's first day" in text and EXPOSURE_RULES["quarter_start"].doc.endswith(
            "enrolled on the quarter's first day")
        assert AGE_RULES["quarter_start"].doc in text  # the list day is the age day too
    text = hover_at(v2, "age as of quarter_start", offset=len("age as of "))
    assert text.startswith("**age as of quarter_start**") and AGE_RULES["quarter_start"].doc in text


def test_hover_on_rate_per_and_paid(v2):
    from capdsl.language.builtins import FREQUENCY_DOCS, RATE_DOCS

    text = hover_at(v2, "rate per year", offset=len("rate per "))
    assert text.startswith("**rate per year**") and RATE_DOCS["year"][1:] in text and "twelfth" in text
    assert hover_at(v2, "rate per quarter") == hover_at(v2, "rate per quarter", offset=len("rate "))
    text = hover_at(v2, "paid quarterly", offset=len("paid "))
    assert text.startswith("**paid quarterly**") and FREQUENCY_DOCS["quarterly"][1:] in text
    assert "March, June, September and December" in text
    assert hover_at(v2, "paid in June").startswith("**paid in …**")
    assert hover_at(v2, "paid 50%").startswith("**paid … in …**")


def test_hover_on_a_payment_month(v2):
    assert hover_at(v2, "June, December").startswith("**June** — paid in June")
    assert hover_at(v2, "December", 0).startswith("**December** — paid in December")
    assert hover_at(v2, "H1, rest").startswith("**H1** — paid in the last month of the first half-year: June")
    assert hover_at(v2, "Q4 when").startswith("**Q4** — paid in the last month of quarter 4: December")


def test_hover_on_member_events(v2):
    from capdsl.language.builtins import EVENT_WINDOW_DOCS

    for word in ("member events", "events during", "during year", "year - 150000"):
        text = hover_at(v2, word)
        assert text.startswith("**member events during year**"), word
        assert EVENT_WINDOW_DOCS["year"][1:] in text and "over members" in text
    # an attribute under the cursor is still the attribute
    assert hover_at(v2, "event.allowed", offset=7).startswith("**event input** `event.allowed`")


def test_hover_on_clause_words_while_the_file_does_not_parse():
    broken = V2.replace("    paid in December\n", "    paid in December +\n")
    analysis = analyse(broken)
    assert not analysis.parsed
    assert hover_at(analysis, "rate per year").startswith("**rate per year**")
    assert hover_at(analysis, "quarter_start").startswith("**list as of quarter_start**")


def test_hover_on_other_words_is_unchanged(v2):
    line, col = line_of(V2, "over members")
    assert hover_markdown(v2, line, col) is None  # `over` has no meaning of its own
    line, col = line_of(V2, "currency EUR")
    assert hover_markdown(v2, line, col) is None


def test_hover_on_a_line_shows_its_payment_clauses(v2):
    text = hover_at(v2, "registration", 1)  # `sum of registration over year` in the pool
    assert "**line** `registration`" in text and "rate per quarter" in text and "paid quarterly" in text
    text = hover_at(v2, "out_of_hours")
    assert "paid in June, December" in text and "rate per year" in text


def labels(analysis, needle: str, offset: int = 0, nth: int = 0) -> dict:
    line, col = line_of(analysis.source.text, needle, nth)
    return {c.label: c for c in completions(analysis, line, col + offset)}


def test_completion_of_header_clauses(v2):
    from capdsl.language.builtins import LIST_DAYS

    found = labels(v2, "    list as of")  # at the start of a header clause
    assert {f"list as of {w}" for w in LIST_DAYS} <= set(found)
    assert {"age as of quarter_start", "currency", "exposure first_day", "end"} <= set(found)
    assert "counts in each month of a quarter" in found["list as of quarter_start"].detail
    assert "capitation" not in found and "sum" not in found  # only clauses here
    after = labels(v2, "quarter_start", nth=0)
    assert set(after) == set(LIST_DAYS) and "list day" in after["quarter_start"].detail
    assert set(labels(v2, "quarter_start", nth=1)) == {"month_start", "month_end", "quarter_start", "year_start"}


def test_completion_of_line_and_pool_clauses(v2):
    from capdsl.language.builtins import RATE_DOCS

    line_clauses = labels(v2, "    rate per quarter")
    assert {"amount", "applies when", "basis", "paid monthly", "paid quarterly", "paid in", "rate per month",
            "rate per quarter", "rate per year", "ref", "end"} <= set(line_clauses)
    assert line_clauses["rate per year"].detail == RATE_DOCS["year"]
    pool_clauses = labels(v2, "    paid 50%")
    assert {"amount", "paid monthly", "paid in", "paid 50% in H1, rest in H2"} <= set(pool_clauses)
    assert not [w for w in pool_clauses if w.startswith("rate per")]  # E0508: a pool is an annual amount
    assert set(labels(v2, "rate per year", offset=len("rate per "))) == {"month", "quarter", "year"}
    assert {"monthly", "quarterly", "in"} == set(labels(v2, "paid quarterly", offset=len("paid ")))


def test_completion_of_payment_months(v2):
    from capdsl.language.builtins import PAY_TIMES

    for needle, offset in (("paid in June", len("paid in ")), ("June, December", len("June, ")),
                           ("H1, rest", len("H1, rest in ")), ("paid 50% in", len("paid 50% in "))):
        found = labels(v2, needle, offset)
        assert set(found) == set(PAY_TIMES), needle
    found = labels(v2, "paid in June", len("paid in "))
    assert found["H2"].detail == "paid in the last month of the second half-year: December"
    assert found["Q1"].detail == "paid in the last month of quarter 1: March"
    assert found["May"].detail == "paid in May"


def test_completion_of_member_event_windows(v2):
    from capdsl.language.builtins import EVENT_WINDOW_DOCS

    found = labels(v2, "during year", len("during "))
    assert set(found) == {"month", "quarter", "year"} and found["quarter"].detail == EVENT_WINDOW_DOCS["quarter"]


def test_completion_elsewhere_is_the_general_list(v2):
    found = labels(v2, "line registration")  # the top level
    assert {"registration", "stop_loss", "sum", "list", "rate", "during", "quarterly", "June", "H1"} <= set(found)
    assert found["quarterly"].detail.startswith("paid quarterly: ")
    assert found["H2"].detail == "paid in the last month of the second half-year: December"
    found = labels(v2, "sum of 15 EUR", len("sum of "))  # inside an amount: names, not clauses
    assert "registration" in found and "rate per year" not in found
    continued = V2.replace("    amount 2400 EUR\n", "    amount 2400 EUR + \\\n        \n")
    analysis = analyse(continued)
    line, _ = line_of(continued, "        \n")
    assert "rate per year" not in {c.label for c in completions(analysis, line, 9)}


def test_grammar_keywords_are_the_grammar_s_words():
    words = grammar_keywords()
    assert {"list", "rate", "during", "monthly", "quarterly", "quarter_start", "June", "H1", "H2", "Q4"} <= set(words)
    assert "lalr" not in words and "contextual" not in words  # words quoted in the grammar's comments


def test_block_at():
    from capdsl.tools.lsp import block_at

    text = 'contract "x":\n    currency EUR\nend\nline a "A":  # note:\n    amount 1 EUR\nend\n' \
           'define d = "a:"\npool p "P":\n'
    assert [block_at(text, n) for n in range(1, 10)] == [None, "contract", "contract", None, "line", "line", None,
                                                         None, "pool"]


GOLDEN = ROOT / "tests" / "golden" / "diagnostics"


@pytest.mark.parametrize("name", ["E0111_list_and_exposure", "E0316_member_events_reads_member",
                                  "E0508_rate_on_pool", "E0503_quarter_twice"])
def test_diagnostics_of_the_new_constructs(name):
    """The checker's codes for the new constructs reach the editor, at the golden's position."""
    import re

    text = (GOLDEN / f"{name}.cap").read_text(encoding="utf-8")
    first = (GOLDEN / f"{name}.txt").read_text(encoding="utf-8").splitlines()[0]
    line, column, code = re.search(r":(\d+):(\d+): error\[(E\d{4})\]", first).groups()
    analysis = analyse(text, str(GOLDEN / f"{name}.cap"))
    d = next(d for d in analysis.diagnostics if d.code == code)
    assert d.code == name[:5] and d.is_error
    assert (d.span.line, d.span.column) == (int(line), int(column))


# ─────────────────────────────── over stdio ────────────────────────────────

pytest_lsp = pytest.importorskip("pytest_lsp")
lsp = pytest.importorskip("lsprotocol.types")
pytest.importorskip("pygls")

from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

aio = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=[sys.executable, "-m", "capdsl", "lsp"]))
async def client(lsp_client: LanguageClient):
    await asyncio.wait_for(lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=lsp.ClientCapabilities(), root_uri=ROOT.as_uri())), TIMEOUT)
    yield
    await asyncio.wait_for(lsp_client.shutdown_session(), TIMEOUT)


async def until(predicate, what: str):
    for _ in range(TIMEOUT * 20):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def open_doc(client: LanguageClient, uri: str, text: str) -> None:
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(
        lsp.TextDocumentItem(uri=uri, language_id="cap", version=1, text=text)))


def pos(text: str, needle: str, nth: int = 0, offset: int = 0):
    line, col = line_of(text, needle, nth)
    return lsp.Position(line - 1, col - 1 + offset)


@aio
async def test_server_diagnostics_appear_and_clear(client: LanguageClient, tmp_path):
    uri = (tmp_path / "broken.cap").as_uri()
    broken = ADULT_TEXT.replace("sum of base_rate * age_index over members ref",
                                "sum of base_rat * age_index over members ref")
    open_doc(client, uri, broken)
    await until(lambda: client.diagnostics.get(uri), "diagnostics for the broken contract")
    diags = client.diagnostics[uri]
    d = next(d for d in diags if d.code == "E0203")
    assert d.severity == lsp.DiagnosticSeverity.Error and d.source == "capdsl"
    start = pos(broken, "base_rat * age_index")
    assert (d.range.start.line, d.range.start.character) == (start.line, start.character)
    assert (d.range.end.line, d.range.end.character) == (start.line, start.character + len("base_rat"))
    assert "base_rat" in d.message

    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [lsp.TextDocumentContentChangeWholeDocument(text=ADULT_TEXT)]))
    await until(lambda: len(client.diagnostics.get(uri, [None])) == 0, "the diagnostics to clear")


@aio
async def test_server_syntax_error(client: LanguageClient, tmp_path):
    uri = (tmp_path / "syntax.cap").as_uri()
    text = 'contract "x":\n    currency CZK\nend\ndefine a = 1 +\n'
    open_doc(client, uri, text)
    await until(lambda: client.diagnostics.get(uri), "a syntax diagnostic")
    d = client.diagnostics[uri][0]
    assert d.code.startswith("E01") and d.range.start.line == 3
    # nothing to format in a file that does not parse, and no crash on requests
    edits = await asyncio.wait_for(client.text_document_formatting_async(lsp.DocumentFormattingParams(
        lsp.TextDocumentIdentifier(uri), lsp.FormattingOptions(tab_size=4, insert_spaces=True))), TIMEOUT)
    assert not edits
    hover = await asyncio.wait_for(client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(uri), lsp.Position(3, 8))), TIMEOUT)
    assert hover is None


@pytest.fixture()
def adult_uri(client: LanguageClient):
    uri = ADULT.as_uri()
    if uri not in client.diagnostics:
        open_doc(client, uri, ADULT_TEXT)
    return uri


@aio
async def test_server_hover_on_band(client: LanguageClient, adult_uri):
    hover = await asyncio.wait_for(client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(adult_uri), pos(ADULT_TEXT, "age_index over members", 1, 2))), TIMEOUT)
    assert hover is not None and hover.contents.kind == lsp.MarkupKind.Markdown
    assert "**bands** `age_index`" in hover.contents.value
    assert "| 0 to 4 | `3.91` |" in hover.contents.value
    assert f"Defined on line {line_of(ADULT_TEXT, 'bands age_index')[0]}" in hover.contents.value


@aio
async def test_server_definition_and_references(client: LanguageClient, adult_uri):
    doc = lsp.TextDocumentIdentifier(adult_uri)
    found = await asyncio.wait_for(client.text_document_definition_async(lsp.DefinitionParams(
        doc, pos(ADULT_TEXT, "base_rate * age_index", 0, 3))), TIMEOUT)
    location = found[0] if isinstance(found, list) else found
    assert location.uri == adult_uri
    assert location.range.start == pos(ADULT_TEXT, "base_rate ref")
    assert location.range.end == pos(ADULT_TEXT, "base_rate ref", 0, len("base_rate"))

    refs = await asyncio.wait_for(client.text_document_references_async(lsp.ReferenceParams(
        text_document=doc, position=pos(ADULT_TEXT, "base_rate ref", 0, 1),
        context=lsp.ReferenceContext(include_declaration=True))), TIMEOUT)
    starts = sorted((r.range.start.line, r.range.start.character) for r in refs)
    expected = sorted((p.line, p.character) for p in (
        pos(ADULT_TEXT, "base_rate ref"), pos(ADULT_TEXT, "base_rate * age_index"),
        pos(ADULT_TEXT, "base_rate * national"), pos(ADULT_TEXT, "base_rate * count")))
    assert starts == expected
    refs = await asyncio.wait_for(client.text_document_references_async(lsp.ReferenceParams(
        text_document=doc, position=pos(ADULT_TEXT, "base_rate ref", 0, 1),
        context=lsp.ReferenceContext(include_declaration=False))), TIMEOUT)
    assert len(refs) == 3


@aio
async def test_server_completion(client: LanguageClient, adult_uri):
    doc = lsp.TextDocumentIdentifier(adult_uri)
    result = await asyncio.wait_for(client.text_document_completion_async(lsp.CompletionParams(
        doc, lsp.Position(line_of(ADULT_TEXT, "define point_value")[0] - 1, 0))), TIMEOUT)
    items = {i.label: i for i in (result.items if hasattr(result, "items") else result)}
    assert items["age_index"].kind == lsp.CompletionItemKind.Enum
    assert items["otherwise"].kind == lsp.CompletionItemKind.Keyword
    result = await asyncio.wait_for(client.text_document_completion_async(lsp.CompletionParams(
        text_document=doc, position=pos(ADULT_TEXT, "practice.weekly_hours >= 30", 0, len("practice.")),
        context=lsp.CompletionContext(trigger_kind=lsp.CompletionTriggerKind.TriggerCharacter,
                                      trigger_character="."))), TIMEOUT)
    labels = {i.label for i in (result.items if hasattr(result, "items") else result)}
    assert {"weekly_hours", "late_days", "akord"} <= labels and "age_index" not in labels


@aio
async def test_server_formatting(client: LanguageClient, tmp_path):
    uri = (tmp_path / "messy.cap").as_uri()
    messy = ADULT_TEXT.replace("define point_value = 1.08 CZK per point", "define   point_value=1.08  CZK per point")
    open_doc(client, uri, messy)
    edits = await asyncio.wait_for(client.text_document_formatting_async(lsp.DocumentFormattingParams(
        lsp.TextDocumentIdentifier(uri), lsp.FormattingOptions(tab_size=4, insert_spaces=True))), TIMEOUT)
    assert len(edits) == 1
    assert edits[0].new_text == format_source(Source(messy)) == ADULT_TEXT
    assert edits[0].range.start == lsp.Position(0, 0)
    assert edits[0].range.end == lsp.Position(messy.count("\n"), 0)


@aio
async def test_server_document_symbols(client: LanguageClient, adult_uri):
    symbols = await asyncio.wait_for(client.text_document_document_symbol_async(lsp.DocumentSymbolParams(
        lsp.TextDocumentIdentifier(adult_uri))), TIMEOUT)
    names = [(s.name, s.kind) for s in symbols]
    assert names[0] == ("VZP 2011 – general practitioner for adults", lsp.SymbolKind.Module)
    assert ("age_index", lsp.SymbolKind.Enum) in names and ("capitation", lsp.SymbolKind.Function) in names
    assert ("akord_bonus", lsp.SymbolKind.Function) in names
    inputs = next(s for s in symbols if s.name == "inputs")
    assert "practice.weekly_hours" in [c.name for c in inputs.children]
    bands = next(s for s in symbols if s.name == "age_index")
    assert bands.selection_range.start == pos(ADULT_TEXT, "age_index by")
    assert len([s for s in symbols if s.kind == lsp.SymbolKind.Event]) == 2


@aio
async def test_server_survives_odd_requests(client: LanguageClient, tmp_path):
    uri = (tmp_path / "odd.cap").as_uri()
    open_doc(client, uri, "")
    await until(lambda: uri in client.diagnostics, "diagnostics for an empty file")
    assert [d.code for d in client.diagnostics[uri]]  # no contract header
    doc = lsp.TextDocumentIdentifier(uri)
    for request in (
        client.text_document_hover_async(lsp.HoverParams(doc, lsp.Position(40, 99))),
        client.text_document_definition_async(lsp.DefinitionParams(doc, lsp.Position(0, 0))),
        client.text_document_completion_async(lsp.CompletionParams(doc, lsp.Position(7, 3))),
        client.text_document_document_symbol_async(lsp.DocumentSymbolParams(doc)),
    ):
        await asyncio.wait_for(request, TIMEOUT)
    # still alive
    result = await asyncio.wait_for(client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(ADULT.as_uri()), pos(ADULT_TEXT, "bands age_index", 0, 7))), TIMEOUT)
    assert result is None or "age_index" in result.contents.value


@aio
async def test_server_ranges_are_utf16(client: LanguageClient, tmp_path):
    # "💶" is one code point (capdsl's columns) but two UTF-16 units (LSP's default)
    uri = (tmp_path / "euro.cap").as_uri()
    text = 'contract "x":\n    currency EUR\nend\nline pay "💶 pay" = základná_sadzba\n'
    open_doc(client, uri, text)
    await until(lambda: client.diagnostics.get(uri), "diagnostics for the unknown name")
    d = client.diagnostics[uri][0]
    assert d.code == "E0203"
    column = text.splitlines()[3].index("základná")
    assert (d.range.start.line, d.range.start.character) == (3, column + 1)
    assert d.range.end.character == column + 1 + len("základná_sadzba")


@aio
async def test_server_new_constructs(client: LanguageClient, tmp_path):
    """Over stdio: E0508 on a pool's `rate per`, hover on `rate per year`, completion of payment months."""
    uri = (tmp_path / "v2.cap").as_uri()
    text = V2.replace("    paid 50% in H1", "    rate per year\n    paid 50% in H1")
    open_doc(client, uri, text)
    await until(lambda: client.diagnostics.get(uri), "the E0508 diagnostic")
    (d,) = client.diagnostics[uri]
    assert d.code == "E0508" and d.range.start == pos(text, "rate per year", 2)
    doc = lsp.TextDocumentIdentifier(uri)
    hover = await asyncio.wait_for(client.text_document_hover_async(lsp.HoverParams(
        doc, pos(text, "rate per year", 0, len("rate per ")))), TIMEOUT)
    assert hover is not None and hover.contents.value.startswith("**rate per year**")
    result = await asyncio.wait_for(client.text_document_completion_async(lsp.CompletionParams(
        doc, pos(text, "paid in June", 0, len("paid in ")))), TIMEOUT)
    items = {i.label: i for i in (result.items if hasattr(result, "items") else result)}
    assert {"June", "Q2", "H1", "December"} <= set(items) and "sum" not in items
    assert items["Q2"].kind == lsp.CompletionItemKind.Keyword and items["Q2"].detail.endswith("June")
