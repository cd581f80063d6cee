"""The static checker: AST → `Checked`, or every problem at once.

Runs between parsing and lowering. It resolves names, computes every
definition's type and unit and its level (constant, per practice, per
member, per event, monthly aggregate, annual), and checks what an author
can get wrong without running anything: unknown names, cycles, unit
mistakes, per-member values outside a sum, band gaps and overlaps, payout
splits, embedded examples. Everything is collected; one `CheckError`
carries all errors (and the warnings) so the author sees the whole list.

Expressions are walked with explicit stacks: the parser admits ~300 levels
of nesting and the checker must never overflow on anything it accepts.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from decimal import Decimal

from capdsl.errors import CheckError, Diagnostic, Note, Source, Span, error, sort_key, warning
from capdsl.language import ast_nodes as n
from capdsl.language import coverage as tables
from capdsl.language import units as u
from capdsl.language.builtins import (BUILTINS, DECLARABLE_COLUMNS, LIST_DAYS, OPTIONAL_FIELDS, RESERVED_PREFIX,
                                      TABLE_OF_SCOPE, UNREADABLE_NAMES, month_label, standard_column)
from capdsl.language.check_expr import CONST, OPEN_ENDS, Facts, combine, kind_name, percent_text
from capdsl.language.units import Level, Type

MAX_SUGGESTIONS = 200  # difflib is linear in the candidates; bound the work on junk input


@dataclass(frozen=True)
class Symbol:
    """A named value: its declaration, type and level."""

    name: str
    decl: object
    type: Type
    level: Level


@dataclass(frozen=True)
class Checked:
    contract: n.Contract
    source: Source
    header: n.Header
    symbols: dict[str, Symbol]
    inputs: dict[tuple[str, str], n.InputDecl]
    warnings: tuple[Diagnostic, ...]
    #: the types of the bands' and schedules' keys: whether a band's key is a whole number is decided
    #: here, once, for the coverage check and for the lowerer's tests alike
    key_types: dict[str, Type] = field(default_factory=dict)


def check(contract: n.Contract, source: Source) -> Checked:
    """Check a parsed contract; raise `CheckError` with every diagnostic if any is an error."""
    checker = _Checker(contract, source)
    checker.run()
    diags = sorted(checker.diags, key=sort_key)
    if any(d.is_error for d in diags):
        raise CheckError(diags, source)
    return Checked(contract, source, checker.header, checker.result_symbols(), checker.inputs, tuple(diags),
                   dict(checker.key_types))


def inferred_types(contract: n.Contract, source: Source) -> tuple[dict[str, Symbol], dict[tuple[str, str], Type]]:
    """The symbols (with their types and levels) and the declared inputs' types the checker works
    out, also for a contract with errors: an editor shows what is known while the author types."""
    checker = _Checker(contract, source)
    checker.run()
    return checker.result_symbols(), dict(checker.input_types)


def _kids(node) -> tuple:
    """Sub-expressions that are values (a schedule named by `in` is not)."""
    if isinstance(node, n.InTable):
        return (node.operand,)
    return n.children(node)


class _Checker:
    def __init__(self, contract: n.Contract, source: Source):
        self.contract = contract
        self.source = source
        self.diags: list[Diagnostic] = []
        self.reported: set = set()
        self.header = n.Header(name="")
        self.currency: str | None = None
        self.decls: dict[str, object] = {}
        self.inputs: dict[tuple[str, str], n.InputDecl] = {}
        self.types: dict[str, Type] = {}
        self.facts: dict[str, Facts] = {}
        self.uses: dict[str, dict[str, Span]] = {}  # measures without default a definition needs
        self.input_types: dict[tuple[str, str], Type] = {}
        self.key_types: dict[str, Type] = {}
        self.cell_key_types: dict[str, tuple[Type, ...]] = {}
        self.suggested = 0
        self.shadowed: list = []  # second definitions of a name: checked, not used
        self.fields_reported: set[Span] = set()

    # ───────────────────────────── driver ─────────────────────────────
    def run(self) -> None:
        self.header_checks()
        self.collect()
        order = self.order()
        for name in order:
            self.check_decl(name, self.decls[name])
        for decl in self.contract.decls:
            if isinstance(decl, n.Line):
                self.check_line(decl)
        for decl in self.shadowed:
            self.check_exprs_only(decl)
        self.check_defaults()
        tables.check_tables(self)
        for decl in self.contract.decls:
            if isinstance(decl, n.Example):
                self.check_example(decl)

    def report(self, diag: Diagnostic) -> None:
        """Record a diagnostic once: a settlement's total is read in several places of its amount."""
        key = (diag.code, diag.span, diag.message)
        if key in self.reported:
            return
        self.reported.add(key)
        self.diags.append(diag)

    def money(self) -> Type:
        return u.money(self.currency)

    def suggest(self, name: str, candidates) -> str:
        """"; did you mean `x`?" for the closest candidate, or "" when none is close."""
        self.suggested += 1
        if self.suggested > MAX_SUGGESTIONS:
            return ""
        match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
        return f"; did you mean `{match[0]}`?" if match else ""

    def result_symbols(self) -> dict[str, Symbol]:
        out = {}
        for name, decl in self.decls.items():
            facts = self.facts.get(name, CONST)
            level = facts.level
            if isinstance(decl, n.Line):
                level = Level.YEAR if decl.kind == "pool" else Level.AGGREGATE
            out[name] = Symbol(name, decl, self.types.get(name, u.ANY), level)
        return out

    # ───────────────────────────── header ─────────────────────────────
    def header_checks(self) -> None:
        headers = [d for d in self.contract.decls if isinstance(d, n.Header)]
        if not headers:
            self.report(error("E0201", "the contract has no `contract` header", Span(1, 1, 1, 2),
                              hint='start the file with:\n    contract "Name":\n        currency EUR\n    end'))
            return
        self.header = headers[0]
        for extra in headers[1:]:
            self.report(error("E0209", "a file holds one contract, but this is a second `contract` header",
                              extra.span, hint="put each contract in its own file",
                              notes=[Note("the first header is here", headers[0].span)]))
        h = self.header
        if h.currency is None:
            self.report(error("E0202", f"contract \"{h.name}\" does not say its currency", h.span,
                              hint="add a line `currency CZK` (an ISO 4217 code) to the header"))
            return
        self.currency = h.currency
        if h.list_day is not None:
            span = h.clause_span("list")
            if h.list_day not in LIST_DAYS:
                self.report(error("E0111", f"a list of members is taken on the first day of a month, quarter or "
                                           f"year, not on `{h.list_day}`", span,
                                  hint="write `list as of quarter_start` (or month_start, year_start); for ages "
                                       "taken on another day, add `age as of …`"))
            elif "exposure" in h.written:
                self.report(error("E0111", "`list as of` and `exposure` both say which members count in a month",
                                  span, hint="keep one: `list as of quarter_start` counts the members enrolled on "
                                             "the quarter's first day in each of its months",
                                  notes=[Note("the exposure rule", h.clause_span("exposure"))]))
        if h.report_currency is not None and h.report_rate is not None:
            rate = h.report_rate
            want = f"{h.currency} per {h.report_currency}"
            got = rate.unit.word + (f" per {rate.unit.per}" if rate.unit and rate.unit.per else "") if rate.unit else ""
            span = h.clause_span("report")
            if h.report_currency == h.currency:
                self.report(error("E0303", f"the report currency {h.report_currency} is the contract currency",
                                  span, hint="remove the `report in` line, or name a second currency"))
            elif got != want:
                self.report(error("E0303", f"the report rate must be in {want}, not {got or 'a bare number'}",
                                  rate.span, hint=f"write e.g. `report in {h.report_currency} at "
                                                  f"{rate.text} {want}`"))

    # ──────────────────────────── symbols ─────────────────────────────
    def collect(self) -> None:
        for decl in self.contract.decls:
            if isinstance(decl, n.Inputs):
                for d in decl.decls:
                    self.add_input(d)
            elif isinstance(decl, (n.Define, n.Dated, n.Bands, n.Cells, n.Tier, n.Modifier, n.Schedule, n.Line)):
                self.reserved(decl.name, decl.span, kind_name(decl))
                self.add_symbol(decl.name, decl, decl.span)

    def name_span(self, name: str, span: Span) -> Span:
        """Where a declaration writes its name: the first whole-word `name` on its first line."""
        lines = _source_lines(self.source.text)
        if 1 <= span.line <= len(lines):
            text = lines[span.line - 1]
            at = text.find(name, max(span.column - 1, 0))
            while at >= 0:
                before = text[at - 1] if at > 0 else " "
                after = text[at + len(name)] if at + len(name) < len(text) else " "
                if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
                    return Span(span.line, at + 1, span.line, at + 1 + len(name))
                at = text.find(name, at + 1)
        return span

    def reserved(self, name: str, span: Span, what: str, scoped: bool = False) -> None:
        """E0212: names beginning with `RESERVED_PREFIX` are capdsl's (its internal columns and tables
        use them); a word an expression reads as the language's could never be referred to (an
        input is: `member.count` is read through its scope)."""
        if name in UNREADABLE_NAMES and not scoped:
            self.report(error("E0212", f"the {what} name `{name}` is a word of the language: an expression "
                                       f"reading `{name}` means the language's `{name}`, never this {what}",
                              self.name_span(name, span), hint=f"choose another name, e.g. `{name}_value`"))
        elif name.startswith(RESERVED_PREFIX):
            better = name.lstrip(RESERVED_PREFIX) or "x"
            self.report(error("E0212", f"the {what} name `{name}` begins with `{RESERVED_PREFIX}`, which is "
                                       f"reserved for capdsl", self.name_span(name, span),
                              hint=f"rename it without the leading `{RESERVED_PREFIX}`, e.g. `{better}`"))

    def add_symbol(self, name: str, decl, span: Span) -> None:
        first = self.decls.get(name)
        if first is not None:
            self.report(error("E0204", f"`{name}` is defined twice", span,
                              hint="rename one of them; every definition, table, line, pool and parameter "
                                   "needs its own name",
                              notes=[Note(f"`{name}` is first defined here (a {kind_name(first)})", first.span)]))
            self.shadowed.append(decl)
            return
        self.decls[name] = decl

    def add_input(self, d: n.InputDecl) -> None:
        key = (d.scope, d.name)
        if d.scope == "calendar":
            self.report(error("E0210", f"`calendar.{d.name}` cannot be declared: the calendar values are built in",
                              d.span, hint="remove this line; read `calendar.month`, `calendar.quarter`, … as they are"))
            return
        self.reserved(d.name, d.span, "parameter" if d.scope == "param" else f"{d.scope} input", scoped=True)
        column = standard_column(d.scope, d.name)
        if column is not None and column.read_as is not None and column.read_as != f"{d.scope}.{d.name}":
            self.report(error("E0210", f"`{d.scope}.{d.name}` would read the {column.table} file's `{d.name}` "
                                       f"column, which is the built-in `{column.read_as}` ({column.meaning}), "
                                       f"and cannot be declared",
                              self.name_span(d.name, d.span),
                              hint=f"remove this line and write `{column.read_as}`"))
        elif key in DECLARABLE_COLUMNS and u.of_type_expr(d.type, self.currency).kind not in ("integer", "number", "any"):
            self.report(error("E0211", f"`{d.scope}.{d.name}` reads the {TABLE_OF_SCOPE[d.scope]} file's `{d.name}` "
                                       f"column, which holds numbers ({DECLARABLE_COLUMNS[key]}), not {d.type.word} "
                                       f"values",
                              d.type.span, hint=f"declare it as a number: `{d.scope} {d.name}: points`"))
        if key in BUILTINS:
            self.report(error("E0210", f"`{d.scope}.{d.name}` is built in and cannot be declared", d.span,
                              hint="remove this line; the built-in value is always available"))
            return
        if key in self.inputs:
            self.report(error("E0210", f"the input `{d.scope}.{d.name}` is declared twice", d.span,
                              hint="keep one declaration",
                              notes=[Note("first declared here", self.inputs[key].span)]))
            return
        self.inputs[key] = d
        self.input_types[key] = self.input_type(d)
        if d.scope == "param":
            self.add_symbol(d.name, d, d.span)

    def types_of_inputs(self, key: tuple[str, str]) -> Type:
        return self.input_types.get(key, u.ANY)

    def schedules(self) -> list[str]:
        return [name for name, d in self.decls.items() if isinstance(d, n.Schedule)]

    def check_defaults(self) -> None:
        """E0211: an input's default must be of its declared type, and a constant."""
        for key, d in self.inputs.items():
            if d.default is None:
                continue
            t, f = self.infer(d.default)
            want = self.input_types.get(key, u.ANY)
            if not t.same(want):
                self.report(error("E0211", f"the default of `{d.scope}.{d.name}` is {t.describe()}, but the input "
                                           f"is declared as {want.describe()}", d.default.span,
                                  hint=f"write `{d.default.text} {want.unit_name()}`"
                                  if isinstance(d.default, n.Quantity) and d.default.unit is None and want.unit
                                  else f"write a default in {want.describe()}",
                                  notes=[Note("the declared type", d.type.span)]))
            elif f.level != Level.CONST:
                self.report(error("E0211", f"the default of `{d.scope}.{d.name}` must be a constant", d.default.span,
                                  hint="write a literal value such as `0 points` or `false`"))

    def input_type(self, d: n.InputDecl) -> Type:
        t = d.type
        for word in (t.word, t.per):
            if word is not None and u.is_currency(word) and word != self.currency and self.currency:
                self.foreign(word, t.span)
        if t.word in ("bool", "text", "date") and t.per is not None:
            self.report(error("E0211", f"`{t.word} per {t.per}` is not a type", t.span,
                              hint=f"write `{t.word}`, or a number type such as `number per {t.per}`"))
            return u.ANY
        return u.of_type_expr(t, self.currency)

    def foreign(self, word: str, span: Span) -> None:
        self.report(error("E0303", f"{word} is not the contract currency ({self.currency})", span,
                          hint=f"write amounts in {self.currency}; to show a second currency on statements, "
                               f"add `report in {word} at … {self.currency} per {word}` to the header"))

    # ───────────────────────── dependency order ─────────────────────────
    def deps(self, decl) -> list[tuple[str, Span]]:
        out = []
        for root in decl_exprs(decl):
            for node in n.walk(root):
                if isinstance(node, n.Name):
                    out.append((node.name, node.span))
                elif isinstance(node, n.Attr) and node.scope == "param":
                    out.append((node.name, node.span))
        return [(name, span) for name, span in out if name in self.decls]

    def order(self) -> list[str]:
        """Definitions, each after those it uses (Tarjan's SCCs, iterative); cycles reported (E0205)."""
        graph = {name: self.deps(decl) for name, decl in self.decls.items()}
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        order: list[str] = []
        counter = 0
        for root in graph:
            if root in index:
                continue
            work = [(root, 0)]
            while work:
                node, i = work.pop()
                if i == 0:
                    index[node] = low[node] = counter
                    counter += 1
                    stack.append(node)
                    on_stack.add(node)
                edges = graph[node]
                if i > 0:
                    low[node] = min(low[node], low[edges[i - 1][0]])
                pushed = False
                while i < len(edges):
                    nxt = edges[i][0]
                    i += 1
                    if nxt not in index:
                        work.append((node, i))
                        work.append((nxt, 0))
                        pushed = True
                        break
                    if nxt in on_stack:
                        low[node] = min(low[node], index[nxt])
                if pushed:
                    continue
                if low[node] == index[node]:
                    scc = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        scc.append(w)
                        if w == node:
                            break
                    if len(scc) > 1 or any(d == node for d, _ in graph[node]):
                        self.cycle(set(scc), graph)
                    order.extend(scc)
        return order

    def cycle(self, scc: set[str], graph) -> None:
        names = [name for name in self.decls if name in scc]  # source order
        start = names[0]
        # shortest path start → … → start inside the component
        prev: dict[str, tuple[str, Span]] = {}
        queue = [start]
        found = None
        for node in queue:
            for nxt, span in graph[node]:
                if nxt not in scc:
                    continue
                if nxt == start:
                    found = (node, span)
                    break
                if nxt not in prev:
                    prev[nxt] = (node, span)
                    queue.append(nxt)
            if found:
                break
        path = [start]
        node = found[0] if found else start
        back = []
        while node != start:
            back.append(node)
            node = prev[node][0]
        path.extend(reversed(back))
        path.append(start)
        text = " → ".join(f"`{p}`" for p in path)
        span = found[1] if found else self.decls[start].span
        self.report(error("E0205", f"definitions refer to each other in a circle: {text}", span,
                          hint="one of them must be computed without the others; break the circle",
                          notes=[Note(f"`{p}` is defined here", self.decls[p].span) for p in path[:-1][:5]]))
        for name in scc:
            self.types[name] = u.ANY
            self.facts[name] = CONST
            self.uses[name] = {}

    # ─────────────────────────── declarations ───────────────────────────
    def check_decl(self, name: str, decl) -> None:
        if name in self.types:  # part of a cycle: reported, typed as unknown
            self.check_exprs_only(decl)
            return
        if isinstance(decl, n.InputDecl):
            self.types[name] = self.input_types.get((decl.scope, decl.name), u.ANY)
            self.facts[name] = CONST
            self.uses[name] = {}
            return
        if isinstance(decl, n.Line):
            self.types[name] = self.money()
            self.facts[name] = Facts(agg_at=decl.span, agg_why=f"the line `{name}`") if decl.kind == "line" \
                else Facts(year_at=decl.span, year_why=f"the pool `{name}`")
            self.uses[name] = {}
            return
        t, f = self.table_value(name, decl)
        self.types[name] = t
        self.facts[name] = f
        uses: dict[str, Span] = {}
        for root, known in guarded_roots(decl):
            for m, span in self.measure_uses(root, known).items():
                uses.setdefault(m, span)
            self.check_fields(root, known)
        self.uses[name] = uses

    def check_exprs_only(self, decl) -> None:
        """Check the expressions of a declaration whose own value is unusable (a cycle, a
        duplicate name); lines are checked by `check_line` anyway."""
        if isinstance(decl, n.Line):
            return
        for root in decl_exprs(decl):
            self.infer(root)
        for root, known in guarded_roots(decl):
            self.check_fields(root, known)

    def table_value(self, name: str, decl) -> tuple[Type, Facts]:
        """Type and facts of a definition or table, checking its entries agree (E0309)."""
        if isinstance(decl, n.Define):
            return self.infer(decl.expr)
        facts = CONST
        values: list[tuple[object, Type, Span]] = []
        if isinstance(decl, n.Dated):
            for e in decl.entries:
                t, f = self.infer(e.value)
                facts = self.merge(facts, f, e.span)
                values.append((e, t, e.value.span))
        elif isinstance(decl, (n.Bands, n.Schedule)):
            kt, kf = self.infer(decl.key)
            self.key_types[name] = kt
            facts = self.merge(facts, kf, decl.key.span)
            self.key_type(decl, kt)
            for e in decl.entries:
                t, f = self.infer(e.value)
                facts = self.merge(facts, f, e.span)
                values.append((e, t, e.value.span))
                if isinstance(decl, n.Bands) and e.range is not None:
                    self.bound_types(decl, e.range, kt)
        elif isinstance(decl, n.Cells):
            facts = self.cell_keys(name, decl, facts, values)
        elif isinstance(decl, (n.Tier, n.Modifier)):
            for e in decl.entries:
                t, f = self.infer(e.value)
                facts = self.merge(facts, f, e.span)
                values.append((e, t, e.value.span))
                if e.cond is not None:
                    ct, cf = self.infer(e.cond)
                    self.want_bool(ct, e.cond, "the condition after `when`")
                    facts = self.merge(facts, cf, e.span)
        result = u.ANY
        first = None
        for entry, t, span in values:
            if t.is_any:
                continue
            if first is None:
                first, result = (entry, t, span), t
            elif not t.same(result):
                self.report(error("E0309", f"the entries of `{name}` must all have the same type: this one is "
                                           f"{t.describe()}, the first is {result.describe()}", span,
                                  hint=f"write every value in {result.describe()}",
                                  notes=[Note(f"the first entry is {result.describe()}", first[2])]))
            else:
                result = result.join(t)
        return result, facts

    def cell_keys(self, name: str, decl: n.Cells, facts: Facts, values: list) -> Facts:
        """Types of a rate-cell table's keys and rows: a key is a number (its rows give ranges), text
        or true/false (its rows give values or `any`); every row gives one key per input (E0410) of
        the input's kind (E0411)."""
        kts = []
        for key in decl.keys:
            kt, kf = self.infer(key)
            facts = self.merge(facts, kf, key.span)
            kts.append(kt)
            if not kt.is_any and not kt.is_numeric and kt.kind not in ("text", "bool"):
                self.report(error("E0411", f"a rate-cell key must be a number, text or true/false, but "
                                           f"`{tables.source_text(self.source, key.span)}` is {kt.describe()}",
                                  key.span, hint="key the cells by a member, practice or event attribute"))
        self.cell_key_types[name] = tuple(kts)
        for e in decl.entries:
            t, f = self.infer(e.value)
            facts = self.merge(facts, f, e.span)
            values.append((e, t, e.value.span))
            if e.keys is None:
                continue
            if len(e.keys) != len(decl.keys):
                self.report(error("E0410", f"this row of `{name}` gives {len(e.keys)} "
                                           f"key{'s' if len(e.keys) != 1 else ''}, but the cells are keyed by "
                                           f"{len(decl.keys)}", e.span,
                                  hint=f"write one key per input, in the order of `by`; `any` matches every value",
                                  notes=[Note("the keys are named here", decl.keys[0].span)]))
                continue
            for ck_, kt, key in zip(e.keys, kts, decl.keys):
                self.cell_key_type(ck_, kt, key)
        return facts

    def cell_key_type(self, k: n.CellKey, kt: Type, key) -> None:
        """E0411: a range on a text or bool key, a value on a numeric key, a value of the wrong kind;
        a range's bounds in the key's unit (E0302)."""
        if kt.is_any or k.form == "any":
            return
        note = [Note("the key is here", key.span)]
        if k.form == "range":
            if not kt.is_numeric:
                self.report(error("E0411", f"a range cannot match {kt.describe()}", k.span,
                                  hint="write a value (`\"F\"`), a list of values (`(\"SSI\", \"ABD\")`) or `any`"
                                  if kt.kind == "text" else "write `true`, `false` or `any`", notes=note))
                return
            for q in {id(b): b for b in (k.range.low, k.range.high) if b is not None}.values():
                bt = self.quantity(q)
                if not bt.same(kt):
                    hint = f"write the bound as `{q.text} {kt.unit_name()}`" if not bt.unit else \
                        f"write the bound in {kt.describe()}"
                    self.report(error("E0302", f"a cell bound in {bt.describe()} cannot be compared with the key, "
                                               f"which is {kt.describe()}", q.span, hint=hint, notes=note))
            return
        want = "text" if kt.kind == "text" else "bool" if kt.kind == "bool" else None
        if want is None:
            self.report(error("E0411", f"a number key is matched by a range, not by "
                                       f"{'a text value' if isinstance(k.values[0], str) else 'true/false'}", k.span,
                              hint="write a range such as `0 to 20`, `under 1`, `65 and over`, or `any`", notes=note))
            return
        for v in k.values:
            if isinstance(v, bool) != (want == "bool"):
                self.report(error("E0411", f"the key is {kt.describe()}, but this row gives "
                                           f"{'true/false' if isinstance(v, bool) else 'a text'}", k.span,
                                  hint="write `true`, `false` or `any`" if want == "bool"
                                  else "write the value in quotes, or `any`", notes=note))
                return

    def key_type(self, decl, kt: Type) -> None:
        if kt.is_any:
            return
        if isinstance(decl, n.Bands) and not kt.is_numeric:
            self.report(error("E0208", f"bands need a number to look up, but `{decl.name}` is keyed by "
                                       f"{kt.describe()}", decl.key.span,
                              hint="use a tier (`value when …`) to choose by text or true/false"))
        if isinstance(decl, n.Schedule) and kt.kind != "text":
            self.report(error("E0208", f"a schedule is looked up by a text code, but `{decl.name}` is keyed by "
                                       f"{kt.describe()}", decl.key.span,
                              hint="key the schedule by a code such as `event.code`, or use bands for numbers"))

    def bound_types(self, decl: n.Bands, r: n.Range, kt: Type) -> None:
        for q in {id(b): b for b in (r.low, r.high) if b is not None}.values():
            bt = self.quantity(q)
            if kt.is_numeric and not bt.same(kt):
                hint = f"write the bound as `{q.text} {kt.unit_name()}`" if not bt.unit else \
                    f"write the bound in {kt.describe()}"
                self.report(error("E0302", f"a band bound in {bt.describe()} cannot be compared with the key, "
                                           f"which is {kt.describe()}", q.span, hint=hint,
                                  notes=[Note("the key is here", decl.key.span)]))

    # ──────────────────────────── lines ────────────────────────────────
    def check_line(self, line: n.Line) -> None:
        what = f"{line.kind} `{line.name}`"
        # the amount is computed only when the line applies; its `applies`, basis and (for a pool)
        # installment conditions are evaluated whether it applies or not
        guaranteed = frozenset(name for scope, name in guards(line.applies)[0] if scope == "measure")
        needs: dict[str, tuple[Span, str]] = {}
        if line.amount is None:
            self.report(error("E0504", f"the {what} has no amount", line.span,
                              hint="add a line `amount …` inside the block"))
        else:
            t, f = self.infer(line.amount)
            if not t.is_any and not _is_money(t, self.currency):
                hint = "multiply by a point value (e.g. `* point_value`)" if "point" in t.units else \
                    f"the amount must come out in {self.currency or 'the contract currency'}"
                self.report(error("E0307", f"the amount of {what} is {t.describe()}, not "
                                           f"{self.money().describe()}", line.amount.span, hint=hint))
            self.line_level(line, f, "amount")
            for m, s in self.measure_uses(line.amount, frozenset()).items():
                if m not in guaranteed:
                    needs.setdefault(m, (s, "amount"))
            self.check_fields(line.amount)
        if line.applies is not None:
            t, f = self.infer(line.applies)
            self.want_bool(t, line.applies, "`applies when`")
            self.line_level(line, f, "applies")
            for m, s in self.measure_uses(line.applies, frozenset()).items():
                needs.setdefault(m, (s, "applies"))
            self.check_fields(line.applies)
        if line.basis is not None:
            t, f = self.infer(line.basis)
            if not t.is_any and not t.is_numeric:
                self.report(error("E0312", f"the basis of {what} is {t.describe()}; it must be a number",
                                  line.basis.span, hint="show a count such as `count of members`"))
            self.line_level(line, f, "basis")
            for m, s in self.measure_uses(line.basis, frozenset()).items():
                needs.setdefault(m, (s, "basis"))
            self.check_fields(line.basis)
        for m, (span, part) in needs.items():
            self.missing_measure(line, m, span, part)
        for inst in line.paid:
            if inst.when is None:
                continue
            t, f = self.infer(inst.when)
            self.want_bool(t, inst.when, "the installment's `when`")
            self.line_level(line, f, "paid")
            for m, span in self.measure_uses(inst.when, frozenset(), lenient=True).items():
                self.missing_measure(line, m, span, "paid")
            self.check_fields(inst.when)
        if line.kind == "pool":
            self.check_paid(line)
        self.check_payment(line)

    def missing_measure(self, line: n.Line, m: str, span: Span, part: str) -> None:
        clause = f"measure.{m} is present"
        if part == "paid":
            hint = f"start the condition with `{clause} and …` (it is decided even when the pool does not apply)"
        elif part == "applies":
            hint = f"test it before using it: `applies when {clause} and …`"
        elif part == "basis":
            hint = f"write `if {clause} then … else …` in the basis (it is shown even when the " \
                   f"{line.kind} does not apply), or give the measure a default"
        elif line.applies is None:
            hint = f"add `applies when {clause}`" + ("" if line.block else " (write the line as a block)")
        else:
            hint = f"add `and {clause}` to the `applies when` clause"
        self.report(error("E0308", f"the measure `{m}` has no default and may be missing for a practice, "
                                   f"but the {line.kind} `{line.name}` uses it without checking",
                          span, hint=hint,
                          notes=[Note(f"`{m}` is declared here", self.inputs[('measure', m)].span)]))

    def line_level(self, line: n.Line, f: Facts, part: str) -> None:
        what = f"{line.kind} `{line.name}`"
        if f.row is not None:
            src = "members" if f.row == "member" else "events"
            self.report(error("E0305", f"{f.row_why} is a per-{f.row} value, but the {part} of the {what} is one "
                                       f"value per practice", f.row_at,
                              hint=f"add it up over the practice's {src}: `sum of … over {src}`"))
        if line.kind == "line" and f.year_at is not None:
            self.report(error("E0306", f"{f.year_why} is an annual total; only a pool may use it, "
                                       f"and {what} is paid monthly", f.year_at,
                              hint="make this a `pool`, or use the monthly value"))
        # a pool's amount, `applies when` and installment conditions are evaluated once for the year
        year_part = {"amount": f"the amount of the {what} is annual",
                     "applies": f"whether the {what} applies is decided once for the year",
                     "paid": f"an installment condition of the {what} is decided once for the year"}.get(part)
        if line.kind == "pool" and year_part is not None and f.agg_at is not None:
            self.report(error("E0306", f"{f.agg_why} is a monthly value, but {year_part}",
                              f.agg_at, hint="add up the months with `sum of … over year`"))

    # ─────────────────────────── expressions ───────────────────────────
    def infer(self, root) -> tuple[Type, Facts]:
        """Type and facts of an expression, checking it on the way (post-order, no recursion)."""
        results: dict[int, tuple[Type, Facts]] = {}
        stack: list = [(root, None)]
        while stack:
            node, kids = stack.pop()
            if kids is None:
                kids = _kids(node)
                if kids:
                    stack.append((node, kids))
                    stack.extend((k, None) for k in reversed(kids))
                    continue
            results[id(node)] = combine(self, node, kids, [results[id(k)] for k in kids])
        return results[id(root)]

    def quantity(self, q: n.Quantity) -> Type:
        if q.unit is not None and self.currency is not None:
            for word in (q.unit.word, q.unit.per):
                if word is not None and u.is_currency(word) and word != self.currency:
                    self.foreign(word, q.unit.span)
        return u.quantity_type(q, self.currency)

    def want_bool(self, t: Type, node, where: str) -> None:
        if not t.is_any and t.kind != "bool":
            self.report(error("E0304", f"{where} needs a true/false condition, but this is {t.describe()}",
                              node.span, hint="compare it with something, e.g. `x >= 30 hours` or `x = \"town\"`"))

    def merge(self, a: Facts, b: Facts, span: Span) -> Facts:
        if b is CONST:
            return a
        if a is CONST:
            return b
        row, row_at, row_why, row_root = a.row, a.row_at, a.row_why, a.row_root
        if b.row is not None:
            if row is None:
                row, row_at, row_why, row_root = b.row, b.row_at, b.row_why, b.row_root
            elif row != b.row:
                self.report(error("E0305", f"this mixes a per-{row} value ({row_why}) with a per-{b.row} value "
                                           f"({b.row_why})", span,
                                  hint="a sum runs over members or over events, not both; compute each part "
                                       "in its own sum",
                                  notes=[Note(f"per-{row}", row_at), Note(f"per-{b.row}", b.row_at)]))
        return Facts(row, row_at, row_why, row_root,
                     a.agg_at or b.agg_at, a.agg_why or b.agg_why,
                     a.year_at or b.year_at, a.year_why or b.year_why,
                     a.practice or b.practice)

    def measure_uses(self, root, guarded: frozenset, lenient: bool = False) -> dict[str, Span]:
        """Measures without a default that an expression reads where no `is present` / `is missing`
        test guards them (`guarded`: the (scope, name) keys already known present; see `guards`).
        `lenient` (installment conditions): a missing measure makes `=` and a bare true/false
        test fail in both engines (Python's None equals no value; SQL's NULL is not true), which
        withholds the installment, so those uses are safe under `and` / `or`. `!=` and `not` would
        turn that failure into success in Python and not in SQL, so they need the guard."""
        out: dict[str, Span] = {}
        stack = [(root, guarded, lenient)]
        while stack:
            node, g, safe = stack.pop()
            if node is None or isinstance(node, n.Present):
                continue
            if isinstance(node, n.Attr):
                if node.scope == "measure" and not safe and ("measure", node.name) not in g \
                        and _no_default(self.inputs, node.name):
                    out.setdefault(node.name, node.span)
                continue
            if isinstance(node, n.Name):
                decl = self.decls.get(node.name)
                if decl is not None and not isinstance(decl, n.Line):
                    for m in self.uses.get(node.name, {}):
                        if ("measure", m) not in g:
                            out.setdefault(m, node.span)
                continue
            if isinstance(node, n.BoolOp):
                acc = g
                for item in node.items:
                    stack.append((item, acc, safe))
                    acc = acc | guards(item)[0 if node.op == "and" else 1]
                continue
            if isinstance(node, n.Compare):
                # `measure.a = measure.b` is true in Python when both are missing
                keep = safe and node.op == "=" and not (self.measure_uses(node.left, g)
                                                        and self.measure_uses(node.right, g))
                stack.extend((k, g, keep) for k in (node.left, node.right))
                continue
            if isinstance(node, n.IfExpr):
                when_true, when_false = guards(node.cond)
                stack += [(node.cond, g, False), (node.then, g | when_true, False),
                          (node.otherwise, g | when_false, False)]
                continue
            if isinstance(node, (n.SumOver, n.MemberEvents)) and node.where is not None and node.expr is not None:
                stack += [(node.where, g, False), (node.expr, g | guards(node.where)[0], False)]
                continue
            stack.extend((k, g, False) for k in _kids(node))
        return out

    def check_fields(self, root, guarded: frozenset = frozenset()) -> None:
        """E0313: an optional field (`member.enrolled_from`, …) read where no `is present` /
        `is missing` test before it says what an empty value does. A comparison with an empty
        value has no answer (Python cannot order None; SQL's NULL drops the row, and `not`
        or `!=` would keep it in one engine only), so the author decides, in the expression
        itself: a field is per member or per event, and no test outside the sum can reach it."""
        if root is None:
            return
        stack = [(root, guarded, None, True)]
        while stack:
            node, g, use, clause = stack.pop()
            if isinstance(node, n.Present):
                continue
            if isinstance(node, n.Attr):
                key = (node.scope, node.name)
                if key in OPTIONAL_FIELDS and key not in g and node.span not in self.fields_reported:
                    self.fields_reported.add(node.span)
                    self.unguarded_field(node, use, root)
                continue
            if isinstance(node, (n.Compare, n.InList, n.InTable)):
                stack.extend((k, g, (node, clause), False) for k in _kids(node))
                continue
            if isinstance(node, n.BoolOp):
                acc = g
                for item in node.items:
                    stack.append((item, acc, None, False))
                    acc = acc | guards(item)[0 if node.op == "and" else 1]
                continue
            if isinstance(node, n.IfExpr):
                when_true, when_false = guards(node.cond)
                stack += [(node.cond, g, None, True), (node.then, g | when_true, None, False),
                          (node.otherwise, g | when_false, None, False)]
                continue
            if isinstance(node, (n.SumOver, n.CountOf, n.MemberEvents)) and node.where is not None:
                stack.append((node.where, g, None, True))
                if getattr(node, "expr", None) is not None:
                    stack.append((node.expr, g | guards(node.where)[0], None, False))
                continue
            stack.extend((k, g, None, False) for k in _kids(node))

    def unguarded_field(self, attr: n.Attr, use, root) -> None:
        key = (attr.scope, attr.name)
        field = f"{attr.scope}.{attr.name}"
        meaning = OPTIONAL_FIELDS[key]
        node, clause = use if use is not None else (None, False)
        text = self.written(node.span) if node is not None else ""
        if node is None or not text:
            message = "it is used here without a test"
            hint = f"test it first: `if {field} is present then … else …`"
        else:
            message = "a comparison with an empty value has no answer" if isinstance(node, n.Compare) \
                else "`in` has no answer for an empty value"
            missing, present = f"{field} is missing or {text}", f"{field} is present and {text}"
            if not clause and not self.in_parentheses(node.span):
                missing, present = f"({missing})", f"({present})"
            holds = _open_end_holds(node, attr, key)
            test = "comparison" if isinstance(node, n.Compare) else "test"
            if holds is None:
                hint = f"write `{present}` (an empty value fails the {test}), or `{missing}` (it passes)"
            else:
                side = "before" if OPEN_ENDS[key] < 0 else "after"
                hint = f"write `{missing if holds else present}`: an empty `{attr.name}` comes {side} every " \
                       f"date, so it {'passes' if holds else 'fails'} this comparison"
        if key in tested_fields(root):
            hint += " (the test must come before the use: the condition is read from left to right)"
        self.report(error("E0313", f"`{field}` may be empty (empty means {meaning}), and {message}", attr.span,
                          hint=hint))

    def in_parentheses(self, span: Span) -> bool:
        """Whether a one-line span is written between `(` and `)`."""
        lines = _source_lines(self.source.text)
        if span.line != span.end_line or not 1 <= span.line <= len(lines):
            return False
        text = lines[span.line - 1]
        return text[:span.column - 1].rstrip().endswith("(") and text[span.end_column - 1:].lstrip().startswith(")")

    def written(self, span: Span) -> str:
        """The text of a one-line span as written, or "" (a span over several lines)."""
        if span.line != span.end_line:
            return ""
        lines = _source_lines(self.source.text)
        if not 1 <= span.line <= len(lines):
            return ""
        return lines[span.line - 1][span.column - 1: span.end_column - 1].strip()

    # ──────────────────────────── payout ───────────────────────────────
    def check_paid(self, pool: n.Line) -> None:
        """E0501–E0503, E0505, W0506: a pool's installments share out exactly 100 %."""
        if not pool.paid:
            return
        total = 0
        rests = []
        self.one_payment_a_month(pool.paid, f"pool `{pool.name}` has two installments in", "merge them into one share",
                                 "installment")
        for inst in pool.paid:
            if inst.share is None:
                rests.append(inst)
                continue
            q = inst.share
            if q.unit is None or q.unit.word != "%":
                self.report(error("E0505", f"the share `{q.text}{' ' + q.unit.word if q.unit else ''}` is not a "
                                           f"percentage", q.span, hint=f"write `{q.text}% in {inst.label}`"))
                continue
            if q.value < 0 or q.value > 1:
                self.report(warning("W0506", f"a share of {q.text} % is outside 0 %–100 %", q.span,
                                    hint="each installment pays a part of the pool between 0 % and 100 %"))
            total += q.value
        span = pool.paid[0].span.to(pool.paid[-1].span)
        shown = percent_text(Decimal(total))
        if len(rests) > 1:
            self.report(error("E0502", f"pool `{pool.name}` has {len(rests)} `rest` installments; only one can "
                                       f"take what is left", rests[1].span, hint="keep one `rest` and give the others shares",
                              notes=[Note("the first `rest`", rests[0].span)]))
        elif rests and total > 1:
            self.report(error("E0502", f"the shares of pool `{pool.name}` already add up to {shown} %, more than "
                                       f"the whole pool, before `rest`", span,
                              hint="lower the shares so that they add up to at most 100 %"))
        elif not rests and total != 1:
            self.report(error("E0501", f"the shares of pool `{pool.name}` add up to {shown} %, not 100 %", span,
                              hint=f"change the shares, or let the last installment take what is left: "
                                   f"`rest in {pool.paid[-1].label}`"))

    def check_payment(self, line: n.Line) -> None:
        """E0503, E0508: `paid in` names each month once; `rate per` is for monthly lines."""
        if line.rate_per is not None and line.kind == "pool":
            self.report(error("E0508", f"pool `{line.name}` has `rate per {line.rate_per}`, but a pool is an annual "
                                       f"amount", line.clause_span("rate"),
                              hint="remove `rate per`; to pay a rate in some months only, write a `line` with "
                                   "`paid in …`"))
        if line.payment is not None:
            self.one_payment_a_month(line.payment.months, f"{line.kind} `{line.name}` is paid twice in",
                                     "name each month once", "")

    def one_payment_a_month(self, items, what: str, hint: str, noun: str) -> None:
        """E0503: installments or `paid in` months (each with its month, label and span) fall in
        distinct months; `Q2` and `June` are the same one."""
        seen: dict[int, object] = {}
        for item in items:
            first = seen.setdefault(item.month, item)
            if first is item:
                continue
            same = "" if first.label == item.label else \
                f" ({first.label} and {item.label} are both paid in {month_label(item.month)})"
            self.report(error("E0503", f"{what} {month_label(item.month)}{same}", item.span, hint=hint,
                              notes=[Note(f"the first {first.label}{' ' + noun if noun else ''}", first.span)]))

    # ──────────────────────────── examples ─────────────────────────────
    def check_example(self, ex: n.Example) -> None:
        """E0601–E0607: an example names real lines, practices, inputs and parameters."""
        periods = [e for e in ex.entries if isinstance(e, n.ExPeriod)]
        if not periods:
            self.report(error("E0605", f"the example \"{ex.name}\" does not say which month it is for", ex.span,
                              hint="add a line such as `period 2011-03`"))
        for extra in periods[1:]:
            self.report(error("E0605", "the example gives its period twice", extra.span, hint="keep one `period`",
                              notes=[Note("the first period", periods[0].span)]))
        practices = set()
        for e in ex.entries:
            if isinstance(e, (n.ExPractice, n.ExMembers, n.ExMember, n.ExEvents, n.ExMeasure)):
                practices.add(e.practice)
        lines = [name for name, d in self.decls.items() if isinstance(d, n.Line)]
        for e in ex.entries:
            if isinstance(e, n.ExSet):
                self.example_set(e)
            elif isinstance(e, n.ExPractice):
                self.example_attrs(e.attrs, "practice")
            elif isinstance(e, (n.ExMembers, n.ExMember)):
                self.example_attrs(e.attrs, "member")
            elif isinstance(e, n.ExEvents):
                self.example_attrs(e.attrs, "event")
            elif isinstance(e, n.ExMeasure):
                if ("measure", e.measure) not in self.inputs:
                    names = [x for (s, x) in self.inputs if s == "measure"]
                    self.report(error("E0606", f"`{e.measure}` is not a declared measure"
                                               f"{self.suggest(e.measure, names)}", e.span,
                                      hint=f"declare it in `inputs:` as `measure {e.measure}: …`"))
                self.infer(e.value)
            elif isinstance(e, n.ExExpect):
                self.example_expect(e, practices, lines)

    def example_set(self, e: n.ExSet) -> None:
        decl = self.decls.get(e.name)
        if not isinstance(decl, n.InputDecl):
            params = [x for (s, x) in self.inputs if s == "param"]
            what = f"`{e.name}` is a {kind_name(decl)}, not a parameter" if decl is not None else \
                f"there is no parameter `{e.name}`{self.suggest(e.name, params)}"
            self.report(error("E0604", what, e.span,
                              hint=f"only parameters can be set in an example; declare it in `inputs:` as "
                                   f"`param {e.name}: …`"))
        self.infer(e.value)

    def example_attrs(self, attrs, scope: str) -> None:
        for a in attrs:
            key = (scope, a.name)
            if key not in self.inputs and not (key in BUILTINS and BUILTINS[key].settable):
                names = [x for (s, x) in self.inputs if s == scope]
                why = " (it is computed, not set)" if key in BUILTINS else self.suggest(a.name, names)
                self.report(error("E0603", f"`{scope}.{a.name}` is not a declared input{why}", a.span,
                                  hint=f"declare it in `inputs:` as `{scope} {a.name}: …`, or check the spelling"))
            self.infer(a.value)

    def example_expect(self, e: n.ExExpect, practices: set, lines: list[str]) -> None:
        if e.line != "total":
            decl = self.decls.get(e.line)
            if not isinstance(decl, n.Line):
                what = f"`{e.line}` is a {kind_name(decl)}, not a line or pool" if decl is not None else \
                    f"there is no line or pool `{e.line}`{self.suggest(e.line, lines)}"
                self.report(error("E0601", what, e.span, hint="expect a line or pool by its name, or `total`"))
        if e.practice is not None and e.practice not in practices:
            self.report(error("E0602", f"the example has no practice `{e.practice}`", e.span,
                              hint=f"add `practice {e.practice}` (and its members) to the example"))
        t, _ = self.infer(e.value)
        if not t.is_any and not _is_money(t, self.currency):
            self.report(error("E0607", f"the expected amount is {t.describe()}, not {self.money().describe()}",
                              e.value.span, hint=f"write it like `1500.00 {self.currency or 'EUR'}`"))


