"""Deterministic synthetic panels: members, practices, events, measures.

A realistic European age mix (Czech 2011-like), ~1,500 members per
practice, ~8 % diabetic, ~12 % cardiovascular, 2 % in social care, events
at ~0.5 per member-year. About 2 % of members join during the year and 2 %
leave; enrolment intervals are always valid (`enrolled_to` is never before
`enrolled_from`). Generated inside DuckDB with an integer hash as
the random source, so 10 M members take seconds and the same arguments give
the same files on every machine.

    python benchmarks/panel_gen.py --members 1000000 --out benchmarks/data/1m --format parquet
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# age bands with their share of the population (sums to 1000 per mille)
AGE_MIX = [(0, 4, 50), (5, 14, 95), (15, 19, 55), (20, 29, 130), (30, 39, 160), (40, 49, 135), (50, 59, 140),
           (60, 69, 125), (70, 79, 70), (80, 89, 35), (90, 104, 5)]


def _mix(x: str) -> str:
    """murmur3's 32-bit finaliser: xor-shifts and multiplies make salts independent."""
    x = f"xor(CAST({x} AS BIGINT), CAST({x} AS BIGINT) >> 16)"
    x = f"CAST((CAST({x} AS HUGEINT) * 2246822507) % 4294967296 AS BIGINT)"
    x = f"xor({x}, {x} >> 13)"
    x = f"CAST((CAST({x} AS HUGEINT) * 3266489909) % 4294967296 AS BIGINT)"
    return f"xor({x}, {x} >> 16)"


def _u(expr: str, salt: int) -> str:
    """A uniform [0, 1) number from an integer expression and a salt."""
    seed = f"((CAST({expr} AS HUGEINT) + {salt * 2654435769 + 97}) % 4294967296)"
    return f"({_mix(seed)} / 4294967296.0)"


def _age_sql() -> str:
    u, v = _u("i", 1), _u("i", 2)
    parts, acc = [], 0
    for lo, hi, share in AGE_MIX:
        acc += share
        parts.append(f"WHEN {u} < {acc / 1000} THEN {lo} + CAST(floor({v} * {hi - lo + 1}) AS INTEGER)")
    return "CASE " + " ".join(parts) + f" ELSE {AGE_MIX[-1][0]} END"


