"""The evaluation tree: a small, closed, backend-neutral IR.

`capdsl.evaluation.lower` builds it from the checked AST; every backend (the Decimal
interpreter, the SQL compiler) implements exactly these nodes and nothing
else, so bands, tiers, modifiers, schedules and splits have one meaning.
No node holds a Python callable.

Semantics every backend must honour:
- Numbers are fixed-point decimals with `SCALE` (12) fractional digits.
  `+` and `-` are exact; `*` and `/` are rounded half away from zero to
  `SCALE` places (SQL: CAST(... AS DECIMAL(38, 12)); Python:
  quantize(ROUND_HALF_UP)).
- Comparisons, `And`, `Or`, `Not` are two-valued: no operand is ever NULL
  except `Measure` and the optional member and event columns (`sex`,
  `enrolled_from`, `enrolled_to`, the event's `member_id`), and those are
  only read where a `Present` test before them decides (the checker enforces
  it, E0308 and E0313: in `And`/`Or` after a decisive item, in a `Case` branch)
  or, for a measure, through `Coalesce` with its default. So a NULL never
  decides a condition, and SQL's three-valued logic gives the same answer.
- `Case` returns the value of the first true condition, else `otherwise`;
  `otherwise=None` means "no match is an error": raise `Fail`'s code.
- Level: MEMBER nodes (`Col("member", …)`) appear only inside an `Agg` over
  members, EVENT nodes only inside an `Agg` over events. A pool's expressions
  (amount, applies, installment `when`) are evaluated once per practice and
  year: they read monthly values (`Agg`, a `LineRef` to a monthly line) only
  inside a `YearSum` (the checker enforces it, E0306); `YearSum`, and a
  `LineRef` to a pool, appear only in a pool's expressions.
- What a pool sees of another pool: a `LineRef` to a pool reads what that
  pool paid in the year — the sum of its installments whose `when` held,
  all four quarters whatever period is evaluated, 0 for a withheld one and
  0 for a pool not applied — never its annual amount before withholding.
  So a pool is evaluated (amount, rounding, split, each `when`) before any
  pool that reads it (`Program.line_order`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Union

from capdsl.evaluation.amounts import SCALE  # noqa: F401 (the tree's semantics are stated with it, above)
from capdsl.errors import NO_SPAN, Span


def _origin() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)


# ─────────────────────────────── values ───────────────────────────────────

@dataclass(frozen=True, slots=True)
class Const:
    """A literal. `kind`: decimal | integer | bool | text | date."""

    value: Decimal | bool | str | date
    kind: str


@dataclass(frozen=True, slots=True)
class Param:
    """A run-time parameter (`--set`), bound before evaluation."""

    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class MonthStart:
    """The first day of the month being evaluated (for dated values)."""


@dataclass(frozen=True, slots=True)
class Calendar:
    """A value of the month being evaluated (`calendar.quarter`): `part` month (1–12), quarter
    (1–4), half (1–2), year (integers), month_start, month_end, quarter_start, year_start (dates).
    A pool's expressions are evaluated in December of the year, so they read December's."""

    part: str


@dataclass(frozen=True, slots=True)
class DateDiff:
    """`unit` year | month | day: the completed years or months from `start` to `end`, or the days
    (end − start), an integer. Completed years are the years' difference less one when end's
    (month, day) is before start's (so a 29 February start completes its year on 1 March);
    completed months likewise with the months' difference and the day of the month. When end is
    before start, the count from end to start, negated (so a DateDiff is antisymmetric). Both
    operands are dates, never NULL (the checker's E0313)."""

    unit: str
    start: "Node"
    end: "Node"


@dataclass(frozen=True, slots=True)
class Col:
    """A column of the current row. `table`: member | practice | event.

    Virtual member columns computed by every backend from the contract's rules:
    `age` (completed years per the age rule) and `weight` (exposure weight).
    """

    table: str
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class Measure:
    """A practice measure. `period`: "month" (most specific row containing the
    evaluated month: month, else quarter, else year) or "year" (the year row).
    NULL when the practice has no such row."""

    name: str
    kind: str
    period: str = "month"


@dataclass(frozen=True, slots=True)
class Arith:
    op: str  # + - * /
    left: "Node"
    right: "Node"
    origin: Span = _origin()


@dataclass(frozen=True, slots=True)
class Neg:
    operand: "Node"


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str  # = != < <= > >=
    left: "Node"
    right: "Node"


@dataclass(frozen=True, slots=True)
class And:
    items: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Node"


@dataclass(frozen=True, slots=True)
class In:
    operand: "Node"
    options: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Present:
    """True when the operand (a `Measure` or an optional `Col`) has a value."""

    operand: "Node"


@dataclass(frozen=True, slots=True)
class Coalesce:
    """The operand, or `default` when it is NULL (measures with defaults)."""

    operand: "Node"
    default: "Node"


@dataclass(frozen=True, slots=True)
class Fail:
    """Evaluation stops with `code`: e.g. a member no band covers. `shows`: values the message names
    (a rate cell table's keys: which values matched no row), read where it stops."""

    code: str
    message: str
    origin: Span = _origin()
    shows: tuple = ()


@dataclass(frozen=True, slots=True)
class Case:
    """First true condition wins. `table` and `labels` name the source table
    and its entries (for `explain`: "band 45 to 49 of age_index")."""

    whens: tuple[tuple["Node", "Node"], ...]
    otherwise: "Node"
    table: str | None = None
    labels: tuple[str, ...] = ()
    origin: Span = _origin()


@dataclass(frozen=True, slots=True)
class MinMax:
    """`op`: min | max over two or more values (no NULLs)."""

    op: str
    args: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Abs:
    operand: "Node"


@dataclass(frozen=True, slots=True)
class Round:
    """Round to a multiple of `quantum` with `mode` (half_up | half_even | down | up)."""

    operand: "Node"
    quantum: Decimal
    mode: str


@dataclass(frozen=True, slots=True)
class Ref:
    """A named definition of the program (kept for `explain`; backends may inline)."""

    name: str


@dataclass(frozen=True, slots=True)
class Agg:
    """A practice-month aggregate. `kind` sum | count; `source` members | events.

    Over members each row is weighted by the exposure weight (sum of
    weight × expr; count = sum of weights). Over events, count = sum of
    quantity. `where` filters rows."""

    kind: str
    source: str
    expr: "Node | None"
    where: "Node | None" = None
    origin: Span = _origin()


@dataclass(frozen=True, slots=True)
class MemberEvents:
    """A member's own events (those whose `member_id` is the member's, whatever practice they are
    paid to) dated in the `window` (month | quarter | year) containing the evaluated month: `kind`
    sum (Σ expr) or count (Σ quantity), over the events where `where` holds; 0 when there are none.
    A per-member value: it appears only inside an `Agg` over members, and its `expr` and `where`
    read only the event, parameters and constants (the checker's E0316)."""

    kind: str
    window: str
    expr: "Node | None"
    where: "Node | None" = None
    origin: Span = _origin()


@dataclass(frozen=True, slots=True)
class LineRef:
    """A monthly line: its rounded amount in the same practice-month (0 if not
    applied). A pool (read only by another pool): what it paid in the year,
    the sum of its paid installments (see the module docstring)."""

    name: str


@dataclass(frozen=True, slots=True)
class YearSum:
    """Σ of a practice-month value over the twelve months of the year."""

    operand: "Node"


Node = Union[Const, Param, MonthStart, Calendar, DateDiff, Col, Measure, Arith, Neg, Cmp, And, Or, Not, In,
             Present, Coalesce, Fail, Case, MinMax, Abs, Round, Ref, Agg, MemberEvents, LineRef, YearSum]


# ─────────────────────────────── program ──────────────────────────────────

@dataclass(frozen=True, slots=True)
class Definition:
    """A named value. `level`: const | practice | member | event | aggregate | year."""

    name: str
    level: str
    expr: Node
    kind: str  # decimal | integer | bool | text | date
    unit: str = ""  # display unit, e.g. "CZK", "points"
    ref: str | None = None
    origin: Span = _origin()


@dataclass(frozen=True, slots=True)
class Installment:
    """A share of a pool paid in `month` (1–12, `label` as written: Q2, H1, June). `share` a fraction
    of the pool, or `parts` n > 0: an n-th of it (`paid monthly`: twelfths); both None/0: the rest."""

    month: int
    share: Decimal | None  # None: the rest, or an n-th with `parts`
    when: Node | None = None
    when_text: str | None = None
    label: str = ""
    parts: int = 0

    @property
    def quarter(self) -> int:
        return (self.month - 1) // 3 + 1


@dataclass(frozen=True, slots=True)
class LineDef:
    """A statement row. `kind` line (monthly) | pool (annual, in installments)."""

    name: str
    label: str
    kind: str
    amount: Node
    applies: Node | None = None
    applies_text: str | None = None
    basis: Node | None = None
    basis_label: str | None = None
    installments: tuple[Installment, ...] = ()
    ref: str | None = None
    origin: Span = _origin()
    #: A line paid in some months only (`paid quarterly`, `paid in June`): those months (1–12), each
    #: with the months it pays for; () for every month. The amount and basis are already 0 in the
    #: other months (lowered into the tree); this is what statements say about them.
    due: tuple[int, ...] = ()
    due_text: str | None = None
    #: The period the line's amount is a rate for (`rate per quarter`): with `due`, what explain
    #: needs to show the factor a paid month's amount was scaled by.
    rate_per: str = "month"


@dataclass(frozen=True, slots=True)
class Column:
    """An input column the program reads: table member | practice | event."""

    table: str
    name: str
    kind: str
    default: object = None
    required: bool = True
    needed_by: str = ""


@dataclass(frozen=True, slots=True)
class MeasureDecl:
    """A measure the program reads, with the default an absent value takes."""

    kind: str
    default: object = None
    needed_by: str = ""


@dataclass(frozen=True, slots=True)
class ParamDecl:
    """A parameter the program reads: its default (None: it must be given) and display unit."""

    kind: str
    default: object = None
    unit: str = ""
    needed_by: str = ""


@dataclass(frozen=True, slots=True)
class Program:
    """Everything a backend needs to evaluate a contract."""

    name: str
    path: str
    currency: str
    age_rule: str
    exposure: str
    rounding_mode: str
    quantum: Decimal
    report_currency: str | None
    report_rate: Decimal | None
    definitions: dict[str, Definition]  # in dependency order
    lines: tuple[LineDef, ...]  # in contract order
    line_order: tuple[str, ...]  # dependency order for evaluation
    columns: tuple[Column, ...]
    measures: dict[str, MeasureDecl]
    params: dict[str, ParamDecl]
    payer: str | None = None
    provider: str | None = None
    retro_months: int | None = None  # `retroactive N months`: how far back eligibility changes are paid

    @property
    def has_pools(self) -> bool:
        return any(line.kind == "pool" for line in self.lines)

    def line(self, name: str) -> LineDef:
        for line in self.lines:
            if line.name == name:
                return line
        raise KeyError(name)


def children(node: Node) -> tuple:
    """Direct sub-nodes, for generic walks (backends, optimisers, tests)."""
    if isinstance(node, (Arith, Cmp)):
        return (node.left, node.right)
    if isinstance(node, DateDiff):
        return (node.start, node.end)
    if isinstance(node, (Neg, Not, Present, Abs, Round, YearSum)):
        return (node.operand,)
    if isinstance(node, (And, Or)):
        return node.items
    if isinstance(node, In):
        return (node.operand, *node.options)
    if isinstance(node, Coalesce):
        return (node.operand, node.default)
    if isinstance(node, Case):
        out = []
        for cond, value in node.whens:
            out += [cond, value]
        out.append(node.otherwise)
        return tuple(out)
    if isinstance(node, MinMax):
        return node.args
    if isinstance(node, (Agg, MemberEvents)):
        return tuple(x for x in (node.expr, node.where) if x is not None)
    if isinstance(node, Fail):
        return node.shows
    return ()


def year_closure(program: "Program") -> tuple[frozenset[str], tuple[Agg, ...]]:
    """What the pools' year sums read in every month of the year: the monthly lines
    (through `LineRef`) and the aggregates, following definitions. Every backend
    evaluates the other lines and aggregates only in the reported months, so a
    quarter's statement does not read (or fail on) data of months it does not pay."""
    roots: list[Node] = []
    for line in program.lines:
        if line.kind != "pool":
            continue
        pool_roots = [x for x in (line.amount, line.applies) if x is not None]
        pool_roots += [i.when for i in line.installments if i.when is not None]
        for root in pool_roots:
            roots += [n.operand for n in walk(root) if isinstance(n, YearSum)]
    lines: set[str] = set()
    aggs: dict[int, Agg] = {}
    seen_refs: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if isinstance(node, Agg):
            aggs.setdefault(id(node), node)
        elif isinstance(node, Ref):
            if node.name not in seen_refs and node.name in program.definitions:
                seen_refs.add(node.name)
                stack.append(program.definitions[node.name].expr)
            continue
        elif isinstance(node, LineRef):
            if node.name not in lines:
                lines.add(node.name)
                target = program.line(node.name)
                stack += [x for x in (target.amount, target.applies) if x is not None]
            continue
        stack.extend(children(node))
    return frozenset(lines), tuple(aggs.values())


def practice_level(node: Node) -> bool:
    """Reads only the practice-month: the same for every member (and event) of it (a `Ref` counts as
    not: inline first)."""
    return not any(isinstance(n, (Agg, LineRef, YearSum, Ref, MemberEvents))
                   or (isinstance(n, Col) and n.table != "practice") for n in walk(node))


def walk(node: Node):
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(children(current))


def inline(node: Node, program: Program) -> Node:
    """Replace every `Ref` by its definition (backends that do not name values)."""
    cache: dict[str, Node] = {}

    def go(n: Node) -> Node:
        if isinstance(n, Ref):
            if n.name not in cache:
                cache[n.name] = go(program.definitions[n.name].expr)
            return cache[n.name]
        if isinstance(n, Arith):
            return Arith(n.op, go(n.left), go(n.right), n.origin)
        if isinstance(n, Neg):
            return Neg(go(n.operand))
        if isinstance(n, Cmp):
            return Cmp(n.op, go(n.left), go(n.right))
        if isinstance(n, And):
            return And(tuple(go(i) for i in n.items))
        if isinstance(n, Or):
            return Or(tuple(go(i) for i in n.items))
        if isinstance(n, Not):
            return Not(go(n.operand))
        if isinstance(n, In):
            return In(go(n.operand), tuple(go(o) for o in n.options))
        if isinstance(n, Present):
            return Present(go(n.operand))
        if isinstance(n, Coalesce):
            return Coalesce(go(n.operand), go(n.default))
        if isinstance(n, Case):
            return Case(tuple((go(c), go(v)) for c, v in n.whens), go(n.otherwise), n.table, n.labels, n.origin)
        if isinstance(n, MinMax):
            return MinMax(n.op, tuple(go(a) for a in n.args))
        if isinstance(n, Abs):
            return Abs(go(n.operand))
        if isinstance(n, Round):
            return Round(go(n.operand), n.quantum, n.mode)
        if isinstance(n, DateDiff):
            return DateDiff(n.unit, go(n.start), go(n.end))
        if isinstance(n, Agg):
            return Agg(n.kind, n.source, go(n.expr) if n.expr is not None else None,
                       go(n.where) if n.where is not None else None, n.origin)
        if isinstance(n, YearSum):
            return YearSum(go(n.operand))
        if isinstance(n, Fail) and n.shows:
            return Fail(n.code, n.message, n.origin, tuple(go(x) for x in n.shows))
        if isinstance(n, MemberEvents):
            return MemberEvents(n.kind, n.window, go(n.expr) if n.expr is not None else None,
                                go(n.where) if n.where is not None else None, n.origin)
        return n

    return go(node)


def dump(node: Node, indent: int = 0) -> str:
    """A readable, stable text form of a tree (golden tests, `capdsl compile --tree`)."""
    pad = "  " * indent
    if isinstance(node, Const):
        return f"{pad}{node.kind} {node.value!s}"
    if isinstance(node, Param):
        return f"{pad}param {node.name}"
    if isinstance(node, MonthStart):
        return f"{pad}month_start"
    if isinstance(node, Calendar):
        return f"{pad}calendar.{node.part}"
    if isinstance(node, Col):
        return f"{pad}{node.table}.{node.name}"
    if isinstance(node, Measure):
        return f"{pad}measure.{node.name} ({node.period})"
    if isinstance(node, Ref):
        return f"{pad}ref {node.name}"
    if isinstance(node, LineRef):
        return f"{pad}line {node.name}"
    if isinstance(node, Fail):
        return f"{pad}fail {node.code}"
    head = {Arith: lambda x: f"arith {x.op}", Cmp: lambda x: f"cmp {x.op}", MinMax: lambda x: x.op,
            Round: lambda x: f"round {x.quantum} {x.mode}", DateDiff: lambda x: f"{x.unit}s between",
            Agg: lambda x: f"{x.kind} over {x.source}" + (" where" if x.where is not None else ""),
            MemberEvents: lambda x: f"{x.kind} over member events during {x.window}"
                                    + (" where" if x.where is not None else ""),
            Case: lambda x: f"case {x.table or ''}".rstrip()}.get(type(node), lambda x: type(x).__name__.lower())(node)
    lines = [pad + head]
    lines += [dump(c, indent + 1) for c in children(node)]
    return "\n".join(lines)
