"""Per-dialect pieces of the SQL compiler: exact division, truncating integer
division, error raising, day differences, file sources.

Everything else the compiler emits is plain ANSI SQL that sqlglot transpiles
(CASE, CAST to DECIMAL(38, 12), GREATEST/LEAST, COALESCE). Only the pieces
whose semantics differ between engines live here, and each is written with
explicit integer arithmetic so that no engine's default rounding is trusted
(the one exception is `round_half_away`: a decimal `ROUND` an engine documents,
and our tests check, as half away from zero):

- `fixed_div(a, b)`: a / b rounded half away from zero to 12 places.
  DuckDB's decimal `/` returns DOUBLE, Spark's adjusts precision, Postgres
  picks a scale; so we compute trunc(a / b × 10^13) exactly and let a CAST to
  DECIMAL(38, 12) round the 13th digit (half away in all of them). Half away
  from zero needs only that 13th digit, so one truncated digit more is exact.
- `idiv(x, q)`: trunc(x / q) for the rounding of amounts to a quantum.
- `raise_error(message)`: stops the query; the message carries a payload the
  Python side turns back into the interpreter's `EvalError`.
"""

from __future__ import annotations

import functools

from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal

from sqlglot import exp

DEC = "DECIMAL(38, 12)"
FIX = 10 ** 12
TEN13 = 10 ** 13
E13 = "0.0000000000001"


@functools.lru_cache(maxsize=None)
def _data_type(name: str) -> exp.DataType:
    return exp.DataType.build(name)


def cast(e: exp.Expression, to: str) -> exp.Expression:
    """CAST without sqlglot's per-call type parse and deep copy of `e` (compile time is
    dominated by them otherwise); the type node is copied, being tiny."""
    dtype = _data_type(to)
    if isinstance(e, exp.Cast) and e.to == dtype:  # as exp.cast: no CAST(CAST(x AS T) AS T)
        return e
    return exp.Cast(this=e, to=dtype.copy())


def dec(e: exp.Expression) -> exp.Expression:
    return cast(e, DEC)


def num(value: int | str) -> exp.Expression:
    return exp.Literal.number(value)


@dataclass(frozen=True)
class Dialect(ABC):
    """A target engine. `name` is the sqlglot dialect name."""

    name: str
    tested: bool = True
    # ROUND(decimal, places) rounds half away from zero (documented, and run by the rounding tests)
    round_half_away: bool = False
    # group the reported member-months by what their aggregates read before evaluating them
    # (members.mg_query): DuckDB then evaluates each band once per group; Spark's hash aggregate on
    # (practice, age) costs more than the expressions it saves, so not there (docs/performance.md)
    groups_member_months: bool = True
    # a warehouse column with a default may be absent (`inputs.input_table`): needs a LATERAL
    # subquery that reads a column of the enclosing row
    absent_columns: bool = True

    # --- errors -------------------------------------------------------------------
    def raise_error(self, message: exp.Expression) -> exp.Expression:
        """An expression that aborts the query with `message` when evaluated."""
        return exp.Anonymous(this="error", expressions=[message])

    # --- arithmetic -----------------------------------------------------------------
    @abstractmethod
    def idiv(self, x: exp.Expression, q: exp.Expression) -> exp.Expression:
        """trunc(x / q) exactly, as DECIMAL(38, 0); x and q are DECIMAL(38, 12)."""

    @abstractmethod
    def fixed_div(self, a: exp.Expression, b: exp.Expression, on_zero: exp.Expression) -> exp.Expression:
        """a / b rounded half away from zero to 12 places; `on_zero` when b = 0."""

    # --- dates -----------------------------------------------------------------------
    def day_diff(self, hi: exp.Expression, lo: exp.Expression) -> exp.Expression:
        """Days from `lo` to `hi` (an integer)."""
        return exp.DateDiff(this=hi, expression=lo, unit=exp.var("DAY"))

    def date_part(self, part: str, d: exp.Expression) -> exp.Expression:
        """The year, month or day of the date `d`, as an integer (Postgres' EXTRACT gives NUMERIC)."""
        fn = {"year": exp.Year, "month": exp.Month, "day": exp.Day}[part]
        return cast(fn(this=d), "INT")

    def make_date(self, year: exp.Expression, month: exp.Expression, day: exp.Expression) -> exp.Expression:
        """The date of three integers."""
        return exp.DateFromParts(year=year, month=month, day=day)

    # --- sources ------------------------------------------------------------------------
    def file_source(self, path: str) -> exp.Expression:
        return exp.Table(this=exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(path)]))

    # --- the finished query ---------------------------------------------------------------
    def finish(self, query: exp.Expression) -> exp.Expression:
        """The query as this dialect needs it typed (BigQuery: exact literals and scales)."""
        return query


