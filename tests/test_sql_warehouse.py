"""The SQL `capdsl compile --sql` prints, run where a data team runs it: the sample panel loaded
into PostgreSQL, DuckDB and Spark exactly as docs/sql.md says (columns the contracts default left
out, CSV blanks as NULLs, measures as text), and the same files with columns removed, values
blanked and measures written `2011-q4`, `80%`, ` Yes `. Every amount must be the interpreter's on
the same files through the panel loader. BigQuery and Snowflake have no server here: their SQL is
parsed back and its division and rounding evaluated with each engine's documented decimal rules."""

from __future__ import annotations

import csv
import re
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import duckdb
import pytest
import sqlglot
from click.testing import CliRunner
from sqlglot import exp

from capdsl.language.builtins import STANDARD_COLUMNS
from capdsl.tools.cli import main
from capdsl.errors import InputError
from capdsl.evaluation.interpret import fix, round_to
from capdsl.data.panel import load_panel, parse_params
from capdsl.evaluation.periods import parse_period
from capdsl.pipeline import compile_file, requirements, run_engine
from capdsl.sql import compile_program
from capdsl.sql.compile import Options, compile_query
from capdsl.sql.engine import collect, translate
from sql_support import long_rows

D = Decimal
ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = sorted((ROOT / "contracts").glob("*.cap"))


def _runs_on_the_sample(contract: Path) -> bool:
    """Whether the sample panel has every column the contract needs without a default."""
    with open(ROOT / "examples" / "members.csv", newline="") as f:
        members = set(next(csv.reader(f)))
    _, prog = compile_file(contract)
    return all(c.name in members for c in prog.columns if c.table == "member" and c.required)


#: The contracts the sample panel can run; the others run on their own fixture panels below.
ON_SAMPLE = [c for c in CONTRACTS if _runs_on_the_sample(c)]
OWN_PANEL = [c for c in CONTRACTS if c not in ON_SAMPLE]
WAREHOUSE = Options(row_column=None, measure_values="text", inputs="warehouse")
TABLES = ("members", "practices", "events", "measures")


def docs_block(marker: str) -> str:
    """The SQL block of docs/sql.md after `<!-- marker… -->`: what the docs tell a data team to run."""
    text = (ROOT / "docs" / "sql.md").read_text()
    found = re.search(re.escape(f"<!-- {marker}") + r".*?-->\s*```sql\n(.*?)```", text, re.S)
    assert found, marker
    return found.group(1)


def column_types() -> dict[str, dict[str, str]]:
    """table -> column -> type, from the docs' CREATE TABLEs."""
    out = {}
    for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\);", docs_block("warehouse-ddl"), re.S):
        out[table] = dict(re.match(r"\s*(\w+)\s+(.*)", c).groups() for c in re.split(r",(?!\s*[0-9])", body))
    return out


