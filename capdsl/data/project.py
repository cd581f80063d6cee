"""The project file: `capdsl.toml` (or `[tool.capdsl]` in `pyproject.toml`) in the current folder.

It names the panel files (or a folder of conventionally named ones), how they
are written (separator, decimal commas, date format), column mappings, the
contract's parameters and the default period, so that a payer's monthly
commands need not repeat them. The command line overrides every entry. Paths
are relative to the folder the file is in. The file is checked with pydantic;
a problem is a UsageError naming the file, the key and what is expected
(E0950 not TOML, E0951 a key or value that is not allowed).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from capdsl.errors import UsageError, error

PROJECT_FILE = "capdsl.toml"
TABLES = ("members", "practices", "events", "measures")
# the extensions a conventionally named panel file may have, in the order they are looked for
PANEL_EXTENSIONS = (".csv", ".parquet", ".pq", ".xlsx", ".jsonl", ".ndjson", ".json", ".834")

_EXAMPLE = """\
period = "2011-Q2"

[panel]
dir = "data"                  # members.csv, practices.xlsx ... in this folder
# members = "data/members.xlsx#Pojištěnci"
delimiter = ";"
decimal_comma = true
date_format = "%d.%m.%Y"

[columns.members]
birth_date = "dob"

[params]
national_average_drug_cost = "250 CZK per member"
"""


@dataclass(frozen=True)
class Project:
    """A project file, read and checked; paths resolved against its folder."""

    path: Path
    period: str | None = None
    files: dict[str, Path] = field(default_factory=dict)  # table -> file (`[panel]` and `dir`)
    input_format: str | None = None
    delimiter: str | None = None
    decimal_comma: bool | None = None
    date_format: str | None = None
    columns: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # table -> (panel, file)
    params: dict[str, str] = field(default_factory=dict)  # name -> value as --set takes it
    params_file: Path | None = None


def _models():
    """The pydantic models (imported only when a project file is read)."""
    from typing import Literal

    from pydantic import BaseModel, ConfigDict

    class Panel(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        dir: str | None = None
        members: str | None = None
        practices: str | None = None
        events: str | None = None
        measures: str | None = None
        format: Literal["csv", "parquet", "jsonl", "json", "xlsx"] | None = None
        delimiter: str | None = None
        decimal_comma: bool | None = None
        date_format: str | None = None

    class Columns(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        members: dict[str, str] = {}
        practices: dict[str, str] = {}
        events: dict[str, str] = {}
        measures: dict[str, str] = {}

    class File(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)
        period: str | None = None
        panel: Panel = Panel()
        columns: Columns = Columns()
        params: dict[str, str | bool | int | Decimal | date | datetime] = {}
        params_file: str | None = None

    return File


def find_project(folder: Path | None = None) -> Path | None:
    """`capdsl.toml` in the folder (default: the current one), else its `pyproject.toml` if that has a
    `[tool.capdsl]` table; None when there is neither."""
    folder = folder or Path.cwd()
    own = folder / PROJECT_FILE
    if own.is_file():
        return own
    py = folder / "pyproject.toml"
    if py.is_file():
        try:
            text = py.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if "[tool.capdsl" in text:
            return py
    return None


def load_project(path: str | Path) -> Project:
    """Read and check a project file (a pyproject.toml: its `[tool.capdsl]` table)."""
    from pydantic import ValidationError

    path = Path(path)
    p = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(error("E0950", f"no such project file: {path}", path=p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = "it is not UTF-8" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        raise UsageError(error("E0950", f"cannot read the project file: {reason}", path=p)) from None
    try:
        data = tomllib.loads(text, parse_float=Decimal)  # 250.10 keeps its digits
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(error("E0950", f"the project file is not valid TOML: {exc}", path=p,
                               hint="e.g.\n" + _EXAMPLE)) from None
    prefix = ""
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("capdsl", {})
        prefix = "tool.capdsl."
        if not isinstance(data, dict):
            raise UsageError(error("E0951", "[tool.capdsl] must be a table", path=p))
    try:
        model = _models().model_validate(data)
    except ValidationError as exc:
        raise UsageError(_problems(exc.errors(), prefix, p)) from None
    return _resolve(model, path, prefix)


_UNION_PARTS = {"str", "bool", "int", "decimal", "date", "datetime"}


def _problems(errors: list[dict], prefix: str, path: str) -> list:
    """One E0951 per key pydantic refused (a parameter value tried as each allowed type is one key)."""
    out, seen = [], set()
    for e in errors:
        keys = [str(x) for x in e["loc"]]
        union = e["loc"][:1] == ("params",) and len(keys) == 3 and keys[2] in _UNION_PARTS
        if union:
            keys = keys[:2]
        key = prefix + ".".join(keys) if keys else prefix.rstrip(".") or "(top level)"
        if key in seen:
            continue
        seen.add(key)
        if e["type"] == "extra_forbidden":
            section = ".".join(keys[:-1])
            known = {"": "period, panel, columns, params, params_file",
                     "panel": "dir, members, practices, events, measures, format, delimiter, decimal_comma, "
                              "date_format",
                     "columns": "members, practices, events, measures"}.get(section)
            out.append(error("E0951", f"unknown key {key!r} in the project file", path=path,
                             hint=f"the keys allowed here are: {known}" if known else None))
            continue
        msg = "a parameter is a string, number, boolean or date" if union else e["msg"]
        out.append(error("E0951", f"{key}: {msg[0].lower() + msg[1:]} (got {e.get('input')!r})", path=path,
                         hint=_HINTS.get(keys[0] if keys else "", "see docs/inputs.md, the project file")))
    return out


_HINTS = {
    "period": 'period = "2011-Q2" (a month 2011-03, a quarter 2011-Q2 or a year 2011, in quotes)',
    "panel": 'file names are strings: members = "data/members.csv"; decimal_comma = true',
    "columns": 'map the panel\'s column to the file\'s: [columns.members] birth_date = "dob"',
    "params": 'a value as --set takes it: national_average_drug_cost = "250 CZK per member"',
    "params_file": 'params_file = "params.json"',
}


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    return str(value)


def _resolve(model, path: Path, prefix: str) -> Project:
    folder = path.parent
    panel = model.panel
    files: dict[str, Path] = {}
    if panel.dir is not None:
        files.update(panel_folder(folder / panel.dir, f"{prefix}panel.dir in {path}"))
    for table in TABLES:
        given = getattr(panel, table)
        if given is not None:
            files[table] = folder / given
    columns = {t: tuple(getattr(model.columns, t).items()) for t in TABLES if getattr(model.columns, t)}
    return Project(path=path, period=model.period, files=files, input_format=panel.format,
                   delimiter=panel.delimiter, decimal_comma=panel.decimal_comma, date_format=panel.date_format,
                   columns=columns, params={k: _param_text(v) for k, v in model.params.items()},
                   params_file=folder / model.params_file if model.params_file else None)


def panel_folder(folder: Path, where: str = "--panel") -> dict[str, Path]:
    """The conventionally named panel files in a folder: `members.csv` (or .parquet, .xlsx, .jsonl …),
    `practices.*`, `events.*`, `measures.*`. Members is required; two files for one table (members.csv
    and members.xlsx) are refused, as capdsl cannot tell which is meant."""
    if not folder.is_dir():
        raise UsageError(error("E0701", f"{where}: {folder} is not a folder",
                               hint="name a folder holding members.csv (and practices.csv, events.csv, "
                                    "measures.csv as the contract needs)"))
    found: dict[str, Path] = {}
    for table in TABLES:
        matches = [folder / f"{table}{ext}" for ext in PANEL_EXTENSIONS if (folder / f"{table}{ext}").is_file()]
        if len(matches) > 1:
            raise UsageError(error("E0952", f"{where}: the folder {folder} has {len(matches)} {table} files: "
                                            + ", ".join(m.name for m in matches),
                                   hint=f"keep one, or name the file with --{table}"))
        if matches:
            found[table] = matches[0]
    if "members" not in found:
        raise UsageError(error("E0701", f"{where}: the folder {folder} has no members file",
                               hint="name it members.csv (or .parquet, .xlsx, .jsonl, .json, an X12 .834), or pass --members"))
    return found
