"""Explain: the audit trail of one practice's statement.

Runs the reference interpreter with a `Tracer` and turns what it recorded
into an explanation: for each line and month, the rule (its whole source
block) and its file:line, the parameters, practice attributes and measures it
read (with where each came from), the named values it used (define, band,
tier, modifier: value and the entry matched), the groups of members (or
events) that share one value, the unrounded value and the rounding applied.
For a pool: the year's sums month by month, each installment, paid or
withheld and why. The parts add up: Σ group subtotals = the aggregate;
unrounded + rounding = the amount on the statement.

Privacy: the id given to `--member` is printed as given (`redact` hashes
it); a member id or birth date a rule reads (a group keyed by `member.id`,
`event.member` or `member.birth_date`) and the member's birth date are shown
only with `show_ids` (`--show-ids`), never with `redact`: a hashed id, a
hidden date otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from capdsl.evaluation import tree as t
from capdsl.errors import EvalError, Source, error
from capdsl.evaluation.interpret import (Env, Interpreter, Tracer, collect_aggs, condition_parts, evaluate,
                                         failed_parts)
from capdsl.evaluation.months import Frames, member_age
from capdsl.evaluation.lower import source_text
from capdsl.language.builtins import PERIOD_MONTHS

#: Group-key columns that identify a person: shown only with --show-ids.
PRIVATE_KEYS = frozenset({"member_id", "birth_date"})
HIDDEN = "hidden"


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


def _hash_id(member_id: str) -> str:
    return "m:" + hashlib.sha256(member_id.encode("utf-8")).hexdigest()[:10]


def _declared(needed_by: str) -> str | None:
    """`contracts/x.cap:42` of a declaration's `needed_by` ("contracts/x.cap:42 (param rate)")."""
    return needed_by.split(" (", 1)[0] or None if needed_by else None


# ─────────────────────────────── what a line reads ───────────────────────────────

@dataclass
class Reads:
    """What a line's expressions read, through definitions, in order of first appearance."""

    params: list[str] = field(default_factory=list)
    practice: list[str] = field(default_factory=list)
    aggs: list[t.Agg] = field(default_factory=list)
    years: list[t.YearSum] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # other lines read (`LineRef`)


def _reads(roots, program: t.Program) -> Reads:
    out = Reads()
    seen_refs: set[str] = set()
    seen_nodes: set[int] = set()

    def go(n: t.Node):
        if isinstance(n, t.Param) and n.name not in out.params:
            out.params.append(n.name)
        elif isinstance(n, t.Col) and n.table == "practice" and n.name not in out.practice:
            out.practice.append(n.name)
        elif isinstance(n, t.LineRef) and n.name not in out.lines:
            out.lines.append(n.name)
        elif isinstance(n, (t.Agg, t.YearSum)):
            if id(n) in seen_nodes:
                return
            seen_nodes.add(id(n))
            (out.aggs if isinstance(n, t.Agg) else out.years).append(n)
        elif isinstance(n, t.Ref):
            if n.name not in seen_refs:
                seen_refs.add(n.name)
                go(program.definitions[n.name].expr)
            return
        for c in t.children(n):
            go(c)

    for root in roots:
        if root is not None:
            go(root)
    return out


def _line_roots(line: t.LineDef) -> list:
    return [line.amount, line.applies, line.basis] + [i.when for i in line.installments]


def _aggs_of(node: t.Node, program: t.Program) -> list[t.Agg]:
    """Aggregates an expression reads, in the order they appear, through definitions."""
    return _reads([node], program).aggs


# ─────────────────────────────── the trail ───────────────────────────────

