"""Syntax: source text → AST.

The Lark parser (LALR, contextual lexer, strict) is built once. Lark's tree
never leaves this module: `parse` returns a `nodes.Contract` or raises a
`SyntaxError_` whose diagnostics speak the author's language ("expected a
currency code after 'currency'"), not Lark's token names.
Limits (source size, nesting depth, number of definitions) are enforced here,
before any recursive pass could overflow.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import nodes as n
from .errors import Diagnostic, Note, Source, Span, SyntaxError_, error

MAX_SOURCE_BYTES = 2_000_000
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
    repo = Path(__file__).resolve().parent.parent / "grammar" / "cap.lark"
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
        tree = parser().parse(text)
    except UnexpectedInput as exc:
        raise SyntaxError_(_friendly(exc, source), source) from None
    _check_tree_depth(tree, source)
    decls = _Builder(source).transform(tree)
    if len(decls) > MAX_DEFINITIONS:
        raise SyntaxError_(error("E0105", f"the contract has {len(decls):,} definitions; the limit is {MAX_DEFINITIONS:,}",
                                 Span(1, 1, 1, 1)), source)
    return n.Contract(tuple(decls), tuple(_comments(source.text)), Span(1, 1, source.line_count + 1, 1))


def parse_text(text: str, path: str = "<string>") -> n.Contract:
    return parse(Source(text, path))


# ─────────────────────────────── limits ──────────────────────────────────

_SKIP = re.compile(r'"([^"\\\n]|\\.)*"|#[^\n]*')


def _check_paren_depth(source: Source) -> None:
    """Reject absurd nesting before Lark builds a tree we would recurse over."""
    depth = 0
    line = 1
    col = 0
    stripped = _SKIP.sub(lambda m: " " * len(m.group(0)), source.text)
    for ch in stripped:
        col += 1
        if ch == "\n":
            line += 1
            col = 0
        elif ch == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise SyntaxError_(error(
                    "E0104", f"expressions are nested more than {MAX_NESTING} levels deep",
                    Span.point(line, col), hint="name an intermediate value with `define` and use it"), source)
        elif ch == ")":
            depth = max(0, depth - 1)


def _check_tree_depth(tree: Tree, source: Source) -> None:
    # `opened` counts if/sum/count forms on the path: fmt parenthesises them when nested, so more
    # than MAX_NESTING would format to text that fails the parenthesis limit (found by fuzzing).
    stack = [(tree, 1, 0)]
    while stack:
        node, depth, opened = stack.pop()
        opened += node.data in ("if_expr", "sum_over", "count_of")
        if depth > MAX_NESTING * 3 or opened > MAX_NESTING:
            meta = node.meta
            span = Span(meta.line, meta.column, meta.end_line, meta.end_column) if not meta.empty else None
            raise SyntaxError_(error(
                "E0104", f"expressions are nested more than {MAX_NESTING} levels deep", span,
                hint="name an intermediate value with `define` and use it"), source)
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1, opened))


# ─────────────────────────────── comments ─────────────────────────────────

_TOKEN_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\r\n]*')


HEADER_ORDER = ("payer", "provider", "currency", "period", "age", "exposure", "rounding", "report", "ref")


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
    """Mirror of grammar/cap.lark: one method `rule(meta, items)` per rule or alias.

    `transform` walks the parse tree bottom-up with an explicit stack: no
    recursion limit, and no per-call wrapper objects (Lark's `Transformer`
    with `v_args` allocates one per node, a third of parse time)."""

    def __init__(self, source: Source):
        self.source = source

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
                method = methods[name] = getattr(self, name, None) or (
                    lambda meta, items, name=name: Tree(name, items, meta))
            results[id(node)] = method(node.meta, items)
        return results[id(tree)]

    def _fail(self, code: str, message: str, span: Span, hint: str | None = None):
        raise SyntaxError_(error(code, message, span, hint=hint), self.source)

    # --- file
    def start(self, meta, items):
        return [i for i in items if i is not None]

    # --- header
    def contract(self, meta, items):
        name = _unquote(items[0])
        fields: dict = {"name": name}
        written = []
        spans = []
        for clause, value, span in items[1:]:
            if clause in written:
                self._fail("E0107", f"'{clause}' is given twice in the contract header", span,
                           "keep one of them")
            written.append(clause)
            spans.append((clause, span))
            if clause == "rounding":
                fields["rounding_mode"], fields["rounding_quantum"] = value
            elif clause == "report":
                fields["report_currency"], fields["report_rate"] = value
            else:
                fields[{"age": "age_rule", "period": "period_unit"}.get(clause, clause)] = value
        # `written` in canonical order, so a formatted file parses to the same AST
        canonical = [c for c in HEADER_ORDER if c in written] + [c for c in written if c not in HEADER_ORDER]
        return n.Header(**fields, written=tuple(canonical), span=_span(meta), clause_spans=tuple(spans))

    def h_payer(self, meta, items):
        return ("payer", _unquote(items[0]), _span(meta))

    def h_provider(self, meta, items):
        return ("provider", _unquote(items[0]), _span(meta))

    def h_currency(self, meta, items):
        return ("currency", str(items[0]), _span(meta))

    def h_period(self, meta, items):
        return ("period", str(items[0]), _span(meta))

    def h_age(self, meta, items):
        return ("age", str(items[0]), _span(meta))

    def h_exposure(self, meta, items):
        return ("exposure", str(items[0]), _span(meta))

    def h_rounding(self, meta, items):
        quantum = self._decimal(items[1])
        return ("rounding", (str(items[0]), quantum), _span(meta))

    def h_report(self, meta, items):
        return ("report", (str(items[0]), items[1]), _span(meta))

    def h_ref(self, meta, items):
        return ("ref", items[0], _span(meta))

    def ref(self, meta, items):
        return n.Ref(_unquote(items[0]), _span(meta))

    # --- inputs
    def inputs(self, meta, items):
        return n.Inputs(tuple(items), _span(meta))

    def input_decl(self, meta, items):
        scope, name, type_, default, ref = items
        return n.InputDecl(str(scope), str(name), type_, default, ref, _span(meta))

    def default(self, meta, items):
        return items[0]

    def simple_type(self, meta, items):
        return n.TypeExpr(str(items[0]), items[1], _span(meta))

    def unit_type(self, meta, items):
        word, per = items
        return n.TypeExpr(word, per, _span(meta))

    # --- definitions
    def define(self, meta, items):
        name, expr, ref = items
        return n.Define(str(name), expr, ref, _span(meta))

    def dated(self, meta, items):
        name, ref, *entries = items
        return n.Dated(str(name), tuple(entries), ref, _span(meta))

    def dated_entry(self, meta, items):
        return n.DatedEntry(items[0], self._date(items[1]), _span(meta))

    def bands(self, meta, items):
        name, key, ref, *entries = items
        return n.Bands(str(name), key, tuple(entries), ref, _span(meta))

    def band_entry(self, meta, items):
        return n.BandEntry(items[0], items[1], _span(meta))

    def band_otherwise(self, meta, items):
        return n.BandEntry(None, items[0], _span(meta))

    def range_to(self, meta, items):
        return n.Range("to", items[0], items[1], _span(meta))

    def range_to_under(self, meta, items):
        return n.Range("to_under", items[0], items[1], _span(meta))

    def range_and_over(self, meta, items):
        return n.Range("and_over", items[0], None, _span(meta))

    def range_over(self, meta, items):
        return n.Range("over", items[0], None, _span(meta))

    def range_under(self, meta, items):
        return n.Range("under", None, items[0], _span(meta))

    def range_exact(self, meta, items):
        return n.Range("exact", items[0], items[0], _span(meta))

    def neg_bound(self, meta, items):
        q = items[0]
        return n.Quantity(-q.value, "-" + q.text, q.unit, _span(meta))

    def tier(self, meta, items):
        name, ref, *entries = items
        return n.Tier(str(name), tuple(entries), ref, _span(meta))

    def tier_entry(self, meta, items):
        return n.Choice(items[0], items[1], False, _span(meta))

    def tier_otherwise(self, meta, items):
        return n.Choice(items[0], None, False, _span(meta))

    def modifier(self, meta, items):
        name, combine, ref, *entries = items
        return n.Modifier(str(name), str(combine), tuple(entries), ref, _span(meta))

    def modifier_entry(self, meta, items):
        value, cond = items
        return n.Choice(value, cond, cond is None, _span(meta))

    def modifier_otherwise(self, meta, items):
        return n.Choice(items[0], None, False, _span(meta))

    def schedule(self, meta, items):
        name, key, ref, *entries = items
        return n.Schedule(str(name), key, tuple(entries), ref, _span(meta))

    def schedule_entry(self, meta, items):
        return n.ScheduleEntry(_unquote(items[0]), items[1], _span(meta))

    def schedule_otherwise(self, meta, items):
        return n.ScheduleEntry(None, items[0], _span(meta))

    # --- lines
    def line(self, meta, items):
        name, label, expr, ref = items
        return n.Line("line", str(name), _unquote(label), expr, ref=ref, block=False, span=_span(meta))

    def line_block(self, meta, items):
        return self._block("line", meta, items)

    def pool(self, meta, items):
        return self._block("pool", meta, items)

    def _block(self, kind, meta, items):
        name, label, *clauses = items
        fields: dict = {}
        for clause, value, span in clauses:
            if clause in fields:
                self._fail("E0107", f"'{clause}' is given twice in {kind} '{name}'", span, "keep one of them")
            fields[clause] = value
        if kind == "line" and "paid" in fields:
            self._fail("E0108", f"line '{name}' has a 'paid' clause; only pools are paid in installments",
                       _span(meta), "write it as `pool` to pay an annual amount in installments")
        basis, basis_label = fields.get("basis", (None, None))
        return n.Line(kind, str(name), _unquote(label), fields.get("amount"), fields.get("applies"),
                      basis, basis_label, tuple(fields.get("paid", ())), fields.get("ref"), True, _span(meta))

    def c_amount(self, meta, items):
        return ("amount", items[0], _span(meta))

    def c_applies(self, meta, items):
        return ("applies", items[0], _span(meta))

    def c_basis(self, meta, items):
        expr, label = items
        return ("basis", (expr, _unquote(label) if label is not None else None), _span(meta))

    def c_paid(self, meta, items):
        return ("paid", tuple(items), _span(meta))

    def c_ref(self, meta, items):
        return ("ref", items[0], _span(meta))

    def installment(self, meta, items):
        share, quarter, when = items
        return n.Installment(int(str(quarter)[1]), share, when, _span(meta))

    def installment_rest(self, meta, items):
        quarter, when = items
        return n.Installment(int(str(quarter)[1]), None, when, _span(meta))

    # --- examples
    def example(self, meta, items):
        name, ref, *entries = items
        return n.Example(_unquote(name), tuple(entries), ref, _span(meta))

    def e_period(self, meta, items):
        return n.ExPeriod(str(items[0]), _span(meta))

    def e_set(self, meta, items):
        return n.ExSet(str(items[0]), items[1], _span(meta))

    def e_practice(self, meta, items):
        return n.ExPractice(self._ident(items[0]), tuple(items[1] or ()), _span(meta))

    def e_members(self, meta, items):
        count, practice, age, attrs = items
        return n.ExMembers(self._int(count), self._ident(practice), self._int(age), tuple(attrs or ()), _span(meta))

    def e_member(self, meta, items):
        member, practice, born, enrol, attrs = items
        start, end = enrol if enrol else (None, None)
        return n.ExMember(self._ident(member), self._ident(practice), self._date(born), start, end,
                          tuple(attrs or ()), _span(meta))

    def enrolment(self, meta, items):
        start, end = items
        return (self._date(start), self._date(end) if end is not None else None)

    def e_events(self, meta, items):
        count, practice, code, on, attrs = items
        return n.ExEvents(self._int(count), self._ident(practice), _unquote(code), self._date(on),
                          tuple(attrs or ()), _span(meta))

    def e_measure(self, meta, items):
        name, practice, period, value = items
        return n.ExMeasure(str(name), self._ident(practice), str(period) if period else None, value, _span(meta))

    def e_expect(self, meta, items):
        practice, line, value = items
        return n.ExExpect(self._ident(practice) if practice is not None else None, str(line), value, _span(meta))

    def assignments(self, meta, items):
        return list(items)

    def assignment(self, meta, items):
        return n.Assignment(str(items[0]), items[1], _span(meta))

    def _ident(self, tok) -> str:
        return _unquote(tok) if tok.type == "STRING" else str(tok)

    # --- expressions
    def if_expr(self, meta, items):
        return n.IfExpr(items[0], items[1], items[2], _span(meta))

    def or_(self, meta, items):
        return self._boolop("or", items, meta)

    def and_(self, meta, items):
        return self._boolop("and", items, meta)

    def _boolop(self, op, items, meta):
        flat = []
        for item in items:
            if isinstance(item, n.BoolOp) and item.op == op and not getattr(item, "_paren", False):
                flat.extend(item.items)
            else:
                flat.append(item)
        return n.BoolOp(op, tuple(flat), _span(meta))

    def not_(self, meta, items):
        return n.Not(items[0], _span(meta))

    def compare(self, meta, items):
        left, op, right = items
        return n.Compare(_COMP[str(op)], left, right, _span(meta))

    def in_list(self, meta, items):
        return n.InList(items[0], tuple(items[1:]), False, _span(meta))

    def not_in_list(self, meta, items):
        return n.InList(items[0], tuple(items[1:]), True, _span(meta))

    def in_table(self, meta, items):
        return n.InTable(items[0], n.Name(str(items[1]), _tok_span(items[1])), _span(meta))

    def is_present(self, meta, items):
        return n.Present(items[0], False, _span(meta))

    def is_missing(self, meta, items):
        return n.Present(items[0], True, _span(meta))

    def add(self, meta, items):
        return n.Binary("+", items[0], items[1], _span(meta))

    def sub(self, meta, items):
        return n.Binary("-", items[0], items[1], _span(meta))

    def mul(self, meta, items):
        return n.Binary("*", items[0], items[1], _span(meta))

    def div(self, meta, items):
        return n.Binary("/", items[0], items[1], _span(meta))

    def equals(self, meta, items):
        return n.Compare("=", items[0], items[1], _span(meta))

    def percent_of(self, meta, items):
        return n.Binary("of", items[0], items[1], _span(meta))

    def neg(self, meta, items):
        return n.Neg(items[0], _span(meta))

    def string(self, meta, items):
        return n.String(_unquote(items[0]), _span(meta))

    def date(self, meta, items):
        return n.DateLit(self._date(items[0]), _span(meta))

    def true(self, meta, items):
        return n.BoolLit(True, _span(meta))

    def false(self, meta, items):
        return n.BoolLit(False, _span(meta))

    def name(self, meta, items):
        return n.Name(str(items[0]), _span(meta))

    def attr(self, meta, items):
        return n.Attr(str(items[0]), str(items[1]), _span(meta))

    def call(self, meta, items):
        return n.Call(str(items[0]), tuple(items[1:]), _span(meta))

    def sum_over(self, meta, items):
        expr, source, where = (items + [None])[:3]
        return n.SumOver(expr, str(source), where, _span(meta))

    def count_of(self, meta, items):
        source, where = (items + [None])[:2]
        return n.CountOf(str(source), where, _span(meta))

    def quantity(self, meta, items):
        tok, unit = items
        value = self._decimal(tok)
        if unit is not None and unit.word == "%":
            value = value / 100
        return n.Quantity(value, str(tok), unit, _span(meta))

    def percent_unit(self, meta, items):
        return n.UnitExpr("%", None, _span(meta))

    def unit(self, meta, items):
        word, per = items
        return n.UnitExpr(word, per, _span(meta))

    def unit_word(self, meta, items):
        return str(items[0])

    # --- literals
    def _decimal(self, tok: Token) -> Decimal:
        text = str(tok)
        if len(text.replace(".", "")) > MAX_NUMBER_DIGITS:
            self._fail("E0106", f"the number {text[:20]}… has more than {MAX_NUMBER_DIGITS} digits",
                       _tok_span(tok), "amounts and rates need far fewer digits; check for a typo")
        try:
            return Decimal(text)
        except InvalidOperation:  # pragma: no cover - the lexer only admits digits
            self._fail("E0103", f"'{text}' is not a number", _tok_span(tok))

    def _int(self, tok: Token) -> int:
        value = self._decimal(tok)
        if value != value.to_integral_value():
            self._fail("E0103", f"'{tok}' must be a whole number here", _tok_span(tok))
        return int(value)

    def _date(self, tok: Token) -> date:
        try:
            return date.fromisoformat(str(tok))
        except ValueError:
            self._fail("E0109", f"'{tok}' is not a valid date", _tok_span(tok),
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
    "AGE_RULE": "month_start, month_end or year_start",
    "EXPOSURE": "first_day, pro_rata or any_day",
    "ROUNDING_MODE": "half_up, half_even, down or up",
    "SCOPE": "member, practice, event, measure or param",
    "TYPE_WORD": "a type (bool, text, date, number, integer, percent, money)",
    "UNIT_WORD": "a unit (points, hours, days, members)",
    "COMBINE": "highest, lowest, multiply, add or first",
    "QUARTER": "a quarter (Q1–Q4)",
    "COMP_OP": "a comparison (=, !=, <, <=, >, >=)",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*' or '/'",
    "AGG_SOURCE": "members, events or year",
    "PERCENT": "'%'",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}

_BLOCK_KEYWORDS = ("contract", "inputs", "define", "bands", "tier", "modifier", "schedule", "line", "pool", "example")


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


def _open_block(source: Source, upto_line: int) -> tuple[str, int] | None:
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
            block = _open_block(source, source.line_count)
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
