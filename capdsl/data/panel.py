"""Panel inputs: read the members, practices, events and measures tables into DuckDB.

Every file is read as text (CSV with all columns VARCHAR, Parquet and JSON
cast or converted to text) so that capdsl, not a reader's guesswork, decides
what a valid date, number or boolean is, and can name the row and column of
every bad value. Validation is SQL over the whole table (one aggregate query
per table, anti-joins for orphans), so a million members validate in seconds;
only the first `LIMIT` offending rows of each problem are fetched to Python.

Row numbers (`_row`) are what a person opening the file sees: for CSV the
spreadsheet row (the header is row 1, the first data row is row 2; equal to
the line number unless a quoted value spans lines; blank lines are skipped),
for JSON Lines the line number, for a JSON array or Parquet the 1-based record
index.

Privacy: member ids and birth dates are health data. Messages name a row
number and a short hash of the id (`id:3f9a2c`, the first six hex digits of
its SHA-256) and never print a birth date, unless `show_ids=True`
(`--show-ids`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import os
import re
import threading
import weakref
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb

from capdsl.data.memo import Memo
from capdsl.data.params import parse_params  # noqa: F401  (re-exported: parameters are a panel input too)
from capdsl.data.read import plural, redact_id  # noqa: F401  (re-exported: the panel's messages name rows so)
from capdsl.data.read import (LIMIT, Problems, RawTable, ReadOptions, delimiter_name, detect_format, fetch_all,
                              native_kind, quote_name, read_table, split_sheet, unreadable_parquet)
from capdsl.data.requirements import (CANONICAL, ColumnSpec, MeasureSpec, ParamSpec,  # noqa: F401
                                      Requirements, columns_for)
from capdsl.errors import Diagnostic, InputError, UsageError, error, warning
from capdsl.evaluation.periods import Period

TABLES = tuple(CANONICAL)  # members, practices, events, measures
DEC = "DECIMAL(38,10)"
_SQL_TYPE = {"bool": "BOOLEAN", "text": "VARCHAR", "date": "DATE", "integer": "BIGINT", "decimal": DEC}
_PRIVATE = {("members", "member_id"), ("members", "birth_date"), ("events", "member_id")}
_ORDER = {"members": "practice_id, member_id, _row", "practices": "practice_id, _row",
          "events": "practice_id, date, code, member_id NULLS FIRST, _row",
          "measures": "practice_id, period, measure, _row"}


# ───────────────────────────── privacy ─────────────────────────────

def read_panel_table(con, name: str, path: Path, fmt: str, probs: Problems, options: ReadOptions | None = None,
                     show_ids: bool = False):
    """A panel table read from its file (`read.read_table`); the members from an X12 834 through
    `data.x12.members_table` (pyx12)."""
    if fmt == "x12-834" and name == "members":
        from capdsl.data.x12 import members_table

        return members_table(con, path, probs, show_ids)
    return read_table(con, name, path, fmt, probs, options)


def _show(table: str, column: str, value: Any, show_ids: bool) -> str:
    if value is None:
        return "(empty)"
    if (table, column) in _PRIVATE and not show_ids:
        return redact_id(value) if column.endswith("_id") else "the value (hidden; --show-ids shows it)"
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "…")


# ───────────────────────────── SQL helpers ─────────────────────────────

def _lit(value: Any, kind: str) -> str:
    """A SQL literal for a default value."""
    if value is None:
        return f"CAST(NULL AS {_SQL_TYPE[kind]})"
    if kind == "bool":
        return "TRUE" if value else "FALSE"
    if kind == "date":
        return f"DATE '{value.isoformat()}'" if isinstance(value, date) else f"DATE '{value}'"
    if kind in ("decimal", "integer"):
        return f"CAST('{Decimal(str(value))}' AS {_SQL_TYPE[kind]})"
    return "'" + str(value).replace("'", "''") + "'"


_NUM = r"'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?'"
_PCT = r"'[+-]?([0-9]{1,15}\.?[0-9]*|\.[0-9]+) *%'"


@dataclass(frozen=True, slots=True)
class TextRules:
    """How a file writes numbers and dates besides capdsl's own forms: decimal commas (`1234,5`;
    a dot is then refused, as it may separate thousands) and a strptime date format accepted
    besides `YYYY-MM-DD`."""

    decimal_comma: bool = False
    date_format: str | None = None


PLAIN = TextRules()
_ISO = "'[0-9]{4}-[0-9]{2}-[0-9]{2}'"


def _valid(v: str, kind: str, rules: TextRules = PLAIN) -> str:
    """SQL: the text `v` (non-null) is a valid value of `kind`. Every cast is a try_cast."""
    if kind == "date":
        iso = (f"(regexp_full_match({v}, {_ISO}) AND try_cast({v} AS DATE) IS NOT NULL"
               f" AND try_cast(substr({v}, 1, 4) AS INTEGER) BETWEEN 1800 AND 2999)")
        if rules.date_format is None:
            return iso
        parsed = f"try_strptime({v}, {_sql_str(rules.date_format)})"
        return f"({iso} OR (NOT regexp_full_match({v}, {_ISO}) AND year({parsed}) BETWEEN 1800 AND 2999))"
    if kind in ("decimal", "integer") and rules.decimal_comma:
        return f"(NOT contains({v}, '.') AND {_valid(_comma(v), kind)})"
    if kind == "decimal":
        return (f"((regexp_full_match({v}, {_NUM}) AND try_cast({v} AS {DEC}) IS NOT NULL"
                f" AND NOT regexp_matches({v}, '\\.[0-9]{{10}}0*[1-9]')) OR "
                f"(regexp_full_match({v}, {_PCT}) AND NOT regexp_matches({v}, '\\.[0-9]{{8}}0*[1-9]')))")
    if kind == "integer":
        return (f"(regexp_full_match({v}, '[+-]?[0-9]+(\\.0*)?')"
                f" AND try_cast(try_cast({v} AS {DEC}) AS BIGINT) IS NOT NULL)")
    if kind == "bool":
        return f"(lower({v}) IN ('true', 'false', '1', '0', 'yes', 'no'))"
    return "TRUE"


def _comma(v: str) -> str:
    return f"replace({v}, ',', '.')"


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _typed(v: str, kind: str, rules: TextRules = PLAIN) -> str:
    """SQL: the typed value of the text `v` (NULL when empty or invalid)."""
    if kind == "date":
        if rules.date_format is not None:
            return (f"CASE WHEN regexp_full_match({v}, {_ISO}) THEN try_cast({v} AS DATE) "
                    f"ELSE CAST(try_strptime({v}, {_sql_str(rules.date_format)}) AS DATE) END")
        return f"try_cast({v} AS DATE)"
    if kind in ("decimal", "integer") and rules.decimal_comma:
        return _typed(_comma(v), kind)
    if kind == "decimal":  # "15%" is 0.15, exactly
        return (f"CASE WHEN ends_with({v}, '%') THEN try_cast(try_cast(rtrim(rtrim({v}, '%')) AS {DEC}) "
                f"* CAST('0.01' AS {DEC}) AS {DEC}) ELSE try_cast({v} AS {DEC}) END")
    if kind == "integer":
        return f"try_cast(try_cast({v} AS {DEC}) AS BIGINT)"
    if kind == "bool":
        return (f"CASE WHEN lower({v}) IN ('true', '1', 'yes') THEN TRUE "
                f"WHEN lower({v}) IN ('false', '0', 'no') THEN FALSE END")
    return v


_HINTS = {
    "date": "dates are written YYYY-MM-DD, e.g. 2011-03-01 (years 1800-2999)",
    "decimal": "write numbers with a dot for decimals, at most 10 decimal places, "
               "no thousands separators or units (e.g. 1234.5; a percentage as 15% or 0.15)",
    "integer": "write a whole number, e.g. 3",
    "bool": "write true or false (1/0 and yes/no are accepted too)",
}
_COMMA_NUMBER = re.compile(r"[+-]?[0-9]*,[0-9]+ *%?")
_DOT_NUMBER = re.compile(r"[+-]?[0-9]*\.[0-9]+ *%?")


def _hint(kind: str, value: Any, rules: TextRules, fmt: str) -> str:
    """The hint for a bad value of `kind`, naming the option that reads it when its form is a known
    convention (a decimal comma, a day-first date) rather than a mistake."""
    text = str(value).strip() if value is not None else ""
    if kind in ("decimal", "integer"):
        if rules.decimal_comma and _DOT_NUMBER.fullmatch(text):
            return ("numbers are read with decimal commas here (1234,5), so a dot is refused: it may separate "
                    "thousands; write the number with a comma")
        if not rules.decimal_comma and _COMMA_NUMBER.fullmatch(text):
            return ("this looks like a decimal comma: pass --decimal-comma (decimal_comma = true in capdsl.toml) "
                    "if the file writes 1234,5 for 1234.5")
    if kind == "date":
        if re.fullmatch(r"[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}", text):
            return "for dates written 31.12.2011 pass --date-format %d.%m.%Y (date_format in capdsl.toml)"
        if re.fullmatch(r"[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}", text):
            return ("for dates written with slashes pass --date-format %d/%m/%Y or %m/%d/%Y, whichever the file "
                    "uses (date_format in capdsl.toml)")
        if fmt == "xlsx" and re.fullmatch(r"[0-9]{4,5}", text):
            return "a number in a date column: format the column's cells as dates in the spreadsheet"
        if rules.date_format:
            return f"dates are written {rules.date_format} or YYYY-MM-DD (years 1800-2999)"
    return _HINTS[kind]


#: What messages call a value of each kind ("is not a valid whole number").
KIND_WORD = {"date": "date", "decimal": "number", "integer": "whole number", "bool": "boolean",
              "text": "text"}


# ───────────────────────────── typing and checks ─────────────────────────────

def _missing_column(spec: ColumnSpec, raw: RawTable, table: str) -> Diagnostic:
    have = list(raw.columns)
    close = difflib.get_close_matches(spec.name, have, n=1, cutoff=0.6)
    close += [h for h in have if h.lower() == spec.name.lower() and h not in close]
    hint = f"did you mean {close[0]!r}?" if close else (
        f"the file's columns are: {', '.join(have[:15])}{' …' if len(have) > 15 else ''}")
    if len(have) == 1 and any(sep in have[0] for sep in ";\t|"):
        hint = ("the header looks separated by ';', tab or '|', not by commas: pass the separator, e.g. "
                "--delimiter ';' (it is detected only when the header and the first rows split the same way)")
    elif raw.delimiter_detected:
        hint += f" (the file was read as {delimiter_name(raw.delimiter)}-separated; --delimiter says otherwise)"
    return error("E0703", f"the {table} file has no column {spec.name!r} ({KIND_WORD[spec.kind]}), "
                          f"needed by {spec.needed_by}", path=raw.path, hint=hint)


def _native_cast(c: str, native_type: str | None, kind: str) -> str | None:
    """SQL typing a natively typed column without text, or None to take the text path."""
    have = native_kind(native_type) if native_type else None
    if have is None:
        return None
    if have == kind and kind in ("date", "bool"):
        return c
    if kind == "decimal" and have in ("integer", "decimal"):
        return f"try_cast({c} AS {DEC})"
    if kind == "integer" and have == "integer":
        return f"try_cast({c} AS BIGINT)"
    return None


def _type_table(con, table: str, raw: RawTable | None, specs: list[ColumnSpec], probs: Problems,
                 show_ids: bool, rules: TextRules = PLAIN) -> None:
    """Check every column's values in one aggregate query, then create the typed table."""
    if raw is None:
        cols = ", ".join(f"CAST(NULL AS {_SQL_TYPE[s.kind]}) AS {quote_name(s.name)}" for s in specs)
        fetch_all(con, f"CREATE TABLE {table} AS SELECT CAST(NULL AS BIGINT) AS _row, {cols} LIMIT 0")
        return
    if _typed_view(con, table, raw, specs, probs, show_ids):
        return
    # The checks first, in one aggregate over the raw text; then the typed table, which needs neither
    # the validity test of a column whose values all passed it (a regular expression per value) nor
    # the trimming of a text column that has no empty value and no space at either end: the checks'
    # answers are remembered for an unchanged file (capdsl.data.memo), so a re-run pays for neither.
    # (kind of problem, spec, condition on the raw table, text expr, the same condition on the typed
    # table or None): a condition the typed table can answer is counted there, in a cheap scan of
    # one typed column instead of re-reading and re-trimming the file's text.
    checks: list[tuple[str, ColumnSpec, str, str, str | None]] = []
    plan: list[tuple[ColumnSpec, str | None, str | None]] = []  # (spec, raw column, native expr)
    for spec in specs:
        c = raw.columns.get(spec.name)
        native = _native_cast(c, raw.native.get(c), spec.kind) if c is not None else None
        plan.append((spec, c, native))
        if c is None:
            if spec.required and spec.default is None:
                probs.add(_missing_column(spec, raw, table))
            continue
        typed_null = f"{quote_name(spec.name)} IS NULL"
        if native is not None:  # a typed Parquet column: no text round trip
            shown = f"CAST({c} AS VARCHAR)"
            if spec.required and spec.default is None:
                checks.append(("null", spec, f"{c} IS NULL", shown, typed_null if native == c else None))
            if native != c:  # a cast that can fail (a huge integer into a decimal)
                checks.append(("bad", spec, f"{c} IS NOT NULL AND {native} IS NULL", shown, None))
            continue
        v = _text(c, raw)
        if spec.required and spec.default is None:
            checks.append(("null", spec, f"{v} IS NULL", v, typed_null if spec.kind == "text" else None))
        if spec.kind != "text":
            checks.append(("bad", spec, f"{v} IS NOT NULL AND NOT {_valid(v, spec.kind, rules)}", v, None))
    on_raw = [i for i, ch in enumerate(checks) if ch[4] is None]
    text_columns = [c for _, c, native in plan if c is not None and native is None and c not in raw.native]
    counts: dict[int, int] = {}
    try:
        aggs = [f"count_if({checks[i][2]})" for i in on_raw] + [f"count_if({_UNTIDY.format(c=c)})"
                                                               for c in text_columns]
        found = fetch_all(con, f"SELECT {', '.join(aggs)} FROM raw_{table}")[0] if aggs else ()
        counts.update(zip(on_raw, found))
        tidy = {c for c, n in zip(text_columns, found[len(on_raw):]) if not n}
        invalid = {ch[1].name for i, ch in enumerate(checks) if ch[0] == "bad" and counts[i]}
        exprs = ["_row"] + [_typed_column(spec, c, native, raw, c in tidy, spec.name in invalid, rules)
                            for spec, c, native in plan]
        # no ORDER BY: raw tables are built in _row order and DuckDB keeps insertion order; readers
        # order by key
        fetch_all(con, f"CREATE TABLE {table} AS SELECT {', '.join(exprs)} FROM raw_{table}")
    except duckdb.Error:
        if not raw.view:
            raise
        # the footer was readable, a data page is not: the first full read of a Parquet view finds it
        probs.add(unreadable_parquet(raw.path))
        _type_table(con, table, None, specs, probs, show_ids)
        return
    on_typed = [i for i, ch in enumerate(checks) if ch[4] is not None]
    if on_typed:
        counts.update(zip(on_typed, fetch_all(con, "SELECT " + ", ".join(f"count_if({checks[i][4]})" for i in on_typed)
                                            + f" FROM {table}")[0]))
    _report_checks(con, table, [ch[:4] for ch in checks], [counts[i] for i in range(len(checks))], probs,
                   show_ids, raw.path, raw, rules)