class _Trail:
    """Turns the tracer's records into the explanation's dicts (steps, aggregates, group keys)."""

    def __init__(self, program: t.Program, source: Source, tracer: Tracer, show_ids: bool):
        self.program, self.source, self.tracer, self.show_ids = program, source, tracer, show_ids
        self.named = {id(d.expr): name for name, d in program.definitions.items() if isinstance(d.expr, t.Agg)}

    def where(self, origin) -> str | None:
        if origin is None or origin == t.NO_SPAN or not getattr(origin, "line", 0):
            return None
        return f"{self.program.path}:{origin.line}"

    def step(self, s) -> dict:
        out = {"kind": s.kind, "name": s.name, "value": _str(s.value), "detail": s.detail,
               "source": self.where(s.origin), "entry": None, "period": None}
        if s.kind == "case":
            out["entry"] = s.detail or None
        elif s.kind == "measure":
            decl = self.program.measures.get(s.name)
            out["source"] = _declared(decl.needed_by) if decl is not None else None
            out["period"] = s.detail or None
            if s.value is not None:
                out["detail"] = f"row {s.detail}" if s.detail else ""
            elif decl is not None and decl.default is not None:
                out["value"] = _str(decl.default)
                out["detail"] = "no row: the declared default"
            else:
                out["detail"] = "no row: not reported"
        return out

    def steps(self, raw) -> list[dict]:
        """Named values read, each once: a tier's or band's entry is folded into its definition's
        value; the per-run bookkeeping (month, installment) is left out."""
        out: list[dict] = []
        seen: set[tuple] = set()
        for s in raw:
            if s.kind in ("month", "installment"):
                continue
            item = self.step(s)
            if item["kind"] == "ref" and out and out[-1]["kind"] == "case" and out[-1]["name"] == item["name"] \
                    and out[-1]["value"] == item["value"]:
                case = out.pop()
                seen.discard(_step_key(case))
                item["entry"] = case["entry"]
            key = _step_key(item)
            if key in seen:
                continue
            seen.add(key)
            out.append(item)
        return out

    def key(self, key: dict) -> dict:
        shown = {}
        for k, v in key.items():
            if k in PRIVATE_KEYS and not self.show_ids and v is not None:
                shown[k] = _hash_id(str(v)) if k == "member_id" else HIDDEN
            else:
                shown[k] = _str(v)
        return shown

    def aggregates(self, aggs, month) -> list[dict]:
        out, seen = [], set()
        for agg in aggs:
            groups = self.tracer.groups.get((month, id(agg)))
            if groups is None:  # not evaluated in this month (a condition before it was false)
                continue
            what = _agg_text(self.source, agg)
            value = sum((g.subtotal for g in groups), Decimal(0))
            if (what, value) in seen:
                continue
            seen.add((what, value))
            out.append({
                "name": self.named.get(id(agg)), "what": what, "source": self.where(agg.origin),
                "value": _str(value),
                "groups": [{"key": self.key(g.key), "count": _str(g.weight), "value": _str(g.value),
                            "subtotal": _str(g.subtotal),
                            "matched": [f"{s.name}: {s.detail}" for s in g.steps if s.kind == "case"],
                            "steps": self.steps(g.steps)}
                           for g in sorted(groups, key=_group_order)]})
        return out


def _agg_text(source: Source, agg: t.Agg) -> str:
    """The aggregate as written; a line's default basis (the count of what its amount sums, which
    carries the sum's position) as `count of members` and the sum's `where`."""
    text = source_text(source, agg.origin) if agg.origin != t.NO_SPAN else ""
    if text.startswith(agg.kind):
        return text
    where = f" where {text.split(' where ', 1)[1]}" if " where " in text and agg.where is not None else ""
    return f"{agg.kind} of {agg.source}{where}"


def _step_key(item: dict) -> tuple:
    return item["kind"], item["name"], str(item["value"]), item["entry"], item["period"], item["detail"]


def _condition_reasons(text: str | None, node, failed: tuple[str, ...] | None) -> list[str]:
    """Why a condition did not hold: its failed `and` parts when known, else the whole condition."""
    if failed:
        return list(failed)
    if not text:
        return []
    inner = node.operand if isinstance(node, t.Coalesce) else node
    flag = isinstance(inner, (t.Col, t.Measure, t.Param, t.Ref))
    return [f"`{text}` is false" if flag else f"`{text}` does not hold"]


def _share(inst) -> str:
    if inst.share is not None:
        return format((inst.share * 100).normalize(), "f") + "%"
    parts = getattr(inst, "parts", 0)
    return f"1/{parts}" if parts else "rest"


def _inst_label(inst) -> str:
    return getattr(inst, "label", "") or f"Q{inst.quarter}"


# ─────────────────────────────── parameters ───────────────────────────────

