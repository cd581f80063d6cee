"""The ```cap examples in the documentation parse and are in canonical layout
(docs/errors.md is left out: its examples show mistakes on purpose; a block
with `…` is an excerpt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from capdsl.errors import Source
from capdsl.language.fmt import format_source

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```cap\n(.*?)```", re.S)


def blocks():
    for path in sorted((ROOT / "docs").rglob("*.md")):
        if path.name == "errors.md":
            continue
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if "…" not in m.group(1):
                yield pytest.param(m.group(1), id=f"{path.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}")


@pytest.mark.parametrize("block", list(blocks()))
def test_doc_example_parses_and_is_formatted(block):
    assert format_source(Source(block, "doc.cap")) == block