def _text(c: str, raw: RawTable) -> str:
    """SQL: a raw column's text as a reader sees it (trimmed; empty is NULL)."""
    return f"NULLIF(trim({c}), '')" if c not in raw.native else f"NULLIF(trim(CAST({c} AS VARCHAR)), '')"


def _typed_column(spec: ColumnSpec, c: str | None, native: str | None, raw: RawTable, tidy: bool,
                  invalid: bool, rules: TextRules = PLAIN) -> str:
    """SQL: one column of the typed table. `tidy`: no value is empty or has a space at either end
    (trimming would change nothing); `invalid`: some value failed its validity test (so each value
    must pass it again, or be NULL)."""
    if c is None:
        return f"{_lit(spec.default, spec.kind)} AS {quote_name(spec.name)}"
    if native is not None:
        typed = native
    else:
        v = c if tidy else _text(c, raw)
        typed = f"CASE WHEN {_valid(v, spec.kind, rules)} THEN {_typed(v, spec.kind, rules)} END" if invalid \
            else _typed(v, spec.kind, rules)
    if spec.default is not None:
        typed = f"COALESCE({typed}, {_lit(spec.default, spec.kind)})"
    return f"{typed} AS {quote_name(spec.name)}"


# members, events and a remittance are the large tables; practices and measures stay copies (measures is rebuilt)
_VIEWABLE = ("members", "events", "remittance")
# a text value a reader must tidy: empty, or spaces at either end (DuckDB's trim removes spaces only)
_UNTIDY = "({c} = '' OR starts_with({c}, ' ') OR ends_with({c}, ' '))"


