"""Member-level detail (`capdsl eval --detail member`): one row per member and
month with the member's age, exposure weight and contribution to every
member-level aggregate (`sum of … over members`, `count of members …`).

The rows come from the reference interpreter whatever `--engine` computed the
statements: detail is an audit output, and the interpreter is the oracle. A
line's amount is the rounded sum of its aggregates' contributions combined by
the line's formula, so for a line that is one `sum … over members` the column
sums (before rounding) to the line.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from capdsl.evaluation import tree as t
from capdsl.evaluation.interpret import Interpreter, Rows, CONTEXT, _Env, _Fail, fix
from capdsl.evaluation.months import exposure_weight, member_age


@dataclass(frozen=True)
class DetailTable:
    columns: tuple[str, ...]  # practice_id, member, month, age, weight, then one per aggregate
    rows: list[tuple]
    aggregates: dict[str, str]  # column -> the aggregate's source text


def member_aggregates(program: t.Program, describe) -> list[tuple[str, t.Agg]]:
    """Each member-level aggregate named after the first line that uses it
    (`capitation`, `capitation_2` when a line has several)."""
    named: list[tuple[str, t.Agg]] = []
    seen: set[int] = set()
    for name in program.line_order:
        line = program.line(name)
        found: list[t.Agg] = []
        stack, visited = [line.amount], set()
        while stack:
            node = stack.pop()
            if isinstance(node, t.Agg):
                if node.source == "members" and id(node) not in seen:
                    seen.add(id(node))
                    found.append(node)
                continue
            if isinstance(node, t.Ref):
                if node.name not in visited and node.name in program.definitions:
                    visited.add(node.name)
                    stack.append(program.definitions[node.name].expr)
                continue
            stack.extend(reversed(list(t.children(node))))
        for k, agg in enumerate(found, start=1):
            named.append((name if k == 1 else f"{name}_{k}", agg))
    return named


def member_detail(program: t.Program, rows: Rows, months: tuple[date, ...], params: dict, *,
                  label=lambda member_id: str(member_id), describe=lambda agg: "") -> DetailTable:
    interp = Interpreter(program, params, None)
    aggs = member_aggregates(program, describe)
    practices = {p["practice_id"]: p for p in rows.practices}
    measures: dict[str, dict[str, dict[str, object]]] = defaultdict(lambda: defaultdict(dict))
    for pid, period_text, name, value in rows.measures:
        measures[pid][name][period_text] = value
    out = []
    members = sorted(rows.members, key=lambda r: (r["practice_id"], str(r["member_id"])))
    for m in months:
        for row in members:
            weight = exposure_weight(program.exposure, m, row["birth_date"], row.get("enrolled_from"),
                                     row.get("enrolled_to"))
            if not weight:
                continue
            pid = row["practice_id"]
            env = _Env(params)
            env.practice = practices.get(pid, {"practice_id": pid})
            env.measures = measures.get(pid, {})
            env.month = m
            env.aggs, env.lines, env.memo = {}, {}, {}
            age = member_age(program.age_rule, m, row["birth_date"])
            env.member = dict(row, age=age)
            w = Decimal(weight)
            values = []
            for _, agg in aggs:
                try:
                    included = agg.where is None or interp.ev(agg.where, env)
                    if not included:
                        values.append(None)
                        continue
                    value = Decimal(1) if agg.kind == "count" else interp.ev(agg.expr, env)
                except _Fail as failure:
                    raise interp._row_failure(failure.node, row, True, env) from None
                values.append(value if w == 1 else fix(CONTEXT.multiply(w, value)))
            out.append((pid, label(row["member_id"]), m.isoformat()[:7], age, w, *values))
    columns = ("practice_id", "member", "month", "age", "weight", *(name for name, _ in aggs))
    return DetailTable(columns, out, {name: describe(agg) for name, agg in aggs})
