"""Exact amounts: the fixed-point scale, rounding, and the monthly result every backend produces.

Shared by the interpreter, the SQL engines and statements, and kept apart
from them so that turning a cached query's rows into statements needs
neither the evaluation tree nor the interpreter (a re-run of `capdsl eval`
imports neither).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Context, Decimal, DivisionByZero, \
    InvalidOperation

SCALE = 12  # fractional digits of every intermediate value (tree.py states the semantics)
Q12 = Decimal(1).scaleb(-SCALE)
ZERO = Decimal(0)
ONE = Decimal(1)
CONTEXT = Context(prec=80, traps=[InvalidOperation, DivisionByZero])
MODES = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "down": ROUND_DOWN, "up": ROUND_UP}


def fix(value: Decimal) -> Decimal:
    """Round to the fixed-point scale (half away from zero), as SQL's DECIMAL(38,12) cast does."""
    return value.quantize(Q12, rounding=ROUND_HALF_UP, context=CONTEXT)


def quantum_places(quantum: Decimal) -> Decimal | None:
    """The decimal places an amount rounded to `quantum` is shown with (0.05 → 0.01), or None for a
    whole-number quantum."""
    exp = quantum.as_tuple().exponent
    return Decimal(1).scaleb(exp) if isinstance(exp, int) and exp < 0 else None


def round_to(value: Decimal, quantum: Decimal, mode: str) -> Decimal:
    """Round to a multiple of `quantum` (0.01, 0.05, 1, …) with an explicit mode."""
    value = value if isinstance(value, Decimal) else Decimal(value)
    steps = (value / quantum).quantize(ONE, rounding=MODES[mode], context=CONTEXT) if quantum != ONE else \
        value.quantize(ONE, rounding=MODES[mode], context=CONTEXT)
    result = steps * quantum
    places = quantum_places(quantum)
    return result.quantize(places, context=CONTEXT) if places is not None else result


def rounder(quantum: Decimal, mode: str):
    """`round_to` with `quantum` and `mode` fixed, for rounding many amounts: a power-of-ten quantum
    (1, 0.01, …) is one quantize, which gives exactly round_to's result (dividing by a power of
    ten only moves the exponent)."""
    shape = quantum.as_tuple()
    if shape.digits == (1,) and isinstance(shape.exponent, int) and shape.exponent <= 0 and shape.sign == 0:
        rounding = MODES[mode]
        return lambda value: value.quantize(quantum, rounding=rounding, context=CONTEXT)
    return lambda value: round_to(value, quantum, mode)


# ─────────────────────────────── results ─────────────────────────────────

@dataclass
class MonthlyResult:
    """What a backend computes; `statement.build` turns it into statements.

    rows: (practice_id, month_start, line, amount, applied, basis) for lines;
    pools: (practice_id, line, year, amount, applied);
    installments: (practice_id, line, year, month (1–12, the month it is paid in), amount, paid)."""

    rows: list = field(default_factory=list)
    pools: list = field(default_factory=list)
    installments: list = field(default_factory=list)
    practices: list = field(default_factory=list)
