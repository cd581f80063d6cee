"""Lowering: checked AST → evaluation tree (`tree.Program`).

Bands, tiers, modifiers, schedules and dated values all become `Case`
nodes; `x% of y` becomes multiplication; built-in attributes become
columns. After this pass no backend needs to know the surface language.
Runs only on contracts the checker accepted, so it may assume names resolve
and types agree; it still never trusts input blindly (unknown names raise
`CheckError`, not KeyError).
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_UP, Decimal

from capdsl.errors import CheckError, Source, Span, error
from capdsl.evaluation import tree as t
from capdsl.evaluation.kinds import kind_of as value_kind
from capdsl.language import ast_nodes as n
from capdsl.language.builtins import (BUILTINS, DATE_FUNCTIONS, FREQUENCIES, LIST_DAYS, PERIOD_MONTHS,
                                      month_label)
from capdsl.language.check_expr import round_quantum, rounding_mode_arg

Q = Decimal(1).scaleb(-t.SCALE)

#: The columns of the values capdsl derives rather than reads (`member.age`): no panel column holds them.
_DERIVED = frozenset((b.scope, b.tree_column) for b in BUILTINS.values() if b.column is None)
_AGE = BUILTINS[("member", "age")]

_KIND_OF_TYPE = {"bool": "bool", "text": "text", "date": "date", "integer": "integer",
                 "days": "integer", "day": "integer", "members": "integer", "member": "integer"}


def kind_of(type_expr: n.TypeExpr) -> str:
    """Storage kind of a declared input type (decimal for every measured quantity)."""
    if type_expr.per is None and type_expr.word in _KIND_OF_TYPE:
        return _KIND_OF_TYPE[type_expr.word]
    return "decimal"


def unit_text(type_expr: n.TypeExpr, currency: str) -> str:
    word = {"money": currency, "percent": "%"}.get(type_expr.word, type_expr.word)
    if word in ("bool", "text", "date", "integer", "number"):
        word = ""
    return f"{word} per {type_expr.per}".strip() if type_expr.per else word


@functools.lru_cache(maxsize=4)
def _lines(text: str) -> list[str]:
    """Split once per source: `source_text` is called for every band, tier and line of a contract."""
    return text.splitlines()


def source_text(source: Source, span: Span) -> str:
    """The exact text an author wrote for a span (used in "not applied" reasons)."""
    lines = _lines(source.text)
    if span.line < 1 or span.line > len(lines):
        return ""
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1: span.end_column - 1]
    parts = [lines[span.line - 1][span.column - 1:]]
    parts += lines[span.line: span.end_line - 1]
    parts.append(lines[span.end_line - 1][: span.end_column - 1] if span.end_line <= len(lines) else "")
    return " ".join(p.strip().removesuffix("\\").strip() for p in parts if p.strip() != "\\")


#: tree columns that say who a member is: a failure's message does not name their values
PERSONAL = {("member", "member_id"), ("member", "birth_date"), ("event", "member_id")}


def lower(checked) -> t.Program:
    """Build the program from a `check.Checked` (uses its contract, source and header)."""
    return _Lowering(checked.contract, checked.source, checked.key_types).program()


class _Lowering:
    def __init__(self, contract: n.Contract, source: Source, key_types: dict | None = None):
        self.contract = contract
        self.source = source
        self.key_types = key_types or {}
        header = contract.header
        if header is None or header.currency is None:
            raise CheckError(error("E0202", "the contract has no currency"), source)
        self.header = header
        self.decls: dict[str, object] = {}
        self.inputs: dict[tuple[str, str], n.InputDecl] = {}
        for decl in contract.decls:
            if isinstance(decl, n.Inputs):
                for d in decl.decls:
                    self.inputs[(d.scope, d.name)] = d
                    if d.scope == "param":
                        self.decls[d.name] = d
            elif isinstance(decl, (n.Define, n.Dated, n.Bands, n.Cells, n.Tier, n.Modifier, n.Schedule, n.Line)):
                self.decls[decl.name] = decl
        self.definitions: dict[str, t.Definition] = {}
        self.levels: dict[str, str] = {}
        self._visiting: set[str] = set()

    # ───────────────────────────── program ─────────────────────────────
    def program(self) -> t.Program:
        lines = []
        for decl in self.contract.decls:
            if isinstance(decl, n.Line):
                lines.append(self._line(decl))
        # Definitions reachable from lines were lowered on demand; order them
        # so every definition follows those it uses.
        definitions = {name: self.definitions[name] for name in self._definition_order()}
        line_order = self._line_order(lines)
        columns, measures, params = self._needs(lines, definitions)
        rate = self.header.report_rate
        return t.Program(
            name=self.header.name, path=self.source.path, currency=self.header.currency,
            age_rule=self._age_rule(), exposure=self._exposure(),
            rounding_mode=self.header.rounding_mode, quantum=self.header.rounding_quantum,
            report_currency=self.header.report_currency, report_rate=rate.value if rate else None,
            definitions=definitions, lines=tuple(lines), line_order=line_order,
            columns=columns, measures=measures, params=params,
            payer=self.header.payer, provider=self.header.provider, retro_months=self.header.retro_months)

    def _exposure(self) -> str:
        """`list as of quarter_start` is the exposure rule that takes the list on the quarter's first day."""
        h = self.header
        return LIST_DAYS[h.list_day] if h.list_day is not None else h.exposure

    def _age_rule(self) -> str:
        """Ages are taken on the list's day, unless `age as of` says otherwise."""
        h = self.header
        if h.list_day is not None and "age" not in h.written:
            return h.list_day
        return h.age_rule

    def _definition_order(self) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str):
            if name in seen:
                return
            seen.add(name)
            for node in t.walk(self.definitions[name].expr):
                if isinstance(node, t.Ref):
                    visit(node.name)
            order.append(name)

        for name in list(self.definitions):
            visit(name)
        return order

    def _line_deps(self, node: t.Node, acc: set[str]) -> set[str]:
        for sub in t.walk(node):
            if isinstance(sub, t.LineRef):
                acc.add(sub.name)
            elif isinstance(sub, t.Ref):
                self._line_deps(self.definitions[sub.name].expr, acc)
        return acc

    def _line_order(self, lines: list[t.LineDef]) -> tuple[str, ...]:
        deps = {}
        for line in lines:
            acc: set[str] = set()
            for node in (line.amount, line.applies, line.basis):
                if node is not None:
                    self._line_deps(node, acc)
            for inst in line.installments:
                if inst.when is not None:
                    self._line_deps(inst.when, acc)
            deps[line.name] = acc
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, chain: list[str]):
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise CheckError(error("E0205", "lines refer to each other in a cycle: " + " → ".join(chain + [name])),
                                 self.source)
            state[name] = 1
            for dep in sorted(deps.get(name, ())):
                visit(dep, chain + [name])
            state[name] = 2
            order.append(name)

        for line in lines:
            visit(line.name, [])
        return tuple(order)

    def _needed_by(self, decl: n.InputDecl) -> str:
        return f"{self.source.path}:{decl.span.line} ({decl.scope} {decl.name})"

    def _needs(self, lines, definitions):
        nodes: list[t.Node] = []
        for line in lines:
            nodes += [x for x in (line.amount, line.applies, line.basis) if x is not None]
            nodes += [i.when for i in line.installments if i.when is not None]
        nodes += [d.expr for d in definitions.values()]
        columns: dict[tuple[str, str], t.Column] = {}
        measures: dict[str, tuple] = {}
        params: dict[str, tuple] = {}
        for root in nodes:
            for node in t.walk(root):
                if isinstance(node, t.MemberEvents):  # matched on the event's member
                    member = BUILTINS[("event", "member")]
                    columns.setdefault(("event", member.column),
                                       t.Column("event", member.column, member.kind, None, False, "built-in"))
                if isinstance(node, t.Col):
                    key = (node.table, node.name)
                    if key in columns or key in _DERIVED:  # computed, not read
                        continue
                    decl = self.inputs.get(key)
                    if decl is not None:
                        default = self._const_value(decl.default) if decl.default is not None else None
                        columns[key] = t.Column(node.table, node.name, node.kind, default,
                                                decl.default is None, self._needed_by(decl))
                    else:
                        columns[key] = t.Column(node.table, node.name, node.kind, None, False, "built-in")
                elif isinstance(node, t.Measure) and node.name not in measures:
                    decl = self.inputs.get(("measure", node.name))
                    default = self._const_value(decl.default) if decl is not None and decl.default is not None else None
                    measures[node.name] = t.MeasureDecl(node.kind, default, self._needed_by(decl) if decl else "")
                elif isinstance(node, t.Param) and node.name not in params:
                    decl = self.inputs[("param", node.name)]
                    default = self._const_value(decl.default) if decl.default is not None else None
                    params[node.name] = t.ParamDecl(node.kind, default, unit_text(decl.type, self.header.currency),
                                                self._needed_by(decl))
        return tuple(columns.values()), measures, params

    def _const_value(self, expr: n.Expr):
        node = self.expr(expr, in_pool=False)
        if isinstance(node, t.Neg) and isinstance(node.operand, t.Const):
            return -node.operand.value
        if isinstance(node, t.Const):
            return node.value
        raise CheckError(error("E0209", "a default value must be a constant", expr.span), self.source)

    # ───────────────────────────── lines ───────────────────────────────
    def _line(self, decl: n.Line) -> t.LineDef:
        in_pool = decl.kind == "pool"
        if decl.amount is None:
            raise CheckError(error("E0504", f"{decl.kind} '{decl.name}' has no amount", decl.span), self.source)
        amount = self.expr(decl.amount, in_pool)
        if in_pool and getattr(decl, "settlement", None) is not None and decl.settlement.corridor is not None:
            amount = self._corridor_sides(decl, amount)
        applies = self.expr(decl.applies, in_pool) if decl.applies is not None else None
        applies_text = source_text(self.source, decl.applies.span) if decl.applies is not None else None
        if decl.basis is not None:
            basis, basis_label = self.expr(decl.basis, in_pool), decl.basis_label
        else:
            basis, basis_label = self._default_basis(amount)
        installments, due, due_text = (), (), None
        if in_pool:
            installments = self._installments(decl)
        else:
            amount, basis, due, due_text = self._payment(decl, amount, basis)
        return t.LineDef(decl.name, decl.label, decl.kind, amount, applies, applies_text, basis, basis_label,
                         installments, decl.ref.text if decl.ref else None, decl.span, due, due_text,
                         decl.rate_per or "month")

    def _corridor_sides(self, decl: n.Line, amount: t.Node) -> t.Node:
        """A corridor's adjustment (`syntax.settlement_amount`: if above … else if below … else 0) as one
        `Case` of the settlement's name, its sides labelled with the band's bounds, so that explain
        says which side of the band the year's total fell on. The same first-match choice."""
        if not (isinstance(amount, t.Case) and isinstance(amount.otherwise, t.Case) and len(amount.whens) == 1
                and len(amount.otherwise.whens) == 1):
            return amount
        c = decl.settlement.corridor
        target, width = source_text(self.source, c.target.span), source_text(self.source, c.within.span)
        share = source_text(self.source, c.share.span)
        labels = (f"above the band: the total is over {target} + {width} of {target}; {share} of the excess given back",
                  f"below the band: the total is under {target} − {width} of {target}; {share} of the shortfall "
                  "made up",
                  f"inside the band ({target} ± {width}): nothing")
        inner = amount.otherwise
        return t.Case((amount.whens[0], inner.whens[0]), inner.otherwise, decl.name, labels, amount.origin)

    def _installments(self, decl: n.Line) -> tuple[t.Installment, ...]:
        """A pool's installments: its shares, or `paid monthly|quarterly|in …` as equal parts (the last
        one the rest), or by default all of it in December."""
        if decl.paid:
            return tuple(
                t.Installment(i.month, i.share.value if i.share is not None else None,
                              self.expr(i.when, True) if i.when is not None else None,
                              source_text(self.source, i.when.span) if i.when is not None else None, i.label)
                for i in decl.paid)
        months = self._payment_months(decl.payment) if decl.payment is not None else ((12, "December"),)
        parts = len(months)
        return tuple(t.Installment(m, None, None, None, label, parts if k < parts - 1 else 0)
                     for k, (m, label) in enumerate(months))

    @staticmethod
    def _payment_months(payment: n.Payment) -> tuple[tuple[int, str], ...]:
        if payment.every is not None:
            return tuple((m, month_label(m)) for m in FREQUENCIES[payment.every])
        return tuple(sorted((p.month, p.label) for p in payment.months))

    def _payment(self, decl: n.Line, amount: t.Node, basis: t.Node | None):
        """A monthly line paid in some months (`paid quarterly`, `paid in June`) or stated as a rate per
        quarter or year (`rate per year`): its amount (and basis) in a month it is paid is the rate × the
        months since its previous payment ÷ the rate's months, and 0 in the other months."""
        months = tuple(m for m, _ in self._payment_months(decl.payment)) if decl.payment is not None \
            else tuple(range(1, 13))
        rate_months = PERIOD_MONTHS[decl.rate_per or "month"]
        covers = {m: (m - prev) % 12 or 12 for prev, m in zip((months[-1],) + months[:-1], months)}
        by_cover: dict[int, list[int]] = {}
        for m in months:
            by_cover.setdefault(covers[m], []).append(m)

        def scaled(node: t.Node, cover: int) -> t.Node:
            if cover == rate_months:
                return node
            if cover % rate_months == 0:
                return t.Arith("*", node, t.Const(Decimal(cover // rate_months), "integer"))
            return t.Arith("/", t.Arith("*", node, t.Const(Decimal(cover), "integer")),
                           t.Const(Decimal(rate_months), "integer"))

        month = t.Calendar("month")

        def in_months(ms: list[int]) -> t.Node:
            return t.In(month, tuple(t.Const(Decimal(m), "integer") for m in ms))

        if len(months) == 12:  # paid every month: a month covers one month of the rate
            return scaled(amount, 1), basis, (), None
        zero = t.Const(Decimal(0), "decimal")
        whens = tuple((in_months(ms), scaled(amount, cover)) for cover, ms in sorted(by_cover.items()))
        amount = t.Case(whens, zero, None, ("paid",) * len(whens), decl.span)
        if basis is not None:
            basis = t.Case(((in_months(list(months)), basis),), zero, None, ("paid",), decl.span)
        return amount, basis, months, source_text(self.source, decl.clause_span("payment")).strip()

    def _default_basis(self, amount: t.Node):
        """The quantity beside a line: its members or events, when it aggregates over them."""
        for node in t.walk(amount):
            if isinstance(node, t.Ref):
                inner = self._default_basis(self.definitions[node.name].expr)
                if inner[0] is not None:
                    return inner
            if isinstance(node, t.Agg):
                label = "members" if node.source == "members" else "events"
                return t.Agg("count", node.source, None, node.where, node.origin), label
        return None, None

    # ─────────────────────────── definitions ───────────────────────────
    def ref(self, name: str, span: Span, in_pool: bool) -> t.Node:
        decl = self.decls.get(name)
        if decl is None:
            raise CheckError(error("E0203", f"unknown name '{name}'", span), self.source)
        if isinstance(decl, n.InputDecl):
            return t.Param(name, kind_of(decl.type))
        if isinstance(decl, n.Line):
            return t.LineRef(name)
        if name not in self.definitions:
            if name in self._visiting:
                raise CheckError(error("E0205", f"'{name}' is defined in terms of itself", span), self.source)
            self._visiting.add(name)
            try:
                self.definitions[name] = self._definition(decl)
            finally:
                self._visiting.discard(name)
        return t.Ref(name)

    def _definition(self, decl) -> t.Definition:
        ref = decl.ref.text if getattr(decl, "ref", None) else None
        if isinstance(decl, n.Define):
            expr = self.expr(decl.expr, False)
        elif isinstance(decl, n.Dated):
            whens = tuple((t.Cmp(">=", t.MonthStart(), t.Const(e.start, "date")), self.expr(e.value, False))
                          for e in sorted(decl.entries, key=lambda e: e.start, reverse=True))
            labels = tuple(f"from {e.start.isoformat()}" for e in sorted(decl.entries, key=lambda e: e.start,
                                                                         reverse=True))
            first = min(e.start for e in decl.entries)
            if decl.until is not None:  # a month starting after the last day has no value: fail, never pay 0
                ended = t.Fail("E0805", f"'{decl.name}' has no value after {decl.until.isoformat()}", decl.span)
                whens = ((t.Cmp(">", t.MonthStart(), t.Const(decl.until, "date")), ended),) + whens
                labels = (f"after {decl.until.isoformat()}",) + labels
            expr = t.Case(whens, t.Fail("E0805", f"'{decl.name}' has no value before {first.isoformat()}", decl.span),
                          decl.name, labels, decl.span)
        elif isinstance(decl, n.Bands):
            expr = self._bands(decl)
        elif isinstance(decl, n.Cells):
            expr = self._cells(decl)
        elif isinstance(decl, n.Tier):
            expr = self._choices(decl.name, decl.entries, "first", decl.span)
        elif isinstance(decl, n.Modifier):
            expr = self._choices(decl.name, decl.entries, decl.combine, decl.span)
        elif isinstance(decl, n.Schedule):
            key = self.expr(decl.key, False)
            whens, otherwise = [], None
            for entry in decl.entries:
                if entry.code is None:
                    otherwise = self.expr(entry.value, False)
                else:
                    whens.append((t.Cmp("=", key, t.Const(entry.code, "text")), self.expr(entry.value, False)))
            if otherwise is None:
                otherwise = t.Fail("E0806", f"schedule '{decl.name}' has no entry for the code", decl.span)
            expr = t.Case(tuple(whens), otherwise, decl.name,
                          tuple(f'"{e.code}"' for e in decl.entries if e.code is not None), decl.span)
        else:  # pragma: no cover - guarded by ref()
            raise CheckError(error("E0208", f"'{decl.name}' cannot be used as a value", decl.span), self.source)
        kind = value_kind(expr, self._exposure(), self.definitions)
        return t.Definition(decl.name, _level(expr, self.definitions), expr, kind, "", ref, decl.span)

    def _bands(self, decl: n.Bands) -> t.Node:
        key = self.expr(decl.key, False)
        # a whole-number key as the checker's coverage check saw it (E0401 on the same domain)
        kt = self.key_types.get(decl.name)
        integral = kt is not None and kt.kind == "integer"
        # Bands are tried in order. While every band so far met the one before it with no gap and
        # needed no lower test, the values reaching the next band are exactly those above the last
        # upper bound, so a band starting there needs no lower test either: `age <= 14`, not
        # `age >= 5 AND age <= 14` (member sums evaluate this once per member-month).
        # A member's age is never negative (both backends clamp it), so `0 to 4` starts the chain.
        floor = Decimal(0) if key == t.Col(_AGE.scope, _AGE.tree_column, _AGE.kind) else None
        reached: tuple[str, Decimal] | None = (">=", floor) if floor is not None else None
        whens, labels, otherwise = [], [], None
        for entry in decl.entries:
            value = self.expr(entry.value, False)
            if entry.range is None:
                otherwise = value
                reached = None
                continue
            r = entry.range
            conds = []
            low_op = ">" if r.form == "over" else ">="
            # an open-ended band keeps its one test: with none left it would also take a missing key
            low_implied = r.low is None or (r.high is not None and reached is not None
                                            and _covers(reached, low_op, self._num(r.low).value, integral))
            if r.form in ("to", "to_under", "and_over", "exact") and not low_implied:
                conds.append(t.Cmp(">=", key, self._num(r.low)))
            if r.form == "over" and not low_implied:
                conds.append(t.Cmp(">", key, self._num(r.low)))
            if r.form in ("to", "exact"):
                conds.append(t.Cmp("<=", key, self._num(r.high)))
            if r.form in ("to_under", "under"):
                conds.append(t.Cmp("<", key, self._num(r.high)))
            # what the next band can assume: above this band's upper bound
            reached = ((">" if r.form in ("to", "exact") else ">=", self._num(r.high).value)
                       if low_implied and r.high is not None else None)
            whens.append((conds[0] if len(conds) == 1 else t.And(tuple(conds)), value))
            labels.append(source_text(self.source, r.span) or r.form)
        if otherwise is None:
            otherwise = t.Fail("E0801", f"no band of '{decl.name}' covers the value", decl.span)
        return t.Case(tuple(whens), otherwise, decl.name, tuple(labels), decl.span)

    def _cells(self, decl: n.Cells) -> t.Node:
        """Rate cells: a `Case` whose conditions are the `And` of each row's key tests (a range's
        bounds, `=` one value, `in` several; `any` tests nothing), failing with E0801 when no row
        matches and there is no `otherwise`."""
        from capdsl.language.fmt import cell_key_text  # the formatter's parser loads only when cells are lowered

        keys = [self.expr(k, False) for k in decl.keys]
        whens, labels, otherwise = [], [], None
        for entry in decl.entries:
            value = self.expr(entry.value, False)
            if entry.keys is None:
                otherwise = value
                continue
            conds: list[t.Node] = []
            for key, k in zip(keys, entry.keys):
                conds.extend(self._cell_tests(key, k))
            cond = conds[0] if len(conds) == 1 else t.And(tuple(conds)) if conds else t.Const(True, "bool")
            whens.append((cond, value))
            labels.append(", ".join(cell_key_text(k) for k in entry.keys))
        if otherwise is None:
            names = ", ".join(source_text(self.source, k.span) for k in decl.keys)
            # the keys' values are named, unless one reads who the member is (the id, the birth date),
            # which messages show only with --show-ids
            personal = any(isinstance(n, t.Col) and (n.table, n.name) in PERSONAL for k in keys for n in t.walk(k))
            otherwise = t.Fail("E0801", f"no cell of '{decl.name}' matches the member's {names}", decl.span,
                               () if personal else tuple(keys))
        return t.Case(tuple(whens), otherwise, decl.name, tuple(labels), decl.span)

    def _cell_tests(self, key: t.Node, k: n.CellKey) -> list[t.Node]:
        if k.form == "any":
            return []
        if k.form == "values":
            kind = "bool" if isinstance(k.values[0], bool) else "text"
            options = tuple(t.Const(v, kind) for v in k.values)
            return [t.Cmp("=", key, options[0]) if len(options) == 1 else t.In(key, options)]
        r = k.range
        tests: list[t.Node] = []
        if r.form in ("to", "to_under", "and_over", "exact"):
            tests.append(t.Cmp(">=", key, self._num(r.low)))
        if r.form == "over":
            tests.append(t.Cmp(">", key, self._num(r.low)))
        if r.form in ("to", "exact"):
            tests.append(t.Cmp("<=", key, self._num(r.high)))
        if r.form in ("to_under", "under"):
            tests.append(t.Cmp("<", key, self._num(r.high)))
        return tests

    def _num(self, q: n.Quantity) -> t.Const:
        return t.Const(q.value.quantize(Q, ROUND_HALF_UP) if q.value.as_tuple().exponent < -t.SCALE else q.value,
                       "decimal")

    def _choices(self, name: str, entries, combine: str, span: Span) -> t.Node:
        conds, values, always, otherwise = [], [], [], None
        labels = []
        for entry in entries:
            value = self.expr(entry.value, False)
            if entry.cond is None and not entry.always:
                otherwise = value
            elif entry.always:
                always.append(value)
                conds.append(t.Const(True, "bool"))
                values.append(value)
                labels.append(source_text(self.source, entry.value.span))
            else:
                conds.append(self.expr(entry.cond, False))
                values.append(value)
                labels.append(source_text(self.source, entry.cond.span))
        fail = t.Fail("E0807", f"no entry of '{name}' applies", span)
        if combine == "first":
            return t.Case(tuple(zip(conds, values)), otherwise if otherwise is not None else fail, name,
                          tuple(labels), span)
        conditional = [(c, v) for c, v in zip(conds, values) if not (isinstance(c, t.Const) and c.value is True)]
        if combine in ("highest", "lowest"):
            op = "max" if combine == "highest" else "min"
            if always:
                neutral = always[0]
            else:
                neutral = t.Case(tuple(conditional[:-1]), conditional[-1][1], name, tuple(labels[:-1]), span) \
                    if conditional else fail
            terms = list(always) + [t.Case(((c, v),), neutral, name, (), span) for c, v in conditional]
            combined = terms[0] if len(terms) == 1 else t.MinMax(op, tuple(terms))
            if always:
                return combined
            return t.Case(((t.Or(tuple(c for c, _ in conditional)), combined),),
                          otherwise if otherwise is not None else fail, name, ("some entry applies",), span)
        neutral_value = t.Const(Decimal(1) if combine == "multiply" else Decimal(0), "decimal")
        op = "*" if combine == "multiply" else "+"
        terms = list(always) + [t.Case(((c, v),), neutral_value, name, (), span) for c, v in conditional]
        combined = terms[0] if terms else neutral_value
        for term in terms[1:]:
            combined = t.Arith(op, combined, term, span)
        if otherwise is not None and not always and conditional:
            return t.Case(((t.Or(tuple(c for c, _ in conditional)), combined),), otherwise, name,
                          ("some entry applies",), span)
        return combined

    # ─────────────────────────── expressions ───────────────────────────
    def expr(self, e: n.Expr, in_pool: bool, in_year: bool = False) -> t.Node:
        """Lower one expression. `in_pool` and not `in_year`: measures read the year row."""
        go = lambda x: self.expr(x, in_pool, in_year)  # noqa: E731
        if isinstance(e, n.Quantity):
            return self._num(e)
        if isinstance(e, n.String):
            return t.Const(e.value, "text")
        if isinstance(e, n.DateLit):
            return t.Const(e.value, "date")
        if isinstance(e, n.BoolLit):
            return t.Const(e.value, "bool")
        if isinstance(e, n.Name):
            return self.ref(e.name, e.span, in_pool)
        if isinstance(e, n.Attr):
            return self._attr(e, in_pool and not in_year)
        if isinstance(e, n.Neg):
            inner = go(e.operand)
            if isinstance(inner, t.Const) and inner.kind == "decimal":
                return t.Const(-inner.value, "decimal")
            return t.Neg(inner)
        if isinstance(e, n.Binary):
            op = "*" if e.op == "of" else e.op
            return t.Arith(op, go(e.left), go(e.right), e.span)
        if isinstance(e, n.Compare):
            return t.Cmp(e.op, go(e.left), go(e.right))
        if isinstance(e, n.BoolOp):
            items = tuple(go(i) for i in e.items)
            return t.And(items) if e.op == "and" else t.Or(items)
        if isinstance(e, n.Not):
            return t.Not(go(e.operand))
        if isinstance(e, n.InList):
            node = t.In(go(e.operand), tuple(go(o) for o in e.options))
            return t.Not(node) if e.negated else node
        if isinstance(e, n.InTable):
            decl = self.decls.get(e.table.name)
            if not isinstance(decl, n.Schedule):
                raise CheckError(error("E0208", f"'{e.table.name}' is not a schedule", e.table.span), self.source)
            codes = tuple(t.Const(x.code, "text") for x in decl.entries if x.code is not None)
            return t.In(go(e.operand), codes)
        if isinstance(e, n.Present):
            operand = self._attr(e.operand, in_pool and not in_year, raw=True) if isinstance(e.operand, n.Attr) \
                else go(e.operand)
            node = t.Present(operand)
            return t.Not(node) if e.negated else node
        if isinstance(e, n.IfExpr):
            return t.Case(((go(e.cond), go(e.then)),), go(e.otherwise), None, ("if",), e.span)
        if isinstance(e, n.Call) and (e.func == "round" or e.func in DATE_FUNCTIONS):
            return self._call_v2(e, go)
        if isinstance(e, n.Call):
            args = tuple(go(a) for a in e.args)
            if e.func in ("min", "max") and len(args) >= 2:
                return t.MinMax(e.func, args)
            if e.func == "clamp" and len(args) == 3:
                return t.MinMax("min", (t.MinMax("max", (args[0], args[1])), args[2]))
            if e.func == "abs" and len(args) == 1:
                return t.Abs(args[0])
            raise CheckError(error("E0207", f"unknown function {e.func}/{len(args)}", e.span), self.source)
        if isinstance(e, n.SumOver):
            if e.source == "year":
                return t.YearSum(self.expr(e.expr, in_pool, True))
            return t.Agg("sum", e.source, go(e.expr), go(e.where) if e.where is not None else None, e.span)
        if isinstance(e, n.CountOf):
            return t.Agg("count", e.source, None, go(e.where) if e.where is not None else None, e.span)
        if isinstance(e, n.MemberEvents):
            return t.MemberEvents(e.kind, e.window, go(e.expr) if e.expr is not None else None,
                                  go(e.where) if e.where is not None else None, e.span)
        raise CheckError(error("E0101", f"cannot evaluate {type(e).__name__}", getattr(e, "span", None)),
                         self.source)

    def _call_v2(self, e: n.Call, go) -> t.Node:
        """`round(x, q[, mode])` → `Round` (the contract's mode by default); `years_between(a, b)`,
        `months_between`, `days_between` → `DateDiff`."""
        if e.func in DATE_FUNCTIONS and len(e.args) == 2:
            return t.DateDiff(DATE_FUNCTIONS[e.func], go(e.args[0]), go(e.args[1]))
        quantum = round_quantum(e) if len(e.args) in (2, 3) else None
        mode = rounding_mode_arg(e)
        if quantum is None or quantum <= 0 or (len(e.args) == 3 and mode is None):
            raise CheckError(error("E0314", "`round` needs a positive constant quantum", e.span), self.source)
        return t.Round(go(e.args[0]), quantum, mode.name if mode is not None else self.header.rounding_mode)

    def _attr(self, e: n.Attr, year_measures: bool, raw: bool = False) -> t.Node:
        if e.scope == "calendar":
            return t.Calendar(e.name)
        if e.scope == "param":
            return self.ref(e.name, e.span, False)
        builtin = BUILTINS.get((e.scope, e.name))
        if builtin is not None:
            return t.Col(e.scope, builtin.tree_column, builtin.kind)
        decl = self.inputs.get((e.scope, e.name))
        if decl is None:
            raise CheckError(error("E0206", f"'{e.scope}.{e.name}' is not declared in inputs", e.span), self.source)
        kind = kind_of(decl.type)
        if e.scope == "measure":
            node = t.Measure(e.name, kind, "year" if year_measures else "month")
            if decl.default is not None and not raw:
                return t.Coalesce(node, self.expr(decl.default, False))
            return node
        return t.Col(e.scope, e.name, kind)


def _level(node: t.Node, definitions: dict[str, t.Definition]) -> str:
    rank = {"const": 0, "practice": 1, "member": 2, "event": 2, "aggregate": 3, "year": 4}
    best = "const"

    def bump(level):
        nonlocal best
        if rank[level] > rank[best]:
            best = level

    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, t.YearSum):
            bump("year")
            continue
        if isinstance(cur, (t.Agg, t.LineRef)):
            bump("aggregate")
            continue
        if isinstance(cur, t.MemberEvents):
            bump("member")
            continue
        if isinstance(cur, t.Col):
            bump(cur.table if cur.table in ("member", "event") else "practice")
        elif isinstance(cur, (t.Measure, t.Calendar)):
            bump("practice")
        elif isinstance(cur, t.Ref):
            bump(definitions[cur.name].level)
        stack.extend(t.children(cur))
    return best


def _covers(reached: tuple[str, Decimal], low_op: str, low: Decimal, integral: bool) -> bool:
    """Whether every value reaching a band (`key > b` or `key >= b`) passes its lower
    test (`key >= low` or `key > low`)."""
    op, bound = reached
    if low_op == ">":
        return low < bound if op == ">=" else low <= bound
    if op == ">=":
        return low <= bound
    # key > bound: for a whole-number key that is key >= bound + 1
    return low <= bound or (integral and bound == bound.to_integral_value() and low <= bound + 1)

