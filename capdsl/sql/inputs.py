"""The input tables as the query reads them: a loaded panel's tables as they are, or warehouse tables
(`Options.inputs == "warehouse"`) through projections that apply the panel loader's rules in SQL —
text trimmed, defaults for empty values, a value the loader would refuse stops the query."""

from __future__ import annotations

import difflib
from typing import Mapping

from sqlglot import exp

from capdsl.errors import UsageError, error
from capdsl.evaluation import tree as t
from capdsl.language.builtins import BUILTINS, STANDARD_COLUMNS
from capdsl.sql.dialects import cast, dec, num
from capdsl.sql.emit import Emitter
from capdsl.sql.exprs import PRACTICE_ID, SQL_TYPE, VALUE_COL, alias, case, col, concat, is_null, lit, null, paren

TABLES = ("members", "practices", "events", "measures")
#: Columns the query reads beside those the contract reads: the member-month rules' (birth and
#: enrolment), and an event's date (its month), code (error messages) and quantity (counts).
RULE_COLUMNS = {
    "members": (PRACTICE_ID, *(BUILTINS[("member", n)].column for n in ("birth_date", "enrolled_from", "enrolled_to"))),
    "practices": (PRACTICE_ID,),
    "events": (PRACTICE_ID, *(BUILTINS[("event", n)].column for n in ("date", "code", "quantity"))),
}
#: (table, column) -> (kind, default, may be absent) of the standard columns (docs/inputs.md).
CANONICAL = {(c.table, c.name): (c.kind, c.default, not c.required)
             for columns in STANDARD_COLUMNS.values() for c in columns}
# The panel loader's value rules (capdsl/data/panel.py), as anchored regular expressions every dialect
# reads alike: no backslashes (string escapes differ), `[.]` for a dot.
NUMBER = "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
PERCENT = "^[+-]?([0-9]{1,15}[.]?[0-9]*|[.][0-9]+) *%$"
PERIOD = "^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$"
KIND_WORD = {"date": "date", "decimal": "number", "integer": "whole number", "bool": "boolean"}
HINT = {"date": "YYYY-MM-DD", "decimal": "a dot for decimals, at most 10 places, or a percentage such as 15%",
        "integer": "e.g. 3", "bool": "true or false; yes/no and 1/0 are accepted"}


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


def source(em: Emitter, name: str) -> exp.Expression:
    """The table or file given for input `name` (its own name by default)."""
    given = em.tables.get(name, name)
    if given.lower().startswith("parquet.`"):  # Spark's parquet.`/path`: a table name as written
        return exp.to_table(given, dialect=em.d.name)
    if given.lower().endswith((".parquet", ".pq")) or "/" in given:
        return em.d.file_source(given)
    return exp.to_table(given)


def input_table(em: Emitter, name: str) -> exp.Expression:
    """The members, practices or events rows the query reads: the table itself from a loaded
    panel; from warehouse tables (`Options.inputs`), a projection of the columns the query reads
    that applies the loader's rules (`warehouse_column`)."""
    if em.o.inputs != "warehouse":
        return source(em, name)
    read = {"members": em.a.member_cols, "practices": em.a.practice_cols, "events": em.a.event_cols}[name]
    names = list(dict.fromkeys([*RULE_COLUMNS[name], *sorted(read)]))  # in order, once
    specs = {n: column_spec(em.p, name, n) for n in names}
    optional = [n for n in names if specs[n][2]] if em.d.absent_columns else []
    row = em.o.row_column
    # with a LATERAL (below) the inner names are `_c<i>`: DuckDB would bind an unqualified
    # `x` in `COALESCE(x, 0) AS x` to the alias being defined, not to the enclosing row
    outs = [alias(warehouse_column(em, name, n, *specs[n]), f"_c{i}" if optional else n) for i, n in enumerate(names)]
    if row:
        outs.append(col(row, "_src"))
    inner = exp.select(*outs, copy=False).from_(exp.alias_(source(em, name), "_src", copy=False), copy=False)
    if not optional:
        return exp.Subquery(this=inner)
    # A column that may be absent is named unqualified: SQL resolves it in the table first, and
    # only when the table has no such column in the enclosing one-row table of its defaults.
    defaults = exp.select(*[alias(lit(specs[n][1]) if specs[n][1] is not None else null(specs[n][0]), n)
                            for n in optional], copy=False)
    lateral = exp.Lateral(this=exp.Subquery(this=inner), alias=exp.TableAlias(this=exp.to_identifier("_in")))
    renamed = [alias(col(f"_c{i}", "_in"), n) for i, n in enumerate(names)]
    renamed += [col(row, "_in")] if row else []
    rows = exp.select(*renamed, copy=False).from_(
        exp.Subquery(this=defaults, alias=exp.TableAlias(this=exp.to_identifier("_dflt"))), copy=False)
    rows.append("joins", exp.Join(this=lateral, kind="CROSS"))
    return exp.Subquery(this=rows)