def _param_sources(run, override: dict | None) -> dict[str, str]:
    """Where each given parameter came from: `--set`, the parameters file, or `override`'s label
    (the CLI names the project file's); the others take their declared default."""
    sources: dict[str, str] = {}
    if getattr(run, "params_file", None):
        try:
            with open(run.params_file, encoding="utf-8-sig") as fh:
                data = json.load(fh)
            if isinstance(data, dict):
                sources.update({str(k).strip(): str(run.params_file) for k in data})
        except (OSError, ValueError):
            pass  # parse_params has already read it; an unreadable file never gets this far
    for item in getattr(run, "assignments", ()) or ():
        name, eq, _ = str(item).partition("=")
        if eq:
            sources[name.strip()] = "--set"
    sources.update(override or {})
    return sources


def _parameter(name: str, params: dict, program: t.Program, sources: dict[str, str]) -> dict:
    decl = program.params.get(name)
    return {"name": name, "value": _str(params.get(name)), "unit": decl.unit if decl is not None else "",
            "source": sources.get(name, "default"),
            "declared": _declared(decl.needed_by) if decl is not None else None}


# ─────────────────────────────── explain ───────────────────────────────

def explain(program: t.Program, source: Source, run, practice_id: str, *, line_id: str | None = None,
            member_id: str | None = None, redact: bool = False, param_sources: dict[str, str] | None = None) -> dict:
    """The audit trail of one practice's statement for `run`'s period (see docs/evaluation.md#explain
    for the keys). `param_sources` labels parameters given some other way than --set or --params."""
    from capdsl.pipeline import interpreter_inputs

    if line_id is not None and line_id not in {ln.name for ln in program.lines}:
        names = ", ".join(ln.name for ln in program.lines)
        raise EvalError(error("E0907", f"the contract has no line '{line_id}'", hint=f"lines: {names}"))
    period, params, rows, warnings = interpreter_inputs(program, run)
    known = {p["practice_id"] for p in rows.practices} or {m["practice_id"] for m in rows.members}
    if practice_id not in known:
        raise EvalError(error("E0908", f"practice '{practice_id}' is not in the panel",
                              hint="pick one of: " + ", ".join(sorted(known)[:10])))
    show_ids = bool(getattr(run, "show_ids", False)) and not redact
    practice = next((p for p in rows.practices if p["practice_id"] == practice_id), {"practice_id": practice_id})
    tracer = Tracer()
    result = evaluate(program, rows, period.months, params, tracer=tracer, only_practice=practice_id)
    trail = _Trail(program, source, tracer, show_ids)
    sources = _param_sources(run, param_sources)
    failed = _failed(program, rows, period.months, params, tracer, practice_id)
    years: dict[int, list] = defaultdict(list)
    for (m, key), (value, bucket) in sorted(tracer.years.items(), key=lambda kv: kv[0][0]):
        years[key].append((m, value, bucket))

    lines_out = []
    for line in program.lines:
        if line_id is not None and line.name != line_id:
            continue
        reads = _reads(_line_roots(line), program)
        amount_aggs = _reads([line.amount, line.applies], program).aggs  # the basis is shown as its value
        entry = {"id": line.name, "label": line.label, "kind": line.kind,
                 "source": f"{program.path}:{line.origin.line}", "ref": line.ref,
                 "lines": _line_range(source, line.origin),
                 "rule": _rule_text(source, line),
                 "condition": line.applies_text, "due_text": line.due_text,
                 "parameters": [_parameter(n, params, program, sources) for n in reads.params],
                 "practice": {c: _str(practice.get(c)) for c in reads.practice},
                 "months": []}
        total = Decimal(0)
        if line.kind == "line":
            for m in period.months:
                traced = tracer.lines.get((m, line.name))
                if traced is None:
                    continue
                raw, amount, applied, basis = traced
                total += amount
                due, payment = _payment_terms(line, m.month)
                month = {"month": m.isoformat()[:7], "applied": applied, "due": due, "payment": payment,
                         "reasons": [] if applied else _condition_reasons(
                             line.applies_text, line.applies, failed.get((practice_id, m, line.name))),
                         "unrounded": _str(raw), "amount": _str(amount),
                         "rounding": _str(amount - raw) if applied else "0",
                         "basis": _str(basis), "basis_label": line.basis_label,
                         "aggregates": trail.aggregates(amount_aggs, m) if applied else [],
                         "steps": _line_reads(program, reads, tracer, m)
                         + trail.steps(tracer.steps.get((m, line.name), []))}
                entry["months"].append(month)
        else:
            traced = tracer.lines.get((None, line.name))
            if traced is not None:
                entry["pool"] = _pool(line, traced, tracer, trail, reads, years, period, program,
                                      failed.get((practice_id, None, line.name)))
                total = sum((x[4] for x in result.installments if x[1] == line.name), Decimal(0))
        entry["amount"] = _str(total)
        lines_out.append(entry)

    out = {"contract": program.name, "path": program.path, "period": period.text, "practice_id": practice_id,
           "currency": program.currency,
           "parameters": [_parameter(n, params, program, sources) for n in program.params],
           "lines": lines_out, "warnings": warnings}
    if member_id is not None:
        out["member"] = explain_member(program, source, rows, period.months, params, practice_id, member_id,
                                       redact=redact, show_ids=show_ids, line_id=line_id)
    return out


