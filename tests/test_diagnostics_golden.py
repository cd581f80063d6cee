"""Golden diagnostics: every code, rendered exactly as an author sees it.

Each `tests/golden/diagnostics/<CODE>_<slug>.cap` is parsed and checked;
the rendered diagnostics must equal the `.txt` beside it, and must include
the code the file is named after. `CAPDSL_UPDATE_GOLDENS=1` rewrites them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capdsl.language.check import check
from capdsl.errors import CapError, Source, render_all
from capdsl.language.syntax import parse

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "diagnostics"
CASES = sorted(GOLDEN.glob("*.cap"))


def diagnose(path: Path) -> tuple[list, Source]:
    rel = path.relative_to(ROOT).as_posix()
    source = Source(path.read_text(encoding="utf-8"), rel)
    try:
        checked = check(parse(source), source)
    except CapError as exc:
        return exc.diagnostics, exc.source or source
    diags = list(checked.warnings)
    if checked.contract.examples:  # E0608/E0609 are found when an example's panel is built
        from capdsl.tools.examples import run_example
        from capdsl.evaluation.lower import lower

        program = lower(checked)
        diags += [o.error for o in (run_example(program, ex, source) for ex in checked.contract.examples)
                  if o.error is not None]
    return diags, source


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden(path: Path):
    diags, source = diagnose(path)
    code = path.stem.split("_", 1)[0]
    assert code in {d.code for d in diags}, f"{path.name} does not produce {code}"
    out = render_all(diags, source) + "\n"
    expected = path.with_suffix(".txt")
    if os.environ.get("CAPDSL_UPDATE_GOLDENS") == "1":
        expected.write_text(out, encoding="utf-8")
    assert out == expected.read_text(encoding="utf-8")


def test_every_code_has_a_golden():
    """Each documented code in docs/errors.md up to E06xx has a golden (or a test below)."""
    import re
    documented = set(re.findall(r"^### ([EW]0[0-6]\d\d)", (ROOT / "docs" / "errors.md").read_text(), re.M))
    covered = {p.stem.split("_", 1)[0] for p in CASES} | {"E0001", "E0002", "E0003", "E0105"}
    assert documented - covered == set()


def test_every_code_the_checker_emits_is_documented():
    import re
    documented = set(re.findall(r"^### ([EW]\d{4})", (ROOT / "docs" / "errors.md").read_text(), re.M))
    emitted = set()
    for module in (ROOT / "capdsl" / "language").glob("*.py"):
        emitted |= set(re.findall(r'"([EW]0[0-6]\d\d)"', module.read_text()))
    assert emitted - documented == set()


def test_e0002_not_utf8(tmp_path):
    from capdsl.errors import SyntaxError_, load_source
    bad = tmp_path / "latin1.cap"
    bad.write_bytes('contract "Zdravotní":\n    currency CZK\nend\n'.encode("latin-1"))
    with pytest.raises(SyntaxError_) as info:
        load_source(bad, 10_000)
    assert info.value.code == "E0002"
    assert ":1:19:" in info.value.render()


def test_e0001_missing_file(tmp_path):
    from capdsl.errors import UsageError, load_source
    with pytest.raises(UsageError) as info:
        load_source(tmp_path / "nope.cap", 10_000)
    assert info.value.code == "E0001"


def test_e0003_too_large(tmp_path):
    from capdsl.errors import SyntaxError_, load_source
    big = tmp_path / "big.cap"
    big.write_text("# x\n" * 1000)
    with pytest.raises(SyntaxError_) as info:
        load_source(big, 100)
    assert info.value.code == "E0003"
