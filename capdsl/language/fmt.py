"""`capdsl fmt`: the canonical layout of a contract.

The layout is printed from the AST, so it cannot drift from what the parser
understood: `parse(fmt(x)) == parse(x)` and `fmt(fmt(x)) == fmt(x)`.
The AST has no comments or blank lines, so a light scan of the source splits
it into logical lines (one per statement, `\\` continuations joined) with the
comments and blank lines around them. Every grammar statement is exactly one
logical line, so the printed statements and the source's logical lines pair
up one to one (header clauses and line/pool clauses are paired by their
leading keyword, because they are printed in a fixed order).

Layout decisions:
- one blank line between top-level items when either is a block; between two
  one-line items (`define`, `line … =`) the author's choice (none or one);
- inside a block, an author's blank line between entries is kept (several
  collapse to one), but never right after the opening line or before `end`;
- own-line comments stay before the statement that follows them, at its
  indentation; comments before `end` stay inside the block; trailing comments
  stay on their line, aligned in a column across adjacent commented lines of
  the same indentation (lines longer than 72 columns keep two spaces);
- lines are not wrapped automatically, but an author's continuations (`\\`)
  are kept where they were (mapped onto the printed tokens), with the
  continued lines indented four spaces deeper than the statement;
- line endings are `\\n`; the file ends with exactly one newline.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from capdsl.language import ast_nodes as n
from capdsl.errors import Source
from capdsl.language.syntax import HEADER_ORDER, parse

INDENT = "    "
ALIGN_LIMIT = 72  # a commented line longer than this does not join a comment column

# ───────────────────────────── expressions ─────────────────────────────

# Binding levels, loosest first (grammar/cap.lark): a child printed below the
# level its slot requires gets parentheses.
OPEN, OR, AND, NOT, CMP, SUM, PROD, UNARY, ATOM = range(9)

_NAME = re.compile(r"(?![0-9])\w+\Z")
_CURRENCY = re.compile(r"[A-Z]{3}\Z")
_RESERVED = frozenset("""
contract end payer provider currency period age as of exposure rounding per line report in at ref
inputs member practice event measure param define bands cells any by to under and over tier when otherwise
modifier combine schedule pool amount applies basis paid rest example set members aged born enrolled
from events code on expect if then else or not is present missing sum count true false with for where
bool text date number integer percent money points point hours hour days day year
highest lowest multiply add first month_start month_end year_start first_day pro_rata any_day
half_up half_even down up month Q1 Q2 Q3 Q4
""".split())


def quote(text: str) -> str:
    """A string literal the parser reads back as `text`."""
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{body}"'


def ident(text: str) -> str:
    """A practice or member id: bare when it lexes as a name, else quoted."""
    if _NAME.match(text) and text not in _RESERVED and not _CURRENCY.match(text):
        return text
    return quote(text)


def unit(u: n.UnitExpr | n.TypeExpr | None) -> str:
    if u is None:
        return ""
    return u.word if u.per is None else f"{u.word} per {u.per}"


def quantity(q: n.Quantity) -> str:
    if q.unit is None:
        return q.text
    if q.unit.word == "%":
        return q.text + "%"
    return f"{q.text} {unit(q.unit)}"


def level(e) -> int:
    if isinstance(e, n.IfExpr) or (isinstance(e, (n.SumOver, n.CountOf, n.MemberEvents)) and e.where is not None):
        return OPEN
    if isinstance(e, n.BoolOp):
        return OR if e.op == "or" else AND
    if isinstance(e, n.Not):
        return NOT
    if isinstance(e, (n.Compare, n.InList, n.InTable, n.Present)):
        return CMP
    if isinstance(e, n.Binary):
        return SUM if e.op in "+-" else PROD
    if isinstance(e, n.Neg):
        return UNARY
    return ATOM


def expr(e, need: int = OPEN) -> str:
    """Print `e` for a slot that binds at `need`; parenthesise only when required."""
    text = _expr(e)
    return f"({text})" if level(e) < need else text


def _expr(e) -> str:
    if isinstance(e, n.Quantity):
        return quantity(e)
    if isinstance(e, n.String):
        return quote(e.value)
    if isinstance(e, n.DateLit):
        return e.value.isoformat()
    if isinstance(e, n.BoolLit):
        return "true" if e.value else "false"
    if isinstance(e, n.Name):
        return e.name
    if isinstance(e, n.Attr):
        return f"{e.scope}.{e.name}"
    if isinstance(e, n.Neg):
        return "-" + expr(e.operand, UNARY)
    if isinstance(e, n.Binary):
        lvl = level(e)
        return f"{expr(e.left, lvl)} {e.op} {expr(e.right, lvl + 1)}"
    if isinstance(e, n.Compare):
        return f"{expr(e.left, SUM)} {e.op} {expr(e.right, SUM)}"
    if isinstance(e, n.BoolOp):
        lvl = level(e)
        return f" {e.op} ".join(expr(item, lvl + 1) for item in e.items)
    if isinstance(e, n.Not):
        return "not " + expr(e.operand, NOT)
    if isinstance(e, n.InList):
        text = f"{expr(e.operand, SUM)} in ({', '.join(expr(o) for o in e.options)})"
        return f"not ({text})" if e.negated else text
    if isinstance(e, n.InTable):
        return f"{expr(e.operand, SUM)} in {e.table.name}"
    if isinstance(e, n.Present):
        return f"{expr(e.operand, SUM)} is {'missing' if e.negated else 'present'}"
    if isinstance(e, n.IfExpr):
        # cond and then parse bare too, but read ambiguously without parentheses
        return f"if {expr(e.cond, OR)} then {expr(e.then, OR)} else {expr(e.otherwise)}"
    if isinstance(e, n.Call):
        return f"{e.func}({', '.join(expr(a) for a in e.args)})"
    if isinstance(e, n.SumOver):
        text = f"sum of {expr(e.expr, OR)} over {e.source}"
        return text if e.where is None else f"{text} where {expr(e.where)}"
    if isinstance(e, n.CountOf):
        text = f"count of {e.source}"
        return text if e.where is None else f"{text} where {expr(e.where)}"
    if isinstance(e, n.MemberEvents):
        window = "" if e.window == "month" else f" during {e.window}"
        text = (f"sum of {expr(e.expr, OR)} over" if e.kind == "sum" else "count of") + f" member events{window}"
        return text if e.where is None else f"{text} where {expr(e.where)}"
    raise TypeError(f"cannot format {type(e).__name__}")


# ───────────────────────────── statements ──────────────────────────────

@dataclass
class PLine:
    """A printed statement: its depth, its code and (for clauses printed in a
    fixed order) the keyword that pairs it with its source line."""

    depth: int
    code: str
    key: str | None = None


def _ref(r: n.Ref | None) -> str:
    return f" ref {quote(r.text)}" if r is not None else ""


def _block(opener: str, entries: list[str], keys: list[str | None] | None = None) -> list[PLine]:
    keys = keys or [None] * len(entries)
    return [PLine(0, opener), *(PLine(1, e, k) for e, k in zip(entries, keys)), PLine(0, "end")]


_HEADER_ORDER = HEADER_ORDER


def _header(h: n.Header) -> list[PLine]:
    text = {
        "payer": lambda: f"payer {quote(h.payer or '')}",
        "provider": lambda: f"provider {quote(h.provider or '')}",
        "currency": lambda: f"currency {h.currency}",
        "period": lambda: f"period {h.period_unit}",
        "age": lambda: f"age as of {h.age_rule}",
        "exposure": lambda: f"exposure {h.exposure}",
        "list": lambda: f"list as of {h.list_day}",
        "retroactive": lambda: f"retroactive {h.retro_months} months",
        "rounding": lambda: f"rounding {h.rounding_mode} {h.rounding_quantum:f} per line",
        "report": lambda: f"report in {h.report_currency} at {quantity(h.report_rate)}",
        "ref": lambda: f"ref {quote(h.ref.text)}",
    }
    keys = [c for c in _HEADER_ORDER if c in h.written]
    return _block(f"contract {quote(h.name)}:", [text[c]() for c in keys], keys)


def range_text(r: n.Range) -> str:
    """A band's range as written in canonical form (`0 to 4`, `65 and over`)."""
    lo = quantity(r.low) if r.low is not None else ""
    hi = quantity(r.high) if r.high is not None else ""
    return {"to": f"{lo} to {hi}", "to_under": f"{lo} to under {hi}", "and_over": f"{lo} and over",
            "over": f"over {lo}", "under": f"under {hi}", "exact": lo}[r.form]


