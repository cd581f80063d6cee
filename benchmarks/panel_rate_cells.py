"""The panel of the rate-cell + stop-loss benchmark, derived from a panel_gen.py panel.

Members keep every column and gain a Medicaid eligibility `category` (TANF
45 %, CHIP 15 %, SSI 15 %, EXPANSION 25 %) and a rating `region` (NORTH 35 %,
METRO 45 %, SOUTH 20 %). The events are claims instead of the base panel's
services: two per member-year on average, each naming a member drawn at
random and that member's practice, dated in 2011, with an `allowed` amount
(DECIMAL(12, 2)): 1.5 % inpatient stays of 5,000-185,000 USD, so that about
half a per cent of members pass a 150,000 USD attachment point in the year,
8.5 % outpatient claims of 300-6,000 USD, the rest office visits and
prescriptions of 20-400 USD; 0.4 % are deliveries (CPT 59400, 59510, 59610,
59618). The practices are the base panel's. Deterministic, like panel_gen.py
(the same integer hash inside DuckDB).

    python benchmarks/panel_rate_cells.py --base benchmarks/data/1000000 --out benchmarks/data/1000000/rate_cells
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panel_gen import _u  # noqa: E402  (the panel generator's uniform [0, 1) hash)

CLAIMS_PER_MEMBER = 2


def generate(base: Path, out: Path, year: int = 2011) -> dict[str, Path]:
    """Writes members.parquet and events.parquet into `out`; returns every table's path (practices:
    the base panel's)."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET threads=2")
    con.execute("SET enable_progress_bar=false")
    members = con.execute(f"SELECT count(*) FROM read_parquet('{base / 'members.parquet'}')").fetchone()[0]
    practices = con.execute(f"SELECT count(*) FROM read_parquet('{base / 'practices.parquet'}')").fetchone()[0]
    con.execute(f"""
        CREATE TABLE members AS
        SELECT m.*,
               CASE WHEN {_u('i', 61)} < 0.45 THEN 'TANF' WHEN {_u('i', 61)} < 0.60 THEN 'CHIP'
                    WHEN {_u('i', 61)} < 0.75 THEN 'SSI' ELSE 'EXPANSION' END AS category,
               CASE WHEN {_u('i', 62)} < 0.35 THEN 'NORTH' WHEN {_u('i', 62)} < 0.80 THEN 'METRO'
                    ELSE 'SOUTH' END AS region
        FROM (SELECT *, CAST(substr(member_id, 2) AS BIGINT) AS i
              FROM read_parquet('{base / 'members.parquet'}')) AS m
    """)
    con.execute("ALTER TABLE members DROP COLUMN i")
    # a member's index k: member 'M' || k is in practice k % practices (panel_gen.py)
    con.execute(f"""
        CREATE TABLE events AS
        SELECT 'P' || lpad(CAST(k % {practices} AS VARCHAR), 5, '0') AS practice_id,
               'M' || lpad(CAST(k AS VARCHAR), 8, '0') AS member_id,
               CAST(DATE '{year}-01-01' + INTERVAL (CAST(floor({_u('j', 72)} * 365) AS INTEGER)) DAY AS DATE) AS date,
               CASE WHEN c < 0.001 THEN '59400' WHEN c < 0.002 THEN '59510' WHEN c < 0.003 THEN '59610'
                    WHEN c < 0.004 THEN '59618' WHEN c < 0.019 THEN 'IP' WHEN c < 0.104 THEN 'OP'
                    WHEN c < 0.6 THEN 'PHYS' ELSE 'RX' END AS code,
               CAST(round(CASE WHEN c < 0.004 THEN 4000 + a * 8000 WHEN c < 0.019 THEN 5000 + a * 180000
                               WHEN c < 0.104 THEN 300 + a * 5700 ELSE 20 + a * 380 END, 2) AS DECIMAL(12, 2))
                 AS allowed,
               1 AS quantity
        FROM (SELECT j, CAST(floor({_u('j', 71)} * {members}) AS BIGINT) AS k,
                     {_u('j', 73)} AS c, {_u('j', 74)} AS a
              FROM range({CLAIMS_PER_MEMBER * members}) t(j))
    """)
    paths = {"practices": base / "practices.parquet"}
    for table in ("members", "events"):
        path = out / f"{table}.parquet"
        tmp = path.with_name(path.name + ".tmp")
        con.execute(f"COPY (SELECT * FROM {table} ORDER BY 1, 2) TO '{tmp}' (FORMAT PARQUET, COMPRESSION ZSTD)")
        os.replace(tmp, path)
        paths[table] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="a panel_gen.py panel (Parquet)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for table, path in generate(args.base, args.out).items():
        print(f"{table}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
