"""capdsl's engines against hand-written SQL and per-row rules engines.

On a deterministic panel (benchmarks/panel_gen.py: European age mix, ~1,500
members per practice, ~8 % diabetic, ~0.5 events per member-year) written
as Parquet, for three contracts:

- contracts/cz_vzp_2011_adult.cap — the richest contract in contracts/ by
  constructs (bands, a tier, parameters, monthly and yearly measures,
  `applies when`, bases, min/max, and a pool with quarterly installments).
  For 2011-03 the pool's Q1 installment is due, so the whole year is
  evaluated (12 member-month passes) — as the interpreter does;
- contracts/hu_gp.cap — the richest of the others (4 bands, 3 tiers, a tier
  that chooses between bands, degression with min/max over an aggregate,
  text-keyed tiers, filtered event counts); one month, no pool;
- benchmarks/rate_cells_stop_loss.cap — the rate cells (category × age ×
  sex) and regional factors of contracts/us_medicaid_rate_cells.cap with
  its maternity kick, plus an individual stop-loss over each member's own
  claims of the year (`sum of … over member events during year`), for
  2011-12, the month it is paid in. Its panel is the same members with a
  category and a region, and two claims per member-year with allowed
  amounts instead of the services (benchmarks/panel_rate_cells.py, derived
  from the base panel the first time it is needed).

Timed in one run (each timing is the best and the median of --repeat runs,
a fresh DuckDB connection each; capdsl and the hand-written query run in
alternation, so the drift of a shared machine reaches both alike):

- capdsl DuckDB in-process (`evaluate_files`, straight from Parquet)
  vs (a) a hand-written DuckDB query computing the same statement lines —
  asserted equal to the cent, line by line;
- (b) the reference interpreter on a subsample panel, extrapolated per
  member-month (clearly labelled);
- (c) per-row rules engines a user might pick instead: GoRules zen-engine
  (a decision table graph: age index x office-hour base rate; per call and
  `evaluate_batch`) and rule-engine (one Rule per band/tier row), on a
  subsample, extrapolated — they compute the capitation line only;
- `--process`: the whole `capdsl eval` process (start-up included) vs a
  whole python process running the hand-written SQL and writing the same
  CSV;
- `--spark`: capdsl on Spark vs the hand-written query on Spark (local[2],
  same session settings, after a warm-up run);
- `--year`: the whole year 2011 (`capdsl eval --period 2011`) in a child
  process, with its peak RSS (os.wait4's ru_maxrss).

    python benchmarks/bench_engines.py                         # 1 M members, a few minutes
    python benchmarks/bench_engines.py --members 10000000 --spark --year
    python benchmarks/bench_engines.py --contract rate_cells_stop_loss --no-slow --no-process

Needs the `bench` extra for (c): pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import panel_rate_cells  # noqa: E402
from panel_gen import generate  # noqa: E402

TABLES = ("members", "practices", "events", "measures")
VZP = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
HU = ROOT / "contracts" / "hu_gp.cap"
RC = HERE / "rate_cells_stop_loss.cap"
PERIOD = "2011-03"
CENT = Decimal("0.01")

VZP_INDEX = [(0, 4, "3.91"), (5, 9, "1.70"), (10, 14, "1.35"), (15, 19, "1.00"), (20, 24, "0.90"), (25, 29, "0.95"),
             (30, 34, "1.00"), (35, 39, "1.05"), (40, 44, "1.05"), (45, 49, "1.10"), (50, 54, "1.35"),
             (55, 59, "1.45"), (60, 64, "1.50"), (65, 69, "1.70"), (70, 74, "2.00"), (75, 79, "2.40"),
             (80, 84, "2.90"), (85, None, "3.40")]


# ---------------------------------------------------------------------------
# The hand-written queries: what a careful SQL engineer writes for these two
# contracts for March 2011, without capdsl. `{members}` etc. are the tables;
# `{day}` is the day-of-month function (DuckDB `day`, Spark `dayofmonth`).
# ---------------------------------------------------------------------------

def _index_case(column: str) -> str:
    parts = [f"WHEN {column} <= {hi} THEN {v}" for lo, hi, v in VZP_INDEX if hi is not None]
    return "CASE " + " ".join(parts) + f" ELSE {VZP_INDEX[-1][2]} END"


def _months_values() -> str:
    return ", ".join(f"({m}, DATE '2011-{m:02d}-01')" for m in range(1, 13))


# VZP: five lines for March, and the AKORD pool (15 % of base rate x
# member-months of the year) with its Q1 installment (10 %), due in March.
# Measures: the month's row, else the quarter's, else the year's.
HAND_VZP = """
WITH p AS (
  SELECT practice_id, akord, small_practice,
         CASE WHEN weekly_hours >= 30 AND late_days >= 1 AND booking_days >= 2 THEN 50
              WHEN weekly_hours >= 25 AND late_days >= 1 THEN 49 ELSE 47 END AS base_rate
  FROM {practices}),
