"""The unit algebra: the arithmetic the checker relies on to catch `CZK + EUR`."""

from __future__ import annotations

from decimal import Decimal

import pytest

from capdsl.language import ast_nodes as n
from capdsl.language import units as u
from capdsl.language.units import Level, Type


def q(text: str, word: str | None = None, per: str | None = None) -> n.Quantity:
    value = Decimal(text) / (100 if word == "%" else 1)
    return n.Quantity(value, text, n.UnitExpr(word, per) if word else None)


def t(word: str, per: str | None = None, currency: str = "CZK") -> Type:
    return u.of_type_expr(n.TypeExpr(word, per), currency)


def test_singular_and_plural_are_one_unit():
    assert u.quantity_type(q("1", "day"), "CZK") == u.quantity_type(q("2", "days"), "CZK")
    assert u.quantity_type(q("1", "point"), "CZK").same(u.quantity_type(q("350", "points"), "CZK"))
    assert t("hours") == t("hour")


def test_money_is_the_contract_currency():
    assert t("money") == t("CZK")
    assert t("money", currency="EUR") == u.money("EUR")
    assert t("money", "member") .same(t("CZK", "member"))


def test_percent_is_a_dimensionless_number():
    assert t("percent") == u.NUMBER
    assert u.quantity_type(q("15", "%"), "CZK").is_dimensionless
    assert u.quantity_type(q("15", "%"), "CZK").kind == "number"


def test_integer_kinds():
    assert t("integer") == u.INTEGER
    assert t("days").kind == "integer"
    assert t("members").kind == "integer"
    assert t("hours").kind == "number"
    assert u.quantity_type(q("2"), "CZK") == u.INTEGER
    assert u.quantity_type(q("2.5"), "CZK") == u.NUMBER
    assert u.quantity_type(q("1.00"), "CZK").kind == "number"


def test_multiplication_cancels_units():
    points = u.quantity_type(q("350", "points"), "CZK")
    rate = u.quantity_type(q("1.08", "CZK", "point"), "CZK")
    assert (points * rate).same(u.money("CZK"))
    assert (points * rate).unit == (("CZK", 1),)
    assert (rate * points) == (points * rate)


def test_division_and_rates():
    money = u.money("CZK")
    hours = t("hours")
    per_hour = money / hours
    assert per_hour.unit_name() == "CZK per hour"
    assert (per_hour * hours).same(money)
    assert (money / money).is_dimensionless


def test_integer_plus_integer_is_integer_and_number_mixes():
    assert u.INTEGER.plus(u.INTEGER).kind == "integer"
    assert u.INTEGER.plus(u.NUMBER).kind == "number"
    assert (u.INTEGER * u.INTEGER).kind == "integer"
    assert (u.INTEGER / u.INTEGER).kind == "number"
    days = t("days")
    assert days.same(u.quantity_type(q("1.5", "days"), "CZK"))  # loose: integer and number agree


def test_currencies_differ():
    assert not u.money("CZK").same(u.money("EUR"))
    assert not u.money("CZK").same(u.NUMBER)
    assert u.money("CZK").currencies() == {"CZK"}


def test_member_is_a_counting_unit():
    """`CZK per member × members` is CZK, and a rate "50 CZK" a month is per member."""
    per_member = t("CZK", "member")
    members = t("members")
    assert (per_member * members).unit == (("CZK", 1),)
    assert per_member.same(u.money("CZK"))
    assert per_member.unit_name() == "CZK per member"


def test_any_agrees_with_everything():
    assert u.ANY.same(u.TEXT) and u.money("CZK").same(u.ANY)
    assert (u.ANY * u.money("CZK")).is_any
    assert u.ANY.join(u.TEXT) == u.TEXT


@pytest.mark.parametrize("typ, name", [
    (u.money("CZK"), "CZK"),
    (Type.of("number", {"CZK": 1, "point": -1}), "CZK per point"),
    (Type.of("number", {"hour": 1}), "hours"),
    (Type.of("integer", {"day": 1}), "days"),
    (Type.of("number", {"point": 1, "member": -1}), "points per member"),
    (Type.of("number", {"CZK": 2}), "CZK^2"),
    (u.NUMBER, "a bare number"),
    (u.INTEGER, "a whole number"),
    (u.BOOL, "true/false"),
    (u.TEXT, "text"),
    (u.DATE, "a date"),
])
def test_pretty_names(typ, name):
    assert typ.describe() == name


def test_non_numeric_types_from_declarations():
    assert t("bool") == u.BOOL and t("text") == u.TEXT and t("date") == u.DATE
    assert t("text", "member").is_any


def test_levels_are_ordered_by_aggregation():
    assert Level.CONST < Level.PRACTICE < Level.MEMBER < Level.AGGREGATE < Level.YEAR
    assert {lv.name for lv in Level} == {"CONST", "PRACTICE", "MEMBER", "EVENT", "AGGREGATE", "YEAR"}