def column_spec(program: t.Program, table: str, name: str) -> tuple[str, object, bool]:
    """(kind, default, whether the column may be absent) of an input column: as the contract
    declares it, else as docs/inputs.md defines the canonical column."""
    scope = table[:-1]
    for c in program.columns:
        if c.table == scope and c.name == name and c.needed_by != "built-in":
            return c.kind, c.default, not c.required
    return CANONICAL.get((table, name), ("text", None, False))


def warehouse_column(em: Emitter, table: str, name: str, kind: str, default, optional: bool) -> exp.Expression:
    """A warehouse column read as the panel loader reads a file's: text trimmed and a blank text
    empty; an empty value takes the default; an empty required value stops the query (E0705)."""
    value = col(name) if optional else col(name, "_src")
    if kind == "text" and name != PRACTICE_ID:  # ids are matched as stored
        value = exp.Nullif(this=exp.Trim(this=value), expression=exp.Literal.string(""))
    if default is not None:
        return exp.Coalesce(this=value, expressions=[lit(default)])
    if optional:
        return value
    site = t.Fail("E0705", f"{table}.{name} is empty in a row; the column is required")
    return case([(is_null(value.copy()),
                  em.raised(em.input_message(site, col(PRACTICE_ID, "_src"), None), kind))], value)


def measures_query(em: Emitter) -> exp.Expression:
    """Warehouse measures as the loader reads them: trimmed, the period in upper case
    (`2011-q4` is `2011-Q4`), a blank value empty; only the measures the query reads."""
    trimmed = lambda name: exp.Nullif(this=exp.Trim(this=col(name)), expression=exp.Literal.string(""))  # noqa
    names = [exp.Literal.string(n) for n in sorted(em.a.measure_uses)]
    return exp.select(col("practice_id"), alias(exp.Upper(this=trimmed("period")), "period"),
                      alias(exp.Trim(this=col("measure")), "measure"),
                      alias(trimmed("value"), "value"), copy=False).from_(
        source(em, "measures"), copy=False).where(exp.In(this=exp.Trim(this=col("measure")), expressions=names),
                                                  copy=False)


