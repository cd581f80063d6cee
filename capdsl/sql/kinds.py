"""The SQL types of tree nodes: the kind an expression has once emitted, and, for the small
numbers whose type is known exactly, its (precision, scale), so that a product needs no cast."""

from __future__ import annotations

from decimal import Decimal

from capdsl.evaluation import tree as t
from capdsl.language.builtins import CALENDAR, EXPOSURE_RULES
from capdsl.sql.exprs import AGE_ATTR


def unify(kinds: list[str]) -> str:
    kinds = [k for k in kinds if k]
    if not kinds:
        return "decimal"
    if all(k == "integer" for k in kinds):
        return "integer"
    if all(k in ("integer", "decimal") for k in kinds):
        return "decimal"
    return kinds[0]


def whole_weights(exposure: str) -> bool:
    """Whether every member-month weighs 1 under the exposure rule (else a share of the month's days)."""
    return EXPOSURE_RULES[exposure].weight == "whole"


def kind_of(node: t.Node, exposure: str) -> str:
    """The kind of `node` as emitted; a count of members is a whole number only with whole weights."""
    if isinstance(node, (t.Const, t.Col, t.Param, t.Measure)):
        return "integer" if node.kind == "integer" else node.kind
    if isinstance(node, (t.Cmp, t.And, t.Or, t.Not, t.In, t.Present)):
        return "bool"
    if isinstance(node, t.MonthStart):
        return "date"
    if isinstance(node, t.Calendar):
        return CALENDAR[node.part].kind
    if isinstance(node, t.DateDiff):
        return "integer"
    if isinstance(node, t.Case):
        kinds = [kind_of(v, exposure) for _, v in node.whens] + (
            [] if isinstance(node.otherwise, t.Fail) else [kind_of(node.otherwise, exposure)])
        return unify(kinds)
    if isinstance(node, t.Coalesce):
        return unify([kind_of(node.operand, exposure), kind_of(node.default, exposure)])
    if isinstance(node, t.MinMax):
        return unify([kind_of(a, exposure) for a in node.args])
    if isinstance(node, (t.Neg, t.Abs)):
        return kind_of(node.operand, exposure)
    if isinstance(node, t.Arith):
        both = {kind_of(node.left, exposure), kind_of(node.right, exposure)}
        return "integer" if both == {"integer"} and node.op != "/" else "decimal"
    if isinstance(node, t.Agg):
        return "integer" if (node.kind == "count" and node.source == "members"
                             and whole_weights(exposure)) else "decimal"
    return "decimal"


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
