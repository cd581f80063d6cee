"""The language server (`capdsl lsp`): checker diagnostics, hover, go to
definition, references, completion, formatting and the outline, for editors.

Two halves:

* pure functions over the AST — `build_index` (every definition and every
  reference to it, with the span of the name itself), `analyse`, `hover_markdown`,
  `completions`, `outline`, `format_edit` — which need no server and are
  unit-tested directly;
* `make_server` (pygls ≥ 2, imported lazily) that wires them to LSP requests
  and converts capdsl's 1-based, code-point spans to 0-based ranges in the
  client's position encoding.

A handler that fails logs the traceback to stderr and answers nothing: a bug
in one feature must never take the server (and the editor's diagnostics) down.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field

from capdsl.errors import CapError, Diagnostic, Source, Span
from capdsl.language import ast_nodes as n
from capdsl.language.builtins import AGE_RULES, BUILTINS, CALENDAR, EVENT_WINDOW_DOCS, EXPOSURE_RULES, FREQUENCY_DOCS, \
    FUNCTION_DOCS, FUNCTIONS, LIST_DAYS, OPTIONAL_FIELDS, PAY_TIMES, PERIOD_MONTHS, RATE_DOCS, SCOPES, Builtin, \
    pay_time_doc
from capdsl.language.units import of_kind

log = logging.getLogger("capdsl.tools.lsp")

_SCOPE = "|".join(SCOPES)
_WORD = r"(?<![\w.]){}(?!\w)"


# ─────────────────────────────── the index ────────────────────────────────

@dataclass(frozen=True)
class Definition:
    """A named thing an author declared. `key` is what references resolve to:
    the bare name for definitions, tables, lines, pools and parameters
    (`param.x` and `x` are the same), `scope.name` for the other inputs."""

    key: str
    name: str
    kind: str  # define dated bands cells tier modifier schedule line pool param input
    decl: object
    span: Span  # the name itself
    full: Span  # the whole declaration, without trailing blank lines and comments


@dataclass(frozen=True)
class Occurrence:
    key: str
    span: Span
    is_definition: bool


@dataclass
class Index:
    """Definitions and references of one contract, found by walking the AST."""

    definitions: dict[str, Definition] = field(default_factory=dict)
    occurrences: list[Occurrence] = field(default_factory=list)
    attributes: dict[str, set[str]] = field(default_factory=dict)  # scope -> attributes declared or used

    def at(self, line: int, column: int) -> Occurrence | None:
        """The occurrence under a 1-based position (the end column counts too,
        so a cursor just after a name finds it)."""
        best = None
        for occ in self.occurrences:
            if _contains(occ.span, line, column):
                if best is None or _size(occ.span) < _size(best.span):
                    best = occ
        return best

    def definition_at(self, line: int, column: int) -> Definition | None:
        occ = self.at(line, column)
        return self.definitions.get(occ.key) if occ else None

    def references(self, key: str, include_definition: bool = True) -> list[Span]:
        spans = [o.span for o in self.occurrences
                 if o.key == key and (include_definition or not o.is_definition)]
        return sorted(set(spans), key=lambda s: (s.line, s.column))


def _contains(span: Span, line: int, column: int) -> bool:
    if (line, column) < (span.line, span.column):
        return False
    return (line, column) <= (span.end_line, span.end_column)


def _size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_column - span.column)


_DECL_KEYWORD = {n.Define: "define", n.Dated: "define", n.Bands: "bands", n.Cells: "cells", n.Tier: "tier",
                 n.Modifier: "modifier", n.Schedule: "schedule"}


def _kind(decl) -> str:
    if isinstance(decl, n.Line):
        return decl.kind
    if isinstance(decl, n.InputDecl):
        return "param" if decl.scope == "param" else "input"
    return {n.Define: "define", n.Dated: "dated", n.Bands: "bands", n.Cells: "cells", n.Tier: "tier",
            n.Modifier: "modifier", n.Schedule: "schedule"}[type(decl)]


class _Locator:
    """Finds the span of a word inside a node's span (the AST keeps spans of
    whole declarations and entries, not of every name in them)."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def line(self, number: int) -> str:
        return self.lines[number - 1] if 1 <= number <= len(self.lines) else ""

    def find(self, span: Span, word: str, *, after: str | None = None, before: str | None = None,
             last: bool = False) -> Span:
        """The first (or `last`) whole-word `word` in `span` — after the first
        `after` word, and before the first `before` character when given.
        Falls back to the start of `span`."""
        pattern = re.compile(_WORD.format(re.escape(word)))
        end_line = span.end_line if span.end_column > 1 else span.end_line - 1
        skip = re.compile(_WORD.format(re.escape(after))) if after else None
        found = None
        for lineno in range(span.line, max(span.line, end_line) + 1):
            text = self.line(lineno)
            start = span.column - 1 if lineno == span.line else 0
            stop = span.end_column - 1 if lineno == span.end_line and span.end_column > 1 else len(text)
            code = _code_part(text)
            stop = min(stop, len(code))
            if skip is not None:
                m = skip.search(code, start, stop)
                if m is None:
                    continue
                start = m.end()
                skip = None
            cut = code.find(before, start, stop) if before is not None else -1
            if cut >= 0:
                stop = cut
            for m in pattern.finditer(code, start, stop):
                found = Span(lineno, m.start() + 1, lineno, m.end() + 1)
                if not last:
                    return found
            if found is not None or cut >= 0:
                break
        if found is not None:
            return found
        return Span(span.line, span.column, span.line, span.column + len(word))

    def tight(self, span: Span) -> Span:
        """`span` without the blank lines and comments the grammar's newline
        token swallows after a declaration."""
        end_line, end_col = span.end_line, span.end_column
        if end_line > span.line and not self.line(end_line)[: end_col - 1].strip():
            end_line -= 1
            while end_line > span.line and not _code_part(self.line(end_line)).strip():
                end_line -= 1
            end_col = len(self.line(end_line).rstrip()) + 1
        return Span(span.line, span.column, end_line, max(end_col, 1 if end_line > span.line else span.column))