def cell_key_text(k: n.CellKey) -> str:
    """A rate-cell key in canonical form (`1 to 20`, `"F"`, `("SSI", "ABD")`, `any`)."""
    if k.form == "any":
        return "any"
    if k.form == "range":
        return range_text(k.range)
    words = [("true" if v else "false") if isinstance(v, bool) else quote(v) for v in k.values]
    return words[0] if len(words) == 1 else "(" + ", ".join(words) + ")"


def _cells(d: n.Cells) -> list[PLine]:
    """Rate cells with their keys in aligned columns, so that a row reads across like the
    published table."""
    rows = [[cell_key_text(k) for k in e.keys] if e.keys is not None else None for e in d.entries]
    widths: dict[int, int] = {}
    for keys in rows:
        for i, k in enumerate(keys or ()):
            widths[i] = max(widths.get(i, 0), len(k) + 1)
    entries = []
    for e, keys in zip(d.entries, rows):
        if keys is None:
            entries.append(f"otherwise: {expr(e.value)}")
            continue
        cols = [k + ("," if i < len(keys) - 1 else ":") for i, k in enumerate(keys)]
        entries.append(" ".join(c.ljust(widths.get(i, 0)) for i, c in enumerate(cols)) + " " + expr(e.value))
    return _block(f"cells {d.name} by {', '.join(expr(k) for k in d.keys)}{_ref(d.ref)}:", entries)


