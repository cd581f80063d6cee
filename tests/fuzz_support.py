"""Contract generators, mutators and the fuzz oracle, shared by tests/test_fuzz.py
(hypothesis, bounded) and benchmarks/fuzz.py (the long multiprocess run).

Generators take a `random.Random` so hypothesis drives them through
`st.randoms()` (shrinkable) and the benchmark through seeded generators.

The oracle (`run_one`) is the invariant: parse → check → lower, and the
formatter on anything that parses, raise nothing but `CapError`s whose
diagnostics lie inside the source and render; the formatter is idempotent
and keeps the AST; every input finishes within a time limit.
"""

from __future__ import annotations

import dataclasses
import random
import re
import signal
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = sorted((ROOT / "contracts").glob("*.cap"))
CONTRACT_TEXTS = {p.name: p.read_text(encoding="utf-8") for p in CONTRACTS}

# ───────────────────────────── grammar-aware generation ─────────────────────────────

CURRENCIES = ["CZK", "EUR", "USD", "HUF", "PLN"]
UNIT_WORDS = ["points", "point", "hours", "hour", "days", "day", "members", "member"]
TYPES = ["bool", "text", "date", "number", "integer", "percent", "money"]
ROUNDING = ["half_up", "half_even", "down", "up"]
COMBINE = ["highest", "lowest", "multiply", "add", "first"]
NAMES = ["base", "rate", "index", "bonus", "cap", "fee", "akord", "x", "y", "základná_sadzba", "díjszabás",
         "stawka", "age_index", "weight", "hours_", "quality"]
#: Names an author may well choose that look like capdsl's own words: the engines' internal columns
#: and names that begin with a scope or keyword (the grammar must end a keyword at a word boundary).
RESERVED_LOOKING = ["weight", "month", "count", "period", "quantity", "value", "id", "n", "row", "label",
                    "amount", "basis", "total", "paid", "year", "rest", "code", "age", "points_total"]
SCOPE_PREFIXED = ["membership_fee", "members_count", "practiced", "practice_fee", "eventual", "events_x",
                  "parameter_value", "param_x", "measured_rate", "measures", "sum_of", "counted", "overhead",
                  "tiered", "lines", "defined", "bandsx", "pooled", "ifx", "orx", "notable", "isx", "and_",
                  "when_due", "otherwise_", "true_value", "false_start", "within", "format"]
KEYWORDS = ["contract", "end", "payer", "provider", "currency", "period", "age", "as", "of", "exposure",
            "rounding", "per", "line", "report", "in", "at", "ref", "inputs", "member", "practice", "event",
            "measure", "param", "define", "bands", "by", "to", "under", "and", "over", "tier", "when",
            "otherwise", "modifier", "combine", "schedule", "pool", "amount", "applies", "basis", "paid",
            "rest", "example", "set", "members", "aged", "born", "enrolled", "from", "events", "code", "on",
            "expect", "if", "then", "else", "or", "not", "is", "present", "missing", "sum", "count", "true",
            "false", "with", "for"]
STRINGS = ['"Capitation"', '"VZP 2011"', '"Všeobecná zdravotná poisťovňa"', '""', '"a \\" quote"',
           '"PREV"', '"VACC"', '"ref § 4"', '"日本語"', '"\u202eRTL"']


def _num(r: random.Random) -> str:
    k = r.random()
    if k < 0.5:
        return str(r.randint(0, 200))
    if k < 0.8:
        return f"{r.randint(0, 999)}.{r.randint(0, 99):02d}"
    if k < 0.98:
        return r.choice(["0", "0.0001", "1.08", "25.28", "100", "1000000"])
    return r.choice(["9" * 39, "1" + "0" * 45, "0." + "0" * 38 + "1", "123456789012345678901234567890.5"])


def _money(r: random.Random, cur: str) -> str:
    return f"{_num(r)} {cur}"


def _quantity(r: random.Random, cur: str) -> str:
    k = r.random()
    if k < 0.3:
        return _num(r)
    if k < 0.55:
        return _money(r, cur)
    if k < 0.7:
        return f"{r.randint(0, 100)}%"
    if k < 0.85:
        return f"{_num(r)} {r.choice(UNIT_WORDS)}"
    return f"{_num(r)} {cur} per {r.choice(['point', 'member', 'hour', 'day'])}"


class Scope:
    """Names a generated contract can refer to."""

    def __init__(self, cur: str):
        self.cur = cur
        self.values: list[str] = []      # practice-level definitions
        self.member: list[str] = ["member.age"]
        self.practice: list[str] = ["practice.id"]
        self.event: list[str] = ["event.quantity", "event.code"]
        self.bools: list[str] = []
        self.params: list[str] = []
        self.lines: list[str] = []
        self.schedules: list[str] = []
        self.cell_keys: list[tuple[str, str]] = []  # member text/bool inputs: (reference, 'text'/'bool')
        # (type, member-level) -> names, for well-typed generation
        self.typed: dict[tuple[str, bool], list[str]] = {("number", True): ["member.age"]}

    def add(self, want: str, member: bool, name: str) -> None:
        self.typed.setdefault((want, member), []).append(name)