class DuckDB(Dialect):
    """Scaled HUGEINT arithmetic: `//` on HUGEINT truncates toward zero."""

    def _scaled(self, e: exp.Expression) -> exp.Expression:
        """The value in units of 10^-12 as HUGEINT (exact: DECIMAL(38, 12) × 10^12 is whole)."""
        if isinstance(e, exp.Literal) and e.is_number:  # a quantum: scale it here, not per row
            return cast(num(str(int(Decimal(e.this).scaleb(12)))), "HUGEINT")
        return cast(exp.Mul(this=dec(e), expression=num(FIX)), "HUGEINT")

    def idiv(self, x, q):
        return cast(exp.IntDiv(this=self._scaled(x), expression=self._scaled(q)), "DECIMAL(38, 0)")

    def fixed_div(self, a, b, on_zero):
        t = exp.IntDiv(this=exp.Mul(this=self._scaled(a), expression=cast(num(TEN13), "HUGEINT")),
                       expression=exp.Nullif(this=self._scaled(b), expression=num(0)))
        scaled = exp.Mul(this=cast(t, "DECIMAL(38, 0)"), expression=num(E13))
        return exp.Coalesce(this=dec(scaled), expressions=[on_zero])


class Postgres(Dialect):
    """NUMERIC is arbitrary precision and `div` truncates exactly."""

    def raise_error(self, message):
        # No error() function: casting the (row-dependent, so never
        # constant-folded) message to integer fails and quotes it.
        return cast(message, "INT")

    def idiv(self, x, q):
        return exp.Anonymous(this="div", expressions=[dec(x), dec(q)])

    def fixed_div(self, a, b, on_zero):
        t = exp.Anonymous(this="div", expressions=[exp.Mul(this=dec(a), expression=num(TEN13)),
                                                    exp.Nullif(this=dec(b), expression=num(0))])
        return exp.Coalesce(this=dec(exp.Mul(this=t, expression=num(E13))), expressions=[dec(on_zero)])

    def day_diff(self, hi, lo):
        return exp.Sub(this=hi, expression=lo)

    def make_date(self, year, month, day):
        # sqlglot writes DATE_FROM_PARTS, which PostgreSQL does not have
        return exp.Anonymous(this="MAKE_DATE", expressions=[cast(year, "INT"), cast(month, "INT"), cast(day, "INT")])

    def file_source(self, path):
        raise _no_files("PostgreSQL", path)

    def finish(self, query):
        """The practice-month layers, from `base` on, as MATERIALIZED CTEs. PostgreSQL inlines a
        CTE read once and pulls the nested subqueries up, putting each column's defining expression
        where it is read: a layer that reads a column several times (a settlement's total, a pool's
        paid amount) then multiplies the expression it stands for, layer after layer, until
        planning takes minutes. These layers hold a row per practice and month, cheap to keep; the
        member-month CTEs before them stay inlined."""
        with_ = query.args.get("with_")
        materialize = False
        for cte in with_.expressions if with_ is not None else ():
            materialize = materialize or cte.alias == "base"
            if materialize:
                cte.set("materialized", True)
        return query


