"""The typed AST: what an author wrote, as frozen dataclasses.

Built from the Lark tree by `capdsl.language.syntax`; nothing downstream sees Lark.
Every node carries its `span`, excluded from equality so that structural
comparisons (round-trip tests, the formatter) ignore positions.
The AST is backend-neutral: it says what the contract means in the author's
terms (bands, tiers, lines); `capdsl.evaluation.lower` turns it into the evaluation tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Union

from capdsl.errors import NO_SPAN, Span


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)


# ─────────────────────────────── units ───────────────────────────────

@dataclass(frozen=True, slots=True)
class UnitExpr:
    """A written unit: `CZK`, `points`, `CZK per point`, `%`."""

    word: str
    per: str | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TypeExpr:
    """A declared input type: `bool`, `hours`, `money per member`."""

    word: str
    per: str | None = None
    span: Span = _span()


# ───────────────────────────── expressions ───────────────────────────

@dataclass(frozen=True, slots=True)
class Quantity:
    """A number with an optional unit. `15%` is stored as 0.15 with unit `%`."""

    value: Decimal
    text: str
    unit: UnitExpr | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class String:
    value: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DateLit:
    value: date
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Name:
    """A reference to a definition or parameter."""

    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Attr:
    """`member.age`, `practice.weekly_hours`, `event.code`, `measure.quality`, `param.x`."""

    scope: str
    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Neg:
    operand: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Binary:
    """Arithmetic. `op` is one of + - * / and `of` (a percentage of a value)."""

    op: str
    left: "Expr"
    right: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # normalised: = != < <= > >=
    left: "Expr"
    right: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    items: tuple["Expr", ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class InList:
    operand: "Expr"
    options: tuple["Expr", ...]
    negated: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class InTable:
    """`event.code in prevention_fees`: the key exists in a schedule."""

    operand: "Expr"
    table: Name
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Present:
    """`measure.x is present` (or `is missing` when negated)."""

    operand: "Expr"
    negated: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class IfExpr:
    cond: "Expr"
    then: "Expr"
    otherwise: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Call:
    """A built-in function (`builtins.FUNCTIONS`). The mode word of `round(x, q, half_even)` is
    held as a `Name` but is no value: `children` leaves it out."""

    func: str
    args: tuple["Expr", ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SumOver:
    """`sum of E over members|events|year [where C]`."""

    expr: "Expr"
    source: str
    where: "Expr | None" = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CountOf:
    """`count of members|events [where C]`."""

    source: str
    where: "Expr | None" = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class MemberEvents:
    """`sum of E over member events [during month|quarter|year] [where C]`, or `count of member
    events …`: a per-member total of the member's own events. `expr` None for a count."""

    kind: str  # sum | count
    expr: "Expr | None"
    window: str  # month | quarter | year
    where: "Expr | None" = None
    span: Span = _span()


Expr = Union[Quantity, String, DateLit, BoolLit, Name, Attr, Neg, Binary, Compare, BoolOp, Not,
             InList, InTable, Present, IfExpr, Call, SumOver, CountOf, MemberEvents]


# ───────────────────────────── declarations ──────────────────────────

@dataclass(frozen=True, slots=True)
class Ref:
    """A source reference: the contract clause a definition comes from."""

    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    payer: str | None = None
    provider: str | None = None
    currency: str | None = None
    period_unit: str = "month"
    age_rule: str = "month_start"
    exposure: str = "first_day"
    list_day: str | None = None  # `list as of quarter_start`: the day the list of members is taken on
    retro_months: int | None = None  # `retroactive 12 months`: how far back eligibility changes are paid
    rounding_mode: str = "half_up"
    rounding_quantum: Decimal = Decimal("0.01")
    report_currency: str | None = None
    report_rate: Quantity | None = None
    ref: Ref | None = None
    # which clauses were written (so the formatter keeps defaults implicit)
    written: tuple[str, ...] = ()
    span: Span = _span()
    clause_spans: tuple[tuple[str, Span], ...] = field(default=(), compare=False, repr=False)

    def clause_span(self, clause: str) -> Span:
        for name, span in self.clause_spans:
            if name == clause:
                return span
        return self.span


