"""Parse + check time of a generated 5,000-line contract, and CLI start-up.

Baselines measured in the same run: CPython's own `ast.parse` + `compile`
on a Python module of the same number of lines (what a mature hand-written
parser does), and `python -c pass` for start-up.

    python benchmarks/bench_parse.py [--lines 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from pathlib import Path


def generate_contract(lines: int) -> str:
    """A contract of about `lines` lines using every kind of construct."""
    out = ['contract "Generated benchmark contract":', "    currency CZK", "end", "",
           "inputs:", "    member diabetes: bool = false", "    practice weekly_hours: hours",
           "    practice late_days: days", "    event points: points", "end", ""]
    i = 0
    while len(out) < lines:
        out += [f"bands idx_{i} by member.age ref \"Annex {i}\":"]
        out += [f"    {a} to {a + 4}: {1 + (a % 7) / 10:.2f}" for a in range(0, 100, 5)]
        out += ["    100 and over: 3.40", "end", ""]
        out += [f"tier rate_{i}:",
                "    50 CZK when practice.weekly_hours >= 30 hours and practice.late_days >= 1 day",
                "    49 CZK when practice.weekly_hours >= 25 hours",
                "    47 CZK otherwise", "end", ""]
        out += [f"define points_value_{i} = 1.08 CZK per point",
                f"line cap_{i} \"Capitation {i}\" = sum of rate_{i} * idx_{i} over members",
                f"line fee_{i} \"Fees {i}\" = sum of event.points * points_value_{i} over events",
                f"line bonus_{i} \"Bonus {i}\" = 5% of cap_{i}", ""]
        i += 1
    return "\n".join(out) + "\n"


def generate_python(lines: int) -> str:
    out = []
    i = 0
    while len(out) < lines:
        out += [f"def rate_{i}(hours, late):",
                "    if hours >= 30 and late >= 1:", "        return 50",
                "    if hours >= 25:", "        return 49", "    return 47", "",
                f"IDX_{i} = {{" + ", ".join(f"{a}: {1 + (a % 7) / 10:.2f}" for a in range(0, 100, 5)) + "}", ""]
        i += 1
    return "\n".join(out) + "\n"


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from capdsl.language.check import check
    from capdsl.errors import Source
    from capdsl.language.syntax import parse, parser as build_parser

    build_parser()
    text = generate_contract(args.lines)
    source = Source(text, "generated.cap")
    n_lines = text.count("\n")
    t_parse = best(lambda: parse(source), args.repeat)
    contract = parse(source)
    t_check = best(lambda: check(contract, source), args.repeat)
    py = generate_python(n_lines)
    t_py = best(lambda: compile(ast.parse(py), "<gen>", "exec"), args.repeat)

    def startup(cmd):
        return best(lambda: subprocess.run(cmd, check=True, capture_output=True), 3)

    exe = Path(sys.executable).parent / "capdsl"
    t_help = startup([str(exe), "--help"])
    t_pass = startup([sys.executable, "-c", "pass"])

    print(f"contract: {n_lines:,} lines, {len(text):,} bytes")
    print(f"parse            {t_parse * 1000:8.1f} ms")
    print(f"check            {t_check * 1000:8.1f} ms")
    print(f"parse + check    {(t_parse + t_check) * 1000:8.1f} ms   (target < 500 ms)")
    print(f"baseline: CPython ast.parse+compile of {py.count(chr(10)):,} lines  {t_py * 1000:8.1f} ms"
          f"   ratio {((t_parse + t_check) / t_py):.1f}x")
    print(f"capdsl --help    {t_help * 1000:8.1f} ms   (target < 300 ms)")
    print(f"baseline: python -c pass {t_pass * 1000:8.1f} ms   ratio {t_help / t_pass:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
