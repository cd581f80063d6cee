"""The documentation site builds with `mkdocs build --strict` (no broken links,
every page in the nav), its CLI reference lists every command, and ```cap
blocks are highlighted by the project's Pygments lexer."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

for module in ("mkdocs", "material", "mkdocs_click", "pymdownx"):
    pytest.importorskip(module, reason=f"{module} is not installed (the `docs` extra: pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    problems = [line for line in proc.stderr.splitlines() if not line.startswith("INFO")]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems)[-4000:]
    dead = [line for line in proc.stderr.splitlines() if "unrecognized relative link" in line]
    assert not dead, "links that work on GitHub but are dead on the site:\n" + "\n".join(dead)
    return out


def test_every_docs_page_is_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r"([\w/.-]+\.md)\s*$", config, re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - listed == set(), "pages missing from the nav in mkdocs.yml"


def test_cli_reference_lists_every_command(site):
    from capdsl.tools.cli import main

    page = html.unescape((site / "cli" / "index.html").read_text(encoding="utf-8"))
    assert main.commands, "the click group has no commands"
    for name, command in main.commands.items():
        assert re.search(rf"capdsl {re.escape(name)}\b", page), f"`capdsl {name}` is missing from the CLI page"
        summary = re.split(r"[`.:\n]", command.help or "")[0].strip()
        assert summary[:30] in page, f"the help of `capdsl {name}` is missing"
    assert "--format" in page and "--members" in page
    assert "Sentinel" not in page  # click ≥ 8.3's "no default" marker must not leak into the page


def test_cap_blocks_are_highlighted(site):
    page = (site / "index.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<div class="language-cap highlight">(.*?)</div>', page, re.S)
    assert blocks, "no ```cap block on the home page"
    # the lexer's tokens: `contract`/`bands` are declarations, `member` a built-in scope, `EUR` a type
    assert '<span class="kd">contract</span>' in blocks[0]
    assert '<span class="kd">bands</span>' in blocks[0]
    assert '<span class="nb">member</span>' in blocks[0]
    assert '<span class="kt">EUR</span>' in blocks[0]