@dataclass(frozen=True, slots=True)
class InputDecl:
    scope: str  # member | practice | event | measure | param
    name: str
    type: TypeExpr
    default: Expr | None = None
    ref: Ref | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Inputs:
    decls: tuple[InputDecl, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Define:
    name: str
    expr: Expr
    ref: Ref | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DatedEntry:
    value: Expr
    start: date
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Dated:
    """A value that changes on dates; each entry applies from its date on."""

    name: str
    entries: tuple[DatedEntry, ...]
    ref: Ref | None = None
    span: Span = _span()
    until: date | None = None  # the last day it has a value (`until 2012-12-31`); None: open
    until_span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Range:
    """An interval of the band key. `form` records how it was written:
    to (closed), to_under ([lo, hi)), and_over ([lo, ∞)), over ((lo, ∞)),
    under ((-∞, hi)), exact ([v, v])."""

    form: str
    low: Quantity | None
    high: Quantity | None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BandEntry:
    range: Range | None  # None: `otherwise`
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Bands:
    name: str
    key: Expr
    entries: tuple[BandEntry, ...]
    ref: Ref | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CellKey:
    """One key of a rate-cell row. `form`: range (a numeric key's interval), values (one or
    more texts or true/false a text or bool key equals) or any (the key is not tested)."""

    form: str
    range: Range | None = None
    values: tuple[str | bool, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CellRow:
    keys: tuple[CellKey, ...] | None  # None: `otherwise`
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Cells:
    """A rate table keyed by several inputs: the first row whose every key matches."""

    name: str
    keys: tuple[Expr, ...]
    entries: tuple[CellRow, ...]
    ref: Ref | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Choice:
    """One entry of a tier or modifier; `cond` None means `otherwise`
    (for a modifier, `always=True` marks an entry without condition)."""

    value: Expr
    cond: Expr | None
    always: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    entries: tuple[Choice, ...]
    ref: Ref | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Modifier:
    name: str
    combine: str  # highest | lowest | multiply | add | first
    entries: tuple[Choice, ...]
    ref: Ref | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    code: str | None  # None: `otherwise`
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    key: Expr
    entries: tuple[ScheduleEntry, ...]
    ref: Ref | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Installment:
    month: int  # 1–12: the month it is paid in
    label: str  # as written: Q2, H1, June
    share: Quantity | None  # None: `rest`
    when: Expr | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PayTime:
    """A month a payment falls in, as written (`June`, `Q2`: March … the quarter's last month)."""

    month: int
    label: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Payment:
    """A `paid` clause other than shares: `paid monthly|quarterly` (`every`) or `paid in June, …`."""

    every: str | None  # monthly | quarterly
    months: tuple[PayTime, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Corridor:
    """`corridor around T within w share s`: beyond T ± w × T, a share s of the excess is given back
    (or, below, made up)."""

    target: "Expr"
    within: Quantity
    share: Quantity
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Settlement:
    """A settlement's terms as written; its pool's `amount` is the adjustment they give."""

    total: "Expr"
    cap: "Expr | None" = None
    floor: "Expr | None" = None
    corridor: Corridor | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Line:
    """A statement row. `kind` is "line" (monthly) or "pool" (annual, paid in
    installments). `block` records whether it was written as a block."""

    kind: str
    name: str
    label: str
    amount: Expr | None
    applies: Expr | None = None
    basis: Expr | None = None
    basis_label: str | None = None
    paid: tuple[Installment, ...] = ()
    ref: Ref | None = None
    block: bool = False
    span: Span = _span()
    payment: Payment | None = None  # `paid monthly`, `paid quarterly`, `paid in June`
    rate_per: str | None = None  # `rate per quarter`: the period the amount is a rate for
    settlement: Settlement | None = None  # a `settlement` block (kind "pool"; amount = its adjustment)
    clause_spans: tuple[tuple[str, Span], ...] = field(default=(), compare=False, repr=False)

    def clause_span(self, clause: str) -> Span:
        for name, span in self.clause_spans:
            if name == clause:
                return span
        return self.span


# ───────────────────────────── examples ──────────────────────────────

@dataclass(frozen=True, slots=True)
class Assignment:
    name: str
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExPeriod:
    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExSet:
    name: str
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExPractice:
    practice: str
    attrs: tuple[Assignment, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExMembers:
    count: int
    practice: str
    age: int
    attrs: tuple[Assignment, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExMember:
    member: str
    practice: str
    born: date
    enrolled_from: date | None = None
    enrolled_to: date | None = None
    attrs: tuple[Assignment, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExEvents:
    count: int
    practice: str
    code: str
    on: date
    attrs: tuple[Assignment, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExMeasure:
    measure: str
    practice: str
    period: str | None
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExExpect:
    practice: str | None  # None: the grand total
    line: str  # a line or pool name, or "total"
    value: Expr
    span: Span = _span()


ExampleEntry = Union[ExPeriod, ExSet, ExPractice, ExMembers, ExMember, ExEvents, ExMeasure, ExExpect]


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    entries: tuple[ExampleEntry, ...]
    ref: Ref | None = None
    span: Span = _span()


Decl = Union[Header, Inputs, Define, Dated, Bands, Cells, Tier, Modifier, Schedule, Line, Example]


@dataclass(frozen=True, slots=True)
class Comment:
    """A `#` comment, kept for the formatter. `own_line` is False for a
    comment that trails code on the same line."""

    text: str
    line: int
    own_line: bool


@dataclass(frozen=True, slots=True)
class Contract:
    decls: tuple[Decl, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
    span: Span = _span()

    @property
    def header(self) -> Header | None:
        for d in self.decls:
            if isinstance(d, Header):
                return d
        return None

    def of_type(self, cls):
        return [d for d in self.decls if isinstance(d, cls)]

    @property
    def examples(self) -> list[Example]:
        return self.of_type(Example)

    @property
    def lines(self) -> list[Line]:
        return self.of_type(Line)


def walk(expr) -> "list":
    """All sub-expressions of an expression, pre-order."""
    out = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        out.append(node)
        stack.extend(reversed(children(node)))
    return out


def children(node) -> tuple:
    """The direct sub-expressions of an expression node (none for a leaf)."""
    get = _CHILDREN.get(type(node))
    return get(node) if get is not None else ()


# One lookup instead of a chain of isinstance tests: the checker asks this for every node.
_CHILDREN = {
    Neg: lambda x: (x.operand,),
    Not: lambda x: (x.operand,),
    Binary: lambda x: (x.left, x.right),
    Compare: lambda x: (x.left, x.right),
    BoolOp: lambda x: x.items,
    InList: lambda x: (x.operand, *x.options),
    InTable: lambda x: (x.operand, x.table),
    Present: lambda x: (x.operand,),
    IfExpr: lambda x: (x.cond, x.then, x.otherwise),
    Call: lambda x: x.args[:2] if x.func == "round" and len(x.args) == 3 and isinstance(x.args[2], Name) else x.args,
    SumOver: lambda x: (x.expr,) if x.where is None else (x.expr, x.where),
    CountOf: lambda x: () if x.where is None else (x.where,),
    MemberEvents: lambda x: tuple(c for c in (x.expr, x.where) if c is not None),
}
