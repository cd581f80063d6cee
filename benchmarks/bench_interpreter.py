"""The reference interpreter on a 100,000-member panel (Czech VZP contract).

Baseline measured in the same run: a hand-written Python `Decimal` loop
computing the same capitation (age index × office-hour base rate per member,
summed per practice) — what a careful engineer would write by hand without
capdsl. Prints member-months per second and the ratio.

    python benchmarks/bench_interpreter.py [--members 100000] [--months 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from panel_gen import generate  # noqa: E402

CONTRACT = Path(__file__).resolve().parent.parent / "contracts" / "cz_vzp_2011_adult.cap"
INDEX = [(0, 4, "3.91"), (5, 9, "1.70"), (10, 14, "1.35"), (15, 19, "1.00"), (20, 24, "0.90"), (25, 29, "0.95"),
         (30, 34, "1.00"), (35, 39, "1.05"), (40, 44, "1.05"), (45, 49, "1.10"), (50, 54, "1.35"),
         (55, 59, "1.45"), (60, 64, "1.50"), (65, 69, "1.70"), (70, 74, "2.00"), (75, 79, "2.40"),
         (80, 84, "2.90"), (85, 999, "3.40")]


def hand_written(members, practices, month: date) -> dict[str, Decimal]:
    """The baseline: a straightforward Decimal loop over members."""
    table = [(lo, hi, Decimal(v)) for lo, hi, v in INDEX]
    rate = {}
    for p in practices:
        h, late, booking = p["weekly_hours"], p["late_days"], p["booking_days"]
        rate[p["practice_id"]] = Decimal(50 if h >= 30 and late >= 1 and booking >= 2 else
                                         49 if h >= 25 and late >= 1 else 47)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for m in members:
        born = m["birth_date"]
        start, end = m["enrolled_from"], m["enrolled_to"]
        if born > month or (start is not None and start > month) or (end is not None and end < month):
            continue
        age = month.year - born.year - ((month.month, month.day) < (born.month, born.day))
        idx = next(v for lo, hi, v in table if lo <= age <= hi)
        totals[m["practice_id"]] += rate[m["practice_id"]] * idx
    return {k: v.quantize(Decimal("0.01"), ROUND_HALF_UP) for k, v in totals.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=1, help="1 (March) or 12 (the year)")
    args = parser.parse_args(argv)

    from capdsl.evaluation.interpret import evaluate
    from capdsl.pipeline import compile_file, panel_rows, requirements
    from capdsl.data.panel import load_panel

    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(args.members, Path(tmp), "parquet")
        _, program = compile_file(CONTRACT)
        panel = load_panel({k: str(v) for k, v in paths.items()}, requirements(program))
        rows = panel_rows(program, panel)
    months = tuple(date(2011, m, 1) for m in range(3, 3 + args.months)) if args.months == 1 else \
        tuple(date(2011, m, 1) for m in range(1, 13))
    params = {"national_average_drug_cost": Decimal(250)}

    t0 = time.perf_counter()
    result = evaluate(program, rows, months, params)
    t_interp = time.perf_counter() - t0
    # The interpreter evaluates every month of the year when a pool is due in the period (the Czech
    # contract's AKORD pool is due in March): count the member-months it actually evaluated.
    pools_due = any(line.kind == "pool" for line in program.lines) and any(m.month % 3 == 0 for m in months)
    evaluated = tuple(date(2011, m, 1) for m in range(1, 13)) if pools_due else months
    member_months = sum(1 for m in evaluated for r in rows.members
                        if r["birth_date"] <= m and (r["enrolled_from"] is None or r["enrolled_from"] <= m)
                        and (r["enrolled_to"] is None or r["enrolled_to"] >= m))

    t0 = time.perf_counter()
    for m in months:
        expected = hand_written(rows.members, rows.practices, m)
    t_hand = time.perf_counter() - t0

    # same figures: the capitation line of the last month equals the hand-written totals
    last = {r[0]: r[3] for r in result.rows if r[2] == "capitation" and r[1] == months[-1]}
    mismatches = sum(1 for k, v in expected.items() if last.get(k) != v)

    print(f"panel: {args.members:,} members, {len(rows.practices):,} practices, {len(months)} month(s) reported, "
          f"{len(evaluated)} evaluated, {member_months:,} member-months evaluated")
    print(f"capdsl interpreter (whole contract: {len(program.lines)} lines)  {t_interp:7.2f} s   "
          f"{member_months / t_interp:12,.0f} member-months/s   (target >= 100,000)")
    hand_mm = member_months * len(months) // len(evaluated)  # the loop runs the reported months only
    print(f"hand-written Decimal loop (capitation only, reported months)  {t_hand:7.2f} s   "
          f"{hand_mm / t_hand:12,.0f} member-months/s")
    print(f"ratio per member-month interpreter / hand-written: "
          f"{(t_interp / member_months) / (t_hand / hand_mm):.2f}x   capitation mismatches: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
