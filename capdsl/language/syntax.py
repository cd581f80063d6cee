"""Syntax: source text → AST.

The Lark parser (LALR, contextual lexer, strict) is built once. Lark's tree
never leaves this module: `parse` returns a `nodes.Contract` or raises a
`SyntaxError_` whose diagnostics speak the author's language ("expected a
currency code after 'currency'"), not Lark's token names.
Limits (source size, nesting depth, number of definitions) are enforced here,
before any recursive pass could overflow.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from capdsl.language import ast_nodes as n
from capdsl.language.builtins import PAY_TIMES
from capdsl.errors import MAX_SOURCE_BYTES, Diagnostic, Note, Source, Span, SyntaxError_, error
from capdsl.language.lalr import Driver, Fallback, Tok

MAX_NESTING = 100
MAX_DEFINITIONS = 20_000
MAX_NUMBER_DIGITS = 40


def grammar_text() -> str:
    """The grammar, from the installed package or (editable/dev) the repo's grammar/."""
    try:
        packaged = resources.files("capdsl").joinpath("grammar/cap.lark")
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):  # pragma: no cover - exotic loaders
        pass
    repo = Path(__file__).resolve().parents[2] / "grammar" / "cap.lark"
    return repo.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def parser() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        strict=False,  # conflicts and collisions are checked by tests/test_grammar.py (strict=True)
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,  # Lark keys the cache file on the grammar text, options and its own version
    )


def settlement_amount(terms: n.Settlement) -> n.Expr:
    """The adjustment a settlement pays, written in the language's own terms so that the checker types
    it and every engine runs it as a pool amount: the total held between floor and cap, less the total;
    or, with a corridor around T within w share s, −s × (total − (T + w of T)) above the band,
    s × ((T − w of T) − total) below it, and 0 inside."""
    total, span = terms.total, terms.span
    if terms.corridor is None:
        if terms.cap is not None and terms.floor is not None:
            held = n.Call("clamp", (total, terms.floor, terms.cap), span)
        elif terms.cap is not None:
            held = n.Call("min", (total, terms.cap), span)
        else:
            held = n.Call("max", (total, terms.floor), span)
        return n.Binary("-", held, total, span)
    c = terms.corridor
    width = n.Binary("of", c.within, c.target, c.span)
    upper, lower = n.Binary("+", c.target, width, c.span), n.Binary("-", c.target, width, c.span)
    above = n.Neg(n.Binary("of", c.share, n.Binary("-", total, upper, c.span), c.span), c.span)
    below = n.Binary("of", c.share, n.Binary("-", lower, total, c.span), c.span)
    zero = n.Binary("-", total, total, span)  # 0 in the total's unit
    return n.IfExpr(n.Compare(">", total, upper, c.span), above,
                    n.IfExpr(n.Compare("<", total, lower, c.span), below, zero, c.span), c.span)


#: The longest look-back `retroactive N months` may state.
MAX_RETRO_MONTHS = 36


def pay_month(text: str) -> int:
    return PAY_TIMES[text]


# ─────────────────────────────── entry point ──────────────────────────────

def parse(source: Source) -> n.Contract:
    text = source.text
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise SyntaxError_(error("E0003", f"the contract is larger than {MAX_SOURCE_BYTES:,} bytes",
                                 hint="split it into smaller contracts"), source)
    _check_paren_depth(source)
    if not text.endswith("\n"):
        text += "\n"
    try:
        decls = _driver().parse(text, _Builder(source))
    except Fallback:
        decls = _parse_with_lark(text, source)
    if len(decls) > MAX_DEFINITIONS:
        raise SyntaxError_(error("E0105", f"the contract has {len(decls):,} definitions; the limit is {MAX_DEFINITIONS:,}",
                                 Span(1, 1, 1, 1)), source)
    return n.Contract(tuple(decls), tuple(_comments(source.text)), Span(1, 1, source.line_count + 1, 1))


def _parse_with_lark(text: str, source: Source) -> list:
    """The reference path: Lark's own driver and tree. Every syntax diagnostic comes from here."""
    try:
        tree = parser().parse(text)
    except UnexpectedInput as exc:
        raise SyntaxError_(_friendly(exc, source), source) from None
    _check_tree_depth(tree, source)
    return _Builder(source).transform(tree)


@functools.lru_cache(maxsize=1)
def _driver() -> Driver:
    return Driver(parser())


