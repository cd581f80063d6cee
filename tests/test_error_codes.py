"""Every diagnostic code capdsl can emit is documented in docs/errors.md, and no
code means two things in the source (a code names one kind of problem)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def codes_in_source() -> set[str]:
    found = set()
    for path in (ROOT / "capdsl").rglob("*.py"):
        found |= set(re.findall(r'"([EW]\d{4})"', path.read_text(encoding="utf-8")))
    return found


def test_every_code_is_documented():
    documented = set(re.findall(r"\b([EW]\d{4})\b", (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")))
    missing = sorted(codes_in_source() - documented)
    assert not missing, f"document these codes in docs/errors.md: {missing}"
