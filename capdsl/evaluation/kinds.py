"""The kind of a tree node's value (integer, decimal, bool, text, date), for every stage that reads
the tree: the lowerer (a band keyed by whole numbers needs fewer tests) and the SQL emitter (the
type a value is emitted as). One rule, so the two cannot disagree on what is a whole number."""

from __future__ import annotations

from collections.abc import Mapping

from capdsl.evaluation import tree as t
from capdsl.language.builtins import CALENDAR, EXPOSURE_RULES


def unify(kinds: list[str]) -> str:
    """The kind of a value that is one of several: whole only when all are, else a decimal."""
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


def kind_of(node: t.Node, exposure: str, definitions: Mapping[str, t.Definition] | None = None) -> str:
    """The kind of `node`'s value; a count of members is a whole number only with whole weights.
    A `Ref` has its definition's kind (`definitions`: those lowered so far), else a decimal."""
    def kind(n: t.Node) -> str:
        if isinstance(n, (t.Const, t.Col, t.Param, t.Measure)):
            return n.kind
        if isinstance(n, (t.Cmp, t.And, t.Or, t.Not, t.In, t.Present)):
            return "bool"
        if isinstance(n, t.Ref):
            return definitions[n.name].kind if definitions and n.name in definitions else "decimal"
        if isinstance(n, t.MonthStart):
            return "date"
        if isinstance(n, t.Calendar):
            return CALENDAR[n.part].kind
        if isinstance(n, t.DateDiff):
            return "integer"
        if isinstance(n, t.Case):
            return unify([kind(v) for _, v in n.whens] + ([] if isinstance(n.otherwise, t.Fail) else [kind(n.otherwise)]))
        if isinstance(n, t.Coalesce):
            return unify([kind(n.operand), kind(n.default)])
        if isinstance(n, t.MinMax):
            return unify([kind(a) for a in n.args])
        if isinstance(n, (t.Neg, t.Abs)):
            return kind(n.operand)
        if isinstance(n, t.Arith):
            return "integer" if {kind(n.left), kind(n.right)} == {"integer"} and n.op != "/" else "decimal"
        if isinstance(n, t.Agg):
            return "integer" if n.kind == "count" and n.source == "members" and whole_weights(exposure) else "decimal"
        return "decimal"

    return kind(node)

