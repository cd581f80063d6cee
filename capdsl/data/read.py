"""Reading panel files as text tables in DuckDB (`capdsl.data.panel` types and checks them).

Each reader leaves a table `raw_<name>` with `_row` (the row number people
see, see `capdsl.data.panel`) and the file's columns as VARCHAR named c0..cN, so
odd column names never reach SQL. File-level problems (missing, empty, not
UTF-8, corrupt Parquet, malformed CSV or JSON) are collected, not raised.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import duckdb

from capdsl.errors import Diagnostic, UsageError, error, warning

LIMIT = 20  # bad rows reported per problem
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "json"}


def fetch_all(con, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
    """Run one statement and fetch it completely (the connection allows one open result)."""
    return con.execute(sql, list(params or [])).fetchall()


def _lit_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quote_name(name: str) -> str:
    """A SQL identifier for `name`, whatever it holds."""
    return '"' + name.replace('"', '""') + '"'


def _more(code: str, n: int, what: str, path: str, severity: str = "error") -> Diagnostic:
    make = error if severity == "error" else warning
    return make(code, f"… and {n} more {what}", path=path)


# ───────────────────────────── reading ─────────────────────────────

@dataclass(slots=True)
class RawTable:
    """One file read as text: table `raw_<name>` with `_row` and c0..cN, and the header map."""

    table: str
    path: str
    columns: dict[str, str]  # file column name -> c<i>
    rows: int
    # c<i> -> the DuckDB type of a column kept natively typed (Parquet); absent means text
    native: dict[str, str] = field(default_factory=dict)
    view: bool = False  # raw_<name> is a view over the file (Parquet), not a table
    select: str | None = None  # for a view: the SELECT it stands for (a typed view may inline it)
    # CSV: raw_<name> is a view adding `_row` to this table (the file as DuckDB read it), not a copy
    backing: str | None = None

    def drop(self) -> list[str]:
        """The statements removing raw_<name> (and what it reads) once the typed table exists."""
        if self.backing:
            return [f"DROP VIEW IF EXISTS raw_{self.table}", f"DROP TABLE IF EXISTS {self.backing}"]
        return [f"DROP {'VIEW' if self.view else 'TABLE'} IF EXISTS raw_{self.table}"]


class Problems:
    """Collects diagnostics for one load; errors raise together at the end."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    def rows(self, code: str, path: str, found: Sequence[tuple], total: int, what: str,
             describe, severity: str = "error", hint: str | None = None) -> None:
        """One diagnostic per listed row (up to LIMIT), then an "… and N more" line."""
        make = error if severity == "error" else warning
        for i, row in enumerate(found[:LIMIT]):
            self.add(make(code, describe(row), path=path, hint=hint if i == 0 else None))
        if total > LIMIT:
            self.add(_more(code, total - LIMIT, what, path, severity))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if not d.is_error]


def detect_format(path: Path, override: str | None = None) -> str:
    if override:
        fmt = override.lower().lstrip(".")
        fmt = {"ndjson": "jsonl", "pq": "parquet"}.get(fmt, fmt)
        if fmt not in ("csv", "parquet", "jsonl", "json"):
            raise UsageError(error("E0906", f"unknown input format {override!r}",
                                   hint="use csv, parquet, jsonl or json"))
        return fmt
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(error("E0906", f"cannot tell the format of {path} from its extension",
                               path=str(path),
                               hint="name it .csv, .parquet, .jsonl or .json, or pass the format"))
    return fmt


# a Parquet file is read by DuckDB, not by us: only its ends are looked at (the magic bytes)
_PARQUET_ENDS = 4096


# a CSV file is read by DuckDB, which also rejects bytes that are not UTF-8: capdsl reads its head
# (the header) and, only to locate a problem DuckDB found, streams it in chunks of this size
_CSV_CHUNK = 1 << 20


