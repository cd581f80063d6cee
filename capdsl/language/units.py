"""Types and units: the algebra the checker uses to catch `CZK + EUR`.

A value's type is a kind (bool, text, date, integer, number) and, for
numbers, a unit: a product of base units with integer exponents
(`CZK per point` is {CZK: 1, point: -1}). Singular and plural unit words
name the same base, `%` and `percent` are dimensionless, `money` is the
contract currency. Integer and number mix freely in arithmetic (an integer
result only when both sides are integers), so a count of days can be
multiplied by a decimal rate without ceremony.

`Level` says where a value lives (a constant, per practice, per member, per
event, a practice-month aggregate, a year total); the checker uses it to
keep per-member values inside `sum … over members` and monthly values out
of pool amounts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from capdsl.language import ast_nodes as n

KINDS = ("bool", "text", "date", "integer", "number")
NUMERIC = ("integer", "number")

#: Unit words as written → the base unit they name.
UNIT_WORDS = {
    "point": "point", "points": "point",
    "hour": "hour", "hours": "hour",
    "day": "day", "days": "day",
    "member": "member", "members": "member",
}
_PLURAL = {"point": "points", "hour": "hours", "day": "days", "member": "members"}
#: Units whose quantities are whole numbers (days, head counts).
INTEGER_UNITS = frozenset({"day", "member"})
#: Counting units ignored when units are compared (see `Type.core`).
SOFT_UNITS = frozenset({"member"})
#: Placeholder base for `money` when the contract declares no currency.
NO_CURRENCY = "money"


def is_currency(word: str) -> bool:
    return len(word) == 3 and word.isascii() and word.isalpha() and word.isupper()


@dataclass(frozen=True, slots=True)
class Type:
    """A value's type. `unit` is a sorted tuple of (base, exponent), exponent ≠ 0.
    `kind="any"` stands for an unknown type after an error (it agrees with
    everything, so one mistake is reported once)."""

    kind: str
    unit: tuple[tuple[str, int], ...] = ()

    # ── construction
    @staticmethod
    def of(kind: str, unit: dict[str, int] | None = None) -> "Type":
        return Type(kind, _norm(unit or {}))

    @property
    def units(self) -> dict[str, int]:
        return dict(self.unit)

    # ── predicates
    @property
    def is_any(self) -> bool:
        return self.kind == "any"

    @property
    def is_numeric(self) -> bool:
        return self.kind in NUMERIC

    @property
    def is_dimensionless(self) -> bool:
        return self.kind in NUMERIC and not self.unit

    def currencies(self) -> set[str]:
        return {b for b, _ in self.unit if is_currency(b)}

    def same(self, other: "Type") -> bool:
        """Interchangeable for comparison, addition and table entries."""
        if self.is_any or other.is_any:
            return True
        if self.is_numeric and other.is_numeric:
            return self.core == other.core
        return self.kind == other.kind

    @property
    def core(self) -> tuple[tuple[str, int], ...]:
        """The unit without `member`: a count of members is how rates are said
        ("50 CZK" a month is per member), so CZK and CZK per member agree."""
        return tuple(be for be in self.unit if be[0] not in SOFT_UNITS)

    def join(self, other: "Type") -> "Type":
        """The common type of two interchangeable values (integer ∨ number = number)."""
        if self.is_any:
            return other
        if other.is_any:
            return self
        if self.is_numeric and other.is_numeric and self.kind != other.kind:
            return Type("number", self.unit)
        return self

    # ── arithmetic
    def __mul__(self, other: "Type") -> "Type":
        if self.is_any or other.is_any:
            return ANY
        merged = dict(self.unit)
        for base, exp in other.unit:
            merged[base] = merged.get(base, 0) + exp
        kind = "integer" if self.kind == other.kind == "integer" else "number"
        return Type.of(kind, merged)

    def __truediv__(self, other: "Type") -> "Type":
        if self.is_any or other.is_any:
            return ANY
        return Type("number", self.unit) * Type("number", tuple((b, -e) for b, e in other.unit))

    def plus(self, other: "Type") -> "Type":
        if self.is_any or other.is_any:
            return ANY
        kind = "integer" if self.kind == other.kind == "integer" else "number"
        return Type(kind, self.unit)

    # ── names
    def unit_name(self) -> str:
        return unit_name(self.unit)

    def describe(self) -> str:
        """How an author would say it: "CZK per point", "hours", "a bare number"."""
        if self.is_any:
            return "an unknown type"
        if self.kind == "bool":
            return "true/false"
        if self.kind == "text":
            return "text"
        if self.kind == "date":
            return "a date"
        if not self.unit:
            return "a whole number" if self.kind == "integer" else "a bare number"
        return self.unit_name()

    def __str__(self) -> str:
        return self.describe()


def _norm(unit: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((b, e) for b, e in unit.items() if e != 0))


def _word(base: str, exp: int, plural: bool) -> str:
    word = _PLURAL.get(base, base) if plural and exp == 1 else base
    return word if exp == 1 else f"{base}^{exp}"


def unit_name(unit: tuple[tuple[str, int], ...]) -> str:
    if not unit:
        return "a bare number"
    num = [(b, e) for b, e in unit if e > 0]
    den = [(b, -e) for b, e in unit if e < 0]
    # currencies first: "CZK per point", "CZK × hours"
    num.sort(key=lambda be: (not is_currency(be[0]), be[0]))
    top = " × ".join(_word(b, e, True) for b, e in num) if num else "1"
    if not den:
        return top
    return top + "".join(f" per {_word(b, e, False)}" for b, e in den)


ANY = Type("any")
BOOL = Type("bool")
TEXT = Type("text")
DATE = Type("date")
INTEGER = Type("integer")
NUMBER = Type("number")


#: The checker's type of a value of each of the evaluation tree's kinds (`builtins.KINDS`).
_OF_KIND = {"bool": BOOL, "text": TEXT, "date": DATE, "integer": INTEGER, "decimal": NUMBER}


def of_kind(kind: str) -> Type:
    """The type of a built-in attribute or a panel column of the evaluation tree's `kind`."""
    return _OF_KIND[kind]


