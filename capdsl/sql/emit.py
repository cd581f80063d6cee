"""SQL expressions from tree nodes, where a node is evaluated being a `Scope` value passed along.

`+ -` are exact; `*` is CAST(a * b AS DECIMAL(38, 12)) unless the operands' small types make the
product exact; `/` and the rounding steps come from `dialects` (explicit integer arithmetic), except
`half_up` to 1, 0.1, 0.01, … where the dialect's decimal `ROUND` is known to round half away from zero.

A failure (`tree.Fail`, a division by zero) becomes an expression that stops the query with a
payload `engine.translate` reads back; the `Emitter` keeps the list of sites, indexed by payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlglot import exp

from capdsl.errors import BackendError, error
from capdsl.evaluation import tree as t
from capdsl.sql.analysis import Analysis, raises
from capdsl.sql.dialects import DEC, Dialect, cast, dec, num
from capdsl.sql.exprs import AGE, AGE_ATTR, MONTH, PRACTICE_ID, SQL_TYPE, case, col, concat, is_literal, is_null, \
    lit, null, paren, text
from capdsl.sql.kinds import exact_product, kind_of, numeric_type
from capdsl.sql.query import FAIL_TAG, Options

_CMP = {"=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}


@dataclass(frozen=True)
class Scope:
    """Where an expression is evaluated: which row aliases hold which columns, and whether its
    failures are deferred (a row of a sum whose failure waits for a reader, `Plan.deferred`): then
    a failure is a NULL and `Emitter.failure` gives its payload apart."""

    level: str  # member | event | practice | year
    row: str | None = None  # alias of the member-month or event row
    pm: str | None = None  # alias of the practice-month columns (None: unqualified)
    deferred: bool = False


class Emitter:
    """The expressions of one compilation. `fails` collects the failure sites in payload order."""

    def __init__(self, analysis: Analysis, dialect: Dialect, params: dict, options: Options,
                 tables: dict[str, str] | None = None):
        self.a = analysis
        self.tables = tables or {}  # input table -> the name or file given for it (inputs.source)
        self.p = analysis.program
        self.d = dialect
        self.params = params
        self.o = options
        self.fails: list = []

    def tree(self, node: t.Node | None) -> t.Node | None:
        return self.a.tree(node)

    def kind_of(self, node: t.Node) -> str:
        return kind_of(node, self.p.exposure)

    def unsupported(self, what: str) -> BackendError:
        return BackendError(error("E0921", f"the {self.d.name} backend cannot compile {what}"))

    # ─────────────────────────── failures ───────────────────────────
    def fail(self, node, scope: Scope, kind: str | None, null_type: str | None = None) -> exp.Expression:
        """Raise with `fail_message`'s payload; NULL in a deferred scope, typed `null_type` if given
        (a band's own narrow type: see `case_of`)."""
        if scope.deferred:
            if null_type is not None:
                return cast(exp.Null(), null_type)
            return null(kind) if kind is not None else exp.Null()
        return self.raised(self.fail_message(node, scope), kind)

    def raised(self, message: exp.Expression, kind: str | None) -> exp.Expression:
        raised = self.d.raise_error(message)
        if self.d.name == "postgres" and kind is not None:
            raised = cast(text(raised), SQL_TYPE[kind] if kind in SQL_TYPE else kind)
        return raised

    def shown_value(self, node: t.Node, scope: Scope) -> exp.Expression:
        """A value a failure names (`Fail.shows`), in the payload as `<kind><length>:<text>`: kind t
        (text), b (bool), d (date), n (number) or - (no value), read back by `engine.shown_values`."""
        kind = self.kind_of(node)
        value = self.ex(node, scope)
        if kind == "bool":
            shown = case([(value, lit("true"))], lit("false"))
        else:
            shown = text(value)
        tag = {"text": "t", "bool": "b", "date": "d"}.get(kind, "n")
        return case([(is_null(value), lit("-0:"))],
                    concat(lit(tag), text(exp.Length(this=shown)), lit(":"), shown))

    def fail_message(self, node, scope: Scope) -> exp.Expression:
        """A payload `capdsl-fail|index|level|row|age|shown|practice_id|capdsl-end` (`shown`: the values
        `Fail.shows` names, see `shown_value`; events: `row|len(code)|code|practice_id`), parsed back
        by `engine.translate`."""
        index = len(self.fails)
        self.fails.append((scope.level, node))
        row = scope.row
        rowno = text(col(self.o.row_column, row)) if (self.o.row_column and row) else exp.Literal.string("?")
        pid = col("practice_id", row or scope.pm)
        parts = [exp.Literal.string(f"{FAIL_TAG}|{index}|{scope.level}|"), exp.Coalesce(this=rowno, expressions=[
            exp.Literal.string("?")]), exp.Literal.string("|")]
        if scope.level == "member":
            parts += [exp.Coalesce(this=text(col(AGE, row)), expressions=[exp.Literal.string("?")]),
                      exp.Literal.string("|")]  # age is NULL in year-only groups (members.mg_query)
            parts += [self.shown_value(v, scope) for v in getattr(node, "shows", ())]
        elif scope.level == "event":
            code = exp.Coalesce(this=col("code", row), expressions=[exp.Literal.string("")])
            parts += [text(exp.Length(this=code)), exp.Literal.string("|"), code]
        else:
            parts += [exp.Literal.string("|")]
        parts += [exp.Literal.string("|"), pid, exp.Literal.string("|capdsl-end")]
        if self.o.inputs == "warehouse" and getattr(node, "message", None):  # readable where it is run
            parts[-1] = exp.Literal.string(f"|capdsl-end {node.code} {node.message}")
        return concat(*parts)

    def division_message(self, node: t.Arith, s: Scope) -> exp.Expression:
        index = len(self.fails)
        self.fails.append(("division", node))
        pid = col("practice_id", s.row or s.pm)
        end = "|capdsl-end E0803 division by zero" if self.o.inputs == "warehouse" else "|capdsl-end"
        return concat(exp.Literal.string(f"{FAIL_TAG}|{index}|division|?||"), pid, exp.Literal.string(end))

    def input_message(self, site: t.Fail, pid: exp.Expression | None, detail: exp.Expression | None) -> exp.Expression:
        """The payload of a warehouse value the loader would have refused:
        `capdsl-fail|index|input|practice_id|detail|capdsl-end` and the message, readable as the
        engine prints it (`engine.translate` turns it into the loader's error)."""
        index = len(self.fails)
        self.fails.append(("input", site))
        unknown = exp.Literal.string("?")
        pid = exp.Coalesce(this=pid, expressions=[unknown]) if pid is not None else unknown
        return concat(exp.Literal.string(f"{FAIL_TAG}|{index}|input|"), pid,
                      exp.Literal.string("|"), exp.Coalesce(this=detail, expressions=[exp.Literal.string("")])
                      if detail is not None else exp.Literal.string(""),
                      exp.Literal.string(f"|capdsl-end {site.code} {site.message}"))

    def failure(self, node: t.Node, s: Scope) -> exp.Expression | None:
        """The payload of the first failure evaluating `node` would meet, in the interpreter's order,
        else NULL (None: it cannot fail). `s` is a deferred scope: the values it reads never raise."""
        if not raises(node):
            return None
        value = lambda n: self.ex(n, s)  # noqa: E731
        if isinstance(node, t.Fail):
            return self.fail_message(node, s)
        if isinstance(node, t.Case):
            ifs = []
            for cond, val in node.whens:
                found = self.failure(cond, s)
                if found is not None:
                    ifs.append((exp.Not(this=is_null(found)), found.copy()))
                ifs.append((value(cond), self.failure(val, s) or exp.Null()))
            return case(ifs, self.failure(node.otherwise, s) or exp.Null())
        if isinstance(node, (t.And, t.Or)):
            first, rest = node.items[0], node.items[1:]
            later = self.failure(type(node)(rest), s) if rest else None
            go_on = value(first) if isinstance(node, t.And) else exp.Not(this=paren(value(first)))
            ifs = [(exp.Not(this=is_null(f)), f.copy())] if (f := self.failure(first, s)) is not None else []
            return case(ifs + ([(go_on, later)] if later is not None else []), exp.Null())
        if isinstance(node, t.Coalesce):
            first, default = self.failure(node.operand, s), self.failure(node.default, s)
            ifs = [(exp.Not(this=is_null(first)), first.copy())] if first is not None else []
            if default is not None:
                ifs.append((is_null(value(node.operand)), default))
            return case(ifs, exp.Null())
        found = [f for f in (self.failure(c, s) for c in t.children(node)) if f is not None]
        if isinstance(node, t.Arith) and node.op == "/":
            found.append(case([(exp.EQ(this=value(node.right), expression=num(0)), self.division_message(node, s))],
                              exp.Null()))
        return found[0] if len(found) == 1 else exp.Coalesce(this=found[0], expressions=found[1:])

    # ─────────────────────────── values ───────────────────────────
    def ex(self, node: t.Node, s: Scope) -> exp.Expression:
        cls = type(node)
        if cls is t.Const:
            return lit(node.value)
        if cls is t.Param:
            return self.param(node)
        if cls is t.MonthStart:
            return self.month_date(s)
        if cls is t.Calendar:
            return self.calendar(node.part, s)
        if cls is t.DateDiff:
            return self.date_diff(node.unit, self.ex(node.start, s), self.ex(node.end, s))
        if cls is t.Col:
            return self.column(node, s)
        if cls is t.Measure:
            year = s.level == "year" or node.period == "year"
            return col(f"ms__{node.name}__{'y' if year else 'm'}", s.pm)
        if cls is t.Arith:
            return self.arith(node, s)
        if cls is t.Neg:
            return exp.Neg(this=paren(self.ex(node.operand, s)))
        if cls is t.Cmp:
            return _CMP[node.op](this=self.ex(node.left, s), expression=self.ex(node.right, s))
        if cls in (t.And, t.Or):
            return self.logic(node, s)
        if cls is t.Not:
            return exp.Not(this=paren(self.ex(node.operand, s)))
        if cls is t.In:
            return exp.In(this=self.ex(node.operand, s), expressions=[self.ex(o, s) for o in node.options])
        if cls is t.Present:
            return exp.Not(this=is_null(self.ex(node.operand, s)))
        if cls is t.Coalesce:
            return exp.Coalesce(this=self.ex(node.operand, s), expressions=[self.ex(node.default, s)])
        if cls is t.Fail:
            return self.fail(node, s, None)
        if cls is t.Case:
            return self.case_of(node, s)
        if cls is t.MinMax:
            args = [self.ex(a, s) for a in node.args]
            if self.kind_of(node) == "decimal":  # as for `Case`: one type, 12 places
                args = [dec(a) for a in args]
            fn = exp.Greatest if node.op == "max" else exp.Least
            return fn(this=args[0], expressions=args[1:])
        if cls is t.Abs:
            return exp.Abs(this=self.ex(node.operand, s))
        if cls is t.Round:
            return self.round(self.ex(node.operand, s), node.quantum, node.mode)
        if cls is t.Agg:
            return self.aggregate(node, s)
        if cls is t.MemberEvents:  # a column of the member-month (members.member_events_query)
            if s.level != "member":
                raise self.unsupported("a member's events outside an aggregate over members")
            return col(self.a.member_events[node], s.row)
        if cls is t.LineRef:
            if node.name in self.a.pool_names:  # what the pool paid in the year (lines.pool_layers)
                if s.level != "year":
                    raise self.unsupported(f"the pool `{node.name}` read outside a pool")
                return col(f"ypaid__{node.name}")
            return col(f"amt__{node.name}")
        if cls is t.YearSum:
            if s.level != "year":
                raise self.unsupported("`over year` outside a pool amount")
            return col(f"ysum__{self.a.plan.years[node]}")
        raise self.unsupported(cls.__name__)

    def logic(self, node: t.And | t.Or, s: Scope) -> exp.Expression:
        cls = type(node)
        if any(raises(i) for i in node.items[1:]):
            # SQL does not promise left-to-right AND/OR; the interpreter stops at the
            # first decisive item, so an item that may fail is reached only through CASE.
            out = self.ex(node.items[-1], s)
            for item in reversed(node.items[:-1]):
                stop = exp.false() if cls is t.And else exp.true()
                cond = self.ex(item, s) if cls is t.And else exp.Not(this=paren(self.ex(item, s)))
                out = case([(cond, out)], stop)
            return out
        items = [self.ex(i, s) for i in node.items]
        if len(items) == 1:
            return items[0]
        return exp.and_(*items, wrap=True, copy=False) if cls is t.And else exp.Paren(this=exp.or_(*items, copy=False))

    def case_of(self, node: t.Case, s: Scope) -> exp.Expression:
        kind = self.kind_of(node)
        if isinstance(node.otherwise, t.Fail):
            # a deferred failure's NULL must not widen the case: `numeric_type` (and so
            # `exact_product`) counts the values only; a DECIMAL(38, 12) NULL would make a product
            # of two bands DECIMAL(38, 24), which overflows once weighted by a share of the month
            known = numeric_type(node) if kind == "decimal" else None
            otherwise = self.fail(node.otherwise, s, kind, f"DECIMAL({known[0]}, {known[1]})" if known else None)
        else:
            otherwise = self.ex(node.otherwise, s)
        whens = [(self.ex(c, s), self.ex(v, s)) for c, v in node.whens]
        if kind == "decimal" and numeric_type(node) is None:
            # values of unknown types (sums of different scales) are cast: DuckDB unifies
            # DECIMAL(38, 1) and DECIMAL(38, 2) to DECIMAL(38, 1), which would turn 0.01 into 0.0
            whens, otherwise = [(c, dec(v)) for c, v in whens], dec(otherwise)
        return case(whens, otherwise)

    def aggregate(self, node: t.Agg, s: Scope) -> exp.Expression:
        """An aggregate as a line reads it: its column in `base`, raising its deferred failure."""
        if s.level != "practice":
            raise self.unsupported("an aggregate outside a monthly line (e.g. in a pool, outside `over year`)")
        plan = self.a.plan
        inner = plan.factors[node][1]
        if inner in plan.deferred:
            failed = col(f"fail__{inner}")
            return case([(exp.Not(this=is_null(failed)), self.raised(failed.copy(), "decimal"))],
                        col(plan.aggs[node]))
        return col(plan.aggs[node])

    def param(self, node: t.Param) -> exp.Expression:
        if node.name in self.params and self.params[node.name] is not None:
            return lit(self.params[node.name])
        declared = self.p.params.get(node.name)
        if declared is not None and declared.default is not None:
            return lit(declared.default)
        return exp.Placeholder(this=node.name)

    def column(self, node: t.Col, s: Scope) -> exp.Expression:
        if node.table == "practice":
            name = PRACTICE_ID if node.name == PRACTICE_ID else f"p__{node.name}"
            return col(name, s.pm)
        if node.table == "member":
            if s.level != "member":
                raise self.unsupported(f"member.{node.name} outside an aggregate over members")
            return col(AGE if node.name == AGE_ATTR else node.name, s.row)
        if s.level != "event":
            raise self.unsupported(f"event.{node.name} outside an aggregate over events")
        return col(node.name, s.row)

    def arith(self, node: t.Arith, s: Scope) -> exp.Expression:
        a, b = self.ex(node.left, s), self.ex(node.right, s)
        ints = self.kind_of(node.left) == "integer" and self.kind_of(node.right) == "integer"
        if node.op == "+":
            return exp.Add(this=paren(a), expression=paren(b))
        if node.op == "-":
            return exp.Sub(this=paren(a), expression=paren(b))
        if node.op == "*":
            if ints or exact_product(node):
                return exp.Mul(this=paren(a), expression=paren(b))
            # literals keep their own precision so a product of a rate and a column fits
            a = a if is_literal(a) else dec(a)
            b = b if is_literal(b) else dec(b)
            return dec(exp.Mul(this=paren(a), expression=paren(b)))
        on_zero = exp.Null() if s.deferred else self.raised(self.division_message(node, s), DEC)
        return self.d.fixed_div(a, b, on_zero)

    # ─────────────────────────── calendar and dates ───────────────────────────
    def month_date(self, s: Scope) -> exp.Expression:
        """The first day of the evaluated month, as the scope's rows hold it."""
        return col(MONTH, s.row) if s.level in ("member", "event") else col("month_start", s.pm)

    def calendar(self, part: str, s: Scope) -> exp.Expression:
        """`tree.Calendar` from the month's first day, in integer arithmetic every dialect runs alike."""
        if part == "month_start":
            return self.month_date(s)
        d = self.d
        year = lambda: d.date_part("year", self.month_date(s))  # noqa: E731 (fresh nodes: trees must not share children)
        month = lambda: d.date_part("month", self.month_date(s))  # noqa: E731
        quarter = lambda: case([(exp.LTE(this=month(), expression=num(3 * q)), num(q)) for q in (1, 2, 3)],  # noqa: E731
                               num(4))
        if part == "month":
            return month()
        if part == "year":
            return year()
        if part == "quarter":
            return quarter()
        if part == "half":
            return case([(exp.LTE(this=month(), expression=num(6)), num(1))], num(2))
        if part == "year_start":
            return d.make_date(year(), num(1), num(1))
        if part == "quarter_start":
            return d.make_date(year(), exp.Sub(this=exp.Mul(this=num(3), expression=quarter()), expression=num(2)),
                               num(1))
        if part == "month_end":
            y = year()
            leap = exp.or_(exp.and_(exp.EQ(this=exp.Mod(this=y.copy(), expression=num(4)), expression=num(0)),
                                    exp.NEQ(this=exp.Mod(this=y.copy(), expression=num(100)), expression=num(0))),
                           exp.EQ(this=exp.Mod(this=y.copy(), expression=num(400)), expression=num(0)))
            days = case([(exp.In(this=month(), expressions=[num(4), num(6), num(9), num(11)]), num(30)),
                         (exp.EQ(this=month(), expression=num(2)), case([(exp.Paren(this=leap), num(29))], num(28)))],
                        num(31))
            return d.make_date(y, month(), days)
        raise self.unsupported(f"calendar.{part}")

    def date_diff(self, unit: str, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        """`tree.DateDiff`: completed years or months from their parts (no engine's AGE, MONTHS_BETWEEN
        or DATE_DIFF, whose month ends and 29 Februaries differ), days by the dialect's day difference."""
        if unit == "day":
            return cast(self.d.day_diff(b, a), "INT")
        backwards = exp.LT(this=b.copy(), expression=a.copy())
        return case([(backwards, exp.Neg(this=paren(self.completed(unit, b, a))))], self.completed(unit, a, b))

    def completed(self, unit: str, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        """Completed years or months from `a` to `b` when b ≥ a (`tree.DateDiff`)."""
        part = lambda name, x: self.d.date_part(name, x.copy())  # noqa: E731
        years = exp.Sub(this=part("year", b), expression=part("year", a))
        if unit == "year":
            before = exp.or_(exp.LT(this=part("month", b), expression=part("month", a)),
                             exp.and_(exp.EQ(this=part("month", b), expression=part("month", a)),
                                      exp.LT(this=part("day", b), expression=part("day", a))))
            return exp.Sub(this=paren(years), expression=case([(before, num(1))], num(0)))
        months = exp.Add(this=exp.Mul(this=paren(years), expression=num(12)),
                         expression=exp.Sub(this=part("month", b), expression=part("month", a)))
        late = exp.LT(this=part("day", b), expression=part("day", a))
        return exp.Sub(this=paren(months), expression=case([(late, num(1))], num(0)))

    # ─────────────────────────── rounding ───────────────────────────
    def round(self, x: exp.Expression, quantum: Decimal, mode: str) -> exp.Expression:
        """Round to a multiple of `quantum`: the engine's decimal ROUND where it is documented (and
        tested) to round half away from zero and the quantum is 1, 0.1, 0.01, …; else explicit
        integer steps (see `round_steps`)."""
        places = -quantum.as_tuple().exponent
        if (mode == "half_up" and self.d.round_half_away and isinstance(places, int) and places >= 0
                and quantum == Decimal(1).scaleb(-places)):
            return dec(exp.Round(this=dec(x), decimals=num(places)))
        q = lambda: self.d.idiv(x.copy(), lit(quantum))  # noqa: E731 (fresh nodes: trees must not share children)
        rem = lambda: exp.Paren(this=exp.Sub(this=dec(x.copy()), expression=exp.Mul(this=q(), expression=lit(  # noqa
            quantum))))
        return self.round_steps(q, rem, quantum, mode)

    def round_steps(self, q, rem, quantum: Decimal, mode: str) -> exp.Expression:
        """(q + adjustment) × quantum where q = trunc(x / quantum) and rem = x − q × quantum
        (exact, with the sign of x): half_up moves away from zero when 2|rem| ≥ quantum, half_even
        when 2|rem| > quantum or it is a tie and q is odd, up whenever rem ≠ 0, down never.
        `q` and `rem` are factories of fresh expressions (columns, when the caller has them)."""
        qv = lambda: lit(quantum)  # noqa: E731
        sign = lambda: case([(exp.GT(this=rem(), expression=num(0)), num(1)),  # noqa: E731
                             (exp.LT(this=rem(), expression=num(0)), exp.Neg(this=num(1)))], num(0))
        twice = lambda: exp.Mul(this=exp.Abs(this=rem()), expression=num(2))  # noqa: E731
        if mode == "half_up":
            adj = case([(exp.GTE(this=twice(), expression=qv()), sign())], num(0))
        elif mode == "half_even":
            odd = exp.NEQ(this=exp.Sub(this=q(), expression=exp.Mul(this=num(2), expression=self.d.idiv(q(), num(2)))),
                          expression=num(0))
            adj = case([(exp.GT(this=twice(), expression=qv()), sign()),
                        (exp.and_(exp.EQ(this=twice(), expression=qv()), odd, copy=False), sign())], num(0))
        elif mode == "up":
            adj = sign()
        elif mode == "down":
            adj = num(0)
        else:
            raise self.unsupported(f"rounding mode {mode!r}")
        return dec(exp.Mul(this=exp.Paren(this=exp.Add(this=q(), expression=adj)), expression=qv()))
