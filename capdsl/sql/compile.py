"""Compile a `tree.Program` to one SQL query, through sqlglot expressions.

The query is a chain of CTEs, each a single pass:

  months    one literal row per evaluated month (dates, keys, age reference)
  prac      the practices evaluated
  pm        practice × month: attributes and measures resolved per month
  mm        member-months: members joined to the months they count in
            (exposure rule), with `age` and the exposure weight
  mg        member-months with a group size `_n`: grouped by everything an
            expression reads when year-only months are read (pools), else 1;
            the months only pools read are summed per practice when the
            year sums allow it (`spreads_year`)
  am / ae   one GROUP BY practice, month over mg / events, with one
            conditional sum `s_*` per distinct `Agg` once a practice-level
            factor is taken out (Σ F × v = F × Σ v, `factor_out`; _n × v;
            sums the pools do not need are guarded to the reported months)
  base      pm + the aggregates `agg_*` = F × s_* (0 when a practice had no rows)
  l_* / r_* per step of the lines' dependency order (lines that read no
            other line are one step): applied + raw amounts, then the
            amounts rounded with the contract's rule (so `LineRef` reads them)
  monthly   bases and the per-month operands of `YearSum`
  ybase, y* pools: the year's sums (window sums over monthly), evaluated on
            the December row, rounded, split into installments
  items     the statement's lines, pools and installments due; crossed once
            with the last CTE (a CTE read twice is computed twice on Spark)
  final     long rows: (kind, practice_id, month_start, line, quarter,
            amount, applied, basis) — see `capdsl.sql.engine.collect`

Numbers are DECIMAL(38, 12). `+ -` are exact; `*` is CAST(a * b AS
DECIMAL(38, 12)) (half away from zero in every supported engine); `/` comes
from `dialects` (explicit integer arithmetic), and so does rounding, except
`half_up` to 1, 0.1, 0.01, … where the dialect's decimal `ROUND` is known to
round half away from zero. Literals keep
their own small precision so that products of a rate and a column fit.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Mapping

from sqlglot import exp

from capdsl.evaluation import tree as t
from capdsl.errors import BackendError, UsageError, error
from capdsl.evaluation.periods import Period, month_end, months_of_year
from capdsl.sql.dialects import DEC, Dialect, cast, dec, get, num
from capdsl.sql.query import FAIL_TAG, FailSite, Options, Query  # noqa: F401  (Options: re-exported)

TABLES = ("members", "practices", "events", "measures")
_SQL_TYPE = {"bool": "BOOLEAN", "text": "VARCHAR", "date": "DATE", "integer": "BIGINT", "decimal": DEC}
_VALUE_COL = {"bool": "value_bool", "integer": "value_integer", "decimal": "value_decimal", "date": "value_date",
              "text": "value"}
# Columns the query adds to member-month and event rows, beside the author's input columns: a leading
# underscore, which no input name may have (the checker reserves it), so they never collide.
MONTH, AGE, WEIGHT, N = "_month_start", "_age", "_weight", "_n"

@dataclass(frozen=True)
class Compiled:
    """A compiled query and what the Python side needs to read its result."""

    query: exp.Expression
    dialect: Dialect
    months: tuple[date, ...]
    reported: tuple[date, ...]
    fails: tuple  # payload index -> (level, node): a `Fail`, or an `Arith` "/" for division by zero
    lines: tuple[str, ...]  # monthly lines in line order
    pools: tuple[str, ...]
    due: tuple[int, ...]  # quarters whose installments are reported
    wide: exp.Expression  # the engines' result, over the same CTEs (wide_rows)
    items: tuple  # its columns: an `_Item` each (amount, applied[, basis])

    def sql(self, pretty: bool = True) -> str:
        """The long result (`compile --sql`): a row per practice, statement line, pool and installment."""
        return self.query.sql(dialect=self.dialect.name, pretty=pretty, copy=False)

    def fetch_sql(self) -> str:
        """The query as an engine runs it (read by `engine.collect_wide`): one row per practice-month,
        amounts and bases as text, which drivers hand to Python faster than their exact-decimal
        type (DuckDB, 40,000 values: ~170 ms → ~80 ms), and `Decimal(text)` is exact."""
        with_ = self.query.args["with_"].sql(dialect=self.dialect.name, copy=False)
        return f"{with_} {self.wide.sql(dialect=self.dialect.name, copy=False)}"

    def runnable(self) -> Query:
        """What an engine runs and reads, without the sqlglot trees (so it can be cached)."""
        fails = tuple((level, FailSite(getattr(node, "code", None), getattr(node, "message", None), node.origin))
                      for level, node in self.fails)
        return Query(self.fetch_sql(), self.dialect.name, self.months, fails, self.lines, self.pools,
                     tuple((it.kind, it.line, it.quarter, it.basis is not None) for it in self.items))


def run_months(program: t.Program, period: Period) -> tuple[tuple[date, ...], tuple[int, ...]]:
    """Months to evaluate and the pool quarters due: pools need the whole year."""
    due = tuple(sorted({(m.month - 1) // 3 + 1 for m in period.months if m.month % 3 == 0}))
    if program.has_pools and due:
        return months_of_year(period.year), due
    return tuple(period.months), ()


def compile_query(program: t.Program, period: Period, dialect: str = "duckdb",
                  tables: Mapping[str, str] | None = None, params: Mapping[str, object] | None = None,
                  options: Options = Options()) -> Compiled:
    return _Compiler(program, period, get(dialect), check_tables(tables), dict(params or {}), options).build()


def check_tables(tables: Mapping[str, str] | None) -> dict[str, str]:
    """The table names given for members, practices, events and measures; anything else, or an
    empty name, is a usage error (E0912) rather than a table silently left at its default name."""
    out, problems = {}, []
    for name, value in (tables or {}).items():
        if name not in TABLES:
            close = difflib.get_close_matches(str(name), TABLES, n=1)
            problems.append(error("E0912", f"--table {name}=…: there is no input table {str(name)!r}",
                                  hint=(f"did you mean {close[0]!r}? " if close else "")
                                  + "the tables are " + ", ".join(TABLES)))
        elif not str(value or "").strip():
            problems.append(error("E0912", f"--table {name}= names no table",
                                  hint=f"e.g. --table {name}=warehouse.{name}"))
        else:
            out[name] = str(value).strip()
    if problems:
        raise UsageError(problems)
    return out


# ─────────────────────────────── helpers ──────────────────────────────────

def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(exp.to_identifier(name), table=exp.to_identifier(table) if table else None)


def lit(value) -> exp.Expression:
    if isinstance(value, bool):
        return exp.true() if value else exp.false()
    if isinstance(value, (int, Decimal)):
        text = format(Decimal(value), "f")
        return exp.Neg(this=num(text[1:])) if text.startswith("-") else num(text)
    if isinstance(value, date):
        return cast(exp.Literal.string(value.isoformat()), "DATE")
    return exp.Literal.string(str(value))


def null(kind: str) -> exp.Expression:
    return cast(exp.Null(), _SQL_TYPE[kind])


def paren(e: exp.Expression) -> exp.Expression:
    return e if isinstance(e, (exp.Column, exp.Literal, exp.Paren, exp.Cast, exp.Anonymous)) else exp.Paren(this=e)


def case(ifs: list[tuple[exp.Expression, exp.Expression]], default: exp.Expression | None = None) -> exp.Expression:
    if not ifs:
        return default if default is not None else exp.Null()
    return exp.Case(ifs=[exp.If(this=c, true=v) for c, v in ifs], default=default)


def concat(*parts: exp.Expression) -> exp.Expression:
    out = parts[0]
    for p in parts[1:]:
        out = exp.DPipe(this=out, expression=p, safe=True)
    return out


def text(e: exp.Expression) -> exp.Expression:
    return cast(e, "VARCHAR")


def _is_literal(e: exp.Expression) -> bool:
    return isinstance(e, exp.Literal) or (isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal))


@dataclass(frozen=True)
class _Scope:
    """Where an expression is evaluated: which row aliases hold which columns."""

    level: str  # member | event | practice | year
    row: str | None = None  # alias of the member-month or event row
    pm: str | None = None  # alias of the practice-month columns (None: unqualified)


@dataclass
class _Plan:
    """Columns the query computes once: aggregates and year sums, keyed by tree node."""

    aggs: dict = field(default_factory=dict)  # Agg -> column name
    years: dict = field(default_factory=dict)  # YearSum -> column name
    sums: dict = field(default_factory=dict)  # (kind, source, expr, where) -> column name of am / ae
    factors: dict = field(default_factory=dict)  # Agg -> (factor or None, its sum's column, the sum)
    year_sums: set = field(default_factory=set)  # sums some pool reads in every month
    deferred: set = field(default_factory=set)  # sums whose failures wait for a reader (failure)


class _Compiler:
    def __init__(self, program: t.Program, period: Period, dialect: Dialect, tables: dict, params: dict,
                 options: Options):
        self.p = program
        self.d = dialect
        self.tables = tables
        self.params = params
        self.o = options
        self.months, self.due = run_months(program, period)
        self.reported = tuple(period.months)
        year_lines, year_aggs = t.year_closure(program)
        self.year_lines = year_lines  # monthly lines the pools read in every month
        self.year_aggs = {t.inline(a, program) for a in year_aggs}  # as in plan.aggs
        self.grouped = len(self.months) > len(self.reported)  # see mg_query
        self.spread = False  # see spreads_year (set once the year sums are known)
        self.deferring = False  # see failure
        self.fails: list = []
        self.plan = _Plan()
        self.practice_cols: dict[str, str] = {}
        self.member_cols: dict[str, str] = {}
        self.event_cols: dict[str, str] = {}
        self.measure_uses: dict[str, set] = {}
        self.lines = [program.line(n) for n in program.line_order if program.line(n).kind == "line"]
        self.pool_names = frozenset(line.name for line in program.lines if line.kind == "pool")
        self.pools = [program.line(n) for n in program.line_order if program.line(n).kind == "pool"] \
            if self.due else []
        self.inl = {}

    # ─────────────────────────── inputs ───────────────────────────
    def source(self, name: str) -> exp.Expression:
        given = self.tables.get(name, name)
        if given.lower().startswith("parquet.`"):  # Spark's parquet.`/path`: a table name as written
            return exp.to_table(given, dialect=self.d.name)
        if given.lower().endswith((".parquet", ".pq")) or "/" in given:
            return self.d.file_source(given)
        return exp.to_table(given)

    def input_table(self, name: str) -> exp.Expression:
        """The members, practices or events rows the query reads: the table itself from a loaded
        panel; from warehouse tables (`Options.inputs`), a projection of the columns the query reads
        that applies the loader's rules (`warehouse_column`)."""
        if self.o.inputs != "warehouse":
            return self.source(name)
        needed = {"members": ["practice_id", "birth_date", "enrolled_from", "enrolled_to",
                              *sorted(self.member_cols)],
                  "practices": ["practice_id", *sorted(self.practice_cols)],
                  "events": ["practice_id", "date", "code", "quantity", *sorted(self.event_cols)]}[name]
        names = list(dict.fromkeys(needed))  # in order, once
        specs = {n: self.column_spec(name, n) for n in names}
        optional = [n for n in names if specs[n][2]] if self.d.absent_columns else []
        # with a LATERAL (below) the inner names are `_c<i>`: DuckDB would bind an unqualified
        # `x` in `COALESCE(x, 0) AS x` to the alias being defined, not to the enclosing row
        inner_name = (lambda i, n: f"_c{i}") if optional else (lambda i, n: n)  # noqa: E731
        outs = [exp.alias_(self.warehouse_column(name, n, *specs[n]), inner_name(i, n), copy=False)
                for i, n in enumerate(names)]
        if self.o.row_column:
            outs.append(col(self.o.row_column, "_src"))
        inner = exp.select(*outs, copy=False).from_(exp.alias_(self.source(name), "_src", copy=False), copy=False)
        if not optional:
            return exp.Subquery(this=inner)
        # A column that may be absent is named unqualified: SQL resolves it in the table first, and
        # only when the table has no such column in the enclosing one-row table of its defaults.
        defaults = exp.select(*[exp.alias_(lit(specs[n][1]) if specs[n][1] is not None else null(specs[n][0]), n,
                                           copy=False) for n in optional], copy=False)
        lateral = exp.Lateral(this=exp.Subquery(this=inner), alias=exp.TableAlias(this=exp.to_identifier("_in")))
        renamed = [exp.alias_(col(f"_c{i}", "_in"), n, copy=False) for i, n in enumerate(names)]
        renamed += [col(self.o.row_column, "_in")] if self.o.row_column else []
        rows = exp.select(*renamed, copy=False).from_(
            exp.Subquery(this=defaults, alias=exp.TableAlias(this=exp.to_identifier("_dflt"))), copy=False)
        rows.append("joins", exp.Join(this=lateral, kind="CROSS"))
        return exp.Subquery(this=rows)

    def column_spec(self, table: str, name: str) -> tuple[str, object, bool]:
        """(kind, default, whether the column may be absent) of an input column: as the contract
        declares it, else as docs/inputs.md defines the canonical column."""
        scope = table[:-1]
        for c in self.p.columns:
            if c.table == scope and c.name == name and c.needed_by != "built-in":
                return c.kind, c.default, not c.required
        kind, default, optional = _CANONICAL.get((table, name), ("text", None, False))
        return kind, default, optional

    def warehouse_column(self, table: str, name: str, kind: str, default, optional: bool) -> exp.Expression:
        """A warehouse column read as the panel loader reads a file's: text trimmed and a blank text
        empty; an empty value takes the default; an empty required value stops the query (E0705)."""
        value = col(name) if optional else col(name, "_src")
        if kind == "text" and name != "practice_id":  # ids are matched as stored
            value = exp.Nullif(this=exp.Trim(this=value), expression=exp.Literal.string(""))
        if default is not None:
            return exp.Coalesce(this=value, expressions=[lit(default)])
        if optional:
            return value
        site = t.Fail("E0705", f"{table}.{name} is empty in a row; the column is required")
        return case([(exp.Is(this=value.copy(), expression=exp.Null()),
                      self.raised(self.input_message(site, col("practice_id", "_src"), None), kind))], value)

    def input_message(self, site: t.Fail, pid: exp.Expression, detail: exp.Expression | None) -> exp.Expression:
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

    def measures_query(self) -> exp.Expression:
        """Warehouse measures as the loader reads them: trimmed, the period in upper case
        (`2011-q4` is `2011-Q4`), a blank value empty; only the measures the query reads."""
        trimmed = lambda name: exp.Nullif(this=exp.Trim(this=col(name)), expression=exp.Literal.string(""))  # noqa
        names = [exp.Literal.string(n) for n in sorted(self.measure_uses)]
        return exp.select(col("practice_id"), exp.alias_(exp.Upper(this=trimmed("period")), "period", copy=False),
                          exp.alias_(exp.Trim(this=col("measure")), "measure", copy=False),
                          exp.alias_(trimmed("value"), "value", copy=False), copy=False).from_(
            self.source("measures"), copy=False).where(exp.In(this=exp.Trim(this=col("measure")), expressions=names),
                                                        copy=False)

    def measures_check(self) -> exp.Expression:
        """One row: the payload of the first measures row the loader would refuse (a period that is
        not YYYY, YYYY-Qn or YYYY-MM, an empty value, a value that is not of the measure's type, a
        second row for a practice, period and measure), else NULL. `prac` stops the query on it, so a
        bad row never reads as a missing one (0 paid, silently)."""
        value, period, pid = col("value"), col("period"), col("practice_id")
        bad = [(exp.Is(this=pid.copy(), expression=exp.Null()),
                self.input_message(t.Fail("E0705", "measures.practice_id is empty in a row; the column is required"),
                                   None, None)),
               (exp.Not(this=exp.Coalesce(this=_regexp(period.copy(), _PERIOD), expressions=[exp.false()])),
                self.input_message(t.Fail("E0704", "a measures row has a period that is not YYYY, YYYY-Qn or YYYY-MM"),
                                   pid.copy(), period.copy())),
               (exp.Is(this=value.copy(), expression=exp.Null()),
                self.input_message(t.Fail("E0705", "measures.value is empty in a row; the column is required"),
                                   pid.copy(), period.copy()))]
        for name, uses in sorted(self.measure_uses.items()):
            kind = sorted(uses)[0][0]
            if kind == "text":
                continue
            site = t.Fail("E0704", f"measure {name}: a value is not a valid {_KIND_WORD[kind]} ({_HINT[kind]})")
            bad.append((exp.and_(exp.EQ(this=col("measure"), expression=exp.Literal.string(name)),
                                 exp.Not(this=paren(_valid(value.copy(), kind))), copy=False),
                        self.input_message(site, pid.copy(), value.copy())))
        rows = exp.select(exp.alias_(case(bad, None), "_bad", copy=False), copy=False).from_("msr", copy=False)
        twice = exp.select(exp.alias_(exp.Min(this=self.input_message(t.Fail(
            "E0706", "measures has two rows for one practice, period and measure"), pid.copy(),
            concat(period.copy(), exp.Literal.string(" "), col("measure")))), "_bad", copy=False), copy=False).from_(
            "msr", copy=False).group_by(pid.copy(), period.copy(), col("measure"), copy=False).having(
            exp.GT(this=exp.Count(this=exp.Star()), expression=num(1)), copy=False)
        both = exp.union(rows, twice, distinct=False, copy=False)
        return exp.select(exp.alias_(exp.Min(this=col("_bad")), "_bad", copy=False), copy=False).from_(
            exp.Subquery(this=both, alias=exp.TableAlias(this=exp.to_identifier("_c"))), copy=False)

    def tree(self, node: t.Node | None) -> t.Node | None:
        if node is None:
            return None
        key = id(node)
        if key not in self.inl:
            self.inl[key] = (node, t.inline(node, self.p))
        return self.inl[key][1]

    def _collect(self) -> None:
        """Aggregates, year sums and the columns and measures the program reads."""
        roots = []
        for line in self.lines + self.pools:
            roots += [self.tree(x) for x in (line.amount, line.applies, line.basis) if x is not None]
            roots += [self.tree(i.when) for i in line.installments if i.when is not None]
        for root in roots:
            for node in t.walk(root):
                if isinstance(node, t.Agg) and node not in self.plan.aggs:
                    self.plan.aggs[node] = f"agg_{len(self.plan.aggs) + 1}"
                    factor, inner = self.factor_out(node)
                    key = (inner.kind, inner.source, inner.expr, inner.where)
                    name = self.plan.sums.setdefault(key, f"s_{len(self.plan.sums) + 1}")
                    self.plan.factors[node] = (factor, name, inner)
                    if node in self.year_aggs:
                        self.plan.year_sums.add(name)
                elif isinstance(node, t.YearSum) and node not in self.plan.years:
                    self.plan.years[node] = f"ys_{len(self.plan.years) + 1}"
                elif isinstance(node, t.Col):
                    if node.table == "practice" and node.name != "practice_id":
                        self.practice_cols[node.name] = node.kind
                    elif node.table == "member" and node.name != "age":
                        self.member_cols[node.name] = node.kind
                    elif node.table == "event":
                        self.event_cols[node.name] = node.kind
                elif isinstance(node, t.Measure):
                    self.measure_uses.setdefault(node.name, set()).add((node.kind, node.period))
        # a sum that may fail and that no reader is sure to evaluate defers its failure (failure)
        sure = set()
        for line in self.lines:
            for x in ((line.applies, line.basis) if line.applies is not None else (line.amount, line.basis)):
                sure |= _surely_read(self.tree(x)) if x is not None else set()
        for node in self.plan.years:
            sure |= _surely_read(node.operand)
        for agg, (_, name, inner) in self.plan.factors.items():
            if _raises(inner):
                self.plan.deferred.add(name)
        for agg in sure:
            self.plan.deferred.discard(self.plan.factors[agg][1])

    def factor_out(self, agg: t.Agg) -> tuple[t.Node | None, t.Agg]:
        """Σ (F × v) over members = F × Σ v when F is the same for every member of the practice-month
        (a tier, a rate): F is then computed once per practice-month, and the rows sum v alone, a
        narrow decimal (Spark adds those as longs, and multiplies any decimal as BigDecimal). Exact
        when F × v needs at most 12 places (the types are known and small): then so does F × Σ v.
        Not with pro-rata weights (w × F × v is rounded per row), nor when F may stop the query (a
        practice with no members in the month must not evaluate it)."""
        expr = agg.expr
        if (agg.kind != "sum" or agg.source != "members" or self.p.exposure == "pro_rata"
                or not isinstance(expr, t.Arith) or expr.op != "*" or self.numeric_type(expr) is None):
            return None, agg
        for factor, rest in ((expr.left, expr.right), (expr.right, expr.left)):
            if _practice_level(factor) and not _raises(factor):
                inner_factor, inner = self.factor_out(t.Agg("sum", "members", rest, agg.where, agg.origin))
                if inner_factor is not None:
                    factor = t.Arith("*", factor, inner_factor)
                return factor, inner
        return None, agg

    # ─────────────────────────── expressions ───────────────────────────
    def fail(self, node, scope: _Scope, kind: str | None, null_type: str | None = None) -> exp.Expression:
        """Raise with `fail_message`'s payload; NULL while `deferring` (see `failure`), typed
        `null_type` if given (a band's own narrow type: see `t.Case` in `ex`)."""
        if self.deferring:
            if null_type is not None:
                return cast(exp.Null(), null_type)
            return null(kind) if kind is not None else exp.Null()
        return self.raised(self.fail_message(node, scope), kind)

    def raised(self, message: exp.Expression, kind: str | None) -> exp.Expression:
        raised = self.d.raise_error(message)
        if self.d.name == "postgres" and kind is not None:
            raised = cast(text(raised), _SQL_TYPE[kind] if kind in _SQL_TYPE else kind)
        return raised

    def fail_message(self, node, scope: _Scope) -> exp.Expression:
        """A payload `capdsl-fail|index|level|row|age||practice_id|capdsl-end` (events:
        `row|len(code)|code|practice_id`), parsed back by `engine.translate`."""
        index = len(self.fails)
        self.fails.append((scope.level, node))
        row = scope.row
        rowno = text(col(self.o.row_column, row)) if (self.o.row_column and row) else exp.Literal.string("?")
        pid = col("practice_id", row or scope.pm)
        parts = [exp.Literal.string(f"{FAIL_TAG}|{index}|{scope.level}|"), exp.Coalesce(this=rowno, expressions=[
            exp.Literal.string("?")]), exp.Literal.string("|")]
        if scope.level == "member":
            parts += [exp.Coalesce(this=text(col(AGE, row)), expressions=[exp.Literal.string("?")]),
                      exp.Literal.string("|")]  # age is NULL in year-only groups (mg_query)
        elif scope.level == "event":
            code = exp.Coalesce(this=col("code", row), expressions=[exp.Literal.string("")])
            parts += [text(exp.Length(this=code)), exp.Literal.string("|"), code]
        else:
            parts += [exp.Literal.string("|")]
        parts += [exp.Literal.string("|"), pid, exp.Literal.string("|capdsl-end")]
        if self.o.inputs == "warehouse" and getattr(node, "message", None):  # readable where it is run
            parts[-1] = exp.Literal.string(f"|capdsl-end {node.code} {node.message}")
        return concat(*parts)

    def division_message(self, node: t.Arith, s: _Scope) -> exp.Expression:
        index = len(self.fails)
        self.fails.append(("division", node))
        pid = col("practice_id", s.row or s.pm)
        end = "|capdsl-end E0803 division by zero" if self.o.inputs == "warehouse" else "|capdsl-end"
        return concat(exp.Literal.string(f"{FAIL_TAG}|{index}|division|?||"), pid, exp.Literal.string(end))

    def failure(self, node: t.Node, s: _Scope) -> exp.Expression | None:
        """The payload of the first failure evaluating `node` would meet, in the interpreter's order,
        else NULL (None: it cannot fail). With `deferring` set, a row-level aggregate sums its values
        without raising and keeps this payload apart (`deferred`): the query raises only where a line
        reads the aggregate, as the interpreter evaluates an aggregate on first use."""
        if not _raises(node):
            return None
        value = lambda n: self.ex(n, s)  # noqa: E731  (deferring: never raises)
        is_null = lambda e: exp.Is(this=e, expression=exp.Null())  # noqa: E731
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

    def kind_of(self, node: t.Node) -> str:
        if isinstance(node, (t.Const, t.Col, t.Param, t.Measure)):
            return "integer" if node.kind == "integer" else node.kind
        if isinstance(node, (t.Cmp, t.And, t.Or, t.Not, t.In, t.Present)):
            return "bool"
        if isinstance(node, t.MonthStart):
            return "date"
        if isinstance(node, t.Case):
            kinds = [self.kind_of(v) for _, v in node.whens] + (
                [] if isinstance(node.otherwise, t.Fail) else [self.kind_of(node.otherwise)])
            return _unify(kinds)
        if isinstance(node, t.Coalesce):
            return _unify([self.kind_of(node.operand), self.kind_of(node.default)])
        if isinstance(node, t.MinMax):
            return _unify([self.kind_of(a) for a in node.args])
        if isinstance(node, (t.Neg, t.Abs)):
            return self.kind_of(node.operand)
        if isinstance(node, t.Arith):
            both = {self.kind_of(node.left), self.kind_of(node.right)}
            return "integer" if both == {"integer"} and node.op != "/" else "decimal"
        if isinstance(node, t.Agg):
            return "integer" if (node.kind == "count" and node.source == "members"
                                 and self.p.exposure != "pro_rata") else "decimal"
        return "decimal"

    def ex(self, node: t.Node, s: _Scope) -> exp.Expression:
        cls = type(node)
        if cls is t.Const:
            return lit(node.value)
        if cls is t.Param:
            return self.param(node)
        if cls is t.MonthStart:
            return col(MONTH, s.row) if s.level in ("member", "event") else col("month_start", s.pm)
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
            op = {"=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}[node.op]
            return op(this=self.ex(node.left, s), expression=self.ex(node.right, s))
        if cls in (t.And, t.Or):
            if any(_raises(i) for i in node.items[1:]):
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
        if cls is t.Not:
            return exp.Not(this=paren(self.ex(node.operand, s)))
        if cls is t.In:
            return exp.In(this=self.ex(node.operand, s), expressions=[self.ex(o, s) for o in node.options])
        if cls is t.Present:
            return exp.Not(this=exp.Is(this=self.ex(node.operand, s), expression=exp.Null()))
        if cls is t.Coalesce:
            return exp.Coalesce(this=self.ex(node.operand, s), expressions=[self.ex(node.default, s)])
        if cls is t.Fail:
            return self.fail(node, s, None)
        if cls is t.Case:
            kind = self.kind_of(node)
            if isinstance(node.otherwise, t.Fail):
                # a deferred failure's NULL must not widen the case: `numeric_type` (and so
                # `exact_product`) counts the values only, and a DECIMAL(38, 12) NULL made a product
                # of two bands DECIMAL(38, 24), which overflowed once weighted pro rata
                known = self.numeric_type(node) if kind == "decimal" else None
                otherwise = self.fail(node.otherwise, s, kind, f"DECIMAL({known[0]}, {known[1]})" if known else None)
            else:
                otherwise = self.ex(node.otherwise, s)
            whens = [(self.ex(c, s), self.ex(v, s)) for c, v in node.whens]
            if kind == "decimal" and self.numeric_type(node) is None:
                # values of unknown types (sums of different scales) are cast: DuckDB unifies
                # DECIMAL(38, 1) and DECIMAL(38, 2) to DECIMAL(38, 1), and 0.01 became 0.0
                whens, otherwise = [(c, dec(v)) for c, v in whens], dec(otherwise)
            return case(whens, otherwise)
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
            if s.level != "practice":
                raise self.unsupported("an aggregate outside a monthly line (e.g. in a pool, outside `over year`)")
            inner = self.plan.factors[node][1]
            if inner in self.plan.deferred:
                failed = col(f"fail__{inner}")
                return case([(exp.Not(this=exp.Is(this=failed, expression=exp.Null())),
                              self.raised(failed.copy(), "decimal"))], col(self.plan.aggs[node]))
            return col(self.plan.aggs[node])
        if cls is t.LineRef:
            if node.name in self.pool_names:  # what the pool paid in the year (pool_layers)
                if s.level != "year":
                    raise self.unsupported(f"the pool `{node.name}` read outside a pool")
                return col(f"ypaid__{node.name}")
            return col(f"amt__{node.name}")
        if cls is t.YearSum:
            if s.level != "year":
                raise self.unsupported("`over year` outside a pool amount")
            return col(f"ysum__{self.plan.years[node]}")
        raise self.unsupported(cls.__name__)

    def unsupported(self, what: str) -> BackendError:
        return BackendError(error("E0921", f"the {self.d.name} backend cannot compile {what}"))

    def param(self, node: t.Param) -> exp.Expression:
        if node.name in self.params and self.params[node.name] is not None:
            return lit(self.params[node.name])
        declared = self.p.params.get(node.name)
        if declared is not None and declared.default is not None:
            return lit(declared.default)
        return exp.Placeholder(this=node.name)

    def column(self, node: t.Col, s: _Scope) -> exp.Expression:
        if node.table == "practice":
            name = "practice_id" if node.name == "practice_id" else f"p__{node.name}"
            return col(name, s.pm)
        if node.table == "member":
            if s.level != "member":
                raise self.unsupported(f"member.{node.name} outside an aggregate over members")
            return col(AGE if node.name == "age" else node.name, s.row)
        if s.level != "event":
            raise self.unsupported(f"event.{node.name} outside an aggregate over events")
        return col(node.name, s.row)

    def arith(self, node: t.Arith, s: _Scope) -> exp.Expression:
        a, b = self.ex(node.left, s), self.ex(node.right, s)
        ints = self.kind_of(node.left) == "integer" and self.kind_of(node.right) == "integer"
        if node.op == "+":
            return exp.Add(this=paren(a), expression=paren(b))
        if node.op == "-":
            return exp.Sub(this=paren(a), expression=paren(b))
        if node.op == "*":
            if ints or self.exact_product(node):
                return exp.Mul(this=paren(a), expression=paren(b))
            # literals keep their own precision so a product of a rate and a column fits
            a = a if _is_literal(a) else dec(a)
            b = b if _is_literal(b) else dec(b)
            return dec(exp.Mul(this=paren(a), expression=paren(b)))
        on_zero = exp.Null() if self.deferring else self.raised(self.division_message(node, s), DEC)
        return self.d.fixed_div(a, b, on_zero)

    def exact_product(self, node: t.Arith) -> bool:
        """Whether a product is exact in the operands' own types (no rounding needed, no cast):
        both have known small types whose scales add up to at most 12 and whose precisions fit
        38 digits. Band and tier values times each other are the hot path of member sums."""
        return self.numeric_type(node) is not None

    def numeric_type(self, node: t.Node) -> tuple[int, int] | None:
        """(precision, scale) of a number as emitted, when small and known; None otherwise."""
        cls = type(node)
        if cls is t.Const and node.kind in ("decimal", "integer") and not isinstance(node.value, bool):
            sign, digits, exponent = Decimal(node.value).as_tuple()
            scale = max(0, -exponent)
            return max(len(digits), scale + 1, 10 if scale == 0 else 0), scale
        if cls is t.Col and node.table == "member" and node.name == "age":
            return 19, 0
        if cls is t.Case:
            values = [v for _, v in node.whens] + ([] if isinstance(node.otherwise, t.Fail) else [node.otherwise])
            types = [self.numeric_type(v) for v in values]
            if not types or any(x is None for x in types):
                return None
            scale = max(x[1] for x in types)
            whole = max(x[0] - x[1] for x in types)
            return (whole + scale, scale) if whole + scale <= 38 else None
        if cls is t.Arith and node.op == "*":
            a, b = self.numeric_type(node.left), self.numeric_type(node.right)
            if a is None or b is None or a[1] + b[1] > 12 or a[0] + b[0] > 38:
                return None
            return a[0] + b[0], a[1] + b[1]
        return None

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

    # ─────────────────────────── the query ───────────────────────────
    def spreads_year(self) -> bool:
        """Whether the member-months read only for the pools can be added up per practice, onto one
        month's row, instead of per month (a hand-written query's GROUP BY practice; at 10 M members
        a second key costs Spark ~6 s). Exact when every year sum is affine in its aggregates with
        coefficients that are the same in every month, Σ_m (F × a_m + G) = F × Σ_m a_m + 12 G, so
        the sum does not care which month's row holds which part of Σ_m a_m; and when the member
        aggregates read nothing of the month but the member-month itself (age, weight, columns)."""
        if not self.grouped or self.year_lines:
            return False
        if not all(_affine(node.operand) for node in self.plan.years):
            return False
        return not any(_reads_month(agg) for agg in self.year_aggs if agg.source == "members")

    def build(self) -> Compiled:
        self._collect()
        self.spread = self.spreads_year()
        ctes: list[tuple[str, exp.Expression]] = []
        add = lambda name, q: ctes.append((name, q))  # noqa: E731
        add("months", self.months_query())
        if self.o.inputs == "warehouse" and self.measure_uses:
            add("msr", self.measures_query())
            add("mcheck", self.measures_check())
        add("prac", self.prac_query())
        add("pm", self.pm_query())
        inner = {name: agg for _, name, agg in self.plan.factors.values()}
        member_aggs = {a: n for n, a in inner.items() if a.source == "members"}
        event_aggs = {a: n for n, a in inner.items() if a.source == "events"}
        if member_aggs:
            add("mm", self.mm_query())
            add("mg", self.mg_query())
            add("am", self.agg_query("mg", member_aggs, "member"))
        if event_aggs:
            add("ev", self.ev_query())
            add("ae", self.agg_query("ev", event_aggs, "event"))
        add("base", self.base_query(bool(member_aggs), bool(event_aggs)))
        prev = "base"
        scope = _Scope("practice")
        # the interpreter evaluates a line in a month read only for the pools only when a pool reads
        # it: elsewhere, what may stop the query is guarded to the reported months
        if self.lines:
            prev = self.line_layers(self.lines, prev, scope, add, lambda line: col("reported") if (
                self.grouped and line.name not in self.year_lines) else None)
        extra = []
        for line in self.lines:
            if line.basis is not None:
                value = case([(col("reported"), self.ex(self.tree(line.basis), scope))], None)
                extra.append(exp.alias_(dec(value), f"basis__{line.name}", copy=False))
        for node, name in self.plan.years.items():
            extra.append(exp.alias_(self.ex(node.operand, scope), name, copy=False))
        add("monthly", exp.select(exp.Star(), *extra, copy=False).from_(prev, copy=False))
        items = [_Item(line.name, "line", None, f"amt__{line.name}", f"ok__{line.name}",
                       f"basis__{line.name}" if line.basis is not None else None) for line in self.lines]
        source = "monthly"
        if self.pools:
            source, pool_items = self.pool_layers(add)
            items += pool_items
        query = self.practice_rows()
        if items:
            query = exp.union(query, self.statement_rows(source, items, add), distinct=False, copy=False)
        with_ = exp.With(expressions=[exp.CTE(this=q, alias=exp.TableAlias(this=exp.to_identifier(n)))
                                     for n, q in ctes])
        query = exp.select(exp.Star(), copy=False).from_(exp.Subquery(this=query, alias=exp.TableAlias(
            this=exp.to_identifier("result"))), copy=False)
        query.set("with_", with_)
        return Compiled(self.d.finish(query), self.d, self.months, self.reported, tuple(self.fails),
                        tuple(line.name for line in self.lines), tuple(p.name for p in self.pools), self.due,
                        self.d.finish(self.wide_rows(source, items)), tuple(items))

    def wide_rows(self, source: str, items: list[_Item]) -> exp.Expression:
        """What the engines fetch: one row per practice and reported month (and December, for the
        pools), a column per item's amount (as text), applied flag and basis; `engine.collect_wide`
        reads it. Against the long rows: HU 10 M, 6,667 rows instead of 40,000, ~70 ms less of
        ~800 (fetching and building the statement rows). Every practice has every month's row."""
        outs = [col("practice_id"), col("month_start"), col("reported")]
        for it in items:
            outs += [text(col(it.amount)), col(it.applied)]
            if it.basis is not None:
                outs.append(text(col(it.basis)))
        where = col("reported")
        if self.pools:
            where = exp.or_(where, exp.EQ(this=col("mon"), expression=num(12)), copy=False)
        return exp.select(*outs, copy=False).from_(source, copy=False).where(where, copy=False)

    def age_reference(self, m: date) -> tuple[int, int]:
        """The day ages are counted on in month `m`: (year, month * 100 + day)."""
        ref = month_end(m) if self.p.age_rule == "month_end" else (
            date(m.year, 1, 1) if self.p.age_rule == "year_start" else m)
        return ref.year, ref.month * 100 + ref.day

    def months_query(self) -> exp.Expression:
        rows = []
        for m in self.months:
            ref_year, ref_md = self.age_reference(m)
            q = (m.month - 1) // 3 + 1
            rows.append((m, month_end(m), month_end(m).day, ref_year, ref_md,
                         f"{m.year:04d}-{m.month:02d}", f"{m.year:04d}-Q{q}", f"{m.year:04d}", m.month,
                         m in self.reported))
        return _items(rows, ("month_start", "month_end", "days", "ref_year", "ref_md", "mkey", "qkey", "ykey",
                             "mon", "reported"))

    def prac_query(self) -> exp.Expression:
        attrs = sorted(self.practice_cols.items())
        if self.o.practices == "derive":
            ids = exp.union(exp.select(col("practice_id"), copy=False).from_(self.source("members"), copy=False),
                            exp.select(col("practice_id"), copy=False).from_(self.source("events"), copy=False), distinct=True, copy=False)
            return self.checked(exp.select(col("practice_id"), *[exp.alias_(null(k), f"p__{n}", copy=False) for n, k in attrs], copy=False).from_(
                exp.Subquery(this=ids, alias=exp.TableAlias(this=exp.to_identifier("ids"))), copy=False))
        sel = exp.select(col("practice_id"), *[exp.alias_(col(n), f"p__{n}", copy=False) for n, _ in attrs],
                         copy=False).from_(exp.alias_(self.input_table("practices"), "_p", copy=False), copy=False)
        return self.checked(sel)

    def checked(self, sel: exp.Select) -> exp.Select:
        """With warehouse measures, `prac` stops the query on a measures row the loader would refuse."""
        if self.o.inputs != "warehouse" or not self.measure_uses:
            return sel
        bad = col("_bad", "mcheck")
        stop = case([(exp.Is(this=bad, expression=exp.Null()), exp.true())], self.raised(bad.copy(), "bool"))
        return sel.join(exp.alias_(exp.to_table("mcheck"), "mcheck", copy=False), join_type="cross",
                        copy=False).where(stop, copy=False)

    def measure_value(self, alias: str, kind: str) -> exp.Expression:
        if self.o.inputs == "warehouse":  # normalised by measures_query, refused by measures_check
            value = col("value", alias)
            return case([(_valid(value, kind), _typed(value.copy(), kind))], None) if kind != "text" else value
        if self.o.measure_values == "text" and kind != "text":
            value = col("value", alias)
            if kind == "bool":
                return exp.In(this=exp.Lower(this=value), expressions=[exp.Literal.string(v) for v in
                                                                        ("true", "1", "yes")])
            return cast(value, _SQL_TYPE[kind])
        return col(_VALUE_COL[kind], alias)

    def pm_query(self) -> exp.Expression:
        sel = exp.select(col("practice_id", "p"), *[col(f"p__{n}", "p") for n in sorted(self.practice_cols)],
                         *[col(c, "mo") for c in ("month_start", "month_end", "days", "ref_year", "ref_md",
                                                  "mon", "reported")], copy=False)
        sel = sel.from_(exp.alias_(exp.to_table("prac"), "p", copy=False), copy=False).join(exp.alias_(exp.to_table("months"), "mo", copy=False),
                                                                    join_type="cross", copy=False)
        for name, uses in sorted(self.measure_uses.items()):
            kind = sorted(uses)[0][0]
            levels = ("m", "q", "y") if any(period == "month" for _, period in uses) else ("y",)
            for lv in levels:
                alias = f"ms_{lv}_{name}"
                on = exp.and_(
                    exp.EQ(this=col("practice_id", alias), expression=col("practice_id", "p")),
                    exp.EQ(this=col("measure", alias), expression=exp.Literal.string(name)),
                    exp.EQ(this=col("period", alias), expression=col(f"{lv}key", "mo")), copy=False)
                table = exp.to_table("msr") if self.o.inputs == "warehouse" else self.source("measures")
                sel = sel.join(exp.alias_(table, alias, copy=False), on=on, join_type="left", copy=False)
            if "m" in levels:
                ifs = [(exp.Not(this=exp.Is(this=col("practice_id", f"ms_{lv}_{name}"), expression=exp.Null())),
                        self.measure_value(f"ms_{lv}_{name}", kind)) for lv in ("m", "q")]
                sel = sel.select(exp.alias_(case(ifs, self.measure_value(f"ms_y_{name}", kind)), f"ms__{name}__m", copy=False), copy=False)
            sel = sel.select(exp.alias_(self.measure_value(f"ms_y_{name}", kind), f"ms__{name}__y", copy=False), copy=False)
        return sel

    def mm_query(self) -> exp.Expression:
        """Member-months: one row per member and month the member counts in."""
        m, mo = "m", "mo"
        born, start, end = (lambda: col("birth_date", m)), (lambda: col("enrolled_from", m)), \
            (lambda: col("enrolled_to", m))
        single = len(self.months) == 1
        if single:  # literal dates let the engine push the filter into the scan (Parquet row groups)
            ms, me = (lambda: lit(self.months[0])), (lambda: lit(month_end(self.months[0])))
        else:
            ms, me = (lambda: col("month_start", mo)), (lambda: col("month_end", mo))
        is_null = lambda e: exp.Is(this=e, expression=exp.Null())  # noqa: E731
        if self.p.exposure == "first_day":
            cond = exp.and_(exp.LTE(this=born(), expression=ms()),
                            exp.Paren(this=exp.or_(is_null(start()), exp.LTE(this=start(), expression=ms()), copy=False)),
                            exp.Paren(this=exp.or_(is_null(end()), exp.GTE(this=end(), expression=ms()), copy=False)), copy=False)
        else:
            cond = exp.and_(exp.LTE(this=born(), expression=me()),
                            exp.Paren(this=exp.or_(is_null(start()), exp.LTE(this=start(), expression=me()), copy=False)),
                            exp.Paren(this=exp.or_(is_null(end()), exp.and_(
                                exp.GTE(this=end(), expression=ms()), exp.GTE(this=end(), expression=born()),
                                exp.Paren(this=exp.or_(is_null(start()), exp.GTE(this=end(), expression=start()), copy=False)), copy=False), copy=False)), copy=False)
        cols = [col("practice_id", m), exp.alias_(col("month_start", mo), MONTH, copy=False)]
        if self.o.row_column:
            cols.append(col(self.o.row_column, m))
        cols += [col(c, m) for c in sorted(self.member_cols) if c != "practice_id"]
        born_md = exp.Add(this=exp.Mul(this=exp.Month(this=born()), expression=num(100)), expression=exp.Day(this=born()))
        # one month: the reference day as literals, which the engine folds (it cannot across the join)
        ref_year, ref_md = (num(v) for v in self.age_reference(self.months[0])) if single else \
            (col("ref_year", mo), col("ref_md", mo))
        age = exp.Sub(this=exp.Sub(this=ref_year, expression=exp.Year(this=born())),
                      expression=case([(exp.LT(this=ref_md, expression=born_md), num(1))], num(0)))
        # never negative: a member born after the age reference day but exposed is a newborn (age 0)
        # (GREATEST written as a plain function: sqlglot's portable form repeats the age for a NULL guard).
        # With first_day exposure the member is born by the month's first day, and the reference day
        # (the month's first or last day) is not earlier: the age cannot be negative, no clamp needed.
        if not (self.p.exposure == "first_day" and self.p.age_rule in ("month_start", "month_end")):
            age = exp.Anonymous(this="GREATEST", expressions=[age, num(0)])
        cols.append(exp.alias_(age, AGE, copy=False))
        if self.p.exposure == "pro_rata":
            first = exp.Greatest(this=exp.Coalesce(this=start(), expressions=[born()]), expressions=[born(), ms()])
            last = exp.Least(this=exp.Coalesce(this=end(), expressions=[me()]), expressions=[me()])
            days = exp.Add(this=exp.Paren(this=self.d.day_diff(last, first)), expression=num(1))
            weight = case([(exp.EQ(this=days, expression=col("days", mo)), dec(num(1)))],
                          self.d.fixed_div(days.copy(), col("days", mo), exp.Null()))
        else:
            weight = num(1)
        cols.append(exp.alias_(weight, WEIGHT, copy=False))
        sel = exp.select(*cols, copy=False).from_(exp.alias_(self.input_table("members"), m, copy=False), copy=False)
        if single:
            return sel.join(exp.alias_(exp.to_table("months"), mo, copy=False), join_type="cross", copy=False).where(cond, copy=False)
        return sel.join(exp.alias_(exp.to_table("months"), mo, copy=False), on=cond, join_type="inner", copy=False)

    def mg_query(self) -> exp.Expression:
        """Member-months grouped by everything an expression can read (practice, month, age, weight,
        member columns), with the group's size `_n`: each aggregate's expression is then computed
        once per group, as the interpreter does. Σ over a group of n equal values is exactly n × value."""
        names = [AGE, WEIGHT] + [c for c in sorted(self.member_cols) if c != "practice_id"]

        def grouped(read: set[str], where: exp.Expression | None, month: date | None = None) -> exp.Expression:
            """Grouped by practice, month and `read`; with `month`, not by month: on that month's row."""
            keys = [col("practice_id")] + ([col(MONTH)] if month is None else []) + [
                col(c) for c in names if c in read]
            outs = [col(c) if c in read else exp.alias_(self.mm_null(c), c, copy=False) for c in names]
            outs.append(exp.alias_(exp.Count(this=exp.Star()), N, copy=False))
            if self.o.row_column:  # the first row of the group names it in error messages
                outs.append(exp.alias_(exp.Min(this=col(self.o.row_column)), self.o.row_column, copy=False))
            sel = exp.select(col("practice_id"), col(MONTH) if month is None else exp.alias_(
                lit(month), MONTH, copy=False), *outs, copy=False).from_("mm", copy=False)
            return (sel.where(where, copy=False) if where is not None else sel).group_by(*keys, copy=False)

        if not self.grouped:
            # no year-only months: grouping costs about what it saves (measured), so each
            # member-month is its own group
            return exp.select(exp.Star(), exp.alias_(num(1), N, copy=False), copy=False).from_("mm", copy=False)
        # months read only for the pools' year sums: grouped by just what those aggregates read,
        # and with `spread` (spreads_year) not by month: their sum lands on the first such month
        reported = exp.In(this=col(MONTH), expressions=[lit(m) for m in self.reported])
        year_read = {WEIGHT}
        for agg in self.year_aggs:
            for node in t.walk(agg):
                if isinstance(node, t.Col) and node.table == "member":
                    year_read.add(AGE if node.name == "age" else node.name)
        first = next(m for m in self.months if m not in self.reported) if self.spread else None

        def each(month: exp.Expression, where: exp.Expression | None) -> exp.Expression:
            """Each member-month its own group (Dialect.groups_member_months false: Spark)."""
            outs = [col(c) for c in names] + [exp.alias_(num(1), N, copy=False)]
            outs += [col(self.o.row_column)] if self.o.row_column else []
            sel = exp.select(col("practice_id"), exp.alias_(month, MONTH, copy=False), *outs,
                             copy=False).from_("mm", copy=False)
            return sel.where(where, copy=False) if where is not None else sel

        if self.spread and not self.d.groups_member_months:
            # one pass, as a hand-written query: the other months' rows are moved onto the first
            # such month, and agg_query's `_month_start IN reported` guards still hold
            return each(case([(reported, col(MONTH))], lit(first)), None)
        rows = grouped(set(names), reported) if self.d.groups_member_months else each(col(MONTH), reported)
        return exp.union(rows, grouped(year_read, exp.Not(this=reported.copy()), first), distinct=False, copy=False)

    def mm_null(self, name: str) -> exp.Expression:
        """A typed NULL for a member-month column a group does not keep."""
        if name == AGE:
            return cast(exp.Null(), "BIGINT")
        if name == WEIGHT:
            return dec(exp.Null())
        return null(self.member_cols[name])

    def event_months(self) -> tuple[date, ...]:
        """The months whose events are read: the reported ones, unless a pool sums events over the year."""
        event_sums = {n for (_, source, _, _), n in self.plan.sums.items() if source == "events"}
        return self.months if event_sums & self.plan.year_sums else self.reported

    def ev_query(self) -> exp.Expression:
        """Events with their month: the columns the aggregates read (never `e.*`, whose names could be
        anything an author declared), `code` for error messages and `quantity` for counts."""
        e, mo = "e", "mo"
        names = ["practice_id", "code", "quantity"] + ([self.o.row_column] if self.o.row_column else [])
        names += [c for c in sorted(self.event_cols) if c not in names]
        sel = exp.select(*[col(c, e) for c in names], exp.alias_(col("month_start", mo), MONTH, copy=False),
                         copy=False).from_(exp.alias_(self.input_table("events"), e, copy=False), copy=False)
        months = self.event_months()
        if len(months) == 1:  # literal dates: the engine filters the scan (Parquet row groups)
            m = months[0]
            cond = exp.and_(exp.GTE(this=col("date", e), expression=lit(m)),
                            exp.LTE(this=col("date", e), expression=lit(month_end(m))),
                            exp.EQ(this=col("month_start", mo), expression=lit(m)), copy=False)
            return sel.join(exp.alias_(exp.to_table("months"), mo, copy=False), join_type="cross", copy=False).where(cond, copy=False)
        cond = exp.and_(exp.GTE(this=col("date", e), expression=col("month_start", mo)),
                        exp.LTE(this=col("date", e), expression=col("month_end", mo)), copy=False)
        if months != self.months:
            cond = exp.and_(cond, col("reported", mo), copy=False)
        return sel.join(exp.alias_(exp.to_table("months"), mo, copy=False), on=cond, join_type="inner", copy=False)

    def agg_query(self, rows: str, aggs: dict, level: str) -> exp.Expression:
        scope = _Scope(level, row=rows, pm="pm")
        needs_pm = False
        outs = []
        months = self.event_months() if level == "event" else self.months  # the rows' months
        for agg, name in aggs.items():
            self.deferring = name in self.plan.deferred
            where = self.ex(agg.where, scope) if agg.where is not None else None
            if agg.kind == "count":
                value = col("quantity", rows) if level == "event" else (
                    dec(exp.Mul(this=col(WEIGHT, rows), expression=col(N, rows)))
                    if self.p.exposure == "pro_rata" else col(N, rows) if self.grouped else None)
            else:
                value = self.ex(agg.expr, scope)
                if level == "member" and self.p.exposure == "pro_rata":
                    value = dec(exp.Mul(this=col(WEIGHT, rows), expression=paren(value)))
                if level == "member" and self.grouped and (name in self.plan.year_sums or self.d.groups_member_months):
                    # a group of _n equal member-months (mg_query): exact
                    value = dec(exp.Mul(this=paren(value), expression=col(N, rows)))
            if name not in self.plan.year_sums and len(months) > len(self.reported):
                # read only in the reported months (t.year_closure): CASE is lazy in every engine,
                # so the other months neither cost the expression nor raise its failures
                month = exp.In(this=col(MONTH, rows), expressions=[lit(m) for m in self.reported])
                where = exp.and_(month, paren(where), copy=False) if where is not None else month
            if value is None:  # one per member-month: a plain count
                total = exp.Count(this=exp.Star()) if where is None else exp.Sum(this=case([(where, num(1))], None))
            else:
                total = exp.Sum(this=case([(where, value)], None) if where is not None else value)
            outs.append(exp.alias_(total, name, copy=False))
            if self.deferring:  # the first failure a row of the sum meets, as a payload
                found = []
                if agg.where is not None and (f := self.failure(agg.where, scope)) is not None:
                    found.append((exp.Not(this=exp.Is(this=f, expression=exp.Null())), f.copy()))
                if agg.expr is not None and agg.kind != "count" and (f := self.failure(agg.expr, scope)) is not None:
                    found.append((where.copy(), f) if where is not None else (exp.true(), f))
                if name not in self.plan.year_sums and len(months) > len(self.reported):
                    reported = exp.In(this=col(MONTH, rows), expressions=[lit(m) for m in self.reported])
                    found = [(exp.and_(reported.copy(), paren(c), copy=False), f) for c, f in found]
                outs.append(exp.alias_(exp.Min(this=case(found, exp.Null())), f"fail__{name}", copy=False))
            self.deferring = False
            for node in t.walk(agg):
                if isinstance(node, (t.Measure, t.MonthStart)) or (isinstance(node, t.Col) and
                                                                   node.table == "practice"):
                    needs_pm = True
        # One month: it is a constant, so the rows are grouped by practice alone (a second
        # hash key cost about a sixth of a large panel's member aggregate, measured)
        single = len(months) == 1
        month = exp.alias_(lit(months[0]) if single else col(MONTH, rows), "month_start", copy=False)
        sel = exp.select(col("practice_id", rows), month, *outs, copy=False).from_(rows, copy=False)
        if needs_pm:
            sel = sel.join("pm", on=exp.and_(
                exp.EQ(this=col("practice_id", "pm"), expression=col("practice_id", rows)),
                exp.EQ(this=col("month_start", "pm"), expression=col(MONTH, rows)), copy=False), join_type="inner", copy=False)
        if single:
            return sel.group_by(col("practice_id", rows), copy=False)
        return sel.group_by(col("practice_id", rows), col(MONTH, rows), copy=False)

    def base_query(self, members: bool, events: bool) -> exp.Expression:
        cols = [exp.Column(this=exp.Star(), table=exp.to_identifier("pm"))]
        sel = exp.select(copy=False).from_("pm", copy=False)
        for agg, name in self.plan.aggs.items():
            factor, inner, _ = self.plan.factors[agg]
            total = exp.Coalesce(this=col(inner, "am" if agg.source == "members" else "ae"), expressions=[num(0)])
            if factor is not None:
                total = dec(exp.Mul(this=paren(self.ex(factor, _Scope("practice", pm="pm"))), expression=total))
            cols.append(exp.alias_(total, name, copy=False))
        for (_, source, _, _), inner in self.plan.sums.items():
            if inner in self.plan.deferred:
                cols.append(exp.alias_(col(f"fail__{inner}", "am" if source == "members" else "ae"),
                                       f"fail__{inner}", copy=False))
        for src, used in (("am", members), ("ae", events)):
            if used:
                sel = sel.join(src, on=exp.and_(
                    exp.EQ(this=col("practice_id", src), expression=col("practice_id", "pm")),
                    exp.EQ(this=col("month_start", src), expression=col("month_start", "pm")), copy=False), join_type="left", copy=False)
        return sel.select(*cols, copy=False)

    def line_layers(self, lines: list[t.LineDef], prev: str, scope: _Scope, add, guard,
                    tag: str | None = None) -> str:
        """Two CTEs per step of the lines' dependency order (`levels`): applied and raw amount, then the
        amount rounded with the contract's rule (so `LineRef` reads a column). Where `guard(line)`
        gives a condition, the line is NULL on rows where it does not hold (nothing there is evaluated).
        `tag` names the CTEs of lines that are one step (`pool_layers` calls it step by step)."""
        for step, level in enumerate(self.levels(lines)):
            raws, rounded = [], []
            for line in level:
                amount_tree, applies_tree = self.tree(line.amount), self.tree(line.applies)
                applies = self.ex(applies_tree, scope) if applies_tree is not None else exp.true()
                amount = self.ex(amount_tree, scope)
                raw = case([(applies.copy(), dec(amount))], dec(num(0))) if applies_tree is not None else dec(amount)
                where = guard(line)
                if where is not None and (_raises(amount_tree) or (applies_tree is not None and _raises(applies_tree))):
                    applies, raw = case([(where.copy(), applies)], None), dec(case([(where, raw)], None))
                raws += [exp.alias_(applies, f"ok__{line.name}", copy=False), exp.alias_(raw, f"raw__{line.name}", copy=False)]
                rounded.append(exp.alias_(self.round(col(f"raw__{line.name}"), self.p.quantum, self.p.rounding_mode),
                                          f"amt__{line.name}", copy=False))
            name = tag or f"{lines[0].kind}s_{step + 1}"
            add(f"l_{name}", exp.select(exp.Star(), *raws, copy=False).from_(prev, copy=False))
            add(f"r_{name}", exp.select(exp.Star(), *rounded, copy=False).from_(f"l_{name}", copy=False))
            prev = f"r_{name}"
        return prev

    def levels(self, lines: list[t.LineDef]) -> list[list[t.LineDef]]:
        """The lines in steps, each reading (`LineRef`) only lines of earlier steps: a CTE per step, not
        per line (DuckDB plans 10 layered CTEs in ~75 ms more than 2). A pool's installment conditions
        count: they may read another pool."""
        step: dict[str, int] = {}
        for line in lines:  # in line_order: a line's references come before it
            refs = [n.name for x in (line.amount, line.applies, *(i.when for i in line.installments))
                    if x is not None for n in t.walk(self.tree(x)) if isinstance(n, t.LineRef)]
            step[line.name] = 1 + max((step[r] for r in refs if r in step), default=-1)
        return [[line for line in lines if step[line.name] == k] for k in range(max(step.values(), default=-1) + 1)]

    def practice_rows(self) -> exp.Expression:
        return exp.select(exp.alias_(exp.Literal.string("practice"), "kind", copy=False), col("practice_id"),
                          exp.alias_(null("date"), "month_start", copy=False), exp.alias_(null("text"), "line", copy=False),
                          exp.alias_(cast(exp.Null(), "INT"), "quarter", copy=False), exp.alias_(null("decimal"), "amount", copy=False),
                          exp.alias_(null("bool"), "applied", copy=False), exp.alias_(null("decimal"), "basis", copy=False), copy=False).from_("prac", copy=False)

    def pool_layers(self, add) -> tuple[str, list[_Item]]:
        """Pools on each practice's December row: the year's sums as window sums over the monthly
        rows (so the monthly CTE is read once: Spark recomputes a CTE per reference), then, step by
        step of the pools' dependency order (`levels`), applied/raw/rounded and the installments. A
        pool another pool reads gets `ypaid__`, the sum of its paid installments (`tree.LineRef`), in
        its step, before the steps of the pools that read it. They are computed on every month's
        row but read on December's only. A checked contract gives a pool the same inputs on every
        row (E0306 keeps monthly values out), but the tree does not promise it: an expression that
        may stop the query is guarded to `mon = 12`."""
        december = lambda: exp.EQ(this=col("mon"), expression=num(12))  # noqa: E731
        sums = [exp.alias_(exp.Window(this=exp.Sum(this=col(name)), partition_by=[col("practice_id")]),
                           f"ysum__{name}", copy=False) for name in self.plan.years.values()]
        add("ybase", exp.select(exp.Star(), *sums, copy=False).from_("monthly", copy=False))
        scope = _Scope("year")
        prev = "ybase"
        read = {n.name for pool in self.pools
                for x in (pool.amount, pool.applies, *(i.when for i in pool.installments)) if x is not None
                for n in t.walk(self.tree(x)) if isinstance(n, t.LineRef) and n.name in self.pool_names}
        items: dict[str, list[_Item]] = {}
        for step, level in enumerate(self.levels(self.pools)):
            prev = self.line_layers(level, prev, scope, add, lambda pool: december(), f"pools_{step + 1}")
            shares, finals = [], []
            for pool in level:
                own = items[pool.name] = [_Item(pool.name, "pool", None, f"amt__{pool.name}", f"ok__{pool.name}")]
                taker = next((i for i in pool.installments if i.share is None), pool.installments[-1])
                amount = col(f"amt__{pool.name}")
                others = []
                for j, inst in enumerate(pool.installments):
                    name = f"{pool.name}__{j}"
                    if inst is not taker:
                        share = self.round(dec(exp.Mul(this=lit(inst.share), expression=amount.copy())),
                                           self.p.quantum, self.p.rounding_mode)
                        shares.append(exp.alias_(share, f"sh__{name}", copy=False))
                        others.append(col(f"sh__{name}"))
                    when = self.tree(inst.when)
                    paid = self.ex(when, scope) if when is not None else exp.true()
                    if when is not None and _raises(when):
                        paid = case([(december(), paid)], None)
                    shares.append(exp.alias_(paid, f"paid__{name}", copy=False))
                paid_parts = []
                for j, inst in enumerate(pool.installments):
                    name = f"{pool.name}__{j}"
                    value = col(f"sh__{name}")
                    if inst is taker:
                        value = amount.copy()
                        for o in others:
                            value = exp.Sub(this=value, expression=o.copy())
                    paid_value = dec(case([(col(f"paid__{name}"), value)], num(0)))
                    finals.append(exp.alias_(paid_value, f"inst__{name}", copy=False))
                    paid_parts.append(paid_value.copy())
                    if inst.quarter in self.due:
                        own.append(_Item(pool.name, "installment", inst.quarter, f"inst__{name}", f"paid__{name}"))
                if pool.name in read:  # exact: each part is DECIMAL(38, 12) and `+` is exact
                    total = paid_parts[0]
                    for part in paid_parts[1:]:
                        total = exp.Add(this=total, expression=part)
                    finals.append(exp.alias_(dec(total), f"ypaid__{pool.name}", copy=False))
            add(f"yshares_{step + 1}", exp.select(exp.Star(), *shares, copy=False).from_(prev, copy=False))
            add(f"yfinal_{step + 1}", exp.select(exp.Star(), *finals, copy=False).from_(
                f"yshares_{step + 1}", copy=False))
            prev = f"yfinal_{step + 1}"
        return prev, [it for pool in self.pools for it in items[pool.name]]  # in line order, as the interpreter

    def statement_rows(self, source: str, items: list[_Item], add) -> exp.Expression:
        """One row per reported practice-month and line, and per practice and pool or installment
        due: `source` (one row per practice-month) crossed with the item list, read once."""
        add("items", _items([(i, it.line, it.kind, it.quarter) for i, it in enumerate(items)],
                            ("idx", "line", "kind", "quarter")))
        idx = col("idx", "it")
        lines = [it for it in items if it.kind == "line"]

        def pick(attr: str) -> exp.Expression:
            return case([(exp.EQ(this=idx, expression=num(i)), col(getattr(it, attr), "x"))
                         for i, it in enumerate(items) if getattr(it, attr) is not None], None)

        is_line = exp.EQ(this=col("kind", "it"), expression=exp.Literal.string("line"))
        if len(lines) == len(items):
            month, where = col("month_start", "x"), col("reported", "x")
        else:
            december = exp.EQ(this=col("mon", "x"), expression=num(12))
            month = case([(is_line.copy(), col("month_start", "x"))], None)
            where = december if not lines else exp.or_(
                exp.and_(is_line.copy(), col("reported", "x"), copy=False),
                exp.and_(exp.Not(this=is_line.copy()), december, copy=False), copy=False)
        return exp.select(col("kind", "it"), col("practice_id", "x"), exp.alias_(month, "month_start", copy=False),
                          col("line", "it"), col("quarter", "it"),
                          exp.alias_(dec(pick("amount")), "amount", copy=False),
                          exp.alias_(pick("applied"), "applied", copy=False),
                          exp.alias_(dec(pick("basis")) if any(it.basis for it in lines) else null("decimal"),
                                     "basis", copy=False), copy=False).from_(
            exp.alias_(exp.to_table(source), "x", copy=False), copy=False).join(
            exp.alias_(exp.to_table("items"), "it", copy=False), join_type="cross", copy=False).where(where, copy=False)


@dataclass(frozen=True)
class _Item:
    """A statement row per practice (and month, for lines): which columns hold its amount."""

    line: str
    kind: str  # line | pool | installment
    quarter: int | None
    amount: str
    applied: str
    basis: str | None = None


def _items(rows: list[tuple], names: tuple[str, ...]) -> exp.Expression:
    """A small literal table: SELECT * FROM (VALUES …) AS items(names) (UNNEST on BigQuery)."""
    def value(v):
        if v is None:
            return cast(exp.Null(), "INT")
        if isinstance(v, (str, bool, date)):
            return lit(v)
        return num(v)

    values = exp.values([tuple(value(v) for v in row) for row in rows], alias="items", columns=list(names))
    return exp.select(exp.Star(), copy=False).from_(values, copy=False)


_CANONICAL = {  # docs/inputs.md: (table, column) -> (kind, default, may be absent)
    ("members", "member_id"): ("text", None, False), ("members", "practice_id"): ("text", None, False),
    ("members", "birth_date"): ("date", None, False), ("members", "sex"): ("text", None, True),
    ("members", "enrolled_from"): ("date", None, True), ("members", "enrolled_to"): ("date", None, True),
    ("practices", "practice_id"): ("text", None, False),
    ("events", "practice_id"): ("text", None, False), ("events", "member_id"): ("text", None, True),
    ("events", "date"): ("date", None, False), ("events", "code"): ("text", None, False),
    ("events", "points"): ("decimal", None, True), ("events", "quantity"): ("decimal", Decimal(1), True),
}
# The panel loader's value rules (capdsl/data/panel.py), as anchored regular expressions every dialect
# reads alike: no backslashes (string escapes differ), `[.]` for a dot.
_NUMBER = "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
_PERCENT = "^[+-]?([0-9]{1,15}[.]?[0-9]*|[.][0-9]+) *%$"
_PERIOD = "^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$"
_KIND_WORD = {"date": "date", "decimal": "number", "integer": "whole number", "bool": "boolean"}
_HINT = {"date": "YYYY-MM-DD", "decimal": "a dot for decimals, at most 10 places, or a percentage such as 15%",
         "integer": "e.g. 3", "bool": "true or false; yes/no and 1/0 are accepted"}


def _regexp(value: exp.Expression, pattern: str) -> exp.Expression:
    return exp.RegexpLike(this=value, expression=exp.Literal.string(pattern))


def _valid(v: exp.Expression, kind: str) -> exp.Expression:
    """Whether the (trimmed, non-empty) text `v` is a value of `kind` as the loader reads it."""
    if kind == "decimal":
        plain = exp.and_(_regexp(v.copy(), _NUMBER), exp.Not(this=_regexp(v.copy(), "[.][0-9]{10}0*[1-9]")),
                         copy=False)
        percent = exp.and_(_regexp(v.copy(), _PERCENT), exp.Not(this=_regexp(v.copy(), "[.][0-9]{8}0*[1-9]")),
                           copy=False)
        return exp.Paren(this=exp.or_(exp.Paren(this=plain), exp.Paren(this=percent), copy=False))
    if kind == "integer":
        return _regexp(v, "^[+-]?[0-9]+([.]0*)?$")
    if kind == "bool":
        return exp.In(this=exp.Lower(this=v), expressions=[exp.Literal.string(x) for x in
                                                           ("true", "false", "1", "0", "yes", "no")])
    if kind == "date":
        return _regexp(v, "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    return exp.true()


def _typed(v: exp.Expression, kind: str) -> exp.Expression:
    """The value of a valid text `v` (`_valid`): "15%" is 0.15, exactly."""
    if kind == "decimal":
        number = cast(exp.Trim(this=exp.Anonymous(this="REPLACE", expressions=[
            v.copy(), exp.Literal.string("%"), exp.Literal.string("")])), "DECIMAL(28, 10)")
        return case([(_regexp(v.copy(), "%$"), dec(exp.Mul(this=number, expression=num("0.01"))))], dec(v))
    if kind == "integer":
        return cast(cast(v, "DECIMAL(38, 10)"), "BIGINT")
    if kind == "bool":
        return exp.In(this=exp.Lower(this=v), expressions=[exp.Literal.string(x) for x in ("true", "1", "yes")])
    if kind == "date":
        return cast(v, "DATE")
    return v


def _practice_level(node: t.Node) -> bool:
    """Reads only the practice-month: the same for every member (and event) of it."""
    return not any(isinstance(n, (t.Agg, t.LineRef, t.YearSum, t.Ref))
                   or (isinstance(n, t.Col) and n.table != "practice") for n in t.walk(node))


def _month_invariant(node: t.Node) -> bool:
    """The same in every month of a practice's year: practice-level, and reads nothing of the month."""
    return _practice_level(node) and not _reads_month(node)


def _affine(node: t.Node) -> bool:
    """A sum of aggregates times month-invariant factors, plus a month-invariant term (exactly:
    `+ - *` are exact in SQL and in the interpreter; `/` and rounding are not, so not here)."""
    if isinstance(node, t.Agg) or _month_invariant(node):
        return True
    if isinstance(node, t.Neg):
        return _affine(node.operand)
    if isinstance(node, t.Arith) and node.op in "+-":
        return _affine(node.left) and _affine(node.right)
    if isinstance(node, t.Arith) and node.op == "*":
        return (_month_invariant(node.left) and _affine(node.right)) or (
            _affine(node.left) and _month_invariant(node.right))
    return False


def _reads_month(node: t.Node) -> bool:
    """Whether it reads something of its month (the month, a monthly measure) besides the member-month."""
    return any(isinstance(n, t.MonthStart) or (isinstance(n, t.Measure) and n.period != "year")
               for n in t.walk(node))


def _surely_read(node: t.Node) -> set:
    """The aggregates the interpreter evaluates whenever it evaluates `node`: not those behind a
    condition (a later `if` branch, a later `and`/`or` item, a default)."""
    out, stack = set(), [node]
    while stack:
        n = stack.pop()
        if isinstance(n, t.Agg):
            out.add(n)
        elif isinstance(n, t.Case):
            stack.append(n.whens[0][0] if n.whens else n.otherwise)
        elif isinstance(n, (t.And, t.Or)):
            stack.append(n.items[0])
        elif isinstance(n, t.Coalesce):
            stack.append(n.operand)
        else:
            stack.extend(t.children(n))
    return out


def _raises(node: t.Node) -> bool:
    """May evaluating this (inlined) node stop the query: a `Fail` or a division."""
    return any(isinstance(n, t.Fail) or (isinstance(n, t.Arith) and n.op == "/") for n in t.walk(node))


def _unify(kinds: list[str]) -> str:
    kinds = [k for k in kinds if k]
    if not kinds:
        return "decimal"
    if all(k == "integer" for k in kinds):
        return "integer"
    if all(k in ("integer", "decimal") for k in kinds):
        return "decimal"
    return kinds[0]
