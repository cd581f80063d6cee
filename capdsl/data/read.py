"""Reading panel files as text tables in DuckDB (`capdsl.data.panel` types and checks them).

Each reader leaves a table `raw_<name>` with `_row` (the row number people
see, see `capdsl.data.panel`) and the file's columns as VARCHAR named c0..cN, so
odd column names never reach SQL. File-level problems (missing, empty, not
UTF-8, corrupt Parquet or workbook, malformed CSV or JSON) are collected, not raised.

CSV files may be `;`- (or tab-, `|`-) separated: given by `ReadOptions.delimiter`,
or detected from the header and first records and reported (W0720), never
assumed silently. A spreadsheet (.xlsx) is read with python-calamine; its typed
cells become the text capdsl parses (a date cell `2011-03-01`, a number cell its
decimal digits at the spreadsheet's 15-digit precision).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

import duckdb

from capdsl.errors import Diagnostic, UsageError, error, warning

LIMIT = 20  # bad rows reported per problem
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "json", ".xlsx": "xlsx", ".xlsm": "xlsx", ".834": "x12-834"}
INPUT_FORMATS = ("csv", "parquet", "jsonl", "json", "xlsx")
# separators a CSV file is checked for when none is given, in this order (a comma first)
DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How one panel file is written, beyond what its extension says (the CLI's reading options and
    the project file's). None means: the default, or detected and reported."""

    format: str | None = None  # csv, parquet, jsonl, json, xlsx (default: the extension)
    sheet: str | None = None  # xlsx: the sheet (default: the workbook's first)
    delimiter: str | None = None  # CSV: the field separator (default: detected)
    decimal_comma: bool | None = None  # CSV and xlsx text: numbers written 1234,5 (default: detected)
    date_format: str | None = None  # dates in this strptime format are accepted besides YYYY-MM-DD
    columns: tuple[tuple[str, str], ...] = ()  # (the panel's column name, the file's column name)


def delimiter_name(delim: str) -> str:
    return _DELIMITER_NAMES.get(delim, repr(delim))


def redact_id(value: Any, show_ids: bool = False) -> str:
    """`id:3f9a2c` (SHA-256 prefix) or, with show_ids, the id itself in quotes."""
    if value is None:
        return "(no id)"
    text = str(value)
    if show_ids:
        return repr(text)
    return "id:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


