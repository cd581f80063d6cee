"""A compiled contract's layout: what running it needs besides its query.

A statement is laid out from the contract's header and lines
(`statements.build` takes a `Layout`), and the panel loader is told which
columns, measures and parameters to read and check
(`capdsl.data.requirements`). The layout keeps exactly that, so a run whose
query is in the compiled-contract cache (`pipeline.CompiledContract`) reads
this small entry and neither decodes nor imports the evaluation tree; the
tree is read only when a query has to be compiled or the interpreter runs.
`layout_of(program)` is the one place a layout is made from a tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from capdsl.errors import Span

if TYPE_CHECKING:
    from capdsl.evaluation import tree as t


@dataclass(frozen=True, slots=True)
class InstallmentOutline:
    """A pool installment as its statement line shows it (`tree.Installment`'s fields)."""

    month: int
    share: Decimal | None  # None: the rest (or an equal part)
    when_text: str | None
    label: str = ""
    parts: int = 0

    @property
    def quarter(self) -> int:
        return (self.month - 1) // 3 + 1


@dataclass(frozen=True, slots=True)
class LineOutline:
    """A statement line's layout (`tree.LineDef` without its amount)."""

    name: str
    label: str
    kind: str  # line | pool
    applies_text: str | None
    ref: str | None
    basis_label: str | None
    origin: Span
    installments: tuple[InstallmentOutline, ...]
    due: tuple[int, ...] = ()  # a line paid in some months only: those (1–12); () every month
    due_text: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnOutline:
    """A panel column the contract reads (`tree.Column`'s fields)."""

    table: str
    name: str
    kind: str
    required: bool
    default: object
    needed_by: str


@dataclass(frozen=True, slots=True)
class Layout:
    """A program's header, lines and panel needs (`tree.Program`'s names, plus `needs_events`)."""

    name: str
    path: str
    currency: str
    report_currency: str | None
    report_rate: Decimal | None
    quantum: Decimal
    rounding_mode: str
    lines: tuple[LineOutline, ...]
    columns: tuple[ColumnOutline, ...]
    measures: dict[str, t.MeasureDecl]
    params: dict[str, t.ParamDecl]
    needs_events: bool  # some line aggregates events (a practice's, or a member's own)


def layout_of(program: t.Program | Layout) -> Layout:
    if isinstance(program, Layout):
        return program
    from capdsl.evaluation import tree as t
    return Layout(
        name=program.name, path=program.path, currency=program.currency, report_currency=program.report_currency,
        report_rate=program.report_rate, quantum=program.quantum, rounding_mode=program.rounding_mode,
        lines=tuple(LineOutline(line.name, line.label, line.kind, line.applies_text, line.ref, line.basis_label,
                                line.origin, tuple(InstallmentOutline(i.month, i.share, i.when_text, i.label, i.parts)
                                                   for i in line.installments), line.due, line.due_text)
                    for line in program.lines),
        columns=tuple(ColumnOutline(c.table, c.name, c.kind, c.required, c.default, c.needed_by)
                      for c in program.columns),
        measures=dict(program.measures), params=dict(program.params),
        needs_events=any((isinstance(n, t.Agg) and n.source == "events") or isinstance(n, t.MemberEvents)
                         for line in program.lines for n in t.walk(t.inline(line.amount, program))))
