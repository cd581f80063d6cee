"""`capdsl test --generate`: boundary examples for a contract's rate tables.

For every band table keyed by an input (member.age, a member or practice
column) the generator probes each band edge and the value just outside it;
for every rate-cell table, each row and the edges of its numeric keys' ranges;
for every tier, modifier entry and line `applies when` condition it builds
MC/DC-style cases: the condition true and false, and for `and` / `or` each
comparison flipped on its own while the others hold the outcome open. Each
case is one practice with one member (and one event for schedule cases) in
a single month, evaluated by the reference interpreter; the amounts the
contract computes *today* become `expect` lines. A reviewer confirms them
once; afterwards any rate-table change shows up as a failing, reviewable
`capdsl test` case.

Values are written with the units of the declared inputs, so the generated
blocks parse and check like hand-written examples. Conditions on things a
case cannot set directly (aggregates, definitions, parameters) are listed as
comments rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from capdsl.language import ast_nodes as n
from capdsl.evaluation import tree as t
from capdsl.errors import CapError, CheckError, Source
from capdsl.tools.examples import constant

STEP_DECIMAL = Decimal("0.01")
BASE_AGE = 40
ATTR_KINDS = ("member", "practice", "measure")


@dataclass
class Case:
    """One boundary case: a practice, its member and events, and why it exists."""

    group: str
    why: str
    practice: dict = field(default_factory=dict)  # name -> value
    member: dict = field(default_factory=dict)  # name -> value ("age" included)
    measures: dict = field(default_factory=dict)
    events: list = field(default_factory=list)  # (code, attrs)
    members: int = 1


# ─────────────────────────────── literals ────────────────────────────────────

class Inputs:
    """Declared inputs of the contract: their kinds, units and defaults."""

    def __init__(self, program: t.Program, contract: n.Contract):
        from capdsl.evaluation.lower import kind_of

        self.currency = program.currency
        self.types: dict[tuple[str, str], n.TypeExpr] = {}
        from capdsl.language.builtins import BUILTINS

        self.kinds: dict[tuple[str, str], str] = {key: b.kind for key, b in BUILTINS.items()}
        for decl in contract.of_type(n.Inputs):
            for d in decl.decls:
                self.types[(d.scope, d.name)] = d.type
                self.kinds[(d.scope, d.name)] = kind_of(d.type)
        self.required = {(c.table, c.name): c.kind for c in program.columns if c.required}

    def literal(self, scope: str, name: str, value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str):
            return '"' + value.replace('"', "'") + '"'
        typ = self.types.get((scope, name))
        number = _num(value)
        if typ is None or typ.word in ("integer", "number"):
            return number
        if typ.word == "percent":
            return f"{_num(value * 100)}%"
        word = self.currency if typ.word == "money" else typ.word
        return f"{number} {word}" + (f" per {typ.per}" if typ.per else "")

    def baseline(self, scope: str, name: str):
        kind = self.kinds.get((scope, name), "decimal")
        if kind == "bool":
            return False
        if kind == "text":
            return "other"
        if kind == "date":
            return date(2000, 1, 1)
        if scope == "event":
            return Decimal(100)
        return Decimal(0)

    def step(self, scope: str, name: str) -> Decimal:
        return Decimal(1) if self.kinds.get((scope, name)) == "integer" else STEP_DECIMAL


def _num(value) -> str:
    d = Decimal(value)
    text = format(d.normalize(), "f") if d != d.to_integral_value() else str(d.quantize(Decimal(1)))
    return text


# ─────────────────────────────── conditions ──────────────────────────────────

@dataclass(frozen=True)
class Atom:
    """A leaf comparison a case can make true or false by setting one input."""

    scope: str
    name: str
    op: str  # = != < <= > >= bool in present
    value: object = None


def _attr_of(e) -> tuple[str, str] | None:
    if isinstance(e, n.Attr) and e.scope in ATTR_KINDS:
        return e.scope, e.name
    return None


def _const_of(e):
    """A literal's value as an example reads it, or None when `e` is not a literal."""
    try:
        return constant(e)
    except CheckError:
        return None


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "==": "=", "!=": "!="}


