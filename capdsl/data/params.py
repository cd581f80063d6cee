"""Run parameters: `--set name=value` and `--params file.json`, typed by the contract's declarations.

Values are parsed from text exactly (Decimal, never float; JSON numbers keep
their written digits). A decimal may carry its unit, which must be the
declared one ("300 CZK per member" for a `CZK per member` parameter);
a percentage is written with `%` ("15%" is 0.15). `--set` wins over the file.
"""

from __future__ import annotations

import difflib
import json
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable

from capdsl.data.requirements import ParamSpec, Requirements
from capdsl.errors import Diagnostic, UsageError, error

_NUMBER = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*(.*)", re.S)
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _unit_words(unit: str | None) -> tuple[str, ...]:
    """A comparable form of a unit: `/` means per, plurals are singular, case is ignored."""
    if not unit:
        return ()
    words = unit.replace("/", " per ").split()
    out = []
    for w in words:
        lw = w.lower()
        if lw.endswith("s") and len(lw) > 3 and not (len(w) == 3 and w.isupper()):
            lw = lw[:-1]
        out.append(lw)
    return tuple(out)


def _is_percent(unit: str | None) -> bool:
    return _unit_words(unit) in (("%",), ("percent",))


def parse_value(text: Any, kind: str, unit: str | None = None) -> Any:
    """Parse one parameter value; raises ValueError with a reason (the caller adds the code)."""
    if isinstance(text, bool):
        text = "true" if text else "false"
    s = str(text).strip()
    if kind == "text":
        return str(text)
    if s == "":
        raise ValueError("the value is empty")
    if kind == "bool":
        if s.lower() not in _BOOLS:
            raise ValueError("write true or false")
        return _BOOLS[s.lower()]
    if kind == "date":
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", s):
            raise ValueError("write a date as YYYY-MM-DD")
        try:
            return date.fromisoformat(s)
        except ValueError:
            raise ValueError("there is no such date") from None
    if kind not in ("decimal", "integer"):
        raise ValueError(f"unknown kind {kind!r}")
    if re.fullmatch(r"[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?.*", s):
        raise ValueError("write numbers without thousands separators (1500, not 1,500)")
    if re.fullmatch(r"[+-]?[0-9]+,[0-9]+.*", s):
        raise ValueError("use a dot for decimals (1.5, not 1,5)")
    m = _NUMBER.fullmatch(s)
    if not m:
        raise ValueError("not a number")
    number, written_unit = Decimal(m.group(1)), m.group(2).strip()
    if _is_percent(unit):
        if _unit_words(written_unit) not in (("%",), ("percent",)):
            raise ValueError(f"write a percentage with %, e.g. {number}%")
        number = number / 100
    elif _unit_words(written_unit) in (("%",), ("percent",)) and not unit:
        number = number / 100  # a plain number parameter may be written as a percentage
    elif written_unit:
        if not unit:
            raise ValueError(f"this parameter has no unit, but {written_unit!r} was given")
        if _unit_words(written_unit) != _unit_words(unit):
            raise ValueError(f"the unit is {unit}, not {written_unit}")
    if kind == "integer":
        if number != number.to_integral_value():
            raise ValueError("write a whole number")
        return int(number)
    return number


def _suggest(name: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _example(spec: ParamSpec) -> str:
    unit = spec.unit
    sample = {"bool": "true", "date": "2011-01-01", "text": "value", "integer": "1"}.get(spec.kind, "1")
    if _is_percent(unit):
        sample = "10%"
    elif unit and spec.kind in ("decimal", "integer"):
        sample = f"{sample} {unit}"
    return sample


def _read_params_file(path: str | Path, diags: list[Diagnostic]) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8"
        diags.append(error("E0905", f"cannot read the parameters file {p}: {why}", path=str(p)))
        return {}
    try:
        data = json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
    except json.JSONDecodeError as exc:
        diags.append(error("E0905", f"the parameters file is not valid JSON: {exc.msg} (line {exc.lineno}, "
                                    f"column {exc.colno})", path=str(p)))
        return {}
    if not isinstance(data, dict):
        diags.append(error("E0905", "the parameters file must hold one JSON object: {\"name\": value, ...}",
                           path=str(p)))
        return {}
    return data


def parse_params(assignments: Iterable[str], params_file: str | Path | None,
                 requirements: Requirements) -> dict[str, Any]:
    """Every declared parameter's value: given (`--set` over the file) or its default.

    Raises one UsageError with every problem: E0902 unknown name (with a
    suggestion), E0903 a parameter without default not given, E0904 a bad
    value, E0905 an unreadable parameters file.
    """
    specs = requirements.params
    diags: list[Diagnostic] = []
    given: dict[str, tuple[Any, str]] = {}  # name -> (raw value, where it came from)
    if params_file is not None:
        for name, value in _read_params_file(params_file, diags).items():
            given[str(name).strip()] = (value, f"{params_file}")
    for item in assignments:
        name, eq, value = str(item).partition("=")
        if not eq or not name.strip():
            diags.append(error("E0904", f"--set {item!r}: expected name=value",
                               hint="e.g. --set \"national_average_drug_cost=250 CZK per member\""))
            continue
        given[name.strip()] = (value, "--set")
    out: dict[str, Any] = {}
    for name, (raw, where) in given.items():
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            diags.append(error("E0902", f"unknown parameter {name!r} ({where}); the contract declares: {known}",
                               hint=_suggest(name, specs)))
            continue
        if isinstance(raw, (dict, list)):
            diags.append(error("E0904", f"parameter {name} ({where}): a value must be a single value, not "
                                        f"a JSON {'object' if isinstance(raw, dict) else 'list'}"))
            continue
        try:
            out[name] = parse_value(raw, spec.kind, spec.unit)
        except (ValueError, InvalidOperation) as exc:
            diags.append(error("E0904", f"parameter {name} ({where}): {str(raw)!r} is not a valid value: {exc}",
                               hint=f"declared at {spec.needed_by}; e.g. --set \"{name}={_example(spec)}\""))
    for name, spec in specs.items():
        if name in out or name in given:
            continue
        if spec.default is None:
            diags.append(error("E0903", f"parameter {name} has no default and was not given "
                                        f"(declared at {spec.needed_by})",
                               hint=f"pass --set \"{name}={_example(spec)}\" or put it in --params FILE"))
        else:
            out[name] = spec.default
    if diags:
        raise UsageError(diags)
    return dict(sorted(out.items()))
