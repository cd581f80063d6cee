"""The long fuzz run of the parser, checker, lowering and formatter.

    .venv/bin/python benchmarks/fuzz.py --inputs 100000 --jobs 2 --crashes fuzz-crashes/

Inputs come in three kinds, in equal shares: contracts generated from the
grammar's constructs (`gen`), generated contracts mutated (`gen+mut`), and the
contracts in contracts/ mutated (`corpus+mut`): byte flips, truncation, token
swaps, deletions and duplications, odd Unicode (RTL, zero-width, surrogate-
escaped bytes), huge numbers, deep nesting, very long lines, NUL bytes, CRLF,
tabs, injection-looking text. Every input goes through the oracle of
tests/fuzz_support.py (`run_one`): only `CapError`s with in-source spans, fmt
idempotent and AST-preserving, a per-input time limit.

Prints the inputs tried, counts per kind and outcome, and every distinct crash
(by exception type and innermost capdsl frame); each crash's smallest input
found is minimised and saved to the crash directory as `<n>.cap` with a
`<n>.txt` describing it. Seeds are deterministic: `--seed S` and the input
number decide each input, so a run is reproducible.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import fuzz_support as F  # noqa: E402

KINDS = ("gen", "gen+mut", "corpus+mut")


def make_input(seed: int, i: int) -> tuple[str, str, str]:
    """(kind, mutations applied, text) of input number i."""
    r = random.Random(seed * 1_000_003 + i)
    kind = KINDS[i % 3]
    if kind == "gen":
        return kind, "none", F.contract(r)
    if kind == "gen+mut":
        text, muts = F.mutate(r, F.contract(r))
        return kind, muts, text
    name = r.choice(sorted(F.CONTRACT_TEXTS))
    text, muts = F.mutate(r, F.CONTRACT_TEXTS[name])
    return kind, f"{name}:{muts}", text


def work(args: tuple[int, int, int, float]) -> dict:
    seed, start, stop, limit = args
    counts: collections.Counter = collections.Counter()
    muts: collections.Counter = collections.Counter()
    crashes: dict[str, dict] = {}
    for i in range(start, stop):
        kind, applied, text = make_input(seed, i)
        for m in applied.split(":")[-1].split("+"):
            muts[m] += 1
        try:
            outcome = F.run_one(text, limit)
        except Exception as exc:  # noqa: BLE001 - the point is to catch everything
            sig = F.signature(exc)
            outcome = "CRASH"
            c = crashes.setdefault(sig, {"count": 0, "first": i, "kind": kind, "text": text,
                                         "mutations": applied,
                                         "trace": "".join(traceback.format_exception(exc))[-3000:]})
            c["count"] += 1
            if len(text) < len(c["text"]):
                c.update(text=text, first=i, kind=kind, mutations=applied)
        counts[(kind, outcome)] += 1
    return {"counts": counts, "muts": muts, "crashes": crashes, "n": stop - start}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--limit", type=float, default=10.0, help="seconds per input before it counts as a hang")
    ap.add_argument("--crashes", default="fuzz-crashes", help="directory for minimised reproducers")
    ap.add_argument("--no-minimize", action="store_true")
    args = ap.parse_args(argv)

    tasks = [(args.seed, s, min(s + args.chunk, args.inputs), args.limit)
             for s in range(0, args.inputs, args.chunk)]
    counts: collections.Counter = collections.Counter()
    muts: collections.Counter = collections.Counter()
    crashes: dict[str, dict] = {}
    done = 0
    t0 = time.time()
    with mp.get_context("fork").Pool(args.jobs, maxtasksperchild=40) as pool:
        for res in pool.imap_unordered(work, tasks):
            done += res["n"]
            counts.update(res["counts"])
            muts.update(res["muts"])
            for sig, c in res["crashes"].items():
                have = crashes.get(sig)
                if have is None:
                    crashes[sig] = c
                    print(f"  new crash after {done:,} inputs: {sig}", flush=True)
                else:
                    have["count"] += c["count"]
                    if len(c["text"]) < len(have["text"]):
                        have.update({k: c[k] for k in ("text", "first", "kind", "mutations", "trace")})
            if done % 10_000 < args.chunk or done == args.inputs:
                rate = done / (time.time() - t0)
                print(f"{done:,} inputs, {rate:,.0f}/s, {len(crashes)} distinct crashes", flush=True)
    elapsed = time.time() - t0

    print(f"\ninputs tried: {done:,} in {elapsed:,.0f} s ({done / elapsed:,.0f}/s, {args.jobs} processes, "
          f"seed {args.seed})")
    print("\nper kind (outcome: syntax = SyntaxError_, check = CheckError at check/lower, ok = clean):")
    for kind in KINDS:
        row = {o: counts[(kind, o)] for o in ("syntax", "check", "ok", "CRASH")}
        print(f"  {kind:11s} {sum(row.values()):>8,}  " + "  ".join(f"{o} {v:,}" for o, v in row.items()))
    print("\nmutations applied:")
    for m, v in sorted(muts.items(), key=lambda kv: -kv[1]):
        if m != "none":
            print(f"  {m:11s} {v:>8,}")
    total_crash = sum(c["count"] for c in crashes.values())
    print(f"\ncrashes: {total_crash:,} inputs, {len(crashes)} distinct")
    out = Path(args.crashes)
    if crashes:
        out.mkdir(parents=True, exist_ok=True)
    for k, (sig, c) in enumerate(sorted(crashes.items()), start=1):
        text = c["text"]
        if not args.no_minimize:
            try:
                text = F.minimize(text, sig, limit=args.limit)
            except Exception:  # noqa: BLE001
                pass
        (out / f"{k}.cap").write_text(text, encoding="utf-8", errors="surrogatepass")
        (out / f"{k}.txt").write_text(f"{sig}\ncount: {c['count']}\nfirst input: #{c['first']} ({c['kind']}, "
                                      f"{c['mutations']})\nminimised: {text!r}\n\n{c['trace']}", encoding="utf-8")
        print(f"  {k}. {sig}  ×{c['count']}  minimised to {len(text)} chars: {text[:120]!r}")
    print(f"\ntotal: {done:,} inputs, {total_crash:,} crashing, {len(crashes)} distinct crashes")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
