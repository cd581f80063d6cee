"""The package's shape, checked: each module imports only its own layer or those below it, no
import cycle (lazy imports included), and no module takes another module's `_private` names.
docs/architecture.md draws the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "capdsl"

#: Lowest first. A module may import from its own layer and every layer before it.
LAYERS = [
    ("capdsl", "capdsl.errors", "capdsl.outputs", "capdsl.store"),
    ("capdsl.language",),
    ("capdsl.evaluation",),
    ("capdsl.data",),
    ("capdsl.sql",),
    ("capdsl.cache", "capdsl.pipeline"),
    ("capdsl.tools", "capdsl.api", "capdsl.__main__"),
]
#: The package root names the public API (`capdsl.load`, …) and imports it on first use only.
FACADE = {("capdsl", "capdsl.api")}


def _layer(module: str) -> int:
    best, found = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            exact = prefix in ("capdsl",)
            if module == prefix or (not exact and module.startswith(prefix + ".")):
                if len(prefix) > best:
                    best, found = len(prefix), i
    assert found is not None, f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(tree: ast.Module) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every capdsl import, lazy ones too."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("capdsl") and not node.level:
            names = [a.name for a in node.names]
            submodules = [f"{node.module}.{x}" for x in names if f"{node.module}.{x}" in MODULES]
            if submodules:
                out += [(m, [], node.lineno) for m in submodules]
                names = [x for x in names if f"{node.module}.{x}" not in MODULES]
            if names or not submodules:
                out.append((node.module, names, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("capdsl")]
    return out


def test_no_relative_imports():
    offenders = [f"{m}:{node.lineno}" for m, tree in MODULES.items() for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level]
    assert offenders == [], "import capdsl modules by their full name"


def test_each_module_imports_only_its_layer_or_below():
    upward = [f"{m}:{line} imports {target} (layer {_layer(target)} > {_layer(m)})"
              for m, tree in MODULES.items() for target, _, line in _imports(tree)
              if target in MODULES and _layer(target) > _layer(m) and (m, target) not in FACADE]
    assert upward == []


def test_no_import_cycles():
    graph = {m: {target for target, _, _ in _imports(tree) if target in MODULES and target != m}
             for m, tree in MODULES.items()}
    graph = {m: deps - {"capdsl"} for m, deps in graph.items()}  # the package root holds only __version__
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(" → ".join(stack[stack.index(d):] + [m, d]) if d in stack else f"{m} → {d}")
            elif d not in state:
                visit(d, [*stack, m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert cycles == []


def test_no_private_names_from_other_modules():
    reach_ins = []
    for m, tree in MODULES.items():
        aliases = {}
        for target, names, line in _imports(tree):
            if target in MODULES and target != m:
                reach_ins += [f"{m}:{line} imports {target}.{x}" for x in names
                              if x.startswith("_") and not x.startswith("__")]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("capdsl"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                    and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and aliases[node.value.id] != m:
                reach_ins.append(f"{m}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert reach_ins == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_is_in_a_layer(module):
    _layer(module)


def test_every_query_is_fetched_whole():
    """A panel's DuckDB connection allows one open result: a `.fetchone()` leaves the rest of its
    result open, and the next `register` on the connection (an .xlsx or JSON Lines table) fails.
    Queries are fetched whole (`data.read.fetch_all`, `.fetchall()`)."""
    found = [f"{path.relative_to(PACKAGE)}:{n}" for path in sorted(PACKAGE.rglob("*.py"))
             for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if ".fetchone()" in text]
    assert found == []