def atom_of(e) -> Atom | None:
    if isinstance(e, n.Attr) and _attr_of(e):
        return Atom(e.scope, e.name, "bool")
    if isinstance(e, n.Compare):
        left, right = _attr_of(e.left), _attr_of(e.right)
        op = "=" if e.op == "==" else e.op
        if left and _const_of(e.right) is not None:
            return Atom(*left, op, _const_of(e.right))
        if right and _const_of(e.left) is not None:
            return Atom(*right, _FLIP[op], _const_of(e.left))
    if isinstance(e, n.InList) and _attr_of(e.operand) and all(_const_of(o) is not None for o in e.options):
        return Atom(*_attr_of(e.operand), "in", tuple(_const_of(o) for o in e.options))
    if isinstance(e, n.Present) and _attr_of(e.operand):
        return Atom(*_attr_of(e.operand), "present")
    return None


def vectors(e) -> list[tuple[bool, dict]] | None:
    """MC/DC truth vectors: (outcome, {atom: truth}); None when a leaf is not settable."""
    if isinstance(e, n.Not):
        inner = vectors(e.operand)
        return None if inner is None else [(not o, a) for o, a in inner]
    if isinstance(e, n.InList) and e.negated:
        inner = vectors(n.InList(e.operand, e.options, False))
        return None if inner is None else [(not o, a) for o, a in inner]
    if isinstance(e, n.Present) and e.negated:
        inner = vectors(n.Present(e.operand, False))
        return None if inner is None else [(not o, a) for o, a in inner]
    if isinstance(e, n.BoolOp):
        kids = [vectors(i) for i in e.items]
        if any(k is None for k in kids):
            return None
        hold = e.op == "and"  # the outcome each other child must have to leave the result open
        base = [next(a for o, a in k if o == hold) for k in kids]
        out = [(hold, _merge(base))]
        for i, k in enumerate(kids):
            for o, a in k:
                # the others hold the result open, so this child alone decides it
                out.append((o, _merge(base[:i] + [a] + base[i + 1:])))
        seen, unique = set(), []
        for o, a in out:
            key = tuple(sorted((repr(x), v) for x, v in a.items()))
            if key not in seen:
                seen.add(key)
                unique.append((o, a))
        return unique
    atom = atom_of(e)
    if atom is None:
        return None
    return [(True, {atom: True}), (False, {atom: False})]


def _merge(parts: list[dict]) -> dict:
    out: dict = {}
    for p in parts:
        out.update(p)
    return out


def _holds(op: str, target, x) -> bool:
    if op == "bool":
        return bool(x) == bool(target) if target is not None else bool(x)
    if op == "in":
        return x in target
    return {"=": x == target, "!=": x != target, "<": x < target, "<=": x <= target, ">": x > target,
            ">=": x >= target}[op]


def solve(assignment: dict, inputs: Inputs) -> dict | None:
    """Concrete input values making each atom as true/false as asked; None if impossible."""
    by_attr: dict[tuple[str, str], list[tuple[Atom, bool]]] = {}
    for atom, truth in assignment.items():
        by_attr.setdefault((atom.scope, atom.name), []).append((atom, truth))
    values: dict[tuple[str, str], object] = {}
    for (scope, name), wants in by_attr.items():
        presence = [w for a, w in wants if a.op == "present"]
        others = [(a, w) for a, w in wants if a.op != "present"]
        if presence and not all(p == presence[0] for p in presence):
            return None
        if presence and presence[0] is False:
            if others:
                return None
            values[(scope, name)] = None
            continue
        if not others:
            values[(scope, name)] = inputs.baseline(scope, name)
            continue
        candidates = _candidates(others, inputs, scope, name)
        pick = next((c for c in candidates if all(
            _holds("bool", True, c) == w if a.op == "bool" else _holds(a.op, a.value, c) == w
            for a, w in others)), None)
        if pick is None:
            return None
        values[(scope, name)] = pick
    return values