def _payment_terms(line: t.LineDef, month: int) -> tuple[bool, str | None]:
    """Whether a line is paid in `month` (1–12), and how its payment terms scale the amount there:
    the amount × the months since its previous payment ÷ the months of its rate (as lowering builds
    it), so that the aggregates shown and the unrounded value visibly agree; None for a factor of 1."""
    months = line.due or tuple(range(1, 13))
    if month not in months:
        return False, None
    previous = months[months.index(month) - 1]
    cover, rate = (month - previous) % 12 or 12, PERIOD_MONTHS[line.rate_per]
    if cover == rate:
        return True, None
    factor = f"× {cover // rate}" if cover % rate == 0 else f"× {cover} ÷ {rate}"
    terms = ", ".join(x for x in (f"rate per {line.rate_per}" if line.rate_per != "month" else None,
                                  line.due_text or "paid every month") if x)
    since = "one month" if cover == 1 else f"{cover} months"
    return True, f"the amount {factor} ({terms}: this payment is for {since})"


def _line_reads(program: t.Program, reads: Reads, tracer: Tracer, month) -> list[dict]:
    """The month's amounts of the monthly lines a line reads, as steps."""
    out = []
    for name in reads.lines:
        traced = tracer.lines.get((month, name))
        other = program.line(name)
        if traced is not None and other is not None and other.kind == "line":
            out.append({"kind": "line", "name": name, "value": _str(traced[1]), "detail": "this month's amount",
                        "source": f"{program.path}:{other.origin.line}", "entry": None, "period": None})
    return out


def _failed(program, rows, months, params, tracer: Tracer, practice_id: str) -> dict:
    """The failed parts of each `a and b` condition that did not hold (for the "not applied" reasons)."""
    wanted = [(practice_id, m, name) for (m, name), (_r, _a, applied, _b) in tracer.lines.items()
              if not applied and (line := program.line(name)) is not None and condition_parts(line.applies_text,
                                                                                              line.applies)]
    if not wanted:
        return {}
    try:
        return failed_parts(program, rows, months, params, wanted)
    except EvalError:  # a part fails to evaluate on its own: the reason is then the whole condition
        return {}


def _pool(line, traced, tracer: Tracer, trail: _Trail, reads: Reads, years: dict, period, program, failed) -> dict:
    raw, amount, applied, _ = traced
    steps = [s for s in trail.steps(tracer.steps.get((None, line.name), []))]
    year_sums, seen = [], set()
    for ys in reads.years:
        months = years.get(id(ys), [])
        operand_aggs = _aggs_of(ys.operand, program)
        what, value = _year_sum_text(trail.source, ys), sum((v for _, v, _ in months), Decimal(0))
        if (what, value) in seen:  # the same sum written twice (the amount and a `when`)
            continue
        seen.add((what, value))
        year_sums.append({
            "what": what,
            "value": _str(value),
            "months": [{"month": m.isoformat()[:7], "value": _str(v), "steps": trail.steps(bucket),
                        "aggregates": trail.aggregates(operand_aggs, m)}
                       for m, v, bucket in months]})
    installments = []
    for inst, (inst_amount, paid, due) in zip(line.installments, tracer.installments.get(line.name, [])):
        cond = tracer.conditions.get((line.name, id(inst.when))) if inst.when is not None else None
        installments.append({
            "month": getattr(inst, "month", None), "quarter": inst.quarter, "label": _inst_label(inst), "share": _share(inst), "amount": _str(inst_amount),
            "paid": paid, "due": due, "condition": inst.when_text,
            "reasons": [] if paid else _condition_reasons(inst.when_text, inst.when, None),
            "steps": trail.steps(cond[1]) if cond is not None else []})
    return {"year": period.year, "applied": applied,
            "reasons": [] if applied else _condition_reasons(line.applies_text, line.applies, failed),
            "unrounded": _str(raw), "amount": _str(amount), "rounding": _str(amount - raw) if applied else "0",
            "steps": steps, "year_sums": year_sums, "installments": installments}


