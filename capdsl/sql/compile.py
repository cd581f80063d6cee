"""Compile a `tree.Program` to one SQL query, through sqlglot expressions.

The query is a chain of CTEs, each a single pass; each module builds its own:

  months    one literal row per evaluated month (dates, keys, age reference)   members
  msr, mcheck  warehouse measures, normalised and checked                    inputs
  prac      the practices evaluated                                           ctes
  pm        practice × month: attributes and measures resolved per month      ctes
  mev_*     a member's own events added up per member and window
            (`tree.MemberEvents`), one CTE per distinct total                 members
  mm        member-months: members joined to the months they count in
            (exposure rule), with `_age` and the exposure weight `_weight`.
            The member sums are split by the totals they read
            (`members.member_passes`), a pass each (mm/mg/am with a suffix):
            those reading none on mm, without a join; those a threshold on
            one total gates (`gates`) on mm_me1 …, the members whose total
            passes it (an inner join); the rest on mm_ev, every member-month
            left-joined to the totals it reads                                members
  mg        member-months with a group size `_n`: grouped by everything an
            expression reads when year-only months are read (pools), else 1;
            the months only pools read are summed per practice when the
            year sums allow it (`analysis.spreads_year`)                      members
  ev        events with their month                                           ctes
  am / ae   one GROUP BY practice, month over mg / ev, with one conditional
            sum `s_*` per distinct `Agg` once a practice-level factor is
            taken out (Σ F × v = F × Σ v, `analysis.factor_out`; _n × v;
            sums the pools do not need are guarded to the reported months)    ctes
  base      pm + the aggregates `agg_*` = F × s_* (0 when a practice had no rows)  ctes
  l_* / r_* per step of the lines' dependency order (lines that read no
            other line are one step): applied + raw amounts, then the
            amounts rounded with the contract's rule (so `LineRef` reads them)  lines
  monthly   bases and the per-month operands of `YearSum`                     lines
  ybase, y* pools: the year's sums (window sums over monthly), evaluated on
            the December row, rounded, split into installments                lines
  items     the statement's lines, pools and installments due; crossed once
            with the last CTE (a CTE read twice is computed twice on Spark)    lines
  final     long rows: (kind, practice_id, month_start, line, paid_month,
            amount, applied, basis) — see `capdsl.sql.engine.collect`

What the tree needs is found first (`analysis`); expressions come from `emit`, their types from
`kinds`. Numbers are DECIMAL(38, 12) (see `emit` and `dialects`); literals keep their own small
precision so that products of a rate and a column fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Mapping

from sqlglot import exp

from capdsl.evaluation import tree as t
from capdsl.evaluation.periods import Period
from capdsl.sql import ctes, inputs, lines, members
from capdsl.sql.analysis import analyse, run_months  # noqa: F401  (run_months: re-exported)
from capdsl.sql.dialects import Dialect, dec, get  # noqa: F401  (dec: re-exported)
from capdsl.sql.emit import Emitter
from capdsl.sql.exprs import col  # noqa: F401  (re-exported)
from capdsl.sql.inputs import check_tables
from capdsl.sql.query import FailSite, Options, Query  # noqa: F401  (Options: re-exported)


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
    due: tuple[int, ...]  # months (1–12) whose pool installments are reported
    wide: exp.Expression  # the engines' result, over the same CTEs (lines.wide_rows)
    items: tuple  # its columns: a `lines.Item` each (amount, applied[, basis])

    def sql(self, pretty: bool = True) -> str:
        """The long result (`compile --sql`): a row per practice, statement line, pool and installment."""
        return self.query.sql(dialect=self.dialect.name, pretty=pretty, copy=False)

    def fetch_sql(self) -> str:
        """The query as an engine runs it (read by `engine.collect_wide`): one row per practice-month,
        amounts and bases as text, which drivers hand to Python faster than their exact-decimal
        type, and `Decimal(text)` is exact."""
        with_ = self.query.args["with_"].sql(dialect=self.dialect.name, copy=False)
        return f"{with_} {self.wide.sql(dialect=self.dialect.name, copy=False)}"

    def runnable(self) -> Query:
        """What an engine runs and reads, without the sqlglot trees (so it can be cached)."""
        fails = tuple((level, FailSite(getattr(node, "code", None), getattr(node, "message", None), node.origin))
                      for level, node in self.fails)
        return Query(self.fetch_sql(), self.dialect.name, self.months, fails, self.lines, self.pools,
                     tuple((it.kind, it.line, it.month, it.basis is not None) for it in self.items))


def compile_query(program: t.Program, period: Period, dialect: str = "duckdb",
                  tables: Mapping[str, str] | None = None, params: Mapping[str, object] | None = None,
                  options: Options = Options()) -> Compiled:
    return _Compiler(program, period, get(dialect), check_tables(tables), dict(params or {}), options).build()


class _Compiler(Emitter):
    """One compilation: the program analysed, its expressions, and the CTEs assembled in order."""

    def __init__(self, program: t.Program, period: Period, dialect: Dialect, tables: dict, params: dict,
                 options: Options):
        super().__init__(analyse(program, period), dialect, params, options, tables)

    def build(self) -> Compiled:
        a = self.a
        query_ctes: list[tuple[str, exp.Expression]] = []
        add = lambda name, q: query_ctes.append((name, q))  # noqa: E731
        add("months", members.months_query(a))
        if self.o.inputs == "warehouse" and a.measure_uses:
            add("msr", inputs.measures_query(self))
            add("mcheck", inputs.measures_check(self))
        add("prac", ctes.prac_query(self))
        add("pm", ctes.pm_query(self))
        inner = {name: agg for _, name, agg in a.plan.factors.values()}
        member_aggs = {agg: name for name, agg in inner.items() if agg.source == "members"}
        event_aggs = {agg: name for name, agg in inner.items() if agg.source == "events"}
        member_sums: dict[str, str] = {}  # member sum -> the table holding it
        if member_aggs:
            for node, name in a.member_events.items():
                add(f"mev{name}", members.member_events_query(self, node))
            for part in members.member_passes(a, member_aggs):
                add(f"mm{part.suffix}", members.mm_query(self, part.totals, part.gate))
                add(f"mg{part.suffix}", members.mg_query(self, f"mm{part.suffix}", part.totals))
                add(f"am{part.suffix}", ctes.agg_query(self, f"mg{part.suffix}", part.aggs, "member"))
                member_sums.update(dict.fromkeys(part.aggs.values(), f"am{part.suffix}"))
        if event_aggs:
            add("ev", ctes.ev_query(self))
            add("ae", ctes.agg_query(self, "ev", event_aggs, "event"))
        add("base", ctes.base_query(self, member_sums, bool(event_aggs)))
        source = lines.monthly_layers(self, "base", add)
        items = lines.line_items(self)
        if a.pools:
            source, pool_items = lines.pool_layers(self, add)
            items += pool_items
        query = lines.practice_rows()
        if items:
            query = exp.union(query, lines.statement_rows(source, items, add), distinct=False, copy=False)
        with_ = exp.With(expressions=[exp.CTE(this=q, alias=exp.TableAlias(this=exp.to_identifier(n)))
                                      for n, q in query_ctes])
        query = exp.select(exp.Star(), copy=False).from_(exp.Subquery(this=query, alias=exp.TableAlias(
            this=exp.to_identifier("result"))), copy=False)
        query.set("with_", with_)
        return Compiled(self.d.finish(query), self.d, a.months, a.reported, tuple(self.fails),
                        tuple(line.name for line in a.lines), tuple(p.name for p in a.pools), a.due,
                        self.d.finish(lines.wide_rows(source, items, bool(a.pools))), tuple(items))
