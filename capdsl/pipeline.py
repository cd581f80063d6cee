"""The pipeline: chains the stages so each command stops where it needs to.

  load_source → syntax.parse → check.check → lower.lower → backend → statement.build

Commands call these functions and nothing deeper; imports of heavy stages
(DuckDB, Spark) happen inside the functions that need them, so `capdsl
--help` and `capdsl check` start fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from capdsl.errors import MAX_SOURCE_BYTES, BackendError, Diagnostic, EvalError, Source, load_source
from capdsl.evaluation.layout import Outline, outline

if TYPE_CHECKING:
    from capdsl.language import ast_nodes as nodes
    from capdsl.evaluation import tree as t


@dataclass
class Loaded:
    source: Source
    contract: nodes.Contract


def load(path: str | Path, max_bytes: int = MAX_SOURCE_BYTES) -> Loaded:
    from capdsl.language.syntax import parse

    source = load_source(path, max_bytes)
    return Loaded(source, parse(source))


def check_file(path: str | Path):
    """Parse and check one file; returns `check.Checked` or raises `CapError`."""
    from capdsl.language.check import check

    loaded = load(path)
    return check(loaded.contract, loaded.source)


def check_source(source: Source):
    from capdsl.language.check import check
    from capdsl.language.syntax import parse

    return check(parse(source), source)


def compile_file(path: str | Path) -> tuple[object, t.Program]:
    """Parse, check and lower: the program every backend runs."""
    from capdsl.evaluation.lower import lower

    checked = check_file(path)
    return checked, lower(checked)


@dataclass
class Runnable:
    """What a command that runs a contract needs: its text (for messages), the checker's warnings,
    its outline and, read only when needed, its evaluation tree (`program`). `key` names its
    compiled-contract cache entry (None when the cache is off)."""

    source: Source
    warnings: tuple[Diagnostic, ...]
    outline: Outline
    key: str | None = None
    _program: t.Program | None = field(default=None, repr=False)

    @property
    def program(self) -> t.Program:
        if self._program is None:
            from capdsl import cache
            from capdsl.evaluation import tree

            found = cache.load(_tree_entry(self.key)) if self.key else None
            if isinstance(found, tree.Program):
                self._program = found
            else:
                self._program = compile_source(self.source)[1]
                if self.key:
                    cache.store(_tree_entry(self.key), self._program)
        return self._program


def _tree_entry(contract_entry: str) -> str:
    return "tree-" + contract_entry.removeprefix("contract-")


def runnable_file(path: str | Path) -> Runnable:
    """`compile_file` for eval, explain, compile and diff, served from the compiled-contract
    cache (capdsl/cache.py) when neither the contract nor capdsl has changed. The cache keeps the
    warnings and the outline in one entry and the tree in another, so that a run whose query is
    cached too never reads (or imports) the tree."""
    from capdsl import cache

    source = load_source(path)
    entry = cache.key(source.text, source.path)
    key = entry if cache.directory() else None
    hit = cache.load(entry)
    if isinstance(hit, tuple) and len(hit) == 2 and isinstance(hit[1], Outline):
        return Runnable(source, tuple(hit[0]), hit[1], key)
    checked, program = compile_source(source)
    shape = outline(program)
    cache.store(_tree_entry(entry), program)
    cache.store(entry, (tuple(checked.warnings), shape))
    return Runnable(source, tuple(checked.warnings), shape, key, program)


def compile_source(source: Source) -> tuple[object, t.Program]:
    from capdsl.evaluation.lower import lower

    checked = check_source(source)
    return checked, lower(checked)


def requirements(program: t.Program | Outline):
    """What the program reads from the panel, in the panel loader's terms."""
    from capdsl.data.panel import ColumnSpec, Requirements

    shape = outline(program)
    cols = {"member": [], "practice": [], "event": []}
    for col in shape.columns:
        if col.name in ("member_id", "practice_id", "birth_date", "enrolled_from", "enrolled_to", "code", "date",
                        "quantity") and col.needed_by == "built-in":
            continue
        cols[col.table].append(ColumnSpec(col.name, col.kind, col.required, col.default, col.needed_by))
    measures = {name: (d.kind, d.default, d.needed_by) for name, d in shape.measures.items()}
    params = {name: (d.kind, d.default, d.needed_by, d.unit) for name, d in shape.params.items()}
    return Requirements(members=cols["member"], practices=cols["practice"], events=cols["event"],
                        measures=measures, params=params, needs_practices=bool(cols["practice"]),
                        needs_events=shape.needs_events, needs_measures=bool(measures))


@dataclass
class Run:
    """One evaluation request, as the CLI (or a test) states it."""

    files: dict  # table -> path
    period: str
    assignments: tuple[str, ...] = ()
    params_file: str | None = None
    formats: dict | None = None
    engine: str = "duckdb"
    show_ids: bool = False
    today: date | None = None
    spark_master: str | None = None


