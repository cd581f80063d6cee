"""Typing rules for expressions: one node at a time, children already typed.

Kept apart from `check` so the rules read as a table: for each construct,
what its operands must be (units that agree, true/false conditions, values
in the right scope) and what it yields. `combine` is called by the
checker's explicit-stack walk, so no rule ever recurses.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from capdsl.errors import Note, Span, error, warning
from capdsl.language import ast_nodes as n
from capdsl.language import units as u
from capdsl.language.builtins import BUILTINS, CALENDAR, DATE_FUNCTIONS, FUNCTIONS, OPTIONAL_FIELDS, ROUNDING_MODES
from capdsl.language.units import Level, Type

_ORDERED = ("<", "<=", ">", ">=")
_FUNCTION_LIST = ", ".join(list(FUNCTIONS)[:-1]) + " and " + list(FUNCTIONS)[-1]  # "min, max, clamp, … and days_between"
_OP_WORD = {"+": "add", "-": "subtract"}


#: The type of every built-in attribute, from the vocabulary's table.
BUILTIN_TYPES: dict[tuple[str, str], Type] = {key: u.of_kind(b.kind) for key, b in BUILTINS.items()}
#: How an empty optional date compares: an open enrolment runs from -∞ / to +∞.
OPEN_ENDS: dict[tuple[str, str], int] = {key: b.open_end for key, b in BUILTINS.items() if b.open_end}

#: What the checker calls each kind of declaration in its messages.
KIND_NAMES = {n.Define: "definition", n.Dated: "dated value", n.Bands: "bands table", n.Cells: "rate cells", n.Tier: "tier",
              n.Modifier: "modifier", n.Schedule: "schedule", n.InputDecl: "parameter"}


def kind_name(decl) -> str:
    """"definition", "bands table", "pool": a declaration as the checker's messages name it."""
    if isinstance(decl, n.Line):
        return decl.kind
    return KIND_NAMES.get(type(decl), "definition")


@dataclass(frozen=True, slots=True)
class Facts:
    """Where a value lives, with the span and wording that explain why."""

    row: str | None = None  # "member" | "event": a per-member / per-event value
    row_at: Span | None = None
    row_why: str = ""
    row_root: str = ""  # the attribute that makes it per-row: "`member.age`"
    agg_at: Span | None = None  # a monthly aggregate (a sum over members/events, a line)
    agg_why: str = ""
    year_at: Span | None = None  # an annual total (`over year`, a pool)
    year_why: str = ""
    practice: bool = False

    @property
    def level(self) -> Level:
        if self.year_at is not None:
            return Level.YEAR
        if self.row == "member":
            return Level.MEMBER
        if self.row == "event":
            return Level.EVENT
        if self.agg_at is not None:
            return Level.AGGREGATE
        return Level.PRACTICE if self.practice else Level.CONST


CONST = Facts()
_LEAVES = {n.String: u.TEXT, n.DateLit: u.DATE, n.BoolLit: u.BOOL}