def _candidates(wants, inputs: Inputs, scope: str, name: str) -> list:
    kind = inputs.kinds.get((scope, name), "decimal")
    if kind == "bool" or any(a.op == "bool" for a, _ in wants):
        return [True, False]
    out = []
    if kind == "text" or any(isinstance(a.value, str) or (a.op == "in" and any(isinstance(v, str) for v in a.value))
                             for a, _ in wants):
        for a, _ in wants:
            out += list(a.value) if a.op == "in" else [a.value]
        return out + ["other"]
    step = inputs.step(scope, name)
    for a, _ in wants:
        for v in (a.value if a.op == "in" else (a.value,)):
            if isinstance(v, bool):
                out += [v, not v]
            elif isinstance(v, (int, Decimal)):
                out += [Decimal(v), Decimal(v) - step, Decimal(v) + step]
    out.append(inputs.baseline(scope, name))
    return [c for c in out if not (isinstance(c, Decimal) and c < 0)]


# ─────────────────────────────── cases ───────────────────────────────────────

def band_cases(decl: n.Bands, inputs: Inputs) -> tuple[list[Case], str | None]:
    attr = _attr_of(decl.key)
    if attr is None or attr[0] == "measure":
        return [], f"bands {decl.name}: keyed by an expression a case cannot set directly"
    step = inputs.step(*attr)
    probes: list[tuple[Decimal, str]] = []
    for entry in decl.entries:
        r = entry.range
        if r is None:
            continue
        lo = r.low.value if r.low is not None else None
        hi = r.high.value if r.high is not None else None
        label = f"`{_range_text(r)}`"
        form = _probes(r.form, lo, hi, step)
        probes += [(v, f"{label} {what}") for v, what in form if v is not None and v >= 0]
    whys: dict[Decimal, list[str]] = {}
    for value, why in probes:  # adjacent bands share edges: one case, every reason listed
        whys.setdefault(value, []).append(why)
    cases = []
    for value, reasons in whys.items():
        case = Case(f"bands {decl.name}", f"{attr[0]}.{attr[1]} = {_num(value)}: " + "; ".join(reasons))
        (case.member if attr[0] == "member" else case.practice)[attr[1]] = value
        cases.append(case)
    return cases, None


def cells_cases(decl: n.Cells, inputs: Inputs, tables: list[n.Cells]) -> tuple[list[Case], str | None]:
    """A case reaching each row of a rate-cell table (every key set to a value the row takes), and,
    for a numeric key, each edge of the row's range and the value just outside it with the other
    keys held in the row: the boundaries between neighbouring cells. `otherwise` gets a case of
    values no row lists."""
    attrs = [_attr_of(k) for k in decl.keys]
    if any(a is None or a[0] == "measure" for a in attrs):
        return [], f"cells {decl.name}: keyed by an expression a case cannot set directly"
    others = [d for d in tables if d is not decl]
    probes: list[tuple[tuple, str]] = []  # (a value per key, why)

    for number, row in enumerate(decl.entries, start=1):
        if row.keys is None:
            probes.append((_past_every_row(decl, others, inputs), "otherwise (values no row lists)"))
            continue
        values = _held(decl, row, inputs)
        probes.append((_reaching(decl, number - 1, values, others, inputs), f"row {number}"))
        for j, (attr, key) in enumerate(zip(attrs, row.keys)):
            if key.form != "range":
                continue
            r = key.range
            lo = r.low.value if r.low is not None else None
            hi = r.high.value if r.high is not None else None
            for value, what in _probes(r.form, lo, hi, inputs.step(*attr)):
                if value is not None and value >= 0:
                    # the keys the row does not test are left to `complete_for_cells`: a value
                    # outside the row then lands in the neighbouring row it belongs to
                    edge = [None if k.form == "any" else v for k, v in zip(row.keys, values)]
                    edge[j] = value
                    probes.append((tuple(edge), f"row {number}, {attr[0]}.{attr[1]} `{_range_text(r)}` {what}"))
    whys: dict[tuple, list[str]] = {}
    for values, why in probes:  # neighbouring rows share edges: one case, every reason listed
        whys.setdefault(values, []).append(why)
    cases = []
    for values, reasons in whys.items():
        shown = ", ".join(f"{a[0]}.{a[1]} = {_num(v) if isinstance(v, Decimal) else v}"
                          for a, v in zip(attrs, values) if v is not None)
        case = Case(f"cells {decl.name}", f"{shown}: " + "; ".join(reasons))
        for (scope, name), value in zip(attrs, values):
            if value is not None:
                (case.member if scope == "member" else case.practice)[name] = value
        cases.append(case)
    return cases, None