def generate(members: int, out: Path, fmt: str = "parquet", per_practice: int = 1500, year: int = 2011,
             seed: int = 0) -> dict[str, Path]:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET threads=2")
    con.execute("SET enable_progress_bar=false")
    practices = max(1, (members + per_practice - 1) // per_practice)
    s = seed * 7
    # The joining and leaving dates are drawn independently, so a member who
    # both joins and leaves during the year (~0.04 %) may draw a leaving date
    # before the joining date: the pair is then swapped, so every enrolment
    # interval is valid (enrolled_from <= enrolled_to, both after birth).
    # Rows with at most one date are untouched.
    con.execute(f"""
        CREATE TABLE members AS
        SELECT member_id, practice_id, birth_date, sex,
               CASE WHEN enrolled_to < enrolled_from THEN enrolled_to ELSE enrolled_from END AS enrolled_from,
               CASE WHEN enrolled_to < enrolled_from THEN enrolled_from ELSE enrolled_to END AS enrolled_to,
               diabetes, cardiovascular, social_care, insurer
        FROM (
        SELECT 'M' || lpad(CAST(i AS VARCHAR), 8, '0') AS member_id,
               'P' || lpad(CAST(i % {practices} AS VARCHAR), 5, '0') AS practice_id,
               CAST(DATE '{year}-01-01' - INTERVAL ({_age_sql()}) YEAR
                    - INTERVAL (CAST(floor({_u('i', 3 + s)} * 365) AS INTEGER)) DAY AS DATE) AS birth_date,
               CASE WHEN {_u('i', 4 + s)} < 0.5 THEN 'F' ELSE 'M' END AS sex,
               CASE WHEN {_u('i', 5 + s)} < 0.02
                    THEN CAST(DATE '{year}-01-01' + INTERVAL (CAST(floor({_u('i', 6 + s)} * 360) AS INTEGER)) DAY AS DATE)
               END AS enrolled_from,
               CASE WHEN {_u('i', 7 + s)} < 0.02
                    THEN CAST(DATE '{year}-01-15' + INTERVAL (CAST(floor({_u('i', 8 + s)} * 340) AS INTEGER)) DAY AS DATE)
               END AS enrolled_to,
               {_u('i', 9 + s)} < 0.08 AS diabetes,
               {_u('i', 10 + s)} < 0.12 AS cardiovascular,
               {_u('i', 11 + s)} < 0.02 AS social_care,
               CASE WHEN {_u('i', 12 + s)} < 0.6 THEN 'VšZP' WHEN {_u('i', 12 + s)} < 0.85 THEN 'Dôvera'
                    ELSE 'Union' END AS insurer
        FROM range({members}) t(i))
    """)
    con.execute(f"""
        CREATE TABLE practices AS
        SELECT 'P' || lpad(CAST(i AS VARCHAR), 5, '0') AS practice_id,
               CASE WHEN {_u('i', 21)} < 0.7 THEN 'adult' WHEN {_u('i', 21)} < 0.85 THEN 'paediatric'
                    ELSE 'mixed' END AS kind,
               CAST(20 + floor({_u('i', 22)} * 21) AS INTEGER) AS weekly_hours,
               5 AS open_days,
               CAST(floor({_u('i', 23)} * 3) AS INTEGER) AS late_days,
               CAST(floor({_u('i', 24)} * 4) AS INTEGER) AS booking_days,
               CAST(400 + floor({_u('i', 25)} * 1600) AS INTEGER) AS district_population,
               CASE WHEN {_u('i', 26)} < 0.5 THEN 'town' WHEN {_u('i', 26)} < 0.8 THEN 'village'
                    WHEN {_u('i', 26)} < 0.93 THEN 'multi_area' ELSE 'outlying' END AS location,
               CAST(1.0 + floor({_u('i', 27)} * 7) * 0.05 AS DECIMAL(4, 2)) AS coefficient,
               {_u('i', 28)} < 0.3 AS akord,
               {_u('i', 29)} < 0.05 AS small_practice
        FROM range({practices}) t(i)
    """)
    events = max(1, members // 2)
    con.execute(f"""
        CREATE TABLE events AS
        SELECT 'P' || lpad(CAST((i * 7) % {practices} AS VARCHAR), 5, '0') AS practice_id,
               'M' || lpad(CAST((i * 2) % {members} AS VARCHAR), 8, '0') AS member_id,
               CAST(DATE '{year}-01-01' + INTERVAL (CAST(floor({_u('i', 31)} * 365) AS INTEGER)) DAY AS DATE) AS date,
               CASE WHEN {_u('i', 32)} < 0.35 THEN 'PREV_ADULT' WHEN {_u('i', 32)} < 0.55 THEN 'VACC'
                    WHEN {_u('i', 32)} < 0.65 THEN 'CRP' WHEN {_u('i', 32)} < 0.75 THEN 'NONCAP'
                    WHEN {_u('i', 32)} < 0.85 THEN 'INSCHECK' ELSE 'OTHER' END AS code,
               CAST(CASE WHEN {_u('i', 32)} < 0.35 THEN 350 WHEN {_u('i', 32)} < 0.55 THEN 70
                         ELSE 50 + floor({_u('i', 33)} * 200) END AS INTEGER) AS points,
               1 AS quantity
        FROM range({events}) t(i)
    """)
    con.execute(f"""
        CREATE TABLE measures AS
        SELECT practice_id, '{year}' AS period, 'quality_met' AS measure,
               CASE WHEN {_u('i', 41)} < 0.8 THEN 'true' ELSE 'false' END AS value
        FROM (SELECT practice_id, row_number() OVER (ORDER BY practice_id) AS i FROM practices)
        UNION ALL
        SELECT practice_id, '{year}', 'drug_cost_per_insured',
               CAST(CAST(180 + floor({_u('i', 42)} * 180) AS DECIMAL(10, 2)) AS VARCHAR)
        FROM (SELECT practice_id, row_number() OVER (ORDER BY practice_id) AS i FROM practices)
    """)
    paths = {}
    for table in ("members", "practices", "events", "measures"):
        path = out / f"{table}.{ 'csv' if fmt == 'csv' else 'parquet'}"
        tmp = path.with_name(path.name + ".tmp")
        option = "(HEADER, DELIMITER ',')" if fmt == "csv" else "(FORMAT PARQUET, COMPRESSION ZSTD)"
        con.execute(f"COPY (SELECT * FROM {table} ORDER BY 1, 2) TO '{tmp}' {option}")
        os.replace(tmp, path)
        paths[table] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--per-practice", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = generate(args.members, args.out, args.format, args.per_practice, seed=args.seed)
    for table, path in paths.items():
        print(f"{table}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
