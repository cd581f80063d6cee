"""The panel loader's checks (capdsl/data/panel.py) as Spark SQL, for tables that already live in a
cluster (`spark_engine.run`).

`capdsl eval --engine spark` validates its files with the DuckDB loader before Spark sees them;
tables handed to `run` were never loaded. Unchecked, a duplicated member is paid twice and the
members of a practice the practices table does not know are left unpaid, without a word. So the
loader's checks run here over the cluster's tables, with the loader's codes and messages where the
meaning is the same. A cluster table has no row numbers: a member is named by its redacted id
(`id:3f9a2c`, as the loader names it), a practice by its id, and a message says how many rows it
covers.

Two steps:
  * the tables' columns and types, from their schemas (no data is read): a missing column the
    contract needs (E0703), a column of another type than the contract reads (E0704: a DOUBLE where
    money must be exact). A column with a default that is missing, or NULL, gets the default, as the
    loader gives it to a file, in a temporary view over the table;
  * the data: one aggregate query per table counts every problem (empty required values,
    duplicated ids, orphan practices, enrolment ending before it starts, birth dates, negative
    quantities, undeclared measures; bad measure rows too when the query does not refuse them
    itself); only a problem found costs a second query, for its first offenders. The caller may
    skip this step (`checks=False`), promising the tables pass it.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Callable

from capdsl.data.panel import KIND_WORD, plural, redact_id
from capdsl.data.read import LIMIT, Problems
from capdsl.data.requirements import ALWAYS_READ, CANONICAL, ColumnSpec, Requirements, columns_for, requirements
from capdsl.errors import Diagnostic, InputError, error, warning
from capdsl.evaluation.periods import Period
from capdsl.sql.query import Options

_SPARK_TYPE = {"bool": "BOOLEAN", "text": "STRING", "date": "DATE", "integer": "BIGINT",
               "decimal": "DECIMAL(38, 10)"}
_INTEGERS = ("tinyint", "smallint", "int", "bigint")
_DECIMAL = re.compile(r"decimal\((\d+),\s*(\d+)\)")
MAX_SCALE = 12  # the compiled SQL computes in DECIMAL(38, 12)
_PERIOD = "'^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$'"
_PERIOD_HINT = ("periods are written 2011-03 (month), 2011-Q2 (quarter) or 2011 (year); the query matches "
                "the text exactly (2011-Q2, not 2011-q2)")
_VALUE_HINTS = {
    "date": "dates are written YYYY-MM-DD, e.g. 2011-03-01",
    "decimal": "write numbers with a dot for decimals, at most 10 decimal places, no units; the query casts "
               "the text, so a percentage is written 0.15, not 15%",
    "integer": "write a whole number, e.g. 3",
    "bool": "write true or false (1/0 and yes/no are accepted too)",
}


#: Turns a failure of Spark's, and what was being done ("reading the members table t"), into the
#: error to raise.
Failure = Callable[[BaseException, str], BaseException]


def _as_is(exc: BaseException, doing: str) -> BaseException:
    return exc


def _text(exc: BaseException) -> str:
    """An exception's text, or "" when it cannot be had (a py4j error asks the JVM, which may be gone)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return ""


def _blank(c: str) -> str:
    """Spark SQL: the text `c` as the loader reads it, trimmed, a blank text empty (NULL)."""
    return f"NULLIF(trim({c}), '')"


@dataclass
class Prepared:
    """What `prepare` hands the query: table names (views where defaults were added), the options
    (practices derived when no practices table is given) and the checks' warnings."""

    tables: dict[str, str]
    options: Options
    warnings: list[Diagnostic] = field(default_factory=list)


@dataclass
class _Table:
    table: str  # members | practices | events | measures
    given: str  # as the caller named it: what messages call it
    source: str  # SQL for FROM
    columns: dict[str, tuple[str, str]]  # lower-case name -> (name as the table has it, Spark type)
    specs: list[ColumnSpec]  # the columns the query reads, with the contract's needs