months AS (SELECT * FROM (VALUES %(months)s) AS t(mon, month_start)),
mm AS (   -- member-months of 2011: born and enrolled on the month's first day
  SELECT m.practice_id, mo.mon,
         2011 - year(m.birth_date)
           - CASE WHEN mo.mon * 100 + 1 < month(m.birth_date) * 100 + {day}(m.birth_date) THEN 1 ELSE 0 END AS age
  FROM {members} AS m JOIN months AS mo
    ON m.birth_date <= mo.month_start
   AND (m.enrolled_from IS NULL OR m.enrolled_from <= mo.month_start)
   AND (m.enrolled_to IS NULL OR m.enrolled_to >= mo.month_start)),
agg AS (
  SELECT practice_id, count(*) AS member_months,
         sum(%(index)s) FILTER (WHERE mon = 3) AS recalculated
  FROM mm GROUP BY practice_id),
ev AS (
  SELECT practice_id, sum(points * quantity * 1.08) AS ffs
  FROM {events} WHERE date >= DATE '2011-03-01' AND date <= DATE '2011-03-31' GROUP BY practice_id),
ms AS (
  SELECT practice_id,
         CAST(max_by(value, CASE period WHEN '2011-03' THEN 3 WHEN '2011-Q1' THEN 2 ELSE 1 END)
              FILTER (WHERE measure = 'drug_cost_per_insured') AS DECIMAL(18, 6)) AS drug_cost,
         CAST(max_by(value, CASE period WHEN '2011-03' THEN 3 WHEN '2011-Q1' THEN 2 ELSE 1 END)
              FILTER (WHERE measure = 'insurer_share') AS DECIMAL(18, 6)) AS share
  FROM {measures} WHERE period IN ('2011-03', '2011-Q1', '2011') GROUP BY practice_id),
s AS (
  SELECT p.*, coalesce(a.recalculated, 0) AS recalculated, coalesce(a.member_months, 0) AS member_months,
         coalesce(ev.ffs, 0) AS ffs, ms.drug_cost, ms.share,
         p.base_rate * coalesce(a.recalculated, 0) AS capitation,
         CASE WHEN p.akord THEN round(0.15 * p.base_rate * coalesce(a.member_months, 0), 2) ELSE 0 END AS bonus
  FROM p LEFT JOIN agg AS a ON a.practice_id = p.practice_id
         LEFT JOIN ev ON ev.practice_id = p.practice_id
         LEFT JOIN ms ON ms.practice_id = p.practice_id)
SELECT practice_id,
       capitation,
       CASE WHEN akord THEN 4 * recalculated ELSE 0 END AS akord_supplement,
       round(ffs, 2) AS fee_for_service,
       CASE WHEN drug_cost IS NOT NULL
            THEN round(-0.25 * greatest(0, drug_cost - 300) * recalculated, 2) ELSE 0 END AS drug_regulation,
       CASE WHEN small_practice AND share IS NOT NULL AND recalculated < 0.7 * 1600 * share
            THEN round(greatest(0, share * 0.9 * base_rate * 1600 - capitation), 2) ELSE 0 END AS small_practice_topup,
       bonus AS akord_bonus,
       round(0.10 * bonus, 2) AS akord_bonus_q1
FROM s ORDER BY practice_id
""" % {"months": _months_values(), "index": _index_case("age")}

HAND_HU = """
WITH mm AS (   -- members counted in March 2011 (first_day exposure), age on 1 March
  SELECT practice_id,
         2011 - year(birth_date) - CASE WHEN 301 < month(birth_date) * 100 + {day}(birth_date) THEN 1 ELSE 0 END AS age
  FROM {members}
  WHERE birth_date <= DATE '2011-03-01'
    AND (enrolled_from IS NULL OR enrolled_from <= DATE '2011-03-01')
    AND (enrolled_to IS NULL OR enrolled_to >= DATE '2011-03-01')),
pts AS (
  SELECT practice_id,
         sum(CASE WHEN age <= 4 THEN 4.5 WHEN age <= 14 THEN 2.5 WHEN age <= 34 THEN 1.0
                  WHEN age <= 59 THEN 1.5 ELSE 2.5 END) AS points
  FROM mm GROUP BY practice_id),
ev AS (
  SELECT practice_id, sum(quantity) FILTER (WHERE code = 'NONCAP') AS noncap,
         sum(quantity) FILTER (WHERE code = 'INSCHECK') AS inscheck
  FROM {events} WHERE date >= DATE '2011-03-01' AND date <= DATE '2011-03-31' GROUP BY practice_id),
s AS (
  SELECT p.*, coalesce(pts.points, 0) AS points, CASE WHEN kind = 'mixed' THEN 2600 ELSE 2400 END AS lim,
         coalesce(ev.noncap, 0) AS noncap, coalesce(ev.inscheck, 0) AS inscheck
  FROM {practices} AS p LEFT JOIN pts ON pts.practice_id = p.practice_id
                        LEFT JOIN ev ON ev.practice_id = p.practice_id)
