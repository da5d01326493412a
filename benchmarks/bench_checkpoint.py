"""
Overhead of checkpointing: the same file-to-file run with and without ``checkpoint=``.

Run with ``nox -s bench`` (or ``python benchmarks/bench_checkpoint.py``).

200,000 JSON Lines records are parsed, validated by a small function, mapped,
filtered and written to a JSON Lines file, with failed records going to a
dead-letter file. The same run is timed without a checkpoint and with a
:class:`datapunk.SQLiteCheckpoint` at its default interval (at most one
checkpoint per second, plus the first and the last) and at a tight interval
(every 10,000 records: an fsync of both outputs and one SQLite transaction
each time). The figure is the ratio with / without (best of several repeats);
the target is <= 1.15 at the default interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datapunk

if TYPE_CHECKING:
    from collections.abc import Callable


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def check(r: dict[str, Any]) -> dict[str, Any]:
    if r["amount"] < 0:
        raise ValueError(f"amount must be >= 0, got {r['amount']}")
    return r


def enrich(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "name": r["name"].title(), "cents": r["amount"] * 100}


def keep(r: dict[str, Any]) -> bool:
    return r["id"] % 10 != 0


PIPE = datapunk.Pipeline(check, enrich, datapunk.Filter(keep), name="bench")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="datapunk-bench-"))
    src = work / "in.jsonl"
    with src.open("w") as f:
        for i in range(args.records):
            amount = -1 if i % 50 == 0 else i % 1000
            f.write(json.dumps({"id": i, "name": f"user {i}", "amount": amount}) + "\n")

    def plain() -> None:
        PIPE.run(src, work / "out.jsonl", dead_letter=work / "dead.jsonl")

    def checkpointed(**options: Any) -> Callable[[], None]:
        def run() -> None:
            db = work / "run.db"
            for p in work.glob("run.db*"):
                p.unlink()
            ck = datapunk.SQLiteCheckpoint(db, **options)
            PIPE.run(src, work / "out.jsonl", dead_letter=work / "dead.jsonl", checkpoint=ck)

        return run

    # Interleave the cases so that noise from other processes hits all alike.
    cases = {
        "plain": plain,
        "default": checkpointed(),
        "tight": checkpointed(every=10_000, seconds=None),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.repeat):
        for name, fn in cases.items():
            best[name] = min(best[name], best_of(fn, 1))
    base, default, tight = best["plain"], best["default"], best["tight"]
    rate = args.records / base
    print(f"records: {args.records:,}  (without checkpoint: {base:.3f}s, {rate:,.0f} records/s)")
    print(f"checkpoint, default interval (1 s):  {default:.3f}s  ratio {default / base:.3f}")
    print(f"checkpoint, every 10,000 records:    {tight:.3f}s  ratio {tight / base:.3f}")
    ok = default / base <= 1.15
    print("target <= 1.15 at the default interval:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