def _matches(key: n.CellKey, value) -> bool:
    if key.form == "any":
        return True
    if key.form == "values":
        return value in key.values
    if not isinstance(value, (int, Decimal)) or isinstance(value, bool):
        return False
    r = key.range
    lo = r.low.value if r.low is not None else None
    hi = r.high.value if r.high is not None else None
    return {"to": lambda: lo <= value <= hi, "to_under": lambda: lo <= value < hi,
            "and_over": lambda: value >= lo, "over": lambda: value > lo, "under": lambda: value < hi,
            "exact": lambda: value == lo}[r.form]()


def complete_for_cells(case: Case, tables: list[n.Cells], inputs: Inputs) -> None:
    """Give a case's member and practice the keys of every other rate-cell table: the first row that
    agrees with what the case already sets, so a case probing one table is not refused by another
    (a member must fall in some cell of each)."""
    for decl in tables:
        attrs = [_attr_of(k) for k in decl.keys]
        if any(a is None or a[0] == "measure" for a in attrs):
            continue
        given = lambda a: (case.member if a[0] == "member" else case.practice).get(  # noqa: E731
            "age" if a == ("member", "age") else a[1])
        for row in decl.entries:
            if row.keys is None:
                break
            if all(given(a) is None or _matches(k, given(a)) for a, k in zip(attrs, row.keys)):
                for a, k, value in zip(attrs, row.keys, _held(decl, row, inputs)):
                    if given(a) is None:
                        (case.member if a[0] == "member" else case.practice)[a[1]] = value
                break


def _reaching(decl: n.Cells, index: int, values: list, others: list[n.Cells], inputs: Inputs) -> tuple:
    """The key values of a case reaching row `index`: a key the row does not test takes what the
    other tables need (a member must fall in a cell of each), unless an earlier row would then
    match first; else its baseline."""
    row = decl.entries[index]
    attrs = [_attr_of(k) for k in decl.keys]
    probe = Case("", "")
    for a, k, v in zip(attrs, row.keys, values):
        if k.form != "any":
            (probe.member if a[0] == "member" else probe.practice)[a[1]] = v
    complete_for_cells(probe, others, inputs)
    chosen = [v if k.form != "any" else (probe.member if a[0] == "member" else probe.practice).get(a[1], v)
              for a, k, v in zip(attrs, row.keys, values)]
    earlier = any(all(_matches(k, c) for k, c in zip(r.keys, chosen)) for r in decl.entries[:index]
                  if r.keys is not None)
    return tuple(values if earlier else chosen)


def _past_every_row(decl: n.Cells, others: list[n.Cells], inputs: Inputs) -> tuple:
    """Key values no row of the table takes, reaching its `otherwise`: one key at its baseline (a
    text no row lists, a number below every range), the others what the other tables need."""
    attrs = [_attr_of(k) for k in decl.keys]
    rows = [r for r in decl.entries if r.keys is not None]
    for j, attr in enumerate(attrs):
        probe = Case("", "")
        (probe.member if attr[0] == "member" else probe.practice)[attr[1]] = inputs.baseline(*attr)
        complete_for_cells(probe, others, inputs)
        values = tuple((probe.member if a[0] == "member" else probe.practice).get(a[1], inputs.baseline(*a))
                       if i != j else inputs.baseline(*a) for i, a in enumerate(attrs))
        if not any(all(_matches(k, v) for k, v in zip(r.keys, values)) for r in rows):
            return values
    return tuple(inputs.baseline(*a) for a in attrs)