def expr(r: random.Random, sc: Scope, depth: int = 0, member_ok: bool = False) -> str:
    """A random expression (mostly well-typed-ish; the checker judges)."""
    if depth > 4 or r.random() < 0.3:
        k = r.random()
        pool = sc.values + sc.params + sc.lines + (sc.member if member_ok else []) + sc.practice
        if k < 0.45 or not pool:
            return _quantity(r, sc.cur)
        if k < 0.9:
            return r.choice(pool)
        return r.choice(["true", "false", "2011-03-01", r.choice(STRINGS)])
    k = r.randrange(14)
    sub = lambda m=member_ok: expr(r, sc, depth + 1, m)  # noqa: E731
    if k <= 3:
        return f"{sub()} {r.choice(['+', '-', '*', '/', 'of'])} {sub()}"
    if k == 4:
        return f"({sub()})"
    if k == 5:
        return f"-{sub()}"
    if k == 6:
        fn = r.choice(["min", "max", "clamp", "abs"])
        n = {"min": r.randint(2, 3), "max": 2, "clamp": 3, "abs": 1}[fn]
        return f"{fn}({', '.join(sub() for _ in range(n))})"
    if k == 7:
        return f"(sum of {expr(r, sc, depth + 1, True)} over members)"
    if k == 8:
        return f"(count of members where {cond(r, sc, depth + 1, True)})"
    if k == 9:
        return f"(if {cond(r, sc, depth + 1, member_ok)} then {sub()} else {sub()})"
    if k == 10:
        return f"(sum of event.quantity * {_money(r, sc.cur)} over events where {cond_event(r, sc)})"
    if k == 11:
        return "count of members"
    if k == 12 and sc.schedules:
        return f"(sum of {r.choice(sc.schedules)} over events)"
    if k == 13 and r.random() < 0.5:
        return v2_form(r, sub, member_ok)
    return f"{sub()} * {sub()}"


CALENDAR_NUMBERS = ["calendar.month", "calendar.quarter", "calendar.half", "calendar.year"]
CALENDAR_DATES = ["calendar.month_start", "calendar.month_end", "calendar.quarter_start", "calendar.year_start"]
DATE_FUNCTIONS = ["years_between", "months_between", "days_between"]


def v2_form(r: random.Random, sub, member: bool) -> str:
    """`round(…)`, a calendar value or a date function (any argument, for the checker to judge)."""
    k = r.randrange(4)
    if k == 0:
        mode = f", {r.choice(['half_up', 'half_even', 'down', 'up', 'sideways'])}" if r.random() < 0.5 else ""
        return f"round({sub()}, {r.choice(['0.01', '0.05', '1', '0', sub()])}{mode})"
    if k == 1:
        return r.choice(CALENDAR_NUMBERS + CALENDAR_DATES + ["calendar.week"])
    dates = CALENDAR_DATES + ["2011-07-01"] + (["member.birth_date", "member.enrolled_from"] if member else [])
    args = [r.choice(dates) if r.random() < 0.8 else sub() for _ in range(r.choice([2, 2, 2, 1]))]
    return f"{r.choice(DATE_FUNCTIONS)}({', '.join(args)})"


def typed_v2(r: random.Random, want: str, sub, member: bool) -> str:
    """A well-typed `round`, calendar value or date function of `want`."""
    if want == "bool":
        if r.random() < 0.5:
            return f"{r.choice(CALENDAR_NUMBERS)} {r.choice(['=', '!=', '<=', '>'])} {r.randint(1, 12)}"
        return f"{r.choice(CALENDAR_DATES)} {r.choice(['<', '>=', '='])} {r.choice(['2011-06-30', '2011-01-01'])}"
    if want == "money" or r.random() < 0.4:
        quantum = r.choice(["0.01", "0.05", "1", "0.25"])
        mode = f", {r.choice(['half_up', 'half_even', 'down', 'up'])}" if r.random() < 0.5 else ""
        return f"round({sub(want)}, {quantum}{mode})"
    if r.random() < 0.4:
        return r.choice(CALENDAR_NUMBERS)
    dates = CALENDAR_DATES + ["2011-07-01"] + (["member.birth_date"] if member else [])
    if member and r.random() < 0.3:  # an optional date, guarded as E0313 asks
        return f"(if member.enrolled_from is present then {r.choice(DATE_FUNCTIONS)}(member.enrolled_from, " \
               f"{r.choice(CALENDAR_DATES)}) else 0)"
    return f"{r.choice(DATE_FUNCTIONS)}({r.choice(dates)}, {r.choice(dates)})"


def typed(r: random.Random, sc: Scope, want: str, depth: int = 0, member: bool = False) -> str:
    """A well-typed expression of `want` ('money', 'number' or 'bool'); `member`: inside `over members`."""
    pool = sc.typed.get((want, False), []) + (sc.typed.get((want, True), []) if member else [])
    if depth > 3 or r.random() < 0.35:
        if pool and r.random() < 0.6:
            return r.choice(pool)
        if want == "money":
            return _money(r, sc.cur)
        if want == "number":
            return _num(r)
        return r.choice(["true", "false"])
    sub = lambda w, m=member: typed(r, sc, w, depth + 1, m)  # noqa: E731
    k = r.randrange(8)
    if want == "bool":
        if k <= 2:
            w = r.choice(["money", "number"])
            return f"{sub(w)} {r.choice(['>=', '<=', '<', '>', '=', '!='])} {sub(w)}"
        if k == 3:
            return f"{sub('bool')} {r.choice(['and', 'or'])} {sub('bool')}"
        if k == 4:
            return f"not {sub('bool')}"
        if k == 5:
            return f"measure.quality is {r.choice(['present', 'missing'])}"
        if k == 6 and member:
            return optional_cond(r, r.choice(["member.enrolled_from", "member.enrolled_to", "member.sex"]))
        return f"({sub('bool')})"
    if k == 0:
        return f"{sub(want)} {r.choice(['+', '-'])} {sub(want)}"
    if k == 1:
        return f"{sub(want)} * {sub('number')}" if r.random() < 0.5 else f"{sub('number')} * {sub(want)}"
    if k == 2:
        return f"{r.randint(0, 150)}% of {sub(want)}"
    if k == 3:
        return f"{r.choice(['min', 'max'])}({sub(want)}, {sub(want)})"
    if k == 4:
        return f"(if {sub('bool')} then {sub(want)} else {sub(want)})"
    if k == 5 and not member:
        return f"(sum of {typed(r, sc, want, depth + 1, True)} over members)"
    if k == 6 and want == "money" and not member:
        return f"(sum of event.quantity * {_money(r, sc.cur)} over events where {cond_event(r, sc)})"
    if k == 6 and want == "number" and not member:
        return f"(count of members where {typed(r, sc, 'bool', depth + 1, True)})"
    if k == 7 and r.random() < 0.5:
        return typed_v2(r, want, sub, member)
    return f"({sub(want)})"


