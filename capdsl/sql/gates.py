"""Which members a sum over members can skip: those whose member-event total (`tree.MemberEvents`)
fails a threshold, when the sum's term is exactly 0 for every such member. The query then sums it
over the members whose total passes only, an inner join to the few totals above an attachment
point instead of every member-month joined to every member's total (`members.member_passes`).

Sound by construction, on a small set of forms (anything else has no gate):
  where  T > c (c ≥ 0), T >= c (c > 0), the same written c < T / c <= T; an `and` with such an
         item after items that cannot fail; an `or` of such items on one total
  term   max(0, T − c, …) with c ≥ 0; k × term, term × k (k a constant or a parameter); −term;
         term ± term; |term|; a rounded term; `if <where form> then … else 0`
A member with no events has T = 0, which fails every condition above (hence c ≥ 0 for `>`, c > 0
for `>=`: a threshold that would let T = 0 pass, or a parameter threshold not known when the query
is compiled, is not recognised, and every member is joined).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from capdsl.evaluation import tree as t
from capdsl.sql.analysis import raises

FLIP = {"<": ">", "<=": ">="}


@dataclass(frozen=True)
class Gate:
    """A member-event total and conditions on it (`(op, threshold)`, op `>` or `>=`): for a member
    whose total meets none of them an aggregate's term is 0 (or its `where` false) without failing,
    and a total of 0 meets none."""

    total: t.MemberEvents
    conds: frozenset[tuple[str, Decimal]]

    def __or__(self, other: "Gate | None") -> "Gate | None":
        """The gate of a sum of two gated terms: on one total, either's conditions."""
        if other is None or other.total != self.total:
            return None
        return Gate(self.total, self.conds | other.conds)


def gate(agg: t.Agg) -> Gate | None:
    """The gate of an (inlined) aggregate over members, or None when every member must be summed."""
    if agg.source != "members":
        return None
    if agg.where is not None:
        found = where_gate(agg.where)
        if found is not None:  # the term is not evaluated where `where` is false
            return found
        if raises(agg.where):  # every member's `where` must be evaluated, for its failure
            return None
    if agg.kind != "sum" or agg.expr is None:
        return None
    return term_gate(agg.expr)


def number(node: t.Node) -> Decimal | None:
    """The value of a numeric constant."""
    if isinstance(node, t.Const) and node.kind in ("decimal", "integer") and not isinstance(node.value, bool):
        return Decimal(node.value)
    return None


def threshold(op: str, c: Decimal | None) -> bool:
    """Whether `T op c` is false at T = 0."""
    return c is not None and ((op == ">" and c >= 0) or (op == ">=" and c > 0))


def where_gate(node: t.Node) -> Gate | None:
    """The gate of a condition: false, without failing, for a member whose total meets none of the
    gate's conditions."""
    if isinstance(node, t.Cmp):
        left, op, right = node.left, node.op, node.right
        if op in FLIP:
            left, op, right = right, FLIP[op], left
        if isinstance(left, t.MemberEvents) and op in (">", ">=") and threshold(op, c := number(right)):
            return Gate(left, frozenset({(op, c)}))
        return None
    if isinstance(node, t.And):  # false at its first false item; the items before it must not fail
        for item in node.items:
            found = where_gate(item)
            if found is not None:
                return found
            if raises(item):
                return None
        return None
    if isinstance(node, t.Or):
        return union([where_gate(item) for item in node.items])
    return None


def term_gate(node: t.Node) -> Gate | None:
    """The gate of a member's term: exactly 0, without failing, for a member whose total meets none
    of the gate's conditions."""
    if isinstance(node, t.MinMax) and node.op == "max":
        zeros = [a for a in node.args if number(a) == 0]
        rest = [a for a in node.args if number(a) != 0]
        if not zeros or not rest:
            return None
        parts = []
        for arg in rest:  # T − c ≤ 0 exactly when T ≤ c (subtraction is exact)
            if not (isinstance(arg, t.Arith) and arg.op == "-" and isinstance(arg.left, t.MemberEvents)
                    and threshold(">", c := number(arg.right))):
                return None
            parts.append(Gate(arg.left, frozenset({(">", c)})))
        return union(parts)
    if isinstance(node, t.Arith) and node.op == "*":  # k × 0 = 0
        for k, term in ((node.left, node.right), (node.right, node.left)):
            if number(k) is not None or (isinstance(k, t.Param) and k.kind in ("decimal", "integer")):
                found = term_gate(term)
                if found is not None:
                    return found
        return None
    if isinstance(node, t.Arith) and node.op in "+-":
        return union([term_gate(node.left), term_gate(node.right)])
    if isinstance(node, (t.Neg, t.Abs, t.Round)):
        return term_gate(node.operand)
    if isinstance(node, t.Case) and len(node.whens) == 1 and number(node.otherwise) == 0:
        return where_gate(node.whens[0][0])  # the value is evaluated only where the condition holds
    return None


def union(gates: list[Gate | None]) -> Gate | None:
    """The gate of terms all gated on one total: any one's conditions."""
    if not gates or gates[0] is None:
        return None
    out = gates[0]
    for g in gates[1:]:
        out = out | g
        if out is None:
            return None
    return out