class Spark(Dialect):
    """`DIV` on decimals is exact but returns BIGINT (so quotients must stay below
    9.2e18), `%` keeps the dividend's sign; precision loss must be off
    (spark.sql.decimalOperations.allowPrecisionLoss=false)."""

    def raise_error(self, message):
        return exp.Anonymous(this="raise_error", expressions=[message])

    def idiv(self, x, q):
        # Not `DIV`: it returns BIGINT and wraps silently past 9.2e18. `q` is a literal
        # quantum (or 2), so the decimal quotient keeps all of x's digits and is exact
        # (a quantum with few significant digits cannot leave a fraction within 1e-15 of 1).
        quotient = lambda: exp.Div(this=dec(x.copy()), expression=q.copy())  # noqa: E731
        trunc = exp.Case(ifs=[exp.If(this=exp.GTE(this=dec(x.copy()), expression=num(0)),
                                     true=exp.Floor(this=quotient()))], default=exp.Ceil(this=quotient()))
        return cast(trunc, "DECIMAL(38, 0)")

    def fixed_div(self, a, b, on_zero):
        # Long division: integer part, then 13 digits of the remainder.
        fa, fb = (lambda: dec(a.copy())), (lambda: dec(b.copy()))
        whole = cast(exp.IntDiv(this=fa(), expression=fb()), "DECIMAL(38, 0)")
        rem = exp.Mul(this=exp.Paren(this=exp.Mod(this=fa(), expression=fb())), expression=num(TEN13))
        frac = cast(exp.IntDiv(this=rem, expression=fb()), "DECIMAL(38, 0)")
        value = dec(exp.Add(this=whole, expression=exp.Mul(this=frac, expression=num(E13))))
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=fb(), expression=num(0)), true=on_zero)], default=value)

    def file_source(self, path):
        return exp.Table(this=exp.to_identifier(path, quoted=True), db=exp.to_identifier("parquet"))


class BigQuery(Dialect):
    """BIGNUMERIC and DIV; generated but not run in our tests. BigQuery reads an unprefixed decimal
    literal (`0.01`) as FLOAT64 and has no DECIMAL(38, 12), and sqlglot writes a cast to DECIMAL(p, s)
    as a bare BIGNUMERIC (38 places), which would drop the 12-place rule. So `finish` writes every
    non-integer literal as `CAST('0.01' AS BIGNUMERIC)` and every cast to DECIMAL(p, s) as
    `ROUND(CAST(x AS BIGNUMERIC), s)`: BigQuery documents ROUND as rounding halfway cases away from
    zero, which is the tree's rule."""

    def finish(self, query):
        big = exp.DataType.Type.BIGDECIMAL
        for node in list(query.find_all(exp.Cast)):
            to = node.to
            if to.this != exp.DataType.Type.DECIMAL:
                continue
            params = [p.this for p in to.expressions]
            inner = exp.Cast(this=exp.Literal.string(str(node.this.this)) if isinstance(node.this, exp.Literal)
                             else node.this, to=exp.DataType(this=big))
            node.replace(exp.Round(this=inner, decimals=params[1].copy()) if len(params) > 1 else inner)
        for node in list(query.find_all(exp.Literal)):
            text = str(node.this)
            if node.is_string or (text.isdigit() and len(text) <= 18):  # INT64 holds it exactly
                continue
            node.replace(exp.Cast(this=exp.Literal.string(text), to=exp.DataType(this=big)))
        return query

    def raise_error(self, message):
        return exp.Anonymous(this="ERROR", expressions=[message])

    def idiv(self, x, q):
        return exp.Anonymous(this="DIV", expressions=[dec(x), dec(q)])

    def fixed_div(self, a, b, on_zero):
        t = exp.Anonymous(this="DIV", expressions=[exp.Mul(this=dec(a), expression=num(TEN13)),
                                                    exp.Nullif(this=dec(b), expression=num(0))])
        return exp.Coalesce(this=dec(exp.Mul(this=t, expression=num(E13))), expressions=[on_zero])

    def file_source(self, path):
        raise _no_files("BigQuery", path)