def _typed_view(con, table: str, raw: RawTable, specs: list[ColumnSpec], probs: Problems, show_ids: bool) -> bool:
    """Members or events from Parquet whose columns the file already types: a typed *view* over the
    file instead of a typed copy, checked in one aggregate scan that decodes every column it keeps
    (so a garbled data page is found here, as E0711, not in the payment query). Text is trimmed only
    if some value needs it. A copy of the large tables would cost more than all their checks.
    Returns False, having done nothing, when a column needs the text round trip."""
    if not (raw.view and raw.select and table in _VIEWABLE):
        return False
    plan: list[tuple[ColumnSpec, str | None, str | None]] = []  # (spec, raw column, typed expr; None: text)
    for spec in specs:
        c = raw.columns.get(spec.name)
        have = raw.native.get(c) if c is not None else None
        if c is None or (spec.kind == "text" and have == "VARCHAR"):
            plan.append((spec, c, None))
            continue
        native = _native_cast(c, have, spec.kind)
        if native is None:
            return False
        plan.append((spec, c, native))
    aggs: list[str] = []
    for spec, c, native in plan:
        if c is not None:
            aggs.append(f"count_if({c} IS NULL)")
            aggs.append(f"count_if({_UNTIDY.format(c=c)})" if native is None else
                        f"count_if({c} IS NOT NULL AND {native} IS NULL)" if native != c else "0")
    try:
        found = fetch_all(con, f"SELECT {', '.join(aggs) or '0'} FROM raw_{table}")[0]
    except duckdb.Error:  # the footer was readable, a data page is not
        probs.add(unreadable_parquet(raw.path))
        _type_table(con, table, None, specs, probs, show_ids)
        return True
    exprs = ["_row"]
    checks: list[tuple[str, ColumnSpec, str, str]] = []
    counts: list[int] = []
    i = 0
    for spec, c, native in plan:
        if c is None:
            if spec.required and spec.default is None:
                probs.add(_missing_column(spec, raw, table))
            exprs.append(f"{_lit(spec.default, spec.kind)} AS {quote_name(spec.name)}")
            continue
        nulls, other = found[i], found[i + 1]
        i += 2
        required = spec.required and spec.default is None
        if native is None:  # text, trimmed and emptied to NULL only when some value needs it
            typed = f"NULLIF(trim({c}), '')" if other else c
            if required:
                checks.append(("null", spec, f"{typed} IS NULL", typed))
                counts.append(fetch_all(con, f"SELECT count_if({typed} IS NULL) FROM raw_{table}")[0][0] if other
                              else nulls)
        else:
            typed = native
            if required:
                checks.append(("null", spec, f"{c} IS NULL", f"CAST({c} AS VARCHAR)"))
                counts.append(nulls)
            if native != c:  # a cast that can fail (a huge integer into a decimal)
                checks.append(("bad", spec, f"{c} IS NOT NULL AND {native} IS NULL", f"CAST({c} AS VARCHAR)"))
                counts.append(other)
        if spec.default is not None:
            typed = f"COALESCE({typed}, {_lit(spec.default, spec.kind)})"
        exprs.append(f"{typed} AS {quote_name(spec.name)}")
    fetch_all(con, f"CREATE VIEW {table} AS SELECT {', '.join(exprs)} FROM ({raw.select})")
    _report_checks(con, table, checks, counts, probs, show_ids, raw.path, raw)
    return True