_CODE = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#.*$|[^"#]+')


def _code_part(line: str) -> str:
    """The line with its comment blanked out and string contents replaced by
    spaces (same length up to the comment), so word searches skip them."""
    out = []
    for m in _CODE.finditer(line):
        tok = m.group(0)
        if tok.startswith("#"):
            break
        out.append(tok if not tok.startswith('"') else '"' + " " * (len(tok) - 1))
    return "".join(out)


def build_index(contract: n.Contract, source: Source) -> Index:
    """Every definition and reference in `contract`, with the span of each name."""
    loc = _Locator(source.text)
    index = Index()
    attributes: dict[str, set[str]] = {s: set() for s in SCOPES}
    for scope, name in BUILTINS:
        attributes[scope].add(name)

    def define(decl, key: str, span: Span) -> None:
        index.occurrences.append(Occurrence(key, span, True))
        if key not in index.definitions:
            index.definitions[key] = Definition(key, decl.name, _kind(decl), decl, span, loc.tight(decl.span))

    def use(key: str, span: Span) -> None:
        index.occurrences.append(Occurrence(key, span, False))

    def expr(e) -> None:
        if e is None:
            return
        for node in n.walk(e):
            if isinstance(node, n.Name):
                use(node.name, node.span)
            elif isinstance(node, n.Attr):
                attributes.setdefault(node.scope, set()).add(node.name)
                use(node.name if node.scope == "param" else f"{node.scope}.{node.name}", node.span)

    def assignments(scope: str, attrs) -> None:
        for a in attrs:
            attributes[scope].add(a.name)
            use(f"{scope}.{a.name}", loc.find(a.span, a.name))
            expr(a.value)

    for decl in contract.decls:
        if isinstance(decl, n.Inputs):
            for d in decl.decls:
                attributes.setdefault(d.scope, set()).add(d.name)
                key = d.name if d.scope == "param" else f"{d.scope}.{d.name}"
                define(d, key, loc.find(d.span, d.name, after=d.scope))
                expr(d.default)
        elif isinstance(decl, (n.Define, n.Dated, n.Bands, n.Cells, n.Tier, n.Modifier, n.Schedule, n.Line)):
            keyword = decl.kind if isinstance(decl, n.Line) else _DECL_KEYWORD[type(decl)]
            define(decl, decl.name, loc.find(decl.span, decl.name, after=keyword))
            if isinstance(decl, n.Define):
                expr(decl.expr)
            elif isinstance(decl, n.Dated):
                for entry in decl.entries:
                    expr(entry.value)
            elif isinstance(decl, (n.Bands, n.Schedule)):
                expr(decl.key)
                for entry in decl.entries:
                    expr(entry.value)
            elif isinstance(decl, n.Cells):
                for key in decl.keys:
                    expr(key)
                for row in decl.entries:
                    expr(row.value)
            elif isinstance(decl, (n.Tier, n.Modifier)):
                for choice in decl.entries:
                    expr(choice.value)
                    expr(choice.cond)
            else:
                for part in (decl.amount, decl.applies, decl.basis):
                    expr(part)
                for inst in decl.paid:
                    expr(inst.when)
        elif isinstance(decl, n.Example):
            for entry in decl.entries:
                if isinstance(entry, n.ExSet):
                    use(entry.name, loc.find(entry.span, entry.name, after="set"))
                    expr(entry.value)
                elif isinstance(entry, n.ExPractice):
                    assignments("practice", entry.attrs)
                elif isinstance(entry, (n.ExMembers, n.ExMember)):
                    assignments("member", entry.attrs)
                elif isinstance(entry, n.ExEvents):
                    assignments("event", entry.attrs)
                elif isinstance(entry, n.ExMeasure):
                    attributes["measure"].add(entry.measure)
                    use(f"measure.{entry.measure}", loc.find(entry.span, entry.measure, after="measure"))
                    expr(entry.value)
                elif isinstance(entry, n.ExExpect):
                    if entry.line != "total":
                        use(entry.line, loc.find(entry.span, entry.line, after="expect", before="=", last=True))
                    expr(entry.value)
    index.attributes = attributes
    return index


# ─────────────────────────────── analysis ─────────────────────────────────

@dataclass
class Analysis:
    """One version of a document: its diagnostics and, when it parses, the
    contract and its index. `types` maps a definition key to its type as an
    author would say it (only what the checker could work out)."""

    source: Source
    diagnostics: list[Diagnostic]
    contract: n.Contract | None = None
    index: Index | None = None
    _types: dict[str, str] | None = None

    @property
    def parsed(self) -> bool:
        return self.contract is not None

    @property
    def types(self) -> dict[str, str]:
        if self._types is None:
            self._types = _types(self.contract, self.source) if self.contract is not None else {}
        return self._types


def analyse(text: str, path: str = "<editor>") -> Analysis:
    """Parse and check `text` as `capdsl check` does; never raises a CapError."""
    from capdsl.language.check import check
    from capdsl.language.syntax import parse

    source = Source(text, path)
    try:
        contract = parse(source)
    except CapError as exc:
        return Analysis(source, list(exc.diagnostics))
    try:
        diags = list(check(contract, source).warnings)
    except CapError as exc:
        diags = list(exc.diagnostics)
    try:
        index = build_index(contract, source)
    except Exception:  # noqa: BLE001 - diagnostics must still reach the editor
        log.exception("indexing failed")
        index = None
    return Analysis(source, diags, contract, index)


