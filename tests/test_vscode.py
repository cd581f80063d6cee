"""The VS Code extension: its manifest, its TextMate grammar (scope tests run
with vscode-tmgrammar-test) and the .vsix that `npm run package` builds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from capdsl.language import highlight
from capdsl.tools.lsp import grammar_keywords

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "editors" / "vscode"
NPM = shutil.which("npm")


def run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=EXT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def node_modules():
    if NPM is None:
        pytest.skip("npm is not on PATH; install Node.js 20+ to test the VS Code extension")
    if not (EXT / "node_modules" / ".bin" / "vscode-tmgrammar-test").exists():
        done = run(NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error", timeout=600)
        if done.returncode != 0:
            pytest.skip(f"npm ci failed in editors/vscode (offline?): {done.stderr.strip()[-500:]}")
    return EXT / "node_modules"


def manifest() -> dict:
    return json.loads((EXT / "package.json").read_text(encoding="utf-8"))


def grammar() -> dict:
    return json.loads((EXT / "syntaxes" / "cap.tmLanguage.json").read_text(encoding="utf-8"))


def test_manifest_contributes_the_language():
    m = manifest()
    (language,) = m["contributes"]["languages"]
    assert language["id"] == "cap" and language["extensions"] == [".cap"]
    (contributed,) = m["contributes"]["grammars"]
    assert contributed["language"] == "cap" and contributed["scopeName"] == grammar()["scopeName"] == "source.cap"
    assert (EXT / contributed["path"]).is_file()
    assert (EXT / language["configuration"]).is_file()
    assert "capdsl.path" in m["contributes"]["configuration"]["properties"]
    assert m["activationEvents"] == ["onLanguage:cap"]
    assert (EXT / m["main"]).is_file()
    assert {"test", "package"} <= set(m["scripts"])
    lock = json.loads((EXT / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["name"] == m["name"] and lock["version"] == m["version"]


def test_language_configuration():
    config = json.loads((EXT / "language-configuration.json").read_text(encoding="utf-8"))
    assert config["comments"]["lineComment"] == "#"
    assert ["(", ")"] in config["brackets"]
    assert {"open": "\"", "close": "\"", "notIn": ["string", "comment"]} in config["autoClosingPairs"]
    increase = re.compile(config["indentationRules"]["increaseIndentPattern"])
    decrease = re.compile(config["indentationRules"]["decreaseIndentPattern"])
    assert increase.match('tier base_rate ref "x":  # comment') and increase.match("inputs:")
    assert not increase.match("    0 to 4: 3.91") and not increase.match("# note:")
    assert decrease.match("end") and decrease.match("  end  # closing") and not decrease.match("ending = 1")


def test_grammar_word_lists_match_the_pygments_lexer():
    """Both highlighters colour the same words; a word added to one must be added to the other."""
    text = json.dumps(grammar())
    lists = (highlight.DECLARATIONS, highlight.KEYWORDS, highlight.WORD_OPERATORS, highlight.SCOPES,
             highlight.TYPES, highlight.UNITS, highlight.CONSTANTS, highlight.FUNCTIONS)
    missing = [w for words in lists for w in words if not re.search(rf"[(|]{w}[|)]", text)]
    assert not missing


def test_grammar_knows_every_keyword_of_the_lark_grammar():
    """Every word grammar/cap.lark spells (its quoted keywords and its keyword terminals' words:
    `quarter_start`, `quarterly`, `June`, `H1`) is in one of the TextMate grammar's word lists."""
    text = json.dumps(grammar())
    missing = [w for w in grammar_keywords() if not re.search(rf"[(|]{w}[|)]", text)]
    assert not missing


def test_grammar_scopes_the_new_constructs_like_their_peers():
    """`member events` is a source like `members`; `during quarter` a period like `per quarter`."""
    patterns = {p["include"] for p in grammar()["patterns"]}
    assert "#events" in patterns
    (member_events, during) = grammar()["repository"]["events"]["patterns"]
    assert re.search(member_events["match"], "over member events during year")
    assert not re.search(member_events["match"], "member.events")
    assert [during["captures"][k]["name"] for k in ("1", "2")] == ["keyword.other.cap", "support.type.unit.cap"]
    per = grammar()["repository"]["per"]
    assert per["captures"]["2"]["name"] == during["captures"]["2"]["name"]


