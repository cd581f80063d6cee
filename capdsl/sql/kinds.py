"""The SQL types of tree nodes: for the small numbers whose type is known exactly, its (precision,
scale), so that a product needs no cast. The kind of a value (`kind_of`) is the evaluation layer's
(`capdsl.evaluation.kinds`), the same rule the lowerer reads."""

from __future__ import annotations

from decimal import Decimal

from capdsl.evaluation import tree as t
from capdsl.evaluation.kinds import kind_of, unify, whole_weights  # noqa: F401  (the one rule, re-exported)
from capdsl.sql.exprs import AGE_ATTR


def numeric_type(node: t.Node) -> tuple[int, int] | None:
    """(precision, scale) of a number as emitted, when small and known; None otherwise."""
    cls = type(node)
    if cls is t.Const and node.kind in ("decimal", "integer") and not isinstance(node.value, bool):
        sign, digits, exponent = Decimal(node.value).as_tuple()
        scale = max(0, -exponent)
        return max(len(digits), scale + 1, 10 if scale == 0 else 0), scale
    if cls is t.Col and node.table == "member" and node.name == AGE_ATTR:
        return 19, 0
    if cls is t.Case:
        values = [v for _, v in node.whens] + ([] if isinstance(node.otherwise, t.Fail) else [node.otherwise])
        types = [numeric_type(v) for v in values]
        if not types or any(x is None for x in types):
            return None
        scale = max(x[1] for x in types)
        whole = max(x[0] - x[1] for x in types)
        return (whole + scale, scale) if whole + scale <= 38 else None
    if cls is t.Arith and node.op == "*":
        a, b = numeric_type(node.left), numeric_type(node.right)
        if a is None or b is None or a[1] + b[1] > 12 or a[0] + b[0] > 38:
            return None
        return a[0] + b[0], a[1] + b[1]
    return None


def exact_product(node: t.Arith) -> bool:
    """Whether a product is exact in the operands' own types (no rounding needed, no cast): both
    have known small types whose scales add up to at most 12 and whose precisions fit 38 digits.
    Band and tier values times each other are the hot path of member sums."""
    return numeric_type(node) is not None
