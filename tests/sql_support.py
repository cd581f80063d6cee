"""Shared helpers for the SQL backend tests: hand-built programs and one
panel held both as interpreter `Rows` and as typed DuckDB tables shaped
like `panel.Panel`'s (so no test depends on the loader)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import duckdb
import pyarrow as pa

from capdsl.evaluation import tree as t
from capdsl.evaluation.interpret import Rows

D = Decimal
DEC = "DECIMAL(38,10)"
_TYPE = {"bool": "BOOLEAN", "text": "VARCHAR", "date": "DATE", "integer": "BIGINT", "decimal": DEC}


def program(lines, definitions=None, *, exposure="first_day", age_rule="month_start", mode="half_up",
            quantum="0.01", columns=(), measures=None, params=None, order=None) -> t.Program:
    lines = tuple(lines)
    return t.Program(
        name="test", path="t.cap", currency="CZK", age_rule=age_rule, exposure=exposure, rounding_mode=mode,
        quantum=D(quantum), report_currency=None, report_rate=None, definitions=dict(definitions or {}),
        lines=lines, line_order=tuple(order or [line.name for line in lines]), columns=tuple(columns),
        measures={k: v if isinstance(v, t.MeasureDecl) else t.MeasureDecl(*v) for k, v in (measures or {}).items()},
        params={k: v if isinstance(v, t.ParamDecl) else t.ParamDecl(*v) for k, v in (params or {}).items()})


def line(name, amount, applies=None, basis=None, kind="line", installments=()):
    return t.LineDef(name, name.title(), kind, amount, applies, None, basis, None, tuple(installments))


def c(value, kind="decimal"):
    return t.Const(D(str(value)) if kind == "decimal" else value, kind)


def mcol(name, kind="decimal"):
    return t.Col("member", name, kind)


def pcol(name, kind="decimal"):
    return t.Col("practice", name, kind)


AGE = t.Col("member", "age", "integer")


def ar(op, a, b):
    return t.Arith(op, a, b)


def sum_members(expr, where=None):
    return t.Agg("sum", "members", expr, where)


def count_members(where=None):
    return t.Agg("count", "members", None, where)


@dataclass
class Panel:
    """Typed rows; `.rows()` for the interpreter, `.duckdb()` for the SQL engines."""

    members: list = field(default_factory=list)
    practices: list = field(default_factory=list)
    events: list = field(default_factory=list)
    measures: list = field(default_factory=list)  # (practice_id, period, measure, value)
    member_attrs: dict = field(default_factory=dict)  # name -> kind
    practice_attrs: dict = field(default_factory=dict)
    event_attrs: dict = field(default_factory=dict)
    measure_kinds: dict = field(default_factory=dict)

    def member(self, mid, pid, born, start=None, end=None, **attrs):
        self.members.append({"member_id": mid, "practice_id": pid, "birth_date": born, "enrolled_from": start,
                             "enrolled_to": end, "_row": len(self.members) + 2, "_label": "id hidden", **attrs})

    def practice(self, pid, **attrs):
        self.practices.append({"practice_id": pid, **attrs})

    def event(self, pid, day, code, points=None, quantity=1, member_id=None, **attrs):
        self.events.append({"practice_id": pid, "member_id": member_id, "date": day, "code": code,
                            "points": None if points is None else D(str(points)), "quantity": D(str(quantity)),
                            "_row": len(self.events) + 2, **attrs})

    def rows(self) -> Rows:
        return Rows([dict(p) for p in self.practices], [dict(m) for m in self.members],
                    [dict(e) for e in self.events], list(self.measures))

    def duckdb(self, con=None):
        con = con or duckdb.connect()
        mcols = {"_row": "BIGINT", "member_id": "VARCHAR", "practice_id": "VARCHAR", "birth_date": "DATE",
                 "sex": "VARCHAR", "enrolled_from": "DATE", "enrolled_to": "DATE",
                 **{k: _TYPE[v] for k, v in self.member_attrs.items()}}
        pcols = {"_row": "BIGINT", "practice_id": "VARCHAR", **{k: _TYPE[v] for k, v in self.practice_attrs.items()}}
        ecols = {"_row": "BIGINT", "practice_id": "VARCHAR", "member_id": "VARCHAR", "date": "DATE",
                 "code": "VARCHAR", "points": DEC, "quantity": DEC, **{k: _TYPE[v] for k, v in self.event_attrs.items()}}
        qcols = {"_row": "BIGINT", "practice_id": "VARCHAR", "period": "VARCHAR", "measure": "VARCHAR",
                 "value": "VARCHAR", "value_bool": "BOOLEAN", "value_integer": "BIGINT", "value_decimal": DEC,
                 "value_date": "DATE"}
        measure_rows = []
        for i, (pid, period, name, value) in enumerate(self.measures):
            kind = self.measure_kinds.get(name, "decimal")
            row = {"_row": i + 2, "practice_id": pid, "period": period, "measure": name,
                   "value": None if value is None else str(value)}
            if kind != "text":
                row[f"value_{kind}"] = value
            measure_rows.append(row)
        for name, cols, rows in (("members", mcols, self.members), ("practices", pcols, self.practices),
                                 ("events", ecols, self.events), ("measures", qcols, measure_rows)):
            data = {k: [r.get(k) if k != "_row" else r.get("_row", i + 2) for i, r in enumerate(rows)] for k in cols}
            arrow = pa.table({k: pa.array(v, type=pa.string() if cols[k] == "VARCHAR" else None) if v else
                              pa.array([], pa.string()) for k, v in data.items()})
            con.register("_src", arrow)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT "
                        + ", ".join(f"CAST({k} AS {v}) AS {k}" for k, v in cols.items()) + " FROM _src")
            con.unregister("_src")
        return con


MARCH = date(2011, 3, 1)


# ─────────────────────────────── PostgreSQL ───────────────────────────────

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _pg_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if versions:
        return versions[0]
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and (Path(found).parent / "psql").exists() else None


class Postgres:
    """A throwaway PostgreSQL cluster under /tmp on a loopback port, driven through `psql`."""

    def __init__(self):
        self.bin = _pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl, psql) are not installed "
                               "(apt-get install postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="capdsl-pg-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")

    def _run(self, *args, **kw):
        return subprocess.run([*self.as_user, *map(str, args)], capture_output=True, text=True, **kw)

    def start(self):
        data = self.dir / "data"
        out = self._run(self.bin / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        if out.returncode:
            raise RuntimeError(out.stderr)
        out = self._run(self.bin / "pg_ctl", "-D", data, "-l", self.dir / "log", "-w", "-o",
                        f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        if out.returncode:
            raise RuntimeError(out.stderr + out.stdout)
        return self

    def stop(self):
        self._run(self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, sql: str, cwd=None) -> list[list[str | None]]:
        """Run SQL (from `cwd`, for `\\copy`'s relative paths); rows of text values (None for NULL).
        Errors raise RuntimeError with psql's message."""
        path = self.dir / f"q{abs(hash(sql))}.sql"
        path.write_text(sql)
        out = subprocess.run([self.bin / "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
                              "postgres", "-X", "-q", "-A", "-t", "-F", "\t", "-P", "null=\\N", "-v", "ON_ERROR_STOP=1",
                              "-f", str(path)], capture_output=True, text=True, cwd=cwd)
        path.unlink()
        if out.returncode:
            raise RuntimeError(out.stderr.strip())
        return [[None if v == "\\N" else v for v in line.split("\t")] for line in out.stdout.splitlines() if line]

    def load(self, panel: Panel) -> None:
        """The panel's typed tables, as `Panel.duckdb` creates them."""
        con = panel.duckdb()
        statements = []
        for table in ("members", "practices", "events", "measures"):
            desc = con.execute(f"DESCRIBE {table}").fetchall()
            cols = ", ".join(f"{name} {typ.replace('VARCHAR', 'TEXT')}" for name, typ, *_ in desc)
            statements.append(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({cols});")
            for row in con.execute(f"SELECT * FROM {table}").fetchall():
                values = ", ".join("NULL" if v is None else (("TRUE" if v else "FALSE") if isinstance(v, bool)
                                                              else "'" + str(v).replace("'", "''") + "'")
                                   for v in row)
                statements.append(f"INSERT INTO {table} VALUES ({values});")
        self.psql("\n".join(statements))


def pg_evaluate(pg: Postgres, prog, period, params=None, options=None):
    """Run the postgres-dialect SQL on `pg` and read it back like the DuckDB engine does (`options`:
    the tables' shape, by default a loaded panel's)."""
    from capdsl.sql.compile import Options, compile_query
    from capdsl.sql.engine import collect, translate

    if options is None:
        empty = pg.psql("SELECT count(*) FROM practices")[0][0] == "0"
        options = Options(practices="derive" if empty else "table")
    compiled = compile_query(prog, period, "postgres", params=params or {}, options=options)
    try:
        text_rows = pg.psql(compiled.sql())
    except RuntimeError as exc:
        raise translate(compiled.runnable(), exc) from None
    return collect(compiled, prog, long_rows(text_rows))


def long_rows(text_rows):
    """The long result's rows (`Compiled.sql`) typed from their text (psql, CSV)."""
    from datetime import date as _date

    rows = []
    for kind, pid, month, line_, quarter, amount, applied, basis in text_rows:
        rows.append((kind, pid, _date.fromisoformat(str(month)) if month else None, line_,
                     int(quarter) if quarter is not None else None, D(str(amount)) if amount is not None else None,
                     None if applied is None else applied in ("t", True), D(str(basis)) if basis is not None else None))
    return rows


def pool_dividing_by_a_monthly_line(leave: date | None):
    """A pool whose amount divides by a monthly line's amount. The language keeps monthly values
    out of a pool's amount (E0306), so in a checked contract every pool input is the same on every
    month's row; this evaluation tree makes one differ, to test that the SQL, which computes pools
    beside every month's row, evaluates a failing expression on December's row only."""
    cap = t.LineRef("cap")
    pool = line("pool", ar("/", t.YearSum(count_members()), cap), kind="pool",
                installments=(t.Installment(12, None, t.Cmp(">", ar("/", c(1), cap), c(0))),))
    prog = program([line("cap", sum_members(c(10))), pool])
    p = Panel()
    p.member("M1", "P1", date(1970, 1, 1), start=date(2011, 6, 1), end=leave)
    p.member("M2", "P1", date(1980, 1, 1), start=date(2011, 6, 1), end=leave)
    return prog, p