OPTIONAL_FIELDS = {"member.enrolled_from": "date", "member.enrolled_to": "date", "member.sex": "text",
                   "event.member": "text"}


def optional_cond(r: random.Random, field: str, guarded: bool = True) -> str:
    """A condition on a field that may be empty: with `guarded`, in one of the forms the checker
    accepts (`x is missing or …`, `x is present and …`, `if x is present then … else …`,
    `not (…)`); otherwise the bare comparison it reports (E0313)."""
    if OPTIONAL_FIELDS[field] == "date":
        day = r.choice(["2010-12-31", "2011-03-01", "2011-06-30"])
        use = f"{field} {r.choice(['<', '<=', '>', '>=', '=', '!='])} {day}"
    else:
        values = ['"F"', '"M"'] if field == "member.sex" else ['"M1"', '"M00000006"']
        use = f"{field} {r.choice(['=', '!='])} {r.choice(values)}" if r.random() < 0.7 else \
            f"{field} in ({', '.join(r.sample(values, r.randint(1, 2)))})"
    if not guarded:
        return use if r.random() < 0.7 else f"not ({use})"
    k = r.randrange(7)
    if k == 0:
        return f"{field} is missing or {use}"
    if k == 1:
        return f"{field} is present and {use}"
    if k == 2:
        return f"(if {field} is present then {use} else {r.choice(['true', 'false'])})"
    if k == 3:
        return f"not ({field} is missing or {use})"
    if k == 4:
        return f"not ({field} is present and {use})"
    if k == 5:
        return f"(not ({field} is missing) and {use})"
    return f"{field} is {r.choice(['present', 'missing'])}"


def cond_event(r: random.Random, sc: Scope) -> str:
    k = r.random()
    if k >= 0.85:
        return optional_cond(r, "event.member", guarded=r.random() < 0.8)
    if k < 0.4:
        return f"event.code in ({', '.join(r.sample(STRINGS[4:6], 2))})"
    if k < 0.6 and sc.schedules:
        return f"event.code in {r.choice(sc.schedules)}"
    return f'event.code = {r.choice(STRINGS[4:6])}'


def cond(r: random.Random, sc: Scope, depth: int = 0, member_ok: bool = False) -> str:
    k = r.randrange(8)
    if depth > 4:
        k = 0
    if k <= 2:
        lhs = r.choice((sc.member if member_ok else []) + sc.practice + sc.values + ["1"])
        return f"{lhs} {r.choice(['>=', '<=', '<', '>', '=', '!=', '=='])} {_quantity(r, sc.cur)}"
    if k == 3:
        return f"{cond(r, sc, depth + 1, member_ok)} {r.choice(['and', 'or'])} {cond(r, sc, depth + 1, member_ok)}"
    if k == 4:
        return f"not {cond(r, sc, depth + 1, member_ok)}"
    if k == 5 and sc.bools:
        return r.choice(sc.bools)
    if k == 6:
        return f"measure.{r.choice(['quality', 'drug_cost'])} is {r.choice(['present', 'missing'])}"
    if k == 7 and member_ok and r.random() < 0.6:
        field = r.choice(["member.enrolled_from", "member.enrolled_to", "member.sex"])
        return f"({optional_cond(r, field, guarded=r.random() < 0.7)})"
    return f"({cond(r, sc, depth + 1, member_ok)})"


def _ref(r: random.Random) -> str:
    return f" ref {r.choice(STRINGS)}" if r.random() < 0.25 else ""


def _range_list(r: random.Random, sc: Scope) -> list[str]:
    cuts = sorted(r.sample(range(1, 110), r.randint(1, 8)))
    out, lo = [], 0
    for c in cuts:
        style = r.random()
        if style < 0.6:
            out.append(f"{lo} to {c - 1}")
        else:
            out.append(f"{lo} to under {c}")
        lo = c
    out.append(f"{lo} and over" if r.random() < 0.8 else f"over {lo}")
    if r.random() < 0.1:
        out.append(r.choice(["under 5", "7", "-3", "otherwise"]))
    return out


def _name(r: random.Random, used: set[str], suffix: str) -> str:
    """A fresh name: usually an ordinary one, sometimes one that looks like capdsl's own words."""
    pick = r.random()
    pool = RESERVED_LOOKING if pick < 0.15 else SCOPE_PREFIXED if pick < 0.3 else []
    bare = [x for x in pool if x not in used]
    name = r.choice(bare) if bare else f"{r.choice(NAMES)}{suffix}"
    used.add(name)
    return name


# ───────────────────────────── rate cells ─────────────────────────────

#: The values a generated text key names (a panel may hold others, which match no row).
CELL_TEXTS = ['"A"', '"B"', '"C"', '"D"']


