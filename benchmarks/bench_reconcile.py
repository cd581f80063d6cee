"""`capdsl reconcile` against `capdsl eval` on the same panel, in one process and one run.

The panel is bench_engines' (benchmarks/panel_gen.py, Parquet); the contract contracts/us_pmpm.cap
for 2011-03, whose capitation is paid per member. The remittance is built once from the contract's
own member shares (capdsl.sql.shares) with 1 % of the members underpaid by 10 USD and 0.5 % left
out, plus the withhold per practice, and written as Parquet beside the panel. Timed (best and median
of --repeat, alternating):

- eval: load the panel, evaluate on DuckDB, build the statements (`pipeline.evaluate`);
- reconcile: the same evaluation with the months' statements, the remittance read and checked, the
  member shares query, and the SQL comparison (`tools.reconcile.run_reconcile`).

    python benchmarks/bench_reconcile.py                      # 1 M members
    python benchmarks/bench_reconcile.py --members 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engines import panel  # noqa: E402  (the benchmark panel, generated once)

CONTRACT = ROOT / "contracts" / "us_pmpm.cap"
PERIOD = "2011-03"


def remittance(files: dict, out: Path) -> Path:
    """The payer's remittance for the period: the contract's shares, with deliberate errors."""
    if out.exists():
        return out
    import duckdb

    from capdsl.evaluation.periods import parse_period
    from capdsl.pipeline import Run, compiled_file, evaluate
    from capdsl.sql import duckdb_engine
    from capdsl.sql.shares import shares_sql

    contract = compiled_file(CONTRACT)
    result, pan = evaluate(contract, Run(files=files, period=PERIOD))
    sql, _ = shares_sql(contract.tree, parse_period(PERIOD), options=duckdb_engine.panel_options(pan.con))
    withhold = [(st.practice_id, line.amount) for st in result.statements for line in st.lines
                if line.id == "withhold"]
    con = duckdb.connect()
    con.register("shares", pan.con.sql(sql).to_arrow_table())
    con.execute("CREATE TABLE w (practice_id VARCHAR, amount DECIMAL(38, 2))")
    con.executemany("INSERT INTO w VALUES (?, ?)", withhold)
    con.execute(f"""COPY (
        SELECT practice_id, '{PERIOD}' AS month, line, member_id,
               CAST(share AS DECIMAL(38, 2)) - CASE WHEN hash(member_id) % 100 = 0 THEN 10 ELSE 0 END AS amount,
               'EFT ' || practice_id AS reference
        FROM shares WHERE share <> 0 AND hash(member_id) % 200 <> 1
        UNION ALL SELECT practice_id, '{PERIOD}', 'withhold', NULL, amount, 'EFT ' || practice_id FROM w
    ) TO '{out}' (FORMAT parquet)""")
    pan.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    from capdsl.pipeline import Run, compiled_file, evaluate
    from capdsl.tools.reconcile import run_reconcile

    data = ROOT / "benchmarks" / "data"
    files = {k: v for k, v in panel(args.members, data).items()}
    paid = remittance(files, Path(files["members"]).parent / f"remittance_{PERIOD}.parquet")
    contract = compiled_file(CONTRACT)
    run = Run(files=files, period=PERIOD)

    def eval_once():
        result, pan = evaluate(contract, run)
        pan.close()
        return result

    def reconcile_once():
        return run_reconcile(contract, run, str(paid))

    eval_once(), reconcile_once()  # warm: the compiled query and the panel checks' memo
    times: dict[str, list[float]] = {"eval": [], "reconcile": []}
    rec = None
    for _ in range(args.repeat):
        for name, fn in (("eval", eval_once), ("reconcile", reconcile_once)):
            t0 = time.perf_counter()
            got = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "reconcile":
                rec = got
    counts = rec.counts()
    members = sum(n for n, _ in counts.get("member", {}).values())
    print(f"{args.members:,} members, {PERIOD}, {members:,} member-months compared; "
          f"member discrepancies: " + ", ".join(f"{s} {n}" for s, (n, _) in counts["member"].items()))
    for name, ts in times.items():
        print(f"  {name:10s} best {min(ts):6.2f} s   median {statistics.median(ts):6.2f} s")
    ratio = min(times["reconcile"]) / min(times["eval"])
    print(f"  reconcile / eval: {ratio:.2f}x (best), "
          f"{statistics.median(times['reconcile']) / statistics.median(times['eval']):.2f}x (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