def _types(contract: n.Contract, source: Source) -> dict[str, str]:
    """Types of definitions and inputs, also for a contract with errors (the
    checker's internal pass collects them before it would raise)."""
    from capdsl.language.check import inferred_types

    try:
        symbols, input_types = inferred_types(contract, source)
    except Exception:  # noqa: BLE001 - hover degrades to no type
        log.exception("type analysis failed")
        return {}
    out = {}
    for name, sym in symbols.items():
        if not sym.type.is_any:
            out[name] = f"{sym.type.describe()} ({sym.level.name.lower()})"
    for (scope, name), t in input_types.items():
        if not t.is_any:
            out[name if scope == "param" else f"{scope}.{name}"] = t.describe()
    return out


# ─────────────────────────────── hover ────────────────────────────────────

def _expr(e) -> str:
    from capdsl.language.fmt import expr

    return expr(e) if e is not None else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type_text(t: n.TypeExpr) -> str:
    return t.word + (f" per {t.per}" if t.per else "")


def hover_markdown(analysis: Analysis, line: int, column: int) -> tuple[str, Span] | None:
    """Markdown for the name under a 1-based position, and the span it covers."""
    index = analysis.index
    if index is None:
        return keyword_hover(analysis, line, column)
    occ = index.at(line, column)
    if occ is None:
        return function_hover(analysis, line, column) or keyword_hover(analysis, line, column)
    definition = index.definitions.get(occ.key)
    if definition is None:
        if occ.key.startswith("calendar.") and occ.key[len("calendar."):] in CALENDAR:
            value = CALENDAR[occ.key[len("calendar."):]]
            return (f"**calendar** `{occ.key}` — {of_kind(value.kind).describe()}\n\n{value.doc[0].upper()}"
                    f"{value.doc[1:]}. In a pool (evaluated once a year), December's.", occ.span)
        if "." in occ.key:
            scope, name = occ.key.split(".", 1)
            builtin = BUILTINS.get((scope, name))
            if builtin is not None:
                empty = OPTIONAL_FIELDS.get((scope, name))
                note = f" May be empty ({empty}): test it with `is missing` or `is present` before using it." \
                    if empty else ""
                return (f"**built-in** `{occ.key}` — {_builtin_type(builtin)}\n\n{builtin.doc[0].upper()}"
                        f"{builtin.doc[1:]}.\n\nAlways available; not declared in `inputs:`.{note}", occ.span)
            return f"`{occ.key}` is not declared in `inputs:`", occ.span
        return f"`{occ.key}` is not defined in this contract", occ.span
    return definition_markdown(definition, analysis.types.get(definition.key)), occ.span


def function_hover(analysis: Analysis, line: int, column: int) -> tuple[str, Span] | None:
    """Markdown for a built-in function's name under a 1-based position (`round(`), from its doc."""
    text = analysis.source.line_text(line)
    for m in re.finditer(r"(?<![\w.])(\w+)[ \t]*\(", text):
        if m.group(1) in FUNCTION_DOCS and m.start(1) < column <= m.end(1):
            doc = FUNCTION_DOCS[m.group(1)]
            return (f"**built-in function** `{m.group(1)}`\n\n{doc}",
                    Span(line, m.start(1) + 1, line, m.end(1) + 1))
    return None


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _list_day_text(word: str) -> str:
    if word not in LIST_DAYS:
        return (f"`{word}` is not a list day: a list is taken on the first day of a month, quarter or year "
                f"(`month_start`, `quarter_start`, `year_start`; E0111).")
    rule = EXPOSURE_RULES[LIST_DAYS[word]]
    doc = rule.doc.split(": ", 1)[-1] if rule.doc.startswith("`") else rule.doc
    return (f"{_sentence(doc)} Ages are taken on the same day ({AGE_RULES[word].doc}) unless `age as of` says "
            f"otherwise.")


#: Clauses whose words hover with their meaning: the clause's pattern (its last group the word that
#: chooses the meaning) and how to say it.
_CLAUSE_HOVERS: tuple[tuple[re.Pattern, object], ...] = (
    (re.compile(r"(?<![\w.])(list)\s+(as)\s+(of)\s+(\w+)"),
     lambda w: (f"list as of {w}", _list_day_text(w))),
    (re.compile(r"(?<![\w.])(age)\s+(as)\s+(of)\s+(\w+)"),
     lambda w: (f"age as of {w}", _sentence(f"member.age is {AGE_RULES[w].doc}") if w in AGE_RULES else None)),
    (re.compile(r"^\s*(exposure)\s+(\w+)"),
     lambda w: (f"exposure {w}", _sentence(EXPOSURE_RULES[w].doc) if w in EXPOSURE_RULES else None)),
    (re.compile(r"^\s*(rate)\s+(per)\s+(\w+)"),
     lambda w: (f"rate per {w}", _sentence(RATE_DOCS[w]) + " In the other months it pays 0 (“not due this "
                                                           "month”)." if w in RATE_DOCS else None)),
    (re.compile(r"^\s*(paid)\s+(monthly|quarterly)(?!\w)"),
     lambda w: (f"paid {w}", _sentence(FREQUENCY_DOCS[w]))),
    (re.compile(r"^\s*(paid)\s+(in)(?!\w)"),
     lambda w: ("paid in …", "The months the line is paid in (a pool: its equal parts), each a month's name, `Q1`–`Q4` "
                             "(a quarter's last month) or `H1`, `H2` (June, December). In a month it is paid, a "
                             "line pays its rate × the months since its previous payment (see `rate per`); in the "
                             "other months 0 (“not due this month”).")),
    (re.compile(r"^\s*(paid)(?=\s+(?:[0-9.]+\s*%|rest)(?!\w))"),
     lambda w: ("paid … in …", "A pool's installments: each share is paid in its month (a month's name, `Q1`–`Q4` "
                               "or `H1`, `H2`), rounded; `rest` takes what the others leave; with `when`, an "
                               "installment is withheld unless its condition holds.")),
    (re.compile(r"(?<![\w.])(member)\s+(events)(?:\s+(during)\s+(\w+))?"),
     lambda w: (f"member events during {w or 'month'}",
                _sentence(EVENT_WINDOW_DOCS[w or "month"]) + " A per-member value: it stands inside `sum of … over "
                "members`, and its `sum of …` and `where` read only the event, parameters and constants."
                if (w or "month") in EVENT_WINDOW_DOCS else None)),
)


