"""The pipeline: chains the stages so each command stops where it needs to.

  load_source → syntax.parse → check.check → lower.lower → backend → statements.build

`CompiledContract` is the compiled stage, cached (capdsl/cache.py): commands
ask it for the layout, the requirements, the tree or a query. Commands call
these functions and nothing deeper; imports of heavy stages
(DuckDB, Spark) happen inside the functions that need them, so `capdsl
--help` and `capdsl check` start fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from capdsl.errors import MAX_SOURCE_BYTES, BackendError, Diagnostic, EvalError, Source, load_source
from capdsl.evaluation.layout import Layout, layout_of
from capdsl.data.requirements import requirements  # noqa: F401  (callers import it from here)

if TYPE_CHECKING:
    from capdsl.language import ast_nodes as nodes
    from capdsl.evaluation import tree as t
    from capdsl.sql.query import Query


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


@dataclass(eq=False)
class CompiledContract:
    """A checked and lowered contract, as the commands that run it ask for it: its text (for
    messages), the checker's warnings, the statements' `layout`, the panel `requirements()`, the
    evaluation `tree` and the `query` for a period, dialect and parameters.

    Each part comes from the compiled-contract cache (capdsl/cache.py) when it is there and is
    made only when asked for: the warnings and the layout come with the contract's entry
    (`entry`, None when the cache is off or the tree was built in memory), the tree is read from
    its own entry or compiled on first use, and a query is read from its entry or compiled from
    the tree. A run whose query is cached so neither reads the tree's entry nor compiles anything."""

    source: Source | None
    warnings: tuple[Diagnostic, ...]
    layout: Layout
    entry: str | None = None
    _tree: t.Program | None = field(default=None, repr=False)

    @classmethod
    def of(cls, program: t.Program, source: Source | None = None) -> CompiledContract:
        """A tree built in memory (an embedded example, a test): it has no contract entry, so its
        queries are cached under the encoded tree."""
        return cls(source, (), layout_of(program), None, program)

    @property
    def tree(self) -> t.Program:
        if self._tree is None:
            from capdsl import cache
            from capdsl.evaluation import tree

            found = cache.load(cache.tree_entry(self.entry)) if self.entry else None
            if isinstance(found, tree.Program):
                self._tree = found
            else:
                self._tree = compile_source(self.source)[1]
                if self.entry:
                    cache.save(cache.tree_entry(self.entry), self._tree)
        return self._tree

    def requirements(self):
        """What the contract reads from the panel, in the panel loader's terms."""
        return requirements(self.layout)

    def query(self, period, dialect: str, *, tables=None, params=None, options=None) -> Query:
        """The compiled query over `period` in `dialect` (for `tables`, `params` and `options`,
        default `query.Options()`), read from the cache when it was compiled before."""
        from capdsl import cache, store
        from capdsl.sql.query import Options, Query

        options = Options() if options is None else options
        entry = None
        if store.directory() is not None:
            identity = self.entry.encode() if self.entry else cache.tree_identity(self.tree)
            entry = cache.query_entry(identity, period, dialect, tables, params, options)
        if entry is not None:
            hit = cache.load(entry)
            if isinstance(hit, Query):
                return hit
        from capdsl.sql.compile import compile_query

        query = compile_query(self.tree, period, dialect, tables=tables, params=params, options=options).runnable()
        if entry is not None:
            cache.save(entry, query)
        return query


def compiled_file(path: str | Path) -> CompiledContract:
    """The compiled contract of a file, for eval, explain, compile and diff: read from the
    compiled-contract cache when neither the contract nor capdsl has changed, else compiled (and
    its contract and tree entries stored). Only a contract without errors is stored."""
    from capdsl import cache, store

    source = load_source(path)
    entry = cache.contract_entry(source.text, source.path)
    hit = cache.load(entry)
    if isinstance(hit, tuple) and len(hit) == 2 and isinstance(hit[1], Layout):
        return CompiledContract(source, tuple(hit[0]), hit[1], entry)
    checked, program = compile_source(source)
    layout = layout_of(program)
    cache.save(cache.tree_entry(entry), program)
    cache.save(entry, (tuple(checked.warnings), layout))
    return CompiledContract(source, tuple(checked.warnings), layout, entry if store.directory() else None, program)


