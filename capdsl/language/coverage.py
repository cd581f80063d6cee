"""Interval analysis for the checker: band coverage and tier reachability.

Published tables stop at 99 or count age 60 twice; the checker finds that by
computing each band as an interval on the key's domain (whole numbers for
ages and counts, decimals otherwise) rather than comparing texts. Tier
reachability reduces each condition to boxes (one interval per attribute,
plus opaque atoms compared structurally) and reports an entry whose boxes
all lie inside an earlier entry's boxes — sound, not complete.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from decimal import Decimal

from capdsl.errors import Diagnostic, Note, Source, Span, error, warning
from capdsl.language import ast_nodes as n
from capdsl.language.builtins import BUILTINS

INF = Decimal("Infinity")
NEG_INF = Decimal("-Infinity")


@dataclass(frozen=True, slots=True)
class Interval:
    """A real interval; infinite ends are always open."""

    lo: Decimal
    lo_closed: bool
    hi: Decimal
    hi_closed: bool

    @property
    def empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_closed and self.hi_closed))

    def meet(self, other: "Interval") -> "Interval":
        if self.lo > other.lo or (self.lo == other.lo and not self.lo_closed):
            lo, lc = self.lo, self.lo_closed
        else:
            lo, lc = other.lo, other.lo_closed
        if self.hi < other.hi or (self.hi == other.hi and not self.hi_closed):
            hi, hc = self.hi, self.hi_closed
        else:
            hi, hc = other.hi, other.hi_closed
        return Interval(lo, lc, hi, hc)

    def within(self, other: "Interval") -> bool:
        if self.empty:
            return True
        lo_ok = other.lo < self.lo or (other.lo == self.lo and (other.lo_closed or not self.lo_closed))
        hi_ok = other.hi > self.hi or (other.hi == self.hi and (other.hi_closed or not self.hi_closed))
        return lo_ok and hi_ok

    def whole(self) -> "Interval":
        """The same set restricted to whole numbers, with closed finite ends."""
        lo = self.lo
        if lo.is_finite():
            lo = Decimal(math.ceil(lo)) if lo != lo.to_integral_value() else (lo if self.lo_closed else lo + 1)
        hi = self.hi
        if hi.is_finite():
            hi = Decimal(math.floor(hi)) if hi != hi.to_integral_value() else (hi if self.hi_closed else hi - 1)
        return Interval(lo, lo.is_finite(), hi, hi.is_finite())


ALL = Interval(NEG_INF, False, INF, False)


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f") if d.is_finite() else str(d)


_num = _plain


def describe(iv: Interval, integral: bool, noun: tuple[str, str]) -> str:
    """"ages 100 and over", "age 60", "values over 4 and under 5 (4, 5)"."""
    one, many = noun
    lo, hi = iv.lo, iv.hi
    if integral:
        if lo == hi:
            return f"{one} {_num(lo)}".strip()
        if not hi.is_finite():
            return f"{many} {_num(lo)} and over".strip()
        if not lo.is_finite():
            return f"{many} under {_num(hi + 1)}".strip()
        return f"{many} {_num(lo)} to {_num(hi)}".strip()
    if lo == hi:
        return f"{one} {_num(lo)}".strip()
    if not hi.is_finite():
        words = f"{_num(lo)} and over" if iv.lo_closed else f"over {_num(lo)}"
    elif not lo.is_finite():
        words = f"up to {_num(hi)}" if iv.hi_closed else f"under {_num(hi)}"
    else:
        left = f"from {_num(lo)}" if iv.lo_closed else f"over {_num(lo)}"
        if iv.lo_closed:
            right = f"to {_num(hi)}" if iv.hi_closed else f"to under {_num(hi)}"
        else:
            right = f"up to {_num(hi)}" if iv.hi_closed else f"and under {_num(hi)}"
        words = f"{left} {right}"
    math_form = ("[" if iv.lo_closed else "(") + f"{_num(lo) if lo.is_finite() else '-∞'}, " \
        f"{_num(hi) if hi.is_finite() else '∞'}" + ("]" if iv.hi_closed else ")")
    return f"{many} {words} {math_form}".strip()


def range_interval(r: n.Range) -> Interval | None:
    """The interval a written range means; None when a bound is missing."""
    lo = r.low.value if r.low is not None else None
    hi = r.high.value if r.high is not None else None
    if r.form == "to" and lo is not None and hi is not None:
        return Interval(lo, True, hi, True)
    if r.form == "to_under" and lo is not None and hi is not None:
        return Interval(lo, True, hi, False)
    if r.form == "and_over" and lo is not None:
        return Interval(lo, True, INF, False)
    if r.form == "over" and lo is not None:
        return Interval(lo, False, INF, False)
    if r.form == "under" and hi is not None:
        return Interval(NEG_INF, False, hi, False)
    if r.form == "exact" and lo is not None:
        return Interval(lo, True, lo, True)
    return None


def source_text(source: Source, span: Span) -> str:
    line = source.line_text(span.line)
    end = span.end_column if span.end_line == span.line else len(line) + 1
    return line[span.column - 1: end - 1].strip()


def check_bands(b: n.Bands, integral: bool, noun: tuple[str, str], source: Source,
                unit: str = "") -> list[Diagnostic]:
    """Gaps (E0401), overlaps (E0402) and empty ranges (E0407) of one bands table."""
    out: list[Diagnostic] = []
    items: list[tuple[Interval, int, n.BandEntry]] = []
    has_otherwise = False
    lowest = Decimal(0)
    for i, entry in enumerate(b.entries):
        if entry.range is None:
            has_otherwise = True
            continue
        iv = range_interval(entry.range)
        if iv is None:
            continue
        for bound in (entry.range.low, entry.range.high):
            if bound is not None:
                lowest = min(lowest, bound.value)
        eff = iv.whole() if integral else iv
        if iv.empty or eff.empty:
            written = source_text(source, entry.range.span)
            if iv.lo > iv.hi:
                why, hint = "its lower end is above its upper end", "write the smaller bound first, e.g. `5 to 9`"
            elif iv.empty:
                why, hint = "it excludes its only value", f"write `{_num(iv.lo)}{unit}` for exactly that value"
            else:
                why, hint = "it contains no whole number", "bounds of a whole-number key are whole numbers"
            out.append(error("E0407", f"the range `{written}` is empty: {why}", entry.range.span, hint=hint))
            continue
        items.append((eff, i, entry))
    domain_lo = Decimal(0) if lowest >= 0 else NEG_INF
    domain = Interval(domain_lo, domain_lo.is_finite(), INF, False)
    items = [((iv.meet(domain).whole() if integral else iv.meet(domain)), i, e) for iv, i, e in items]
    items = [(iv, i, e) for iv, i, e in items if not iv.empty]
    items.sort(key=lambda t: (t[0].lo, not t[0].lo_closed, t[1]))
    # overlaps: compare each range with the one reaching furthest so far
    reach: tuple[Interval, int, n.BandEntry] | None = None
    for item in items:
        iv, i, entry = item
        if reach is not None:
            common = iv.meet(reach[0])
            if not common.empty:
                first, second = sorted((reach, item), key=lambda t: t[1])
                what = describe(common, integral, noun)
                other = source_text(source, first[2].range.span)
                out.append(error(
                    "E0402", f"bands of `{b.name}` overlap: {what} {'is' if common.lo == common.hi else 'are'} "
                             f"in both `{other}` and "
                             f"`{source_text(source, second[2].range.span)}`",
                    second[2].range.span,
                    hint=_overlap_hint(source, reach, item, common, unit),
                    notes=[Note(f"the band `{other}` also covers {what}", first[2].range.span)]))
        if reach is None or _hi_beyond(iv, reach[0]):
            reach = item
    if not has_otherwise:
        out.extend(_gaps(b, items, domain, integral, noun, unit))
    return out


def _overlap_hint(source: Source, lower, upper, common: Interval, unit: str) -> str:
    """Suggest ending the band that starts lower just before the shared values."""
    if lower[0].lo < upper[0].lo and common.lo.is_finite():
        text = source_text(source, lower[2].range.span)
        start = text.split(" to ")[0] if " to " in text else "…"
        return (f"let each value fall in one band only, e.g. write `{start} to under "
                f"{_num(common.lo)}{unit}` instead of `{text}`")
    return "let each value fall in one band only"


def _hi_beyond(a: Interval, b: Interval) -> bool:
    return a.hi > b.hi or (a.hi == b.hi and a.hi_closed and not b.hi_closed)


def _gaps(b: n.Bands, items, domain: Interval, integral: bool, noun, unit: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    cur, cur_closed = domain.lo, domain.lo_closed  # the first value not yet covered
    before: n.BandEntry | None = None
    for iv, _i, entry in items:
        if integral:
            gap = Interval(cur, cur.is_finite(), iv.lo - 1, True) if iv.lo > cur else None
        else:
            gap = Interval(cur, cur_closed, iv.lo, not iv.lo_closed)
            gap = None if gap.empty else gap
        if gap is not None:
            out.append(_gap_error(b, gap, integral, noun, before, entry, unit))
        if integral:
            nxt, nxt_closed = iv.hi + 1, True
        else:
            nxt, nxt_closed = iv.hi, not iv.hi_closed
        if nxt > cur or (nxt == cur and cur_closed and not nxt_closed):
            cur, cur_closed = nxt, nxt_closed
        before = entry
        if not cur.is_finite():
            return out
    tail = Interval(cur, cur_closed, INF, False)
    if not tail.empty:
        out.append(_gap_error(b, tail, integral, noun, before, None, unit))
    return out


def _gap_error(b: n.Bands, gap: Interval, integral: bool, noun, before, after, unit: str) -> Diagnostic:
    what = describe(gap, integral, noun)

    def _num(d: Decimal) -> str:  # bounds as the author writes them, with the key's unit
        return _plain(d) + unit
    anchor = before if before is not None else after
    span = anchor.range.span if anchor is not None and anchor.range is not None else b.span
    notes = [Note("the next band starts here", after.range.span)] if before is not None and after is not None else []
    if integral and gap.hi.is_finite():
        example = f"`{_num(gap.lo)}: …`" if gap.lo == gap.hi else f"`{_num(gap.lo)} to {_num(gap.hi)}: …`"
    elif gap.hi.is_finite() and gap.lo_closed:
        example = f"`{_num(gap.lo)} to {'' if gap.hi_closed else 'under '}{_num(gap.hi)}: …`"
    elif gap.hi.is_finite():
        example = "a band for these values"
    else:
        example = f"`{_num(gap.lo)} and over: …`" if gap.lo_closed else f"`over {_num(gap.lo)}: …`"
    hint = f"add {example}, extend a neighbouring band, or add `otherwise: …`"
    nxt = after.range if after is not None else None
    if nxt is not None and nxt.form == "over" and nxt.low is not None and gap.lo == gap.hi == nxt.low.value:
        hint = f"write `{nxt.low.text} and over` instead of `over {nxt.low.text}` (`over` leaves out the value itself)"
    return error("E0401", f"no band of `{b.name}` covers {what}", span, hint=hint, notes=notes)


# ─────────────────────────── tier reachability ───────────────────────────

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}
_NOT = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "=": "!=", "!=": "="}
MAX_BOXES = 32
MAX_ENTRIES = 1000  # reachability is quadratic in a table's entries; real tiers have a handful


@dataclass(frozen=True, slots=True)
class Box:
    """A conjunction: one interval per key plus opaque atoms."""

    ranges: tuple[tuple[object, Interval], ...]
    atoms: frozenset

    def implies(self, other: "Box") -> bool:
        mine = dict(self.ranges)
        for key, iv in other.ranges:
            if key not in mine or not mine[key].within(iv):
                return False
        return other.atoms <= self.atoms


TRUE_BOX = Box((), frozenset())


def _atom_interval(op: str, value: Decimal, integral: bool) -> Interval | None:
    iv = {"<": Interval(NEG_INF, False, value, False), "<=": Interval(NEG_INF, False, value, True),
          ">": Interval(value, False, INF, False), ">=": Interval(value, True, INF, False),
          "=": Interval(value, True, value, True)}.get(op)
    if iv is not None and integral:
        iv = iv.whole()
    return iv


def _is_key(node) -> bool:
    return isinstance(node, (n.Attr, n.Name))


def _and(a: list[Box], b: list[Box]) -> list[Box] | None:
    out = []
    for x in a:
        for y in b:
            ranges = dict(x.ranges)
            for key, iv in y.ranges:
                ranges[key] = ranges[key].meet(iv) if key in ranges else iv
            out.append(Box(tuple(ranges.items()), x.atoms | y.atoms))
            if len(out) > MAX_BOXES:
                return None
    return out


def boxes(cond, integral_key) -> list[Box]:
    """The condition as a disjunction of boxes (iterative post-order: conditions nest deeply)."""
    results: dict[int, list[Box]] = {}
    stack = [(cond, False)]
    while stack:
        node, done = stack.pop()
        kids = node.items if isinstance(node, n.BoolOp) else ()
        if not done and kids:
            stack.append((node, True))
            stack.extend((k, False) for k in kids)
            continue
        results[id(node)] = _boxes_of(node, [results[id(k)] for k in kids], integral_key)
    return results[id(cond)]


@functools.lru_cache(maxsize=None)
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "span")


def fingerprint(node) -> tuple:
    """A hashable structural key for an expression, spans ignored, built
    without recursion (dataclass hashing recurses once per level)."""
    out: list = []
    stack = [node]
    while stack:
        cur = stack.pop()
        if cur is None:
            out.append(None)
            continue
        scalars = []
        kids = []
        for name in _field_names(type(cur)):
            value = getattr(cur, name)
            if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
                kids.extend(value)
                scalars.append(len(value))
            elif dataclasses.is_dataclass(value) and not isinstance(value, (n.UnitExpr, n.Name)):
                kids.append(value)
                scalars.append("·")
            elif isinstance(value, (n.UnitExpr, n.Name)):
                scalars.append((type(value).__name__, value.word if isinstance(value, n.UnitExpr) else value.name,
                                getattr(value, "per", None)))
            else:
                scalars.append(value)
        out.append((type(cur).__name__, *scalars))
        stack.extend(reversed(kids))
    return tuple(out)


def _boxes_of(node, parts: list[list[Box]], integral_key) -> list[Box]:
    opaque = [Box((), frozenset([fingerprint(node)]))]
    if isinstance(node, n.BoolLit):
        return [TRUE_BOX] if node.value else []
    if isinstance(node, n.BoolOp):
        if node.op == "or":
            out = [b for p in parts for b in p]
            return out if len(out) <= MAX_BOXES else opaque
        acc: list[Box] | None = [TRUE_BOX]
        for p in parts:
            acc = _and(acc, p)
            if acc is None:
                return opaque
        return acc
    op = None
    if isinstance(node, n.Compare):
        op, left, right = node.op, node.left, node.right
    elif isinstance(node, n.Not) and isinstance(node.operand, n.Compare):
        op, left, right = _NOT[node.operand.op], node.operand.left, node.operand.right
    if op is not None and op != "!=":
        if _is_key(right) and isinstance(left, n.Quantity):
            left, right, op = right, left, _FLIP[op]
        if _is_key(left) and isinstance(right, n.Quantity):
            iv = _atom_interval(op, right.value, integral_key(left))
            if iv is not None:
                return [Box(((fingerprint(left), iv),), frozenset())]
    return opaque


def unreachable(entries: tuple[n.Choice, ...], integral_key, what: str) -> list[Diagnostic]:
    """W0404: entries that an earlier entry always pre-empts."""
    out: list[Diagnostic] = []
    if len(entries) > MAX_ENTRIES:
        return out
    earlier: list[tuple[Box, n.Choice]] = []
    for entry in entries:
        if entry.cond is None and not entry.always:  # otherwise
            blocker = next((c for b, c in earlier if not b.ranges and not b.atoms), None)
            if blocker is not None:
                out.append(warning("W0404", f"the `otherwise` entry of {what} is never used: an earlier entry always applies",
                                   entry.span, hint="remove the `otherwise` entry or give the earlier entry a condition",
                                   notes=[Note("this entry always applies", blocker.span)]))
            continue
        mine = [TRUE_BOX] if entry.cond is None else boxes(entry.cond, integral_key)
        if mine:
            blockers = []
            for box in mine:
                hit = next((c for b, c in earlier if box.implies(b)), None)
                if hit is None:
                    break
                blockers.append(hit)
            else:
                first = blockers[0]
                out.append(warning(
                    "W0404", f"this entry of {what} is never chosen: whenever its condition holds, an earlier entry's does too",
                    entry.cond.span if entry.cond is not None else entry.span,
                    hint="put the more specific condition first, or remove this entry",
                    notes=[Note("the earlier entry that always wins", first.span)]))
        earlier.extend((b, entry) for b in mine)
    return out


# ───────────────────────────── per-table checks ─────────────────────────────

def check_tables(ck) -> None:
    """Structure of bands, rate cells, tiers, modifiers, schedules and dated values (E04xx, W0507)."""
    for name, decl in ck.decls.items():
        if isinstance(decl, n.Bands):
            _otherwise_last(ck, decl, [e for e in decl.entries], lambda e: e.range is None)
            kt = ck.key_types.get(name)
            integral = kt is not None and kt.kind == "integer"
            key = decl.key
            noun = ("age", "ages") if isinstance(key, n.Attr) and (key.scope, key.name) == ("member", "age") \
                else ("the value", "values")
            if kt is None or kt.is_numeric:
                unit = f" {kt.unit_name()}" if kt is not None and kt.unit else ""
                for d in check_bands(decl, integral, noun, ck.source, unit):
                    ck.report(d)
            _negative_rates(ck, decl.name, [e.value for e in decl.entries])
        elif isinstance(decl, n.Cells):
            _otherwise_last(ck, decl, decl.entries, lambda e: e.keys is None)
            _cells(ck, name, decl)
            _negative_rates(ck, decl.name, [e.value for e in decl.entries])
        elif isinstance(decl, n.Tier):
            others = [e for e in decl.entries if e.cond is None]
            if not others:
                ck.report(error("E0403", f"the tier `{name}` has no `otherwise` entry", decl.span,
                                hint="add a last entry `value otherwise` for when no condition holds"))
            _otherwise_last(ck, decl, decl.entries, lambda e: e.cond is None)
            for d in unreachable(decl.entries, _integral(ck), f"tier `{name}`"):
                ck.report(d)
            _negative_rates(ck, decl.name, [e.value for e in decl.entries])
        elif isinstance(decl, n.Modifier):
            is_other = lambda e: e.cond is None and not e.always  # noqa: E731
            _otherwise_last(ck, decl, decl.entries, is_other)
            always = any(e.always or isinstance(e.cond, n.BoolLit) and e.cond.value for e in decl.entries)
            if decl.combine in ("highest", "lowest", "first") and not always \
                    and not any(is_other(e) for e in decl.entries):
                ck.report(error("E0405", f"the modifier `{name}` (combine {decl.combine}) has no value when no "
                                         f"entry applies", decl.span,
                                hint="add an entry without `when` (it always applies), or `value otherwise`"))
            if decl.combine == "first":
                for d in unreachable(decl.entries, _integral(ck), f"modifier `{name}`"):
                    ck.report(d)
        elif isinstance(decl, n.Schedule):
            _otherwise_last(ck, decl, decl.entries, lambda e: e.code is None)
            seen: dict[str, n.ScheduleEntry] = {}
            for e in decl.entries:
                if e.code is None:
                    continue
                if e.code in seen:
                    ck.report(error("E0406", f"the code \"{e.code}\" is listed twice in schedule `{name}`", e.span,
                                    hint="keep one entry per code",
                                    notes=[Note("first listed here", seen[e.code].span)]))
                else:
                    seen[e.code] = e
        elif isinstance(decl, n.Dated):
            for prev, e in zip(decl.entries, decl.entries[1:]):
                if e.start <= prev.start:
                    ck.report(error("E0409", f"the dates of `{name}` must ascend, but {e.start} does not come "
                                             f"after {prev.start}", e.span,
                                    hint="list the values in date order, each from a later date",
                                    notes=[Note("the previous entry", prev.span)]))
            last = decl.entries[-1]
            if decl.until is not None and decl.until < last.start:
                ck.report(error("E0409", f"`{name}` ends on {decl.until}, before its last value starts on "
                                         f"{last.start}", decl.until_span or decl.span,
                                hint="end it on or after the last entry's date",
                                notes=[Note("the last entry", last.span)]))


def _integral(ck):
    def integral(key) -> bool:
        if isinstance(key, n.Attr):
            builtin = BUILTINS.get((key.scope, key.name))
            if builtin is not None:
                return builtin.kind == "integer"
            t = ck.input_types.get((key.scope, key.name))
        else:
            t = ck.types.get(key.name)
        return t is not None and t.kind == "integer"
    return integral


def _otherwise_last(ck, decl, entries, is_other) -> None:
    """E0408: one `otherwise` entry, written last."""
    others = [e for e in entries if is_other(e)]
    for extra in others[1:]:
        ck.report(error("E0408", f"`{decl.name}` has more than one `otherwise` entry", extra.span,
                        hint="keep one `otherwise`", notes=[Note("the first `otherwise`", others[0].span)]))
    if others and entries[-1] is not others[-1]:
        ck.report(error("E0408", f"the `otherwise` entry of `{decl.name}` must come last", others[0].span,
                        hint="move it to the end of the block"))


def _negative_rates(ck, name: str, values) -> None:
    """W0507: a negative constant rate in a table is usually a sign slip."""
    for v in values:
        sign, node = 1, v
        while isinstance(node, n.Neg):
            sign, node = -sign, node.operand
        if isinstance(node, n.Quantity) and sign * node.value < 0:
            ck.report(warning("W0507", f"`{name}` has a negative value here", v.span,
                              hint="rates in tables are normally positive; write deductions as their own line"))


# ─────────────────────────────── rate cells ───────────────────────────────
# A rate-cell row is a box in the product of its keys: an interval for a numeric key, a set of
# values (or every value but some) for a text or bool key. Two rows overlap when their boxes
# meet; a row is unreachable when the earlier rows' boxes cover it; a numeric key has a gap
# when, for some combination of the other keys' values the rows tell apart, its intervals
# leave values uncovered.

MAX_CELL_PIECES = 512  # box subtraction and key combinations are bounded; real tables have 30–60 rows
MAX_CELL_ROWS = 300  # the analysis compares every pair of rows


@dataclass(frozen=True, slots=True)
class Values:
    """A set of text or bool values; `negated`: every value except these."""

    values: frozenset
    negated: bool = False

    @property
    def empty(self) -> bool:
        return not self.negated and not self.values

    def meet(self, other: "Values") -> "Values":
        if self.negated and other.negated:
            return Values(self.values | other.values, True)
        if self.negated:
            return Values(other.values - self.values)
        if other.negated:
            return Values(self.values - other.values)
        return Values(self.values & other.values)

    def minus(self, other: "Values") -> list["Values"]:
        rest = self.meet(Values(other.values, not other.negated))
        return [] if rest.empty else [rest]

    def within(self, other: "Values") -> bool:
        return self.minus(other) == []


EVERY = Values(frozenset(), True)


def _iv_minus(a: Interval, b: Interval, integral: bool) -> list[Interval]:
    common = a.meet(b)
    if common.empty:
        return [a]
    pieces = [a.meet(Interval(NEG_INF, False, b.lo, not b.lo_closed)),
              a.meet(Interval(b.hi, not b.hi_closed, INF, False))]
    if integral:
        pieces = [p.whole() for p in pieces if not p.empty]
    return [p for p in pieces if not p.empty]


def _minus(x, y, integral: bool):
    return _iv_minus(x, y, integral) if isinstance(x, Interval) else x.minus(y)


def _box_empty(box) -> bool:
    return any(k.empty for k in box)


def _box_meet(a, b):
    return tuple(x.meet(y) for x, y in zip(a, b))


def _box_minus(a, b, integral) -> list[tuple]:
    """a − b as disjoint boxes: peel one key at a time."""
    if _box_empty(_box_meet(a, b)):
        return [a]
    out, rest = [], list(a)
    for i, (x, y) in enumerate(zip(a, b)):
        for piece in _minus(x, y, integral[i]):
            out.append(tuple(rest[:i]) + (piece,) + tuple(rest[i + 1:]))
        rest[i] = x.meet(y)
    return out


def _show_values(v: Values) -> str:
    def one(x) -> str:
        return ("true" if x else "false") if isinstance(x, bool) else '"' + x.replace('"', '\\"') + '"'
    names = ", ".join(one(x) for x in sorted(v.values, key=str))
    if v.negated:
        return f"other than {names}" if names else "any"
    return f"({names})" if len(v.values) > 1 else names


def _show_key(k, integral: bool) -> str:
    if isinstance(k, Values):
        return _show_values(k)
    if k.lo.is_finite() or k.hi.is_finite():
        return describe(k, integral, ("", ""))
    return "any"


def describe_cell(labels, box, integral) -> str:
    """`member.category "TANF", member.age 1 to 4, member.sex any`."""
    return ", ".join(f"{label} {_show_key(k, i)}" for label, k, i in zip(labels, box, integral))


def _cell_boxes(ck, decl: n.Cells, kinds: list[str], integral: list[bool]):
    """(row index, row, box) for every row the analysis can read, and each numeric key's domain."""
    lowest = [Decimal(0)] * len(kinds)
    for e in decl.entries:
        for i, k in enumerate(e.keys or ()):
            if i < len(kinds) and k.form == "range":
                for bound in (k.range.low, k.range.high):
                    if bound is not None:
                        lowest[i] = min(lowest[i], bound.value)
    domains = [Interval(Decimal(0), True, INF, False) if lowest[i] >= 0 else ALL for i in range(len(kinds))]
    rows = []
    for index, e in enumerate(decl.entries):
        if e.keys is None or len(e.keys) != len(kinds):
            continue
        box = []
        for i, k in enumerate(e.keys):
            numeric = kinds[i] == "number"
            if k.form == "any":
                box.append(domains[i] if numeric else EVERY)
            elif k.form == "range" and numeric:
                iv = range_interval(k.range)
                eff = iv.whole() if iv is not None and integral[i] else iv
                if iv is None or iv.empty or eff.empty:
                    if iv is not None:
                        ck.report(error("E0407", f"the range `{source_text(ck.source, k.range.span)}` is empty",
                                        k.range.span, hint="write the smaller bound first, e.g. `5 to 9`"
                                        if iv.lo > iv.hi else "bounds of a whole-number key are whole numbers"))
                    box = None
                    break
                eff = eff.meet(domains[i])
                box.append(eff.whole() if integral[i] else eff)
            elif k.form == "values" and not numeric:
                box.append(Values(frozenset(k.values)))
            else:
                return [], domains  # a key of the wrong kind (E0411): nothing to analyse
        if box is not None and not _box_empty(box):
            rows.append((index, e, tuple(box)))
    return rows, domains