def _report_checks(con, table: str, checks, counts: list[int], probs: Problems, show_ids: bool,
                   path: str, raw: RawTable | None = None, rules: TextRules = PLAIN) -> None:
    """E0705/E0704 with the first offending rows of every check that counted any. A column a
    mapping renamed is named as the file names it, with the panel's name after it."""
    renamed = raw.renamed if raw is not None else {}
    fmt = raw.fmt if raw is not None else "csv"
    for (problem, spec, cond, v), n in zip(checks, counts):
        if not n:
            continue
        found = fetch_all(con, f"SELECT _row, {v} FROM raw_{table} WHERE {cond} ORDER BY _row "
                        f"LIMIT {LIMIT}")
        label = f"{renamed[spec.name]} ({spec.name})" if spec.name in renamed else spec.name
        if problem == "null":
            probs.rows("E0705", path, found, n, f"rows with an empty {spec.name}",
                       lambda r, s=spec, lb=label: f"row {r[0]}: column {lb} is empty; it is required "
                                                   f"(needed by {s.needed_by})")
        else:
            probs.rows("E0704", path, found, n, f"rows with a bad {spec.name}",
                       lambda r, s=spec, lb=label: f"row {r[0]}, column {lb}: "
                                                   f"{_show(table, s.name, r[1], show_ids)} is not a valid "
                                                   f"{KIND_WORD[s.kind]}",
                       hint=_hint(spec.kind, found[0][1] if found else None, rules, fmt))


def _add_measure_columns(con, measures: dict[str, MeasureSpec], path: str | None, probs: Problems,
                         rules: TextRules = PLAIN, fmt: str = "csv") -> None:
    """Normalise the period, derive its dates and type `value` per measure kind."""
    p = "upper(period)"
    y = f"try_cast(substr({p}, 1, 4) AS INTEGER)"
    kind = (f"CASE WHEN regexp_full_match({p}, '[0-9]{{4}}-(0[1-9]|1[0-2])') THEN 'month' "
            f"WHEN regexp_full_match({p}, '[0-9]{{4}}-Q[1-4]') THEN 'quarter' "
            f"WHEN regexp_full_match({p}, '[0-9]{{4}}') THEN 'year' END")
    start = (f"CASE period_kind WHEN 'month' THEN try_cast(period || '-01' AS DATE) "
             f"WHEN 'quarter' THEN make_date({y}, (try_cast(substr(period, 7, 1) AS INTEGER) - 1) * 3 + 1, 1) "
             f"WHEN 'year' THEN make_date({y}, 1, 1) END")
    end = ("CASE period_kind WHEN 'month' THEN last_day(period_start) "
           "WHEN 'quarter' THEN last_day(CAST(period_start + INTERVAL 2 MONTH AS DATE)) "
           "WHEN 'year' THEN make_date(year(period_start), 12, 31) END")
    values = ", ".join(f"CASE WHEN {_valid('value', k, rules)} THEN {_typed('value', k, rules)} END AS value_{k}"
                       if rules != PLAIN and k in ("integer", "decimal", "date") else f"{_typed('value', k)} AS value_{k}"
                       for k in ("bool", "integer", "decimal", "date"))
    # a view over the typed table, not a second table: creating a table costs far more than a view
    # even for a few rows, and the few rows are read again cheaply (no ORDER BY: _row's order is kept)
    fetch_all(con, "ALTER TABLE measures RENAME TO measures_typed")
    fetch_all(con, f"CREATE VIEW measures AS SELECT _row, practice_id, period, period_kind, period_start, "
            f"CAST({end} AS DATE) AS period_end, measure, value, value_bool, value_integer, "
            f"value_decimal, value_date FROM (SELECT *, {start} AS period_start FROM ("
            f"SELECT _row, practice_id, {p} AS period, measure, value, {kind} AS period_kind, {values} "
            f"FROM measures_typed))")
    if path is None:
        return
    bad = fetch_all(con, "SELECT _row, period FROM measures WHERE period IS NOT NULL AND "
                      "(period_kind IS NULL OR NOT (year(period_start) BETWEEN 1800 AND 2999)) ORDER BY _row")
    probs.rows("E0704", path, bad, len(bad), "rows with a bad period",
               lambda r: f"row {r[0]}, column period: {r[1]!r} is not a period",
               hint="periods are written 2011-03 (month), 2011-Q2 (quarter) or 2011 (year)")
    for name, spec in measures.items():
        if spec.kind == "text":
            continue
        cond = f"measure = ? AND value IS NOT NULL AND NOT {_valid('value', spec.kind, rules)}"
        n = fetch_all(con, f"SELECT count(*) FROM measures WHERE {cond}", [name])[0][0]
        if n:
            found = fetch_all(con, f"SELECT _row, value FROM measures WHERE {cond} ORDER BY _row LIMIT {LIMIT}",
                                [name])
            probs.rows("E0704", path, found, n, f"bad values of measure {name}",
                       lambda r, nm=name, s=spec: f"row {r[0]}, column value: {_show('measures', 'value', r[1], False)}"
                                                  f" is not a valid {KIND_WORD[s.kind]} (measure {nm}, "
                                                  f"declared at {s.needed_by})",
                       hint=_hint(spec.kind, found[0][1] if found else None, rules, fmt))
    declared = list(measures)
    unknown = fetch_all(
        con, "SELECT measure, count(*), min(_row) FROM measures WHERE measure IS NOT NULL AND NOT "
        "list_contains(?, measure) GROUP BY measure ORDER BY min(_row)", [declared])
    for name, n, first in unknown:
        close = difflib.get_close_matches(name, declared, n=1)
        probs.add(warning("W0712", f"measure {name!r} ({plural(n, 'row')}, first on row {first}) is not "
                                   f"declared by the contract and is ignored", path=path,
                          hint=f"did you mean {close[0]!r}?" if close else None))