def _check_file(path: Path, probs: Problems, ends_only: bool = False, head_only: bool = False) -> bytes | None:
    """The file's bytes if it exists and is readable and not empty (E0701, E0702); with `ends_only`,
    a large file's first and last `_PARQUET_ENDS` bytes instead of all of them; with `head_only`,
    its first `_CSV_CHUNK` bytes (and, if those are blank, whether anything else is not)."""
    p = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if ends_only and size > 2 * _PARQUET_ENDS:
                data = f.read(_PARQUET_ENDS)
                f.seek(size - _PARQUET_ENDS)
                data += f.read(_PARQUET_ENDS)
            elif head_only:
                data = f.read(_CSV_CHUNK)
                if not data.strip():  # a blank head: the file is blank unless a later chunk is not
                    while chunk := f.read(_CSV_CHUNK):
                        if chunk.strip():
                            data += chunk  # (its first line is still blank: no header, E0702)
                            break
            else:
                data = f.read()
    except FileNotFoundError:
        probs.add(error("E0701", f"no such file: {path}", path=p))
        return None
    except IsADirectoryError:
        probs.add(error("E0701", f"{path} is a directory, not a data file", path=p))
        return None
    except OSError as exc:
        probs.add(error("E0701", f"cannot read {path}: {exc.strerror}", path=p))
        return None
    if not data.strip():
        probs.add(error("E0702", "the file is empty" if not data else "the file holds only blank space",
                        path=p, hint="a CSV file needs a header line naming its columns"))
        return None
    return data