def _compiled(contract: CompiledContract | t.Program) -> CompiledContract:
    """The entry points below also take a bare tree (tests and tools that lower in memory)."""
    return contract if isinstance(contract, CompiledContract) else CompiledContract.of(contract)


def compile_source(source: Source) -> tuple[object, t.Program]:
    from capdsl.evaluation.lower import lower

    checked = check_source(source)
    return checked, lower(checked)


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


def evaluate(contract: CompiledContract | t.Program, run: Run):
    """Load the panel, evaluate with the chosen engine, build statements. The evaluation tree is
    read only if the engine needs it (not for a query found in the cache)."""
    from capdsl.data.panel import load_panel, parse_params
    from capdsl.evaluation.periods import parse_period
    from capdsl.evaluation.statements import build

    contract = _compiled(contract)
    period = parse_period(run.period)
    reqs = contract.requirements()
    params = parse_params(list(run.assignments), run.params_file, reqs)
    panel = load_panel(run.files, reqs, formats=run.formats, today=run.today, show_ids=run.show_ids,
                       period=period, checks_in_background=True)
    try:
        monthly = run_engine(contract, panel, period, params, run.engine, spark_master=run.spark_master)
    except Exception as exc:
        panel.finish_checks()  # a problem in the data explains a failure better than the failure does
        if isinstance(exc, (EvalError, BackendError)) and exc.source is None and contract.source is not None:
            exc.source = contract.source  # its spans are in the contract: show the line and a caret
        raise
    except BaseException:  # Ctrl-C: stop the checks, do not wait for them
        panel.close()
        raise
    panel.finish_checks()
    warnings = [_warning_text(w) for w in panel.warnings]
    return build(contract.layout, monthly, period.text, period.months, run.engine, warnings), panel


def member_detail(contract: CompiledContract | t.Program, run: Run, *, redact: bool = False):
    """Member-month detail from the reference interpreter (see capdsl/evaluation/detail.py)."""
    import hashlib

    from capdsl.evaluation.detail import member_detail as detail
    from capdsl.evaluation.lower import source_text
    from capdsl.data.panel import load_panel, parse_params
    from capdsl.evaluation.periods import parse_period

    contract = _compiled(contract)
    program, source = contract.tree, contract.source
    period = parse_period(run.period)
    reqs = contract.requirements()
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


def run_engine(contract: CompiledContract | t.Program, panel, period, params: dict, engine: str, *,
               spark_master=None, tracer=None, only_practice=None):
    """The contract's `MonthlyResult` on a loaded panel: the interpreter reads the tree, DuckDB
    runs the contract's (cached) query, Spark compiles the tree for the tables it registers."""
    contract = _compiled(contract)
    label = _row_label(panel) if hasattr(panel, "member_label") else None
    if engine == "python":
        from capdsl.evaluation.interpret import evaluate as interpret

        program = contract.tree
        return interpret(program, panel_rows(program, panel), period.months, params, tracer=tracer,
                         only_practice=only_practice)
    if engine == "spark":
        from capdsl import sql

        return sql.evaluate(contract.tree, panel.con, period, params, engine="spark", master=spark_master,
                            member_label=label)
    from capdsl.sql import duckdb_engine

    query = contract.query(period, "duckdb", params=params, options=duckdb_engine.panel_options(panel.con))
    return duckdb_engine.run(query, panel.con, contract.layout.quantum, member_label=label)


def _row_label(panel):
    """The SQL engines name a failing member by its file row (`_row`): label it by its id, as the
    interpreter does (hashed unless --show-ids), not by the row number."""
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