SELECT practice_id,
       round((least(points, lim) + 0.5 * greatest(0, points - lim)) * 162.30 * coalesce(coefficient, 1.0), 2)
         AS capitation,
       CASE kind WHEN 'adult' THEN CASE WHEN district_population <= 799 THEN 253000
                                        WHEN district_population <= 1500 THEN 235000 ELSE 197000 END
                 WHEN 'paediatric' THEN CASE WHEN district_population <= 799 THEN 290000
                                        WHEN district_population <= 1500 THEN 272000 ELSE 235000 END
                 WHEN 'mixed' THEN CASE WHEN district_population <= 799 THEN 271000
                                        WHEN district_population <= 1500 THEN 250000 ELSE 214000 END
                 ELSE 0 END AS fixed,
       CASE location WHEN 'town' THEN 26000 WHEN 'village' THEN 30000 WHEN 'multi_area' THEN 38000
                     WHEN 'outlying' THEN 43000 ELSE 0 END AS regional,
       600 * noncap AS non_capitated,
       50 * inscheck AS insurance_checks
FROM s ORDER BY practice_id
"""

def _rate_case() -> str:
    """The base rate of contracts/us_medicaid_rate_cells.cap's cells, by category, then age, then sex
    (the panel records every member's sex)."""
    def by_sex(f: str, m: str) -> str:
        return f"CASE WHEN sex = 'F' THEN {f} ELSE {m} END"

    return f"""CASE category
           WHEN 'TANF' THEN CASE WHEN age < 1 THEN 520.00 WHEN age <= 5 THEN 142.50 WHEN age <= 14 THEN 118.20
                                 WHEN age <= 20 THEN {by_sex('205.40', '131.60')}
                                 WHEN age <= 44 THEN {by_sex('312.75', '224.30')} ELSE {by_sex('468.90', '441.10')} END
           WHEN 'CHIP' THEN CASE WHEN age < 1 THEN 410.00 WHEN age <= 5 THEN 121.80 WHEN age <= 14 THEN 102.40
                                 ELSE 148.60 END
           WHEN 'SSI' THEN CASE WHEN age <= 20 THEN 905.00 WHEN age <= 44 THEN {by_sex('1288.40', '1216.70')}
                                WHEN age <= 64 THEN {by_sex('1642.15', '1710.35')} ELSE 1395.00 END
           WHEN 'EXPANSION' THEN CASE WHEN age <= 18 THEN 265.00 WHEN age <= 24 THEN {by_sex('298.60', '214.20')}
                                      WHEN age <= 34 THEN {by_sex('356.80', '279.45')}
                                      WHEN age <= 44 THEN {by_sex('421.30', '366.90')}
                                      WHEN age <= 54 THEN 548.25 ELSE 689.70 END END"""


# Rate cells x regional factor for the members counted in December, the kick for December's
# deliveries, and the stop-loss: the year's claims are added up per member, only the members above
# the attachment point are kept (HAVING), and those counted in December are paid 80 % of the excess.
HAND_RC = """
WITH mm AS (   -- members counted in December 2011 (first_day exposure), age on 1 December
  SELECT member_id, practice_id, category, region, sex,
         2011 - year(birth_date) - CASE WHEN 1201 < month(birth_date) * 100 + {day}(birth_date) THEN 1 ELSE 0 END AS age
  FROM {members}
  WHERE birth_date <= DATE '2011-12-01'
    AND (enrolled_from IS NULL OR enrolled_from <= DATE '2011-12-01')
    AND (enrolled_to IS NULL OR enrolled_to >= DATE '2011-12-01')),
cap AS (
  SELECT practice_id,
         sum((%(rate)s)
             * CASE region WHEN 'NORTH' THEN 1.000
                           WHEN 'METRO' THEN CASE WHEN category = 'SSI' THEN 1.040 ELSE 1.085 END
                           ELSE CASE WHEN category = 'SSI' THEN 0.980 ELSE 0.955 END END) AS capitation
  FROM mm GROUP BY practice_id),
claims AS (   -- members whose allowed claims of 2011 pass the attachment point
  SELECT member_id, sum(allowed) AS allowed
  FROM {events}
  WHERE date >= DATE '2011-01-01' AND date <= DATE '2011-12-31' AND member_id IS NOT NULL
  GROUP BY member_id HAVING sum(allowed) > 150000),
sl AS (
  SELECT mm.practice_id, sum(0.8 * (claims.allowed - 150000)) AS stop_loss
  FROM claims JOIN mm ON mm.member_id = claims.member_id GROUP BY mm.practice_id),
kick AS (
  SELECT practice_id,
         sum(CASE code WHEN '59400' THEN 5850.00 WHEN '59510' THEN 7425.00 WHEN '59610' THEN 6040.00
                       ELSE 7610.00 END) AS kick
  FROM {events}
  WHERE date >= DATE '2011-12-01' AND date <= DATE '2011-12-31' AND code IN ('59400', '59510', '59610', '59618')
  GROUP BY practice_id)
SELECT p.practice_id,
       round(coalesce(cap.capitation, 0), 2) AS capitation,
       round(coalesce(kick.kick, 0), 2) AS maternity_kick,
       round(coalesce(sl.stop_loss, 0), 2) AS stop_loss
FROM {practices} AS p LEFT JOIN cap ON cap.practice_id = p.practice_id
                      LEFT JOIN kick ON kick.practice_id = p.practice_id
                      LEFT JOIN sl ON sl.practice_id = p.practice_id
ORDER BY p.practice_id
""" % {"rate": _rate_case()}


@dataclass(frozen=True)
class Bench:
    """A benchmarked contract: its file, the hand-written query, the period both compute, and its panel
    (`base`: panel_gen.py's; `rate_cells`: panel_rate_cells.py's, derived from it)."""

    path: Path
    hand: str
    period: str = PERIOD
    panel: str = "base"

    @property
    def month(self) -> date:
        year, month = self.period.split("-")
        return date(int(year), int(month), 1)

    def files(self, base: dict) -> dict:
        """The panel files of this contract, given the base panel's."""
        if self.panel == "base":
            return base
        members = Path(base["members"])
        out = members.parent / "rate_cells"
        files = {t: out / f"{t}.parquet" for t in ("members", "events")}
        if not all(f.exists() for f in files.values()):
            print(f"deriving the rate-cell panel into {out} …", flush=True)
            panel_rate_cells.generate(members.parent, out)
        return {"members": str(files["members"]), "practices": base["practices"], "events": str(files["events"])}


CONTRACTS = {"cz_vzp_2011_adult": Bench(VZP, HAND_VZP), "hu_gp": Bench(HU, HAND_HU),
             "rate_cells_stop_loss": Bench(RC, HAND_RC, "2011-12", "rate_cells")}


CSV_TYPES = {"period": "VARCHAR", "coefficient": "DECIMAL(4,2)", "allowed": "DECIMAL(12,2)"}


def read_csv(path) -> str:
    """DuckDB's read_csv of a panel file, with the types of the columns in CSV_TYPES it has pinned."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    pinned = ", ".join(f"'{c}': '{CSV_TYPES[c]}'" for c in header if c in CSV_TYPES)
    return f"read_csv('{path}'" + (f", types={{{pinned}}})" if pinned else ")")


def hand_sql(text: str, files: dict, dialect: str) -> str:
    if dialect == "duckdb":  # CSV: types detected, except what a careful author pins (text periods, exact money)
        tables = {k: (read_csv(v) if str(v).endswith(".csv") else f"read_parquet('{v}')") for k, v in files.items()}
        return text.format(day="day", **tables)
    tables = {k: f"parquet.`{v}`" for k, v in files.items()}
    return text.format(day="dayofmonth", **tables)


def hand_items(columns: list[str], rows) -> dict:
    """Hand-written result rows -> {(practice, item): amount to the cent}."""
    out = {}
    for row in rows:
        pid = row[0]
        for name, value in zip(columns[1:], row[1:]):
            out[(pid, name)] = Decimal(value).quantize(CENT)
    return out


def capdsl_items(result, month: date) -> dict:
    """capdsl's MonthlyResult -> the same {(practice, item): amount} (pool as its name, an installment
    paid in a quarter's last month `_qN`)."""
    out = {}
    for pid, m, line, amount, applied, basis in result.rows:
        if m == month:
            out[(pid, line)] = Decimal(amount).quantize(CENT)
    for pid, pool, year, amount, applied in result.pools:
        out[(pid, pool)] = Decimal(amount).quantize(CENT)
    for pid, pool, year, paid_month, amount, paid in result.installments:
        out[(pid, f"{pool}_q{(paid_month - 1) // 3 + 1}")] = Decimal(amount).quantize(CENT)
    return out


def assert_same(label: str, ours: dict, theirs: dict) -> Decimal:
    if ours.keys() != theirs.keys():
        raise AssertionError(f"{label}: different items: {sorted(ours.keys() ^ theirs.keys())[:5]}")
    bad = [(k, ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]]
    if bad:
        raise AssertionError(f"{label}: {len(bad)} amounts differ, e.g. {bad[:3]}")
    total = sum(ours.values(), Decimal(0))
    assert total == sum(theirs.values(), Decimal(0))
    return total


# ---------------------------------------------------------------------------
# timing helpers
# ---------------------------------------------------------------------------

class Timing:
    def __init__(self, times: list[float]):
        self.times = times
        self.best = min(times)
        self.median = statistics.median(times)

    def __str__(self) -> str:
        return f"best {self.best:8.3f} s  median {self.median:8.3f} s  (n={len(self.times)})"


def timed(fn, repeat: int, warmup: int = 0) -> tuple[Timing, object]:
    for _ in range(warmup):
        fn()
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return Timing(times), value


def timed_pair(ours, theirs, repeat: int, warmup: int = 1) -> tuple[Timing, object, Timing, object]:
    """Both timed in alternation (ours, theirs, ours, …), so that the machine's drift over a
    run (a shared VM drifts by 20-30 %) reaches both sides alike; the ratio is of the medians."""
    for _ in range(warmup):
        ours()
        theirs()
    times = ([], [])
    values = [None, None]
    for _ in range(repeat):
        for side, fn in enumerate((ours, theirs)):
            t0 = time.perf_counter()
            values[side] = fn()
            times[side].append(time.perf_counter() - t0)
    return Timing(times[0]), values[0], Timing(times[1]), values[1]


ROWS: list[tuple[str, str, str, str]] = []   # (section, what, figure, note)


def report(section: str, what: str, figure: str, note: str = "") -> None:
    ROWS.append((section, what, figure, note))
    print(f"  {what:<58} {figure:<44} {note}", flush=True)


def panel(members: int, data: Path) -> dict[str, str]:
    out = data / f"{members}"
    files = {t: out / f"{t}.parquet" for t in TABLES}
    if not all(f.exists() for f in files.values()):
        print(f"generating {members:,} members into {out} …", flush=True)
        t0 = time.perf_counter()
        generate(members, out, "parquet")
        print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)
    return {k: str(v) for k, v in files.items()}


