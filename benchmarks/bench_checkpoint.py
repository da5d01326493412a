"""
Overhead of checkpointing: the same file-to-file run with and without ``checkpoint=``.

Run with ``nox -s bench`` (or ``python benchmarks/bench_checkpoint.py``).

200,000 JSON Lines records are parsed, validated by a small function, mapped,
filtered and written to a JSON Lines file, with failed records going to a
dead-letter file. The same run is timed without a checkpoint and with a
:class:`datapunk.SQLiteCheckpoint` at its default interval (at most one
checkpoint per second, plus the first and the last) and at a tight interval
(every 10,000 records: an fsync of both outputs and one SQLite transaction
each time). The figures are the ratios with / without (best of several
interleaved repeats) of wall-clock and of CPU time; the target is <= 1.15 at
the default interval, checked on CPU time, which other processes on a busy
machine disturb less than wall-clock time.
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


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


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
    wall = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))
    for _ in range(args.repeat):
        for name, fn in cases.items():
            w, c = timed(fn)
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    base = wall["plain"]
    plain_cpu = cpu["plain"]
    print(
        f"records: {args.records:,}  (without checkpoint: {base:.3f}s wall, {plain_cpu:.3f}s CPU)"
    )
    for name, label in (("default", "default interval (1 s)"), ("tight", "every 10,000 records")):
        print(
            f"checkpoint, {label:<24} {wall[name]:.3f}s wall (ratio {wall[name] / base:.3f}), "
            f"{cpu[name]:.3f}s CPU (ratio {cpu[name] / cpu['plain']:.3f})"
        )
    # CPU time is what checkpointing adds to the process; wall time adds the
    # fsyncs, and on a busy machine the noise of everything else.
    ok = cpu["default"] / cpu["plain"] <= 1.15
    print("target <= 1.15 (CPU) at the default interval:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