def _choice(c: n.Choice) -> str:
    if c.cond is not None:
        return f"{expr(c.value)} when {expr(c.cond)}"
    return expr(c.value) if c.always else f"{expr(c.value)} otherwise"


def installment_text(i: n.Installment) -> str:
    """A pool's installment as written in canonical form (`50% in Q2 when …`, `rest in Q4`)."""
    share = "rest" if i.share is None else quantity(i.share)
    when = f" when {expr(i.when)}" if i.when is not None else ""
    return f"{share} in {i.label}{when}"


def payment_text(p: n.Payment) -> str:
    """`paid monthly`, `paid quarterly`, `paid in June, December`."""
    return f"paid {p.every}" if p.every is not None else "paid in " + ", ".join(t.label for t in p.months)


def _line(line: n.Line) -> list[PLine]:
    if not line.block:
        return [PLine(0, f"line {line.name} {quote(line.label)} = {expr(line.amount)}{_ref(line.ref)}")]
    clauses: list[tuple[str, str]] = []
    head = f"{line.kind} {line.name} {quote(line.label)}:"
    if line.settlement is not None:
        head = f"settlement {line.name} {quote(line.label)}:"
        terms = line.settlement
        clauses.append(("total", f"total {expr(terms.total)}"))
        if terms.cap is not None:
            clauses.append(("cap", f"cap {expr(terms.cap)}"))
        if terms.floor is not None:
            clauses.append(("floor", f"floor {expr(terms.floor)}"))
        if terms.corridor is not None:
            c = terms.corridor
            clauses.append(("corridor", f"corridor around {expr(c.target, OR)} within {quantity(c.within)} "
                                        f"share {quantity(c.share)}"))
    elif line.amount is not None:
        clauses.append(("amount", f"amount {expr(line.amount)}"))
    if line.applies is not None:
        clauses.append(("applies", f"applies when {expr(line.applies)}"))
    if line.basis is not None:
        label = f" {quote(line.basis_label)}" if line.basis_label is not None else ""
        clauses.append(("basis", f"basis {expr(line.basis)}{label}"))
    if line.paid:
        clauses.append(("paid", "paid " + ", ".join(installment_text(i) for i in line.paid)))
    if line.payment is not None:
        clauses.append(("paid", payment_text(line.payment)))
    if line.rate_per is not None:
        clauses.append(("rate", f"rate per {line.rate_per}"))
    if line.ref is not None:
        clauses.append(("ref", f"ref {quote(line.ref.text)}"))
    return _block(head, [c for _, c in clauses], [k for k, _ in clauses])