def keyword_hover(analysis: Analysis, line: int, column: int) -> tuple[str, Span] | None:
    """Markdown for a keyword of a clause under a 1-based position: `list as of quarter_start`, `rate per
    year`, `paid quarterly`, a payment month (`June`, `Q2`, `H1`), `member events during year`. Read
    from the line's text, so it works while the file does not parse."""
    code = _code_part(analysis.source.line_text(line))
    for pattern, say in _CLAUSE_HOVERS:
        for m in pattern.finditer(code):
            groups = [g for g in range(1, (m.lastindex or 0) + 1) if m.group(g) is not None]
            if not any(m.start(g) < column <= m.end(g) + 1 for g in groups):  # on a word, or just after it
                continue
            word = m.group(pattern.groups) if m.group(pattern.groups) is not None else ""
            title, text = say(word)
            if text is None:
                return None
            span = Span(line, m.start() + 1, line, m.end() + 1)
            return f"**{title}**\n\n{text}", span
    for m in re.finditer(r"(?<![\w.])(\w+)(?!\w)", code):
        if not m.start() < column <= m.end() + 1 or m.group(1) not in PAY_TIMES:
            continue
        if not re.match(r"\s*paid\b", code):
            return None
        return (f"**{m.group(1)}** — paid in {pay_time_doc(m.group(1))}\n\nA payment falls in a month named, or in a "
                f"quarter's or half-year's last month (`Q1`–`Q4`: March, June, September, December; `H1`, `H2`: "
                f"June, December).", Span(line, m.start() + 1, line, m.end() + 1))
    return None


def definition_markdown(d: Definition, type_text: str | None = None) -> str:
    decl = d.decl
    title = {"define": "definition", "dated": "dated value", "bands": "bands", "cells": "rate cells", "tier": "tier",
             "modifier": "modifier", "schedule": "schedule", "line": "line", "pool": "pool", "param": "parameter",
             "input": f"{getattr(decl, 'scope', '')} input"}[d.kind]
    head = f"**{title}** `{d.key}`"
    if isinstance(decl, n.Line):
        head += f" — “{decl.label}”"
    out = [head]
    if type_text:
        out.append(f"Type: {type_text}")
    body: list[str] = []
    if isinstance(decl, n.InputDecl):
        text = f"Declared as `{_type_text(decl.type)}`"
        if decl.default is not None:
            text += f", default `{_expr(decl.default)}`"
        body.append(text)
    elif isinstance(decl, n.Define):
        body.append(f"```cap\n{decl.name} = {_expr(decl.expr)}\n```")
    elif isinstance(decl, n.Dated):
        rows = [f"| {e.start.isoformat()} | `{_cell(_expr(e.value))}` |" for e in decl.entries]
        body.append("| from | value |\n|---|---|\n" + "\n".join(rows))
    elif isinstance(decl, n.Bands):
        from capdsl.language.fmt import range_text

        rows = [f"| {_cell(range_text(e.range)) if e.range else 'otherwise'} | `{_cell(_expr(e.value))}` |"
                for e in decl.entries]
        body.append(f"By `{_expr(decl.key)}`\n\n| {_cell(_expr(decl.key))} | value |\n|---|---|\n" + "\n".join(rows))
    elif isinstance(decl, n.Cells):
        from capdsl.language.fmt import cell_key_text

        keys = [_cell(_expr(k)) for k in decl.keys]
        rows = [("| " + " | ".join(_cell(cell_key_text(k)) for k in e.keys) if e.keys is not None
                 else "| otherwise" + " |" * (len(keys) - 1)) + f" | `{_cell(_expr(e.value))}` |" for e in decl.entries]
        body.append(f"By {', '.join(f'`{_expr(k)}`' for k in decl.keys)}\n\n| " + " | ".join(keys) + " | value |\n|"
                    + "---|" * (len(keys) + 1) + "\n" + "\n".join(rows))
    elif isinstance(decl, (n.Tier, n.Modifier)):
        if isinstance(decl, n.Modifier):
            body.append(f"Combine: {decl.combine}")
        rows = []
        for c in decl.entries:
            when = "otherwise" if c.cond is None and not c.always else ("always" if c.cond is None
                                                                       else f"`{_cell(_expr(c.cond))}`")
            rows.append(f"| `{_cell(_expr(c.value))}` | {when} |")
        body.append("| value | when |\n|---|---|\n" + "\n".join(rows))
    elif isinstance(decl, n.Schedule):
        from capdsl.language.fmt import quote

        rows = [f"| {_cell(quote(e.code)) if e.code is not None else 'otherwise'} | `{_cell(_expr(e.value))}` |"
                for e in decl.entries]
        body.append(f"By `{_expr(decl.key)}`\n\n| code | value |\n|---|---|\n" + "\n".join(rows))
    elif isinstance(decl, n.Line):
        parts = []
        if decl.amount is not None:
            parts.append(f"amount {_expr(decl.amount)}")
        if decl.applies is not None:
            parts.append(f"applies when {_expr(decl.applies)}")
        if decl.basis is not None:
            parts.append(f"basis {_expr(decl.basis)}" + (f' "{decl.basis_label}"' if decl.basis_label else ""))
        if decl.paid:
            from capdsl.language.fmt import installment_text

            parts.append("paid " + ", ".join(installment_text(i) for i in decl.paid))
        if decl.payment is not None:
            from capdsl.language.fmt import payment_text

            parts.append(payment_text(decl.payment))
        if decl.rate_per is not None:
            parts.append(f"rate per {decl.rate_per}")
        body.append("```cap\n" + "\n".join(parts) + "\n```")
    out.extend(body)
    ref = getattr(decl, "ref", None)
    if ref is not None:
        out.append(f"Ref: “{ref.text}”")
    out.append(f"Defined on line {d.span.line}")
    return "\n\n".join(out)