def source_sql(given: str) -> tuple[str, str]:
    """(the name the compiled query takes, SQL for FROM) of a table as a caller names it: a catalog
    table or view, or a Parquet path (`/data/members`, `s3://b/m.parquet` or ``parquet.`/data/m` ``)."""
    found = re.fullmatch(r"parquet\.`(.*)`", given.strip(), re.S)
    if found:
        given = found.group(1).replace("``", "`")
    if given.lower().endswith((".parquet", ".pq")) or "/" in given:
        return given, "parquet.`" + given.replace("`", "``") + "`"
    return given, given


def prepare(spark, program, tables: dict[str, str], options: Options, period: Period, *, today: date | None = None,
            show_ids: bool = False, scan: bool = True, sql: Callable[[str], list] | None = None,
            failure: Failure | None = None) -> Prepared:
    """Check the tables for `program` (raising the loader's InputError) and prepare them for its
    query. `scan=False` checks only the schemas. `sql` runs a query and returns its rows (default:
    `spark.sql(...).collect()`). `failure` turns a failure of Spark's, and what was being done, into
    the error to raise (the engine's translation of Spark's errors; default: the failure itself)."""
    run_sql = sql or (lambda text: [tuple(r) for r in spark.sql(text).collect()])
    fail = failure or _as_is
    reqs = requirements(program)
    probs = Problems()
    unknown = sorted(set(tables) - {"members", "practices", "events", "measures"})
    if unknown:
        raise ValueError(f"unknown panel tables: {', '.join(unknown)}")
    if "members" not in tables:
        raise InputError(error("E0701", "no members table was given",
                               hint='tables={"members": "catalog.schema.members", …}'))
    if "practices" not in tables:
        options = replace(options, practices="derive")
    out: dict[str, str] = {}
    found: dict[str, _Table] = {}
    for name in ("members", "practices", "events", "measures"):
        specs = _specs(name, reqs, options)
        if name not in tables:
            if name in ("events", "measures"):
                out[name] = _view(spark, name, _empty(specs), fail)
                reads = reqs.needs_events if name == "events" else reqs.needs_measures
                if reads:
                    probs.add(warning("W0718", f"no {name} table was given; the contract reads {name}, "
                                               "which count as empty", hint=f'add "{name}": TABLE to the tables'))
            continue
        query_name, src = source_sql(tables[name])
        columns = _schema(spark, name, tables[name], src, probs, fail)
        if columns is None:
            continue
        table = _Table(name, tables[name], src, columns, specs)
        view = _shape(table, probs)
        out[name] = _view(spark, name, view, fail) if view else query_name
        if view:
            table.source = out[name]
        found[name] = table
    if probs.errors:
        raise InputError(probs.errors + probs.warnings)
    if scan:
        _Scan(run_sql, found, reqs, options, probs, today or date.today(), period.start, show_ids).run()
        if probs.errors:
            raise InputError(probs.errors + probs.warnings)
    return Prepared(out, options, probs.warnings)


# ───────────────────────────── schemas ─────────────────────────────

def _specs(name: str, reqs: Requirements, options: Options) -> list[ColumnSpec]:
    """The columns of `name` the query reads: the standard ones and the contract's."""
    if name == "measures":
        specs = list(CANONICAL["measures"])
        if options.measure_values == "text":
            return specs
        kinds = sorted({m.kind for m in reqs.measures.values()} - {"text"})
        needed = "Options(measure_values='typed')"
        return specs + [ColumnSpec(f"value_{k}", k, True, None, needed) for k in kinds]
    declared = {c.name for c in getattr(reqs, name)}
    specs = [s for s in columns_for(name, reqs) if s.name in ALWAYS_READ[name] or s.name in declared]
    if options.row_column and name in ("members", "events"):
        specs.append(ColumnSpec(options.row_column, "integer", True, None,
                                f"Options(row_column={options.row_column!r})"))
    return specs