def panel_dir(tmp: Path, edit=None) -> Path:
    """The sample panel's files, optionally changed by `edit(table, header, rows) -> (header, rows)`."""
    out = tmp / "panel"
    out.mkdir(parents=True)
    for table in TABLES:
        with open(ROOT / "examples" / f"{table}.csv", newline="") as f:
            header, *rows = list(csv.reader(f))
        if edit is not None:
            header, rows = edit(table, header, rows)
        with open(out / f"{table}.csv", "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    return out


_ORACLE: dict = {}


def oracle(prog, files: Path, period: str, sets=()):
    """The interpreter's result on the files through the panel loader, and the parameters (the
    sample panel's, once per contract and period: several engines compare with it)."""
    key = (prog.path, str(files), period, tuple(sets))
    if key not in _ORACLE or files != ROOT / "examples":
        _ORACLE[key] = _oracle(prog, files, period, sets)
    return _ORACLE[key]


def _oracle(prog, files: Path, period: str, sets=()):
    reqs = requirements(prog)
    panel = load_panel({t: str(files / f"{t}.csv") for t in TABLES if (files / f"{t}.csv").exists()}, reqs,
                       today=date(2012, 1, 1))
    params = parse_params(list(sets), None, reqs)
    return run_engine(prog, panel, parse_period(period), params, "python"), params


def same(got, want):
    assert (got.rows, got.pools, got.installments, got.practices) == \
        (want.rows, want.pools, want.installments, want.practices)


SQL_TYPE = {"text": "TEXT", "bool": "BOOLEAN", "integer": "BIGINT", "date": "DATE", "decimal": "DECIMAL(38, 10)"}


def create_tables(files: Path, schema: str, other: str = "DECIMAL(38, 10)", prog=None) -> str:
    """CREATE TABLEs for the files' own columns (the docs' types; for columns the sample panel does
    not have, the type `prog` declares them with, else `other`) in `schema`."""
    types = column_types()
    for c in prog.columns if prog is not None else ():
        types.setdefault(c.table + "s", {}).setdefault(c.name, SQL_TYPE[c.kind])
    out = [f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"]
    for table in TABLES:
        if (files / f"{table}.csv").exists():
            with open(files / f"{table}.csv", newline="") as f:
                header = next(csv.reader(f))
        else:  # a panel without this file: the table with its standard columns and no rows
            header = [c for c in types[table] if c in {s.name for s in STANDARD_COLUMNS[table]}]
        out.append(f"CREATE TABLE {schema}.{table} (" + ", ".join(f"{c} {types[table].get(c, other)}" for c in header)
                   + ");")
    return "\n".join(out)


def tables_in(schema: str) -> dict[str, str]:
    return {t: f"{schema}.{t}" for t in TABLES}


# ─────────────────────────────── PostgreSQL ───────────────────────────────

@pytest.fixture(scope="module")
def pg(pg):
    """The suite's server with the sample panel loaded by the docs' own statements."""
    pg.psql("CREATE SCHEMA sample; SET search_path TO sample;\n" + docs_block("warehouse-ddl"), cwd=ROOT)
    return pg


def load_pg(pg, files: Path, schema: str, prog=None) -> None:
    copies = "\n".join(f"\\copy {schema}.{t} FROM '{files / f'{t}.csv'}' WITH (FORMAT csv, HEADER true)"
                       for t in TABLES if (files / f"{t}.csv").exists())
    pg.psql(create_tables(files, schema, prog=prog) + "\n" + copies)


def run_pg(pg, prog, period: str, params, tables):
    compiled = compile_query(prog, parse_period(period), "postgres", tables, params, WAREHOUSE)
    try:
        rows = pg.psql(compiled.sql())
    except RuntimeError as exc:
        raise translate(compiled.runnable(), exc) from None
    return collect(compiled, prog, long_rows(rows))


@pytest.mark.postgres
@pytest.mark.parametrize("contract", ON_SAMPLE, ids=lambda p: p.stem)
def test_every_contract_on_the_sample_panel_in_postgres_is_the_interpreters(pg, contract):
    """Three of them read a practice column the sample's practices file does not have
    (late_days_17, apm_participant, shared_savings_track): their defaults apply in SQL."""
    _, prog = compile_file(contract)
    for period in ("2011-02", "2011-Q4"):
        want, params = oracle(prog, ROOT / "examples", period)
        same(run_pg(pg, prog, period, params, tables_in("sample")), want)


def unnormalised(table, header, rows):
    """Columns the contracts default removed, blanks where a default applies, measures as people
    write them, and P00002 a small practice (so VZP's top-up reads its `2011-q4` share)."""
    drop = {"members": {"social_care", "enrolled_from"}, "practices": {"akord", "coefficient"}}.get(table, set())
    keep = [i for i, c in enumerate(header) if c not in drop]
    rows = [[r[i] for i in keep] for r in rows]
    header = [header[i] for i in keep]
    at = {c: i for i, c in enumerate(header)}
    for n, r in enumerate(rows):
        if table == "members" and n % 7 == 0:
            r[at["diabetes"]] = ""
        if table == "events" and n % 5 == 0:
            r[at["quantity"]] = ""
        if table == "events" and n % 11 == 0:
            r[at["points"]] = ""
        if table == "practices" and r[0] == "P00002":
            r[at["small_practice"]] = "true"
        if table == "practices" and r[0] == "P00000":
            r[at["small_practice"]] = ""
    if table == "measures":
        rows = [["P00000", "2011", "quality_met", " Yes "], ["P00000", "2011", "drug_cost_per_insured", "241.00"],
                ["P00001", "2011", "quality_met", "false"], ["P00001", "2011", "drug_cost_per_insured", " 357 "],
                ["P00002", "2011", "quality_met", "1"], ["P00002", "2011", "drug_cost_per_insured", "262.00"],
                ["P00002", "2011-q4", "insurer_share", "80%"], ["P00002", "2011-q4", "akord_quality_met", "YES"],
                ["P00001", "2011-q1", "additional_capitation_share", "63 %"],
                ["P00000", "2011", "quality_score", "85%"], ["P00001", " 2011 ", "quality_score", "0.5"],
                ["P00001", "2011", "benchmark_cost", "2400000"], ["P00001", "2011", "actual_cost", "2280000"],
                ["P00001", "2011", "quality_gate_met", "TRUE"]]
    return header, rows


TOPUP = ("national_average_recalculated_insured=5000",)  # so P00002's top-up applies


@pytest.mark.postgres
def test_missing_columns_empty_defaults_and_unnormalised_measures_in_postgres(pg, tmp_path):
    files = panel_dir(tmp_path, unnormalised)
    load_pg(pg, files, "messy")
    for contract in ON_SAMPLE:
        _, prog = compile_file(contract)
        sets = TOPUP if contract.stem == "cz_vzp_2011_adult" else ()
        for period in ("2011-02", "2011-Q4"):
            want, params = oracle(prog, files, period, sets)
            got = run_pg(pg, prog, period, params, tables_in("messy"))
            same(got, want)
            if contract.stem == "cz_vzp_2011_adult" and period == "2011-Q4":
                topup = {r[3] for r in got.rows if r[0] == "P00002" and r[2] == "small_practice_topup"}
                fees = {r[3] for r in got.rows if r[2] == "fee_for_service"}
                assert topup and min(topup) > 0 and min(fees) > 0  # the `2011-q4` and `80%` rows were read


def refused(tmp_path, name, change):
    """The sample panel with one value the loader refuses (`change(table, header, rows)`)."""
    def edit(table, header, rows):
        return header, change(table, header, [list(r) for r in rows])
    return panel_dir(tmp_path / name, edit)


REFUSED = {  # what the loader refuses, and the code the SQL stops with
    "bool": (lambda t, h, rows: rows + [["P00002", "2011", "akord_quality_met", "maybe"]] if t == "measures" else rows,
             "E0704", "akord_quality_met"),
    "period": (lambda t, h, rows: rows + [["P00002", "2011-13", "drug_cost_per_insured", "300"]]
               if t == "measures" else rows, "E0704", "2011-13"),
    "number": (lambda t, h, rows: rows + [["P00002", "2011-03", "drug_cost_per_insured", "1,5"]]
               if t == "measures" else rows, "E0704", "drug_cost_per_insured"),
    "twice": (lambda t, h, rows: rows + [["P00001", "2011", "drug_cost_per_insured", "300"]]
              if t == "measures" else rows, "E0706", "two rows"),
    "required": (lambda t, h, rows: [r[:2] + [""] + r[3:] if r[0] == "P00001" else r for r in rows]
                 if t == "practices" else rows, "E0705", "practices.weekly_hours"),
}


@pytest.mark.postgres
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_value_the_loader_refuses_stops_the_postgres_query(pg, tmp_path, case):
    change, code, text = REFUSED[case]
    files = refused(tmp_path, case, change)
    _, prog = compile_file(ROOT / "contracts" / "cz_vzp_2011_adult.cap")
    with pytest.raises(Exception) as loader:
        oracle(prog, files, "2011-03")
    assert loader.value.code == code
    load_pg(pg, files, f"bad_{case}")
    with pytest.raises(InputError) as info:
        run_pg(pg, prog, "2011-03", {}, tables_in(f"bad_{case}"))
    assert info.value.code == code and text in info.value.diagnostics[0].message


@pytest.mark.postgres
def test_inputs_named_like_internal_columns_in_postgres(pg, tmp_path):
    from test_sql_duckdb import named_like_columns_panel

    files = named_like_columns_panel(tmp_path)
    load_pg(pg, files, "named")
    _, prog = compile_file(files / "c.cap")
    reqs = requirements(prog)
    panel = load_panel({t: str(files / f"{t}.csv") for t in ("members", "practices", "events")}, reqs,
                       today=date(2012, 1, 1))
    for period in ("2011-02", "2011-Q4"):
        want = run_engine(prog, panel, parse_period(period), {}, "python")
        same(run_pg(pg, prog, period, {}, tables_in("named")), want)


@pytest.mark.postgres
def test_the_printed_sql_with_set_and_table_runs_in_postgres(pg, tmp_path):
    """`capdsl compile --sql` as a user runs it: --set inlines the parameter, --table names the tables."""
    contract = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
    args = ["compile", str(contract), "--sql", "--dialect", "postgres", "--period", "2011-Q4",
            "--set", "national_average_drug_cost=262.5 CZK per member", *[f"--table={t}=sample.{t}" for t in TABLES]]
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    _, prog = compile_file(contract)
    want, params = oracle(prog, ROOT / "examples", "2011-Q4", ["national_average_drug_cost=262.5"])
    compiled = compile_query(prog, parse_period("2011-Q4"), "postgres", tables_in("sample"), params, WAREHOUSE)
    assert out.output == compiled.sql() + ";\n"
    same(collect(compiled, prog, long_rows(pg.psql(out.output))), want)
    drug = {r[3] for r in want.rows if r[2] == "drug_regulation"}
    assert min(drug) < 0  # the parameter matters to the amounts compared (357 > 120 % of 262.5)


# ─────────────────────────────── DuckDB ───────────────────────────────────

def duckdb_tables(files: Path, docs: bool = False, prog=None):
    con = duckdb.connect()
    if docs:  # the docs' block, with DuckDB's COPY for psql's \copy
        ddl = docs_block("warehouse-ddl")
        ddl = re.sub(r"\\copy (\w+) FROM '([^']+)' WITH \(FORMAT csv, HEADER true\)",
                     lambda m: f"COPY {m[1]} FROM '{ROOT / m[2]}' (FORMAT csv, HEADER true);", ddl)
    else:
        ddl = create_tables(files, "main", prog=prog).replace("DROP SCHEMA IF EXISTS main CASCADE; CREATE SCHEMA main;", "")
        ddl += "".join(f"COPY {t} FROM '{files / f'{t}.csv'}' (FORMAT csv, HEADER true);" for t in TABLES
                       if (files / f"{t}.csv").exists())
    con.execute(ddl)
    return con


def run_duckdb(con, prog, period, params):
    text = compile_program(prog, parse_period(period), "duckdb", params=params)
    compiled = compile_query(prog, parse_period(period), "duckdb", None, params, WAREHOUSE)
    assert text == compiled.sql() + ";\n"
    try:
        rows = con.execute(text).fetchall()
    except duckdb.Error as exc:
        raise translate(compiled.runnable(), exc) from None
    return collect(compiled, prog, long_rows(rows))


@pytest.mark.parametrize("contract", OWN_PANEL, ids=lambda p: p.stem)
def test_contracts_with_their_own_panel_as_printed_for_duckdb_and_postgres(pg, contract):
    """A contract reading inputs the sample lacks (rate cells by category and region) runs on its
    fixture panel (tests/panels/<contract>/) through the warehouse SQL of both engines."""
    files = ROOT / "tests" / "panels" / contract.stem
    _, prog = compile_file(contract)
    load_pg(pg, files, contract.stem, prog)
    con = duckdb_tables(files, prog=prog)
    for period in ("2011-02", "2011-Q4"):
        want, params = oracle(prog, files, period)
        same(run_duckdb(con, prog, period, params), want)
        same(run_pg(pg, prog, period, params, tables_in(contract.stem)), want)


@pytest.mark.parametrize("panel", ["sample", "unnormalised"])
def test_every_contract_as_printed_for_duckdb_is_the_interpreters(tmp_path, panel):
    files = ROOT / "examples" if panel == "sample" else panel_dir(tmp_path, unnormalised)
    con = duckdb_tables(files, docs=panel == "sample")
    for contract in ON_SAMPLE:
        _, prog = compile_file(contract)
        sets = TOPUP if contract.stem == "cz_vzp_2011_adult" else ()
        for period in ("2011-02", "2011-Q4"):
            want, params = oracle(prog, files, period, sets)
            same(run_duckdb(con, prog, period, params), want)


def test_a_refused_measure_value_stops_the_duckdb_query(tmp_path):
    change, code, _ = REFUSED["bool"]
    con = duckdb_tables(refused(tmp_path, "bool", change))
    _, prog = compile_file(ROOT / "contracts" / "cz_vzp_2011_adult.cap")
    with pytest.raises(InputError) as info:
        run_duckdb(con, prog, "2011-03", {})
    assert info.value.diagnostics[0].message == (
        "measure akord_quality_met: a value is not a valid boolean (true or false; yes/no and 1/0 are accepted): "
        "'maybe' (practice P00002)")


# ─────────────────────────────── Spark ────────────────────────────────────

@pytest.fixture(scope="module")
def spark():
    from capdsl.sql.spark_engine import available

    why = available()
    if why:
        pytest.skip(why)
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("capdsl-warehouse-tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    session.sparkContext.setLogLevel("FATAL")
    yield session
    session.stop()


def spark_views(spark, files: Path, prefix: str):
    """The docs' Spark views over the CSV files in `files`, named `prefix_<table>`, with the files' columns."""
    for statement in docs_block("warehouse-ddl-spark").split(";"):
        found = re.search(r"CREATE TEMPORARY VIEW (\w+) \((.*?)\)\s*USING csv", statement, re.S)
        if not found:
            continue
        table, body = found.groups()
        types = dict(re.match(r"\s*(\w+)\s+(.*)", c).groups() for c in re.split(r",(?!\s*[0-9])", body))
        with open(files / f"{table}.csv", newline="") as f:
            header = next(csv.reader(f))
        schema = ", ".join(f"{c} {types[c]}" for c in header)
        spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {prefix}_{table} ({schema}) USING csv "
                  f"OPTIONS (path '{files / f'{table}.csv'}', header 'true')")
    return {t: f"{prefix}_{t}" for t in TABLES}


def run_spark(spark, prog, period, params, tables):
    text = compile_program(prog, parse_period(period), "spark", tables=tables, params=params)
    *settings, query = [s for s in text.split(";\n") if s.strip()]
    assert settings == ["SET spark.sql.decimalOperations.allowPrecisionLoss=false", "SET spark.sql.ansi.enabled=true"]
    spark.conf.set("spark.sql.decimalOperations.allowPrecisionLoss", "true")  # a default session's settings
    spark.conf.set("spark.sql.ansi.enabled", "false")
    for statement in settings:
        spark.sql(statement)
    assert spark.conf.get("spark.sql.decimalOperations.allowPrecisionLoss") == "false"
    compiled = compile_query(prog, parse_period(period), "spark", tables, params, WAREHOUSE)
    return collect(compiled, prog, long_rows([tuple(r) for r in spark.sql(query).collect()]))


@pytest.mark.spark
def test_the_printed_spark_sql_is_the_interpreters(spark, tmp_path):
    """Two single-month runs (a Spark query over a year's CTEs takes a while): the paediatric contract
    on the sample panel, which has no late_days_17 column, and VZP's on the unnormalised files
    (November reads the `2011-q4` share and pays the top-up)."""
    sample = spark_views(spark, ROOT / "examples", "sample")
    messy_files = panel_dir(tmp_path, unnormalised)
    messy = spark_views(spark, messy_files, "messy")
    for name, files, tables, period, sets in [
            ("cz_vzp_2011_paediatric", ROOT / "examples", sample, "2011-02", ()),
            ("cz_vzp_2011_adult", messy_files, messy, "2011-11", TOPUP)]:
        _, prog = compile_file(ROOT / "contracts" / f"{name}.cap")
        want, params = oracle(prog, files, period, sets)
        got = run_spark(spark, prog, period, params, tables)
        same(got, want)
        if name == "cz_vzp_2011_adult":
            assert min(r[3] for r in got.rows if r[0] == "P00002" and r[2] == "small_practice_topup") > 0


# ─────────────────────── BigQuery and Snowflake, emulated ───────────────────────

class Overflow(Exception):
    pass


def _half_away(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)  # ROUND_HALF_UP is half away


def _digits(value: Decimal, scale: int) -> int:
    whole = len(str(int(abs(value)))) if abs(value) >= 1 else 0
    return whole + scale


class Emulator:
    """Evaluates the subset of SQL the compiler emits for division and rounding with one engine's
    documented decimal rules. A value is (Decimal, scale, type); an intermediate value that needs
    more than 38 digits (Snowflake) or is a FLOAT64 (BigQuery: an untyped decimal literal) fails."""

    def __init__(self, dialect: str, columns: dict[str, Decimal]):
        self.d, self.columns = dialect, columns

    def check(self, value, scale):
        if self.d == "snowflake" and _digits(value, scale) > 38:
            raise Overflow(f"{value} needs more than 38 digits at scale {scale}")
        return value, scale

    def ev(self, e):  # -> (value | None, scale)
        if isinstance(e, exp.Paren):
            return self.ev(e.this)
        if isinstance(e, exp.Literal):
            if e.is_string:
                return e.this, None
            if self.d == "bigquery" and not e.this.isdigit():
                raise AssertionError(f"FLOAT64 literal {e.this}")
            v = Decimal(e.this)
            return v, max(0, -v.as_tuple().exponent)
        if isinstance(e, exp.Column):
            return self.columns[e.name], 12
        if isinstance(e, exp.Null):
            return None, 0
        if isinstance(e, exp.Neg):
            v, s = self.ev(e.this)
            return (None if v is None else -v), s
        if isinstance(e, exp.Cast):
            v, s = self.ev(e.this)
            if isinstance(v, str):
                v = Decimal(v)
                s = max(0, -v.as_tuple().exponent)
            to = e.to
            if to.this == exp.DataType.Type.BIGDECIMAL:  # BIGNUMERIC: 38 places
                return v, 38 if v is None else max(s, 0)
            params = [int(p.this.this) for p in to.expressions]
            scale = params[1] if len(params) > 1 else 0
            if v is None:
                return None, scale
            out = _half_away(v, scale)
            if _digits(out, scale) > params[0]:
                raise Overflow(f"{out} does not fit DECIMAL{tuple(params)}")
            return out, scale
        if isinstance(e, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)):
            (a, sa), (b, sb) = self.ev(e.this), self.ev(e.expression)
            if a is None or b is None:
                return None, max(sa, sb)
            with localcontext() as ctx:
                ctx.prec = 200
                if isinstance(e, exp.Add):
                    return self.check(a + b, max(sa, sb))
                if isinstance(e, exp.Sub):
                    return self.check(a - b, max(sa, sb))
                if isinstance(e, exp.Mul):
                    scale = min(sa + sb, max(sa, sb, 12)) if self.d == "snowflake" else min(sa + sb, 38)
                    return self.check(_half_away(a * b, scale), scale)
                if isinstance(e, exp.Mod):
                    return self.check(a - (a / b).to_integral_value(ROUND_DOWN) * b, max(sa, sb))
                assert self.d == "snowflake", "no `/` outside Snowflake"
                scale = max(sa, min(sa + 6, 12))
                return self.check(_half_away(a / b, scale), scale)
        if isinstance(e, exp.Abs):
            v, s = self.ev(e.this)
            return (None if v is None else abs(v)), s
        if isinstance(e, exp.Nullif):
            (a, s), (b, _) = self.ev(e.this), self.ev(e.expression)
            return (None if a == b else a), s
        if isinstance(e, exp.Coalesce):
            for x in [e.this, *e.expressions]:
                v, s = self.ev(x)
                if v is not None:
                    return v, s
            return None, 0
        if isinstance(e, exp.Round):
            v, s = self.ev(e.this)
            places = int(self.ev(e.args["decimals"])[0])
            return (None if v is None else _half_away(v, places)), s
        if isinstance(e, (exp.Trunc, exp.Sign, exp.IntDiv)):
            args = [self.ev(a) for a in (e.this, e.args.get("expression")) if a is not None]
            vals = [a[0] for a in args]
            if any(v is None for v in vals):
                return None, 0
            with localcontext() as ctx:
                ctx.prec = 200
                if isinstance(e, exp.Trunc):
                    return vals[0].to_integral_value(ROUND_DOWN), 0
                if isinstance(e, exp.Sign):
                    return Decimal((vals[0] > 0) - (vals[0] < 0)), 0
                a, b = vals  # DIV: truncates toward zero
                return (a / b).to_integral_value(ROUND_DOWN), 38
        if isinstance(e, exp.Case):
            for when in e.args["ifs"]:
                if self.truth(when.this):
                    return self.ev(when.args["true"])
            return self.ev(e.args["default"]) if e.args.get("default") is not None else (None, 0)
        raise AssertionError(f"the emulator does not know {type(e).__name__}: {e.sql(self.d)}")

    def truth(self, e) -> bool:
        ops = {exp.GT: "__gt__", exp.GTE: "__ge__", exp.LT: "__lt__", exp.LTE: "__le__", exp.EQ: "__eq__",
               exp.NEQ: "__ne__"}
        if isinstance(e, exp.Paren):
            return self.truth(e.this)
        if isinstance(e, exp.And):
            return self.truth(e.this) and self.truth(e.expression)
        if isinstance(e, exp.Not):
            return not self.truth(e.this)
        (a, _), (b, _) = self.ev(e.this), self.ev(e.expression)
        return a is not None and b is not None and getattr(a, ops[type(e)])(b)


def printed(dialect: str, build) -> exp.Expression:
    """`build(compiler)` as the printed SQL holds it: finished for the dialect, written, parsed back."""
    from capdsl.sql.compile import _Compiler
    from capdsl.sql.dialects import get
    from sql_support import program

    compiler = _Compiler(program([]), parse_period("2011-03"), get(dialect), {}, {}, WAREHOUSE)
    select = exp.select(exp.alias_(build(compiler), "x"))
    text = compiler.d.finish(select).sql(dialect=dialect)
    return sqlglot.parse_one(text, read=dialect).expressions[0].this


EXTREMES = [("99999999999999.999999999999", "7"), ("99999999999999.999999999999", "99999999999999.999999999998"),
            ("-99999999999999.5", "0.37"), ("1", "99999999999999.999999999999"), ("12345678901234.56789", "-3"),
            ("0.000000000001", "3"), ("-0.000000000005", "10"), ("2", "3"), ("-2", "3"), ("1", "-7")]


@pytest.mark.parametrize("dialect", ["bigquery", "snowflake"])
def test_division_is_the_interpreters_under_the_engines_decimal_rules(dialect):
    from capdsl.sql.compile import col
    from test_sql_duckdb import DIVISIONS

    division = printed(dialect, lambda c: c.d.fixed_div(col("a"), col("b"), exp.Null()))
    for a, b in DIVISIONS + EXTREMES:
        got, _ = Emulator(dialect, {"a": D(a), "b": D(b)}).ev(division)
        assert got == fix(D(a) / D(b)), (a, b)
    assert Emulator(dialect, {"a": D(1), "b": D(0)}).ev(division)[0] is None  # the caller's error


@pytest.mark.parametrize("dialect", ["bigquery", "snowflake"])
def test_rounding_is_the_interpreters_under_the_engines_decimal_rules(dialect):
    from capdsl.sql.compile import col
    from test_sql_duckdb import MODES, ROUNDING_CASES

    for quantum in ("0.01", "1", "0.05"):
        for mode in MODES:
            rounded = printed(dialect, lambda c: c.round(col("x"), D(quantum), mode))
            for v, q in ROUNDING_CASES + [("99999999999999.994999999999", "0.01"), ("-99999999999999.5", "1")]:
                if q == quantum:
                    got, _ = Emulator(dialect, {"x": D(v)}).ev(rounded)
                    assert got == round_to(D(v), D(quantum), mode), (v, quantum, mode)


@pytest.mark.parametrize("dialect", ["bigquery", "snowflake"])
def test_a_product_is_rounded_to_twelve_places(dialect):
    from capdsl.sql.compile import col, dec

    product = printed(dialect, lambda c: dec(exp.Mul(this=dec(col("a")), expression=dec(col("b")))))
    for a, b in [("0.000000000001", "0.5"), ("-0.000000000001", "0.5"), ("1.000000000001", "1.000000000001"),
                 ("12345.678901234567", "-0.000000000003")]:
        got, _ = Emulator(dialect, {"a": D(a), "b": D(b)}).ev(product)
        assert got == fix(D(a) * D(b)), (a, b)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda p: p.stem)