def _year_sum_text(source: Source, ys: t.YearSum) -> str:
    operand = ys.operand
    if isinstance(operand, (t.LineRef, t.Ref)):
        text = operand.name
    else:
        origin = getattr(operand, "origin", None)
        text = source_text(source, origin) if origin is not None and origin != t.NO_SPAN else ""
    return f"sum of {text} over year" if text else "sum over year"


def _rule_text(source: Source, line: t.LineDef) -> str:
    """The line's whole declaration, as written."""
    first, last = _line_range(source, line.origin)
    return "\n".join(source.line_text(n).rstrip() for n in range(first, last + 1))


def explain_member(program: t.Program, source: Source, rows, months, params: dict, practice_id: str,
                   member_id: str, *, redact: bool = False, show_ids: bool = False, line_id: str | None = None) -> dict:
    """One member's values per month: age, weight, and the value (before the weight) of each
    member-level aggregate (`line_id`'s only), with the steps that gave it. A month the member is not
    counted in shows weight 0. The birth date is given only with `show_ids` (never with `redact`)."""
    tracer = Tracer()
    interp = Interpreter(program, params, tracer)
    aggs = [agg for agg in collect_aggs(program)[0] if agg.source == "members"]
    if line_id is not None:
        wanted = {id(a) for a in _reads(_line_roots(program.line(line_id)), program).aggs}
        aggs = [agg for agg in aggs if id(agg) in wanted]
    frames = Frames(program, rows, only_practice=practice_id)
    practice = frames.practices[0] if frames.practices else {"practice_id": practice_id}
    row = next((r for r in frames.members_of(practice_id) if r["member_id"] == member_id), None)
    if row is None:
        raise EvalError(error("E0909", "that member is not registered with this practice in the panel",
                              hint="check the id (ids are case-sensitive)"))
    trail = _Trail(program, source, tracer, show_ids and not redact)
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
                item["values"].append({"name": trail.named.get(id(agg)), "aggregate": source_text(source, agg.origin),
                                       "what": _agg_text(source, agg),
                                       "included": value is not None, "value": _str(value),
                                       "steps": trail.steps(bucket)})
        out.append(item)
    shown = _hash_id(member_id) if redact else member_id
    born = row["birth_date"].isoformat() if show_ids and not redact else None
    return {"member_id": shown, "birth_date": born, "months": out}


# ─────────────────────────────── rendering ───────────────────────────────

def render_json(explanation: dict) -> str:
    return json.dumps(explanation, ensure_ascii=False, indent=2, default=str) + "\n"