def combine(ck, node, kid_nodes, kids: list[tuple[Type, object]]):
    """(type, facts) of `node` given its children's, reporting what is wrong here."""

    cls = type(node)
    if cls is n.Quantity:
        return ck.quantity(node), CONST
    if cls is n.Name:
        return name_ref(ck, node)
    if cls is n.Attr:
        return attr_ref(ck, node)
    if cls in _LEAVES:
        return _LEAVES[cls], CONST
    if cls is n.SumOver:
        return sum_over(ck, node, kids)
    if cls is n.CountOf:
        return count_of(ck, node, kids)
    if cls is n.MemberEvents:
        return member_events(ck, node, kids)
    facts = CONST
    for _, f in kids:
        if f is not CONST:
            facts = ck.merge(facts, f, node.span)
    types = [t for t, _ in kids]
    if isinstance(node, n.Neg):
        return numeric(ck, types[0], node.operand, "negate"), facts
    if isinstance(node, n.Binary):
        return binary(ck, node, types[0], types[1]), facts
    if isinstance(node, n.Compare):
        compare(ck, node, types[0], types[1])
        return u.BOOL, facts
    if isinstance(node, n.BoolOp):
        for t, item in zip(types, node.items):
            ck.want_bool(t, item, f"`{node.op}`")
        return u.BOOL, facts
    if isinstance(node, n.Not):
        ck.want_bool(types[0], node.operand, "`not`")
        return u.BOOL, facts
    if isinstance(node, n.InList):
        for t, opt in zip(types[1:], node.options):
            if not t.same(types[0]):
                ck.report(error("E0309", f"this option is {t.describe()}, but the value tested is "
                                         f"{types[0].describe()}", opt.span,
                                hint=f"write every option as {types[0].describe()}",
                                notes=[Note("the value tested", node.operand.span)]))
        return u.BOOL, facts
    if isinstance(node, n.InTable):
        in_table(ck, node, types[0])
        return u.BOOL, facts
    if isinstance(node, n.Present):
        present(ck, node.operand)
        return u.BOOL, facts
    if isinstance(node, n.IfExpr):
        ck.want_bool(types[0], node.cond, "`if`")
        if not types[1].same(types[2]):
            ck.report(error("E0309", f"the two branches of `if` differ: {types[1].describe()} after `then`, "
                                     f"{types[2].describe()} after `else`", node.otherwise.span,
                            hint="both branches must give the same kind of value",
                            notes=[Note("the `then` branch", node.then.span)]))
            return u.ANY, facts
        return types[1].join(types[2]), facts
    if isinstance(node, n.Call):
        return call(ck, node, types), facts
    return u.ANY, facts


def present(ck, op) -> None:
    """`x is present` / `is missing` tests a value that can be empty: a measure or an optional field."""
    if isinstance(op, n.Attr) and (op.scope == "measure" or (op.scope, op.name) in OPTIONAL_FIELDS):
        return
    if isinstance(op, n.Attr) and op.scope != "param" and (op.scope, op.name) not in BUILTINS \
            and (op.scope, op.name) not in ck.inputs:
        return  # an unknown input: E0206 says so
    if isinstance(op, n.Attr):
        what = f"`{op.scope}.{op.name}`" if op.scope != "param" else f"the parameter `{op.name}`"
    else:
        what = f"`{op.name}`" if isinstance(op, n.Name) else "this"
    what += " always has a value"
    fields = ", ".join(f"`{s}.{x}`" for s, x in OPTIONAL_FIELDS)
    ck.report(error("E0208", f"only a measure or an optional field can be present or missing; {what}", op.span,
                    hint=f"`is present` / `is missing` test a measure (`measure.name is present`) or one of "
                         f"{fields}; every other input always has a value"))


def percent_text(share: Decimal) -> str:
    """0.9 → "90", 15 → "1500", 0.125 → "12.5"."""
    text = f"{share * 100:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def numeric(ck, t: Type, node, verb: str) -> Type:
    if t.is_any or t.is_numeric:
        return t
    ck.report(error("E0312", f"cannot {verb} {t.describe()}", node.span,
                    hint="arithmetic works on numbers and amounts only"))
    return u.ANY


def _literal_value(node) -> Decimal | None:
    sign = 1
    while isinstance(node, n.Neg):
        sign, node = -sign, node.operand
    return sign * node.value if isinstance(node, n.Quantity) else None


