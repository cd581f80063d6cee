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


def evaluate(contract: CompiledContract | t.Program, run: Run, *, by_month: bool = False,
             practices: tuple[str, ...] = ()):
    """Load the panel, evaluate with the chosen engine, build statements (with each month's when
    `by_month`; only `practices`' when given, an unknown id being a UsageError). The evaluation tree
    is read only if the engine needs it (not for a query found in the cache) or a line's `and`
    condition failed somewhere (to name the part that failed)."""
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
    warnings = [warning_text(w) for w in panel.warnings]
    if practices:
        monthly = only_practices(monthly, practices)
    empty = nobody_enrolled(panel, period)
    if empty is not None:
        warnings.append(warning_text(empty))
    failed = failed_conditions(contract, panel, monthly, period, params)
    return build(contract.layout, monthly, period.text, period.months, run.engine, warnings, by_month=by_month,
                 failed=failed), panel


def only_practices(monthly, wanted: tuple[str, ...]):
    """The monthly result of the `wanted` practices only (in the panel's order); an id the panel does
    not have is a UsageError naming the closest ids."""
    import difflib

    from capdsl.errors import UsageError, error
    from capdsl.evaluation.amounts import MonthlyResult

    known = set(monthly.practices)
    for pid in wanted:
        if pid not in known:
            close = difflib.get_close_matches(pid, sorted(known), n=3, cutoff=0.5)
            hint = ("did you mean " + ", ".join(close) + "?") if close else \
                f"the panel has {len(known)} practices" + (f", e.g. {', '.join(sorted(known)[:3])}" if known else "")
            raise UsageError(error("E0908", f"--practice {pid}: no such practice in the panel", hint=hint))
    keep = set(wanted)
    return MonthlyResult(rows=[r for r in monthly.rows if r[0] in keep],
                         pools=[r for r in monthly.pools if r[0] in keep],
                         installments=[r for r in monthly.installments if r[0] in keep],
                         practices=[p for p in monthly.practices if p in keep])


def nobody_enrolled(panel, period) -> Diagnostic | None:
    """W0960 when no member of the panel can count in any month of the period (none is enrolled in it,
    or born by its end): the statements would all be 0 for want of members, not by the contract."""
    from capdsl.errors import warning
    from capdsl.evaluation.periods import month_end

    con = getattr(panel, "con", None)
    kinds = getattr(panel, "kinds", {}).get("members")
    if con is None or kinds is None:
        return None
    start, end = period.months[0], month_end(period.months[-1])
    where = []
    if "enrolled_from" in kinds:
        where.append("(enrolled_from IS NULL OR enrolled_from <= $end)")
    if "enrolled_to" in kinds:
        where.append("(enrolled_to IS NULL OR enrolled_to >= $start)")
    if "birth_date" in kinds:
        where.append("(birth_date IS NULL OR birth_date <= $end)")
    clause = " AND ".join(where) or "TRUE"
    total, counted = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {clause}) FROM members",
                                 {"start": start, "end": end} if where else {}).fetchall()[0]
    if counted:
        return None
    if not total:
        return warning("W0960", f"the members table has no rows: every statement for {period.text} is 0")
    span = ""
    if "enrolled_from" in kinds and "enrolled_to" in kinds:
        low, high = con.execute("SELECT min(enrolled_from), max(enrolled_to) FROM members").fetchall()[0]
        if low is not None or high is not None:
            span = f" (enrolments run from {low or 'the start'} to {high or 'now'})"
    return warning("W0960", f"none of the {total} members is enrolled in {period.text}{span}: every "
                            f"statement is 0 for want of members",
                   hint="check --period and the enrolled_from / enrolled_to columns")


def failed_conditions(contract: CompiledContract, panel, monthly, period, params: dict) -> dict:
    """For the "not applied" notes: which parts of a line's `a and b` condition were false, per
    (practice, month, line), from the interpreter (`interpret.failed_parts`) on the practices'
    attributes and measures. Empty, and the tree not read, when no such line failed."""
    names = {line.name for line in contract.layout.lines if line.applies_text and " and " in line.applies_text}
    if not names or not hasattr(panel, "practice_rows"):
        return {}
    wanted = [(pid, month, name) for pid, month, name, _amount, applied, _basis in monthly.rows
              if not applied and name in names]
    wanted += [(pid, None, name) for pid, name, _year, _amount, applied in monthly.pools
               if not applied and name in names]
    if not wanted:
        return {}
    from capdsl.evaluation.interpret import Rows, failed_parts

    program = contract.tree
    practice_cols = ["practice_id"] + [c.name for c in program.columns
                                       if c.table == "practice" and c.name != "practice_id"]
    practices = [dict(zip(practice_cols, row)) for row in panel.practice_rows(practice_cols)]
    rows = Rows(practices, [], [], list(panel.measure_rows()))
    return failed_parts(program, rows, period.months, params, wanted)


def member_detail(contract: CompiledContract | t.Program, run: Run, *, redact: bool = False):
    """Member-month detail from the reference interpreter (see capdsl/evaluation/detail.py)."""
    import hashlib

    from capdsl.evaluation.detail import member_detail as detail
    from capdsl.evaluation.lower import source_text

    contract = _compiled(contract)
    program, source = contract.tree, contract.source
    period, params, rows, warnings = interpreter_inputs(program, run, contract.requirements())

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


def interpreter_inputs(program: t.Program, run: Run, reqs=None):
    """What the interpreter's tools (explain, member detail) read: the period, the typed parameters,
    the panel as rows and its warnings; the panel is closed once read."""
    from capdsl.data.panel import load_panel, parse_params
    from capdsl.evaluation.periods import parse_period

    period = parse_period(run.period)
    reqs = reqs if reqs is not None else requirements(program)
    params = parse_params(list(run.assignments), run.params_file, reqs)
    panel = load_panel(run.files, reqs, formats=run.formats, today=run.today, show_ids=run.show_ids,
                       period=period)
    try:
        return period, params, panel_rows(program, panel), [warning_text(w) for w in panel.warnings]
    finally:
        panel.close()


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


def warning_text(diag: Diagnostic) -> str:
    where = f"{diag.path}: " if diag.path else ""
    return f"{where}warning[{diag.code}]: {diag.message}"
