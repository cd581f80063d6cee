"""Embedded examples: the small panels a contract carries with the amounts
they must produce, and the runner behind `capdsl test`.

An `example` block becomes interpreter `Rows` directly (no files), is
evaluated by the reference interpreter (and, when asked, by another engine
on the same rows), and every `expect` is compared to the statement exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from xml.sax.saxutils import escape

from capdsl.language import ast_nodes as n
from capdsl.evaluation import tree as t
from capdsl.errors import BackendError, CheckError, Diagnostic, EvalError, InputError, Source, Span, error
from capdsl.evaluation.interpret import Rows, evaluate


@dataclass
class Failure:
    message: str
    span: Span
    expected: str | None = None
    actual: str | None = None


@dataclass
class Outcome:
    """The result of one example."""

    path: str
    name: str
    span: Span
    checks: int = 0
    failures: list[Failure] = field(default_factory=list)
    error: Diagnostic | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None


def constant(expr: n.Expr):
    """The value of a literal written in an example (numbers, text, dates, booleans)."""
    if isinstance(expr, n.Quantity):
        return expr.value
    if isinstance(expr, n.Neg) and isinstance(expr.operand, n.Quantity):
        return -expr.operand.value
    if isinstance(expr, n.String):
        return expr.value
    if isinstance(expr, n.BoolLit):
        return expr.value
    if isinstance(expr, n.DateLit):
        return expr.value
    raise CheckError(error("E0608", "example values must be literals (a number, text, date, true or false)",
                           getattr(expr, "span", None),
                           hint="write the value itself, e.g. `32 hours`: an example states facts, "
                                "the contract computes"))


def born_aged(age: int, start: date) -> date:
    """A birth date that makes a member exactly `age` from `start` for a whole year."""
    try:
        return date(start.year - age - 1, start.month, start.day) + timedelta(days=1)
    except ValueError:  # 29 February
        return date(start.year - age - 1, start.month, 28) + timedelta(days=1)


def _defaults(program: t.Program, table: str) -> dict[str, tuple]:
    return {c.name: (c.default, c.required, c.needed_by) for c in program.columns if c.table == table}


def build_rows(program: t.Program, example: n.Example, source: Source):
    """Rows, params, period text and expectations of one example."""
    from capdsl.evaluation.periods import parse_period

    period_text = next((e.text for e in example.entries if isinstance(e, n.ExPeriod)), None)
    if period_text is None:
        raise CheckError(error("E0605", f"example '{example.name}' has no `period`", example.span,
                               hint="add a line such as `period 2011-03`"), source)
    period = parse_period(period_text)
    start = period.months[0]
    practices: dict[str, dict] = {}
    members: list[dict] = []
    events: list[dict] = []
    measures: list[tuple] = []
    params: dict[str, object] = {}
    expects: list[n.ExExpect] = []
    member_cols = _defaults(program, "member")
    practice_cols = _defaults(program, "practice")
    event_cols = _defaults(program, "event")

    def fill(kind: str, attrs: tuple[n.Assignment, ...], cols: dict, where: Span, who: str) -> dict:
        values = {a.name: constant(a.value) for a in attrs}
        for name, (default, required, needed_by) in cols.items():
            if name in values or name in ("member_id", "practice_id", "birth_date", "enrolled_from", "enrolled_to",
                                          "code", "date", "quantity", "sex"):
                continue
            if required:
                raise CheckError(error("E0609", f"{who} has no value for `{kind}.{name}`", where,
                                       hint=f"add `with {name} = ...` (needed by {needed_by})"), source)
            values[name] = default
        return values

    row_no = 0
    for entry in example.entries:
        if isinstance(entry, n.ExSet):
            params[entry.name] = constant(entry.value)
        elif isinstance(entry, n.ExPractice):
            practices[entry.practice] = {"practice_id": entry.practice,
                                         **fill("practice", entry.attrs, practice_cols, entry.span,
                                                f"practice {entry.practice}")}
        elif isinstance(entry, n.ExMembers):
            attrs = fill("member", entry.attrs, member_cols, entry.span, f"members of {entry.practice}")
            born = born_aged(entry.age, start)
            for k in range(entry.count):
                row_no += 1
                # the example's line number keeps two lines of members of one practice and age apart
                members.append({"member_id": f"{entry.practice}-{entry.age}-{k + 1}-l{entry.span.line}",
                                "practice_id": entry.practice,
                                "birth_date": born, "enrolled_from": None, "enrolled_to": None, "sex": None,
                                "_row": row_no, "_label": f"example line {entry.span.line}", **attrs})
        elif isinstance(entry, n.ExMember):
            row_no += 1
            attrs = fill("member", entry.attrs, member_cols, entry.span, f"member {entry.member}")
            members.append({"member_id": entry.member, "practice_id": entry.practice, "birth_date": entry.born,
                            "enrolled_from": entry.enrolled_from, "enrolled_to": entry.enrolled_to, "sex": None,
                            "_row": row_no, "_label": f"member {entry.member}", **attrs})
        elif isinstance(entry, n.ExEvents):
            attrs = fill("event", entry.attrs, event_cols, entry.span, f"events of {entry.practice}")
            quantity = attrs.pop("quantity", Decimal(1))
            patient = attrs.pop("member", None)  # `with member = "M1"`: the built-in event.member
            for _ in range(entry.count):
                row_no += 1
                events.append({"practice_id": entry.practice, "member_id": patient, "date": entry.on,
                               "code": entry.code, "quantity": quantity, "_row": row_no, **attrs})
        elif isinstance(entry, n.ExMeasure):
            measures.append((entry.practice, entry.period or str(period.year), entry.measure, constant(entry.value)))
        elif isinstance(entry, n.ExExpect):
            expects.append(entry)
    # A practice the example names only through its members or events is on the panel too, with the
    # practice inputs' defaults: its events are paid to it, on every engine, not dropped.
    for row in (*members, *events):
        if row["practice_id"] not in practices:
            practices[row["practice_id"]] = {"practice_id": row["practice_id"],
                                             **fill("practice", (), practice_cols, example.span,
                                                    f"practice {row['practice_id']}")}
    for name, decl in program.params.items():
        kind, default, needed_by = decl.kind, decl.default, decl.needed_by
        if name not in params:
            if default is None:
                raise CheckError(error("E0604", f"example '{example.name}' needs a value for parameter `{name}`",
                                       example.span, hint=f"add `set {name} = ...`"), source)
            params[name] = default
    rows = Rows(sorted(practices.values(), key=lambda p: p["practice_id"]), members, events, measures)
    return rows, params, period, expects


def run_example(program: t.Program, example: n.Example, source: Source, engine: str = "python") -> Outcome:
    from capdsl.evaluation.layout import layout_of
    from capdsl.evaluation.statements import build

    outcome = Outcome(source.path, example.name, example.span)
    started = time.perf_counter()
    try:
        rows, params, period, expects = build_rows(program, example, source)
        if engine == "python":
            monthly = evaluate(program, rows, period.months, params)
        else:
            monthly = _evaluate_on_engine(program, rows, period, params, engine)
        result = build(layout_of(program), monthly, period.text, period.months, engine)
    except (CheckError, EvalError, InputError, BackendError) as exc:
        outcome.error = exc.diagnostics[0]
        outcome.seconds = time.perf_counter() - started
        return outcome
    by_practice = {s.practice_id: s for s in result.statements}
    for expect in expects:
        outcome.checks += 1
        wanted = constant(expect.value)
        if expect.practice is None:
            actual = result.total if expect.line == "total" else None
            what = "the grand total"
        else:
            st = by_practice.get(expect.practice)
            if st is None:
                outcome.failures.append(Failure(f"practice {expect.practice} has no statement", expect.span))
                continue
            if expect.line == "total":
                actual, what = st.total, f"{expect.practice} total"
            else:
                line = next((ln for ln in st.lines if ln.id == expect.line), None)
                actual, what = (line.amount if line else None), f"{expect.practice} {expect.line}"
        if actual is None:
            outcome.failures.append(Failure(f"{what}: no such line", expect.span))
        elif Decimal(actual) != Decimal(wanted):
            outcome.failures.append(Failure(f"{what}: expected {wanted}, got {actual} "
                                            f"(difference {Decimal(actual) - Decimal(wanted)})",
                                            expect.span, str(wanted), str(actual)))
    outcome.seconds = time.perf_counter() - started
    return outcome


def junit(outcomes: list[Outcome]) -> str:
    """JUnit XML for CI systems."""
    failures = sum(1 for o in outcomes if o.failures)
    errors = sum(1 for o in outcomes if o.error)
    total_time = sum(o.seconds for o in outcomes)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuite name="capdsl" tests="{len(outcomes)}" failures="{failures}" errors="{errors}" '
           f'time="{total_time:.3f}">']
    for o in outcomes:
        out.append(f'  <testcase classname="{escape(o.path)}" name="{escape(o.name, {chr(34): "&quot;"})}" '
                   f'time="{o.seconds:.3f}">')
        for f in o.failures:
            out.append(f'    <failure message="{escape(f.message, {chr(34): "&quot;"})}">'
                       f'{escape(o.path)}:{f.span.line}: {escape(f.message)}</failure>')
        if o.error is not None:
            out.append(f'    <error message="{escape(o.error.message, {chr(34): "&quot;"})}">'
                       f'[{o.error.code}] {escape(o.error.message)}</error>')
        out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out) + "\n"


def _evaluate_on_engine(program: t.Program, rows, period, params: dict, engine: str):
    """Run an example on a SQL engine through the same panel loader the CLI uses:
    the example's rows are written as CSV files, loaded, typed and checked."""
    import csv
    import tempfile
    from pathlib import Path

    from capdsl.data.panel import load_panel
    from capdsl.pipeline import CompiledContract, run_engine

    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def write(path: Path, table: list[dict], columns: list[str]) -> None:
        with path.open("w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(columns)
            for row in table:
                out.writerow([text(row.get(c)) for c in columns])

    with tempfile.TemporaryDirectory(prefix="capdsl-example-") as tmp:
        base = Path(tmp)
        files = {}
        member_cols = [c for c in rows.members[0] if not c.startswith("_")] if rows.members else \
            ["member_id", "practice_id", "birth_date"]
        write(base / "members.csv", rows.members, member_cols)
        files["members"] = base / "members.csv"
        if rows.practices:
            write(base / "practices.csv", rows.practices, list(rows.practices[0]))
            files["practices"] = base / "practices.csv"
        if rows.events:
            event_cols = [c for c in rows.events[0] if not c.startswith("_")]
            write(base / "events.csv", rows.events, event_cols)
            files["events"] = base / "events.csv"
        if rows.measures:
            write(base / "measures.csv", [dict(zip(("practice_id", "period", "measure", "value"), m))
                                          for m in rows.measures], ["practice_id", "period", "measure", "value"])
            files["measures"] = base / "measures.csv"
        contract = CompiledContract.of(program)
        panel = load_panel(files, contract.requirements(), period=period, show_ids=True, allow_no_members=True)
        try:
            return run_engine(contract, panel, period, params, engine)
        finally:
            panel.close()