def _duplicates(con, table: str, keys: Sequence[str], path: str, label, probs: Problems,
                known_present: bool | None = None) -> None:
    """E0706 for keys that appear more than once. `known_present` is the answer
    of a cheap pass already run (see `_member_ids`); None runs it here."""
    k = ", ".join(keys)
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in keys)
    # a cheap pass first (most panels have no duplicates); the row lists only for the duplicated keys
    if known_present is None:
        known_present = bool(fetch_all(con, f"SELECT 1 FROM {table} WHERE {not_null} GROUP BY {k} "
                                     f"HAVING count(*) > 1 LIMIT 1"))
    if not known_present:
        return
    found = fetch_all(
        con, f"WITH d AS (SELECT {k}, list(_row ORDER BY _row) AS rows_, count(*) AS n FROM {table} "
        f"WHERE {not_null} GROUP BY {k} HAVING count(*) > 1) "
        f"SELECT *, count(*) OVER () FROM d ORDER BY rows_[1] LIMIT {LIMIT}")
    if found:
        nk = len(keys)
        probs.rows("E0706", path, found, found[0][-1], f"duplicated {table} keys",
                   lambda r: f"{label(r[:nk])} appears {r[nk + 1]} times (rows "
                             f"{', '.join(map(str, r[nk][:10]))}{' …' if r[nk + 1] > 10 else ''})",
                   hint="each key must appear once; remove or merge the duplicated rows")


def _member_ids(con) -> tuple[bool, bool]:
    """(is a member_id duplicated, does an event name no member) in one pass over both tables'
    member ids, sorted with each id's members first: a member right after a member with the same id
    is a duplicate; an event right after a row with another id belongs to an id with no member.
    One sorted pass answers both questions, where a check for each would scan both tables twice
    (and a hash aggregate over the same ids is slower on large panels)."""
    row = fetch_all(con, "SELECT count_if(m AND prev_m AND prev_id = member_id) > 0, "
                  "count_if(NOT m AND prev_id IS DISTINCT FROM member_id) > 0 FROM ("
                  "SELECT member_id, m, lag(m) OVER w AS prev_m, lag(member_id) OVER w AS prev_id FROM ("
                  "SELECT member_id, true AS m FROM members WHERE member_id IS NOT NULL UNION ALL "
                  "SELECT member_id, false FROM events WHERE member_id IS NOT NULL) "
                  "WINDOW w AS (ORDER BY member_id, m DESC))")[0]
    return bool(row[0]), bool(row[1])


def _orphans(con, table: str, known: str, path: str, against: str, probs: Problems,
             code: str = "E0707") -> None:
    """Rows whose practice_id is not among `known` (a SQL query of practice ids), grouped by id."""
    found = fetch_all(
        con, f"WITH o AS (SELECT practice_id, count(*) AS n, min(_row) AS first FROM {table} t "
        f"WHERE practice_id IS NOT NULL AND practice_id NOT IN ({known}) GROUP BY practice_id) "
        f"SELECT *, count(*) OVER () FROM o ORDER BY first LIMIT {LIMIT}")
    if found:
        probs.rows(code, path, found, found[0][-1], "unknown practices",
                   lambda r: f"practice_id {r[0]!r} ({plural(r[1], 'row')}, first on row {r[2]}) "
                             f"is not in {against}",
                   hint="add the practice to the practices file or correct the practice_id")


def _row_check(con, table: str, cond: str, cols: str, path: str, code: str, what: str, describe,
               probs: Problems, severity: str = "error", hint: str | None = None, params=None) -> None:
    n = fetch_all(con, f"SELECT count(*) FROM {table} WHERE {cond}", params or [])[0][0]
    if n:
        found = fetch_all(con, f"SELECT _row, {cols} FROM {table} WHERE {cond} ORDER BY _row LIMIT {LIMIT}",
                            params or [])
        probs.rows(code, path, found, n, what, describe, severity, hint)


def _cross_checks(con, raws: dict[str, RawTable | None], given: set[str], probs: Problems,
                  today: date, ref_day: date, show_ids: bool) -> None:
    """Checks across rows and tables, in SQL over the typed tables."""
    mp = raws["members"].path if raws.get("members") else "members"
    rid = lambda v: redact_id(v, show_ids)  # noqa: E731
    with_events = bool(raws.get("members") and raws.get("events"))
    dup_members, unknown_members = _member_ids(con) if with_events else (None, False)
    _duplicates(con, "members", ["member_id"], mp, lambda k: f"member_id {rid(k[0])}", probs, dup_members)
    if raws.get("practices"):
        _duplicates(con, "practices", ["practice_id"], raws["practices"].path,
                    lambda k: f"practice_id {k[0]!r}", probs)
    if raws.get("measures"):
        _duplicates(con, "measures", ["practice_id", "period", "measure"], raws["measures"].path,
                    lambda k: f"measure {k[2]!r} of practice {k[0]!r} for {k[1]}", probs)
    if "practices" in given and raws.get("practices"):
        known, against = "SELECT practice_id FROM practices WHERE practice_id IS NOT NULL", "the practices file"
    else:  # without a practices file, events and measures must name a practice that has members
        known, against = "SELECT practice_id FROM members WHERE practice_id IS NOT NULL", "the members file"
    if "practices" in given and raws.get("practices") and raws.get("members"):
        _orphans(con, "members", known, mp, against, probs)
    for t in ("events", "measures"):
        if raws.get(t):
            _orphans(con, t, known, raws[t].path, against, probs)
    if raws.get("members"):
        _row_check(con, "members", "birth_date > ?", "member_id", mp, "E0708", "future birth dates",
                   lambda r: f"row {r[0]}: member {rid(r[1])} has a birth date after {today}",
                   probs, params=[today], hint="a birth date cannot be in the future; check the date")
        _row_check(con, "members", "enrolled_to < enrolled_from", "member_id", mp, "E0713",
                   "rows ending enrolment before it starts",
                   lambda r: f"row {r[0]}: member {rid(r[1])} has enrolled_to before enrolled_from",
                   probs, hint="enrolled_from and enrolled_to are both inclusive; enrolled_to must not "
                               "be earlier")
        oldest = date(ref_day.year - 110, ref_day.month, 28 if (ref_day.month, ref_day.day) == (2, 29)
                      else ref_day.day)
        _row_check(con, "members", "birth_date <= ?", "member_id", mp, "W0714", "members aged 110 or over",
                   lambda r: f"row {r[0]}: member {rid(r[1])} is aged 110 or over on {ref_day}",
                   probs, "warning", params=[oldest], hint="check the birth date; the member is kept")
    if raws.get("events"):
        ep = raws["events"].path
        for col in ("quantity", "points"):
            _row_check(con, "events", f"{col} < 0", col, ep, "E0709", f"negative {col}",
                       lambda r, c=col: f"row {r[0]}: {c} is negative ({r[1].normalize():f})", probs,
                       hint="quantities and points cannot be negative; write corrections as their own codes")
        if with_events and unknown_members:
            _row_check(con, "events", "member_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM members m "
                                      "WHERE m.member_id = events.member_id)", "member_id", ep, "W0715",
                       "events naming unknown members",
                       lambda r: f"row {r[0]}: member {rid(r[1])} is not in the members file", probs,
                       "warning", hint="the event is kept and paid to its practice")