def binary(ck, node: n.Binary, lt: Type, rt: Type) -> Type:
    op = node.op
    verb = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide", "of": "take a percentage of"}[op]
    lt = numeric(ck, lt, node.left, verb)
    rt = numeric(ck, rt, node.right, verb)
    if lt.is_any or rt.is_any:
        if op == "/" and _literal_value(node.right) == 0:
            ck.report(error("E0310", "division by zero", node.right.span, hint="divide by a non-zero value"))
        return u.ANY
    if op in ("+", "-"):
        if not lt.same(rt):
            bare = node.right if not rt.unit else node.left if not lt.unit else None
            unit = _unit_for_bare_number(node, bare, lt, rt)
            hint = f"write the unit on the number: {unit}" if unit else \
                "both sides must be in the same unit; convert one with a rate (e.g. `× 1.08 CZK per point`)"
            ck.report(error("E0301", f"cannot {verb} {lt.describe()} and {rt.describe()}", node.span, hint=hint,
                            notes=_side_notes(node, lt, rt)))
            return u.ANY
        return lt.plus(rt)
    if op == "*":
        return lt * rt
    if op == "/":
        if _literal_value(node.right) == 0:
            ck.report(error("E0310", "division by zero", node.right.span, hint="divide by a non-zero value"))
        return lt / rt
    # `of`: a share of a value
    if not lt.is_dimensionless:
        ck.report(error("E0311", f"the left side of `of` must be a percentage or a plain number, "
                                 f"not {lt.describe()}", node.left.span,
                        hint="write `15% of x`, or use `*` to multiply two amounts"))
        return u.ANY
    factor = _literal_value(node.left)
    if factor is not None:
        written = node.left
        while isinstance(written, n.Neg):
            written = written.operand
        pct = written.unit is not None and written.unit.word == "%"
        if (not pct and abs(factor) > 1) or abs(factor) > 10:
            shown = percent_text(factor)
            ck.report(warning("W0506", f"this takes {shown} % of the value", node.left.span,
                              hint=f"did you mean `{written.text}%`?" if not pct else
                              "check the percentage; shares are usually between 0 % and 100 %"))
    return Type("number", rt.unit)


def compare(ck, node: n.Compare, lt: Type, rt: Type) -> None:
    if lt.is_any or rt.is_any:
        return
    ok = lt.same(rt)
    if ok and node.op in _ORDERED and lt.kind in ("bool", "text"):
        ck.report(error("E0302", f"{lt.describe()} values cannot be compared with `{node.op}`", node.span,
                        hint="use `=` or `!=`, or `in (…)` for a list"))
        return
    if ok:
        return
    bare = node.right if not rt.unit and rt.is_numeric else node.left if not lt.unit and lt.is_numeric else None
    unit = _unit_for_bare_number(node, bare, lt, rt) if (lt.unit or rt.unit) else None
    hint = f"write {unit}" if unit else "compare values of the same kind and unit"
    ck.report(error("E0302", f"cannot compare {lt.describe()} with {rt.describe()}", node.span, hint=hint,
                    notes=_side_notes(node, lt, rt)))


def _unit_for_bare_number(node, bare, lt: Type, rt: Type) -> str | None:
    """`30 hours` for a bare number `30` set against hours: the fix most mismatches need."""
    if bare is None or not isinstance(bare, n.Quantity):
        return None
    other = lt if bare is node.right else rt
    return f"`{bare.text} {other.unit_name()}`"


def _side_notes(node, lt: Type, rt: Type) -> list[Note]:
    return [Note(f"this is {lt.describe()}", node.left.span), Note(f"this is {rt.describe()}", node.right.span)]


def in_table(ck, node: n.InTable, t: Type) -> None:
    name = node.table.name
    decl = ck.decls.get(name)
    if decl is None:
        ck.report(error("E0203", f"there is no schedule named `{name}`{ck.suggest(name, ck.schedules())}",
                        node.table.span, hint="`x in name` needs a schedule; use `x in (\"a\", \"b\")` for a list"))
    elif not isinstance(decl, n.Schedule):
        ck.report(error("E0208", f"`{name}` is a {kind_name(decl)}, not a schedule; `in` needs a schedule "
                                 f"or a list", node.table.span,
                        hint="write `x in (\"a\", \"b\")` for a list of values",
                        notes=[Note(f"`{name}` is defined here", decl.span)]))
    if not t.is_any and t.kind != "text":
        ck.report(error("E0309", f"schedule codes are text, but this is {t.describe()}", node.operand.span,
                        hint="test a code such as `event.code`"))