def _with(attrs: tuple[n.Assignment, ...]) -> str:
    if not attrs:
        return ""
    return " with " + ", ".join(f"{a.name} = {expr(a.value)}" for a in attrs)


def _example_entry(e) -> str:
    if isinstance(e, n.ExPeriod):
        return f"period {e.text}"
    if isinstance(e, n.ExSet):
        return f"set {e.name} = {expr(e.value)}"
    if isinstance(e, n.ExPractice):
        return f"practice {ident(e.practice)}{_with(e.attrs)}"
    if isinstance(e, n.ExMembers):
        return f"{e.count} members of {ident(e.practice)} aged {e.age}{_with(e.attrs)}"
    if isinstance(e, n.ExMember):
        enrol = ""
        if e.enrolled_from is not None:
            enrol = f" enrolled from {e.enrolled_from.isoformat()}"
            if e.enrolled_to is not None:
                enrol += f" to {e.enrolled_to.isoformat()}"
        return f"member {ident(e.member)} of {ident(e.practice)} born {e.born.isoformat()}{enrol}{_with(e.attrs)}"
    if isinstance(e, n.ExEvents):
        return (f"{e.count} events of {ident(e.practice)} code {quote(e.code)} on {e.on.isoformat()}"
                f"{_with(e.attrs)}")
    if isinstance(e, n.ExMeasure):
        period = f" for {e.period}" if e.period else ""
        return f"measure {e.measure} of {ident(e.practice)}{period} = {expr(e.value)}"
    if isinstance(e, n.ExExpect):
        who = f"{ident(e.practice)} " if e.practice is not None else ""
        return f"expect {who}{e.line} = {expr(e.value)}"
    raise TypeError(f"cannot format {type(e).__name__}")


def _input(d: n.InputDecl) -> str:
    default = f" = {expr(d.default)}" if d.default is not None else ""
    return f"{d.scope} {d.name}: {unit(d.type)}{default}{_ref(d.ref)}"


def print_decl(d) -> list[PLine]:
    """The statements of one top-level item, in canonical form."""
    if isinstance(d, n.Header):
        return _header(d)
    if isinstance(d, n.Inputs):
        return _block("inputs:", [_input(i) for i in d.decls])
    if isinstance(d, n.Define):
        return [PLine(0, f"define {d.name} = {expr(d.expr)}{_ref(d.ref)}")]
    if isinstance(d, n.Dated):
        return _block(f"define {d.name}{_ref(d.ref)}:",
                      [f"{expr(e.value)} from {e.start.isoformat()}" for e in d.entries]
                      + ([f"until {d.until.isoformat()}"] if d.until is not None else []))
    if isinstance(d, n.Bands):
        return _block(f"bands {d.name} by {expr(d.key)}{_ref(d.ref)}:",
                      [f"{range_text(e.range) if e.range else 'otherwise'}: {expr(e.value)}" for e in d.entries])
    if isinstance(d, n.Cells):
        return _cells(d)
    if isinstance(d, n.Tier):
        return _block(f"tier {d.name}{_ref(d.ref)}:", [_choice(c) for c in d.entries])
    if isinstance(d, n.Modifier):
        return _block(f"modifier {d.name} combine {d.combine}{_ref(d.ref)}:", [_choice(c) for c in d.entries])
    if isinstance(d, n.Schedule):
        return _block(f"schedule {d.name} by {expr(d.key)}{_ref(d.ref)}:",
                      [f"{quote(e.code) if e.code is not None else 'otherwise'}: {expr(e.value)}"
                       for e in d.entries])
    if isinstance(d, n.Line):
        return _line(d)
    if isinstance(d, n.Example):
        return _block(f"example {quote(d.name)}{_ref(d.ref)}:", [_example_entry(e) for e in d.entries])
    raise TypeError(f"cannot format {type(d).__name__}")


