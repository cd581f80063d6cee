"""The statement's CTEs: the lines step by step of their dependency order (`l_*` / `r_*`), `monthly`,
the pools on each practice's December row (`ybase`, `pools_*`, `yshares_*`, `yfinal_*`), and the
rows the query returns: long (`statement_rows`, `compile --sql`) or wide (`wide_rows`, the engines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from capdsl.evaluation import tree as t
from capdsl.evaluation.interpret import rest_taker
from capdsl.sql.analysis import raises
from capdsl.sql.dialects import cast, dec, num
from capdsl.sql.emit import Emitter, Scope
from capdsl.sql.exprs import alias, case, col, lit, literal_table, null, text

Add = Callable[[str, exp.Expression], None]


@dataclass(frozen=True)
class Item:
    """A statement row per practice (and month, for lines): which columns hold its amount."""

    line: str
    kind: str  # line | pool | installment
    month: int | None  # an installment's: the month it is paid in
    amount: str
    applied: str
    basis: str | None = None


def line_items(em: Emitter) -> list[Item]:
    return [Item(line.name, "line", None, f"amt__{line.name}", f"ok__{line.name}",
                 f"basis__{line.name}" if line.basis is not None else None) for line in em.a.lines]


def levels(em: Emitter, lines: list[t.LineDef]) -> list[list[t.LineDef]]:
    """The lines in steps, each reading (`LineRef`) only lines of earlier steps: a CTE per step, not
    per line (an engine plans many layered CTEs slower than a few). A pool's installment conditions
    count: they may read another pool."""
    step: dict[str, int] = {}
    for line in lines:  # in line_order: a line's references come before it
        refs = [n.name for x in (line.amount, line.applies, *(i.when for i in line.installments))
                if x is not None for n in t.walk(em.tree(x)) if isinstance(n, t.LineRef)]
        step[line.name] = 1 + max((step[r] for r in refs if r in step), default=-1)
    return [[line for line in lines if step[line.name] == k] for k in range(max(step.values(), default=-1) + 1)]


def line_layers(em: Emitter, lines: list[t.LineDef], prev: str, scope: Scope, add: Add,
                guard: Callable[[t.LineDef], exp.Expression | None], tag: str | None = None) -> str:
    """Two CTEs per step of the lines' dependency order (`levels`): applied and raw amount, then the
    amount rounded with the contract's rule (so `LineRef` reads a column). Where `guard(line)`
    gives a condition, the line is NULL on rows where it does not hold (nothing there is evaluated).
    `tag` names the CTEs of lines that are one step (`pool_layers` calls it step by step)."""
    for step, level in enumerate(levels(em, lines)):
        raws, rounded = [], []
        for line in level:
            amount_tree, applies_tree = em.tree(line.amount), em.tree(line.applies)
            applies = em.ex(applies_tree, scope) if applies_tree is not None else exp.true()
            amount = em.ex(amount_tree, scope)
            raw = case([(applies.copy(), dec(amount))], dec(num(0))) if applies_tree is not None else dec(amount)
            where = guard(line)
            if where is not None and (raises(amount_tree) or (applies_tree is not None and raises(applies_tree))):
                applies, raw = case([(where.copy(), applies)], None), dec(case([(where, raw)], None))
            raws += [alias(applies, f"ok__{line.name}"), alias(raw, f"raw__{line.name}")]
            rounded.append(alias(em.round(col(f"raw__{line.name}"), em.p.quantum, em.p.rounding_mode),
                                 f"amt__{line.name}"))
        name = tag or f"{lines[0].kind}s_{step + 1}"
        add(f"l_{name}", exp.select(exp.Star(), *raws, copy=False).from_(prev, copy=False))
        add(f"r_{name}", exp.select(exp.Star(), *rounded, copy=False).from_(f"l_{name}", copy=False))
        prev = f"r_{name}"
    return prev


def monthly_layers(em: Emitter, prev: str, add: Add) -> str:
    """The monthly lines, then `monthly`: their bases and the per-month operands of `YearSum`. The
    interpreter evaluates a line in a month read only for the pools only when a pool reads it:
    elsewhere, what may stop the query is guarded to the reported months."""
    scope = Scope("practice")
    if em.a.lines:
        prev = line_layers(em, em.a.lines, prev, scope, add, lambda line: col("reported") if (
            em.a.grouped and line.name not in em.a.year_lines) else None)
    extra = []
    for line in em.a.lines:
        if line.basis is not None:
            value = case([(col("reported"), em.ex(em.tree(line.basis), scope))], None)
            extra.append(alias(dec(value), f"basis__{line.name}"))
    for node, name in em.a.plan.years.items():
        extra.append(alias(em.ex(node.operand, scope), name))
    add("monthly", exp.select(exp.Star(), *extra, copy=False).from_(prev, copy=False))
    return "monthly"


def december() -> exp.Expression:
    return exp.EQ(this=col("mon"), expression=num(12))


def pool_layers(em: Emitter, add: Add) -> tuple[str, list[Item]]:
    """Pools on each practice's December row: the year's sums as window sums over the monthly
    rows (so the monthly CTE is read once: Spark recomputes a CTE per reference), then, step by
    step of the pools' dependency order (`levels`), applied/raw/rounded and the installments. A
    pool another pool reads gets `ypaid__`, the sum of its paid installments (`tree.LineRef`), in
    its step, before the steps of the pools that read it. They are computed on every month's
    row but read on December's only. A checked contract gives a pool the same inputs on every
    row (E0306 keeps monthly values out), but the tree does not promise it: an expression that
    may stop the query is guarded to `mon = 12`."""
    sums = [alias(exp.Window(this=exp.Sum(this=col(name)), partition_by=[col("practice_id")]), f"ysum__{name}")
            for name in em.a.plan.years.values()]
    add("ybase", exp.select(exp.Star(), *sums, copy=False).from_("monthly", copy=False))
    scope = Scope("year")
    prev = "ybase"
    read = {n.name for pool in em.a.pools
            for x in (pool.amount, pool.applies, *(i.when for i in pool.installments)) if x is not None
            for n in t.walk(em.tree(x)) if isinstance(n, t.LineRef) and n.name in em.a.pool_names}
    items: dict[str, list[Item]] = {}
    for step, level in enumerate(levels(em, em.a.pools)):
        prev = line_layers(em, level, prev, scope, add, lambda pool: december(), f"pools_{step + 1}")
        shares, finals = [], []
        for pool in level:
            items[pool.name] = installments(em, pool, scope, pool.name in read, shares, finals)
        add(f"yshares_{step + 1}", exp.select(exp.Star(), *shares, copy=False).from_(prev, copy=False))
        add(f"yfinal_{step + 1}", exp.select(exp.Star(), *finals, copy=False).from_(
            f"yshares_{step + 1}", copy=False))
        prev = f"yfinal_{step + 1}"
    return prev, [it for pool in em.a.pools for it in items[pool.name]]  # in line order, as the interpreter


def installments(em: Emitter, pool: t.LineDef, scope: Scope, read: bool, shares: list, finals: list) -> list[Item]:
    """A pool's installments: each share rounded (`sh__`), whether it is paid (`paid__`) into
    `shares`; the paid amounts (`inst__`; the share without one takes the rest) and, for a pool
    another reads (`read`), their sum `ypaid__` into `finals`. Returns the pool's statement items."""
    own = [Item(pool.name, "pool", None, f"amt__{pool.name}", f"ok__{pool.name}")]
    taker = rest_taker(pool)
    amount = col(f"amt__{pool.name}")
    others = []
    for j, inst in enumerate(pool.installments):
        name = f"{pool.name}__{j}"
        if inst is not taker:
            part = exp.Mul(this=lit(inst.share), expression=amount.copy()) if inst.share is not None else \
                em.d.fixed_div(amount.copy(), num(inst.parts), exp.Null())
            share = em.round(dec(part), em.p.quantum, em.p.rounding_mode)
            shares.append(alias(share, f"sh__{name}"))
            others.append(col(f"sh__{name}"))
        when = em.tree(inst.when)
        paid = em.ex(when, scope) if when is not None else exp.true()
        if when is not None and raises(when):
            paid = case([(december(), paid)], None)
        shares.append(alias(paid, f"paid__{name}"))
    paid_parts = []
    for j, inst in enumerate(pool.installments):
        name = f"{pool.name}__{j}"
        value = col(f"sh__{name}")
        if inst is taker:
            value = amount.copy()
            for o in others:
                value = exp.Sub(this=value, expression=o.copy())
        paid_value = dec(case([(col(f"paid__{name}"), value)], num(0)))
        finals.append(alias(paid_value, f"inst__{name}"))
        paid_parts.append(paid_value.copy())
        if inst.month in em.a.due:
            own.append(Item(pool.name, "installment", inst.month, f"inst__{name}", f"paid__{name}"))
    if read:  # exact: each part is DECIMAL(38, 12) and `+` is exact
        total = paid_parts[0]
        for part in paid_parts[1:]:
            total = exp.Add(this=total, expression=part)
        finals.append(alias(dec(total), f"ypaid__{pool.name}"))
    return own


