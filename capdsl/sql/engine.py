"""The Python side of the SQL backends: turn the long result rows into the
interpreter's `MonthlyResult`, and engine errors into the interpreter's
`EvalError`s (never a DuckDB/Spark/PostgreSQL message with a stack trace).
"""

from __future__ import annotations

import gc
import re
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Callable

from capdsl.evaluation.amounts import ONE, MonthlyResult, quantum_places
from capdsl.evaluation.values import shown as values_text
from capdsl.errors import BackendError, EvalError, InputError, error
from capdsl.sql.query import FAIL_TAG, Query

if TYPE_CHECKING:
    from capdsl.evaluation import tree as t

_PAYLOAD = re.compile(re.escape(FAIL_TAG) + r"\|(\d+)\|(\w+)\|(.*?)\|" + re.escape("capdsl-end"), re.S)
_OVERFLOW = re.compile(r"overflow|out of range|NUMERIC_VALUE_OUT_OF_RANGE|DECIMAL_PRECISION|cannot be represented",
                       re.I)
ZERO = Decimal(0)


def _places(quantum: Decimal) -> Decimal:
    """The exponent the interpreter's `round_to` gives an amount, as a quantize argument."""
    return quantum_places(quantum) or ONE


def _plain(value) -> Decimal | None:
    """A basis as a plain decimal without the SQL scale's trailing zeros (engines fetch it as text)."""
    if value is None:
        return None
    if isinstance(value, str) and "." in value and "e" not in value and "E" not in value:
        text = value.rstrip("0").rstrip(".")
        return Decimal(text) if text not in ("-0", "") else ZERO
    d = Decimal(value)
    return Decimal(int(d)) if d == d.to_integral_value() else d.normalize()


@contextmanager
def paused_gc():
    """Pause the cyclic garbage collector while a result is fetched and turned into rows: they are
    acyclic tuples, and every collection their allocation triggers walks all the objects the process
    holds."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collect(compiled, program: t.Program, rows) -> MonthlyResult:
    """Long result rows → `MonthlyResult`, ordered exactly as the interpreter orders it: by practice
    id, then month, then line (or pool, then installment) order."""
    with paused_gc():
        return _collect(compiled, program, rows)


def _collect(compiled, program: t.Program, rows) -> MonthlyResult:
    places = _places(program.quantum)
    line_index = {name: i for i, name in enumerate(compiled.lines)}
    pool_index = {name: i for i, name in enumerate(compiled.pools)}
    inst_index = {(name, inst.month): i for name in compiled.pools
                  for i, inst in enumerate(program.line(name).installments)}
    year = compiled.months[0].year
    practices, lines, pools, insts = [], [], [], []
    for kind, pid, month, line, paid_month, amount, applied, basis in rows:
        value = Decimal(amount).quantize(places) if applied else ZERO
        if kind == "line":
            lines.append((pid, month, line_index[line], (pid, month, line, value, bool(applied), _plain(basis))))
        elif kind == "practice":
            practices.append(pid)
        elif kind == "pool":
            pools.append((pid, pool_index[line], (pid, line, year, value, bool(applied))))
        else:
            insts.append((pid, pool_index[line], inst_index[line, paid_month],
                          (pid, line, year, int(paid_month), value, bool(applied))))
    # (pid, month, index) is unique per row, so tuple order never reaches the payload
    lines.sort()
    pools.sort()
    insts.sort()
    result = MonthlyResult(practices=sorted(practices))
    result.rows = [r[3] for r in lines]
    result.pools = [r[2] for r in pools]
    result.installments = [r[3] for r in insts]
    return result


def collect_wide(query: Query, quantum: Decimal, rows) -> MonthlyResult:
    """The engines' wide rows (`Query.sql`: practice, month, reported, then per item its
    amount as text, applied and basis) → `MonthlyResult`, in the interpreter's order; amounts
    are shown with `quantum`'s places."""
    with paused_gc():
        places = _places(quantum)
        year = query.months[0].year
        layout = query.layout
        practices, lines, pools, insts = [], [], [], []
        rows = sorted(rows, key=lambda r: (r[0], r[1]))
        # Many amounts and most bases repeat (a member count, a flat fee): each distinct text is turned
        # into its Decimal once. Decimals are immutable, so one serves every row.
        amounts: dict = {}
        bases: dict = {}
        last = None
        for row in rows:
            pid, month, reported = row[0], row[1], row[2]
            if pid != last:
                practices.append(pid)
                last = pid
            december = month.month == 12
            i = 3
            for kind, name, paid_month, has_basis in layout:
                amount, applied = row[i], row[i + 1]
                i += 2
                if has_basis:
                    basis = row[i]
                    i += 1
                if not (reported if kind == "line" else december):
                    continue  # lines are read on reported months, pools and installments on December
                if applied:
                    value = amounts.get(amount)
                    if value is None:
                        value = amounts[amount] = Decimal(amount).quantize(places)
                else:
                    value = ZERO
                if kind == "line":
                    plain = None
                    if has_basis and basis is not None:
                        plain = bases.get(basis)
                        if plain is None:
                            plain = bases[basis] = _plain(basis)
                    lines.append((pid, month, name, value, bool(applied), plain))
                elif kind == "pool":
                    pools.append((pid, name, year, value, bool(applied)))
                else:
                    insts.append((pid, name, year, int(paid_month), value, bool(applied)))
        result = MonthlyResult(practices=practices)
        result.rows, result.pools, result.installments = lines, pools, insts
        return result