class Snowflake(Dialect):
    """NUMBER(38, s), at most 38 digits in any intermediate value, and no integer division; `/`
    rounds its quotient to max(s1, min(s1 + 6, 12)) places. Generated but not run in our tests
    (tests/test_sql_warehouse.py evaluates the division and rounding with these rules)."""

    def idiv(self, x, q):
        # `q` is a literal quantum (or 2): x / q is exact at 12 places (a quantum with few
        # significant digits leaves no fraction within 1e-12 of 1), so TRUNC of it is exact
        return cast(exp.Anonymous(this="TRUNC", expressions=[exp.Div(this=dec(x), expression=q)]),
                    "DECIMAL(38, 0)")

    def fixed_div(self, a, b, on_zero):
        # Long division on whole numbers: X = |a|·10^12 and Y = |b|·10^12 (at most 26 digits for
        # values below 10^14), q = trunc(X / Y) and then the quotient's 13 next digits in two steps
        # of 6 and 7, so no intermediate value needs more than 33 digits (X·10^13 would need 40).
        # MOD of non-negative numbers and the exact quotient (X - MOD(X, Y)) / Y leave nothing to
        # Snowflake's own rounding; the final CAST rounds the 13th digit half away from zero.
        whole = lambda e: cast(exp.Mul(this=exp.Abs(this=dec(e.copy())), expression=num(FIX)),  # noqa: E731
                               "DECIMAL(38, 0)")
        y = lambda: exp.Nullif(this=whole(b), expression=num(0))  # noqa: E731

        def mod(x):
            return exp.Anonymous(this="MOD", expressions=[x, y()])

        def quotient(x):  # trunc(x / y) of whole numbers x >= 0: exact
            return cast(exp.Div(this=exp.Paren(this=exp.Sub(this=x(), expression=mod(x()))), expression=y()),
                        "DECIMAL(38, 0)")

        x0 = lambda: whole(a)  # noqa: E731
        x1 = lambda: exp.Mul(this=mod(x0()), expression=num(10 ** 6))  # noqa: E731
        x2 = lambda: exp.Mul(this=mod(x1()), expression=num(10 ** 7))  # noqa: E731
        digits = exp.Add(this=exp.Add(this=exp.Mul(this=quotient(x0), expression=num(TEN13)),
                                      expression=exp.Mul(this=quotient(x1), expression=num(10 ** 7))),
                         expression=quotient(x2))
        sign = exp.Mul(this=exp.Anonymous(this="SIGN", expressions=[dec(a.copy())]),
                       expression=exp.Anonymous(this="SIGN", expressions=[dec(b.copy())]))
        value = dec(exp.Mul(this=exp.Mul(this=cast(digits, "DECIMAL(38, 0)"), expression=sign), expression=num(E13)))
        return exp.Coalesce(this=value, expressions=[on_zero])

    def raise_error(self, message):
        # Snowflake has no raise function in plain SQL; a failed numeric cast quotes the text.
        return cast(message, "INT")

    def file_source(self, path):
        raise _no_files("Snowflake", path)


def _no_files(engine: str, path: str):
    from capdsl.errors import UsageError, error

    return UsageError(error("E0912", f"{engine} cannot read a file ({path!r}): the query reads tables",
                            hint="load the file into a table (docs/sql.md) and pass --table NAME=schema.table; "
                                 "the duckdb and spark dialects read Parquet files"))


DIALECTS: dict[str, Dialect] = {
    "duckdb": DuckDB("duckdb", round_half_away=True),
    "postgres": Postgres("postgres", round_half_away=True),
    "spark": Spark("spark", round_half_away=True, groups_member_months=False),
    "bigquery": BigQuery("bigquery", tested=False),
    "snowflake": Snowflake("snowflake", tested=False),
}


def get(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        from capdsl.errors import UsageError, error

        raise UsageError(error("E0920", f"unknown SQL dialect {name!r}",
                               hint="use one of: " + ", ".join(DIALECTS))) from None