def _held(decl: n.Cells, row: n.CellRow, inputs: Inputs) -> list:
    """A value each key of the row matches: a range's first edge, the first listed value, the key's
    baseline for `any`."""
    out = []
    for expr, key in zip(decl.keys, row.keys):
        attr = _attr_of(expr)
        if key.form == "range":
            r = key.range
            lo = r.low.value if r.low is not None else None
            hi = r.high.value if r.high is not None else None
            out.append(_probes(r.form, lo, hi, inputs.step(*attr))[0][0])
        elif key.form == "values":
            out.append(key.values[0])
        else:
            out.append(inputs.baseline(*attr))
    return out


def _probes(form: str, lo, hi, step) -> list[tuple]:
    """Each edge of a range and the value just outside it (None where the side is open)."""
    if form == "to":
        return [(lo, "low edge"), (hi, "high edge"), (lo - step, "just below"), (hi + step, "just above")]
    if form == "to_under":
        return [(lo, "low edge"), (hi - step, "high edge"), (lo - step, "just below"), (hi, "just above (excluded)")]
    if form == "and_over":
        return [(lo, "low edge"), (lo - step, "just below")]
    if form == "over":
        return [(lo + step, "low edge"), (lo, "just below (excluded)")]
    if form == "under":
        return [(hi - step, "high edge"), (hi, "just above (excluded)")]
    return [(lo, "the value"), (lo - step, "just below"), (lo + step, "just above")]


def _range_text(r: n.Range) -> str:
    lo, hi = (_num(r.low.value) if r.low else None), (_num(r.high.value) if r.high else None)
    return {"to": f"{lo} to {hi}", "to_under": f"{lo} to under {hi}", "and_over": f"{lo} and over",
            "over": f"over {lo}", "under": f"under {hi}", "exact": f"{lo}"}[r.form]


def condition_cases(group: str, what: str, cond, inputs: Inputs, source: Source) -> tuple[list[Case], str | None]:
    from capdsl.evaluation.lower import source_text

    text = source_text(source, cond.span) if getattr(cond, "span", None) else what
    text = " ".join(text.replace("\\", " ").split())
    vecs = vectors(cond)
    if vecs is None:
        return [], f"{group}: `{text}` reads something a case cannot set (an aggregate, a definition, a parameter)"
    cases = []
    for outcome, assignment in vecs:
        values = solve(assignment, inputs)
        if values is None:
            continue
        parts = ", ".join(_atom_text(a, v) for a, v in
                          sorted(assignment.items(), key=lambda x: (x[0].scope, x[0].name, x[0].op)))
        case = Case(group, f"{what} `{text}` is {str(outcome).lower()} ({parts})")
        for (scope, name), value in values.items():
            target = {"member": case.member, "practice": case.practice, "measure": case.measures}[scope]
            target[name] = value
        cases.append(case)
    return cases, None


def _atom_text(a: Atom, truth: bool) -> str:
    """How one comparison is set in a case, e.g. `practice.weekly_hours >= 30: no`."""
    who = f"{a.scope}.{a.name}"
    if a.op == "bool":
        return f"{who} = {str(truth).lower()}"
    if a.op == "present":
        return f"{who} is {'present' if truth else 'missing'}"
    what = "in (" + ", ".join(map(str, a.value)) + ")" if a.op == "in" else f"{a.op} {_num(a.value) if isinstance(a.value, Decimal) else a.value}"
    return f"{who} {what}: {'yes' if truth else 'no'}"


def schedule_cases(decl: n.Schedule, inputs: Inputs) -> list[Case]:
    cases = []
    for entry in decl.entries:
        code = entry.code if entry.code is not None else "UNLISTED_CODE"
        why = f"code \"{code}\"" if entry.code is not None else "a code the schedule does not list (otherwise)"
        cases.append(Case(f"schedule {decl.name}", why, events=[code]))
    return cases