def _age_partition(r: random.Random, gaps: bool) -> list[str]:
    """Ranges covering every age once (with `gaps`, sometimes dropping one)."""
    cuts = sorted(r.sample(range(1, 100), r.randint(0, 3)))
    if not cuts:
        return ["any"] if not gaps or r.random() < 0.5 else [f"{r.randint(0, 60)} and over"]
    out = [r.choice([f"under {cuts[0]}", f"0 to {cuts[0] - 1}", f"0 to under {cuts[0]}"])]
    for lo, hi in zip(cuts, cuts[1:]):
        out.append(r.choice([f"{lo} to {hi - 1}", f"{lo} to under {hi}"]))
    out.append(r.choice([f"{cuts[-1]} and over", f"over {cuts[-1] - 1}"]))
    if gaps and len(out) > 1 and r.random() < 0.5:
        del out[r.randrange(len(out))]
    return out


def _text_partition(r: random.Random, key: str, complete: bool) -> list[str]:
    """Disjoint values of a text or bool key: `any`, single values, parenthesised lists; with
    `complete`, every value the table names anywhere (else the age ranges of a value named under
    one part would have gaps under another, E0414)."""
    if key == "bool":
        return r.choice([["any"], ["true", "false"], ["false", "true"]]
                        + ([] if complete else [[r.choice(["true", "false"])]]))
    if r.random() < 0.3:
        return ["any"]
    pool = ['"F"', '"M"'] if key == "sex" else CELL_TEXTS
    picked = r.sample(pool, len(pool) if complete else r.randint(1, len(pool)))
    out = []
    while picked:
        n = r.randint(1, len(picked))
        group, picked = picked[:n], picked[n:]
        out.append(group[0] if len(group) == 1 else f"({', '.join(group)})")
    return out


def cells_rows(r: random.Random, kinds: list[str], value, otherwise: bool) -> list[list[str]]:
    """Rows of a well-formed table over keys of `kinds` ('age', 'sex', 'text', 'bool'): each key's
    values split disjointly, the later keys split anew under each part of the earlier ones, so no
    two rows overlap; age ranges cover every age, and text keys name every value or `any`, unless
    `otherwise` allows gaps. Each row is its keys followed by its value."""
    if not kinds:
        return [[value()]]
    parts = _age_partition(r, otherwise) if kinds[0] == "age" else _text_partition(r, kinds[0], not otherwise)
    return [[part] + rest for part in parts for rest in cells_rows(r, kinds[1:], value, otherwise)]


def cells_text(name: str, keys: list[str], rows: list[list[str]], otherwise: str | None, ref: str = "") -> list[str]:
    out = [f"cells {name} by {', '.join(keys)}{ref}:"]
    out += [f"    {', '.join(row[:-1])}: {row[-1]}" for row in rows]
    if otherwise is not None:
        out.append(f"    otherwise: {otherwise}")
    return out + ["end"]


def _spoil_cells(r: random.Random, rows: list[list[str]]) -> None:
    """One change that the checker reports: an overlap (E0412/E0413), a gap (E0414), a key of the
    wrong kind (E0411) or the wrong number of keys (E0410)."""
    i = r.randrange(len(rows))
    k = r.randrange(5)
    if k == 0:
        rows.insert(r.randrange(len(rows) + 1), list(rows[i]))
    elif k == 1 and len(rows) > 1:
        del rows[i]
    elif k == 2:
        j = r.randrange(len(rows[i]) - 1)
        rows[i][j] = r.choice(["any", "0 to 200", "under 30", "7", '"F"', "true", "(\"A\", \"B\")"])
    elif k == 3:
        rows[i].insert(0, "any")
    else:
        rows.insert(0, ["any"] * (len(rows[i]) - 1) + [rows[i][-1]])


PAY_TIMES = ["January", "March", "April", "June", "July", "October", "December", "Q1", "Q3", "H1", "H2"]