@functools.lru_cache(maxsize=4)
def _source_lines(text: str) -> list[str]:
    return text.splitlines()


def _no_default(inputs, name: str) -> bool:
    d = inputs.get(("measure", name))
    return d is not None and d.default is None


def _is_money(t: Type, currency: str | None) -> bool:
    """Money in the contract currency (any single currency when the header names none:
    E0201/E0202 already say so)."""
    if currency is None:
        core = t.core
        return t.is_numeric and len(core) == 1 and core[0][1] == 1 and u.is_currency(core[0][0])
    return t.is_numeric and t.same(u.money(currency))


_NO_GUARD = (frozenset(), frozenset())
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}


def guards(cond) -> tuple[frozenset, frozenset]:
    """The inputs a condition proves present, as (scope, name) keys: (when it is true, when it
    is false). `x is present` (and `x = literal`) proves x when true, `x is missing` when
    false; `not` swaps the two; `a and b` is true only when both are and false when either is
    (`or` the other way round); `if c then a else b` by its branches. What follows a decisive
    item is read only when the item did not decide, in the interpreter (left to right,
    stopping early) and, by the same token, in SQL: `FALSE AND x` and `TRUE OR x` do not
    depend on x, even a NULL x."""
    if cond is None:
        return _NO_GUARD
    results: dict[int, tuple[frozenset, frozenset]] = {}
    stack = [(cond, False)]
    while stack:
        node, done = stack.pop()
        kids = _guard_kids(node)
        if kids and not done:
            stack.append((node, True))
            stack.extend((k, False) for k in kids)
            continue
        results[id(node)] = _guard_of(node, [results[id(k)] for k in kids])
    return results[id(cond)]