def member_months(files: dict, months: list[int]) -> int:
    import duckdb

    parts = [f"count(*) FILTER (WHERE birth_date <= DATE '2011-{m:02d}-01' "
             f"AND (enrolled_from IS NULL OR enrolled_from <= DATE '2011-{m:02d}-01') "
             f"AND (enrolled_to IS NULL OR enrolled_to >= DATE '2011-{m:02d}-01'))" for m in months]
    row = duckdb.connect().execute(f"SELECT {', '.join(parts)} FROM read_parquet('{files['members']}')").fetchone()
    return sum(row)


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------

def bench_duckdb(base: dict, repeat: int, contracts: dict) -> dict:
    """capdsl DuckDB in-process vs the hand-written DuckDB query, contract by contract."""
    import duckdb

    from capdsl.evaluation.periods import parse_period
    from capdsl.pipeline import compile_file
    from capdsl.sql.duckdb_engine import evaluate_files

    out = {}
    for name, bench in contracts.items():
        _, program = compile_file(bench.path)
        files, period = bench.files(base), parse_period(bench.period)

        def ours():
            return evaluate_files(program, files, period, {}, con=duckdb.connect())

        sql = hand_sql(bench.hand, files, "duckdb")

        def theirs():
            con = duckdb.connect()
            con.execute("SET threads TO 2")
            cur = con.execute(sql)
            return [d[0] for d in cur.description], cur.fetchall()

        t_ours, result, t_hand, (columns, rows) = timed_pair(ours, theirs, repeat)
        total = assert_same(name, capdsl_items(result, bench.month), hand_items(columns, rows))
        ratio = t_ours.median / t_hand.median
        report("duckdb", f"{name}: capdsl DuckDB (evaluate_files, in-process)", str(t_ours))
        report("duckdb", f"{name}: hand-written DuckDB SQL", str(t_hand))
        report("duckdb", f"{name}: ratio capdsl / hand (median)", f"{ratio:.2f}x",
               f"same {len(rows)} statements, total {total:,} to the cent")
        out[name] = (t_ours, t_hand, result)
    return out