def _cells(ck, name: str, decl: n.Cells) -> None:
    """Overlaps (E0412), unreachable rows (E0413) and gaps of numeric keys (E0414) of rate cells."""
    kts = ck.cell_key_types.get(name)
    if kts is None or any(kt.is_any for kt in kts):
        return
    kinds = ["number" if kt.is_numeric else kt.kind for kt in kts]
    if any(k not in ("number", "text", "bool") for k in kinds):
        return
    integral = [kt.kind == "integer" for kt in kts]
    labels = [source_text(ck.source, k.span) for k in decl.keys]
    rows, domains = _cell_boxes(ck, decl, kinds, integral)
    if len(rows) > MAX_CELL_ROWS:
        return
    for j, (jx, row, box) in enumerate(rows):
        overlaps = []
        remaining, bounded = [box], True
        for ix, other, obox in rows[:j]:
            common = _box_meet(obox, box)
            if not _box_empty(common):
                overlaps.append((other, common))
                if bounded:
                    remaining = [p for r in remaining for p in _box_minus(r, obox, integral)]
                    bounded = len(remaining) <= MAX_CELL_PIECES
        if not overlaps:
            continue
        written = _row_keys(ck.source, row)
        if bounded and not remaining:
            ck.report(error("E0413", f"this row of `{name}` never applies: every member it matches is matched by "
                                     f"an earlier row", row.span,
                            hint="remove the row, or narrow the earlier rows so that each member falls in one cell",
                            notes=[Note("an earlier row matching the same members", o.span) for o, _ in overlaps[:3]]))
            continue
        other, common = overlaps[0]
        first = _row_keys(ck.source, other)
        cell = describe_cell(labels, common, integral)
        ck.report(error("E0412", f"cells of `{name}` overlap: members with {cell} match both `{first}` and "
                                 f"`{written}`", row.span,
                        hint="let each member fall in one cell only: narrow one row's keys, or split it",
                        notes=[Note(f"this row also matches {cell}", other.span)]))
    if any(e.keys is None for e in decl.entries):
        return
    reported, holes = 0, []
    for k, kind in enumerate(kinds):
        if kind != "number":
            continue
        merged: dict[tuple, tuple] = {}
        for gap, combo, before, after in _cell_gaps(rows, k, domains, integral):
            same = (gap, id(before), id(after)) + tuple(x for x in combo if not isinstance(x, Values))
            if same in merged:
                old = merged[same][1]
                combo = tuple(x if x is None or not isinstance(x, Values) else Values(x.values | y.values)
                              for x, y in zip(old, combo))
            merged[same] = (gap, combo, before, after)
        for gap, combo, before, after in merged.values():
            hole = combo[:k] + (gap,) + combo[k + 1:]
            if any(not _box_empty(_box_meet(hole, seen)) for seen in holes):
                continue  # the same members, seen along another key
            holes.append(hole)
            if reported >= 10:
                return
            reported += 1
            cell = describe_cell(labels, hole, integral)
            example = ", ".join("…" if j == k and not integral[k] else _show_key(x, integral[j])
                                for j, x in enumerate(hole))
            anchor = before if before is not None else after
            notes = [Note("the next row for these members starts here", after.span)] \
                if before is not None and after is not None else []
            ck.report(error("E0414", f"no cell of `{name}` covers members with {cell}",
                            anchor.span if anchor is not None else decl.span,
                            hint=f"add a row `{example}: …`, extend a neighbouring row, or add `otherwise: …`",
                            notes=notes))