def money(currency: str | None) -> Type:
    return Type.of("number", {currency or NO_CURRENCY: 1})


def base_of(word: str, currency: str | None) -> str | None:
    """The base unit a written word names; None for `%` and `percent` (dimensionless)."""
    if word in ("%", "percent"):
        return None
    if word == "money":
        return currency or NO_CURRENCY
    return UNIT_WORDS.get(word, word)


def _unit_type(word: str, per: str | None, currency: str | None, kind: str) -> Type:
    dims: dict[str, int] = {}
    top = base_of(word, currency)
    if top is not None:
        dims[top] = dims.get(top, 0) + 1
    if per is not None:
        bottom = base_of(per, currency)
        if bottom is not None:
            dims[bottom] = dims.get(bottom, 0) - 1
    if kind == "integer" and (per is not None or (top is not None and top not in INTEGER_UNITS)):
        kind = "number"
    return Type.of(kind, dims)


def of_unit(unit: n.UnitExpr | None, currency: str | None, integral: bool = False) -> Type:
    """The type of a quantity literal with this unit (`integral`: the number has no decimals)."""
    if unit is None:
        return INTEGER if integral else NUMBER
    return _unit_type(unit.word, unit.per, currency, "integer" if integral else "number")


def of_type_expr(texpr: n.TypeExpr, currency: str | None) -> Type:
    """The type an input declaration names (`hours`, `money per member`, `bool`)."""
    word = texpr.word
    if word in ("bool", "text", "date") and texpr.per is None:
        return Type(word)
    if word in ("bool", "text", "date"):
        return ANY  # `text per member` means nothing; the checker reports it
    if word == "integer":
        return _unit_type("percent", texpr.per, currency, "integer")
    if word in ("number", "percent"):
        return _unit_type("percent", texpr.per, currency, "number")
    return _unit_type(word, texpr.per, currency, "integer")


def quantity_type(q: n.Quantity, currency: str | None) -> Type:
    integral = "." not in q.text and (q.unit is None or q.unit.word != "%")
    return of_unit(q.unit, currency, integral)


class Level(enum.IntEnum):
    """Where a value lives. Ordered loosely by how much it aggregates; the
    checker tracks the underlying facts (per-member, per-event, aggregate,
    annual) separately and derives the level for `Symbol.level`."""

    CONST = 0
    PRACTICE = 1
    MEMBER = 2
    EVENT = 3
    AGGREGATE = 4
    YEAR = 5
