"""capdsl's X12 readers (`read_834`, `read_820`) against the least pyx12 work for the same file.

The files are the samples in examples/x12/ grown to --members member loops: the member blocks
(834: INS … up to the next INS; 820: ENT … up to the next ENT) replicated with renumbered member
ids, cut into transaction sets of --per-set members each (SE01, GE01, ENT01 and BPR02 recounted),
written once under benchmarks/data/x12/ (gitignored). pyx12 finds no error in them.

Timed (best and median of --repeat, alternating), per file:

- capdsl: `read_834` / `read_820` with default options (a file of several transaction sets is walked
  by one process per CPU), and `capdsl serial` with `jobs=1` (one process); their readings are
  checked to be identical;
- pyx12 baseline: the least pyx12 work for the same file, by hand — `X12ContextReader` with the same
  params iterating every segment, with an error handler that keeps nothing, no mapping to rows;
  capdsl / baseline is what the mapping, the error recording and the rows cost over pyx12's own walk.

    python benchmarks/bench_x12.py --repeat 5                # 10,000 members, 834 and 820
    python benchmarks/bench_x12.py --members 100000 --per-set 10000 --repeat 1
    python benchmarks/bench_x12.py --members 10000 --per-set 10000 --kind 834   # one ST set: not split

The load average is printed before and after: on a shared machine the parallel figure needs free cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "x12"
DATA = ROOT / "benchmarks" / "data" / "x12"
_ID = re.compile(r"M9000000(\d\d?)")


def _segments(path: Path) -> list[str]:
    return [s for s in path.read_text().split("~\n") if s]


def _renumber(block: list[str], copy: int) -> list[str]:
    """A member block with its ids (M9000000d) made unique to copy `copy`, the subscriber links kept."""
    return [_ID.sub(lambda m: f"M{copy:07d}{int(m.group(1)):02d}", s) for s in block]


def _split(segs: list[str], start: str) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, member blocks, trailer) of one transaction set, each block opened by a `start` segment."""
    first = next(i for i, s in enumerate(segs) if s.startswith(start))
    end = next(i for i, s in enumerate(segs) if s.startswith("SE*"))
    blocks: list[list[str]] = []
    for s in segs[first:end]:
        if s.startswith(start):
            blocks.append([])
        blocks[-1].append(s)
    return segs[:first], blocks, segs[end:]


def _envelope(isa_gs: list[str], sets: list[list[str]], ge_iea: list[str]) -> str:
    out = list(isa_gs)
    for n, body in enumerate(sets, 1):
        st = body[0].split("*")
        st[2] = f"{n:04d}"
        seg = ["*".join(st)] + body[1:]
        out += seg + [f"SE*{len(seg) + 1}*{n:04d}"]
    ge = ge_iea[0].split("*")
    ge[1] = str(len(sets))
    out += ["*".join(ge)] + ge_iea[1:]
    return "~\n".join(out) + "~\n"


def make_834(members: int, per_set: int, out: Path) -> Path:
    """members_2011-02.834's nine member loops, replicated to `members` loops in sets of `per_set`."""
    if out.exists():
        return out
    segs = _segments(SAMPLES / "members_2011-02.834")
    st = next(i for i, s in enumerate(segs) if s.startswith("ST*"))
    se = next(i for i, s in enumerate(segs) if s.startswith("SE*"))
    header, blocks, _ = _split(segs[st:se + 1], "INS*")
    loops = [_renumber(blocks[i % len(blocks)], i // len(blocks)) for i in range(members)]
    sets = [header + [s for b in loops[a:a + per_set] for s in b] for a in range(0, members, per_set)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_envelope(segs[:st], sets, segs[se + 1:]))
    return out


def make_820(members: int, per_set: int, out: Path) -> Path:
    """remittance_2011-02.820's ten remittance loops, replicated to `members` loops in sets of `per_set`.

    The sets take the sample's three headers (payees) in turn; BPR02 is the sum of the set's RMR04
    and ADX01, so no balance warning is raised.
    """
    if out.exists():
        return out
    segs = _segments(SAMPLES / "remittance_2011-02.820")
    starts = [i for i, s in enumerate(segs) if s.startswith("ST*")]
    ends = [i for i, s in enumerate(segs) if s.startswith("SE*")]
    headers, blocks = [], []
    for a, b in zip(starts, ends):
        header, bl, _ = _split(segs[a:b + 1], "ENT*")
        headers.append(header)
        blocks += bl
    sets = []
    for a in range(0, members, per_set):
        body: list[str] = []
        total = Decimal(0)
        head = headers[len(sets) % len(headers)]
        for n, i in enumerate(range(a, min(a + per_set, members)), 1):
            block = _renumber(blocks[i % len(blocks)], i // len(blocks))
            block[0] = f"ENT*{n}*" + block[0].split("*", 2)[2]
            for s in block:
                f = s.split("*")
                if f[0] == "RMR":
                    total += Decimal(f[4])
                elif f[0] == "ADX":
                    total += Decimal(f[1])
            body += block
        bpr = head[1].split("*")
        bpr[2] = f"{total:.2f}"
        sets.append([head[0], "*".join(bpr)] + head[2:] + body)
    st = starts[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_envelope(segs[:st], sets, segs[ends[-1] + 1:]))
    return out


def baseline(path: Path) -> int:
    """The least pyx12 work for the file: its context reader over every segment, nothing kept."""
    import pyx12.error_handler
    import pyx12.params
    import pyx12.x12context

    n = 0
    with open(path, encoding="utf-8-sig") as fh:
        reader = pyx12.x12context.X12ContextReader(pyx12.params.ParamsBase(), pyx12.error_handler.errh_null(), fh)
        for _node in reader.iter_segments():
            n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--per-set", type=int, default=1_000, help="member loops per ST/SE transaction set")
    ap.add_argument("--kind", choices=("834", "820", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    from capdsl.data.x12 import read_820, read_834

    kinds = ("834", "820") if args.kind == "both" else (args.kind,)
    for kind in kinds:
        make, read = (make_834, read_834) if kind == "834" else (make_820, read_820)
        path = make(args.members, args.per_set, DATA / f"members_{args.members}_{args.per_set}.{kind}")
        reading = read(path)
        assert reading.records == args.members and not reading.rejected and not reading.warnings, \
            (reading.records, reading.rejected[:3], reading.warnings)
        runs = {"capdsl": lambda: read(path), "capdsl serial": lambda: read(path, jobs=1),
                "pyx12 baseline": lambda: baseline(path)}
        times: dict[str, list[float]] = {name: [] for name in runs}
        got = {}
        load = os.getloadavg()[0]
        for _ in range(args.repeat):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                got[name] = fn()
                times[name].append(time.perf_counter() - t0)
        assert dataclasses.asdict(got["capdsl"]) == dataclasses.asdict(got["capdsl serial"])
        size = path.stat().st_size / 1e6
        print(f"{kind}: {args.members:,} member loops in {reading.transactions:,} transaction sets, "
              f"{size:.1f} MB, {len(reading.rows):,} rows ({path.relative_to(ROOT)}); "
              f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for name, ts in times.items():
            print(f"  {name:15s} best {min(ts):7.2f} s ({args.members / min(ts):8,.0f} members/s)   "
                  f"median {statistics.median(ts):7.2f} s")
        for name in ("capdsl", "capdsl serial"):
            b = min(times[name]) / min(times["pyx12 baseline"])
            m = statistics.median(times[name]) / statistics.median(times["pyx12 baseline"])
            print(f"  {name} / pyx12 baseline: {b:.2f}x (best), {m:.2f}x (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
