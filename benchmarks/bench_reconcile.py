"""`capdsl reconcile` against `capdsl eval` on the same panel, in one process and one run.

The panel is bench_engines' (benchmarks/panel_gen.py, Parquet); the contract contracts/us_pmpm.cap
for 2011-03, whose capitation is paid per member. The remittance is built once from the contract's
own member shares (capdsl.sql.shares) with 1 % of the members underpaid by 10 USD and 0.5 % left
out, plus the withhold per practice, and written as Parquet beside the panel. Timed (best and median
of --repeat, alternating):

- eval: load the panel, evaluate on DuckDB, build the statements (`pipeline.evaluate`);
- reconcile: the same evaluation with the months' statements, the remittance read and checked, the
  member shares query, and the SQL comparison (`tools.reconcile.run_reconcile`);
- hand comparison: the least a per-member reconciliation does besides evaluating, written by hand
  for this contract in one DuckDB query — each counted member's 100 USD against the remittance's
  member rows summed per member-month (FULL JOIN), counted per status, the discrepancies fetched —
  with no checks of the file and no reasons. `eval + hand comparison` over `eval` is the ratio a
  reconciliation cannot beat by doing the same work faster.

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


HAND = """
WITH s AS (SELECT practice_id, member_id, DATE '2011-03-01' AS month_start, 100.00 AS expected
           FROM read_parquet('{members}')
           WHERE birth_date <= DATE '2011-03-01'
             AND (enrolled_from IS NULL OR enrolled_from <= DATE '2011-03-01')
             AND (enrolled_to IS NULL OR enrolled_to >= DATE '2011-03-01')),
p AS (SELECT practice_id, member_id, CAST(month || '-01' AS DATE) AS month_start, sum(amount) AS paid
      FROM read_parquet('{paid}') WHERE member_id IS NOT NULL GROUP BY ALL),
j AS (SELECT coalesce(s.practice_id, p.practice_id) AS practice_id, coalesce(s.member_id, p.member_id) AS member_id,
             coalesce(s.month_start, p.month_start) AS month_start, s.expected, p.paid,
             coalesce(p.paid, 0) - coalesce(s.expected, 0) AS diff,
             CASE WHEN s.expected IS NULL THEN 'unexplained' WHEN coalesce(p.paid, 0) = s.expected THEN 'matched'
                  WHEN coalesce(p.paid, 0) < s.expected THEN 'underpaid' ELSE 'overpaid' END AS status
      FROM s FULL JOIN p ON s.practice_id = p.practice_id AND s.member_id = p.member_id
                        AND s.month_start = p.month_start)
SELECT status, count(*), sum(diff), list((practice_id, member_id, month_start, expected, paid, diff))
       FILTER (WHERE status <> 'matched')
FROM j GROUP BY status
"""


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

    import duckdb

    hand_sql = HAND.format(members=files["members"], paid=paid)

    def hand_once():
        con = duckdb.connect()
        found = con.execute(hand_sql).fetchall()
        con.close()
        return found

    eval_once(), reconcile_once(), hand_once()  # warm: the compiled query and the panel checks' memo
    times: dict[str, list[float]] = {"eval": [], "reconcile": [], "hand comparison": []}
    rec = None
    for _ in range(args.repeat):
        for name, fn in (("eval", eval_once), ("reconcile", reconcile_once), ("hand comparison", hand_once)):
            t0 = time.perf_counter()
            got = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "reconcile":
                rec = got
    counts = rec.counts()
    members = sum(n for n, _ in counts.get("member", {}).values())
    print(f"{args.members:,} members, {PERIOD}, {members:,} member-months compared; "
          f"member discrepancies: " + ", ".join(f"{s} {n}" for s, (n, _) in counts["member"].items()))
    hand = {status: n for status, n, _, _ in hand_once()}
    assert hand == {s: n for s, (n, _) in counts["member"].items() if n}, (hand, counts["member"])
    for name, ts in times.items():
        print(f"  {name:16s} best {min(ts):6.2f} s   median {statistics.median(ts):6.2f} s")
    best = {name: min(ts) for name, ts in times.items()}
    median = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"  reconcile / eval: {best['reconcile'] / best['eval']:.2f}x (best), "
          f"{median['reconcile'] / median['eval']:.2f}x (median)")
    print(f"  (eval + hand comparison) / eval: {(best['eval'] + best['hand comparison']) / best['eval']:.2f}x (best), "
          f"{(median['eval'] + median['hand comparison']) / median['eval']:.2f}x (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