def collect_cases(contract: n.Contract, inputs: Inputs, source: Source) -> tuple[list[Case], list[str]]:
    cases: list[Case] = []
    skipped: list[str] = []
    for decl in contract.decls:
        if isinstance(decl, n.Bands):
            found, note = band_cases(decl, inputs)
        elif isinstance(decl, n.Cells):
            found, note = cells_cases(decl, inputs, list(contract.of_type(n.Cells)))
        elif isinstance(decl, (n.Tier, n.Modifier)):
            kind = "tier" if isinstance(decl, n.Tier) else "modifier"
            found, note = [], None
            for i, choice in enumerate(decl.entries, start=1):
                if choice.cond is None:
                    continue
                more, why = condition_cases(f"{kind} {decl.name}", f"entry {i}:", choice.cond, inputs, source)
                found += more
                note = note or why
        elif isinstance(decl, n.Line) and decl.applies is not None and decl.kind == "line":
            found, note = condition_cases(f"line {decl.name}", "applies when", decl.applies, inputs, source)
        elif isinstance(decl, n.Schedule):
            found, note = schedule_cases(decl, inputs), None
        else:
            continue
        cases += found
        if note:
            skipped.append(note)
    tables = list(contract.of_type(n.Cells))
    for case in cases:
        complete_for_cells(case, tables, inputs)
    return cases, skipped


# ─────────────────────────────── rendering ───────────────────────────────────

def default_period(contract: n.Contract, program: t.Program | None = None) -> str:
    """The first month every dated value covers (so no case fails with E0805), else January 2011;
    from there, the first month of the next twelve in which the most monthly lines are paid, so the
    cases of a contract paid quarterly or in December expect the amounts they probe, not zeros."""
    starts = [min(e.start for e in d.entries) for d in contract.of_type(n.Dated) if d.entries]
    first = max(starts) if starts else date(2011, 1, 1)
    months = [date(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1) for i in range(12)]
    dues = [line.due for line in (program.lines if program is not None else ()) if line.kind == "line"]
    best = max(months, key=lambda m: sum(1 for due in dues if not due or m.month in due))  # max: the first of ties
    return f"{best.year}-{best.month:02d}"


def _case_lines(case: Case, pid: str, inputs: Inputs, start: date, year: str) -> list[str]:
    def attrs(scope: str, given: dict, skip=("age",)) -> str:
        values = dict(given)
        for (table, name), _kind in inputs.required.items():
            if table == scope and name not in values:
                values[name] = inputs.baseline(scope, name)
        parts = [f"{k} = {inputs.literal(scope, k, v)}" for k, v in values.items() if k not in skip]
        return (" with " + ", ".join(parts)) if parts else ""

    out = [f"    # {case.why}", f"    practice {pid}{attrs('practice', case.practice)}"]
    age = case.member.get("age", BASE_AGE)
    out.append(f"    {case.members} members of {pid} aged {_num(age)}{attrs('member', case.member)}")
    for code in case.events:
        out.append(f'    1 events of {pid} code "{code}" on {(start + timedelta(days=9)).isoformat()}'
                   f"{attrs('event', {})}")
    for name, value in case.measures.items():
        if value is not None:
            out.append(f"    measure {name} of {pid} for {year} = {inputs.literal('measure', name, value)}")
    return out


def _block(name: str, period: str, body: list[str], params: list[str]) -> str:
    head = [f'example "{name}":', f"    period {period}"] + params
    return "\n".join(head + body + ["end", ""])