def bench_interpreter(sub: int, data: Path, main_members: int, capdsl_times: dict, contracts: dict) -> None:
    """(b) The reference interpreter on a subsample panel, extrapolated per member-month."""
    from capdsl.evaluation.interpret import evaluate
    from capdsl.data.panel import load_panel, parse_params
    from capdsl.evaluation.periods import parse_period
    from capdsl.pipeline import compile_file, panel_rows, requirements
    from capdsl.sql.compile import run_months

    base = panel(sub, data)
    for name, bench in contracts.items():
        _, program = compile_file(bench.path)
        files, period = bench.files(base), parse_period(bench.period)
        loaded = load_panel(files, requirements(program))
        rows = panel_rows(program, loaded)
        params = parse_params([], None, requirements(program))  # the contract's defaults, as `capdsl eval`
        months, _ = run_months(program, period)
        reported = tuple(period.months)
        mm_sub = member_months(files, [m.month for m in months])
        t, _ = timed(lambda: evaluate(program, rows, reported, params), 1)
        per = mm_sub / t.best
        mm_main = member_months(capdsl_files(main_members, data), [m.month for m in months])
        extrapolated = mm_main / per
        ratio = extrapolated / capdsl_times[name][0].median
        report("interpreter", f"{name}: interpreter on {sub:,} members ({mm_sub:,} member-months)",
               f"{t.best:8.2f} s  {per:12,.0f} member-months/s")
        report("interpreter", f"{name}: interpreter EXTRAPOLATED to {main_members:,} members",
               f"{extrapolated:8.1f} s", f"{ratio:,.0f}x capdsl DuckDB's time")


def capdsl_files(members: int, data: Path) -> dict:
    return {t: str(data / f"{members}" / f"{t}.parquet") for t in TABLES}