def call(ck, node: n.Call, types: list[Type]) -> Type:
    if node.func == "round" and 2 <= len(node.args) <= 3:
        return round_call(ck, node, types)
    if node.func in DATE_FUNCTIONS and len(node.args) == 2:
        return date_call(ck, node, types)
    spec = FUNCTIONS.get(node.func)
    if spec is None:
        decl = ck.decls.get(node.func)
        extra = f"; `{node.func}` is a value, not a function" if decl is not None else \
            ck.suggest(node.func, FUNCTIONS)
        ck.report(error("E0207", f"there is no function `{node.func}`{extra}", node.span,
                        hint=f"the functions are {_FUNCTION_LIST}"))
        return u.ANY
    lo, hi = spec
    if len(node.args) < lo or (hi is not None and len(node.args) > hi):
        want = f"{lo}" if lo == hi else f"at least {lo}"
        ck.report(error("E0207", f"`{node.func}` takes {want} argument{'s' if lo != 1 else ''}, "
                                 f"not {len(node.args)}", node.span,
                        hint={"clamp": "write `clamp(x, low, high)`", "abs": "write `abs(x)`",
                              "round": "write `round(x, 0.01)` or `round(x, 0.01, half_even)`"}.get(
                            node.func, f"write `{node.func}(a, b)`")))
        return u.ANY
    result = u.ANY
    first = None
    for t, arg in zip(types, node.args):
        t = numeric(ck, t, arg, f"take {node.func} of")
        if t.is_any:
            continue
        if first is None:
            first, result = arg, t
        elif not t.same(result):
            ck.report(error("E0309", f"the arguments of `{node.func}` must share a unit: this one is "
                                     f"{t.describe()}, the first is {result.describe()}", arg.span,
                            hint="write every argument in the same unit",
                            notes=[Note(f"the first argument is {result.describe()}", first.span)]))
            return u.ANY
        else:
            result = result.join(t)
    return result


# ───────────────────────── rounding and dates ─────────────────────────

def rounding_mode_arg(node) -> n.Name | None:
    """The mode word of `round(x, q, half_even)`: a word, not a value (the checker's walk skips it)."""
    if isinstance(node, n.Call) and node.func == "round" and len(node.args) == 3 \
            and isinstance(node.args[2], n.Name):
        return node.args[2]
    return None


def round_quantum(node: n.Call) -> Decimal | None:
    """The quantum of `round(x, q, …)` when it is written as a constant (`0.01`, `0.05 EUR`, `0.5%`)."""
    return _literal_value(node.args[1])


def round_call(ck, node: n.Call, types: list[Type]) -> Type:
    """`round(x, q[, mode])`: x money or a number, q a positive constant of x's unit or a plain
    number, mode a rounding mode word; the result has x's type (a number for an integer x)."""
    x = numeric(ck, types[0], node.args[0], "round")
    quantum, qt = node.args[1], types[1]
    value = round_quantum(node)
    if value is None or value <= 0:
        ck.report(error("E0314", "the quantum of `round` must be a positive constant", quantum.span,
                        hint="write the step to round to as a number, e.g. `round(x, 0.01)` for cents"))
    elif not qt.is_any and not x.is_any and not qt.is_dimensionless and not qt.same(x):
        ck.report(error("E0314", f"the quantum of `round` is {qt.describe()}, but the value rounded is "
                                 f"{x.describe()}", quantum.span,
                        hint=f"write the quantum as a plain number or in {x.describe()}",
                        notes=[Note(f"this is {x.describe()}", node.args[0].span)]))
    if len(node.args) == 3:
        mode = rounding_mode_arg(node)
        if mode is None or mode.name not in ROUNDING_MODES:
            word = f"`{mode.name}`" if mode is not None else "this"
            ck.report(error("E0314", f"{word} is not a rounding mode", node.args[2].span,
                            hint="the modes are " + ", ".join(ROUNDING_MODES[:-1]) + " and " + ROUNDING_MODES[-1]))
    if x.is_any:
        return x
    return Type("number", x.unit) if x.kind == "integer" else x


