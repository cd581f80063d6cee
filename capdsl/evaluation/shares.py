"""A line's share per member: the part of a practice-month's line each counted member brings.

A line whose amount adds up member values — `sum of rate * index over members`, a practice factor
times such a sum, several such sums added, a quarterly fee paid in some months — is the sum over its
members of a member-level expression: the line's *share* for each member-month. `capdsl reconcile`
compares the shares with what a remittance paid per member; every engine computes them from the same
tree (`member_share`), the SQL backend as one more query over its member-months.

A line is *attributable* when its amount (definitions inlined) is built from member aggregates by
`+`, `-`, negation, multiplication or division by a practice-level value, and conditions
(`if`, a `paid in` month) that read only the practice-month. A practice-level term (a flat fee), a
`min`/`max`, a rounding or another line's amount have no member part: those lines are reconciled per
practice only.

    share(member) = weight × M(member)

where M replaces each `sum of e over members where c` by `e if c else 0` (and a count by 1 or 0),
so that Σ over the counted members of share = the line's amount before its rounding, up to the 12th
decimal of each product.
"""

from __future__ import annotations

from decimal import Decimal

from capdsl.evaluation import tree as t

ZERO = t.Const(Decimal(0), "decimal")
ONE = t.Const(Decimal(1), "decimal")


def member_share(node: t.Node) -> t.Node | None:
    """M for an inlined line amount: a member-level tree whose weighted sum over the counted members
    is the amount; None when the line is not attributable."""
    if isinstance(node, t.Agg):
        if node.source != "members":
            return None
        value = ONE if node.kind == "count" else node.expr
        return value if node.where is None else t.Case(((node.where, value),), ZERO)
    if isinstance(node, t.Neg):
        inner = member_share(node.operand)
        return None if inner is None else t.Neg(inner)
    if isinstance(node, t.Arith):
        if node.op in "+-":
            left, right = member_share(node.left), member_share(node.right)
            if left is None or right is None:
                return None
            return t.Arith(node.op, left, right, node.origin)
        if node.op == "*":
            for factor, rest, flip in ((node.left, node.right, False), (node.right, node.left, True)):
                if t.practice_level(factor):
                    inner = member_share(rest)
                    if inner is None:
                        return None
                    return t.Arith("*", inner, factor, node.origin) if flip else t.Arith("*", factor, inner, node.origin)
            return None
        if node.op == "/" and t.practice_level(node.right):
            inner = member_share(node.left)
            return None if inner is None else t.Arith("/", inner, node.right, node.origin)
        return None
    if isinstance(node, t.Case):
        if not all(t.practice_level(cond) for cond, _ in node.whens):
            return None
        whens = []
        for cond, value in node.whens:
            inner = ZERO if _is_zero(value) else member_share(value)
            if inner is None:
                return None
            whens.append((cond, inner))
        otherwise = ZERO if _is_zero(node.otherwise) else member_share(node.otherwise)
        if otherwise is None:
            return None
        return t.Case(tuple(whens), otherwise, node.table, node.labels, node.origin)
    return None


def _is_zero(node: t.Node) -> bool:
    return isinstance(node, t.Const) and node.kind in ("decimal", "integer") and node.value == 0


def line_shares(program: t.Program) -> dict[str, t.Node]:
    """Each attributable monthly line's M (inlined), in line order."""
    out = {}
    for line in program.lines:
        if line.kind != "line":
            continue
        share = member_share(t.inline(line.amount, program))
        if share is not None:
            out[line.name] = share
    return out


def evaluate_shares(program: t.Program, rows, months, params: dict) -> list[tuple]:
    """The shares on the reference interpreter: (practice_id, member_id, month_start, line, share, age) per
    counted member-month of `months` and attributable line, the share rounded with the contract's rule,
    ordered as `line_shares`, then practice, month and member."""
    from capdsl.evaluation.amounts import CONTEXT, fix, round_to
    from capdsl.evaluation.interpret import Env, Interpreter
    from capdsl.evaluation.months import Frames

    shares = line_shares(program)
    interp = Interpreter(program, params)
    frames = Frames(program, rows)
    env = Env(params)
    out = []
    for name, share in shares.items():
        for practice in frames.practices:
            for frame in frames.months(practice, months):
                env.enter(frame)
                for row, weight in sorted(zip(frame.members, frame.weights), key=lambda mw: str(mw[0]["member_id"])):
                    env.member = row
                    value = interp.ev(share, env)
                    value = Decimal(value) if isinstance(value, int) else value
                    if weight != 1:
                        value = fix(CONTEXT.multiply(Decimal(weight), value))
                    out.append((practice["practice_id"], row["member_id"], frame.month, name,
                                round_to(value, program.quantum, program.rounding_mode), row["age"]))
                env.member = None
    return out