def contract(r: random.Random) -> str:
    """A random contract built from the grammar's constructs; usually checks, sometimes not."""
    cur = r.choice(CURRENCIES)
    sc = Scope(cur)
    used = {"quality"}
    out: list[str] = []
    if r.random() < 0.3:
        out.append("# a generated contract")
    header = [f"contract {r.choice(STRINGS)}:"]
    clauses = [f"    currency {cur}"]
    if r.random() < 0.5:
        clauses.append(f"    payer {r.choice(STRINGS)}")
    if r.random() < 0.3:
        clauses.append(f"    provider {r.choice(STRINGS)}")
    if r.random() < 0.3:
        clauses.append("    period month")
    if r.random() < 0.4:
        clauses.append(f"    age as of {r.choice(['month_start', 'month_end', 'quarter_start', 'year_start'])}")
    if r.random() < 0.2:  # a list held for a quarter or year (alone: with `exposure` it is E0111)
        clauses.append(f"    list as of {r.choice(['month_start', 'quarter_start', 'year_start'])}")
    elif r.random() < 0.4:
        clauses.append(f"    exposure {r.choice(['first_day', 'pro_rata', 'any_day'])}")
    if r.random() < 0.4:
        clauses.append(f"    rounding {r.choice(ROUNDING)} {r.choice(['0.01', '1', '0.05', '0.1'])} per line")
    if r.random() < 0.2:
        other = r.choice([c for c in CURRENCIES if c != cur])
        clauses.append(f"    report in {other} at {_num(r)} {cur} per {other}")
    if r.random() < 0.2:
        clauses.append(f"    ref {r.choice(STRINGS)}")
    r.shuffle(clauses)
    out += header + clauses + ["end", ""]
    tame = r.random() < 0.6  # well-typed: usually checks and lowers
    if tame or r.random() < 0.7:
        out.append("inputs:")
        if tame:
            out.append("    measure quality: percent")
        for i in range(r.randint(1, 5)):
            scope = r.choice(["member", "practice", "event", "measure", "param"])
            name = _name(r, used, f"_{i}")
            if tame:
                typ = r.choice(["bool", "number", "money", cur])
                if scope in ("event", "measure"):
                    scope = "practice"
            else:
                typ = r.choice(TYPES + UNIT_WORDS + [f"{cur} per member", f"{cur} per point", cur])
            default = ""
            if r.random() < 0.4 or (tame and scope == "param"):
                default = " = " + {"bool": r.choice(["true", "false"]), "text": '"x"', "date": "2011-01-01",
                                   "percent": "10%", "money": _money(r, cur), cur: _money(r, cur),
                                   "number": _num(r)}.get(typ, _quantity(r, cur))
            out.append(f"    {scope} {name}: {typ}{default}{_ref(r)}")
            ref = name if scope == "param" else f"{scope}.{name}"
            if scope == "param":
                sc.params.append(name)
            elif scope in ("member", "practice"):
                getattr(sc, scope).append(ref)
                if typ == "bool":
                    sc.bools.append(ref)
            if scope == "member" and typ in ("text", "bool"):
                sc.cell_keys.append((ref, typ))
            if scope in ("member", "practice", "param"):
                sc.add({"bool": "bool", "number": "number"}.get(typ, "money"), scope == "member", ref)
        out += ["end", ""]
    ex = (lambda: typed(r, sc, "money")) if tame else (lambda: expr(r, sc))
    cn = (lambda m=False: typed(r, sc, "bool", 0, m)) if tame else (lambda m=False: cond(r, sc, 0, m))
    for i in range(r.randint(1, 7)):
        kind = r.choice(["define", "define", "dated", "bands", "tier", "modifier", "schedule", "line",
                         "line", "line_block", "pool", "example", "comment", "cells", "settlement"])
        name = _name(r, used, str(i))
        if kind == "define":
            want = r.choice(["money", "number"]) if tame else "money"
            out.append(f"define {name} = {typed(r, sc, want) if tame else expr(r, sc)}{_ref(r)}")
            sc.values.append(name)
            sc.add(want, False, name)
        elif kind == "dated":
            out.append(f"define {name}{_ref(r)}:")
            for y in sorted(r.sample(range(2009, 2014), r.randint(1, 3))):
                out.append(f"    {_money(r, cur)} from {y}-{r.randint(1, 12):02d}-01")
            if r.random() < 0.3:  # the value ends: a later month is E0805, never 0
                out.append(f"    until {r.randint(2011, 2015)}-12-31")
            out.append("end")
            sc.values.append(name)
            sc.add("money", False, name)
        elif kind == "bands":
            key = "member.age" if tame else r.choice(['member.age', 'member.age', 'practice.id'] + sc.values[:1])
            out.append(f"bands {name} by {key}{_ref(r)}:")
            money = r.random() < 0.5
            val = (lambda: _money(r, cur)) if money else (lambda: r.choice(["1", "1.5", "0.75", "3.91"]))
            if key == "member.age":
                sc.add("money" if money else "number", True, name)
            for rng in _range_list(r, sc):
                out.append(f"    {rng}: {val()}" if rng != "otherwise" else f"    otherwise: {val()}")
            out.append("end")
            sc.member.append(name)
        elif kind == "cells":
            keys = [("member.age", "age")] + ([("member.sex", "sex")] if r.random() < 0.7 else [])
            if sc.cell_keys and (r.random() < 0.7 or len(keys) == 1):
                keys.append(r.choice(sc.cell_keys))
            if len(keys) == 1:
                keys.append(("member.sex", "sex"))
            r.shuffle(keys)
            money = r.random() < 0.5
            val = (lambda: _money(r, cur)) if money else (lambda: r.choice(["1", "1.5", "0.75", "3.91"]))
            otherwise = r.random() < 0.4
            rows = cells_rows(r, [k for _, k in keys], val, otherwise)[:40]
            if r.random() < 0.3:
                _spoil_cells(r, rows)
            out += cells_text(name, [ref for ref, _ in keys], rows, val() if otherwise else None, _ref(r))
            sc.member.append(name)
            sc.add("money" if money else "number", True, name)
            if r.random() < 0.7:
                per = "" if money else f" * {_money(r, cur)}"
                out.append(f"line {name}_line {r.choice(STRINGS)} = sum of {name}{per} over members")
                sc.lines.append(f"{name}_line")
                sc.add("money", False, f"{name}_line")
        elif kind == "tier":
            out.append(f"tier {name}{_ref(r)}:")
            for _ in range(r.randint(1, 4)):
                out.append(f"    {_money(r, cur)} when {cn()}")
            if r.random() < 0.9:
                out.append(f"    {_money(r, cur)} otherwise")
            out.append("end")
            sc.values.append(name)
            sc.add("money", False, name)
        elif kind == "modifier":
            out.append(f"modifier {name} combine {r.choice(COMBINE)}{_ref(r)}:")
            for _ in range(r.randint(1, 4)):
                when = f" when {cn(True)}" if r.random() < 0.7 else ""
                out.append(f"    {r.choice(['1', '1.5', '0.75', '2']) if tame else _num(r)}{when}")
            if r.random() < 0.5 or tame:
                out.append(f"    {r.choice(['1', '1.5']) if tame else _num(r)} otherwise")
            out.append("end")
            sc.member.append(name)
            sc.add("number", True, name)
        elif kind == "schedule":
            out.append(f"schedule {name} by event.code{_ref(r)}:")
            for code in r.sample(STRINGS[4:], r.randint(1, 4)):
                out.append(f"    {code}: {_money(r, cur)}")
            if r.random() < 0.5:
                out.append(f"    otherwise: {_money(r, cur)}")
            out.append("end")
            sc.schedules.append(name)
        elif kind == "line":
            out.append(f"line {name} {r.choice(STRINGS)} = {ex()}{_ref(r)}")
            sc.lines.append(name)
            sc.add("money", False, name)
        elif kind in ("line_block", "pool"):
            word = "line" if kind == "line_block" else "pool"
            out.append(f"{word} {name} {r.choice(STRINGS)}:")
            amount = ex()
            if kind == "line_block" and r.random() < 0.3:  # a member's own events over a window
                window = r.choice(["", " during month", " during quarter", " during year"])
                inner = r.choice([f"sum of {_money(r, cur)} over member events{window}",
                                  f"count of member events{window} * {_money(r, cur)}"])
                amount = f"sum of {r.randint(1, 90)}% of {inner} over members"
            if kind == "pool" and r.random() < 0.7:
                amount = f"{r.randint(1, 20)}% of sum of {r.choice(sc.lines or ['capitation'])} over year"
            out.append(f"    amount {amount}")
            if r.random() < 0.5:
                out.append(f"    applies when {cn()}")
            if r.random() < 0.4:
                out.append(f"    basis {r.choice(['count of members', 'count of events'])} {r.choice(STRINGS)}")
            if kind == "line_block" and r.random() < 0.4:
                out.append(r.choice(["    paid monthly", "    paid quarterly", "    paid in " + ", ".join(
                    r.sample(PAY_TIMES, r.randint(1, 3)))]))
            if kind == "line_block" and r.random() < 0.3:
                out.append(f"    rate per {r.choice(['month', 'quarter', 'year'])}")
            if kind == "pool" and r.random() < 0.2:
                out.append(r.choice(["    paid monthly", "    paid quarterly", f"    paid in {r.choice(PAY_TIMES)}"]))
            elif kind == "pool" and r.random() < 0.8:
                qs = r.sample(["Q1", "Q2", "Q3", "Q4", "H1", "June", "December", "January"], r.randint(1, 4))
                parts = [f"{r.choice([10, 25, 50])}% in {q}" for q in qs[:-1]]
                last = f"rest in {qs[-1]}" if r.random() < 0.7 else f"{r.choice([25, 100])}% in {qs[-1]}"
                if r.random() < 0.3:
                    last += f" when {cn()}"
                out.append("    paid " + ", ".join(parts + [last]))
            if r.random() < 0.3:
                out.append(f"    ref {r.choice(STRINGS)}")
            out.append("end")
            if kind == "line_block":
                sc.lines.append(name)
                sc.add("money", False, name)
        elif kind == "settlement":
            out.append(f"settlement {name} {r.choice(STRINGS)}:")
            out.append(f"    total sum of {r.choice(sc.lines or ['capitation'])} over year")
            terms = r.choice([["cap"], ["floor"], ["cap", "floor"], ["corridor"]])
            for term in terms:
                if term == "corridor":
                    out.append(f"    corridor around {_money(r, cur)} within {r.randint(0, 10)}% share "
                               f"{r.randint(1, 100)}%")
                else:
                    out.append(f"    {term} {_money(r, cur)}")
            if r.random() < 0.4:
                out.append(f"    paid in {r.choice(PAY_TIMES)}")
            out.append("end")
        elif kind == "example":
            out.append(f"example {r.choice(STRINGS)}{_ref(r)}:")
            out.append(f"    period {r.choice(['2011-03', '2011-Q2', '2011', '2011-12'])}")
            if sc.params and r.random() < 0.5:
                out.append(f"    set {r.choice(sc.params)} = {_quantity(r, cur)}")
            out.append("    practice P1" + (f" with {sc.practice[-1].split('.')[1]} = {_quantity(r, cur)}"
                                             if len(sc.practice) > 1 and r.random() < 0.5 else ""))
            out.append(f"    {r.randint(1, 50)} members of P1 aged {r.randint(0, 100)}")
            if r.random() < 0.5:
                out.append(f"    member M1 of P1 born 19{r.randint(10, 99)}-0{r.randint(1, 9)}-1{r.randint(0, 9)}"
                           + (" enrolled from 2011-01-01" if r.random() < 0.5 else "")
                           + (" to 2011-06-30" if r.random() < 0.2 else ""))
            if r.random() < 0.4:
                out.append(f'    {r.randint(1, 9)} events of P1 code "PREV" on 2011-03-10')
            if r.random() < 0.3:
                out.append(f"    measure quality of P1 for 2011 = {r.randint(0, 100)}%")
            target = r.choice(sc.lines + ["total"])
            out.append(f"    expect P1 {target} = {_money(r, cur)}")
            if r.random() < 0.3:
                out.append(f"    expect total = {_money(r, cur)}")
            out.append("end")
        else:
            out.append(f"# {r.choice(STRINGS)} comment")
        if r.random() < 0.8:
            out.append("")
    if not sc.lines:
        out.append(f"line capitation {STRINGS[0]} = sum of {_money(r, cur)} over members")
    text = "\n".join(out) + "\n"
    if r.random() < 0.1:
        text = text.replace("\n", "\r\n")
    if r.random() < 0.1:
        text = text.replace("    ", "\t")
    return text