def test_bigquery_sql_has_no_float_and_rounds_every_scale(contract):
    """No untyped decimal literal (FLOAT64), no `/` (FLOAT64 on integers), and every cast to a
    BIGNUMERIC either of a literal or inside ROUND(…, places): the 12-place rule."""
    _, prog = compile_file(contract)
    reqs = requirements(prog)
    text = compile_program(prog, parse_period("2011-Q4"), "bigquery", params=parse_params([], None, reqs))
    tree = sqlglot.parse_one(text.rstrip().rstrip(";"), read="bigquery")
    assert not [lit.this for lit in tree.find_all(exp.Literal) if not lit.is_string and not lit.this.isdigit()]
    assert not list(tree.find_all(exp.Div))
    for cast in tree.find_all(exp.Cast):
        if cast.to.this == exp.DataType.Type.BIGDECIMAL:
            assert (cast.this.is_string if isinstance(cast.this, exp.Literal) else False) or \
                isinstance(cast.parent, exp.Round), cast.sql("bigquery")
        assert cast.to.this not in (exp.DataType.Type.DECIMAL, exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT)


# ─────────────────────────────── the command ──────────────────────────────

VZP = str(ROOT / "contracts" / "cz_vzp_2011_adult.cap")


def cli(*args):
    return CliRunner().invoke(main, ["compile", VZP, "--sql", *args])