# ───────────────────────────── the panel ─────────────────────────────

def _tidy(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


_DEC_TEXT = "rtrim(rtrim(CAST({} AS VARCHAR), '0'), '.')"


@dataclass(eq=False)  # compared (and tracked in _OPEN) by identity
class Panel:
    """The typed tables in DuckDB (`members`, `practices`, `events`, `measures`) and their warnings."""

    con: duckdb.DuckDBPyConnection
    files: dict[str, Path]
    warnings: list[Diagnostic]
    kinds: dict[str, dict[str, str]]  # table -> column -> kind
    measure_kinds: dict[str, str]
    show_ids: bool = False
    pending: _Background | None = None  # checks still running (load_panel(checks_in_background=True))
    late_warnings: list[Diagnostic] = field(default_factory=list)  # reported after the pending checks'
    memo: Memo | None = None  # the checks' answers, kept once the pending checks find no error

    def finish_checks(self) -> None:
        """Wait for the checks still running; raise their InputError (closing the panel) or keep
        their warnings. Idempotent; a no-op for a panel loaded without background checks."""
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        found = pending.join()
        warnings = self.warnings + found.warnings + self.late_warnings
        self.late_warnings = []
        if found.errors:
            self.close()
            raise InputError(found.errors + warnings)
        self.warnings = warnings
        if self.memo is not None:
            self.memo.keep()

    def _rows(self, table: str, columns: Iterable[str]) -> list[tuple]:
        cols = list(columns)
        known = self.kinds[table]
        for c in cols:
            if c not in known and c != "_row":
                raise KeyError(f"the {table} table has no column {c!r} (known: {', '.join(known)})")
        decimal_at = [i for i, c in enumerate(cols) if known.get(c) == "decimal"]
        select = ", ".join(_DEC_TEXT.format(quote_name(c)) if known.get(c) == "decimal" else quote_name(c) for c in cols)
        rows = fetch_all(self.con, f"SELECT {select or '1'} FROM {table} ORDER BY {_ORDER[table]}")
        if decimal_at:
            out = []
            for row in rows:
                row = list(row)
                for i in decimal_at:
                    row[i] = _tidy(row[i])
                out.append(tuple(row))
            rows = out
        return rows if cols else [() for _ in rows]

    def member_rows(self, columns: Sequence[str]) -> list[tuple]:
        """Rows of the given member columns, ordered by practice_id, member_id."""
        return self._rows("members", columns)

    def practice_rows(self, columns: Sequence[str]) -> list[tuple]:
        return self._rows("practices", columns)

    def event_rows(self, columns: Sequence[str]) -> list[tuple]:
        """Ordered by practice_id, date, code, member_id, then file row (ties)."""
        return self._rows("events", columns)

    def measure_rows(self) -> list[tuple[str, str, str, Any]]:
        """(practice_id, period, measure, value typed per its declaration); undeclared measures as text."""
        rows = fetch_all(self.con, f"SELECT practice_id, period, measure, value, value_bool, value_integer, "
                            f"{_DEC_TEXT.format('value_decimal')}, value_date FROM measures "
                            f"ORDER BY {_ORDER['measures']}")
        pick = {"bool": 4, "integer": 5, "decimal": 6, "date": 7, "text": 3}
        out = []
        for r in rows:
            kind = self.measure_kinds.get(r[2], "text")
            value = r[pick[kind]]
            out.append((r[0], r[1], r[2], _tidy(value) if kind == "decimal" else value))
        return out

    def member_label(self, member_id: Any) -> str:
        """How messages and explain output name a member: `id:3f9a2c`, or the id with --show-ids."""
        return redact_id(member_id, self.show_ids)

    def count(self, table: str) -> int:
        return fetch_all(self.con, f"SELECT count(*) FROM {table}")[0][0]

    def __post_init__(self) -> None:
        _OPEN.add(self)

    def wrote_files(self) -> bool:
        """Has DuckDB written files that only closing removes (spilled data, its temporary
        directory)? True when it cannot tell."""
        try:
            spilled, where = self.con.execute("SELECT (SELECT count(*) FROM duckdb_temporary_files()), "
                                              "current_setting('temp_directory')").fetchall()[0]
        except duckdb.Error:
            return True
        return bool(spilled) or bool(where) and os.path.exists(where)

    def close(self) -> None:
        if self.pending is not None:  # closed without finish_checks (an error, Ctrl-C): stop the checks
            self.pending, pending = None, self.pending
            pending.stop()
        self.con.close()
        _OPEN.discard(self)


# Panels not closed yet, for `close_all` (the console script closes them before a fast exit).
_OPEN: weakref.WeakSet[Panel] = weakref.WeakSet()


def close_all(only_if_needed: bool = False) -> None:
    """Close every panel still open: DuckDB then removes anything it spilled to disk.
    `only_if_needed` (a process about to `os._exit`): leave alone a panel with no checks running
    and no files written, whose closing would only free memory."""
    for panel in list(_OPEN):
        if not only_if_needed or panel.pending is not None or panel.wrote_files():
            panel.close()


def check_options(options: ReadOptions, where: str = "") -> None:
    """A UsageError (E0722) for reading options no file can be read with."""
    delim = options.delimiter
    if delim is not None and (len(delim) != 1 or delim in "\"\r\n" or delim.isalnum()):
        raise UsageError(error("E0722", f"the field separator {delim!r}{where} cannot be used",
                               hint="give one character that is not a letter, digit or quote: --delimiter ';' "
                                    "(a tab: --delimiter $'\\t')"))
    fmt = options.date_format
    if fmt is not None:
        if not ("%Y" in fmt and re.search("%[mbB]", fmt) and "%d" in fmt):
            raise UsageError(error("E0722", f"the date format {fmt!r}{where} needs a day (%d), a month (%m, %b) "
                                            "and a four-digit year (%Y)", hint="e.g. --date-format %d.%m.%Y"))
        con = duckdb.connect(":memory:")
        try:
            con.execute("SELECT try_strptime('2011-01-01', ?)", [fmt])
        except duckdb.Error as exc:
            raise UsageError(error("E0722", f"the date format {fmt!r}{where} cannot be used: "
                                            f"{str(exc).splitlines()[0][:120]}",
                                   hint="write it as for strptime, e.g. %d.%m.%Y")) from None
        finally:
            con.close()


def _text_rules(con, table: str, raw: RawTable, options: ReadOptions, specs: list[ColumnSpec],
                probs: Problems) -> TextRules:
    """The table's TextRules: the date format given, and decimal commas as given or, in a CSV file not
    separated by commas, detected: some number column holds `1234,5` and none `1234.5` (reported as
    W0720, with the column and row it was seen on). Parquet and JSON numbers are never read with commas."""
    decimal_comma = bool(options.decimal_comma) and raw.fmt in ("csv", "xlsx")
    if options.decimal_comma is None and raw.fmt == "csv" and raw.delimiter != ",":
        numeric = [(s.name, raw.columns[s.name]) for s in specs if s.kind in ("decimal", "integer")
                   and s.name in raw.columns and raw.columns[s.name] not in raw.native]
        if table == "measures" and "value" in raw.columns:
            numeric.append(("value", raw.columns["value"]))
        if numeric:
            parts = []
            for _, c in numeric:
                v = f"trim({c})"
                parts.append(f"count_if(regexp_full_match({v}, '[+-]?[0-9]*,[0-9]+ *%?'))")
                parts.append(f"count_if(regexp_full_match({v}, '[+-]?[0-9]*\\.[0-9]+ *%?'))")
                parts.append(f"min(CASE WHEN regexp_full_match({v}, '[+-]?[0-9]*,[0-9]+ *%?') THEN _row END)")
            found = fetch_all(con, f"SELECT {', '.join(parts)} FROM raw_{table}")[0]
            commas = [(name, found[3 * i], found[3 * i + 2]) for i, (name, _) in enumerate(numeric)]
            dots = sum(found[3 * i + 1] for i in range(len(numeric)))
            seen = [(name, row) for name, n, row in commas if n]
            if seen and not dots:
                decimal_comma = True
                name, row = seen[0]
                probs.add(warning("W0720", f"numbers are read with decimal commas (detected: column {name}, "
                                           f"row {row}, and no number with a decimal point; --decimal-comma says "
                                           f"so)", path=raw.path,
                                  hint="pass --decimal-comma (or decimal_comma = true in capdsl.toml) to say so"))
    return TextRules(decimal_comma, options.date_format)


def _report_cells(raw: RawTable, specs: list[ColumnSpec], probs: Problems, show_ids: bool) -> None:
    """For the columns the contract reads of a spreadsheet: E0723 for error cells (#N/A …, which would
    read as empty), E0721 for number cells holding more digits than a spreadsheet keeps (a long id
    typed as a number: their last digits may have changed)."""
    for spec in specs:
        c = raw.columns.get(spec.name)
        errors = raw.error_cells.get(c) if c is not None else None
        if errors:
            probs.rows("E0723", raw.path, errors, len(errors), f"error cells in {spec.name}",
                       lambda r, s=spec: f"row {r[0]}, column {s.name}: the cell holds the spreadsheet error "
                                         f"{r[1]}, not a value",
                       hint="correct the formula, or replace the error by a value (or an empty cell) in the "
                            "spreadsheet")
        found = raw.imprecise.get(c) if c is not None else None
        if not found:
            continue
        probs.rows("E0721", raw.path, found, len(found), f"numbers too long in {spec.name}",
                   lambda r, s=spec: f"row {r[0]}, column {s.name}: the number "
                                     f"{_show(raw.table, s.name, r[1], show_ids)} has more than 15 digits, "
                                     f"which a spreadsheet does not keep: its last digits may have changed",
                   hint="store such ids as text in the spreadsheet (format the column as Text before typing "
                        "them, or export them as CSV)")


def load_panel(files: dict[str, str | Path | None], requirements: Requirements | None = None, *,
               formats: dict[str, str] | None = None, today: date | None = None, show_ids: bool = False,
               period: Period | None = None, allow_no_members: bool = False,
               checks_in_background: bool = False) -> Panel:
    """Read and validate the panel files; raise one InputError listing every problem found.

    `files` maps table name (members, practices, events, measures) to a path;
    members is required. `today` bounds birth dates (default: the real date);
    `period` (its first day) is when the 110+ age warning is judged (default: today).
    `allow_no_members` accepts a members file with no rows (embedded examples
    of fee-for-service or measure-only contracts have none).

    `checks_in_background`: once every table is typed without error, the checks across rows and
    tables (duplicates, orphans, dates, unknown members: a third of loading a large panel) run
    on their own cursor while the caller computes; the caller must call `Panel.finish_checks()`
    before it uses any result, which raises their InputError or adds their warnings.
    """
    req = requirements or Requirements()
    unknown = set(files) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown panel tables: {', '.join(sorted(unknown))}")
    today = today or date.today()
    ref_day = period.start if period else today
    options: dict[str, ReadOptions] = {}
    paths: dict[str, Path] = {}
    for t, p in files.items():
        if p is None:
            continue
        given = (formats or {}).get(t)
        opts = given if isinstance(given, ReadOptions) else ReadOptions(format=given)
        paths[t], sheet = split_sheet(p)
        if sheet is not None and opts.sheet is None:
            opts = dataclasses.replace(opts, sheet=sheet)
        options[t] = opts
    for opts in options.values():
        check_options(opts)
    probs = Problems()
    fmts = {}
    for t, p in paths.items():
        fmts[t] = detect_format(p, options[t].format)
    memo = Memo.open(paths, [sorted(fmts.items()), sorted(options.items()), req, today, ref_day, show_ids,
                             allow_no_members])
    real = duckdb.connect(":memory:")
    real.execute("SET enable_progress_bar = false")  # stderr belongs to capdsl's own messages
    con = memo.connection(real)  # the checks' answers are replayed for files that have not changed
    pending = None
    try:
        if "members" not in paths:
            probs.add(error("E0701", "no members file was given", hint="pass --members FILE"))
        raws: dict[str, RawTable | None] = {t: (read_panel_table(con, t, paths[t], fmts[t], probs, options[t],
                                                                 show_ids) if t in paths else None) for t in TABLES}
        if raws["members"] is not None and raws["members"].rows == 0 and not allow_no_members:
            probs.add(error("E0702", "the members file has a header but no rows", path=raws["members"].path))
        specs = {t: columns_for(t, req) for t in TABLES}
        rules = {t: _text_rules(con, t, raws[t], options[t], specs[t], probs) for t in paths if raws[t] is not None}
        for t in TABLES:
            if raws[t] is not None and (raws[t].imprecise or raws[t].error_cells):
                _report_cells(raws[t], specs[t], probs, show_ids)
        for t in ("members", "events", "measures"):
            _type_table(con, t, raws[t], specs[t], probs, show_ids, rules.get(t, PLAIN))
        if raws["practices"] is not None:
            _type_table(con, "practices", raws["practices"], specs["practices"], probs, show_ids,
                        rules.get("practices", PLAIN))
        else:
            _derive_practices(con, specs["practices"], "practices" in paths, probs)
        measure_specs = dict(req.measures)
        _add_measure_columns(con, measure_specs, raws["measures"].path if raws["measures"] else None, probs,
                             rules.get("measures", PLAIN), raws["measures"].fmt if raws["measures"] else "csv")
        cross = functools.partial(_cross_checks, raws=raws, given=set(paths), today=today, ref_day=ref_day,
                                  show_ids=show_ids)
        pending = _Background(con, cross) if checks_in_background and not probs.errors else None
        if pending is None:
            cross(con, probs=probs)
        late = [warning("W0718", f"no {t} file was given; the contract reads {t}, which count as empty",
                        hint=f"pass --{t} FILE")
                for t, flag in (("events", req.needs_events), ("measures", req.needs_measures))
                if flag and t not in paths]
        if pending is None:
            for w in late:
                probs.add(w)
            late = []
        for t in TABLES:
            for stmt in raws[t].drop() if raws[t] is not None else [f"DROP TABLE IF EXISTS raw_{t}"]:
                fetch_all(con, stmt)
    except BaseException:
        if pending is not None:
            pending.stop()
        real.close()
        raise
    if probs.errors:
        real.close()
        raise InputError(probs.errors + probs.warnings)
    if pending is None:
        memo.keep()
    kinds = {t: {"_row": "integer", **{s.name: s.kind for s in specs[t]}} for t in TABLES}
    kinds["measures"].update(period_kind="text", period_start="date", period_end="date",
                             value_bool="bool", value_integer="integer", value_decimal="decimal",
                             value_date="date")
    return Panel(real, paths, probs.warnings, kinds, {n: s.kind for n, s in measure_specs.items()}, show_ids,
                 pending, late, memo)


class _Background:
    """Checks running on their own DuckDB cursor in a thread (DuckDB releases the GIL while it
    works), with their own problem list."""

    def __init__(self, con, checks) -> None:
        self.cursor = con.cursor()
        self.problems = Problems()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(checks,), name="capdsl-panel-checks", daemon=True)
        self.thread.start()

    def _run(self, checks) -> None:
        try:
            checks(self.cursor, probs=self.problems)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread by join()
            self.failure = exc

    def join(self) -> Problems:
        self.thread.join()
        self.cursor.close()
        if self.failure is not None:
            raise self.failure
        return self.problems

    def stop(self) -> None:
        """Interrupt the checks and wait for the thread, ignoring what they found."""
        try:
            self.cursor.interrupt()
        except duckdb.Error:
            pass
        self.thread.join()
        self.cursor.close()