def _schema(spark, name: str, given: str, src: str, probs: Problems,
            fail: Failure) -> dict[str, tuple[str, str]] | None:
    """The table's columns (no data read); None, with E0701, when Spark cannot find it."""
    try:
        fields = spark.sql(f"SELECT * FROM {src}").schema.fields
    except Exception as exc:  # noqa: BLE001 - AnalysisException and py4j errors: a located error
        if re.search(r"TABLE_OR_VIEW_NOT_FOUND|PATH_NOT_FOUND|Path does not exist", _text(exc)):
            probs.add(error("E0701", f"no such {name} table: {given}", path=given,
                            hint="check the name (catalog.schema.table) or the Parquet path"))
            return None
        raise fail(exc, f"reading the {name} table {given}") from None
    return {f.name.lower(): (f.name, f.dataType.simpleString().lower()) for f in fields}


def _fits(kind: str, typ: str) -> bool:
    """Can the query read a column of Spark type `typ` as a value of `kind`, exactly?"""
    if kind == "text":
        return typ == "string" or typ.startswith(("varchar", "char"))
    if kind == "date":
        return typ == "date"
    if kind == "bool":
        return typ == "boolean"
    scale = _DECIMAL.fullmatch(typ)
    if kind == "integer":
        return typ in _INTEGERS or bool(scale and scale.group(2) == "0")
    return typ in _INTEGERS or bool(scale and int(scale.group(2)) <= MAX_SCALE)


def _expected(kind: str) -> str:
    return {"text": "STRING", "date": "DATE", "bool": "BOOLEAN", "integer": "an integer type",
            "decimal": f"DECIMAL with at most {MAX_SCALE} decimal places, or an integer type"}[kind]