# ─────────────────────────────── snippets ───────────────────────────────

def snippets() -> dict:
    (contributed,) = manifest()["contributes"]["snippets"]
    assert contributed["language"] == "cap"
    return json.loads((EXT / contributed["path"]).read_text(encoding="utf-8"))


def expansions(body: list[str]) -> list[str]:
    """The texts a snippet body inserts: its placeholders' defaults, once per choice of each choice."""
    text = "\n".join(body)
    choice = re.search(r"\$\{(\d+)\|((?:[^|\\]|\\.)*)\|\}", text)
    if choice:
        options = [o.replace("\\,", ",") for o in re.split(r"(?<!\\),", choice.group(2))]
        return [x for o in options
                for x in expansions([text[:choice.start()] + o + text[choice.end():]])]
    defaults: dict[str, str] = {}

    def fill(m: re.Match) -> str:
        defaults[m.group(1)] = m.group(2)
        return m.group(2)

    text = re.sub(r"\$\{(\d+):([^{}]*)\}", fill, text)
    text = re.sub(r"\$(\d+)", lambda m: defaults.get(m.group(1), ""), text)
    return [text]


def test_every_snippet_expands_to_a_contract_that_checks():
    from capdsl.errors import Source
    from capdsl.language.check import check
    from capdsl.language.fmt import format_source
    from capdsl.language.syntax import parse

    found = snippets()
    assert {"contract header", "quarterly fee", "annual rate", "pool", "individual stop-loss"} <= set(found)
    head = 'contract "x":\n    currency USD\nend\n\ninputs:\n    event allowed: money\nend\n\n' \
           'line capitation "Capitation" = sum of 10 USD over members\n\n'
    checked = 0
    for name, snippet in found.items():
        assert snippet["prefix"] and snippet["description"], name
        for text in expansions(snippet["body"]):
            source = Source(text if name == "contract header" else head + text.replace("EUR", "USD"), f"{name}.cap")
            check(parse(source), source)  # raises CapError on any error
            assert format_source(source) == source.text, name  # in the canonical layout
            checked += 1
    assert checked >= 10


def test_snippet_expansion_reads_choices_and_defaults():
    assert expansions(["paid ${1|monthly,in June\\, December|}", "$0"]) == ["paid monthly\n",
                                                                           "paid in June, December\n"]
    assert expansions(["max(0 ${4:USD}, 1 $4)"]) == ["max(0 USD, 1 USD)"]


def test_grammar_scope_tests(node_modules):
    done = run(NPM, "test")
    assert done.returncode == 0, done.stdout + done.stderr
    for sample in sorted((EXT / "tests").glob("*.cap")):
        assert f"tests/{sample.name} run successfuly" in done.stdout


def test_grammar_scope_tests_catch_a_wrong_scope(node_modules, tmp_path):
    bad = tmp_path / "bad.cap"
    bad.write_text('# SYNTAX TEST "source.cap"\ndefine x = 1\n# <------ comment.line.number-sign.cap\n',
                   encoding="utf-8")
    done = run(str(node_modules / ".bin" / "vscode-tmgrammar-test"), "-g", "syntaxes/cap.tmLanguage.json",
               str(bad))
    assert done.returncode != 0


def test_package_builds_a_vsix(node_modules, tmp_path):
    out = tmp_path / "capdsl-0.1.0.vsix"
    done = run(NPM, "run", "package", "--", "--out", str(out), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(out) as vsix:
        names = set(vsix.namelist())
    for required in ("extension/package.json", "extension/extension.js", "extension/readme.md",
                     "extension/language-configuration.json", "extension/syntaxes/cap.tmLanguage.json",
                     "extension/snippets/cap.json",
                     "extension/node_modules/vscode-languageclient/package.json"):
        assert required in names
    assert not any(name.startswith("extension/tests/") for name in names)
    assert not any("/node_modules/@vscode/vsce/" in name for name in names)
