"""Writing `capdsl eval --format json` (and `--detail member --format json`): capdsl's writer against
the hand-written baseline it replaced, `json.dumps(to_jsonable(result), ensure_ascii=False,
indent=2)` (pydantic turns the statements into plain data, the standard library encodes it).

On the deterministic panel of benchmarks/panel_gen.py (1 M members are 667 practices), for
contracts/cz_vzp_2011_adult.cap:

- the statements of 2011-03 (667 practices × 6 lines) and of 2011 with `--by month` (each practice's
  12 months as well), each encoded and written to a file, both sides in alternation in one process
  (after a warm-up, so pydantic is loaded and its serializer built for the baseline);
- the same in a fresh child process per run ("cold"): what one `capdsl eval` pays, pydantic's import
  and the building of its serializer included for the baseline (the modules every `capdsl eval`
  loads are loaded before the clock starts);
- `--detail member` for one month on a smaller panel (`--detail-members`; the rows come from the
  reference interpreter, which takes ~35 s for 1 M members), against the baseline's
  `json.dumps(..., indent=1)`.

Every run asserts that both sides wrote the same bytes.

    python benchmarks/bench_output.py                      # 1 M members, about a minute
    python benchmarks/bench_output.py --members 100000 --repeat 3 --detail-members 20000
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from panel_gen import generate  # noqa: E402

CONTRACT = ROOT / "contracts" / "cz_vzp_2011_adult.cap"
TABLES = ("members", "practices", "events", "measures")


def panel(members: int, data: Path) -> dict[str, str]:
    out = data / f"{members}"
    files = {t: out / f"{t}.parquet" for t in TABLES}
    if not all(f.exists() for f in files.values()):
        print(f"generating {members:,} members into {out} …", flush=True)
        generate(members, out, "parquet")
    return {k: str(v) for k, v in files.items()}


# ─────────────────────────── the two sides ───────────────────────────

def baseline_statements(result, path: Path) -> None:
    """The hand-written baseline: pydantic's plain data, encoded by the standard library."""
    from capdsl.evaluation.statements import to_jsonable
    from capdsl.outputs import atomic_write

    atomic_write(path, json.dumps(to_jsonable(result), ensure_ascii=False, indent=2) + "\n")


def capdsl_statements(result, path: Path) -> None:
    from capdsl.tools.render import write_json, write_out

    write_out(str(path), lambda fh: write_json(result, fh))


def baseline_detail(detail, path: Path) -> None:
    from decimal import Decimal

    from capdsl.outputs import atomic_write

    def text(v):
        return format(v.normalize(), "f") if isinstance(v, Decimal) else str(v)

    data = {"columns": list(detail.columns), "aggregates": detail.aggregates,
            "rows": [[None if v is None else v if isinstance(v, int) else text(v) for v in row]
                     for row in detail.rows]}
    atomic_write(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def capdsl_detail(detail, path: Path) -> None:
    from capdsl.tools.render import write_detail_json, write_out

    write_out(str(path), lambda fh: write_detail_json(detail, fh))


SIDES = {"statements": (capdsl_statements, baseline_statements), "detail": (capdsl_detail, baseline_detail)}
BASELINE = {"statements": "json.dumps(to_jsonable)", "detail": "json.dumps(indent=1)"}


# ─────────────────────────── timing ───────────────────────────

def timed_pair(ours, theirs, repeat: int) -> tuple[list[float], list[float]]:
    """Both in alternation (ours, theirs, ours, …) after a warm-up of each, so that the drift of a
    shared machine reaches both alike."""
    ours()
    theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for side, fn in enumerate((ours, theirs)):
            t0 = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - t0)
    return times


CHILD = """
import pickle, sys, time
sys.path.insert(0, {here!r}); sys.path.insert(0, {root!r})
with open({data!r}, "rb") as fh:
    value = pickle.load(fh)
from bench_output import SIDES
import capdsl.outputs, capdsl.tools.render  # loaded by every `capdsl eval`, whatever the format
t0 = time.perf_counter()
SIDES[{kind!r}][{side}](value, {out!r})
print(time.perf_counter() - t0)
"""


def cold_pair(kind: str, value, folder: Path, repeat: int) -> tuple[list[float], list[float]]:
    """Each side in a fresh process per run (imports and first-use costs included), in alternation."""
    data = folder / f"{kind}.pickle"
    with open(data, "wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for side in (0, 1):
            code = CHILD.format(here=str(HERE), root=str(ROOT), data=str(data), kind=kind, side=side,
                                out=str(folder / f"cold-{side}.json"))
            done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
            times[side].append(float(done.stdout.strip().splitlines()[-1]))
    same(folder / "cold-0.json", folder / "cold-1.json")
    return times


def same(ours: Path, theirs: Path) -> int:
    a, b = ours.read_bytes(), theirs.read_bytes()
    assert a == b, f"{ours} and {theirs} differ"
    return len(a)


def line(what: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"  {what:<44} best {min(times):8.3f} s  median {median:8.3f} s  (n={len(times)})", flush=True)
    return median


def compare(title: str, kind: str, value, folder: Path, repeat: int, cold: int) -> None:
    ours_fn, theirs_fn = SIDES[kind]
    ours_path, theirs_path = folder / f"{kind}-capdsl.json", folder / f"{kind}-baseline.json"
    ours, theirs = timed_pair(lambda: ours_fn(value, ours_path), lambda: theirs_fn(value, theirs_path), repeat)
    size = same(ours_path, theirs_path)
    print(f"{title}: {size / 2**20:.1f} MiB, the same bytes on both sides", flush=True)
    a = line("capdsl (orjson, streamed), in process", ours)
    b = line(f"baseline {BASELINE[kind]}, in process", theirs)
    print(f"  {'ratio baseline / capdsl (median)':<44} {b / a:6.1f}x", flush=True)
    if cold:
        ours, theirs = cold_pair(kind, value, folder, cold)
        a = line("capdsl, fresh process", ours)
        b = line("baseline, fresh process", theirs)
        print(f"  {'ratio baseline / capdsl (median)':<44} {b / a:6.1f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--detail-members", type=int, default=100_000, help="0: no detail section")
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cold", type=int, default=3, help="fresh-process runs of each side (0: none)")
    args = parser.parse_args(argv)

    from capdsl.pipeline import Run, compiled_file, evaluate, member_detail

    files = panel(args.members, args.data)
    print(f"panel: {args.members:,} members ({Path(files['members']).parent}), {os.cpu_count()} cores, "
          f"best/median of {args.repeat} runs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-output-") as tmp:
        folder = Path(tmp)
        contract = compiled_file(CONTRACT)
        for period, by_month in (("2011-03", False), ("2011", True)):
            result, _ = evaluate(contract, Run(files=files, period=period), by_month=by_month)
            what = f"{period}{' --by month' if by_month else ''}: {len(result.statements)} statements"
            compare(what, "statements", result, folder, args.repeat, args.cold)
        if args.detail_members:
            small = panel(args.detail_members, args.data)
            detail, _ = member_detail(contract, Run(files=small, period="2011-03"))
            compare(f"--detail member, {args.detail_members:,} members, 2011-03: {len(detail.rows):,} rows",
                    "detail", detail, folder, max(1, args.repeat // 2), args.cold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