def _guard_kids(node) -> tuple:
    if isinstance(node, n.Not):
        return (node.operand,)
    if isinstance(node, n.BoolOp):
        return node.items
    if isinstance(node, n.IfExpr):
        return (node.cond, node.then, node.otherwise)
    return ()


def _guard_of(node, kids: list) -> tuple[frozenset, frozenset]:
    if isinstance(node, n.Present):
        if not isinstance(node.operand, n.Attr):
            return _NO_GUARD
        key = frozenset({(node.operand.scope, node.operand.name)})
        return (frozenset(), key) if node.negated else (key, frozenset())
    if isinstance(node, n.Not):
        return kids[0][1], kids[0][0]
    if isinstance(node, n.BoolOp):
        trues, falses = [k[0] for k in kids], [k[1] for k in kids]
        if node.op == "and":
            return frozenset().union(*trues), frozenset.intersection(*falses)
        return frozenset.intersection(*trues), frozenset().union(*falses)
    if isinstance(node, n.IfExpr):
        (ct, cf), (at, af), (bt, bf) = kids
        return (ct | at) & (cf | bt), (ct | af) & (cf | bf)
    if isinstance(node, n.Compare) and node.op == "=":
        # `measure.x = 5` holds only for a value (the lenient installment test relies on it)
        for side, other in ((node.left, node.right), (node.right, node.left)):
            if isinstance(side, n.Attr) and _literal(other):
                return frozenset({(side.scope, side.name)}), frozenset()
    return _NO_GUARD