def _text(value) -> str:
    """A value as the contract language writes it: true/false, numbers and dates bare, text quoted."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and not _BARE.fullmatch(value):
        return '"' + value + '"'
    return str(value)


_BARE = re.compile(r"-?[0-9]+(\.[0-9]+)?|[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _param_text(p: dict) -> str:
    value, unit = _text(p["value"]), p["unit"] or ""
    if unit in ("%", "percent") and p["value"] is not None:
        try:
            value, unit = format((Decimal(str(p["value"])) * 100).normalize(), "f") + "%", ""
        except ArithmeticError:
            pass
    shown = f"{p['name']} = {value}" + (f" {unit}" if unit else "")
    where = p["source"] + (f", declared {p['declared']}" if p["source"] == "default" and p.get("declared") else "")
    return f"{shown} ({where})"


def _step_text(s: dict) -> str:
    kind, name, value = s["kind"], s["name"], _text(s["value"])
    if kind == "measure":
        if s["value"] is None:
            return f"measure {name}: no row (not reported)"
        return f"measure {name} = {value}" + (f" ({s['detail']})" if s.get("detail") else "")
    if kind == "line":
        return f"{name} = {value} ({s['detail']})" if s.get("detail") else f"{name} = {value}"
    if kind == "case" or s.get("entry"):
        return f"{name}: {s['entry'] or 'otherwise'} → {value}"
    return f"{name} = {value}"


def _step_line(s: dict) -> str:
    text = _step_text(s)
    if s["kind"] in ("ref", "case") and s.get("source"):
        text += f"   [{s['source']}]"
        if s["kind"] == "ref" and s.get("detail"):
            text += f"  {s['detail']}"
    return text


def _agg_lines(agg: dict, indent: str) -> list[str]:
    head = f"{agg['name']} = {agg['what']}" if agg.get("name") else agg["what"]
    out = [f"{indent}{head} = {agg['value']}" + (f"   [{agg['source']}]" if agg.get("source") else "")]
    groups = agg["groups"]
    parts = [[_step_text(s) for s in g["steps"]] for g in groups]
    common = set(parts[0]) if len(parts) > 1 else set()
    for p in parts[1:]:
        common &= set(p)
    shared = [x for x in parts[0] if x in common] if parts else []
    if shared:
        out.append(f"{indent}  every group: {'; '.join(shared)}")
    for g, p in zip(groups, parts):
        key = ", ".join(f"{k}={v}" for k, v in g["key"].items()) or "all"
        own = [x for x in p if x not in common]
        extra = ("; " + "; ".join(own)) if own else ""
        out.append(f"{indent}  {g['count']} × {g['value']} = {g['subtotal']}   ({key}{extra})")
    return out


def _wrap(line: str, width: int | None, hang: int | None = None) -> list[str]:
    """`line` cut at spaces to fit `width` (never inside a word), continued with a hanging indent."""
    if not width or len(line) <= width:
        return [line]
    indent = len(line) - len(line.lstrip(" ")) if hang is None else hang
    longest = max(len(word) for word in line.split())
    pieces = textwrap.wrap(line, width, subsequent_indent=" " * max(0, min(indent + 4, width // 2, width - longest)),
                           break_long_words=False, break_on_hyphens=False)
    return pieces or [line]


def render_text(e: dict, source: Source | None = None, *, width: int | None = None) -> str:
    """A readable audit trail for a terminal, a file or a dispute letter. With `source` (a terminal),
    each rule is shown as its highlighted source lines; without, as the same lines in plain text.
    `width` wraps long lines at spaces (None: lines are kept whole, as in a file)."""
    out: list[str] = []

    def put(line: str = "", hang: int | None = None):
        out.extend(_wrap(line, width, hang))

    put(f"{e['contract']} — practice {e['practice_id']} — {e['period']} ({e['currency']})")
    put(f"contract {e['path']}")
    put()
    if e.get("parameters"):
        put("Parameters")
        for p in e["parameters"]:
            put(f"  {_param_text(p)}")
        put()
    for line in e["lines"]:
        put(f"■ {line['label']} [{line['id']}] = {line['amount']} {e['currency']}")
        _rule(out, line, source, width)
        put(f"  source  {line['source']}" + (f"  —  {line['ref']}" if line.get("ref") else ""), hang=10)
        if line.get("practice"):
            put("  practice  " + ", ".join(f"{k} = {_text(v)}" for k, v in line["practice"].items()), hang=12)
        for p in line.get("parameters", []):
            put(f"  parameter  {_param_text(p)}", hang=13)
        _months(put, line)
        pool = line.get("pool")
        if pool:
            _pool_text(put, pool, e)
        elif line["kind"] == "pool":
            put(f"  no installment of this pool is paid in {e['period']}")
        put()
    member = e.get("member")
    if member:
        put(f"Member {member['member_id']}" + (f", born {member['birth_date']}" if member.get("birth_date") else ""))
        for m in member["months"]:
            put(f"  {m['month']}: age {m['age']}, weight {m['weight']}")
            shown = set()
            for v in m["values"]:
                what = v.get("what") or v["aggregate"]
                what = f"{v['name']} = {what}" if v.get("name") else what
                if (what, v["value"]) in shown:  # the same aggregate written twice (an amount and a basis)
                    continue
                shown.add((what, v["value"]))
                put(f"    {what} = {v['value'] if v['included'] else 'not included (its where is false)'}")
                for step in v["steps"]:
                    put(f"      {_step_text(step)}")
    return "\n".join(out) + "\n"


def _rule(out: list[str], line: dict, source: Source | None, width: int | None) -> None:
    first, last = line.get("lines") or [0, -1]
    if source is not None and line.get("lines"):
        from capdsl.language.highlight import highlight_lines, to_ansi

        out.append(to_ansi(highlight_lines(source.text, range(first, last + 1)), width=width or 120).rstrip("\n"))
        return
    texts = line["rule"].split("\n")
    numbers = range(first, first + len(texts)) if line.get("lines") else [None] * len(texts)
    gutter = len(str(first + len(texts) - 1)) if line.get("lines") else 0
    for number, text in zip(numbers, texts):
        head = f"  {number:>{gutter}} │ " if number is not None else "  "
        code_indent = len(text) - len(text.lstrip(" "))
        out.extend(_wrap(head + text, width, hang=len(head) + code_indent))


def _months(put, line: dict) -> None:
    months = line.get("months", [])
    applied = [m for m in months if m["applied"]]
    common: list[dict] = []
    if len(applied) > 1:
        keys = [{_step_key(s) for s in m["steps"]} for m in applied]
        shared = set.intersection(*keys)
        common = [s for s in applied[0]["steps"] if _step_key(s) in shared]
        if common:
            put("  every month:")
            for s in common:
                put(f"    {_step_line(s)}")
    skip = {_step_key(s) for s in common}
    i = 0
    while i < len(months):
        month = months[i]
        if not month.get("due", True):
            j = i
            while j + 1 < len(months) and not months[j + 1].get("due", True):
                j += 1
            span = month["month"] if j == i else f"{month['month']} to {months[j]['month']}"
            put(f"  {span}: not due ({line['due_text']}) → 0")
            i = j + 1
            continue
        if not month["applied"]:
            j = i
            while j + 1 < len(months) and not months[j + 1]["applied"] and months[j + 1]["reasons"] == month["reasons"]:
                j += 1
            span = month["month"] if j == i else f"{month['month']} to {months[j]['month']}"
            why = "; ".join(month["reasons"]) or "the condition is false"
            put(f"  {span}: not applied — {why} → 0")
            i = j + 1
            continue
        put(f"  {month['month']}: {month['unrounded']} → rounded {month['amount']} (rounding {month['rounding']})")
        if month.get("payment"):
            put(f"    {month['payment']}")
        if month.get("basis") is not None:
            put(f"    basis: {month['basis']}" + (f" {month['basis_label']}" if month.get("basis_label") else ""))
        named = {(a["name"], a["value"]) for a in month["aggregates"] if a.get("name")}
        for s in month["steps"]:
            if _step_key(s) in skip or (s["kind"] == "ref" and (s["name"], s["value"]) in named):
                continue
            put(f"    {_step_line(s)}")
        for agg in month["aggregates"]:
            for text in _agg_lines(agg, "    "):
                put(text)
        i += 1


def _pool_text(put, pool: dict, e: dict) -> None:
    if pool["applied"]:
        put(f"  year {pool['year']}: {pool['unrounded']} → rounded {pool['amount']} (rounding {pool['rounding']})")
    else:
        put(f"  year {pool['year']}: not applied — {'; '.join(pool['reasons']) or 'the condition is false'} → 0")
    for s in pool["steps"]:
        put(f"    {_step_line(s)}")
    for ys in pool["year_sums"]:
        put(f"    {ys['what']} = {ys['value']}")
        for m in ys["months"]:
            parts = [_step_text(s) for s in m["steps"]]
            parts += [f"{a['name'] or a['what']} = {a['value']}" for a in m["aggregates"]]
            put(f"      {m['month']}: {m['value']}" + (f"   ({'; '.join(parts)})" if parts else ""), hang=8)
    if pool["installments"]:
        put("  installments")
    for inst in pool["installments"]:
        state = "paid" if inst["paid"] else "withheld"
        share = "the rest" if inst["share"] == "rest" else f"{inst['share']} of the pool"
        text = f"    {inst['label']}: {inst['amount']} {state} ({share})"
        if inst["condition"]:
            text += (" — " + "; ".join(inst["reasons"])) if not inst["paid"] else f" — `{inst['condition']}` holds"
        if inst["steps"]:
            text += ": " + "; ".join(_step_text(s) for s in inst["steps"])
        if not inst["due"]:
            text += f" — falls outside {e['period']}"
        put(text, hang=6)