def _row_keys(source: Source, row: n.CellRow) -> str:
    first, last = row.keys[0].span, row.keys[-1].span
    return source_text(source, Span(first.line, first.column, last.end_line, last.end_column))


def _refine(pieces: list, key, integral: bool) -> list:
    out = []
    for p in pieces:
        common = p.meet(key)
        if common.empty:
            out.append(p)
            continue
        out.append(common.whole() if integral and isinstance(common, Interval) else common)
        out.extend(_minus(p, key, integral))
    return out


def _cell_gaps(rows, k: int, domains, integral):
    """(gap interval, combination box, row before, row after) for numeric key `k`: for every
    combination of the other keys' pieces some row covers, the values of `k` no row covers."""
    parts = []
    for j in range(len(domains)):
        if j == k:
            parts.append([None])
            continue
        pieces = [EVERY if not isinstance(rows[0][2][j], Interval) else domains[j]] if rows else []
        for _ix, _row, box in rows:
            pieces = _refine(pieces, box[j], integral[j])
            if len(pieces) > MAX_CELL_PIECES:
                return
        pieces = [p for p in pieces if any(p.within(box[j]) for _ix, _row, box in rows)]
        named = [p for p in pieces if not (isinstance(p, Values) and p.negated)]
        parts.append(named or pieces)  # the values rows name; `any` alone: one piece for every value
    count = 1
    for p in parts:
        count *= len(p)
    if count > MAX_CELL_PIECES:
        return
    for combo in itertools.product(*parts):
        matching = [(box[k], row) for _ix, row, box in rows
                    if all(j == k or combo[j].within(box[j]) for j in range(len(domains)))]
        if not matching:
            continue
        matching.sort(key=lambda t: (t[0].lo, not t[0].lo_closed))
        dom = domains[k]
        cur, cur_closed, before = dom.lo, dom.lo_closed, None
        for iv, row in matching:
            gap = Interval(cur, cur_closed, iv.lo, not iv.lo_closed)
            gap = gap.whole() if integral[k] and not gap.empty else gap
            if not gap.empty:
                yield gap, combo, before, row
            nxt, nxt_closed = iv.hi, not iv.hi_closed
            if nxt > cur or (nxt == cur and cur_closed and not nxt_closed):
                cur, cur_closed, before = nxt, nxt_closed, row
            if not cur.is_finite():
                break
        else:
            tail = Interval(cur, cur_closed, INF, False)
            tail = tail.whole() if integral[k] and not tail.empty else tail
            if not tail.empty:
                yield tail, combo, before, None