def evaluate(program: t.Program | Runnable, run: Run):
    """Load the panel, evaluate with the chosen engine, build statements. Given a `Runnable`, the
    evaluation tree is read only if the engine needs it (not for a query found in the cache)."""
    from capdsl.data.panel import load_panel, parse_params
    from capdsl.evaluation.periods import parse_period
    from capdsl.evaluation.statements import build

    period = parse_period(run.period)
    shape = program.outline if isinstance(program, Runnable) else outline(program)
    reqs = requirements(shape)
    params = parse_params(list(run.assignments), run.params_file, reqs)
    panel = load_panel(run.files, reqs, formats=run.formats, today=run.today, show_ids=run.show_ids,
                       period=period, checks_in_background=True)
    try:
        monthly = run_engine(program, panel, period, params, run.engine, spark_master=run.spark_master)
    except Exception as exc:
        panel.finish_checks()  # a problem in the data explains a failure better than the failure does
        if isinstance(exc, (EvalError, BackendError)) and exc.source is None and isinstance(program, Runnable):
            exc.source = program.source  # its spans are in the contract: show the line and a caret
        raise
    except BaseException:  # Ctrl-C: stop the checks, do not wait for them
        panel.close()
        raise
    panel.finish_checks()
    warnings = [_warning_text(w) for w in panel.warnings]
    return build(shape, monthly, period.text, period.months, run.engine, warnings), panel


def member_detail(program: t.Program, run: Run, *, source=None, redact: bool = False):
    """Member-month detail from the reference interpreter (see capdsl/evaluation/detail.py)."""
    import hashlib

    from capdsl.evaluation.detail import member_detail as detail
    from capdsl.evaluation.lower import source_text
    from capdsl.data.panel import load_panel, parse_params
    from capdsl.evaluation.periods import parse_period

    period = parse_period(run.period)
    reqs = requirements(program)
    params = parse_params(list(run.assignments), run.params_file, reqs)
    panel = load_panel(run.files, reqs, formats=run.formats, today=run.today, show_ids=run.show_ids,
                       period=period)
    try:
        rows = panel_rows(program, panel)
        warnings = [_warning_text(w) for w in panel.warnings]
    finally:
        panel.close()

    def label(member_id) -> str:
        text = str(member_id)
        return "m:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10] if redact else text

    describe = (lambda agg: source_text(source, agg.origin)) if source is not None else (lambda agg: "")
    return detail(program, rows, period.months, params, label=label, describe=describe), warnings


def run_engine(program: t.Program | Runnable, panel, period, params: dict, engine: str, *, spark_master=None,
               tracer=None, only_practice=None):
    if engine == "duckdb" and isinstance(program, Runnable) and program.key:
        from capdsl.sql import duckdb_engine

        runnable = program
        return duckdb_engine.evaluate_keyed(runnable.key, lambda: runnable.program, runnable.outline.quantum,
                                            panel.con, period, params, member_label=_row_label(panel))
    if isinstance(program, Runnable):
        program = program.program
    if engine == "python":
        from capdsl.evaluation.interpret import evaluate as interpret

        return interpret(program, panel_rows(program, panel), period.months, params, tracer=tracer,
                         only_practice=only_practice)
    from capdsl import sql

    label = _row_label(panel) if hasattr(panel, "member_label") else None
    if engine == "spark":
        return sql.evaluate(program, panel.con, period, params, engine="spark", master=spark_master,
                            member_label=label)
    return sql.evaluate(program, panel.con, period, params, engine="duckdb", member_label=label, cached=True)


def _row_label(panel):
    """The SQL engines name a failing member by its file row (`_row`): label it by its id, as the
    interpreter does (hashed unless --show-ids). Labelling the row number itself hashed the wrong value."""
    def label(row) -> str:
        try:
            found = panel.con.execute("SELECT member_id FROM members WHERE _row = ?", [int(str(row))]).fetchall()
        except Exception:  # noqa: BLE001 - a row we cannot look up ("?") stays anonymous
            return "id hidden"
        return panel.member_label(found[0][0]) if found else "id hidden"
    return label


def panel_rows(program: t.Program, panel):
    """The panel as Python rows for the interpreter."""
    from capdsl.evaluation.interpret import Rows

    member_cols = ["member_id", "practice_id", "birth_date", "enrolled_from", "enrolled_to", "_row"]
    member_cols += [c.name for c in program.columns if c.table == "member" and c.name not in member_cols]
    practice_cols = ["practice_id"] + [c.name for c in program.columns
                                       if c.table == "practice" and c.name != "practice_id"]
    event_cols = ["practice_id", "date", "code", "quantity", "_row"]
    event_cols += [c.name for c in program.columns if c.table == "event" and c.name not in event_cols]
    members = [dict(zip(member_cols, row)) for row in panel.member_rows(member_cols)]
    for row in members:
        row["_label"] = panel.member_label(row["member_id"]) if hasattr(panel, "member_label") else "id hidden"
    practices = [dict(zip(practice_cols, row)) for row in panel.practice_rows(practice_cols)]
    events = [dict(zip(event_cols, row)) for row in panel.event_rows(event_cols)]
    return Rows(practices, members, events, list(panel.measure_rows()))


def _warning_text(diag: Diagnostic) -> str:
    where = f"{diag.path}: " if diag.path else ""
    return f"{where}warning[{diag.code}]: {diag.message}"