def _check_utf8(data: bytes, path: str, probs: Problems) -> str | None:
    """Decoded text, or E0710 naming the byte offset and line of the first bad byte."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        probs.add(error("E0710", "the file is UTF-16, not UTF-8", path=path,
                        hint="save the file as UTF-8 (CSV UTF-8 in spreadsheet programs)"))
        return None
    try:
        return codecs.decode(data, "utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start
        probs.add(_utf8_error(data[offset], offset, data.count(b"\n", 0, offset) + 1, path))
        return None


def _not_utf8(path: Path, probs: Problems) -> bool:
    """Stream the file (one chunk in memory) and report E0710 at its first byte that is not UTF-8,
    as `_check_utf8` does for a file read whole. False if every byte is UTF-8."""
    base = lines = 0  # file offset of buf[0]; newlines before it
    carry = b""  # the start of a character cut by the chunk's end
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CSV_CHUNK)
            buf = carry + chunk
            if not buf:
                return False
            cut = len(buf) if not chunk else _whole_characters(buf)
            try:
                buf[:cut].decode("utf-8")
            except UnicodeDecodeError as exc:
                probs.add(_utf8_error(buf[exc.start], base + exc.start,
                                      lines + buf.count(b"\n", 0, exc.start) + 1, str(path)))
                return True
            if not chunk:
                return False
            lines += buf.count(b"\n", 0, cut)
            base += cut
            carry = buf[cut:]


def _whole_characters(buf: bytes) -> int:
    """Where the last complete UTF-8 character of `buf` ends (a longer sequence may be cut)."""
    for back in range(1, min(4, len(buf)) + 1):
        byte = buf[-back]
        if byte < 0x80:
            return len(buf)
        if byte >= 0xC0:  # a lead byte: how long its sequence is
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(buf) - back if need > back else len(buf)
    return len(buf)  # continuation bytes only: the decoder judges them


def _utf8_error(byte: int, offset: int, line: int, path: str) -> Diagnostic:
    return error("E0710", f"the file is not valid UTF-8: byte 0x{byte:02x} at offset {offset} (line {line})",
                 path=path, hint="save the file as UTF-8 (CSV UTF-8 in spreadsheet programs)")


def _header_map(names: list[str], path: str, probs: Problems) -> dict[str, str] | None:
    cols: dict[str, str] = {}
    for i, name in enumerate(names):
        name = name.strip() or f"(unnamed column {i + 1})"  # trailing commas are common
        if name in cols:
            probs.add(error("E0703", f"column {name!r} appears twice in the header", path=path))
            return None
        cols[name] = f"c{i}"
    return cols


def _read_csv(con, name: str, path: Path, head: bytes, probs: Problems) -> RawTable | None:
    """The file as text columns, read by DuckDB (in parallel, never whole into Python): `head` is
    its first bytes, for the header; bytes that are not UTF-8 are located only if DuckDB finds some."""
    p = str(path)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        _check_utf8(head, p, probs)  # E0710: UTF-16
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head)  # a character cut at the end waits
    except UnicodeDecodeError as exc:
        probs.add(_utf8_error(head[exc.start], exc.start, head.count(b"\n", 0, exc.start) + 1, p))
        return None
    try:
        first = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        probs.add(error("E0716", f"malformed CSV header: {exc}", path=p))
        return None
    if not first or all(not c.strip() for c in first):
        probs.add(error("E0702", "the first line is empty: there is no header naming the columns",
                        path=p))
        return None
    cols = _header_map(first, p, probs)
    if cols is None:
        return None
    spec = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in cols.values()) + "}"
    try:
        fetch_all(con, f"CREATE TABLE _src_{name} AS SELECT * FROM read_csv(?, header=true, "
                    f"auto_detect=false, columns={spec}, delim=',', quote='\"', escape='\"')", [p])
    except duckdb.Error as exc:
        msg = str(exc)
        if "unicode" in msg.lower() and _not_utf8(path, probs):
            return None
        line = re.search(r"Line: (\d+)", msg)
        counts = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", msg)
        where = f"line {line.group(1)}" if line else "a line"
        if counts:
            what = f"{where} has {counts.group(2)} fields but the header has {counts.group(1)}"
        else:
            what = f"{where} is not valid CSV ({msg.splitlines()[0][:120]})"
        probs.add(error("E0716", f"malformed CSV: {what}", path=p,
                        hint="every row needs as many comma-separated fields as the header; "
                             "quote values that contain commas or line breaks with \"…\""))
        return None
    # a view, not a copy (a large file would be copied once more for nothing): rowid is the order
    # DuckDB read the records in, the file's; row 1 is the header
    fetch_all(con, f"CREATE VIEW raw_{name} AS SELECT CAST(rowid + 2 AS BIGINT) AS _row, * FROM _src_{name}")
    return RawTable(name, p, cols, fetch_all(con, f"SELECT count(*) FROM _src_{name}")[0][0], backing=f"_src_{name}")


PARQUET_UNREADABLE = "the Parquet file is truncated or corrupt (it cannot be read)"
PARQUET_HINT = "write the file again; a copy may have been cut short"


def unreadable_parquet(path: str):
    return error("E0711", PARQUET_UNREADABLE, path=path, hint=PARQUET_HINT)


def _read_parquet(con, name: str, path: Path, data: bytes, probs: Problems) -> RawTable | None:
    """Raw columns as a view over the file: the checks and the typed table read it
    straight from Parquet, so the file is never materialised as text."""
    p = str(path)
    if len(data) < 12 or data[:4] != b"PAR1" or data[-4:] != b"PAR1":
        probs.add(unreadable_parquet(p))
        return None
    try:
        desc = fetch_all(con, "DESCRIBE SELECT * FROM read_parquet(?)", [p])
    except duckdb.Error:
        probs.add(unreadable_parquet(p))
        return None
    cols = _header_map([d[0] for d in desc], p, probs)
    if cols is None:
        return None
    parts = []
    native = {}
    for (col, typ, *_), c in zip(desc, cols.values()):
        src = quote_name(col)
        if typ.upper().startswith("TIMESTAMP") and "TIME ZONE" not in typ.upper():
            parts.append(f"CASE WHEN CAST({src} AS TIME) = TIME '00:00:00' THEN CAST(CAST({src} AS DATE) "
                         f"AS VARCHAR) ELSE CAST({src} AS VARCHAR) END AS {c}")
        elif native_kind(typ) is not None:  # typed by the file: checked and cast without a text round trip
            parts.append(f"{src} AS {c}")
            native[c] = typ.upper()
        else:
            parts.append(f"CAST({src} AS VARCHAR) AS {c}")
    # file_row_number is the record's position (row 1 = first record)
    select = (f"SELECT CAST(file_row_number + 1 AS BIGINT) AS _row, {', '.join(parts) or 'NULL AS _none'} "
              f"FROM read_parquet({_lit_str(p)}, file_row_number = true)")
    try:
        fetch_all(con, f"CREATE VIEW raw_{name} AS {select}")
    except duckdb.Error:
        probs.add(unreadable_parquet(p))
        return None
    return RawTable(name, p, cols, fetch_all(con, f"SELECT count(*) FROM raw_{name}")[0][0], native, view=True, select=select)


_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT"}


def native_kind(typ: str) -> str | None:
    """The panel kind a Parquet column type holds exactly (no floats: DOUBLE goes through text)."""
    t = typ.upper()
    if t == "DATE":
        return "date"
    if t == "BOOLEAN":
        return "bool"
    if t == "VARCHAR":
        return "text"
    if t in _INTEGER_TYPES:
        return "integer"
    m = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", t)
    if m and int(m.group(2)) <= 10:
        return "decimal"
    return None


def _json_text(value: Any) -> str | None:
    """A JSON value as the text capdsl parses (numbers keep their written digits)."""
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _read_json(con, name: str, path: Path, data: bytes, fmt: str, probs: Problems) -> RawTable | None:
    """JSON Lines (or a JSON array) parsed in Python so numbers keep every digit (no floats).

    The lines are parsed in one call (fast); only if that fails is each line
    parsed alone, to name every malformed line.
    """
    import itertools

    import pyarrow as pa

    p = str(path)
    text = _check_utf8(data, p, probs)
    if text is None:
        return None
    load = lambda s: json.loads(s, parse_float=str, parse_constant=str)  # noqa: E731
    bad: list[tuple[int, str]] = []
    if fmt == "json" and text.lstrip().startswith("["):
        try:
            records = load(text)
            numbers = list(range(1, len(records) + 1)) if isinstance(records, list) else []
        except json.JSONDecodeError as exc:
            records, numbers = [], []
            bad.append((exc.lineno, exc.msg))
    else:
        numbered = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
        numbers = [n for n, _ in numbered]
        try:
            records = load("[" + ",".join(line for _, line in numbered) + "]")
            if len(records) != len(numbered):  # broken lines that happen to join into valid JSON
                raise json.JSONDecodeError("not one JSON object per line", "", 0)
        except json.JSONDecodeError:
            records = []
            for n, line in numbered:
                try:
                    value = load(line)
                except json.JSONDecodeError as exc:
                    bad.append((n, exc.msg))
                    continue
                if not isinstance(value, dict):  # report it with the malformed lines, not on the next run
                    bad.append((n, "not a JSON object"))
            if not bad:  # a line is valid alone but not inside the array (e.g. a stray comma)
                bad.append((numbered[0][0], "not one JSON object per line"))
    bad += [(n, "not a JSON object") for n, r in zip(numbers, records) if not isinstance(r, dict)]
    if bad:
        bad.sort()
        probs.rows("E0716", p, bad, len(bad), "malformed lines",
                   lambda b: f"malformed JSON on line {b[0]}: {b[1]}",
                   hint="each line must be one JSON object, e.g. {\"member_id\": \"M1\", ...}")
        return None
    cols: dict[str, str] = {}
    keys: dict[str, list[str]] = {}
    for key in dict.fromkeys(itertools.chain.from_iterable(records)):
        keys.setdefault(key.strip(), []).append(key)
    arrays = {"_row": pa.array(numbers, pa.int64())}
    for i, (clean, originals) in enumerate(keys.items()):
        cols[clean] = f"c{i}"
        values = [r.get(originals[0]) for r in records]
        for other in originals[1:]:
            values = [v if v is not None else r.get(other) for v, r in zip(values, records)]
        if set(map(type, values)) - {str, type(None)}:
            values = [_json_text(v) for v in values]
        arrays[f"c{i}"] = pa.array(values, pa.string())
    con.register(f"_src_{name}", pa.table(arrays))
    fetch_all(con, f"CREATE TABLE raw_{name} AS SELECT * FROM _src_{name}")
    con.unregister(f"_src_{name}")
    return RawTable(name, p, cols, len(records))


def read_table(con, name: str, path: Path, fmt: str, probs: Problems) -> RawTable | None:
    """The file as table `raw_<name>` (see the module's docstring), or None with its problem in `probs`."""
    data = _check_file(path, probs, ends_only=fmt == "parquet", head_only=fmt == "csv")
    if data is None:
        return None
    if fmt == "csv":
        return _read_csv(con, name, path, data, probs)
    if fmt == "parquet":
        return _read_parquet(con, name, path, data, probs)
    return _read_json(con, name, path, data, fmt, probs)
