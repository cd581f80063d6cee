"""The member shares of a program's attributable lines (`capdsl.evaluation.shares`) as one query:
a row per counted member-month of the reported months and attributable line, with the share
rounded with the contract's rule (or, `wide`, a row per member-month with a column per line). It
reads the same CTEs as the statement query (`months`, `prac`, `pm`, the member-event totals and
`mm`), so a share is computed from the same member-month rules.

    (practice_id, member_id, month_start, line, share, age)
    (practice_id, member_id, month_start, s0, s1, …, age)             wide
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sqlglot import exp

from capdsl.evaluation import tree as t
from capdsl.evaluation.periods import Period
from capdsl.evaluation.shares import line_shares
from capdsl.language.builtins import BUILTINS, EXPOSURE_RULES
from capdsl.sql import ctes, inputs, members
from capdsl.sql.analysis import analyse
from capdsl.sql.dialects import dec, get
from capdsl.sql.emit import Emitter, Scope
from capdsl.sql.exprs import AGE, MONTH, WEIGHT, alias, col, lit, paren, table_as
from capdsl.sql.inputs import check_tables
from capdsl.sql.query import Options

MEMBER_ID = BUILTINS[("member", "id")].column


def shares_sql(program: t.Program, period: Period, dialect: str = "duckdb", *,
               params: Mapping[str, object] | None = None, options: Options = Options(),
               tables: Mapping[str, str] | None = None, wide: bool = False) -> tuple[str, tuple[str, ...]]:
    """The query's SQL text and the attributable lines it gives shares of (none: no query worth running).
    `wide`: a row per member-month, the lines' shares as columns s0, s1, … in the lines' order."""
    shares = line_shares(program)
    if not shares:
        return "", ()
    # the analysis of a program whose lines are the shares: the columns and member-event totals they read
    probe = dataclasses.replace(program, lines=tuple(t.LineDef(name, name, "line", share)
                                                     for name, share in shares.items()), line_order=tuple(shares))
    a = analyse(probe, period)
    a.member_cols.setdefault(MEMBER_ID, BUILTINS[("member", "id")].kind)
    d = get(dialect)
    em = Emitter(a, d, dict(params or {}), options, check_tables(tables))
    parts: list[tuple[str, exp.Expression]] = [("months", members.months_query(a))]
    if options.inputs == "warehouse" and a.measure_uses:
        parts += [("msr", inputs.measures_query(em)), ("mcheck", inputs.measures_check(em))]
    parts += [("prac", ctes.prac_query(em)), ("pm", ctes.pm_query(em))]
    parts += [(f"mev{name}", members.member_events_query(em, node)) for node, name in a.member_events.items()]
    parts.append(("mm", members.mm_query(em)))
    scope = Scope("member", row="mm", pm="pm")
    whole = EXPOSURE_RULES[program.exposure].weight == "whole"
    on = exp.and_(exp.EQ(this=col("practice_id", "pm"), expression=col("practice_id", "mm")),
                  exp.EQ(this=col("month_start", "pm"), expression=col(MONTH, "mm")), copy=False)
    keys = [col("practice_id", "mm"), alias(col(MEMBER_ID, "mm"), "member_id"), alias(col(MONTH, "mm"), "month_start")]

    def rows(*values: exp.Expression) -> exp.Select:
        sel = exp.select(*keys, *values, alias(col(AGE, "mm"), "age"), copy=False).from_(
            table_as("mm", "mm"), copy=False).join(table_as("pm", "pm"), on=on.copy(), join_type="inner", copy=False)
        if len(a.months) > len(a.reported):
            sel = sel.where(exp.In(this=col(MONTH, "mm"), expressions=[lit(m) for m in a.reported]), copy=False)
        return sel

    values = []
    for share in shares.values():
        value = dec(em.ex(share, scope))
        if not whole:
            value = dec(exp.Mul(this=col(WEIGHT, "mm"), expression=paren(value)))
        values.append(em.round(value, program.quantum, program.rounding_mode))
    if wide:
        query = rows(*(alias(v, f"s{i}") for i, v in enumerate(values)))
    else:
        query = None
        for name, value in zip(shares, values):
            sel = rows(alias(exp.Literal.string(name), "line"), alias(value, "share"))
            query = sel if query is None else exp.union(query, sel, distinct=False, copy=False)
    query = exp.select(exp.Star(), copy=False).from_(exp.Subquery(this=query, alias=exp.TableAlias(
        this=exp.to_identifier("shares"))), copy=False)
    query.set("with_", exp.With(expressions=[exp.CTE(this=q, alias=exp.TableAlias(this=exp.to_identifier(n)))
                                             for n, q in parts]))
    return d.finish(query).sql(dialect=d.name), tuple(shares)