def measures_check(em: Emitter) -> exp.Expression:
    """One row: the payload of the first measures row the loader would refuse (a period that is
    not YYYY, YYYY-Qn or YYYY-MM, an empty value, a value that is not of the measure's type, a
    second row for a practice, period and measure), else NULL. `prac` stops the query on it, so a
    bad row never reads as a missing one (0 paid, silently)."""
    value, period, pid = col("value"), col("period"), col("practice_id")
    bad = [(is_null(pid.copy()),
            em.input_message(t.Fail("E0705", "measures.practice_id is empty in a row; the column is required"),
                             None, None)),
           (exp.Not(this=exp.Coalesce(this=regexp(period.copy(), PERIOD), expressions=[exp.false()])),
            em.input_message(t.Fail("E0704", "a measures row has a period that is not YYYY, YYYY-Qn or YYYY-MM"),
                             pid.copy(), period.copy())),
           (is_null(value.copy()),
            em.input_message(t.Fail("E0705", "measures.value is empty in a row; the column is required"),
                             pid.copy(), period.copy()))]
    for name, uses in sorted(em.a.measure_uses.items()):
        kind = sorted(uses)[0][0]
        if kind == "text":
            continue
        site = t.Fail("E0704", f"measure {name}: a value is not a valid {KIND_WORD[kind]} ({HINT[kind]})")
        bad.append((exp.and_(exp.EQ(this=col("measure"), expression=exp.Literal.string(name)),
                             exp.Not(this=paren(valid(value.copy(), kind))), copy=False),
                    em.input_message(site, pid.copy(), value.copy())))
    rows = exp.select(alias(case(bad, None), "_bad"), copy=False).from_("msr", copy=False)
    twice = exp.select(alias(exp.Min(this=em.input_message(t.Fail(
        "E0706", "measures has two rows for one practice, period and measure"), pid.copy(),
        concat(period.copy(), exp.Literal.string(" "), col("measure")))), "_bad"), copy=False).from_(
        "msr", copy=False).group_by(pid.copy(), period.copy(), col("measure"), copy=False).having(
        exp.GT(this=exp.Count(this=exp.Star()), expression=num(1)), copy=False)
    both = exp.union(rows, twice, distinct=False, copy=False)
    return exp.select(alias(exp.Min(this=col("_bad")), "_bad"), copy=False).from_(
        exp.Subquery(this=both, alias=exp.TableAlias(this=exp.to_identifier("_c"))), copy=False)


def measure_value(em: Emitter, table: str, kind: str) -> exp.Expression:
    """A measures row's value of `kind`, from the measures table read under the alias `table`."""
    if em.o.inputs == "warehouse":  # normalised by measures_query, refused by measures_check
        value = col("value", table)
        return case([(valid(value, kind), typed(value.copy(), kind))], None) if kind != "text" else value
    if em.o.measure_values == "text" and kind != "text":
        value = col("value", table)
        if kind == "bool":
            return exp.In(this=exp.Lower(this=value), expressions=[exp.Literal.string(v) for v in
                                                                    ("true", "1", "yes")])
        return cast(value, SQL_TYPE[kind])
    return col(VALUE_COL[kind], table)


def regexp(value: exp.Expression, pattern: str) -> exp.Expression:
    return exp.RegexpLike(this=value, expression=exp.Literal.string(pattern))


def valid(v: exp.Expression, kind: str) -> exp.Expression:
    """Whether the (trimmed, non-empty) text `v` is a value of `kind` as the loader reads it."""
    if kind == "decimal":
        plain = exp.and_(regexp(v.copy(), NUMBER), exp.Not(this=regexp(v.copy(), "[.][0-9]{10}0*[1-9]")),
                         copy=False)
        percent = exp.and_(regexp(v.copy(), PERCENT), exp.Not(this=regexp(v.copy(), "[.][0-9]{8}0*[1-9]")),
                           copy=False)
        return exp.Paren(this=exp.or_(exp.Paren(this=plain), exp.Paren(this=percent), copy=False))
    if kind == "integer":
        return regexp(v, "^[+-]?[0-9]+([.]0*)?$")
    if kind == "bool":
        return exp.In(this=exp.Lower(this=v), expressions=[exp.Literal.string(x) for x in
                                                           ("true", "false", "1", "0", "yes", "no")])
    if kind == "date":
        return regexp(v, "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    return exp.true()


def typed(v: exp.Expression, kind: str) -> exp.Expression:
    """The value of a valid text `v` (`valid`): "15%" is 0.15, exactly."""
    if kind == "decimal":
        number = cast(exp.Trim(this=exp.Anonymous(this="REPLACE", expressions=[
            v.copy(), exp.Literal.string("%"), exp.Literal.string("")])), "DECIMAL(28, 10)")
        return case([(regexp(v.copy(), "%$"), dec(exp.Mul(this=number, expression=num("0.01"))))], dec(v))
    if kind == "integer":
        return cast(cast(v, "DECIMAL(38, 10)"), "BIGINT")
    if kind == "bool":
        return exp.In(this=exp.Lower(this=v), expressions=[exp.Literal.string(x) for x in ("true", "1", "yes")])
    if kind == "date":
        return cast(v, "DATE")
    return v