def generate(program: t.Program, contract: n.Contract, source: Source, *, period: str | None = None) -> str:
    """The generated `example` blocks (text), each expectation computed by the interpreter."""
    from capdsl.evaluation.periods import parse_period

    inputs = Inputs(program, contract)
    period = period or default_period(contract, program)
    parsed = parse_period(period)
    start, year = parsed.months[0], str(parsed.year)
    params = [f"    set {name} = {inputs.literal('param', name, default)}"
              for name, default in ((n, d.default) for n, d in program.params.items()) if default is not None]
    cases, skipped = collect_cases(contract, inputs, source)
    probe_text = "\n".join(_block(f"capdsl-generate probe {i}", period,
                                  _case_lines(c, "G", inputs, start, year), params)
                           for i, c in enumerate(cases))
    amounts, failures = _evaluate_probes(program, source, probe_text, len(cases))
    monthly = [ln for ln in program.lines if ln.kind == "line"]
    blocks: dict[str, list[str]] = {}
    counters: dict[str, int] = {}
    for i, case in enumerate(cases):
        if i in failures:
            skipped.append(f"{case.group}: {case.why}: not generated, the contract fails on it ({failures[i]})")
            continue
        counters[case.group] = counters.get(case.group, 0) + 1
        pid = f"G{counters[case.group]:02d}"
        body = blocks.setdefault(case.group, [])
        body += _case_lines(case, pid, inputs, start, year)
        st = amounts[i]
        for ln in monthly:  # non-zero lines by name; the total catches a line that starts paying
            line = next(x for x in st.lines if x.id == ln.name)
            if line.amount != 0:
                body.append(f"    expect {pid} {ln.name} = {line.amount} {program.currency}")
        body.append(f"    expect {pid} total = {st.total} {program.currency}")
    if not cases and not skipped:
        return ("# capdsl test --generate: nothing to probe: the contract has no band table, rate cells, tier,\n"
                "# modifier, schedule or line condition.\n")
    out = [f"# ── Generated by `capdsl test --generate` for {period}: boundary cases of every band,",
           "# rate cell, tier, modifier and condition, with the amounts the contract computes today.",
           "# Review each amount against the contract text before committing. ──", ""]
    for group, body in blocks.items():
        out.append(_block(f"generated: {group}", period, body, params))
    if skipped:
        out += ["# Not generated:"] + [f"#   {s}" for s in skipped] + [""]
    text = "\n".join(out)
    verify(source, text)
    return text


def _evaluate_probes(program: t.Program, source: Source, probe_text: str, count: int):
    """Run each probe (one case per example) through the same path `capdsl test` uses."""
    from capdsl.tools.examples import build_rows
    from capdsl.evaluation.interpret import evaluate
    from capdsl.evaluation.layout import layout_of
    from capdsl.evaluation.statements import build
    from capdsl.language.syntax import parse

    combined = Source(source.text.rstrip("\n") + "\n\n" + probe_text, source.path)
    examples = [e for e in parse(combined).examples if e.name.startswith("capdsl-generate probe ")]
    amounts, failures = {}, {}
    layout = layout_of(program)
    for i, example in zip(range(count), examples):
        try:
            rows, params, parsed, _ = build_rows(program, example, combined)
            monthly = evaluate(program, rows, parsed.months, params)
            amounts[i] = build(layout, monthly, parsed.text, parsed.months, "python").statements[0]
        except CapError as exc:
            failures[i] = f"{exc.code}: {exc.diagnostics[0].message}"
    return amounts, failures


def verify(source: Source, text: str) -> None:
    """The generated blocks must parse and pass against the contract as it is (a self-check)."""
    from capdsl.evaluation.lower import lower
    from capdsl.language.check import check
    from capdsl.language.syntax import parse
    from capdsl.tools.examples import run_example

    combined = Source(source.text.rstrip("\n") + "\n\n" + text, source.path)
    contract = parse(combined)
    program = lower(check(contract, combined))  # the checker's key types decide how bands are lowered
    for example in contract.examples:
        if example.name.startswith("generated: "):
            outcome = run_example(program, example, combined)
            if not outcome.passed:  # pragma: no cover - a generator bug, not a user error
                detail = outcome.error.message if outcome.error else outcome.failures[0].message
                raise AssertionError(f"generated example '{example.name}' does not pass: {detail}")