# ───────────────────────────── mutation ─────────────────────────────

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|\w+|\s+|.', re.S)
WEIRD = ["\u202e", "\u202d", "\u200b", "\u200d", "\ufeff", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x85",
         "\r", "\t", "\x00", "\u0301", "\U0001f600", "日", "\uffff", "\udcff", "\ud800", "é", "ß", "ǅ", "İ",
         "\\", '"', "#", ":", "(", ")", "%", "-", "=", ",", ".", "\n", "\\\n", "\u0660", "١", "²", "Ⅻ", "ﬁ"]
HUGE = ["1e400", "9" * 500, "1" + "0" * 41, "0." + "9" * 60, "10" * 300, "1.0e-400", "999999999999999999999999999",
        "NaN", "Infinity", "-0", "0.0000000000", "1" * 41 + " CZK", "2011-13-45", "0000-00-00", "9999-12-31",
        "2011-02-29", "2012-02-29", "1%" * 3]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _deep(r: random.Random, n: int) -> str:
    k = r.randrange(6)
    if k == 0:
        return "(" * n + "1" + ")" * n
    if k == 1:
        return "if true then " * n + "1" + " else 2" * n
    if k == 2:
        return "-" * n + "1"
    if k == 3:
        return "not " * n + "true"
    if k == 4:
        return " + ".join(["1"] * n)
    return "min(" * n + "1" + ", 2)" * n