def plural(n: int, word: str) -> str:
    """"1 row", "3 rows"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def split_sheet(path: str | Path) -> tuple[Path, str | None]:
    """`book.xlsx#Sheet` as (book.xlsx, Sheet); any other path as (path, None). A file whose
    name really holds `#` is taken whole."""
    text = str(path)
    base, sep, sheet = text.rpartition("#")
    if sep and sheet and Path(base).suffix.lower() in (".xlsx", ".xlsm") and not Path(text).exists():
        return Path(base), sheet
    return Path(text), None


def fetch_all(con, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
    """Run one statement and fetch it completely (the connection allows one open result)."""
    return con.execute(sql, list(params or [])).fetchall()


def store_raw(con, name: str, arrays: dict) -> None:
    """Columns read in Python (`_row`, c0…cN as Arrow arrays) as the table `raw_<name>`, handed to
    DuckDB in one Arrow table (a row at a time is slow)."""
    import pyarrow as pa

    con.register(f"_src_{name}", pa.table(arrays))
    fetch_all(con, f"CREATE TABLE raw_{name} AS SELECT * FROM _src_{name}")
    con.unregister(f"_src_{name}")


def sql_string(text: str) -> str:
    """`text` as a SQL string literal."""
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
    fmt: str = "csv"  # the format it was read as
    delimiter: str = ","  # CSV: the separator used
    delimiter_detected: bool = False  # CSV: the separator was detected, not given
    # the panel's column name -> the file's, for columns a mapping renamed (messages name both)
    renamed: dict[str, str] = field(default_factory=dict)
    # xlsx: c<i> -> [(row, value)] of number cells with more digits than a spreadsheet keeps
    imprecise: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # xlsx: c<i> -> [(row, error)] of error cells (#N/A …), which read as empty
    error_cells: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

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
        if fmt not in INPUT_FORMATS:
            raise UsageError(error("E0906", f"unknown input format {override!r}",
                                   hint="use csv, parquet, jsonl, json or xlsx"))
        return fmt
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(error("E0906", f"cannot tell the format of {path} from its extension",
                               path=str(path),
                               hint="name it .csv, .parquet, .jsonl, .json or .xlsx, or pass the format "
                                    "(--input-format)"))
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


def detect_delimiter(text: str) -> str:
    """The separator of a CSV file's head: the first of `DELIMITERS` that splits the header into
    more than one field and every complete record of the head (up to 20) into as many; a comma
    when none does (the file's own errors then say what is wrong)."""
    lines = text.split("\n")
    sample = "\n".join(lines[:-1] if len(lines) > 1 else lines)  # the last line may be cut
    for delim in DELIMITERS:
        try:
            records = [r for r in itertools.islice(csv.reader(io.StringIO(sample, newline=""), delimiter=delim), 21)
                       if r]
        except csv.Error:
            continue
        if records and len(records[0]) > 1 and all(len(r) == len(records[0]) for r in records[1:]):
            return delim
    return ","


def _read_csv(con, name: str, path: Path, head: bytes, probs: Problems,
              options: ReadOptions = ReadOptions()) -> RawTable | None:
    """The file as text columns, read by DuckDB (in parallel, never whole into Python): `head` is
    its first bytes, for the header; bytes that are not UTF-8 are located only if DuckDB finds some.
    The separator is `options.delimiter`, else detected (and reported, W0720)."""
    p = str(path)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        _check_utf8(head, p, probs)  # E0710: UTF-16
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head)  # a character cut at the end waits
    except UnicodeDecodeError as exc:
        probs.add(_utf8_error(head[exc.start], exc.start, head.count(b"\n", 0, exc.start) + 1, p))
        return None
    delim = options.delimiter
    detected = delim is None
    if detected:
        delim = detect_delimiter(text)
        if delim != ",":
            probs.add(warning("W0720", f"the file is read as {delimiter_name(delim)}-separated (detected from "
                                       f"its header and first rows; --delimiter {_shell_quote(delim)} says so)",
                              path=p,
                              hint=f"pass --delimiter {_shell_quote(delim)} (or delimiter = {json.dumps(delim)} "
                                   f"in capdsl.toml) to say so"))
    try:
        first = next(csv.reader(io.StringIO(text, newline=""), delimiter=delim), [])
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
                    f"auto_detect=false, columns={spec}, delim={sql_string(delim)}, quote='\"', escape='\"')", [p])
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
        named = delimiter_name(delim)
        hint = (f"every row needs as many {named}-separated fields as the header; quote values that contain "
                f"{'commas' if delim == ',' else named} or line breaks with \"…\"")
        if delim == "," and ";" in text.split("\n", 1)[0]:
            hint = ("the header holds ';': if the file is ';'-separated (a Central European export, perhaps with "
                    "decimal commas), pass --delimiter ';'")
        probs.add(error("E0716", f"malformed CSV: {what}", path=p, hint=hint))
        return None
    # a view, not a copy (a large file would be copied once more for nothing): rowid is the order
    # DuckDB read the records in, the file's; row 1 is the header
    fetch_all(con, f"CREATE VIEW raw_{name} AS SELECT CAST(rowid + 2 AS BIGINT) AS _row, * FROM _src_{name}")
    return RawTable(name, p, cols, fetch_all(con, f"SELECT count(*) FROM _src_{name}")[0][0], backing=f"_src_{name}",
                    delimiter=delim, delimiter_detected=detected and delim != ",")


def _shell_quote(text: str) -> str:
    return "$'\\t'" if text == "\t" else "'" + text.replace("'", "'\\''") + "'"


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
              f"FROM read_parquet({sql_string(p)}, file_row_number = true)")
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
    store_raw(con, name, arrays)
    return RawTable(name, p, cols, len(records))


# a spreadsheet keeps 15 significant digits of a number
_SPREADSHEET_DIGITS = 15