def parse_text(text: str, path: str = "<string>") -> n.Contract:
    return parse(Source(text, path))


# ─────────────────────────────── limits ──────────────────────────────────

_SKIP = re.compile(r'"([^"\\\n]|\\.)*"|#[^\n]*')


def _check_paren_depth(source: Source) -> None:
    """Reject absurd nesting before Lark builds a tree we would recurse over."""
    if source.text.count("(") <= MAX_NESTING:
        return
    depth = 0
    line = 1
    line_start = 0
    stripped = _SKIP.sub(lambda m: " " * len(m.group(0)), source.text)
    for m in _PAREN_OR_NEWLINE.finditer(stripped):
        ch = m.group()
        if ch == "\n":
            line += 1
            line_start = m.end()
        elif ch == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise SyntaxError_(error(
                    "E0104", f"expressions are nested more than {MAX_NESTING} levels deep",
                    Span.point(line, m.end() - line_start), hint="name an intermediate value with `define` and use it"),
                    source)
        else:
            depth = max(0, depth - 1)


_PAREN_OR_NEWLINE = re.compile(r"[()\n]")


def _check_tree_depth(tree: Tree, source: Source) -> None:
    # `opened` counts if/sum/count forms on the path: fmt parenthesises them when nested, so more
    # than MAX_NESTING would format to text that fails the parenthesis limit.
    stack = [(tree, 1, 0)]
    while stack:
        node, depth, opened = stack.pop()
        opened += node.data in ("if_expr", "sum_over", "count_of")
        if depth > MAX_NESTING * 3 or opened > MAX_NESTING:
            meta = node.meta
            span = Span(meta.line, meta.column, meta.end_line, meta.end_column) if not meta.empty else None
            raise SyntaxError_(error(
                "E0104", f"expressions are nested more than {MAX_NESTING} levels deep", span,
                hint="name an intermediate value with `define` and use it (each operator of a long chain such "
                     "as `a + b + c + …` is a level of its own)"), source)
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1, opened))


# ─────────────────────────────── comments ─────────────────────────────────

_TOKEN_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\r\n]*')


HEADER_ORDER = ("payer", "provider", "currency", "period", "list", "age", "exposure", "rounding", "report", "retroactive",
                "ref")


def _comments(text: str) -> list[n.Comment]:
    out = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        for m in _TOKEN_OR_COMMENT.finditer(raw):
            if m.group(0).startswith("#"):
                own = raw[: m.start()].strip() == ""
                out.append(n.Comment(m.group(0).rstrip(), lineno, own))
                break
    return out


# ─────────────────────────────── tree → AST ───────────────────────────────

