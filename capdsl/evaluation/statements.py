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
    quarter: int = _doc("1-4: the quarter of the month it is paid in", default=dataclasses.MISSING)
    month: int = _doc("1-12: the month it is paid in", default=dataclasses.MISSING)
    when: str = _doc("when it is paid, as the contract writes it: 'Q2' (June), 'H1' (June), 'June'",
                     default=dataclasses.MISSING)
    share: str = _doc("'10%', '1/12' (an equal part) or 'rest'", default=dataclasses.MISSING)
    amount: Decimal
    paid: bool
    condition: str | None = _doc("the condition the installment depends on, as written")


@dataclass(slots=True, kw_only=True)
class Line:
    id: str
    label: str
    kind: Literal["line", "pool", "adjustment"] = _doc(
        "line (monthly), pool (annual, in installments) or adjustment (`capdsl retro`: owed for past months)",
        default=dataclasses.MISSING)
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
class MonthLine:
    """One line of one practice in one month of the period (`--by month`)."""

    id: str
    amount: Decimal
    basis: Decimal | None = None
    basis_unit: str | None = None
    applied: bool = True
    note: str | None = None
    report_amount: Decimal | None = _doc("the month's share of the period's report amount: the running "
                                         "total converted, less the months before (they add up to the "
                                         "period's)")


@dataclass(slots=True, kw_only=True)
class MonthStatement:
    month: str = _doc("YYYY-MM", default=dataclasses.MISSING)
    lines: list[MonthLine]
    total: Decimal
    report_total: Decimal | None = None


@dataclass(slots=True, kw_only=True)
class Statement:
    practice_id: str
    lines: list[Line]
    total: Decimal
    report_total: Decimal | None = None
    months: list[MonthStatement] | None = _doc(
        "with --by month: the statement of each month of the period; every line's monthly amounts add up "
        "to its period amount (a pool's installments fall in the month they are paid in)")


@dataclass(slots=True, kw_only=True)
class PracticeTotal:
    """One practice in the `--summary` view."""

    practice_id: str
    total: Decimal
    report_total: Decimal | None = None
    lines: int = _doc("the number of lines in the practice's statement", default=dataclasses.MISSING)
    month: str | None = _doc("with --by month: YYYY-MM; None for the period's total")


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
    summary: list[PracticeTotal] | None = _doc(
        "with --summary: one entry per practice (and, with --by month, per practice and month); "
        "`statements` is then empty")


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


def not_applied_note(cond: str | None, reasons: tuple[str, ...] = ()) -> str:
    """Why a line was not applied: the parts of its condition that failed when they are known
    (`reasons`, e.g. "`practice.akord` is false"), else the whole condition."""
    if reasons:
        return "not applied: " + "; ".join(reasons)
    return f"not applied: `{cond or 'its condition'}` does not hold"


def _reasons(failed, keys) -> tuple[str, ...]:
    """The failed parts over some practice-months, each once, in the order first met."""
    out: dict[str, None] = {}
    for key in keys:
        out.update(dict.fromkeys(failed.get(key, ())))
    return tuple(out)


def build(layout: Layout, monthly: MonthlyResult, period_text: str, months: tuple[date, ...],
          engine: str, warnings: list[str] | None = None, *, by_month: bool = False,
          failed: dict | None = None) -> Result:
    """Sum monthly results over the period into statements (deterministic order), laid out as
    `layout` (`layout.layout_of(program)`, or the compiled contract's) says.

    Line amounts are rounded per practice-month by every backend, so a period's amount is the exact
    sum of its months' (`by_month` adds those months to each statement). `failed` maps (practice,
    month, line) — month None for a pool — to the parts of the line's condition that were false
    there, for the "not applied" note."""
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

    failed = failed or {}
    sums: dict[tuple[str, str], _Sum] = {}
    due_of = {line.name: frozenset(line.due) for line in layout.lines if line.due}
    for pid, month, name, amount, applied, basis in monthly.rows:
        if name in due_of and month.month not in due_of[name]:
            continue  # not paid this month: 0, whatever its condition
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
    for pid, name, _year, month_number, amount, paid in monthly.installments:
        installments[(pid, name)].append((month_number, amount, paid))

    multi = len(months) > 1
    bases: dict[Decimal, Decimal] = {}
    monthly_of: dict[str, dict] = defaultdict(dict)
    if by_month:
        for pid, month, name, amount, applied, basis in monthly.rows:
            monthly_of[pid][(month, name)] = (amount, applied, basis)
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
                    if line.due:
                        note = f"not due in this period ({line.due_text})"
                else:
                    amount = _q(acc.amount)
                    applied = acc.applied > 0
                    note = None
                    if acc.applied < acc.months:
                        cond = line.applies_text or "its condition"
                        reasons = _reasons(failed, ((pid, m, name) for m in months)) if failed else ()
                        if not applied:
                            note = not_applied_note(cond, reasons)
                        elif reasons:
                            note = f"applied in {acc.applied} of {acc.months} months; otherwise " + "; ".join(reasons)
                        else:
                            note = f"applied in {acc.applied} of {acc.months} months (`{cond}`)"
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
                in_month = {m: (a, p) for m, a, p in installments.get(key, [])}
                for inst in line.installments:
                    if inst.month not in in_month:
                        continue
                    amount_m, paid = in_month[inst.month]
                    insts.append(Installment(quarter=inst.quarter, month=inst.month, when=inst.label,
                                             share=share_text(inst, line.installments), amount=_q(amount_m),
                                             paid=paid, condition=inst.when_text))
                amount = _q(sum((i.amount for i in insts), ZERO))
                note = None
                if pool_amount is None:
                    note = "no installment is due in this period"
                elif not pool_applied:
                    note = not_applied_note(line.applies_text, _reasons(failed, [(pid, None, name)]))
                elif any(not i.paid for i in insts):
                    withheld = ", ".join(i.when for i in insts if not i.paid)
                    note = f"withheld: {withheld} (condition not met)"
                lines.append(Line(id=name, label=line.label, kind="pool", amount=amount,
                                  applied=bool(pool_applied) if pool_amount is not None else True, note=note,
                                  report_amount=convert(amount),
                                  pool_amount=_q(pool_amount) if pool_amount is not None else None,
                                  installments=insts, ref=line.ref, source=source))
            total += amount
        total = _q(total)
        grand += total
        statement = Statement(practice_id=pid, lines=lines, total=total, report_total=convert(total))
        if by_month:
            statement.months = _by_month(statement, months, monthly_of.get(pid, {}), per_line, failed, _q, convert,
                                         bases)
        statements.append(statement)
    grand = _q(grand)
    return Result(contract=layout.name, path=layout.path, period=period_text,
                  months=[m.isoformat()[:7] for m in months], currency=layout.currency,
                  report_currency=layout.report_currency, report_rate=rate, engine=engine,
                  statements=statements, total=grand, report_total=convert(grand), warnings=warnings or [])