def _literal(node) -> bool:
    while isinstance(node, n.Neg):
        node = node.operand
    return isinstance(node, (n.Quantity, n.String, n.DateLit, n.BoolLit))


def guarded_roots(decl) -> list[tuple[object, frozenset]]:
    """Every expression a declaration holds, with the inputs known present where it is read:
    a tier (or a `combine first` modifier) reads an entry only when the entries before it did
    not apply, and an entry's value only when its condition holds; `otherwise` only when no
    condition holds."""
    if isinstance(decl, n.Cells):
        # an empty text key (`member.sex`) matches only `any` and `otherwise`: the rows test it
        # with `=` and `in` alone, which every engine answers false for an empty value
        keys = [(k, frozenset({(k.scope, k.name)}) if isinstance(k, n.Attr) else frozenset()) for k in decl.keys]
        return keys + [(e.value, frozenset()) for e in decl.entries]
    if not isinstance(decl, (n.Tier, n.Modifier)):
        return [(root, frozenset()) for root in decl_exprs(decl)]
    first = isinstance(decl, n.Tier) or decl.combine == "first"
    out: list[tuple[object, frozenset]] = []
    before = frozenset()  # known present once every earlier condition failed
    otherwise = []
    for e in decl.entries:
        if e.cond is None and not e.always:
            otherwise.append(e.value)
            continue
        at = before if first else frozenset()
        if e.cond is None:
            out.append((e.value, at))
            continue
        when_true, when_false = guards(e.cond)
        out += [(e.cond, at), (e.value, at | when_true)]
        before = before | when_false
    out += [(value, before) for value in otherwise]
    return out


