"""Statements: the payment per practice, line by line — the product's output.

Every backend produces a `MonthlyResult` (rounded line amounts per
practice-month, pools and installments); `build` sums it over the period
into these pydantic models, which define the JSON output and its JSON
Schema (`capdsl schema`). Amounts are decimal strings in JSON, never floats.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from capdsl.evaluation.amounts import MonthlyResult, quantum_places, rounder

if TYPE_CHECKING:
    from capdsl.evaluation.layout import Layout

ZERO = Decimal(0)


def _doc(text: str, default=None, **kw):
    """A field with a description for the JSON Schema (pydantic reads dataclass field metadata)."""
    return field(default=default, metadata={"description": text}, **kw)


# Dataclasses, not pydantic models: building a statement is plain Python, and only the JSON writer
# and `capdsl schema` load pydantic (a TypeAdapter over these classes; amounts are strings). Not
# frozen: a statement is output, built once and never hashed, and a frozen __init__ (one
# object.__setattr__ a field) is a large share of building a big panel's statements.

@dataclass(slots=True, kw_only=True)
class Installment:
    quarter: int = _doc("1-4; paid in the last month of the quarter", default=dataclasses.MISSING)
    share: str = _doc("'10%' or 'rest'", default=dataclasses.MISSING)
    amount: Decimal
    paid: bool
    condition: str | None = _doc("the condition the installment depends on, as written")


@dataclass(slots=True, kw_only=True)
class Line:
    id: str
    label: str
    kind: Literal["line", "pool"]
    amount: Decimal
    basis: Decimal | None = _doc("the quantity the line is computed on, e.g. members")
    basis_unit: str | None = None
    applied: bool = True
    note: str | None = _doc("why a line was not (or only partly) applied")
    report_amount: Decimal | None = _doc("the amount in the report currency")
    pool_amount: Decimal | None = _doc("for pools: the annual amount split into installments")
    installments: list[Installment] = field(default_factory=list)
    ref: str | None = _doc("the contract clause the line comes from")
    source: str = _doc("file:line of the line's definition", default=dataclasses.MISSING)


@dataclass(slots=True, kw_only=True)
class Statement:
    practice_id: str
    lines: list[Line]
    total: Decimal
    report_total: Decimal | None = None


@dataclass(slots=True, kw_only=True)
class Result:
    """The output of `capdsl eval`."""

    contract: str
    path: str
    period: str
    months: list[str]
    currency: str
    report_currency: str | None = None
    report_rate: Decimal | None = None
    engine: str
    statements: list[Statement]
    total: Decimal
    report_total: Decimal | None = None
    warnings: list[str] = field(default_factory=list)


def _quantizer(quantum: Decimal):
    """Amounts shown with the quantum's decimal places (0.01 → 2), rounded already: `_q(value)`."""
    places = quantum_places(quantum)
    return (lambda value: value) if places is None else (lambda value: value.quantize(places))


def _basis_value(value: Decimal) -> Decimal:
    """A basis as people write it: 1500 (not 1.5E+3 or 1500.000), 12.5 (not 12.500)."""
    return value.quantize(ONE) if value == value.to_integral_value() else value.normalize()


ONE = Decimal(1)


class _Sum:
    """One line of one practice over the period's months."""

    __slots__ = ("amount", "applied", "months", "basis")

    def __init__(self, amount: Decimal, applied: bool, basis: Decimal | None) -> None:
        self.amount, self.applied, self.months, self.basis = amount, int(applied), 1, basis