def zen_graph() -> str:
    """GoRules JDM: input -> (age_index table, base_rate table) -> output."""

    def table(id_, inputs, outputs, rules):
        return {"id": id_, "type": "decisionTableNode", "name": id_, "position": {"x": 0, "y": 0},
                "content": {"hitPolicy": "first",
                            "inputs": [{"id": f"{id_}_{f}", "name": f, "field": f} for f in inputs],
                            "outputs": [{"id": f"{id_}_{f}", "name": f, "field": f} for f in outputs],
                            "rules": [dict({"_id": f"{id_}_r{i}"}, **{f"{id_}_{k}": v for k, v in r.items()})
                                      for i, r in enumerate(rules)]}}

    index = [{"age": f"[{lo}..{hi}]" if hi is not None else f">= {lo}", "age_index": v} for lo, hi, v in VZP_INDEX]
    rate = [{"weekly_hours": ">= 30", "late_days": ">= 1", "booking_days": ">= 2", "base_rate": "50"},
            {"weekly_hours": ">= 25", "late_days": ">= 1", "booking_days": "", "base_rate": "49"},
            {"weekly_hours": "", "late_days": "", "booking_days": "", "base_rate": "47"}]
    node = {"type": "edge"}
    graph = {"nodes": [{"id": "in", "type": "inputNode", "name": "in", "position": {"x": 0, "y": 0}},
                       table("idx", ["age"], ["age_index"], index),
                       table("rate", ["weekly_hours", "late_days", "booking_days"], ["base_rate"], rate),
                       {"id": "out", "type": "outputNode", "name": "out", "position": {"x": 0, "y": 0}}],
             "edges": [dict(node, id="e1", sourceId="in", targetId="idx"),
                       dict(node, id="e2", sourceId="in", targetId="rate"),
                       dict(node, id="e3", sourceId="idx", targetId="out"),
                       dict(node, id="e4", sourceId="rate", targetId="out")]}
    return json.dumps(graph)


def march_contexts(files: dict) -> list[dict]:
    """One dict per March member-month: what a per-row rules engine is called with."""
    import duckdb

    sql = """
      SELECT m.practice_id, 2011 - year(birth_date) - CASE WHEN 301 < month(birth_date) * 100 + day(birth_date)
             THEN 1 ELSE 0 END AS age, p.weekly_hours, p.late_days, p.booking_days
      FROM read_parquet('{members}') m JOIN read_parquet('{practices}') p USING (practice_id)
      WHERE birth_date <= DATE '2011-03-01' AND (enrolled_from IS NULL OR enrolled_from <= DATE '2011-03-01')
        AND (enrolled_to IS NULL OR enrolled_to >= DATE '2011-03-01')
      ORDER BY member_id""".format(**files)
    cur = duckdb.connect().execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def bench_rules(sub: int, data: Path, main_members: int, capdsl_vzp) -> None:
    """(c) Per-row rules engines on the subsample (capitation line only), extrapolated."""
    from capdsl.evaluation.periods import parse_period
    from capdsl.pipeline import compile_file
    from capdsl.sql.duckdb_engine import evaluate_files

    files = panel(sub, data)
    rows = march_contexts(files)
    _, program = compile_file(VZP)
    expected = {pid: amt for pid, m, line, amt, *_ in
                evaluate_files(program, files, parse_period(PERIOD), {}).rows if line == "capitation"}
    mm_main = member_months(capdsl_files(main_members, data), [3])
    t_capdsl = capdsl_vzp[0].median
    # capdsl's own throughput on the same contract and period: the year's member-months (the pool)
    capdsl_rate = member_months(capdsl_files(main_members, data), list(range(1, 13))) / t_capdsl

    def check(label, totals):
        got = {pid: v.quantize(CENT) for pid, v in totals.items()}
        bad = [pid for pid in expected if got.get(pid, Decimal(0)) != expected[pid]]
        if bad:
            raise AssertionError(f"{label}: capitation differs for {len(bad)} practices")

    def result(label, seconds, n):
        per = n / seconds
        extrapolated = mm_main / per
        report("rules", f"{label}: {n:,} member-months", f"{seconds:8.2f} s  {per:12,.0f} member-months/s")
        report("rules", f"{label}: EXTRAPOLATED to {mm_main:,} March member-months", f"{extrapolated:8.1f} s",
               f"{extrapolated / t_capdsl:,.0f}x capdsl's wall time (whole contract incl. the year pool); "
               f"{capdsl_rate / per:,.0f}x fewer member-months/s than capdsl ({capdsl_rate:,.0f}/s)")

    try:
        import zen
    except ImportError:
        print("  zen-engine not installed (pip install -e '.[bench]'): skipped")
    else:
        content = zen_graph()
        decision = zen.ZenEngine().create_decision(content)
        engine = zen.ZenEngine({"loader": lambda key: content})

        def per_call():
            totals = defaultdict(Decimal)
            for r in rows:
                out = decision.evaluate({"age": r["age"], "weekly_hours": r["weekly_hours"],
                                         "late_days": r["late_days"], "booking_days": r["booking_days"]})["result"]
                totals[r["practice_id"]] += Decimal(str(out["base_rate"])) * Decimal(str(out["age_index"]))
            return totals

        def batch():
            totals = defaultdict(Decimal)
            requests = [{"key": "vzp", "context": {"age": r["age"], "weekly_hours": r["weekly_hours"],
                                                   "late_days": r["late_days"], "booking_days": r["booking_days"]}}
                        for r in rows]
            for r, res in zip(rows, engine.evaluate_batch(requests)):
                out = res["data"]["result"]
                totals[r["practice_id"]] += Decimal(str(out["base_rate"])) * Decimal(str(out["age_index"]))
            return totals

        t, totals = timed(per_call, 1, warmup=0)
        check("zen per call", totals)
        result("zen-engine, ZenDecision.evaluate per member-month", t.best, len(rows))
        t, totals = timed(batch, 1, warmup=0)
        check("zen batch", totals)
        result("zen-engine, ZenEngine.evaluate_batch", t.best, len(rows))
    try:
        import rule_engine
    except ImportError:
        print("  rule-engine not installed (pip install -e '.[bench]'): skipped")
    else:
        bands = [(rule_engine.Rule(f"age >= {lo}" + (f" and age <= {hi}" if hi is not None else "")), Decimal(v))
                 for lo, hi, v in VZP_INDEX]
        tiers = [(rule_engine.Rule("weekly_hours >= 30 and late_days >= 1 and booking_days >= 2"), Decimal(50)),
                 (rule_engine.Rule("weekly_hours >= 25 and late_days >= 1"), Decimal(49)),
                 (rule_engine.Rule("true"), Decimal(47))]
        n = min(len(rows), 20_000)

        def run():
            totals = defaultdict(Decimal)
            for r in rows[:n]:
                idx = next(v for rule, v in bands if rule.matches(r))
                rate = next(v for rule, v in tiers if rule.matches(r))
                totals[r["practice_id"]] += rate * idx
            return totals

        t, totals = timed(run, 1)
        if n == len(rows):
            check("rule-engine", totals)
        result("rule-engine, first matching Rule per member-month", t.best, n)


