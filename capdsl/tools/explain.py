"""Explain: the audit trail of one practice's statement.

Runs the reference interpreter with a `Tracer` and turns what it recorded
into an explanation: for each line and month, the rule and its file:line,
the groups of members (or events) that share one value with the band or tier
that matched, the inputs, the unrounded value and the rounding applied.
The parts add up: Σ group subtotals = the aggregate; unrounded + rounding =
the amount on the statement.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal

from capdsl.evaluation import tree as t
from capdsl.errors import EvalError, Source, error
from capdsl.evaluation.interpret import Env, Interpreter, Tracer, collect_aggs, evaluate
from capdsl.evaluation.months import Frames, member_age
from capdsl.evaluation.lower import source_text


def _str(value) -> object:
    if isinstance(value, Decimal):
        # exact, without the working scale's trailing zeros (103522.200000000000 → 103522.2; 0E-12 → 0)
        if not value:
            return "0"
        exp = value.as_tuple().exponent
        return format(value.normalize(), "f") if isinstance(exp, int) and exp < -2 else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _group_order(group) -> list:
    """Groups in natural order: ages 0, 1, 2 … 10, not 0, 1, 10, 100."""
    return [(0, v, "") if isinstance(v, (int, Decimal)) and not isinstance(v, bool) else (1, 0, str(v))
            for v in group.key.values()]


def _line_range(source: Source, span) -> list[int]:
    """The source lines of a declaration, without the newline or blank lines after it."""
    first = span.line
    last = span.end_line or first
    if last > first and (span.end_column or 1) == 1:
        last -= 1
    while last > first and source.line_text(last).strip()[:1] in ("", "#"):
        last -= 1
    return [first, last]


def _aggs_of(node: t.Node, program: t.Program) -> list[t.Agg]:
    """Aggregates a line reads, in the order they appear, through definitions."""
    out: list[t.Agg] = []
    seen: set[str] = set()

    def go(n: t.Node):
        if isinstance(n, t.Agg):
            if all(a is not n for a in out):
                out.append(n)
            return
        if isinstance(n, t.Ref) and n.name not in seen:
            seen.add(n.name)
            go(program.definitions[n.name].expr)
        for c in t.children(n):
            go(c)

    go(node)
    return out


def _step_dict(step, source: Source) -> dict:
    origin = step.origin
    where = f"{source.path}:{origin.line}" if origin is not None and origin != t.NO_SPAN else None
    return {"kind": step.kind, "name": step.name, "value": _str(step.value), "detail": step.detail,
            "source": where}


def _hash_id(member_id: str) -> str:
    return "m:" + hashlib.sha256(member_id.encode("utf-8")).hexdigest()[:10]


def explain(program: t.Program, source: Source, run, practice_id: str, *, line_id: str | None = None,
            member_id: str | None = None, redact: bool = False) -> dict:
    from capdsl.pipeline import interpreter_inputs

    if line_id is not None and line_id not in {ln.name for ln in program.lines}:
        names = ", ".join(ln.name for ln in program.lines)
        raise EvalError(error("E0907", f"the contract has no line '{line_id}'", hint=f"lines: {names}"))
    period, params, rows, warnings = interpreter_inputs(program, run)
    known = {p["practice_id"] for p in rows.practices} or {m["practice_id"] for m in rows.members}
    if practice_id not in known:
        raise EvalError(error("E0908", f"practice '{practice_id}' is not in the panel",
                              hint="pick one of: " + ", ".join(sorted(known)[:10])))
    tracer = Tracer()
    result = evaluate(program, rows, period.months, params, tracer=tracer, only_practice=practice_id)

    lines_out = []
    for line in program.lines:
        if line_id is not None and line.name != line_id:
            continue
        entry = {"id": line.name, "label": line.label, "kind": line.kind,
                 "source": f"{program.path}:{line.origin.line}", "ref": line.ref,
                 "lines": _line_range(source, line.origin),
                 "rule": _line_source(source, line),
                 "condition": line.applies_text, "months": []}
        total = Decimal(0)
        if line.kind == "line":
            for m in period.months:
                traced = tracer.lines.get((m, line.name))
                if traced is None:
                    continue
                raw, amount, applied, basis = traced
                total += amount
                month = {"month": m.isoformat()[:7], "applied": applied, "unrounded": _str(raw),
                         "amount": _str(amount), "rounding": _str(amount - raw) if applied else "0",
                         "basis": _str(basis), "aggregates": [], "steps": []}
                for agg in _aggs_of(line.amount, program):
                    groups = tracer.groups.get((m, id(agg)), [])
                    month["aggregates"].append({
                        "what": source_text(source, agg.origin) or f"{agg.kind} over {agg.source}",
                        "source": f"{program.path}:{agg.origin.line}",
                        "value": _str(sum((g.subtotal for g in groups), Decimal(0))),
                        "groups": [{"key": {k: _str(v) for k, v in g.key.items()}, "count": _str(g.weight),
                                    "value": _str(g.value), "subtotal": _str(g.subtotal),
                                    "matched": [f"{s.name}: {s.detail}" for s in g.steps if s.kind == "case"]}
                                   for g in sorted(groups, key=_group_order)]})
                month["steps"] = [_step_dict(s, source) for s in tracer.steps.get((m, line.name), [])]
                entry["months"].append(month)
        else:
            traced = tracer.lines.get((None, line.name))
            if traced is not None:
                raw, amount, applied, _ = traced
                insts = [x for x in result.installments if x[1] == line.name]
                entry["pool"] = {"year": period.year, "applied": applied, "unrounded": _str(raw),
                                 "amount": _str(amount), "rounding": _str(amount - raw) if applied else "0",
                                 "installments": [{"quarter": q, "amount": _str(a), "paid": p}
                                                  for _, _, _, q, a, p in insts],
                                 "steps": [_step_dict(s, source) for s in tracer.steps.get((None, line.name), [])]}
                total = sum((a for _, _, _, _, a, _ in insts), Decimal(0))
        entry["amount"] = _str(total)
        lines_out.append(entry)

    out = {"contract": program.name, "path": program.path, "period": period.text, "practice_id": practice_id,
           "currency": program.currency, "lines": lines_out, "warnings": warnings}
    if member_id is not None:
        out["member"] = explain_member(program, source, rows, period.months, params, practice_id, member_id,
                                       redact=redact)
    return out


def _line_source(source: Source, line: t.LineDef) -> str:
    text = source.line_text(line.origin.line).strip()
    return text


def explain_member(program: t.Program, source: Source, rows, months, params: dict, practice_id: str,
                   member_id: str, *, redact: bool = False) -> dict:
    """One member's values per month: age, weight, and each member-level aggregate's value (before
    the weight), with the steps that gave it. A month the member is not counted in shows weight 0."""
    tracer = Tracer()
    interp = Interpreter(program, params, tracer)
    aggs = [agg for agg in collect_aggs(program)[0] if agg.source == "members"]
    frames = Frames(program, rows, only_practice=practice_id)
    practice = frames.practices[0] if frames.practices else {"practice_id": practice_id}
    row = next((r for r in frames.members_of(practice_id) if r["member_id"] == member_id), None)
    if row is None:
        raise EvalError(error("E0909", "that member is not registered with this practice in the panel",
                              hint="check the id (ids are case-sensitive)"))
    env = Env(params)
    out = []
    for frame in frames.months(practice, months):
        m = frame.month
        weight = next((w for r, w in zip(frame.members, frame.weights) if r is row), 0)
        age = row["age"] if weight else member_age(program.age_rule, m, row["birth_date"])
        item = {"month": m.isoformat()[:7], "age": age, "weight": _str(Decimal(weight)), "values": []}
        if weight:
            env.enter(frame)
            for agg in aggs:
                bucket = tracer.capture()
                try:
                    value = interp.member_value(agg, env, row)
                finally:
                    tracer.release()
                item["values"].append({"aggregate": source_text(source, agg.origin), "included": value is not None,
                                       "value": _str(value), "steps": [_step_dict(s, source) for s in bucket]})
        out.append(item)
    shown = _hash_id(member_id) if redact else member_id
    return {"member_id": shown, "birth_date": None if redact else row["birth_date"].isoformat(), "months": out}


def render_json(explanation: dict) -> str:
    return json.dumps(explanation, ensure_ascii=False, indent=2, default=str) + "\n"


def render_text(e: dict, source: Source | None = None) -> str:
    """A readable audit trail for a terminal or a dispute letter. With `source`
    (a terminal), each rule is shown as its highlighted source lines."""
    out = [f"{e['contract']} — practice {e['practice_id']} — {e['period']} ({e['currency']})", ""]
    for line in e["lines"]:
        out.append(f"■ {line['label']} [{line['id']}] = {line['amount']} {e['currency']}")
        if source is not None and line.get("lines"):
            from capdsl.language.highlight import highlight_lines, to_ansi

            first, last = line["lines"]
            out.append(to_ansi(highlight_lines(source.text, range(first, last + 1))).rstrip("\n"))
        else:
            out.append(f"  rule    {line['rule']}")
        out.append(f"  source  {line['source']}" + (f"  —  {line['ref']}" if line.get("ref") else ""))
        if line.get("condition"):
            out.append(f"  applies when {line['condition']}")
        for month in line.get("months", []):
            if not month["applied"]:
                out.append(f"  {month['month']}: not applied (condition false) → 0")
                continue
            out.append(f"  {month['month']}: {month['unrounded']} → rounded {month['amount']}"
                       f" (rounding {month['rounding']})")
            for agg in month["aggregates"]:
                out.append(f"    {agg['what']} = {agg['value']}   [{agg['source']}]")
                for g in agg["groups"]:
                    key = ", ".join(f"{k}={v}" for k, v in g["key"].items()) or "all"
                    matched = ("; " + "; ".join(g["matched"])) if g["matched"] else ""
                    out.append(f"      {g['count']} × {g['value']} = {g['subtotal']}   ({key}{matched})")
            for step in month["steps"]:
                if step["kind"] in ("ref", "case", "measure"):
                    src = f"   [{step['source']}]" if step.get("source") else ""
                    detail = f" ({step['detail']})" if step.get("detail") else ""
                    out.append(f"    {step['name']} = {step['value']}{detail}{src}")
        pool = line.get("pool")
        if pool:
            state = "" if pool["applied"] else " (not applied)"
            out.append(f"  annual pool {pool['year']}: {pool['unrounded']} → {pool['amount']}{state}")
            for inst in pool["installments"]:
                out.append(f"    Q{inst['quarter']}: {inst['amount']}" + ("" if inst["paid"] else " withheld"))
        out.append("")
    member = e.get("member")
    if member:
        out.append(f"Member {member['member_id']}" + (f" born {member['birth_date']}" if member.get("birth_date") else ""))
        for m in member["months"]:
            out.append(f"  {m['month']}: age {m['age']}, weight {m['weight']}")
            for v in m["values"]:
                out.append(f"    {v['aggregate']}: {v['value'] if v['included'] else 'not included'}")
                for step in v["steps"]:
                    if step["kind"] == "case":
                        out.append(f"      {step['name']}: {step['detail']} → {step['value']}")
    return "\n".join(out) + "\n"