@pytest.mark.parametrize("args, code, text", [
    ((), "E0901", "--period"),
    (("--period", "2011-03", "--table", "member=claims.members"), "E0912", "did you mean 'members'"),
    (("--period", "2011-03", "--table", "foo=bar"), "E0912", "no input table 'foo'"),
    (("--period", "2011-03", "--table", "members="), "E0912", "names no table"),
    (("--period", "2011-03", "--dialect", "postgres", "--table", "members=/data/m.parquet"), "E0912",
     "PostgreSQL cannot read a file"),
    (("--period", "2011-03", "--dialect", "bigquery", "--table", "events=e.parquet"), "E0912",
     "BigQuery cannot read a file"),
    (("--period", "2011-03", "--set", "national_average=1"), "E0902", "did you mean"),
    (("--period", "2011-03", "--set", "national_average_drug_cost=cheap"), "E0904", "not a valid value"),
])
def test_compile_refuses_what_it_cannot_honour(args, code, text):
    out = cli(*args)
    assert out.exit_code == 1 and f"error[{code}]" in out.output and text in out.output, out.output
    assert "Traceback" not in out.output and "internal error" not in out.output


def test_compile_inlines_set_and_params_as_typed_literals(tmp_path):
    params = tmp_path / "p.json"
    params.write_text('{"national_average_recalculated_insured": "1234.5"}')
    out = cli("--period", "2011-03", "--dialect", "bigquery", "--set", "national_average_drug_cost=262.75 CZK per member",
              "--params", str(params))
    assert out.exit_code == 0, out.output
    assert "CAST('262.75' AS BIGNUMERIC)" in out.output and "CAST('1234.5' AS BIGNUMERIC)" in out.output


def test_a_parameter_without_value_or_default_is_a_usage_error(tmp_path):
    source = (ROOT / "contracts" / "cz_vzp_2011_adult.cap").read_text().replace(
        "param national_average_drug_cost: CZK per member = 250 CZK per member",
        "param national_average_drug_cost: CZK per member")
    path = tmp_path / "c.cap"
    path.write_text(source)
    out = CliRunner().invoke(main, ["compile", str(path), "--sql", "--period", "2011-03"])
    assert out.exit_code == 1 and "error[E0903]" in out.output, out.output
    out = CliRunner().invoke(main, ["compile", str(path), "--sql", "--period", "2011-03",
                                    "--set", "national_average_drug_cost=250"])
    assert out.exit_code == 0 and ":national_average_drug_cost" not in out.output


def test_spark_parquet_tables_are_read_as_written():
    _, prog = compile_file(VZP)
    text = compile_program(prog, "2011-03", "spark", tables={"members": "parquet.`/data/members`",
                                                             "events": "/data/events.parquet"})
    assert "parquet.`/data/members`" in text and "parquet.`/data/events.parquet`" in text
    sqlglot.parse_one(text.split(";\n")[-2], read="spark")
