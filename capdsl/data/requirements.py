"""What a contract reads from the panel, in the panel loader's terms: the columns of each table
(the standard ones, `capdsl.language.builtins.STANDARD_COLUMNS`, and the contract's declared
inputs), its measures and its parameters.

`requirements(program)` builds them from a program (or its layout); the DuckDB loader
(`capdsl.data.panel`), the parameter parser (`capdsl.data.params`) and the Spark checks
(`capdsl.sql.spark_checks`) read them. A program's measures and parameters are passed on as the
evaluation tree's own records (`tree.MeasureDecl`, `tree.ParamDecl`); `MeasureSpec` and `ParamSpec`
have the same fields, for requirements written by hand, without importing the tree (a run whose
query is cached never does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from capdsl.evaluation.layout import Layout, layout_of
from capdsl.language.builtins import BUILTINS, KINDS, STANDARD_COLUMNS, TABLE_OF_SCOPE

if TYPE_CHECKING:
    from capdsl.evaluation import tree as t


@dataclass(frozen=True, slots=True)
class MeasureSpec:
    """A declared measure (as `tree.MeasureDecl`): how its `value` text is typed; `default` applies
    when a row is absent."""

    kind: str
    default: Any = None
    needed_by: str = ""


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """A declared parameter (as `tree.ParamDecl`): its default (None: it must be given), its unit text
    ("CZK per member", "%", "" for none) and where it is declared."""

    kind: str
    default: Any = None
    unit: str = ""
    needed_by: str = ""

#: What a standard column's messages say needs it.
STANDARD_NEED = "every contract (a standard column)"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column a table must (or may) have. `needed_by` names the contract line, for errors."""

    name: str
    kind: str  # one of builtins.KINDS
    required: bool = False
    default: Any = None
    needed_by: str = STANDARD_NEED

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: unknown kind {self.kind!r}")


@dataclass(slots=True)
class Requirements:
    """What a contract reads from the panel; built by `requirements` from the contract's inputs."""

    members: list[ColumnSpec] = field(default_factory=list)
    practices: list[ColumnSpec] = field(default_factory=list)
    events: list[ColumnSpec] = field(default_factory=list)
    measures: dict[str, MeasureSpec | t.MeasureDecl] = field(default_factory=dict)
    params: dict[str, ParamSpec | t.ParamDecl] = field(default_factory=dict)
    needs_practices: bool = False
    needs_events: bool = False
    needs_measures: bool = False


#: The standard columns of every table, as the loader reads them.
CANONICAL: dict[str, list[ColumnSpec]] = {
    table: [ColumnSpec(c.name, c.kind, c.required, c.default) for c in columns]
    for table, columns in STANDARD_COLUMNS.items()
}
#: Per table, the standard columns every evaluation reads (whether a contract names them or not).
ALWAYS_READ: dict[str, frozenset[str]] = {
    table: frozenset(c.name for c in columns if c.always_read) for table, columns in STANDARD_COLUMNS.items()
}
# (scope, column) of each built-in attribute read from a panel column
_BUILTIN_COLUMNS = frozenset((b.scope, b.column) for b in BUILTINS.values() if b.column is not None)


def columns_for(table: str, req: Requirements) -> list[ColumnSpec]:
    """The standard columns of `table`, each replaced by the contract's declaration of the same name,
    then the contract's other columns."""
    declared = {c.name: c for c in getattr(req, table, [])} if table != "measures" else {}
    out = [declared.pop(c.name, c) for c in CANONICAL[table]]
    return out + list(declared.values())


def requirements(program: t.Program | Layout) -> Requirements:
    """What the program reads from the panel. A built-in attribute's column is passed on only when
    not every evaluation reads it anyway (`member.sex`): the loader and the Spark checks then check
    it with the contract's line as the one that needs it."""
    shape = layout_of(program)
    cols: dict[str, list[ColumnSpec]] = {"member": [], "practice": [], "event": []}
    for col in shape.columns:
        if (col.table, col.name) in _BUILTIN_COLUMNS and col.name in ALWAYS_READ[TABLE_OF_SCOPE[col.table]]:
            continue
        cols[col.table].append(ColumnSpec(col.name, col.kind, col.required, col.default, col.needed_by))
    measures = dict(shape.measures)
    return Requirements(members=cols["member"], practices=cols["practice"], events=cols["event"],
                        measures=measures, params=dict(shape.params), needs_practices=bool(cols["practice"]),
                        needs_events=shape.needs_events, needs_measures=bool(measures))