# ───────────────────────────── source scan ─────────────────────────────

_CODE_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\r\n]*')
_WS = " \t\f"


@dataclass
class Remark:
    """An own-line comment and whether a blank line precedes it."""

    text: str
    blank_before: bool


@dataclass
class Logical:
    """One statement as written: its code (continuations joined), the
    comments on lines of its own before it, and its trailing comment."""

    code: str
    blank_before: bool = False
    leading: list[Remark] = field(default_factory=list)
    trailing: str | None = None
    segments: list[str] = field(default_factory=list)  # the physical pieces of a continued line

    @property
    def keyword(self) -> str:
        m = re.match(r"\s*(\w+)", self.code)
        return m.group(1) if m else ""


def _split_comment(raw: str) -> tuple[str, str | None]:
    for m in _CODE_OR_COMMENT.finditer(raw):
        if m.group(0).startswith("#"):
            return raw[: m.start()], m.group(0).rstrip()
    return raw, None


def scan(text: str) -> tuple[list[Logical], list[Remark]]:
    """The logical lines of a (parsable) source, and the comments after the last one."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[Logical] = []
    pending: list[Remark] = []
    blank = False
    i = 0
    while i < len(lines):
        code, comment = _split_comment(lines[i].rstrip("\r"))
        if not code.strip(_WS):
            if comment is None:
                blank = True
            else:
                pending.append(Remark(comment, blank))
                blank = False
            i += 1
            continue
        parts = []
        while code.rstrip(_WS + "\r").endswith("\\") and comment is None and i + 1 < len(lines):
            parts.append(code.rstrip(_WS + "\r")[:-1])
            i += 1
            code, comment = _split_comment(lines[i].rstrip("\r"))
        parts.append(code)
        joined = " ".join(p.strip(_WS) for p in parts if p.strip(_WS))
        segments = [p.strip(_WS) for p in parts if p.strip(_WS)]
        out.append(Logical(joined, blank, pending, comment, segments if len(segments) > 1 else []))
        pending, blank = [], False
        i += 1
    return out, pending


# ───────────────────────────── assembly ────────────────────────────────

@dataclass
class Row:
    """An output line: code with an optional trailing comment, an own-line
    comment (`code` None), or a blank line (both None)."""

    indent: str = ""
    code: str | None = None
    comment: str | None = None


def _pair(printed: list[PLine], written: list[Logical]) -> list[tuple[PLine, Logical]]:
    """Pair printed statements with their source lines; keyed clauses by keyword."""
    if len(printed) != len(written):  # pragma: no cover - guarded by the round-trip tests
        raise RuntimeError("capdsl fmt: the printed statements do not match the source lines")
    by_key = {w.keyword: w for w in written[1:-1]} if any(p.key for p in printed) else {}
    return [(p, by_key.get(p.key, w) if p.key else w) for p, w in zip(printed, written)]


def _is_block(printed: list[PLine]) -> bool:
    return len(printed) > 1


def format_contract(contract: n.Contract, text: str) -> str:
    """Print `contract` (parsed from `text`) with the comments and blank lines of `text`."""
    logical, tail = scan(text)
    rows: list[Row] = []
    pos = 0
    prev_block = False
    for decl in contract.decls:
        printed = print_decl(decl)
        block = _is_block(printed)
        pairs = _pair(printed, logical[pos: pos + len(printed)])
        pos += len(printed)
        for idx, (pl, src) in enumerate(pairs):
            indent = INDENT * pl.depth
            elements = [(r.text, r.blank_before, True) for r in src.leading] + [(pl.code, src.blank_before, False)]
            for k, (body, blank_before, is_comment) in enumerate(elements):
                if idx == 0:  # top-level: the item's opening statement and the comments above it
                    blank = bool(rows) and (blank_before or (k == 0 and (block or prev_block)))
                else:
                    first_inside = idx == 1 and k == 0
                    is_end = block and idx == len(pairs) - 1 and not is_comment
                    blank = blank_before and not first_inside and not is_end
                if blank and rows and (rows[-1].code is not None or rows[-1].comment is not None):
                    rows.append(Row())
                comment_indent = INDENT if (block and idx > 0) else indent
                if is_comment:
                    rows.append(Row(comment_indent, None, body))
                else:
                    rows.append(Row(indent, rewrap(body, src.segments, indent), src.trailing))
        prev_block = block
    for remark in tail:
        if remark.blank_before and rows:
            rows.append(Row())
        rows.append(Row("", None, remark.text))
    return _render(rows)


def _width(row: Row) -> int:
    """The column where the row's last physical line ends."""
    last = (row.indent + row.code).rsplit("\n", 1)[-1]
    return len(last)


