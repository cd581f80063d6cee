"""The Python API: what a notebook or a payer's own pipeline needs, and nothing deeper.

    import capdsl
    contract = capdsl.load("contracts/cz_vzp_2011_adult.cap")       # parsed and checked
    result = contract.evaluate("2011-03", members="members.csv", practices="practices.csv")
    result.total, result.to_arrow(), result.to_json()

A panel table is a file path, a `pyarrow.Table`, a DuckDB relation, or any data frame that
exports the Arrow C stream interface (`__arrow_c_stream__`: polars, pandas ≥ 2.2). In-memory
tables go through the same loader as files (written once to Parquet in a private temporary
folder), so every check, warning and row number is the one the command line reports. Errors
raise `capdsl.CapError` subclasses carrying the same diagnostics the CLI prints.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from capdsl import pipeline
from capdsl.errors import CapError, Diagnostic, UsageError, error

TABLES = ("members", "practices", "events", "measures")


@dataclass
class Statements:
    """The statements of one evaluation: per practice, per line, exact `Decimal` amounts."""

    result: Any  # capdsl.evaluation.statements.Result
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return self.result.total

    @property
    def currency(self) -> str:
        return self.result.currency

    @property
    def statements(self) -> list:
        return self.result.statements

    def practice(self, practice_id: str):
        """The statement of one practice (KeyError if it has none)."""
        for st in self.result.statements:
            if st.practice_id == practice_id:
                return st
        raise KeyError(practice_id)

    def to_arrow(self):
        """One row per practice × line and a total row per practice: the columns of
        `capdsl eval --format csv`, amounts as DECIMAL128 (never floats)."""
        from capdsl.tools.render import to_arrow

        return to_arrow(self.result)

    def to_pandas(self):
        return self.to_arrow().to_pandas()

    def to_polars(self):
        import polars

        return polars.from_arrow(self.to_arrow())

    def to_json(self) -> str:
        from capdsl.tools.render import to_json

        return to_json(self.result)


class Contract:
    """A parsed, checked and compiled contract."""

    def __init__(self, compiled: pipeline.CompiledContract, warnings: list[Diagnostic]):
        self._compiled = compiled
        self.warnings = warnings

    @property
    def name(self) -> str:
        return self._compiled.layout.name

    @property
    def currency(self) -> str:
        return self._compiled.layout.currency

    @property
    def lines(self) -> list[str]:
        """The ids of the statement lines, in contract order."""
        return [line.name for line in self._compiled.layout.lines]

    def evaluate(self, period: str, members, practices=None, events=None, measures=None, *,
                 params: Mapping[str, Any] | None = None, engine: str = "duckdb",
                 show_ids: bool = False) -> Statements:
        """Statements for `period` ("2011-03", "2011-Q2", "2011") on the given panel."""
        tables = {"members": members, "practices": practices, "events": events, "measures": measures}
        inputs = _panel_files(tables)
        with inputs as files:
            run = pipeline.Run(files=files, period=period, assignments=_assignments(params), engine=_engine(engine),
                               show_ids=show_ids)
            result, panel = pipeline.evaluate(self._compiled, run)
            panel.close()
            result.warnings = [inputs.named(w) for w in result.warnings]
        return Statements(result, list(result.warnings))

    def explain(self, period: str, practice: str, members, practices=None, events=None, measures=None, *,
                line: str | None = None, member: str | None = None, params: Mapping[str, Any] | None = None,
                show_ids: bool = False) -> dict:
        """The audit trail of one practice's amounts (the structure `capdsl explain --format json`
        prints): each line's rule, the months, the values read and every step."""
        from capdsl.tools.explain import explain

        tables = {"members": members, "practices": practices, "events": events, "measures": measures}
        with _panel_files(tables) as files:
            run = pipeline.Run(files=files, period=period, assignments=_assignments(params), engine="python",
                               show_ids=show_ids)
            return explain(self._compiled.tree, self._compiled.source, run, practice, line_id=line,
                           member_id=member, redact=not show_ids)

    def diff(self, new: Contract, period: str, members, practices=None, events=None, measures=None, *,
             params: Mapping[str, Any] | None = None, engine: str = "duckdb", rate: Decimal | None = None):
        """The impact of replacing this contract by `new` on the panel (`capdsl diff`'s model)."""
        from capdsl.tools.impact import diff

        tables = {"members": members, "practices": practices, "events": events, "measures": measures}
        with _panel_files(tables) as files:
            run = pipeline.Run(files=files, period=period, assignments=_assignments(params), engine=_engine(engine))
            return diff(self._compiled.tree, new._compiled.tree, run, rate=rate)