def _number_text(value: float, decimal_comma: bool) -> tuple[str, bool]:
    """A number cell as decimal text, and whether it holds more digits than a spreadsheet keeps
    (an integer of 16 digits or more, such as a long id stored as a number: its last digits may
    have changed). A cell is a binary double: its shortest exact decimal form is taken at the
    spreadsheet's precision (0.1 is `0.1`, 1234.56 is `1234.56`, a computed 0.30000000000000004
    is `0.3`), in plain notation."""
    if value != value or value in (float("inf"), float("-inf")):
        return repr(value), False
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value)), False
    exact = Decimal(repr(value))
    digits = len(exact.normalize().as_tuple().digits)
    imprecise = value.is_integer() and digits > _SPREADSHEET_DIGITS
    if digits > _SPREADSHEET_DIGITS:
        exact = Decimal(format(value, f".{_SPREADSHEET_DIGITS}g"))
    text = format(exact.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return (text.replace(".", ",") if decimal_comma else text), imprecise


def _column_letters(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _read_xlsx(con, name: str, path: Path, options: ReadOptions, probs: Problems) -> RawTable | None:
    """The chosen sheet (default: the first) as text columns. The header is the first row that is not
    empty; rows keep the numbers the spreadsheet shows; empty rows are skipped. Typed cells become
    capdsl's text: dates `YYYY-MM-DD` (a date-time at midnight too), numbers their decimal digits
    (`_number_text`), booleans `true`/`false`."""
    import pyarrow as pa

    p = str(path)
    try:
        from python_calamine import CalamineWorkbook, PasswordError
    except ImportError:  # pragma: no cover - a dependency of capdsl
        probs.add(error("E0711", "reading .xlsx files needs python-calamine", path=p,
                        hint="pip install python-calamine"))
        return None
    try:
        book = CalamineWorkbook.from_path(p)
    except PasswordError:
        probs.add(error("E0711", "the workbook is password-protected (it cannot be read)", path=p,
                        hint="save a copy without a password, or export the sheet as CSV UTF-8"))
        return None
    except Exception:  # noqa: BLE001 - calamine's zip and XML errors alike: the file is not a workbook
        probs.add(error("E0711", "the .xlsx file is truncated, corrupt or not a workbook (it cannot be read)",
                        path=p, hint="open it in a spreadsheet program and save it again as .xlsx"))
        return None
    with book:
        names = list(book.sheet_names)
        if options.sheet is None:
            if not names:
                probs.add(error("E0702", "the workbook has no sheets", path=p))
                return None
            sheet = names[0]
        elif options.sheet in names:
            sheet = options.sheet
        else:
            close = [n for n in names if n.strip().lower() == options.sheet.strip().lower()]
            probs.add(error("E0717", f"the workbook has no sheet {options.sheet!r}", path=p,
                            hint=(f"did you mean {close[0]!r}? " if close else "")
                                 + "its sheets are: " + ", ".join(repr(n) for n in names)))
            return None
        try:
            rows = book.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
        except Exception:  # noqa: BLE001
            probs.add(error("E0711", f"the sheet {sheet!r} cannot be read (the workbook is corrupt)", path=p,
                            hint="open it in a spreadsheet program and save it again as .xlsx"))
            return None
    where = f"the sheet {sheet!r}" if options.sheet is not None or len(names) > 1 else "the sheet"
    header_at = next((i for i, r in enumerate(rows) if any(v != "" for v in r)), None)
    if header_at is None:
        probs.add(error("E0702", f"{where} is empty", path=p,
                        hint="the first non-empty row must name the columns"
                             + (f"; the workbook's sheets are: {', '.join(map(repr, names))}" if len(names) > 1 else "")))
        return None
    header = rows[header_at]
    used = [i for i, v in enumerate(header) if v != ""]
    first, last = used[0], used[-1]
    labels = []
    for i in range(first, last + 1):
        v = header[i]
        labels.append(_cell_text(v, False)[0] if v != "" else f"(unnamed column {_column_letters(i)})")
    cols = _header_map(labels, p, probs)
    if cols is None:
        return None
    decimal_comma = bool(options.decimal_comma)
    numbers: list[int] = []
    values: list[list[str | None]] = [[] for _ in labels]
    imprecise: dict[str, list[tuple[int, str]]] = {}
    for n, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        cells = row[first:last + 1]
        if all(v == "" for v in cells):
            continue
        numbers.append(n)
        for j, v in enumerate(cells):
            if type(v) is str:
                values[j].append(v)
                continue
            text, lost = _cell_text(v, decimal_comma)
            values[j].append(text)
            if lost:
                imprecise.setdefault(f"c{j}", []).append((n, text))
    arrays = {"_row": pa.array(numbers, pa.int64())}
    for j, column in enumerate(values):
        arrays[f"c{j}"] = pa.array(column, pa.string())
    store_raw(con, name, arrays)
    errors: dict[str, list[tuple[int, str]]] = {}
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        letters = {_column_letters(i): f"c{i - first}" for i in range(first, last + 1)}
        for col, row, what in _error_cells(path, names.index(sheet)):
            if col in letters and row > header_at + 1:
                errors.setdefault(letters[col], []).append((row, what))
    return RawTable(name, p, cols, len(numbers), fmt="xlsx", imprecise=imprecise, error_cells=errors)


_ERROR_CELL = re.compile(rb'<c r="([A-Z]+)([0-9]+)"[^>]*?\bt="e"[^>]*>(?:<f[^>]*>[^<]*</f>|<f[^>]*/>)?<v>([^<]*)</v>')


def _error_cells(path: Path, sheet_index: int) -> list[tuple[str, int, str]]:
    """(column letters, row, error) of the error cells (#N/A, #DIV/0! …) of a sheet of an .xlsx
    file, which python-calamine reads as empty. Read from the sheet's XML in a streaming pass;
    an unexpected layout yields nothing rather than failing the read."""
    import zipfile
    from xml.etree import ElementTree

    try:
        with zipfile.ZipFile(path) as book:
            ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
                  "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships"}
            sheets = ElementTree.fromstring(book.read("xl/workbook.xml")).findall("m:sheets/m:sheet", ns)
            rid = sheets[sheet_index].get(f"{{{ns['r']}}}id")
            rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
            target = next(r.get("Target") for r in rels if r.get("Id") == rid)
            part = target.lstrip("/") if target.startswith("/") else "xl/" + target
            found: list[tuple[str, int, str]] = []
            with book.open(part) as xml:
                carry = b""
                while chunk := xml.read(1 << 20):
                    buf = carry + chunk
                    cut = buf.rfind(b"</c>") + 4 if b"</c>" in buf else 0
                    if b't="e"' in buf[:cut]:
                        found += [(m.group(1).decode(), int(m.group(2)), m.group(3).decode("utf-8", "replace"))
                                  for m in _ERROR_CELL.finditer(buf, 0, cut)]
                    carry = buf[cut:]
            return found
    except (KeyError, IndexError, StopIteration, OSError, zipfile.BadZipFile, ElementTree.ParseError):
        return []


def _cell_text(value: Any, decimal_comma: bool) -> tuple[str, bool]:
    """A typed cell as text (see `_read_xlsx`), and whether its number lost digits."""
    import datetime as dt

    if isinstance(value, bool):
        return ("true" if value else "false"), False
    if isinstance(value, float):
        return _number_text(value, decimal_comma)
    if isinstance(value, int):
        return str(value), False
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat(), False
        return value.isoformat(sep=" "), False
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat(), False
    return str(value), False


def apply_columns(raw: RawTable, mapping: Sequence[tuple[str, str]], probs: Problems,
                  origin: str = "the column mapping") -> RawTable | None:
    """Rename the file's columns to the panel's (`birth_date` read from the file's `dob`); a
    mapped column the file does not have is E0719, naming where the mapping came from."""
    for target, source in mapping:
        if source not in raw.columns:
            have = list(raw.columns)
            close = difflib.get_close_matches(source, have, n=1, cutoff=0.6)
            probs.add(error("E0719", f"the {raw.table} file has no column {source!r}, which {origin} maps to "
                                     f"{target}", path=raw.path,
                            hint=f"did you mean {close[0]!r}?" if close else
                                 f"the file's columns are: {', '.join(have[:15])}{' …' if len(have) > 15 else ''}"))
            return None
    moved = {target: raw.columns[source] for target, source in mapping}
    kept = {k: v for k, v in raw.columns.items()
            if v not in moved.values() and k not in moved}  # a file column the mapping replaces is dropped
    raw.columns = {**kept, **moved}
    raw.renamed = {t: s for t, s in mapping if t != s}
    return raw


def read_table(con, name: str, path: Path, fmt: str, probs: Problems,
               options: ReadOptions | None = None) -> RawTable | None:
    """The file as table `raw_<name>` (see the module's docstring), or None with its problem in `probs`."""
    options = options or ReadOptions()
    if fmt == "x12-834":  # the members table reads an 834 through data.x12 (panel.read_panel_table)
        probs.add(error("E0906", f"an X12 834 is a members table, not the {name} table", path=str(path),
                        hint=f"give it as --members, and the {name} as .csv, .parquet, .jsonl, .json or .xlsx"))
        return None
    if fmt == "xlsx":
        if _check_file(path, probs, ends_only=True) is None:
            return None
        raw = _read_xlsx(con, name, path, options, probs)
    else:
        data = _check_file(path, probs, ends_only=fmt == "parquet", head_only=fmt == "csv")
        if data is None:
            return None
        if fmt == "csv":
            raw = _read_csv(con, name, path, data, probs, options)
        elif fmt == "parquet":
            raw = _read_parquet(con, name, path, data, probs)
        else:
            raw = _read_json(con, name, path, data, fmt, probs)
    if raw is not None:
        raw.fmt = fmt
        if options.columns and apply_columns(raw, options.columns, probs) is None:
            for stmt in raw.drop():  # the file is reported as unusable: nothing of it stays
                fetch_all(con, stmt)
            return None
    return raw