def practice_rows() -> exp.Expression:
    """A row per practice evaluated, so that a practice with no line still has a statement."""
    return exp.select(alias(exp.Literal.string("practice"), "kind"), col("practice_id"),
                      alias(null("date"), "month_start"), alias(null("text"), "line"),
                      alias(cast(exp.Null(), "INT"), "paid_month"), alias(null("decimal"), "amount"),
                      alias(null("bool"), "applied"), alias(null("decimal"), "basis"), copy=False).from_(
        "prac", copy=False)


def statement_rows(source: str, items: list[Item], add: Add) -> exp.Expression:
    """One row per reported practice-month and line, and per practice and pool or installment
    due: `source` (one row per practice-month) crossed with the item list, read once."""
    add("items", literal_table([(i, it.line, it.kind, it.month) for i, it in enumerate(items)],
                               ("idx", "line", "kind", "paid_month")))
    idx = col("idx", "it")
    lines = [it for it in items if it.kind == "line"]

    def pick(attr: str) -> exp.Expression:
        return case([(exp.EQ(this=idx, expression=num(i)), col(getattr(it, attr), "x"))
                     for i, it in enumerate(items) if getattr(it, attr) is not None], None)

    is_line = exp.EQ(this=col("kind", "it"), expression=exp.Literal.string("line"))
    if len(lines) == len(items):
        month, where = col("month_start", "x"), col("reported", "x")
    else:
        in_december = exp.EQ(this=col("mon", "x"), expression=num(12))
        month = case([(is_line.copy(), col("month_start", "x"))], None)
        where = in_december if not lines else exp.or_(
            exp.and_(is_line.copy(), col("reported", "x"), copy=False),
            exp.and_(exp.Not(this=is_line.copy()), in_december, copy=False), copy=False)
    return exp.select(col("kind", "it"), col("practice_id", "x"), alias(month, "month_start"),
                      col("line", "it"), col("paid_month", "it"),
                      alias(dec(pick("amount")), "amount"),
                      alias(pick("applied"), "applied"),
                      alias(dec(pick("basis")) if any(it.basis for it in lines) else null("decimal"), "basis"),
                      copy=False).from_(exp.alias_(exp.to_table(source), "x", copy=False), copy=False).join(
        exp.alias_(exp.to_table("items"), "it", copy=False), join_type="cross", copy=False).where(where, copy=False)


def wide_rows(source: str, items: list[Item], pools: bool) -> exp.Expression:
    """What the engines fetch: one row per practice and reported month (and December, for the
    pools), a column per item's amount (as text), applied flag and basis; `engine.collect_wide`
    reads it. Fewer rows than the long result, and no statement rows to build. Every practice has
    every month's row."""
    outs = [col("practice_id"), col("month_start"), col("reported")]
    for it in items:
        outs += [text(col(it.amount)), col(it.applied)]
        if it.basis is not None:
            outs.append(text(col(it.basis)))
    where = col("reported")
    if pools:
        where = exp.or_(where, december(), copy=False)
    return exp.select(*outs, copy=False).from_(source, copy=False).where(where, copy=False)