def load(path: str | Path) -> Contract:
    """Parse, check and compile a `.cap` file (raises `CheckError` with every diagnostic)."""
    compiled = pipeline.compiled_file(path)
    return Contract(compiled, list(compiled.warnings))


def check(path: str | Path) -> list[Diagnostic]:
    """The diagnostics of a `.cap` file: [] or its warnings when it checks; raises `CheckError`
    (its `.diagnostics`) when it does not."""
    return load(path).warnings


def evaluate(contract: str | Path | Contract, period: str, members, practices=None, events=None, measures=None,
             **options) -> Statements:
    """`load(contract).evaluate(...)` in one call."""
    if not isinstance(contract, Contract):
        contract = load(contract)
    return contract.evaluate(period, members, practices, events, measures, **options)


# ───────────────────────────── inputs ─────────────────────────────

def _engine(engine: str) -> str:
    if engine not in ("duckdb", "python", "spark"):
        raise UsageError(error("E0924", f"unknown engine '{engine}'", hint="use duckdb, python or spark"))
    return engine


def _assignments(params: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Parameters as `--set name=value` assignments, so they are typed and checked as the CLI's are."""
    out = []
    for name, value in (params or {}).items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.append(f"{name}={text}")
    return tuple(out)


class _panel_files:
    """Panel tables as file paths: paths pass through, in-memory tables are written to Parquet
    in a private temporary folder removed on exit."""

    def __init__(self, tables: dict[str, Any]):
        self.tables = tables
        self.folder: str | None = None
        self.names: dict[str, str] = {}  # temporary path -> how messages name the table

    def __enter__(self) -> dict[str, str]:
        files = {}
        for name, table in self.tables.items():
            if table is None:
                continue
            if isinstance(table, (str, Path)):
                files[name] = str(table)
                continue
            if self.folder is None:
                self.folder = tempfile.mkdtemp(prefix="capdsl-panel-")
            files[name] = _write_parquet(name, table, Path(self.folder))
            self.names[files[name]] = f"<{name} table>"
        return files

    def named(self, text: str) -> str:
        for path, label in self.names.items():
            text = text.replace(path, label)
        return text

    def __exit__(self, kind, exc, tb) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        if isinstance(exc, CapError) and self.names:
            exc.diagnostics = [replace(d, message=self.named(d.message), path=d.path and self.named(d.path),
                                       hint=d.hint and self.named(d.hint)) for d in exc.diagnostics]


def _write_parquet(name: str, table: Any, folder: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if hasattr(table, "arrow") and type(table).__module__.startswith("duckdb"):
        table = table.arrow()  # a DuckDB relation
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
    try:
        arrow = table if isinstance(table, pa.Table) else pa.table(table)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise UsageError(error("E0940", f"the {name} table is a {type(table).__name__}, which capdsl cannot read",
                               hint="pass a file path, a pyarrow.Table, a DuckDB relation or a data frame "
                                    f"with the Arrow C stream interface ({exc})")) from None
    path = folder / f"{name}.parquet"
    pq.write_table(arrow, path)
    return str(path)


__all__ = ["CapError", "Contract", "Statements", "check", "evaluate", "load"]
