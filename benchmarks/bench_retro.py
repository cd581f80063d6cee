"""`capdsl retro` against `capdsl eval` on the same panel, in one process and one run.

The panel is bench_engines' (benchmarks/panel_gen.py, Parquet), today's; the panel the past months
were paid on is a copy made once beside it, with 0.5 % of the members left out (retroactive
enrolments today), 1 % with another birth date (corrections) and 0.5 % whose enrolment ended in
December (back-dated terminations today). The contract is contracts/us_pmpm.cap, period 2011-06,
looking back 5 months (January to May). Timed (best and median of --repeat, alternating):

- eval: the year 2011 on today's panel with its months' statements (`pipeline.evaluate`): retro
  evaluates the look-back's year on both panels, so two of these are the work it cannot avoid;
- retro: the adjustment lines per practice and line (`tools.retro.run_retro`);
- retro --detail member: the same with each member-month's adjustment and its reason;
- hand comparison: the least a per-member comparison does besides evaluating, written by hand for
  this contract in one DuckDB query — each panel's counted member-months of January to May at
  100 USD (FULL JOIN), the changed ones fetched — with no reasons. `2 × eval + hand comparison`
  over `eval` is the floor for the per-member run.

    python benchmarks/bench_retro.py                      # 1 M members
    python benchmarks/bench_retro.py --members 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engines import panel  # noqa: E402  (the benchmark panel, generated once)

CONTRACT = ROOT / "contracts" / "us_pmpm.cap"
PERIOD = "2011-06"
MONTHS = 5


def paid_panel(members: str, out: Path) -> Path:
    """The members the past months were paid on: today's, with the changes a month of 834s brings."""
    if out.exists():
        return out
    import duckdb

    duckdb.connect().execute(f"""COPY (
        SELECT * REPLACE (
            CASE WHEN hash(member_id) % 100 = 3 THEN birth_date + INTERVAL 400 DAY ELSE birth_date END AS birth_date,
            CASE WHEN hash(member_id) % 200 = 5 THEN DATE '2011-12-31' ELSE enrolled_to END AS enrolled_to)
        FROM read_parquet('{members}') WHERE hash(member_id) % 200 <> 7
    ) TO '{out}' (FORMAT parquet)""")
    return out


def month_rows(members: str, alias: str) -> str:
    """A panel's counted member-months of January to May (first-day exposure) at 100 USD."""
    return " UNION ALL ".join(
        f"SELECT practice_id, member_id, DATE '2011-{m:02d}-01' AS month_start, 100.00 AS {alias} "
        f"FROM read_parquet('{members}') WHERE birth_date <= DATE '2011-{m:02d}-01' "
        f"AND (enrolled_from IS NULL OR enrolled_from <= DATE '2011-{m:02d}-01') "
        f"AND (enrolled_to IS NULL OR enrolled_to >= DATE '2011-{m:02d}-01')" for m in range(1, MONTHS + 1))


HAND = """
WITH o AS ({owed}), p AS ({paid})
SELECT coalesce(o.practice_id, p.practice_id), coalesce(o.member_id, p.member_id),
       coalesce(o.month_start, p.month_start), p.paid, o.owed, coalesce(o.owed, 0) - coalesce(p.paid, 0)
FROM o FULL JOIN p ON o.practice_id = p.practice_id AND o.member_id = p.member_id AND o.month_start = p.month_start
WHERE coalesce(o.owed, 0) <> coalesce(p.paid, 0)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import duckdb

    from capdsl.pipeline import Run, compiled_file, evaluate
    from capdsl.tools.retro import run_retro

    files = panel(args.members, ROOT / "benchmarks" / "data")
    paid = paid_panel(files["members"], Path(files["members"]).parent / "members_paid.parquet")
    paid_files = {**files, "members": str(paid)}
    contract = compiled_file(CONTRACT)
    run = Run(files=files, period=PERIOD)

    def eval_once():
        result, pan = evaluate(contract, dataclasses.replace(run, period="2011"), by_month=True)
        pan.close()
        return result

    def retro_once():
        return run_retro(contract, run, paid_files, months=MONTHS)

    def detail_once():
        return run_retro(contract, run, paid_files, months=MONTHS, members=True)

    hand_sql = HAND.format(owed=month_rows(files["members"], "owed"), paid=month_rows(str(paid), "paid"))

    def hand_once():
        con = duckdb.connect()
        found = con.execute(hand_sql).fetchall()
        con.close()
        return found

    runs = {"eval (year)": eval_once, "retro": retro_once, "retro --detail member": detail_once,
            "hand comparison": hand_once}
    for fn in runs.values():
        fn()  # warm: the compiled queries and the panel checks' memo
    times: dict[str, list[float]] = {name: [] for name in runs}
    got = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            got[name] = fn()
            times[name].append(time.perf_counter() - t0)
    detail, hand = got["retro --detail member"], got["hand comparison"]
    total = sum(a.adjustment for a in detail.members)
    assert len(detail.members) == len(hand), (len(detail.members), len(hand))
    assert total == sum(row[5] for row in hand), (total, sum(row[5] for row in hand))
    print(f"{args.members:,} members, {PERIOD} looking back {MONTHS} months: "
          f"{len(detail.members):,} member-months adjusted, {total} USD in all")
    for name, ts in times.items():
        print(f"  {name:22s} best {min(ts):6.2f} s   median {statistics.median(ts):6.2f} s")
    best = {name: min(ts) for name, ts in times.items()}
    base = best["eval (year)"]
    for name in ("retro", "retro --detail member"):
        print(f"  {name} / eval: {best[name] / base:.2f}x (best)")
    print(f"  (2 x eval + hand comparison) / eval: {(2 * base + best['hand comparison']) / base:.2f}x (best)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