HAND_SCRIPT = """
import sys, duckdb
sql, out = open(sys.argv[1]).read(), sys.argv[2]
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"COPY ({sql}) TO '{out}' (HEADER, DELIMITER ',')")
"""


def bench_process(base: dict, repeat: int, contracts: dict, csv: bool = False) -> None:
    """The whole `capdsl eval` process vs a whole python process running the hand-written SQL, three
    ways: with the cache filled (a re-run: the contract, its query and the panel's checks remembered),
    on a new panel (the contract and query remembered, the files new: a monthly run), and with no
    cache at all. With `csv`, on the panel written as CSV files."""
    exe = Path(sys.executable).parent / "capdsl"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hand.py"
        script.write_text(HAND_SCRIPT)
        warm = {**os.environ, "CAPDSL_CACHE_DIR": str(Path(tmp) / "cache")}
        cold = {**os.environ, "CAPDSL_NO_CACHE": "1"}
        copies = iter(range(10**6))

        def fresh_copy(files: dict) -> dict:
            """The panel as new files (new inodes, just written: their checks cannot be remembered)."""
            where = Path(tmp) / f"copy{next(copies)}"
            where.mkdir()
            return {t: shutil.copy(f, where / Path(f).name) for t, f in files.items()}

        def command(bench: Bench, panel) -> list[str]:
            tables = [arg for t in TABLES if t in panel for arg in (f"--{t}", str(panel[t]))]
            return [str(exe), "eval", str(bench.path), *tables, "--period", bench.period,
                    "--format", "csv", "-o", str(Path(tmp) / "ours.csv"), "-q"]

        for name, bench in contracts.items():
            files = csv_panel(bench.files(base)) if csv else bench.files(base)
            sql_file = Path(tmp) / f"{name}.sql"
            sql_file.write_text(hand_sql(bench.hand, files, "duckdb"))
            theirs = [sys.executable, str(script), str(sql_file), str(Path(tmp) / "hand.csv")]
            for label, env, new_panel in (("cache filled", warm, False), ("new panel", warm, True),
                                          ("no cache", cold, False)):
                # the copies are made before the clock starts: only the run itself is timed
                commands = iter([command(bench, fresh_copy(files) if new_panel else files)
                                 for _ in range(repeat + 1)])
                t_ours, _, t_hand, _ = timed_pair(
                    lambda: subprocess.run(next(commands), check=True, capture_output=True, env=env),
                    lambda: subprocess.run(theirs, check=True, capture_output=True), repeat)
                report("process", f"{name}: whole `capdsl eval … --format csv` process, {label}", str(t_ours))
                report("process", f"{name}: whole python process, hand-written SQL -> CSV", str(t_hand))
                report("process", f"{name}: ratio capdsl ({label}) / hand (median)",
                       f"{t_ours.median / t_hand.median:.2f}x")


def csv_panel(files: dict) -> dict:
    """The same panel as CSV files beside the Parquet ones (written once)."""
    import duckdb

    out = {}
    con = duckdb.connect()
    for table, path in files.items():
        target = Path(path).with_suffix(".csv")
        if not target.exists():
            partial = target.with_suffix(".csv.tmp")
            con.execute(f"COPY (SELECT * FROM read_parquet('{path}')) TO '{partial}' (HEADER, DELIMITER ',')")
            partial.rename(target)
        out[table] = target
    return out


