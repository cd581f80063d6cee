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

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from capdsl.evaluation import tree as t
from capdsl.evaluation.amounts import CONTEXT, fix
from capdsl.evaluation.interpret import Env, Interpreter
from capdsl.evaluation.months import Frames, Rows


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
    """One row per counted member-month of the period, ordered by month, practice and member."""
    interp = Interpreter(program, params, None)
    aggs = member_aggregates(program, describe)
    frames = Frames(program, rows)
    env = Env(params)
    out = []
    for m in months:
        for practice in frames.practices:
            frame = frames.month(practice, m)
            env.enter(frame)
            pid = practice["practice_id"]
            counted = sorted(zip(frame.members, frame.weights), key=lambda mw: str(mw[0]["member_id"]))
            for row, weight in counted:
                w = Decimal(weight)
                values = []
                for _, agg in aggs:
                    value = interp.member_value(agg, env, row)
                    values.append(None if value is None else value if w == 1 else fix(CONTEXT.multiply(w, value)))
                out.append((pid, label(row["member_id"]), m.isoformat()[:7], row["age"], w, *values))
    columns = ("practice_id", "member", "month", "age", "weight", *(name for name, _ in aggs))
    return DetailTable(columns, out, {name: describe(agg) for name, agg in aggs})