def _derive_practices(con, specs: list[ColumnSpec], file_given: bool, probs: Problems) -> None:
    """Without a practices file, every practice named in the other tables, with default attributes.

    (When a file was given but could not be read, its error is already reported.)
    """
    if not file_given:
        for s in specs:
            if s.name != "practice_id" and s.required and s.default is None:
                probs.add(error("E0703", f"no practices file was given, but column {s.name!r} "
                                         f"({KIND_WORD[s.kind]}) is needed by {s.needed_by}",
                                hint="pass --practices FILE with a practice_id column and this column"))
    cols = ", ".join(f"{_lit(s.default, s.kind)} AS {quote_name(s.name)}" for s in specs if s.name != "practice_id")
    fetch_all(con, "CREATE TABLE practices AS SELECT CAST(NULL AS BIGINT) AS _row, practice_id"
            + (f", {cols}" if cols else "")
            + " FROM (SELECT practice_id FROM members UNION SELECT practice_id FROM events "
                  "UNION SELECT practice_id FROM measures) WHERE practice_id IS NOT NULL ORDER BY practice_id")



def load_table(panel: Panel, table: str, path: str | Path, specs: list[ColumnSpec],
               options: ReadOptions | None = None) -> list[Diagnostic]:
    """Read one more file into a loaded panel's connection as the typed table `table` (a remittance),
    with the checks every panel table gets: each value typed per its spec, a bad or missing value
    reported with its file, row and column. Raises InputError; returns the warnings."""
    options = options or ReadOptions()
    check_options(options)
    path, sheet = split_sheet(path)
    if sheet is not None and options.sheet is None:
        options = dataclasses.replace(options, sheet=sheet)
    probs = Problems()
    raw = read_panel_table(panel.con, table, path, detect_format(path, options.format), probs, options)
    if raw is not None:
        rules = _text_rules(panel.con, table, raw, options, specs, probs)
        if raw.imprecise or raw.error_cells:
            _report_cells(raw, specs, probs, panel.show_ids)
        _type_table(panel.con, table, raw, specs, probs, panel.show_ids, rules)
        for stmt in raw.drop():
            fetch_all(panel.con, stmt)
    if probs.errors:
        raise InputError(probs.errors + probs.warnings)
    panel.kinds[table] = {"_row": "integer", **{s.name: s.kind for s in specs}}
    return probs.warnings