def date_call(ck, node: n.Call, types: list[Type]) -> Type:
    """`years_between(a, b)`, `months_between`, `days_between`: two dates, a whole number."""
    for t, arg in zip(types, node.args):
        if not t.is_any and t.kind != "date":
            ck.report(error("E0315", f"`{node.func}` counts between two dates, but this is {t.describe()}",
                            arg.span, hint="pass two dates: a date attribute (`member.birth_date`), a calendar "
                                           "date (`calendar.quarter_start`) or a date such as 2011-07-01, "
                                           "without quotes"))
    return u.Type("integer")


def name_ref(ck, node: n.Name):
    name = node.name
    decl = ck.decls.get(name)
    if decl is None:
        scoped = [f"{s}.{x}" for (s, x) in ck.inputs if s != "param" and x == name]
        extra = f"; did you mean `{scoped[0]}`?" if scoped else ck.suggest(name, ck.decls)
        ck.report(error("E0203", f"unknown name `{name}`{extra}", node.span,
                        hint="define it with `define`, declare it as a `param` input, or check the spelling"))
        return u.ANY, CONST
    t = ck.types.get(name, u.ANY)
    f = ck.facts.get(name, CONST)
    return t, _via(f, name, node)


def _via(f, name: str, node):
    """A definition's facts, located at the place it is used."""
    if f.row is None and f.agg_at is None and f.year_at is None:
        return f
    return Facts(f.row, node.span if f.row else None, f"`{name}` (it depends on {f.row_root})" if f.row else "",
                 f.row_root,
                 node.span if f.agg_at else None, f"`{name}`" if f.agg_at else "",
                 node.span if f.year_at else None, f"`{name}`" if f.year_at else "", f.practice)


def attr_ref(ck, node: n.Attr):
    scope, name = node.scope, node.name
    if scope == "param":
        decl = ck.decls.get(name)
        if isinstance(decl, n.InputDecl):
            return ck.types.get(name, u.ANY), CONST
        params = [x for (s, x) in ck.inputs if s == "param"]
        ck.report(error("E0206", f"there is no parameter `{name}`{ck.suggest(name, params)}", node.span,
                        hint=f"declare it in `inputs:` as `param {name}: …`"))
        return u.ANY, CONST
    if scope == "calendar":
        return calendar_ref(ck, node)
    key = (scope, name)
    if key in BUILTIN_TYPES:
        t = BUILTIN_TYPES[key]
    elif key in ck.inputs:
        t = ck.types_of_inputs(key)
    else:
        names = [x for (s, x) in ck.inputs if s == scope] + [x for (s, x) in BUILTINS if s == scope]
        ck.report(error("E0206", f"`{scope}.{name}` is not declared{ck.suggest(name, names)}", node.span,
                        hint=f"declare it in `inputs:` as `{scope} {name}: …`"))
        t = u.ANY
    text = f"`{scope}.{name}`"
    if scope == "member":
        return t, Facts(row="member", row_at=node.span, row_why=text, row_root=text)
    if scope == "event":
        return t, Facts(row="event", row_at=node.span, row_why=text, row_root=text)
    return t, Facts(practice=True)


def calendar_ref(ck, node: n.Attr):
    """`calendar.quarter`: a value of the evaluated month, the same for the whole practice-month."""
    value = CALENDAR.get(node.name)
    if value is None:
        ck.report(error("E0206", f"there is no calendar value `{node.name}`{ck.suggest(node.name, CALENDAR)}",
                        node.span, hint="the calendar values are " + ", ".join(f"`calendar.{x}`" for x in CALENDAR)))
        return u.ANY, Facts(practice=True)
    return u.of_kind(value.kind), Facts(practice=True)