def _span(meta) -> Span:
    if getattr(meta, "empty", True):
        return n.NO_SPAN
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(tok: Token) -> Span:
    return Span(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


def _unquote(tok: Token) -> str:
    body = tok[1:-1]
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


_COMP = {"==": "=", "=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class _Builder:
    """Mirror of grammar/cap.lark: one method `rule(span, items)` per rule or alias.

    The fast path (`capdsl.language.lalr`) calls these methods as it reduces;
    `transform` does the same over a Lark tree, for inputs the fast path
    declines. `transform` walks bottom-up with an explicit stack: no
    recursion limit, and no per-call wrapper objects."""

    def __init__(self, source: Source):
        self.source = source
        self.span_of = None  # set by the fast path: character offsets → Span

    def transform(self, tree: Tree):
        methods: dict[str, object] = {}
        results: dict[int, object] = {}
        stack: list[tuple[Tree, bool]] = [(tree, False)]
        while stack:
            node, expanded = stack.pop()
            if not expanded:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(node.children) if isinstance(c, Tree))
                continue
            items = [results.pop(id(c)) if isinstance(c, Tree) else c for c in node.children]
            name = node.data
            method = methods.get(name)
            if method is None:
                method = methods[name] = getattr(self, name)
            results[id(node)] = method(_span(node.meta), items)
        return results[id(tree)]

    def _tok_span(self, tok) -> Span:
        if isinstance(tok, Tok):
            return self.span_of(tok.start_pos, tok.end_pos)
        return _tok_span(tok)

    def _fail(self, code: str, message: str, span: Span, hint: str | None = None):
        raise SyntaxError_(error(code, message, span, hint=hint), self.source)

    # --- file
    def start(self, span, items):
        return [i for i in items if i is not None]

    # --- header
    def contract(self, span, items):
        name = _unquote(items[0])
        fields: dict = {"name": name}
        written = []
        spans = []
        for clause, value, clause_span in items[1:]:
            if clause in written:
                self._fail("E0107", f"'{clause}' is given twice in the contract header", clause_span,
                           "keep one of them")
            written.append(clause)
            spans.append((clause, clause_span))
            if clause == "rounding":
                fields["rounding_mode"], fields["rounding_quantum"] = value
            elif clause == "report":
                fields["report_currency"], fields["report_rate"] = value
            else:
                fields[{"age": "age_rule", "period": "period_unit", "list": "list_day",
                        "retroactive": "retro_months"}.get(clause, clause)] = value
        # `written` in canonical order, so a formatted file parses to the same AST
        canonical = [c for c in HEADER_ORDER if c in written] + [c for c in written if c not in HEADER_ORDER]
        return n.Header(**fields, written=tuple(canonical), span=span, clause_spans=tuple(spans))

    def h_payer(self, span, items):
        return ("payer", _unquote(items[0]), span)

    def h_provider(self, span, items):
        return ("provider", _unquote(items[0]), span)

    def h_currency(self, span, items):
        return ("currency", str(items[0]), span)

    def h_period(self, span, items):
        return ("period", str(items[0]), span)

    def h_age(self, span, items):
        return ("age", str(items[0]), span)

    def h_retro(self, span, items):
        text = str(items[0])
        if not text.isdigit() or not 1 <= int(text) <= MAX_RETRO_MONTHS:
            self._fail("E0112", f"`retroactive {text} months`: the look-back is a whole number of months from 1 to "
                                f"{MAX_RETRO_MONTHS}", span, "write e.g. `retroactive 12 months`")
        return ("retroactive", int(text), span)

    def h_list(self, span, items):
        return ("list", str(items[0]), span)

    def h_exposure(self, span, items):
        return ("exposure", str(items[0]), span)

    def h_rounding(self, span, items):
        quantum = self._decimal(items[1])
        return ("rounding", (str(items[0]), quantum), span)

    def h_report(self, span, items):
        return ("report", (str(items[0]), items[1]), span)

    def h_ref(self, span, items):
        return ("ref", items[0], span)

    def ref(self, span, items):
        return n.Ref(_unquote(items[0]), span)

    # --- inputs
    def inputs(self, span, items):
        return n.Inputs(tuple(items), span)

    def input_decl(self, span, items):
        scope, name, type_, default, ref = items
        return n.InputDecl(str(scope), str(name), type_, default, ref, span)

    def default(self, span, items):
        return items[0]

    def simple_type(self, span, items):
        return n.TypeExpr(str(items[0]), items[1], span)

    def unit_type(self, span, items):
        word, per = items
        return n.TypeExpr(word, per, span)

    # --- definitions
    def define(self, span, items):
        name, expr, ref = items
        return n.Define(str(name), expr, ref, span)

    def dated(self, span, items):
        name, ref, *entries, until = items
        day, day_span = until if until is not None else (None, None)
        return n.Dated(str(name), tuple(entries), ref, span, day, day_span)

    def dated_until(self, span, items):
        return (self._date(items[0]), span)

    def dated_entry(self, span, items):
        return n.DatedEntry(items[0], self._date(items[1]), span)

    def bands(self, span, items):
        name, key, ref, *entries = items
        return n.Bands(str(name), key, tuple(entries), ref, span)

    def band_entry(self, span, items):
        return n.BandEntry(items[0], items[1], span)

    def band_otherwise(self, span, items):
        return n.BandEntry(None, items[0], span)

    def cells(self, span, items):
        name, *rest = items
        keys = tuple(x for x in rest if not isinstance(x, (n.Ref, n.CellRow)) and x is not None)
        ref = next((x for x in rest if isinstance(x, n.Ref)), None)
        rows = tuple(x for x in rest if isinstance(x, n.CellRow))
        return n.Cells(str(name), keys, rows, ref, span)

    def cell_row(self, span, items):
        *keys, value = items
        return n.CellRow(tuple(k if isinstance(k, n.CellKey) else n.CellKey("range", k, (), k.span) for k in keys),
                         value, span)

    def cell_otherwise(self, span, items):
        return n.CellRow(None, items[0], span)

    def key_any(self, span, items):
        return n.CellKey("any", None, (), span)

    def key_text(self, span, items):
        return n.CellKey("values", None, (_unquote(items[0]),), span)

    def key_true(self, span, items):
        return n.CellKey("values", None, (True,), span)

    def key_false(self, span, items):
        return n.CellKey("values", None, (False,), span)

    def key_values(self, span, items):
        return n.CellKey("values", None, tuple(v for k in items for v in k.values), span)

    def range_to(self, span, items):
        return n.Range("to", items[0], items[1], span)

    def range_to_under(self, span, items):
        return n.Range("to_under", items[0], items[1], span)

    def range_and_over(self, span, items):
        return n.Range("and_over", items[0], None, span)

    def range_over(self, span, items):
        return n.Range("over", items[0], None, span)

    def range_under(self, span, items):
        return n.Range("under", None, items[0], span)

    def range_exact(self, span, items):
        return n.Range("exact", items[0], items[0], span)

    def neg_bound(self, span, items):
        q = items[0]
        return n.Quantity(-q.value, "-" + q.text, q.unit, span)

    def tier(self, span, items):
        name, ref, *entries = items
        return n.Tier(str(name), tuple(entries), ref, span)

    def tier_entry(self, span, items):
        return n.Choice(items[0], items[1], False, span)

    def tier_otherwise(self, span, items):
        return n.Choice(items[0], None, False, span)

    def modifier(self, span, items):
        name, combine, ref, *entries = items
        return n.Modifier(str(name), str(combine), tuple(entries), ref, span)

    def modifier_entry(self, span, items):
        value, cond = items
        return n.Choice(value, cond, cond is None, span)

    def modifier_otherwise(self, span, items):
        return n.Choice(items[0], None, False, span)

    def schedule(self, span, items):
        name, key, ref, *entries = items
        return n.Schedule(str(name), key, tuple(entries), ref, span)

    def schedule_entry(self, span, items):
        return n.ScheduleEntry(_unquote(items[0]), items[1], span)

    def schedule_otherwise(self, span, items):
        return n.ScheduleEntry(None, items[0], span)

    # --- lines
    def line(self, span, items):
        name, label, expr, ref = items
        return n.Line("line", str(name), _unquote(label), expr, ref=ref, block=False, span=span)

    def line_block(self, span, items):
        return self._block("line", span, items)

    def pool(self, span, items):
        return self._block("pool", span, items)

    def settlement(self, span, items):
        """A pool whose amount is the adjustment its terms give (`settlement_amount`)."""
        name, label, *clauses = items
        terms = {c[0]: c for c in clauses if c[0] in ("total", "cap", "floor", "corridor")}
        others = [c for c in clauses if c[0] not in terms or terms[c[0]] is not c]
        seen = set()
        for clause, _value, clause_span in clauses:
            if clause in seen:
                self._fail("E0107", f"'{clause}' is given twice in settlement '{name}'", clause_span,
                           "keep one of them")
            seen.add(clause)
        if "total" not in terms:
            self._fail("E0504", f"settlement '{name}' has no total", span,
                       "add `total …`: what was paid in the year, e.g. `total sum of capitation over year`")
        limits = [c for c in ("cap", "floor", "corridor") if c in terms]
        if not limits:
            self._fail("E0509", f"settlement '{name}' has no terms", span,
                       "add a `cap …`, a `floor …`, or a `corridor around … within …% share …%`")
        if "corridor" in terms and len(limits) > 1:
            self._fail("E0509", f"settlement '{name}' has both a corridor and a {limits[0]}", terms["corridor"][2],
                       "write the corridor and the cap or floor as two settlements; the second's total can "
                       "read the first (what it paid)")
        value = lambda c: terms[c][1] if c in terms else None  # noqa: E731
        terms_node = n.Settlement(value("total"), value("cap"), value("floor"), value("corridor"), span)
        amount = settlement_amount(terms_node)
        fields = {c: (v, s) for c, v, s in others}
        line = self._block("pool", span, [name, label, ("amount", amount, terms["total"][2]),
                                          *[(c, v, s) for c, (v, s) in fields.items()]])
        return dataclasses.replace(line, settlement=terms_node)

    def s_total(self, span, items):
        return ("total", items[0], span)

    def s_cap(self, span, items):
        return ("cap", items[0], span)

    def s_floor(self, span, items):
        return ("floor", items[0], span)

    def s_corridor(self, span, items):
        target, within, share = items
        for q, what in ((within, "width"), (share, "share")):
            if q.unit is None or q.unit.word != "%":
                self._fail("E0509", f"a corridor's {what} is a percentage, not `{q.text}"
                                    f"{' ' + q.unit.word if q.unit else ''}`", q.span, f"write `{q.text}%`")
        return ("corridor", n.Corridor(target, within, share, span), span)

    def _block(self, kind, span, items):
        name, label, *clauses = items
        fields: dict = {}
        spans = []
        for clause, value, clause_span in clauses:
            key = "paid" if clause == "payment" else clause
            if key in fields or (key == "paid" and "payment" in fields):
                self._fail("E0107", f"'{key}' is given twice in {kind} '{name}'", clause_span,
                           "keep one of them")
            fields[clause] = value
            spans.append((clause, clause_span))
        if kind == "line" and "paid" in fields:
            self._fail("E0108", f"line '{name}' is paid in shares; only pools are paid in installments",
                       dict(spans)["paid"], "write it as `pool` to split an annual amount, or pay the line in "
                                            "months: `paid quarterly`, `paid in June`")
        basis, basis_label = fields.get("basis", (None, None))
        return n.Line(kind, str(name), _unquote(label), fields.get("amount"), fields.get("applies"),
                      basis, basis_label, tuple(fields.get("paid", ())), fields.get("ref"), True, span,
                      payment=fields.get("payment"), rate_per=fields.get("rate"), clause_spans=tuple(spans))

    def c_amount(self, span, items):
        return ("amount", items[0], span)

    def c_applies(self, span, items):
        return ("applies", items[0], span)

    def c_basis(self, span, items):
        expr, label = items
        return ("basis", (expr, _unquote(label) if label is not None else None), span)

    def c_paid(self, span, items):
        return ("paid", tuple(items), span)

    def c_ref(self, span, items):
        return ("ref", items[0], span)

    def c_paid_every(self, span, items):
        return ("payment", n.Payment(str(items[0]), (), span), span)

    def c_paid_in(self, span, items):
        return ("payment", n.Payment(None, tuple(n.PayTime(PAY_TIMES[str(tok)], str(tok), self._tok_span(tok))
                                                 for tok in items), span), span)

    def c_rate(self, span, items):
        return ("rate", str(items[0]), span)

    def installment(self, span, items):
        share, when_tok, when = items
        return n.Installment(pay_month(str(when_tok)), str(when_tok), share, when, span)

    def installment_rest(self, span, items):
        when_tok, when = items
        return n.Installment(pay_month(str(when_tok)), str(when_tok), None, when, span)

    # --- examples
    def example(self, span, items):
        name, ref, *entries = items
        return n.Example(_unquote(name), tuple(entries), ref, span)

    def e_period(self, span, items):
        return n.ExPeriod(str(items[0]), span)

    def e_set(self, span, items):
        return n.ExSet(str(items[0]), items[1], span)

    def e_practice(self, span, items):
        return n.ExPractice(self._ident(items[0]), tuple(items[1] or ()), span)

    def e_members(self, span, items):
        count, practice, age, attrs = items
        return n.ExMembers(self._int(count), self._ident(practice), self._int(age), tuple(attrs or ()), span)

    def e_member(self, span, items):
        member, practice, born, enrol, attrs = items
        start, end = enrol if enrol else (None, None)
        return n.ExMember(self._ident(member), self._ident(practice), self._date(born), start, end,
                          tuple(attrs or ()), span)

    def enrolment(self, span, items):
        start, end = items
        return (self._date(start), self._date(end) if end is not None else None)

    def e_events(self, span, items):
        count, practice, code, on, attrs = items
        return n.ExEvents(self._int(count), self._ident(practice), _unquote(code), self._date(on),
                          tuple(attrs or ()), span)

    def e_measure(self, span, items):
        name, practice, period, value = items
        return n.ExMeasure(str(name), self._ident(practice), str(period) if period else None, value, span)

    def e_expect(self, span, items):
        practice, line, value = items
        return n.ExExpect(self._ident(practice) if practice is not None else None, str(line), value, span)

    def assignments(self, span, items):
        return list(items)

    def assignment(self, span, items):
        return n.Assignment(str(items[0]), items[1], span)

    def _ident(self, tok) -> str:
        return _unquote(tok) if tok.type == "STRING" else str(tok)

    # --- expressions
    def if_expr(self, span, items):
        return n.IfExpr(items[0], items[1], items[2], span)

    def or_(self, span, items):
        return self._boolop("or", items, span)

    def and_(self, span, items):
        return self._boolop("and", items, span)

    def _boolop(self, op, items, span):
        flat = []
        for item in items:
            if isinstance(item, n.BoolOp) and item.op == op and not getattr(item, "_paren", False):
                flat.extend(item.items)
            else:
                flat.append(item)
        return n.BoolOp(op, tuple(flat), span)

    def not_(self, span, items):
        return n.Not(items[0], span)

    def compare(self, span, items):
        left, op, right = items
        return n.Compare(_COMP[str(op)], left, right, span)

    def in_list(self, span, items):
        return n.InList(items[0], tuple(items[1:]), False, span)

    def not_in_list(self, span, items):
        return n.InList(items[0], tuple(items[1:]), True, span)

    def in_table(self, span, items):
        return n.InTable(items[0], n.Name(str(items[1]), self._tok_span(items[1])), span)

    def is_present(self, span, items):
        return n.Present(items[0], False, span)

    def is_missing(self, span, items):
        return n.Present(items[0], True, span)

    def add(self, span, items):
        return n.Binary("+", items[0], items[1], span)

    def sub(self, span, items):
        return n.Binary("-", items[0], items[1], span)

    def mul(self, span, items):
        return n.Binary("*", items[0], items[1], span)

    def div(self, span, items):
        return n.Binary("/", items[0], items[1], span)

    def equals(self, span, items):
        return n.Compare("=", items[0], items[1], span)

    def percent_of(self, span, items):
        return n.Binary("of", items[0], items[1], span)

    def neg(self, span, items):
        return n.Neg(items[0], span)

    def string(self, span, items):
        return n.String(_unquote(items[0]), span)

    def date(self, span, items):
        return n.DateLit(self._date(items[0]), span)

    def true(self, span, items):
        return n.BoolLit(True, span)

    def false(self, span, items):
        return n.BoolLit(False, span)

    def name(self, span, items):
        return n.Name(str(items[0]), span)

    def attr(self, span, items):
        return n.Attr(str(items[0]), str(items[1]), span)

    def call(self, span, items):
        return n.Call(str(items[0]), tuple(items[1:]), span)

    def sum_over(self, span, items):
        expr, source, where = (items + [None])[:3]
        return n.SumOver(expr, str(source), where, span)

    def count_of(self, span, items):
        source, where = (items + [None])[:2]
        return n.CountOf(str(source), where, span)

    def member_events(self, span, items):
        return str(items[0]) if items[0] is not None else "month"

    def member_sum(self, span, items):
        expr, window, where = (items + [None])[:3]
        return n.MemberEvents("sum", expr, window, where, span)

    def member_count(self, span, items):
        window, where = (items + [None])[:2]
        return n.MemberEvents("count", None, window, where, span)

    def quantity(self, span, items):
        tok, unit = items
        value = self._decimal(tok)
        if unit is not None and unit.word == "%":
            value = value / 100
        return n.Quantity(value, str(tok), unit, span)

    def percent_unit(self, span, items):
        return n.UnitExpr("%", None, span)

    def unit(self, span, items):
        word, per = items
        return n.UnitExpr(word, per, span)

    def unit_word(self, span, items):
        return str(items[0])

    # --- literals
    def _decimal(self, tok: Token) -> Decimal:
        text = str(tok)
        if len(text.replace(".", "")) > MAX_NUMBER_DIGITS:
            self._fail("E0106", f"the number {text[:20]}… has more than {MAX_NUMBER_DIGITS} digits",
                       self._tok_span(tok), "amounts and rates need far fewer digits; check for a typo")
        try:
            return Decimal(text)
        except InvalidOperation:  # pragma: no cover - the lexer only admits digits
            self._fail("E0103", f"'{text}' is not a number", self._tok_span(tok))

    def _int(self, tok: Token) -> int:
        value = self._decimal(tok)
        if value != value.to_integral_value():
            self._fail("E0103", f"'{tok}' must be a whole number here", self._tok_span(tok))
        return int(value)

    def _date(self, tok: Token) -> date:
        try:
            return date.fromisoformat(str(tok))
        except ValueError:
            self._fail("E0109", f"'{tok}' is not a valid date", self._tok_span(tok),
                       "dates are written YYYY-MM-DD, e.g. 2011-07-01")


# ─────────────────────────────── friendly errors ──────────────────────────

_TERMINAL_WORDS = {
    "STRING": "a quoted string",
    "NAME": "a name",
    "NUMBER": "a number",
    "CURRENCY": "a currency code (e.g. EUR, CZK)",
    "DATE": "a date (YYYY-MM-DD)",
    "PERIOD_TEXT": "a period (2011, 2011-Q2 or 2011-03)",
    "PERIOD_UNIT": "'month'",
    "AGE_RULE": "month_start, month_end, quarter_start or year_start",
    "EXPOSURE": "first_day, pro_rata or any_day",
    "ROUNDING_MODE": "half_up, half_even, down or up",
    "SCOPE": "member, practice, event, measure, param or calendar",
    "TYPE_WORD": "a type (bool, text, date, number, integer, percent, money)",
    "UNIT_WORD": "a unit (points, hours, days, members)",
    "COMBINE": "highest, lowest, multiply, add or first",
    "PAY_TIME": "a month (January … December), a quarter (Q1–Q4) or a half-year (H1, H2)",
    "FREQUENCY": "monthly or quarterly",
    "PERIOD_WORD": "month, quarter or year",
    "COMP_OP": "a comparison (=, !=, <, <=, >, >=)",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*' or '/'",
    "AGG_SOURCE": "members, events or year",
    "PERCENT": "'%'",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}

_BLOCK_KEYWORDS = ("contract", "inputs", "define", "bands", "cells", "tier", "modifier", "schedule", "line", "pool",
                   "settlement", "example")


def _describe(term: str) -> str:
    if term in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[term]
    for t in parser().terminals:
        if t.name == term:
            pattern = t.pattern
            if pattern.type == "str":
                return f"'{pattern.value}'"
    return term.lower()


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "_NL":
        return "the end of the line"
    text = str(tok)
    return f"'{text}'" if len(text) < 40 else f"'{text[:37]}...'"


def _expected_list(expected) -> str:
    words = sorted({_describe(t) for t in expected if not t.startswith("__")})
    if not words:
        return "something else here"
    if len(words) > 8:
        words = words[:7] + ["…"]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _previous_word(text: str, pos: int) -> str | None:
    # Only the end of the current line: the search below is quadratic in its input (fuzz: 100k-char line).
    before = text[max(text.rfind("\n", 0, pos) + 1, pos - 200):pos].rstrip(" \t")
    m = re.search(r'("(?:[^"\\\n]|\\.)*"|[^\s]+)$', before)
    return m.group(1) if m else None


def open_block(source: Source, upto_line: int) -> tuple[str, int] | None:
    """The innermost block keyword opened before `upto_line` and not closed with `end`."""
    stack: list[tuple[str, int]] = []
    for lineno, raw in enumerate(source.text.splitlines()[: upto_line], start=1):
        code = _SKIP.sub("", raw).strip()
        if not code:
            continue
        word = code.split()[0]
        if word == "end":
            if stack:
                stack.pop()
        elif code.endswith(":") and (word in _BLOCK_KEYWORDS or word == "line" or word == "pool"):
            stack.append((word, lineno))
    return stack[-1] if stack else None


def _friendly(exc: UnexpectedInput, source: Source) -> Diagnostic:
    text = source.text if source.text.endswith("\n") else source.text + "\n"
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    if line < 1:
        line, column = source.line_count, max(1, len(source.line_text(source.line_count)) + 1)
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = Span.point(line, column)
        rest = text[exc.pos_in_stream:]
        prev = text[: exc.pos_in_stream]
        if ch == "," and re.search(r"[0-9]$", prev) and re.match(r",[0-9]", rest):
            m = re.search(r"[0-9]+$", prev)
            m2 = re.match(r",([0-9]+)", rest)
            bad = f"{m.group(0)},{m2.group(1)}"
            return error("E0102", f"'{bad}' is not a number here", span,
                         hint=f"decimals use a dot: write {m.group(0)}.{m2.group(1)}; "
                              "thousands are written without separators (2400)")
        if ch == '"':
            return error("E0101", "this string is not closed on its line", span,
                         hint='add the closing quote: "..."')
        if ch == "\t" or ch == " ":
            return error("E0101", "unexpected white space", span)
        m = re.match(r"[0-9]+(\.[0-9]+)+\.[0-9.]*|[0-9]+\.(?![0-9])", rest)
        if m:
            return error("E0102", f"'{m.group(0)}' is not a number", Span(line, column, line, column + len(m.group(0))),
                         hint="numbers are written like 1.08 or 2400")
        m = re.match(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}", rest)
        if m:
            return error("E0109", f"'{m.group(0)}' is not a date", Span(line, column, line, column + len(m.group(0))),
                         hint="dates are written YYYY-MM-DD, e.g. 2011-07-01")
        expected = getattr(exc, "allowed", None) or set()
        desc = f"'{ch}'" if ch.isprintable() else f"the character U+{ord(ch):04X}"
        msg = f"unexpected {desc}"
        prevw = _previous_word(text, exc.pos_in_stream)
        if prevw:
            msg += f" after {prevw!r}"
        return error("E0101", msg, span, hint=f"expected {_expected_list(expected)}" if expected else None)

    if isinstance(exc, (UnexpectedToken, UnexpectedEOF)):
        tok = getattr(exc, "token", None)
        expected = set(getattr(exc, "expected", set()) or set())
        if tok is None or tok.type == "$END":
            block = open_block(source, source.line_count)
            last = source.line_count
            span = Span.point(last, max(1, len(source.line_text(last)) + 1))
            if block:
                kw, opened = block
                return error("E0110", f"the file ends inside the '{kw}' block opened on line {opened}", span,
                             hint="close the block with 'end'",
                             notes=[Note(f"the '{kw}' block starts here", Span.point(opened, 1))])
            return error("E0110", f"the file ends too early; expected {_expected_list(expected)}", span)
        span = _tok_span(tok)
        prevw = _previous_word(text, tok.start_pos) if tok.start_pos is not None else None
        if tok.type == "_NL":
            span = Span.point(tok.line, tok.column)
        after = f" after {prevw!r}" if prevw else ""
        # Targeted messages for the common slips.
        if prevw == "currency" and "CURRENCY" in expected:
            return error("E0101", f"expected a currency code after 'currency', found {_describe_token(tok)}", span,
                         hint="write an ISO 4217 code in capitals, e.g. `currency EUR`")
        if str(tok) in ("amount", "applies", "basis", "paid") and tok.column > 1:
            return error("E0101", f"'{tok}' is a clause of a line or pool block, but no block is open here",
                         span, hint="a line written `line id \"Label\" = …` takes no clauses; write it as a "
                                    "block: `line id \"Label\":`, then `amount …`, the clauses, and `end`")
        if tok.type == "NAME" and "ANY" in expected and "STRING" in expected:  # a rate-cell key
            return error("E0101", f"unexpected {_describe_token(tok)}{after}: a rate-cell key is a range, a "
                                  f"quoted value, a list of values or `any`", span,
                         hint=f"write the value in quotes: \"{tok}\"")
        ends = {"$END": "the file ends too early", "_NL": "the line ends too early"}.get(tok.type)
        msg = f"{ends}{',' if after else ''}{after}" if ends else f"unexpected {_describe_token(tok)}{after}"
        hint = f"expected {_expected_list(expected)}" if expected else None
        if tok.type in ("END",) and "_NL" not in expected:
            hint = (hint or "") + "; is a line incomplete?"
        if "END" in expected and tok.type == "$END":
            hint = "close the block with 'end'"
        # A comma between two numbers where a number ends the expression: 1,5
        if tok.type == "COMMA" or str(tok) == ",":
            before = text[: tok.start_pos]
            after_text = text[tok.end_pos:] if tok.end_pos is not None else ""
            m1 = re.search(r"[0-9]+$", before)
            m2 = re.match(r"[0-9]+", after_text)
            if m1 and m2:
                return error("E0102", f"'{m1.group(0)},{m2.group(0)}' is not a number here", span,
                             hint=f"decimals use a dot: write {m1.group(0)}.{m2.group(0)}; "
                                  "thousands are written without separators (2400)")
        return error("E0101", msg, span, hint=hint)
    return error("E0101", str(exc).splitlines()[0], Span.point(line, column))