def tested_fields(root) -> frozenset:
    """The inputs an expression tests with `is present` / `is missing` anywhere."""
    return frozenset((x.operand.scope, x.operand.name) for x in n.walk(root)
                     if isinstance(x, n.Present) and isinstance(x.operand, n.Attr))


def _open_end_holds(node, attr: n.Attr, key) -> bool | None:
    """What a comparison of an open enrolment date gives, when an empty value is open (before or
    after every date); None when the comparison is not of that date with a value that cannot be
    empty."""
    if key not in OPEN_ENDS or not isinstance(node, n.Compare) or (attr is not node.left and attr is not node.right):
        return None
    other = node.right if attr is node.left else node.left
    if any(isinstance(x, n.Attr) and (x.scope, x.name) in OPTIONAL_FIELDS for x in n.walk(other)):
        return None
    op = node.op if attr is node.left else _FLIP[node.op]
    if op in ("=", "!="):
        return op == "!="
    return op in ("<", "<=") if OPEN_ENDS[key] < 0 else op in (">", ">=")


def decl_exprs(decl) -> list:
    """Every expression a declaration holds."""
    if isinstance(decl, n.Define):
        return [decl.expr]
    if isinstance(decl, n.Dated):
        return [e.value for e in decl.entries]
    if isinstance(decl, (n.Bands, n.Schedule)):
        return [decl.key] + [e.value for e in decl.entries]
    if isinstance(decl, n.Cells):
        return list(decl.keys) + [e.value for e in decl.entries]
    if isinstance(decl, (n.Tier, n.Modifier)):
        return [x for e in decl.entries for x in (e.value, e.cond) if x is not None]
    if isinstance(decl, n.Line):
        return [x for x in (decl.amount, decl.applies, decl.basis) if x is not None] + \
            [i.when for i in decl.paid if i.when is not None]
    if isinstance(decl, n.InputDecl):
        return [decl.default] if decl.default is not None else []
    return []