def _shape(table: _Table, probs: Problems) -> str | None:
    """Check the columns; the SELECT of a view that gives missing or NULL columns their defaults, or
    None when the table serves as it is."""
    have = table.columns
    exprs = [_ident(real) for real, _ in have.values()]
    needs_view = False
    for spec in table.specs:
        col = have.get(spec.name.lower())
        if col is None:
            if spec.default is not None or not spec.required:
                exprs.append(f"{_lit(spec.default, spec.kind)} AS `{spec.name}`")
                needs_view = True
            else:
                probs.add(_missing(table, spec))
            continue
        real, typ = col
        if not _fits(spec.kind, typ):
            cast = _SPARK_TYPE[spec.kind] if spec.kind != "decimal" or typ not in ("double", "float") \
                else "DECIMAL(38, 10)"
            why = "; floating point is not exact" if typ in ("double", "float") else ""
            probs.add(error("E0704", f"column {spec.name} is {typ.upper()}, not a {KIND_WORD[spec.kind]} "
                                     f"({_expected(spec.kind)}), needed by {spec.needed_by}{why}",
                            path=table.given,
                            hint=f"cast it in a view over the table: CAST({real} AS {cast}) AS {spec.name}"))
            continue
        if spec.default is not None:
            exprs[list(have).index(spec.name.lower())] = \
                f"COALESCE({_ident(real)}, {_lit(spec.default, spec.kind)}) AS {_ident(real)}"
            needs_view = True
    return f"SELECT {', '.join(exprs)} FROM {table.source}" if needs_view else None


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _missing(table: _Table, spec: ColumnSpec) -> Diagnostic:
    names = [real for real, _ in table.columns.values()]
    close = difflib.get_close_matches(spec.name, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else (
        f"the table's columns are: {', '.join(names[:15])}{' …' if len(names) > 15 else ''}")
    return error("E0703", f"the {table.table} table has no column {spec.name!r} ({KIND_WORD[spec.kind]}), "
                          f"needed by {spec.needed_by}", path=table.given, hint=hint)


def _lit(value, kind: str) -> str:
    """A Spark SQL literal of `kind`."""
    if value is None:
        return f"CAST(NULL AS {_SPARK_TYPE[kind]})"
    if kind == "bool":
        return "TRUE" if value else "FALSE"
    if kind == "date":
        return f"DATE '{value.isoformat() if isinstance(value, date) else value}'"
    if kind in ("decimal", "integer"):
        return f"CAST('{Decimal(str(value))}' AS {_SPARK_TYPE[kind]})"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _empty(specs: list[ColumnSpec]) -> str:
    return "SELECT " + ", ".join(f"{_lit(None, s.kind)} AS `{s.name}`" for s in specs) + " LIMIT 0"


def _view(spark, name: str, select: str, fail: Failure) -> str:
    """A temporary view of `select`, named by its text (the same tables give the same view)."""
    view = f"capdsl_{name}_" + hashlib.sha256(select.encode("utf-8")).hexdigest()[:12]
    try:
        spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {view} AS {select}")
    except Exception as exc:  # noqa: BLE001
        raise fail(exc, f"preparing the {name} table") from None
    return view


# ───────────────────────────── the data ─────────────────────────────

@dataclass
class _Check:
    """One count in a table's aggregate query and, when it counts anything, how its offenders are
    listed: rows matching `where`, grouped by `keys` (the table's own unless given)."""

    code: str
    what: str  # "… and N more <what>"
    count: str  # an aggregate over the table: > 0 when the problem is present
    where: str
    describe: Callable[[tuple], str]  # (keys…, rows, extra) -> message
    hint: str | None = None
    keys: list[str] | None = None
    extra: str | None = None  # an expression whose smallest value in the group the message shows
    extra_number: bool = False  # compared as a number (else as text)
    having: str | None = None  # written on the group's count(*)
    listed: bool = True  # False: the count alone is the message (describe gets (count,))


class _Scan:
    """The checks across rows and tables, as Spark SQL aggregates."""

    def __init__(self, sql, tables: dict[str, _Table], reqs: Requirements, options: Options, probs: Problems,
                 today: date, ref_day: date, show_ids: bool) -> None:
        self.sql, self.tables, self.reqs, self.options, self.probs = sql, tables, reqs, options, probs
        self.today, self.ref_day, self.show_ids = today, ref_day, show_ids
        self.with_practices = "practices" in tables and options.practices == "table"
        self.known = "practices" if self.with_practices else "members"  # the practices events may name

    def rid(self, value) -> str:
        return redact_id(value, self.show_ids)

    def run(self) -> None:
        m = self.tables["members"]
        known = self.known
        known_sql = (f"(SELECT DISTINCT practice_id AS id FROM {self.tables[known].source} "
                     f"WHERE practice_id IS NOT NULL)")
        against = f"the {known} table {self.tables[known].given}"
        joins = f" LEFT JOIN {known_sql} k ON t.practice_id = k.id" if self.with_practices else ""
        n_members = self.table(m, self.member_checks(against), joins, "count(*)")
        if n_members == 0:
            self.probs.add(error("E0702", "the members table has no rows", path=m.given))
        if self.with_practices:
            self.table(self.tables["practices"], self.practice_checks())
        if "events" in self.tables:
            e = self.tables["events"]
            joins = f" LEFT JOIN {known_sql} k ON t.practice_id = k.id"
            has_member = "member_id" in e.columns
            if has_member:
                joins += (f" LEFT JOIN (SELECT DISTINCT {_blank('member_id')} AS id FROM {m.source}) "
                          f"mm ON {_blank('t.member_id')} = mm.id")
            self.table(e, self.event_checks(against, has_member), joins)
        if "measures" in self.tables:
            self.table(self.tables["measures"], self.measure_checks(against),
                       f" LEFT JOIN {known_sql} k ON t.practice_id = k.id")

    # per table: the keys that name its rows in messages, and how they read

    def who(self, table: str, row: tuple) -> str:
        """How a message names a group of rows of `table` by its keys (`row`: keys…, row count)."""
        n = row[-1]
        if table == "members":
            if row[0] is None:
                return f"{plural(n, 'row')} without a member_id"
            return f"member {self.rid(row[0])}" + (f" ({n} rows)" if n > 1 else "")
        if table == "practices":
            return f"practice {row[0]!r}" + (f" ({n} rows)" if n > 1 else "")
        if table == "events":
            pid = f"practice {row[0]!r}" if row[0] is not None else "no practice"
            return f"{plural(n, 'event')} of {pid} with code {row[1]!r}"
        what = f"measure {row[1]!r} of practice {row[0]!r}"
        return what + (f" for {row[2]}" if row[2] is not None else "") + (f" ({n} rows)" if n > 1 else "")

    # text is read trimmed, a blank text as empty (the loader's rule); practice ids as stored, as the
    # query matches them
    _KEYS = {"members": [_blank("t.member_id")], "practices": ["t.practice_id"],
             "events": ["t.practice_id", _blank("t.code")],
             "measures": ["t.practice_id", _blank("t.measure"), _blank("t.period")]}

    def required(self, table: _Table) -> list[_Check]:
        """E0705: an empty value in a required column (one without a default)."""
        out = []
        keys = [re.sub(r".*t\.(\w+).*", r"\1", k) for k in self._KEYS[table.table]]
        for spec in table.specs:
            if not spec.required or spec.default is not None or spec.name.startswith("value_"):
                continue
            c = _blank(f"t.`{spec.name}`") if spec.kind == "text" else f"t.`{spec.name}`"
            message = f"column {spec.name} is empty; it is required (needed by {spec.needed_by})"
            if spec.name in keys:  # the rows cannot be named by what they lack
                out.append(_Check("E0705", f"rows with an empty {spec.name}", f"count_if({c} IS NULL)", "",
                                  lambda r, msg=message: f"{plural(r[0], 'row')}: {msg}", listed=False))
            else:
                out.append(_Check("E0705", f"rows with an empty {spec.name}", f"count_if({c} IS NULL)",
                                  f"{c} IS NULL", lambda r, t=table.table, msg=message: f"{self.who(t, r)}: {msg}"))
        return out

    def orphans(self, table: _Table, against: str) -> _Check:
        orphan = f"{_blank('t.practice_id')} IS NOT NULL AND k.id IS NULL"
        return _Check("E0707", "unknown practices", f"count_if({orphan})", orphan,
                      lambda r: f"practice_id {r[0]!r} ({plural(r[1], 'row')}) is not in {against}",
                      hint=f"add the practice to the {self.known} table or correct the practice_id",
                      keys=["t.practice_id"])

    def duplicates(self, table: _Table, keys: list[str], label: Callable[[tuple], str]) -> _Check:
        """E0706 for `keys` (SQL expressions) that appear more than once."""
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys)
        return _Check("E0706", f"duplicated {table.table} keys",
                      f"count_if({not_null}) - count(DISTINCT {', '.join(keys)})", not_null,
                      lambda r: f"{label(r)} appears {r[len(keys)]} times",
                      hint="each key must appear once; remove or merge the duplicated rows",
                      keys=keys, having="count(*) > 1")

    def member_checks(self, against: str) -> list[_Check]:
        m = self.tables["members"]
        checks = self.required(m)
        checks.append(self.duplicates(m, [_blank("t.member_id")], lambda r: f"member_id {self.rid(r[0])}"))
        if self.with_practices:
            checks.append(self.orphans(m, against))
        today = self.today
        checks.append(_Check("E0708", "future birth dates", f"count_if(t.birth_date > DATE '{today}')",
                             f"t.birth_date > DATE '{today}'",
                             lambda r: f"{self.who('members', r)} has a birth date after {today}",
                             hint="a birth date cannot be in the future; check the date"))
        checks.append(_Check("E0713", "rows ending enrolment before it starts",
                             "count_if(t.enrolled_to < t.enrolled_from)", "t.enrolled_to < t.enrolled_from",
                             lambda r: f"{self.who('members', r)} has enrolled_to before enrolled_from",
                             hint="enrolled_from and enrolled_to are both inclusive; enrolled_to must not be "
                                  "earlier"))
        ref = self.ref_day
        oldest = date(ref.year - 110, ref.month, 28 if (ref.month, ref.day) == (2, 29) else ref.day)
        checks.append(_Check("W0714", "members aged 110 or over", f"count_if(t.birth_date <= DATE '{oldest}')",
                             f"t.birth_date <= DATE '{oldest}'",
                             lambda r: f"{self.who('members', r)} is aged 110 or over on {ref}",
                             hint="check the birth date; the member is kept"))
        return checks

    def practice_checks(self) -> list[_Check]:
        p = self.tables["practices"]
        return self.required(p) + [self.duplicates(p, ["t.practice_id"], lambda r: f"practice_id {r[0]!r}")]

    def event_checks(self, against: str, has_member: bool) -> list[_Check]:
        e = self.tables["events"]
        checks = self.required(e) + [self.orphans(e, against)]
        for col in ("quantity", "points"):
            if col in e.columns and any(s.name == col for s in e.specs):
                checks.append(_Check("E0709", f"negative {col}", f"count_if(t.`{col}` < 0)", f"t.`{col}` < 0",
                                     lambda r, c=col: f"{self.who('events', r[:-1])}: {c} is negative "
                                                      f"({Decimal(r[-1]).normalize():f})",
                                     hint="quantities and points cannot be negative; write corrections as their "
                                          "own codes", extra=f"t.`{col}`", extra_number=True))
        if has_member:
            checks.append(_Check("W0715", "events naming unknown members",
                                 f"count_if({_blank('t.member_id')} IS NOT NULL AND mm.id IS NULL)",
                                 f"{_blank('t.member_id')} IS NOT NULL AND mm.id IS NULL",
                                 lambda r: f"member {self.rid(r[0])} ({plural(r[1], 'event')}) is not in the "
                                           f"members table", hint="the event is kept and paid to its practice",
                                 keys=[_blank("t.member_id")]))
        return checks

    def measure_checks(self, against: str) -> list[_Check]:
        """Orphans and undeclared measures; and, unless the query reads the measures as the loader
        does (`Options.inputs == "warehouse"`: it stops on such rows itself), the rows the query
        would misread: duplicates, empty values, bad periods and values."""
        q = self.tables["measures"]
        measure = _blank("t.measure")
        warehouse = getattr(self.options, "inputs", "checked") == "warehouse"
        checks = [] if warehouse else self.required(q)
        if not warehouse:
            checks.append(self.duplicates(q, ["t.practice_id", "t.period", "t.measure"],
                                          lambda r: f"measure {r[2]!r} of practice {r[0]!r} for {r[1]}"))
        checks.append(self.orphans(q, against))
        declared = sorted(self.reqs.measures)
        if not warehouse:
            bad_period = (f"t.period IS NOT NULL AND NOT (t.period RLIKE {_PERIOD} AND "
                          f"try_cast(substr(t.period, 1, 4) AS INT) BETWEEN 1800 AND 2999)")
            checks.append(_Check("E0704", "rows with a bad period", f"count_if({bad_period})", bad_period,
                                 lambda r: f"measure {r[1]!r} of practice {r[0]!r}: {r[2]!r} is not a period",
                                 hint=_PERIOD_HINT, keys=["t.practice_id", "t.measure", "t.period"]))
        if not warehouse and self.options.measure_values == "text":
            for name in declared:
                kind, needed_by = self.reqs.measures[name].kind, self.reqs.measures[name].needed_by
                if kind == "text":
                    continue
                cond = f"t.measure = {_lit(name, 'text')} AND t.value IS NOT NULL AND NOT {_valid('t.value', kind)}"
                checks.append(_Check(
                    "E0704", f"bad values of measure {name}", f"count_if({cond})", cond,
                    lambda r, k=kind, d=needed_by: f"{self.who('measures', r[:-1])}: {r[-1]!r} is not a valid "
                                                   f"{KIND_WORD[k]}" + (f" (declared at {d})" if d else ""),
                    hint=_VALUE_HINTS[kind], extra="t.value"))
        listed = ", ".join(_lit(n, "text") for n in declared)
        undeclared = f"{measure} IS NOT NULL" + (f" AND {measure} NOT IN ({listed})" if declared else "")
        checks.append(_Check("W0712", "undeclared measures", f"count_if({undeclared})", undeclared,
                             self.undeclared, keys=[measure]))
        return checks

    def undeclared(self, row: tuple) -> str:
        name, n = row[0], row[1]
        close = difflib.get_close_matches(name, list(self.reqs.measures), n=1)
        return (f"measure {name!r} ({plural(n, 'row')}) is not declared by the contract and is ignored"
                + (f"; did you mean {close[0]!r}?" if close else ""))

    def table(self, table: _Table, checks: list[_Check], joins: str = "", first: str | None = None):
        """Count every check in one aggregate query, then list the first offenders of those that
        found any in one more. Returns the value of the aggregate `first` (asked for in the same
        query), if given."""
        aggs = ([first] if first else []) + [ch.count for ch in checks]
        frm = f"{table.source} t{joins}"
        counts = self.sql(f"SELECT {', '.join(aggs)} FROM {frm}")[0]
        value, counts = (counts[0], counts[1:]) if first else (None, counts)
        found = [(check, n) for check, n in zip(checks, counts) if n]
        listed = [check for check, _ in found if check.listed]
        rows = self.offenders(table, listed, frm) if listed else {}
        for check, n in found:
            severity = "warning" if check.code.startswith("W") else "error"
            if not check.listed:
                make = error if severity == "error" else warning
                self.probs.add(make(check.code, check.describe((n,)), path=table.given, hint=check.hint))
            elif rows.get(id(check)):
                those = rows[id(check)]
                self.probs.rows(check.code, table.given, [r[:-1] for r in those], those[0][-1], check.what,
                                check.describe, severity, check.hint)
        return value

    def offenders(self, table: _Table, checks: list[_Check], frm: str) -> dict[int, list[tuple]]:
        """The first `LIMIT` groups of offending rows of each check, in one scan: every offending row
        becomes a (check, keys as text padded to three, extra) record, grouped and ranked per check.
        Returns id(check) -> rows of (keys…, count[, extra], groups)."""
        records = []
        for i, check in enumerate(checks):
            keys = check.keys or self._KEYS[table.table]
            cols = [f"CAST({k} AS STRING)" for k in keys] + ["CAST(NULL AS STRING)"] * (3 - len(keys))
            text, number = "CAST(NULL AS STRING)", "CAST(NULL AS DECIMAL(38, 12))"
            if check.extra and check.extra_number:
                number = f"CAST({check.extra} AS DECIMAL(38, 12))"
            elif check.extra:
                text = f"CAST({check.extra} AS STRING)"
            records.append(f"IF({check.where}, named_struct('i', {i}, 'k1', {cols[0]}, 'k2', {cols[1]}, "
                           f"'k3', {cols[2]}, 'xt', {text}, 'xn', {number}), NULL)")
        having = " OR ".join(f"(s.i = {i} AND NOT ({ch.having}))" for i, ch in enumerate(checks) if ch.having)
        found = self.sql(
            "SELECT i, k1, k2, k3, n, xt, xn, g FROM (SELECT *, count(*) OVER (PARTITION BY i) AS g, "
            "row_number() OVER (PARTITION BY i ORDER BY k1, k2, k3) AS r FROM ("
            "SELECT s.i, s.k1, s.k2, s.k3, count(*) AS n, min(s.xt) AS xt, min(s.xn) AS xn FROM ("
            f"SELECT explode(filter(array({', '.join(records)}), v -> v IS NOT NULL)) AS s FROM {frm}) "
            "GROUP BY s.i, s.k1, s.k2, s.k3" + (f" HAVING NOT ({having})" if having else "")
            + f")) WHERE r <= {LIMIT} ORDER BY i, r")
        out: dict[int, list[tuple]] = {}
        for i, k1, k2, k3, n, text, number, groups in found:
            check = checks[i]
            width = len(check.keys or self._KEYS[table.table])
            extra = ((number if check.extra_number else text),) if check.extra else ()
            out.setdefault(id(check), []).append((k1, k2, k3)[:width] + (n,) + extra + (groups,))
        return out


def _valid(v: str, kind: str) -> str:
    """Spark SQL: the text `v` is a value the compiled query's cast reads as `kind`, as the loader
    would read it (at most 10 decimal places; dates written YYYY-MM-DD)."""
    if kind == "date":
        return f"({v} RLIKE '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$' AND try_cast({v} AS DATE) IS NOT NULL)"
    if kind == "decimal":
        return (f"(try_cast({v} AS DECIMAL(38, 12)) IS NOT NULL AND {v} RLIKE '^ *[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+) *$'"
                f" AND NOT {v} RLIKE '[.][0-9]{{10}}0*[1-9]')")
    if kind == "integer":
        return f"(try_cast({v} AS BIGINT) IS NOT NULL)"
    if kind == "bool":
        return f"(lower({v}) IN ('true', 'false', '1', '0', 'yes', 'no'))"
    return "TRUE"