# ─────────────────────────────── completion ───────────────────────────────

@functools.lru_cache(maxsize=1)
def grammar_keywords() -> tuple[str, ...]:
    """Every word the grammar spells out (keywords and fixed terminal values)."""
    from capdsl.language.syntax import grammar_text

    text = re.sub(r"//[^\n]*", "", grammar_text())  # the comments quote Lark's options, not keywords
    words = set(re.findall(r'"([A-Za-z_]\w*)"', text))
    # keyword terminals are word-bounded regexes: /(month_start|month_end)(?!\w)/, /(Q[1-4]|H[12])(?!\w)/
    for body in re.findall(r"/\(?([\w|\[\]-]+?)\)?\(\?!\\w\)/", text):
        for alt in body.split("|"):
            if m := re.fullmatch(r"(\w*)\[(\d)-(\d)\]", alt):
                words |= {f"{m.group(1)}{d}" for d in range(int(m.group(2)), int(m.group(3)) + 1)}
            elif m := re.fullmatch(r"(\w*)\[(\d+)\]", alt):
                words |= {f"{m.group(1)}{d}" for d in m.group(2)}
            elif re.fullmatch(r"[A-Za-z_]\w*", alt):
                words.add(alt)
    return tuple(sorted(words))


_DECL_RE = re.compile(r"^[ \t]*(define|bands|cells|tier|modifier|schedule|line|pool)[ \t]+((?![0-9])\w+)", re.M)
_INPUT_RE = re.compile(rf"^[ \t]*({_SCOPE})[ \t]+((?![0-9])\w+)[ \t]*:", re.M)
_ATTR_RE = re.compile(rf"(?<![\w.])({_SCOPE})\.((?![0-9])\w+)")


def names_in_text(text: str) -> dict[str, str]:
    """Names declared in `text`, found by pattern (for a document that does not parse)."""
    out: dict[str, str] = {}
    for m in _DECL_RE.finditer(text):
        out.setdefault(m.group(2), m.group(1))
    for m in _INPUT_RE.finditer(text):
        if m.group(1) == "param":
            out.setdefault(m.group(2), "param")
    return out