def mutate(r: random.Random, text: str, rounds: int | None = None) -> tuple[str, str]:
    """Apply 1–3 random mutations; returns (text, the kinds applied joined by '+')."""
    kinds = []
    for _ in range(rounds or r.choice([1, 1, 1, 2, 3])):
        k = r.randrange(17)
        toks = _tokens(text)
        if k == 0:  # byte flips on the UTF-8 bytes, decoded with surrogateescape
            data = bytearray(text.encode("utf-8", "surrogatepass"))
            for _ in range(r.randint(1, 8)):
                if data:
                    i = r.randrange(len(data))
                    data[i] ^= 1 << r.randrange(8)
            text = bytes(data).decode("utf-8", "surrogateescape")
            kinds.append("byteflip")
        elif k == 1:
            text = text[: r.randrange(len(text) + 1)]
            kinds.append("truncate")
        elif k == 2 and len(toks) > 2:
            i, j = r.randrange(len(toks)), r.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
            text = "".join(toks)
            kinds.append("swap")
        elif k == 3 and toks:
            for _ in range(r.randint(1, 4)):
                if toks:
                    del toks[r.randrange(len(toks))]
            text = "".join(toks)
            kinds.append("delete")
        elif k == 4 and toks:
            i = r.randrange(len(toks))
            toks.insert(i, toks[r.randrange(len(toks))] * r.choice([1, 2, 3]))
            text = "".join(toks)
            kinds.append("duplicate")
        elif k == 5:
            i = r.randrange(len(text) + 1)
            text = text[:i] + "".join(r.choice(WEIRD) for _ in range(r.randint(1, 5))) + text[i:]
            kinds.append("unicode")
        elif k == 6:  # replace a number with a huge/odd one
            nums = [i for i, t in enumerate(toks) if t[:1].isdigit()]
            if nums:
                toks[r.choice(nums)] = r.choice(HUGE)
            else:
                toks.insert(r.randrange(len(toks) + 1), r.choice(HUGE))
            text = "".join(toks)
            kinds.append("number")
        elif k == 7:  # deep nesting in place of an expression token
            n = r.choice([10, 50, 99, 100, 101, 150, 300, 1000, 3000])
            nums = [i for i, t in enumerate(toks) if t[:1].isdigit()] or [0]
            i = r.choice(nums)
            toks[i:i + 1] = [_deep(r, n)]
            text = "".join(toks)
            kinds.append("nesting")
        elif k == 8:  # a very long line
            lines = text.split("\n")
            i = r.randrange(len(lines))
            pad = r.choice(['"' + "x" * 100_000 + '"', "# " + "y" * 100_000, "a" * 50_000, " " * 100_000,
                            " + 1" * 5000, "\\\n" * 2000])
            lines[i] = lines[i] + " " + pad
            text = "\n".join(lines)
            kinds.append("longline")
        elif k == 9:
            i = r.randrange(len(text) + 1)
            text = text[:i] + "\x00" + text[i:]
            kinds.append("nul")
        elif k == 10:
            text = text.replace("\n", r.choice(["\r\n", "\r", "\n\n", "\n\r"]))
            kinds.append("newlines")
        elif k == 11:
            text = re.sub(r"^ +", lambda m: r.choice(["\t", "\t\t", " \t", ""]), text, flags=re.M)
            kinds.append("tabs")
        elif k == 12 and toks:  # replace a word with a keyword or a name
            words = [i for i, t in enumerate(toks) if re.fullmatch(r"\w+", t)]
            if words:
                toks[r.choice(words)] = r.choice(KEYWORDS + NAMES + CURRENCIES + UNIT_WORDS)
            text = "".join(toks)
            kinds.append("keyword")
        elif k == 13:  # duplicate or drop a whole line
            lines = text.split("\n")
            i = r.randrange(len(lines))
            if r.random() < 0.5:
                lines.insert(i, lines[i])
            else:
                del lines[i]
            text = "\n".join(lines)
            kinds.append("lines")
        elif k == 14:  # splice a line from another contract
            other = r.choice(list(CONTRACT_TEXTS.values())).split("\n")
            lines = text.split("\n")
            lines.insert(r.randrange(len(lines) + 1), r.choice(other))
            text = "\n".join(lines)
            kinds.append("splice")
        elif k == 15:  # injection-looking text
            inj = r.choice(["import os", "__import__('os').system('true')", "exec(\"1\")", "eval(1)",
                            "define x = __import__(\"os\")", "{{7*7}}", "${HOME}", "$(id)", "`id`",
                            "open(\"/etc/passwd\")", "'; DROP TABLE members; --", "\" OR 1=1 --"])
            lines = text.split("\n")
            lines.insert(r.randrange(len(lines) + 1), inj)
            text = "\n".join(lines)
            kinds.append("injection")
        else:  # strip or add `end`
            if "end" in toks and r.random() < 0.5:
                idx = [i for i, t in enumerate(toks) if t == "end"]
                del toks[r.choice(idx)]
            else:
                toks.insert(r.randrange(len(toks) + 1), "\nend\n")
            text = "".join(toks)
            kinds.append("end")
    return text, "+".join(kinds) or "none"