def _by_month(statement: Statement, months, rows: dict, per_line, failed: dict, _q, convert, bases) -> list:
    """The statement's months: each line's month amount, and report amounts converted on the running
    total (the month's share is the running total's conversion less the months before), so that the
    months add up exactly to the period in both currencies."""
    out = []
    running: dict[str, Decimal] = defaultdict(lambda: ZERO)  # line id (and "" for the total) → amount
    shown: dict[str, Decimal | None] = defaultdict(lambda: convert(ZERO))

    def share(key: str, amount: Decimal) -> Decimal | None:
        before = shown[key]
        running[key] += amount
        now = shown[key] = convert(running[key])
        return None if now is None else _q(now - before)

    by_id = {line.id: line for line in statement.lines}
    for month in months:
        lines, total = [], ZERO
        for outline, _source, _unit in per_line:
            name, line = outline.name, by_id[outline.name]
            if outline.kind == "line":
                amount, applied, basis = rows.get((month, name), (ZERO, True, None))
                amount = _q(ZERO + amount)
                if outline.due and month.month not in outline.due:
                    applied, basis, note = True, None, f"not due this month ({outline.due_text})"
                else:
                    note = None if applied else not_applied_note(
                        outline.applies_text, _reasons(failed, [(statement.practice_id, month, name)]))
                if basis is not None:
                    basis = bases.get(basis) or bases.setdefault(basis, _basis_value(basis))
                unit = outline.basis_label if basis is not None else None
                lines.append(MonthLine(id=name, amount=amount, basis=basis, basis_unit=unit, applied=bool(applied),
                                       note=note, report_amount=share(name, amount)))
            else:  # a pool's installment is paid in its month
                due = [i for i in line.installments if month.month == i.month]
                amount = _q(sum((i.amount for i in due), ZERO))
                note = line.note if due else None
                lines.append(MonthLine(id=name, amount=amount, applied=line.applied or not due, note=note,
                                       report_amount=share(name, amount)))
            total += amount
        total = _q(total)
        out.append(MonthStatement(month=month.isoformat()[:7], lines=lines, total=total,
                                  report_total=share("", total)))
    return out


def share_text(inst, installments) -> str:
    """How the contract shares a pool out to an installment: '10%', '1/12', or 'rest'."""
    if inst.share is not None:
        return f"{(inst.share * 100).normalize():f}%"
    if inst.parts:
        return f"1/{inst.parts}"
    parts = next((i.parts for i in installments if i.parts), 0)
    return f"1/{parts}" if parts and inst is installments[-1] else "rest"


def summarise(result: Result) -> Result:
    """The `--summary` view: one `PracticeTotal` per practice (and per practice and month when the
    statements carry their months), in place of the statements."""
    rows = []
    for st in result.statements:  # a practice's months first, then its period (as the statements' rows)
        for m in st.months or ():
            rows.append(PracticeTotal(practice_id=st.practice_id, total=m.total, report_total=m.report_total,
                                      lines=len(m.lines), month=m.month))
        rows.append(PracticeTotal(practice_id=st.practice_id, total=st.total, report_total=st.report_total,
                                  lines=len(st.lines)))
    return dataclasses.replace(result, statements=[], summary=rows)


@functools.lru_cache(maxsize=1)
def _adapter():
    from pydantic import TypeAdapter

    return TypeAdapter(Result)


def json_schema() -> dict:
    return _adapter().json_schema(mode="serialization")


def to_jsonable(result: Result) -> dict:
    """The result as JSON-ready data: amounts as decimal strings, in field order. The views' fields
    (`months` without --by month, `summary` without --summary, a summary's `month` without --by
    month) are left out rather than written as null."""
    data = _adapter().dump_python(result, mode="json")
    if data.get("summary") is None:
        data.pop("summary", None)
    else:
        for row in data["summary"]:
            if row.get("month") is None:
                row.pop("month")
    for st in data["statements"]:
        if st.get("months") is None:
            st.pop("months", None)
    return data