def attributes_in_text(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {s: set() for s in SCOPES}
    for m in _INPUT_RE.finditer(text):
        out[m.group(1)].add(m.group(2))
    for m in _ATTR_RE.finditer(text):
        out[m.group(1)].add(m.group(2))
    return out


def _builtin_type(builtin: Builtin) -> str:
    """A built-in attribute's type as an author would say it ("a whole number", "a date")."""
    return of_kind(builtin.kind).describe()


def _keyword_detail(word: str) -> str:
    """What an age or exposure rule, a payment month or frequency or a period means, for the
    completion list; "" for other keywords."""
    if word in AGE_RULES:
        text = f"age rule: {AGE_RULES[word].doc}"
        if word in LIST_DAYS and EXPOSURE_RULES[LIST_DAYS[word]].period != "month":
            text += f"; list day: {EXPOSURE_RULES[LIST_DAYS[word]].doc}"
        return text
    if word in EXPOSURE_RULES:
        return f"exposure rule: {EXPOSURE_RULES[word].doc}"
    if word in PAY_TIMES:
        return f"paid in {pay_time_doc(word)}"
    if word in FREQUENCY_DOCS:
        return f"paid {word}: {FREQUENCY_DOCS[word]}"
    if word in PERIOD_MONTHS:
        return f"a period: `rate per {word}`, `member events during {word}`"
    return ""


@dataclass(frozen=True)
class Completion:
    label: str
    kind: str  # a definition kind, "attribute", "keyword", "function", "scope"
    detail: str = ""


def block_at(text: str, line: int) -> str | None:
    """The keyword of the innermost block open at a 1-based line — `contract` in the header, `line` or
    `pool` in a block of clauses — or None at the top level. Read from the text (`syntax.open_block`),
    so it works while the file does not parse."""
    from capdsl.language.syntax import open_block

    found = open_block(Source(text, ""), max(0, line - 1))
    return found[0] if found else None


def _header_clauses() -> list[Completion]:
    out = [Completion("payer", "keyword", "the payer, for statements"),
           Completion("provider", "keyword", "the kind of provider"),
           Completion("currency", "keyword", "required: the contract currency (an ISO 4217 code)"),
           Completion("period month", "keyword", "the unit of a line's amount; a line may state `rate per quarter` "
                                                 "or `rate per year`")]
    out += [Completion(f"list as of {w}", "keyword", _list_day_text(w)) for w in LIST_DAYS]
    out += [Completion(f"age as of {w}", "keyword", f"member.age is {r.doc}") for w, r in AGE_RULES.items()]
    out += [Completion(f"exposure {w}", "keyword", r.doc) for w, r in EXPOSURE_RULES.items() if r.period == "month"]
    out += [Completion("rounding half_up 0.01 per line", "keyword", "each statement line rounded once a month"),
            Completion("report in", "keyword", "a second currency: `report in EUR at 25.28 CZK per EUR`"),
            Completion("ref", "keyword", "the document the contract comes from"),
            Completion("end", "keyword", "closes the header")]
    return out


def _line_clauses(kind: str) -> list[Completion]:
    out = [Completion("amount", "keyword", f"the {kind}'s amount" + (" for the year" if kind == "pool" else
                                                                     ", per practice per month")),
           Completion("applies when", "keyword", "paid only when the condition holds; otherwise shown as not applied"),
           Completion("basis", "keyword", "the quantity shown beside the amount, with a label")]
    out += [Completion(f"paid {w}", "keyword", doc) for w, doc in FREQUENCY_DOCS.items()]
    out.append(Completion("paid in", "keyword", "the months it is paid in: month names, Q1–Q4, H1, H2"))
    if kind == "pool":
        out.append(Completion("paid 50% in H1, rest in H2", "keyword",
                              "installments: a share in each month, `rest` the remainder, `when` a condition"))
    else:  # a pool is an annual amount (E0508)
        out += [Completion(f"rate per {w}", "keyword", RATE_DOCS[w]) for w in PERIOD_MONTHS]
    out += [Completion("ref", "keyword", "the clause it comes from"),
            Completion("end", "keyword", f"closes the {kind}")]
    return out


def _words(words, doc, kind: str = "keyword") -> list[Completion]:
    return [Completion(w, kind, doc(w)) for w in words]


def clause_completions(text: str, line: int, before: str) -> list[Completion] | None:
    """What may be typed where a clause's word is chosen — after `list as of`, `age as of`,
    `exposure`, `rate per`, `paid`, `paid in` (and each comma of it), an installment's `in`,
    `member events during` — or at the start of a clause in the header or a line or pool block;
    None elsewhere. `before` is the line's text up to the cursor."""
    code = _code_part(before)
    if m := re.search(r"(?<![\w.])(list|age)\s+as\s+of\s+\w*$", code):
        if m.group(1) == "list":
            return _words(LIST_DAYS, lambda w: "list day: " + _list_day_text(w))
        return _words(AGE_RULES, lambda w: f"age rule: {AGE_RULES[w].doc}")
    if re.match(r"\s*exposure\s+\w*$", code):
        return _words([w for w, r in EXPOSURE_RULES.items() if r.period == "month"],
                      lambda w: f"exposure rule: {EXPOSURE_RULES[w].doc}")
    if re.match(r"\s*rate\s+per\s+\w*$", code):
        return _words(PERIOD_MONTHS, lambda w: RATE_DOCS[w])
    if re.search(r"(?<![\w.])member\s+events\s+during\s+\w*$", code):
        return _words(PERIOD_MONTHS, lambda w: EVENT_WINDOW_DOCS[w])
    if re.match(r"\s*paid\s+\w*$", code):
        return _words(FREQUENCY_DOCS, lambda w: FREQUENCY_DOCS[w]) + [Completion("in", "keyword", "paid in the "
                                                                                 "months named")]
    if re.match(r"\s*paid\s+in\s+(\w+\s*,\s*)*\w*$", code) or re.match(r"\s*paid\b.*\bin\s+\w*$", code):
        return _words(PAY_TIMES, lambda w: "paid in " + pay_time_doc(w))
    lines = text.splitlines()
    continued = line >= 2 and len(lines) >= line - 1 and _code_part(lines[line - 2]).rstrip().endswith("\\")
    if re.fullmatch(r"\s*\w*", code) and not continued:
        block = block_at(text, line)
        if block == "contract":
            return _header_clauses()
        if block in ("line", "pool"):
            return _line_clauses(block)
    return None


def completions(analysis: Analysis, line: int, column: int, fallback: Index | None = None) -> list[Completion]:
    """What may be typed at a 1-based position. After `member.` (or another
    scope and a dot) the attributes of that scope; where a clause's word is
    chosen (`list as of …`, `rate per …`, `paid in …`, `during …`, a clause of
    the header or of a line or pool block) those words; elsewhere the names the
    document defines, the grammar's keywords, the functions and the scopes.
    `fallback` is the index of the last version that parsed."""
    text_line = analysis.source.line_text(line)[: max(0, column - 1)]
    index = analysis.index or fallback
    clause = clause_completions(analysis.source.text, line, text_line)
    if clause is not None:
        return clause
    m = re.search(rf"(?<![\w.])({_SCOPE})\.(\w*)$", text_line)
    if m:
        scope = m.group(1)
        names = set(attributes_in_text(analysis.source.text).get(scope, set()))
        if index is not None:
            names |= index.attributes.get(scope, set())
        names |= {name for (s, name) in BUILTINS if s == scope}
        if scope == "calendar":
            names = set(CALENDAR)
        out = []
        for name in sorted(names):
            key = name if scope == "param" else f"{scope}.{name}"
            detail = analysis.types.get(key, "")
            if scope == "calendar":
                detail = f"calendar: {of_kind(CALENDAR[name].kind).describe()}, {CALENDAR[name].doc}"
            if (scope, name) in BUILTINS:
                detail = "built-in: " + _builtin_type(BUILTINS[(scope, name)]) + \
                    (", may be empty" if (scope, name) in OPTIONAL_FIELDS else "")
            out.append(Completion(name, "attribute", detail))
        return out
    out: dict[str, Completion] = {}
    if index is not None:
        for key, d in index.definitions.items():
            if d.kind != "input":
                out[key] = Completion(key, d.kind, analysis.types.get(key, d.kind))
    for name, kind in names_in_text(analysis.source.text).items():
        out.setdefault(name, Completion(name, kind, kind))
    for word in grammar_keywords():
        out.setdefault(word, Completion(word, "keyword", _keyword_detail(word)))
    for word in FUNCTIONS:
        out.setdefault(word, Completion(word, "function", FUNCTION_DOCS.get(word, "built-in function")))
    for word in SCOPES:
        out[word] = Completion(word, "scope", f"{word}.…")
    return list(out.values())


# ─────────────────────────────── outline ──────────────────────────────────

@dataclass(frozen=True)
class OutlineItem:
    name: str
    kind: str  # contract inputs input param define dated bands cells tier modifier schedule line pool example entry
    detail: str
    span: Span
    selection: Span
    children: tuple["OutlineItem", ...] = ()


def outline(contract: n.Contract, source: Source) -> list[OutlineItem]:
    """The document's structure: header, inputs, definitions, tables, lines, pools, examples."""
    loc = _Locator(source.text)
    out = []

    def item(name, kind, detail, span, selection=None, children=()):
        full = loc.tight(span)
        sel = selection or Span(span.line, span.column, span.line, span.column + 1)
        if (sel.line, sel.column) < (full.line, full.column) or (sel.end_line, sel.end_column) > (
                full.end_line, full.end_column):
            sel = Span(full.line, full.column, full.line, full.column)
        return OutlineItem(name, kind, detail, full, sel, tuple(children))

    for decl in contract.decls:
        if isinstance(decl, n.Header):
            detail = decl.currency or ""
            out.append(item(decl.name, "contract", detail, decl.span, loc.find(decl.span, "contract")))
        elif isinstance(decl, n.Inputs):
            kids = [item(f"{d.scope}.{d.name}" if d.scope != "param" else d.name,
                         "param" if d.scope == "param" else "input", _type_text(d.type), d.span,
                         loc.find(d.span, d.name, after=d.scope)) for d in decl.decls]
            out.append(item("inputs", "inputs", f"{len(kids)} declared", decl.span, loc.find(decl.span, "inputs"),
                            kids))
        elif isinstance(decl, n.Example):
            out.append(item(decl.name, "example", "example", decl.span, loc.find(decl.span, "example")))
        elif isinstance(decl, (n.Define, n.Dated, n.Bands, n.Cells, n.Tier, n.Modifier, n.Schedule, n.Line)):
            keyword = decl.kind if isinstance(decl, n.Line) else _DECL_KEYWORD[type(decl)]
            sel = loc.find(decl.span, decl.name, after=keyword)
            kids = []
            if isinstance(decl, n.Bands):
                from capdsl.language.fmt import range_text

                kids = [item(range_text(e.range) if e.range else "otherwise", "entry", _expr(e.value), e.span)
                        for e in decl.entries]
                detail = f"by {_expr(decl.key)}"
            elif isinstance(decl, n.Cells):
                from capdsl.language.fmt import cell_key_text

                kids = [item(", ".join(cell_key_text(k) for k in e.keys) if e.keys is not None else "otherwise",
                             "entry", _expr(e.value), e.span) for e in decl.entries]
                detail = f"by {', '.join(_expr(k) for k in decl.keys)}"
            elif isinstance(decl, n.Tier):
                kids = [item(_expr(c.value), "entry", "otherwise" if c.cond is None else f"when {_expr(c.cond)}",
                             c.span) for c in decl.entries]
                detail = f"{len(decl.entries)} tiers"
            elif isinstance(decl, n.Line):
                detail = decl.label
            elif isinstance(decl, n.Define):
                detail = _expr(decl.expr)
            elif isinstance(decl, n.Modifier):
                detail = f"combine {decl.combine}"
            elif isinstance(decl, n.Schedule):
                detail = f"by {_expr(decl.key)}"
            else:
                detail = f"{len(decl.entries)} dates"
            out.append(item(decl.name, _kind(decl), detail, decl.span, sel, kids))
    return out


# ─────────────────────────────── formatting ───────────────────────────────

def format_edit(text: str, path: str = "<editor>") -> str | None:
    """The formatted text, or None when nothing changes or the text does not parse."""
    from capdsl.language.fmt import format_source

    try:
        new = format_source(Source(text, path))
    except CapError:
        return None
    return None if new == text else new


# ─────────────────────────────── the server ───────────────────────────────

def _safe(fn):
    """Run an LSP handler; on any exception log it and answer nothing."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the server must outlive a bug in one feature
            log.exception("capdsl lsp: %s failed", fn.__name__)
            return None

    return wrapper


def make_server():
    """The pygls server with every feature registered (pygls imported here)."""
    from lsprotocol import types as lsp
    from pygls.lsp.server import LanguageServer

    from capdsl import __version__

    server = LanguageServer("capdsl", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Full)
    analyses: dict[str, Analysis] = {}
    last_index: dict[str, Index] = {}

    def path_of(uri: str) -> str:
        from pygls.uris import to_fs_path

        try:
            return to_fs_path(uri) or uri
        except Exception:  # noqa: BLE001
            return uri

    def analysis_for(uri: str) -> tuple[Analysis, object]:
        doc = server.workspace.get_text_document(uri)
        cached = analyses.get(uri)
        if cached is None or cached.source.text != doc.source:
            cached = analyses[uri] = analyse(doc.source, path_of(uri))
            if cached.index is not None:
                last_index[uri] = cached.index
        return cached, doc

    def to_range(doc, span: Span | None):
        if span is None:
            return lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
        start = lsp.Position(max(0, span.line - 1), max(0, span.column - 1))
        end = lsp.Position(max(0, span.end_line - 1), max(0, span.end_column - 1))
        if (end.line, end.character) < (start.line, start.character):
            end = start
        try:
            return doc.range_to_client_units(lsp.Range(start, end))
        except Exception:  # noqa: BLE001 - a span past the end of the text
            return lsp.Range(start, end)

    def position(doc, pos) -> tuple[int, int]:
        p = doc.position_from_client_units(pos)
        return p.line + 1, p.character + 1

    def lsp_diagnostic(doc, uri: str, d: Diagnostic):
        message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
        if d.path is not None:
            message = f"{d.path}: {message}"
        related = [lsp.DiagnosticRelatedInformation(lsp.Location(uri, to_range(doc, note.span)), note.message)
                   for note in d.notes if note.span is not None]
        message += "".join(f"\nnote: {note.message}" for note in d.notes if note.span is None)
        return lsp.Diagnostic(
            range=to_range(doc, d.span if d.path is None else None), message=message,
            severity=lsp.DiagnosticSeverity.Error if d.is_error else lsp.DiagnosticSeverity.Warning,
            code=d.code, source="capdsl", related_information=related or None)

    def publish(uri: str) -> None:
        try:
            analysis, doc = analysis_for(uri)
            diags = [lsp_diagnostic(doc, uri, d) for d in analysis.diagnostics]
        except Exception:  # noqa: BLE001
            log.exception("capdsl lsp: checking %s failed", uri)
            diags = []
        server.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=None))

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    @_safe
    def did_open(ls, params: lsp.DidOpenTextDocumentParams):
        publish(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    @_safe
    def did_change(ls, params: lsp.DidChangeTextDocumentParams):
        publish(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    @_safe
    def did_save(ls, params: lsp.DidSaveTextDocumentParams):
        publish(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    @_safe
    def did_close(ls, params: lsp.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        analyses.pop(uri, None)
        last_index.pop(uri, None)
        server.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    @_safe
    def hover(ls, params: lsp.HoverParams):
        analysis, doc = analysis_for(params.text_document.uri)
        found = hover_markdown(analysis, *position(doc, params.position))
        if found is None:
            return None
        text, span = found
        return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text), to_range(doc, span))

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    @_safe
    def definition(ls, params: lsp.DefinitionParams):
        uri = params.text_document.uri
        analysis, doc = analysis_for(uri)
        index = analysis.index or last_index.get(uri)
        if index is None:
            return None
        d = index.definition_at(*position(doc, params.position))
        return lsp.Location(uri, to_range(doc, d.span)) if d else None

    @server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
    @_safe
    def references(ls, params: lsp.ReferenceParams):
        uri = params.text_document.uri
        analysis, doc = analysis_for(uri)
        index = analysis.index
        if index is None:
            return None
        occ = index.at(*position(doc, params.position))
        if occ is None:
            return None
        include = params.context.include_declaration if params.context else True
        return [lsp.Location(uri, to_range(doc, s)) for s in index.references(occ.key, include)]

    completion_kinds = {
        "define": lsp.CompletionItemKind.Constant, "dated": lsp.CompletionItemKind.Constant,
        "bands": lsp.CompletionItemKind.Enum, "cells": lsp.CompletionItemKind.Enum,
        "tier": lsp.CompletionItemKind.Enum,
        "modifier": lsp.CompletionItemKind.Operator, "schedule": lsp.CompletionItemKind.Struct,
        "line": lsp.CompletionItemKind.Function, "pool": lsp.CompletionItemKind.Function,
        "param": lsp.CompletionItemKind.Variable, "attribute": lsp.CompletionItemKind.Field,
        "keyword": lsp.CompletionItemKind.Keyword, "function": lsp.CompletionItemKind.Function,
        "scope": lsp.CompletionItemKind.Module,
    }

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=["."]))
    @_safe
    def completion(ls, params: lsp.CompletionParams):
        uri = params.text_document.uri
        analysis, doc = analysis_for(uri)
        items = completions(analysis, *position(doc, params.position), fallback=last_index.get(uri))
        return lsp.CompletionList(is_incomplete=False, items=[
            lsp.CompletionItem(label=c.label, kind=completion_kinds.get(c.kind, lsp.CompletionItemKind.Text),
                               detail=c.detail or None) for c in items])

    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    @_safe
    def formatting(ls, params: lsp.DocumentFormattingParams):
        doc = server.workspace.get_text_document(params.text_document.uri)
        text = doc.source
        new = format_edit(text, path_of(params.text_document.uri))
        if new is None:
            return []
        lines = text.splitlines(True)
        end = lsp.Position(len(lines), 0)
        if lines and not lines[-1].endswith(("\n", "\r")):
            end = doc.position_to_client_units(lsp.Position(len(lines) - 1, len(lines[-1])))
        return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), new)]

    symbol_kinds = {
        "contract": lsp.SymbolKind.Module, "inputs": lsp.SymbolKind.Namespace, "input": lsp.SymbolKind.Field,
        "param": lsp.SymbolKind.Variable, "define": lsp.SymbolKind.Constant, "dated": lsp.SymbolKind.Constant,
        "bands": lsp.SymbolKind.Enum, "cells": lsp.SymbolKind.Enum, "tier": lsp.SymbolKind.Enum,
        "modifier": lsp.SymbolKind.Operator,
        "schedule": lsp.SymbolKind.Struct, "line": lsp.SymbolKind.Function, "pool": lsp.SymbolKind.Function,
        "example": lsp.SymbolKind.Event, "entry": lsp.SymbolKind.EnumMember,
    }

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_safe
    def document_symbol(ls, params: lsp.DocumentSymbolParams):
        analysis, doc = analysis_for(params.text_document.uri)
        if analysis.contract is None:
            return None

        def convert(item: OutlineItem):
            return lsp.DocumentSymbol(
                name=item.name or "(unnamed)", kind=symbol_kinds.get(item.kind, lsp.SymbolKind.Object),
                range=to_range(doc, item.span), selection_range=to_range(doc, item.selection),
                detail=item.detail or None, children=[convert(c) for c in item.children] or None)

        return [convert(item) for item in outline(analysis.contract, analysis.source)]

    return server


def serve() -> None:
    logging.basicConfig(level=logging.WARNING, format="capdsl lsp: %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    make_server().start_io()


__all__ = ["Analysis", "Completion", "Definition", "Index", "Occurrence", "OutlineItem", "analyse", "build_index",
           "completions", "definition_markdown", "format_edit", "grammar_keywords", "hover_markdown",
           "make_server", "outline", "serve"]