# ───────────────────────────── the oracle ─────────────────────────────

class Hang(Exception):
    """An input took longer than the per-input limit."""


@contextmanager
def time_limit(seconds: float):
    """SIGALRM-based limit (main thread only; elsewhere it does nothing)."""
    try:
        old = signal.signal(signal.SIGALRM, _alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _alarm(signum, frame):
    raise Hang("input took too long")


def _line_bound(text: str) -> int:
    return max(len(text.splitlines()), text.count("\n") + 1) + 1


def check_diagnostics(exc, text: str) -> None:
    """Every diagnostic has a code and a span inside the source, and renders."""
    from capdsl.errors import Source, render_all, to_json

    assert exc.diagnostics, "CapError without diagnostics"
    bound = _line_bound(text)
    for d in exc.diagnostics:
        assert re.fullmatch(r"[EW][0-9]{4}", d.code), f"bad code {d.code!r}"
        spans = [d.span] + [note.span for note in d.notes]
        for s in spans:
            if s is None:
                continue
            assert 1 <= s.line <= bound, f"{d.code}: span line {s.line} outside 1..{bound}"
            assert s.column >= 1, f"{d.code}: span column {s.column} < 1"
            assert s.end_line >= s.line or s.end_line == 0, f"{d.code}: span ends before it starts: {s}"
    source = exc.source or Source(text)
    render_all(exc.diagnostics, source)
    render_all(exc.diagnostics, source, color=True)
    to_json(exc.diagnostics, source)


def structure(contract) -> tuple:
    """The AST for comparison (header clauses as a set: fmt writes them in a fixed order)."""
    from capdsl.language import ast_nodes as n

    return tuple(dataclasses.replace(d, written=tuple(sorted(d.written))) if isinstance(d, n.Header) else d
                 for d in contract.decls)


def run_one(text: str, limit: float = 10.0) -> str:
    """The invariant for one input; returns the stage it stopped at ('syntax', 'check', 'ok').

    Raises AssertionError (broken invariant), Hang, or whatever crashed.
    """
    from capdsl.language.check import check
    from capdsl.errors import CapError, Source
    from capdsl.language.fmt import format_source, format_text
    from capdsl.evaluation.lower import lower
    from capdsl.language.syntax import parse

    with time_limit(limit):
        source = Source(text, "<fuzz>")
        try:
            contract = parse(source)
        except CapError as exc:
            check_diagnostics(exc, text)
            return "syntax"
        try:
            formatted = format_source(source)
        except CapError as exc:
            raise AssertionError(f"fmt raised {exc.code} on a contract that parses: {exc}") from None
        try:
            again = parse(Source(formatted, "<fmt>"))
        except CapError as exc:
            raise AssertionError(f"fmt output does not parse: {exc.code} {exc}") from None
        assert structure(again) == structure(contract), "fmt changed the AST"
        assert format_text(formatted) == formatted, "fmt is not idempotent"
        try:
            checked = check(contract, source)
            lower(checked)
        except CapError as exc:
            check_diagnostics(exc, text)
            return "check"
        for w in checked.warnings:
            check_diagnostics(type("W", (), {"diagnostics": [w], "source": source})(), text)
        return "ok"


# ───────────────────────────── minimisation ─────────────────────────────

def signature(exc: BaseException) -> str:
    """What identifies a crash: the exception type and the innermost capdsl frame."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "capdsl" in f.filename
              and "fuzz" not in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    msg = str(exc).split("\n")[0][:80] if isinstance(exc, AssertionError) else ""
    return f"{type(exc).__name__}@{where}{(' ' + msg) if msg else ''}"


def fails_same(text: str, sig: str, limit: float = 10.0) -> bool:
    try:
        run_one(text, limit)
    except Exception as exc:  # noqa: BLE001
        return signature(exc) == sig
    return False


def minimize(text: str, sig: str, budget: int = 400, limit: float = 10.0) -> str:
    """Greedy delta debugging over lines, then tokens, then characters."""
    tries = 0

    def shrink(parts: list[str], join: str) -> list[str]:
        nonlocal tries
        n = 2
        while len(parts) >= 1 and tries < budget:
            chunk = max(1, len(parts) // n)
            changed = False
            for i in range(0, len(parts), chunk):
                cand = parts[:i] + parts[i + chunk:]
                tries += 1
                if tries >= budget:
                    break
                if fails_same(join.join(cand), sig, limit):
                    parts, changed = cand, True
                    break
            if not changed:
                if chunk == 1:
                    break
                n = min(len(parts), n * 2)
        return parts

    text = "\n".join(shrink(text.split("\n"), "\n"))
    text = "".join(shrink(_tokens(text), ""))
    if len(text) < 2000:
        text = "".join(shrink(list(text), ""))
    return text