def sum_over(ck, node: n.SumOver, kids):
    (bt, bf) = kids[0]
    wf = kids[1][1] if len(kids) > 1 else None
    if len(kids) > 1:
        ck.want_bool(kids[1][0], node.where, "`where`")
    bt = numeric(ck, bt, node.expr, "add up")
    src = node.source
    label = f"`sum of … over {src}`"
    inner = [(bf, node.expr)] + ([(wf, node.where)] if wf is not None else [])
    practice = False
    for f, part in inner:
        practice = practice or f.practice
        _inner_checks(ck, node, f, src)
    if src == "year":
        return (u.Type("number", bt.unit) if not bt.is_any else bt), \
            Facts(year_at=node.span, year_why=label, practice=practice)
    return (u.Type("number", bt.unit) if not bt.is_any else bt), \
        Facts(agg_at=node.span, agg_why=label, practice=practice)


def count_of(ck, node: n.CountOf, kids):
    src = node.source
    if kids:
        ck.want_bool(kids[0][0], node.where, "`where`")
        _inner_checks(ck, node, kids[0][1], src)
    if src == "year":
        ck.report(error("E0306", "`count of year` means nothing; a year is counted in months",
                        node.span, hint="use `sum of … over year` in a pool"))
        return u.ANY, Facts()
    t = u.Type.of("integer", {"member": 1}) if src == "members" else u.NUMBER
    return t, Facts(agg_at=node.span, agg_why=f"`count of {src}`")


def member_events(ck, node: n.MemberEvents, kids):
    """`sum of E over member events [during …] [where C]`: a per-member total of the member's events.
    E and C read the event, parameters and constants only (E0316), so that the total is the same
    for a member whichever practice-month or sum reads it."""
    label = f"`{node.kind} of … over member events`"
    parts = [p for p in (node.expr, node.where) if p is not None]
    for (typ, f), part in zip(kids, parts):
        if part is node.where:
            ck.want_bool(typ, part, "`where`")
        bad = None
        if f.row == "member":
            bad = (f.row_at, f"{f.row_why} is a per-member value")
        elif f.agg_at is not None:
            bad = (f.agg_at, f"{f.agg_why} is a total for the practice")
        elif f.year_at is not None:
            bad = (f.year_at, f"{f.year_why} is an annual total")
        elif f.practice:
            bad = (part.span, "this reads a value of the practice or the month")
        if bad is not None:
            ck.report(error("E0316", f"{bad[1]}; {label} adds up the member's events and reads only the event, "
                                     f"parameters and constants", bad[0],
                            hint="multiply the member's total by it outside: "
                                 "`rate * sum of event.amount over member events`"))
    if node.kind == "count":
        t = u.NUMBER
    else:
        bt = numeric(ck, kids[0][0], node.expr, "add up")
        t = u.Type("number", bt.unit) if not bt.is_any else bt
    return t, Facts(row="member", row_at=node.span, row_why=label, row_root=label)


def _inner_checks(ck, node, f, src: str) -> None:
    """What may stand inside `sum/count … over src`."""
    row = {"members": "member", "events": "event"}.get(src)
    if f.row is not None and f.row != row:
        where = f"over {src}" if row else "over year (which adds up practice months)"
        ck.report(error("E0305", f"{f.row_why} is a per-{f.row} value, which cannot be added up {where}",
                        f.row_at, hint=f"use it inside `sum of … over {f.row}s`"))
    if f.agg_at is not None and src != "year":
        ck.report(error("E0305", f"{f.agg_why} is already a total for the practice; it cannot be added up "
                                 f"again over {src}", f.agg_at,
                        hint="compute the inner total in its own definition and combine the totals"))
    if f.year_at is not None:
        ck.report(error("E0305" if src == "year" else "E0306",
                        f"{f.year_why} is an annual total; it cannot be added up again over {src}", f.year_at,
                        hint="a pool reads an annual total (or another pool: what it paid in the year) "
                             "as it is, without `over year`" if src == "year" else "add up monthly values only"))