def bench_spark(base: dict, repeat: int, contracts: dict) -> None:
    """capdsl on Spark vs the hand-written query on Spark, same session (local[2]), after a warm-up."""
    from capdsl.evaluation.periods import parse_period
    from capdsl.pipeline import compile_file
    from capdsl.sql.compile import Options
    from capdsl.sql.spark_engine import run, spark_session

    spark = spark_session("local[2]")
    try:
        for name, bench in contracts.items():
            _, program = compile_file(bench.path)
            files, period = bench.files(base), parse_period(bench.period)
            tables = {}
            for k, v in files.items():  # capdsl takes table names (quoted identifiers): temp views over the files
                spark.read.parquet(str(v)).createOrReplaceTempView(f"bench_{name}_{k}")
                tables[k] = f"bench_{name}_{k}"

            def ours():
                return run(program, spark, period, {}, tables, Options(row_column=None, measure_values="text"))

            sql = hand_sql(bench.hand, files, "spark")

            def theirs():
                df = spark.sql(sql)
                return df.columns, [tuple(r) for r in df.collect()]

            t_ours, result, t_hand, (columns, rows) = timed_pair(ours, theirs, repeat)
            total = assert_same(f"{name} (spark)", capdsl_items(result, bench.month), hand_items(columns, rows))
            report("spark", f"{name}: capdsl on Spark (local[2], from Parquet)", str(t_ours))
            report("spark", f"{name}: hand-written SQL on Spark (local[2])", str(t_hand))
            report("spark", f"{name}: ratio capdsl / hand (median)", f"{t_ours.median / t_hand.median:.2f}x",
                   f"total {total:,} to the cent")
    finally:
        spark.stop()


def bench_year(base: dict, repeat: int, contracts: dict) -> None:
    """The whole year 2011 (12 months) through `capdsl eval`, in a child process: time and peak RSS."""
    exe = Path(sys.executable).parent / "capdsl"
    with tempfile.TemporaryDirectory() as tmp:
        for name, bench in contracts.items():
            files = bench.files(base)
            tables = [arg for t in TABLES if t in files for arg in (f"--{t}", str(files[t]))]
            cmd = [str(exe), "eval", str(bench.path), *tables, "--period", "2011",
                   "--format", "csv", "-o", str(Path(tmp) / "year.csv"), "-q"]
            times, peaks = [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                _, status, usage = os.wait4(proc.pid, 0)
                times.append(time.perf_counter() - t0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode:
                    raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-2000:]}")
                peaks.append(usage.ru_maxrss / 1024)  # KiB -> MiB
            mm = member_months(files, list(range(1, 13)))
            t = Timing(times)
            report("year", f"{name}: `capdsl eval --period 2011` ({mm:,} member-months)", str(t),
                   f"peak RSS {max(peaks):,.0f} MiB; {mm / t.median:,.0f} member-months/s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (best and median shown)")
    parser.add_argument("--subsample", type=int, default=20_000,
                        help="members of the subsample panel for the interpreter and the rules engines")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="where generated panels are kept")
    parser.add_argument("--no-process", dest="process", action="store_false",
                        help="skip the whole-process comparison")
    parser.add_argument("--no-slow", dest="slow", action="store_false",
                        help="skip the interpreter and the rules engines")
    parser.add_argument("--spark", action="store_true", help="also capdsl vs hand SQL on Spark (local[2])")
    parser.add_argument("--year", action="store_true", help="also the year 2011 with peak memory")
    parser.add_argument("--csv", action="store_true",
                        help="also the whole processes on the panel as CSV (hand-written SQL over read_csv)")
    parser.add_argument("--contract", action="append", choices=sorted(CONTRACTS), metavar="NAME",
                        help=f"only this contract (repeatable; default all: {', '.join(CONTRACTS)}); the rules "
                             "engines run only with cz_vzp_2011_adult")
    args = parser.parse_args(argv)
    contracts = {k: v for k, v in CONTRACTS.items() if not args.contract or k in args.contract}

    files = panel(args.members, args.data)
    periods = ", ".join(f"{name} {bench.period}" for name, bench in contracts.items())
    print(f"panel: {args.members:,} members (Parquet, {args.data / str(args.members)}), periods: {periods}; "
          f"{os.cpu_count()} cores, best/median of {args.repeat} runs", flush=True)
    print("capdsl DuckDB vs hand-written DuckDB SQL (in-process, from Parquet)", flush=True)
    times = bench_duckdb(files, args.repeat, contracts)
    if args.slow:
        print(f"reference interpreter (subsample of {args.subsample:,} members, extrapolated)", flush=True)
        bench_interpreter(args.subsample, args.data, args.members, times, contracts)
        if "cz_vzp_2011_adult" in contracts:
            print(f"per-row rules engines (subsample of {args.subsample:,} members, capitation only, extrapolated)",
                  flush=True)
            bench_rules(args.subsample, args.data, args.members, times["cz_vzp_2011_adult"])
    if args.process:
        print("whole processes (start-up included)", flush=True)
        bench_process(files, args.repeat, contracts)
    if args.csv:
        print("whole processes on the panel as CSV files (start-up included)", flush=True)
        bench_process(files, args.repeat, contracts, csv=True)
    if args.spark:
        print("Spark local[2]", flush=True)
        bench_spark(files, max(1, min(args.repeat, 3)), contracts)
    if args.year:
        print("the year 2011 on DuckDB (child process)", flush=True)
        bench_year(files, max(1, min(args.repeat, 3)), contracts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