def build(layout: Layout, monthly: MonthlyResult, period_text: str, months: tuple[date, ...],
          engine: str, warnings: list[str] | None = None) -> Result:
    """Sum monthly results over the period into statements (deterministic order), laid out as
    `layout` (`layout.layout_of(program)`, or the compiled contract's) says."""
    quantum, mode = layout.quantum, layout.rounding_mode
    rate = layout.report_rate
    _q = _quantizer(quantum)
    to_quantum = rounder(quantum, mode)
    # the same amounts recur across practices (fixed fees); equal amounts are also equally written
    # when they are quantized to fixed places, so only then may one conversion serve them all
    converted: dict[Decimal, Decimal] | None = {} if quantum_places(quantum) is not None else None

    def convert(amount: Decimal) -> Decimal | None:
        if rate is None:
            return None
        if converted is None:
            return to_quantum(amount / rate)
        found = converted.get(amount)
        if found is None:
            found = converted[amount] = to_quantum(amount / rate)
        return found

    sums: dict[tuple[str, str], _Sum] = {}
    for pid, _month, name, amount, applied, basis in monthly.rows:
        acc = sums.get((pid, name))
        if acc is None:
            sums[(pid, name)] = _Sum(ZERO + amount, applied, basis)  # ZERO +: as the sum of one month
        else:
            acc.amount += amount
            acc.applied += bool(applied)
            acc.months += 1
            if basis is not None:
                acc.basis = basis if acc.basis is None else acc.basis + basis
    pool_year: dict[tuple[str, str], tuple[Decimal, bool]] = {}
    for pid, name, _year, amount, applied in monthly.pools:
        pool_year[(pid, name)] = (amount, applied)
    installments: dict[tuple[str, str], list] = defaultdict(list)
    for pid, name, _year, quarter, amount, paid in monthly.installments:
        installments[(pid, name)].append((quarter, amount, paid))

    multi = len(months) > 1
    bases: dict[Decimal, Decimal] = {}
    statements = []
    grand = ZERO
    per_line = [(line, f"{layout.path}:{line.origin.line}",
                 "member-months" if line.basis_label == "members" and multi else line.basis_label)
                for line in layout.lines]
    for pid in monthly.practices:
        lines = []
        total = ZERO
        for line, source, unit in per_line:
            name = line.name
            if line.kind == "line":
                acc = sums.get((pid, name))
                if acc is None:
                    amount, applied, note, basis = _q(ZERO), True, None, None
                else:
                    amount = _q(acc.amount)
                    applied = acc.applied > 0
                    note = None
                    if acc.applied < acc.months:
                        cond = line.applies_text or "its condition"
                        note = (f"not applied: `{cond}` does not hold" if not applied else
                                f"applied in {acc.applied} of {acc.months} months (`{cond}`)")
                    basis = acc.basis
                    if basis is not None:
                        shown = bases.get(basis)
                        if shown is None:
                            shown = bases[basis] = _basis_value(basis)
                        basis = shown
                lines.append(Line(id=name, label=line.label, kind="line", amount=amount, basis=basis,
                                  basis_unit=unit if basis is not None else None, applied=applied, note=note,
                                  report_amount=convert(amount), ref=line.ref, source=source))
            else:
                key = (pid, name)
                pool_amount, pool_applied = pool_year.get(key, (None, True))
                insts = []
                by_quarter = {q: (a, p) for q, a, p in installments.get(key, [])}
                for inst in line.installments:
                    if inst.quarter not in by_quarter:
                        continue
                    amount_q, paid = by_quarter[inst.quarter]
                    share = "rest" if inst.share is None else f"{(inst.share * 100).normalize():f}%"
                    insts.append(Installment(quarter=inst.quarter, share=share, amount=_q(amount_q),
                                             paid=paid, condition=inst.when_text))
                amount = _q(sum((i.amount for i in insts), ZERO))
                note = None
                if pool_amount is None:
                    note = "no installment is due in this period"
                elif not pool_applied:
                    note = f"not applied: `{line.applies_text}` does not hold"
                elif any(not i.paid for i in insts):
                    withheld = ", ".join(f"Q{i.quarter}" for i in insts if not i.paid)
                    note = f"withheld: {withheld} (condition not met)"
                lines.append(Line(id=name, label=line.label, kind="pool", amount=amount,
                                  applied=bool(pool_applied) if pool_amount is not None else True, note=note,
                                  report_amount=convert(amount),
                                  pool_amount=_q(pool_amount) if pool_amount is not None else None,
                                  installments=insts, ref=line.ref, source=source))
            total += amount
        total = _q(total)
        grand += total
        statements.append(Statement(practice_id=pid, lines=lines, total=total, report_total=convert(total)))
    grand = _q(grand)
    return Result(contract=layout.name, path=layout.path, period=period_text,
                  months=[m.isoformat()[:7] for m in months], currency=layout.currency,
                  report_currency=layout.report_currency, report_rate=rate, engine=engine,
                  statements=statements, total=grand, report_total=convert(grand), warnings=warnings or [])


@functools.lru_cache(maxsize=1)
def _adapter():
    from pydantic import TypeAdapter

    return TypeAdapter(Result)


def json_schema() -> dict:
    return _adapter().json_schema(mode="serialization")


def to_jsonable(result: Result) -> dict:
    """The result as JSON-ready data: amounts as decimal strings, in field order."""
    return _adapter().dump_python(result, mode="json")