_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-Q?[0-9]{1,2}'
                    r'|\w+(?:\.\w+)*|[<>!=]=|\S')


def rewrap(code: str, segments: list[str], indent: str) -> str:
    """Break `code` with `\\` continuations where the author broke the
    source: before the same tokens, matched by a diff of the token streams."""
    if len(segments) < 2:
        return code
    written: list[str] = []
    breaks = []
    for segment in segments:
        tokens = _TOKEN.findall(segment)
        if written and tokens:
            breaks.append(len(written))
        written += tokens
    printed = list(_TOKEN.finditer(code))
    matcher = difflib.SequenceMatcher(None, written, [m.group(0) for m in printed], autojunk=False)
    where = {a + k: b + k for a, b, size in matcher.get_matching_blocks() for k in range(size)}
    cuts = set()
    for k in breaks:  # a break before a dropped token (a redundant parenthesis) moves to the next kept one
        kept = next((where[j] for j in range(k, len(written)) if j in where), 0)
        if kept > 0:
            cuts.add(printed[kept].start())
    cuts = sorted(cuts)
    if not cuts:
        return code
    pieces = [code[i:j].strip(" ") for i, j in zip([0, *cuts], [*cuts, len(code)])]
    return (" \\\n" + indent + INDENT).join(pieces)


def _render(rows: list[Row]) -> str:
    """Join rows, aligning trailing comments of adjacent commented lines."""
    width: dict[int, int] = {}
    run: list[int] = []

    def close() -> None:
        col = max(_width(rows[i]) for i in run) + 2 if run else 0
        for i in run:
            width[i] = col
        run.clear()

    for i, row in enumerate(rows):
        if row.code is not None and row.comment is not None and _width(row) <= ALIGN_LIMIT:
            if run and rows[run[-1]].indent != row.indent:
                close()
            run.append(i)
        else:
            close()
    close()
    out = []
    for i, row in enumerate(rows):
        if row.code is None:
            out.append(row.indent + row.comment if row.comment is not None else "")
        elif row.comment is None:
            out.append(row.indent + row.code)
        else:
            code = row.indent + row.code
            pad = width.get(i, _width(row) + 2) - _width(row)
            out.append(code + " " * pad + row.comment)
    return "\n".join(out) + "\n" if out else ""


# ───────────────────────────── entry points ────────────────────────────

def format_source(source: Source) -> str:
    """The canonical text of `source`; raises `SyntaxError_` if it does not parse."""
    contract = parse(source)
    return format_contract(contract, source.text)


def format_text(text: str, path: str = "<string>") -> str:
    return format_source(Source(text, path))


def format_diff(path: str, old: str, new: str) -> str:
    """A unified diff from `old` to `new`, for `capdsl fmt --diff`."""
    def lines(text: str) -> list[str]:
        out = text.splitlines(keepends=True)
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n\\ No newline at end of file\n"
        return out

    return "".join(difflib.unified_diff(lines(old), lines(new),
                                        fromfile=f"{path} (original)", tofile=f"{path} (formatted)"))
