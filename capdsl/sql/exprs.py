"""Small sqlglot constructors every part of the SQL compiler uses, and the names of the columns the
query adds to member-month and event rows."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlglot import exp

from capdsl.language.builtins import BUILTINS
from capdsl.sql.dialects import DEC, cast, num

SQL_TYPE = {"bool": "BOOLEAN", "text": "VARCHAR", "date": "DATE", "integer": "BIGINT", "decimal": DEC}
#: The typed value column of a loaded panel's measures table, per kind.
VALUE_COL = {"bool": "value_bool", "integer": "value_integer", "decimal": "value_decimal", "date": "value_date",
             "text": "value"}
# Columns the query adds to member-month and event rows, beside the author's input columns: a leading
# underscore, which no input name may have (the checker reserves it), so they never collide.
MONTH, AGE, WEIGHT, N = "_month_start", "_age", "_weight", "_n"
#: `member.age`'s name in the tree (`Col("member", AGE_ATTR)`): the member attribute the query derives
#: (`AGE` of a member-month) rather than reads from a panel column.
AGE_ATTR = BUILTINS[("member", "age")].tree_column
#: `practice.id`'s column: the key of every practice-month row.
PRACTICE_ID = BUILTINS[("practice", "id")].column


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
    return cast(exp.Null(), SQL_TYPE[kind])


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


def is_null(e: exp.Expression) -> exp.Expression:
    return exp.Is(this=e, expression=exp.Null())


def is_literal(e: exp.Expression) -> bool:
    return isinstance(e, exp.Literal) or (isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal))


def alias(e: exp.Expression, name: str) -> exp.Expression:
    return exp.alias_(e, name, copy=False)


def table_as(name: str, as_: str) -> exp.Expression:
    """`name AS as_`, for a CTE read under an alias."""
    return exp.alias_(exp.to_table(name), as_, copy=False)


def literal_table(rows: list[tuple], names: tuple[str, ...]) -> exp.Expression:
    """A small literal table: SELECT * FROM (VALUES …) AS items(names) (UNNEST on BigQuery)."""
    def value(v):
        if v is None:
            return cast(exp.Null(), "INT")
        if isinstance(v, (str, bool, date)):
            return lit(v)
        return num(v)

    values = exp.values([tuple(value(v) for v in row) for row in rows], alias="items", columns=list(names))
    return exp.select(exp.Star(), copy=False).from_(values, copy=False)