def shown_values(payload: str) -> tuple[list, str]:
    """The values a failure's payload names (`emit.shown_value`: `<kind><length>:<text>` each), as the
    interpreter holds them, and what follows them."""
    values = []
    while payload and payload[0] in "tbdn-":
        kind, rest = payload[0], payload[1:]
        length, sep, rest = rest.partition(":")
        if not sep or not length.isdigit():
            break
        raw, payload = rest[:int(length)], rest[int(length):]
        values.append(None if kind == "-" else raw if kind == "t" else date.fromisoformat(raw) if kind == "d"
                      else raw == "true" if kind == "b" else Decimal(raw))
    return values, payload


def translate(query: Query, exc: BaseException,
              member_label: Callable[[str], str] | None = None) -> Exception:
    """The interpreter's error for an engine error: a `Fail` payload, an overflow, or else a BackendError."""
    message = str(exc)
    found = _PAYLOAD.search(message)
    if found:
        index, level, rest = int(found.group(1)), found.group(2), found.group(3)
        _, node = query.fails[index]
        if level == "input":  # a warehouse value the panel loader would have refused
            pid, detail = rest.split("|", 1)
            shown = f": {detail[:40]!r}" if detail else ""
            return InputError(error(node.code, f"{node.message}{shown} (practice {pid})",
                                    hint="see docs/sql.md, the warehouse tables"))
        if level == "division":
            return EvalError(error("E0803", "division by zero", node.origin,
                                   hint="guard the division with `if … then … else`"))
        if level == "member":
            row, age, tail = rest.split("|", 2)
            values, tail = shown_values(tail)
            pid = tail[1:]
            label = member_label(row) if member_label is not None else "id hidden"
            who = f"member at row {_int(row)} ({label}, aged {_int(age)})"
            if values:
                return EvalError(error(node.code, f"{node.message} ({values_text(values)}): {who} in practice {pid}",
                                       node.origin, hint="add the missing band/entry, or an `otherwise:` entry"))
        elif level == "event":
            row, tail = rest.split("|", 1)
            length, tail = tail.split("|", 1)
            code, pid = tail[: int(length)], tail[int(length) + 1:]
            who = f"event at row {_int(row)} (code {code!r})"
        else:
            pid = rest.split("|", 3)[-1]
            return EvalError(error(node.code, f"{node.message} (practice {pid})", node.origin))
        return EvalError(error(node.code, f"{node.message}: {who} in practice {pid}", node.origin,
                               hint="add the missing band/entry, or an `otherwise:` entry"))
    lines = [x.strip() for x in message.strip().splitlines() if x.strip()]
    # py4j wraps Spark's error: prefer its "[ERROR_CLASS] …" line to "An error occurred while calling …"
    first = next((x for x in lines if re.match(r"(\w+(\.\w+)*: )?\[[A-Z_.]+\]", x)), lines[0] if lines else
                 type(exc).__name__)[:300]
    if _OVERFLOW.search(message):
        return EvalError(error("E0808", "a value is too large for exact decimal arithmetic "
                                        f"(38 digits, 12 after the point): {first}",
                               hint="amounts and intermediate products must stay below 10^14"))
    return BackendError(error("E0922", f"the {query.dialect} engine failed: {first}"))


def _int(text: str):
    try:
        return int(Decimal(text))
    except Exception:  # noqa: BLE001 - a missing row number prints as "?"
        return text
