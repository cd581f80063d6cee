"""Every command's and subcommand's --help ends with examples (`Examples:` and capdsl command lines)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from capdsl.tools.cli import main


def commands(group: click.Group = main, path: tuple[str, ...] = ()):
    """(command path, command) for the group itself and everything under it, subgroups included."""
    yield path, group
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


ALL = list(commands())


def test_every_command_is_listed():
    names = {" ".join(p) for p, _ in ALL}
    assert {"", "check", "fmt", "eval", "explain", "test", "diff", "compile", "panel", "panel from-synthea",
            "cache", "cache info", "cache clear", "schema", "lsp"} <= names


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "capdsl")
def test_help_has_examples(path):
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="capdsl")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Examples:" in text, f"capdsl {' '.join(path)} --help has no Examples section"
    examples = [ln.strip() for ln in text[text.index("Examples:"):].splitlines()[1:] if ln.strip()]
    # one command line per line (click's \b keeps its rewrapping away from the examples)
    runs = [ln for ln in examples if ln.startswith("capdsl ") or (ln.startswith("CAPDSL_") and " capdsl " in ln)]
    assert runs, f"capdsl {' '.join(path)} --help: no example line runs capdsl"
    if path:  # a subcommand's examples use it
        assert any(" ".join(path) in ln for ln in runs), (path, runs)
