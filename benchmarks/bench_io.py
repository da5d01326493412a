"""
File I/O throughput and memory: datapunk against hand-written loops.

Run with ``nox -s bench`` (or ``python benchmarks/bench_io.py``).

1. **CSV → validate → JSON Lines**, 500,000 rows (``--rows``): a datapunk
   pipeline (``Validate(InputData)`` then a map to ``OutputData``, dead letters
   to a file) against a hand-written ``csv.DictReader`` + pydantic + ``json``
   loop doing the same work, in the same process. The figure is the time
   ratio datapunk / hand-written (best of ``--repeat``); target <= 1.3.
2. **JSON Lines read + write** throughput (records/s) with the stdlib ``json``
   parser and with ``orjson`` (the ``datapunk[orjson]`` extra).
3. **Peak RSS** while converting a large JSON Lines file (``--rss-mb``,
   default 1024 MB) to JSON Lines through a validating pipeline, measured in a
   fresh subprocess with ``resource.getrusage`` (``ru_maxrss``); target < 150 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pydantic

import datapunk


class InputData(pydantic.BaseModel):
    record_id: str
    value: float
    is_valid: bool


class OutputData(pydantic.BaseModel):
    record_id: str
    processed_value: float


def process(record: InputData) -> OutputData:
    return OutputData(record_id=record.record_id, processed_value=record.value * 2)


def make_csv(path: Path, rows: int) -> None:
    rng = random.Random(42)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["record_id", "value", "is_valid"])
        for i in range(rows):
            value: Any = round(rng.uniform(-100, 100), 3)
            if i % 1000 == 7:
                value = "NA"  # about 0.1% invalid
            w.writerow([f"r{i:07d}", value, "true" if i % 3 else "false"])


def datapunk_csv(src: Path, out: Path, dead: Path) -> int:
    pipe = datapunk.Pipeline(datapunk.Validate(InputData), datapunk.Stage(process))
    report = pipe.run(src, out, dead_letter=dead)
    return report.records_out


def handwritten_csv(src: Path, out: Path, dead: Path) -> int:
    n = 0
    validate = InputData.model_validate
    with (
        src.open(newline="", encoding="utf-8") as f,
        out.open("w", encoding="utf-8") as o,
        dead.open("w", encoding="utf-8") as d,
    ):
        for line, row in enumerate(csv.DictReader(f), 2):
            try:
                rec = validate(row)
            except pydantic.ValidationError as exc:
                d.write(json.dumps({"position": line, "message": str(exc), "record": row}) + "\n")
                continue
            result = OutputData(record_id=rec.record_id, processed_value=rec.value * 2)
            o.write(result.model_dump_json() + "\n")
            n += 1
    return n


def best(fn: Any, repeat: int, *args: Any) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), result


def bench_csv(tmp: Path, rows: int, repeat: int) -> float:
    src = tmp / "in.csv"
    make_csv(src, rows)
    t_dp, n_dp = best(datapunk_csv, repeat, src, tmp / "dp.jsonl", tmp / "dp_dead.jsonl")
    t_hw, n_hw = best(handwritten_csv, repeat, src, tmp / "hw.jsonl", tmp / "hw_dead.jsonl")
    assert n_dp == n_hw, (n_dp, n_hw)
    ratio = t_dp / t_hw
    print(f"CSV -> validate -> JSONL, {rows:,} rows (best of {repeat}):")
    print(f"  datapunk      {t_dp:7.3f}s  {rows / t_dp:>10,.0f} rows/s")
    print(f"  hand-written  {t_hw:7.3f}s  {rows / t_hw:>10,.0f} rows/s")
    print(f"  ratio datapunk / hand-written: {ratio:.2f}x (target <= 1.3)")
    return ratio


def bench_jsonl(tmp: Path, rows: int, repeat: int) -> None:
    src = tmp / "rw.jsonl"
    rng = random.Random(1)
    with src.open("w") as f:
        for i in range(rows):
            rec = {"id": i, "name": f"item {i}", "price": rng.random() * 100, "tags": ["a", "b"]}
            f.write(json.dumps(rec) + "\n")
    pipe = datapunk.Pipeline(datapunk.Stage(lambda r: r, name="identity"))
    print(f"JSON Lines read + write, {rows:,} records (best of {repeat}):")
    for label, use in (("stdlib json", False), ("orjson", True)):
        try:
            source = datapunk.io.JsonlSource(src, use_orjson=use)
        except datapunk.ConfigurationError:
            print(f"  {label:12s} not installed")
            continue
        t, _ = best(lambda s=source: pipe.run(s, tmp / "rw_out.jsonl"), repeat)
        print(f"  {label:12s} {t:7.3f}s  {rows / t:>10,.0f} records/s")


class Order(pydantic.BaseModel):
    id: int
    name: str
    price: float
    qty: int


def order_total(order: Order) -> dict[str, Any]:
    return {"id": order.id, "name": order.name.upper(), "total": round(order.price * order.qty, 2)}


def worth_it(row: dict[str, Any]) -> bool:
    return row["total"] >= 10.0


def datapunk_reference(src: Path, out: Path, dead: Path) -> int:
    pipe = datapunk.Pipeline(
        datapunk.Validate(Order), datapunk.Stage(order_total), datapunk.Filter(worth_it)
    )
    return pipe.run(src, out, dead_letter=dead).records_out


def handwritten_reference(
    src: Path, out: Path, dead: Path, loads: Any = json.loads, dumps: Any = json.dumps
) -> int:
    n = 0
    validate = Order.model_validate
    with (
        src.open(encoding="utf-8") as f,
        out.open("w", encoding="utf-8") as o,
        dead.open("w", encoding="utf-8") as d,
    ):
        for line_no, line in enumerate(f, 1):
            try:
                order = validate(loads(line))
            except (ValueError, pydantic.ValidationError) as exc:
                d.write(json.dumps({"line": line_no, "error": str(exc), "raw": line}) + "\n")
                continue
            row = order_total(order)
            if worth_it(row):
                o.write(dumps(row) + "\n")
                n += 1
    return n


def handwritten_reference_orjson(src: Path, out: Path, dead: Path) -> int:
    import orjson

    return handwritten_reference(
        src, out, dead, loads=orjson.loads, dumps=lambda r: orjson.dumps(r).decode()
    )


def bench_reference(tmp: Path, rows: int, repeat: int) -> float:
    """JSONL -> pydantic -> map -> filter -> JSONL: the workload peers are compared on."""
    src = tmp / "orders.jsonl"
    rng = random.Random(3)
    with src.open("w") as f:
        for i in range(rows):
            if i % 500 == 7:
                f.write('{"id": "x", "name": 1}\n' if i % 1000 == 7 else "{broken\n")
                continue
            rec = {
                "id": i,
                "name": f"order {i}",
                "price": round(rng.random() * 50, 2),
                "qty": i % 5,
            }
            f.write(json.dumps(rec) + "\n")
    t_dp, n_dp = best(datapunk_reference, repeat, src, tmp / "ref.jsonl", tmp / "ref_dead.jsonl")
    hands = {"hand-written, json": handwritten_reference}
    try:
        import orjson  # noqa: F401
    except ImportError:
        pass
    else:
        hands["hand-written, orjson"] = handwritten_reference_orjson
    print(f"JSONL -> pydantic -> map -> filter -> JSONL, {rows:,} records (best of {repeat}):")
    print(f"  {'datapunk':22s} {t_dp:7.3f}s  {rows / t_dp:>10,.0f} records/s")
    fastest = float("inf")
    for label, hand in hands.items():
        t_hw, n_hw = best(hand, repeat, src, tmp / "ref_hw.jsonl", tmp / "ref_hw_dead.jsonl")
        assert n_dp == n_hw, (n_dp, n_hw)
        fastest = min(fastest, t_hw)
        print(f"  {label:22s} {t_hw:7.3f}s  {rows / t_hw:>10,.0f} records/s")
    ratio = t_dp / fastest
    print(
        f"  ratio datapunk / fastest hand-written loop: {ratio:.2f}x "
        "(aim <= 1.25; peers measure 2.3-8x)"
    )
    return ratio


RSS_CHILD = """
import resource, sys, time
import pydantic, datapunk

class Rec(pydantic.BaseModel):
    id: int
    name: str
    price: float
    tags: list[str]

src, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
report = datapunk.Pipeline(datapunk.Validate(Rec)).run(src, out, dead_letter=out + ".dead.jsonl")
dt = time.perf_counter() - t0
rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(report.records_in, report.records_out, dt, rss_kib)
"""


def bench_rss(tmp: Path, size_mb: int) -> None:
    src = tmp / "big.jsonl"
    target = size_mb * 1024 * 1024
    line = 0
    with src.open("w") as f:
        written = 0
        block = []
        while written < target:
            rec = json.dumps(
                {"id": line, "name": f"item number {line}", "price": line * 0.5, "tags": ["x", "y"]}
            )
            block.append(rec)
            written += len(rec) + 1
            line += 1
            if len(block) == 10_000:
                f.write("\n".join(block) + "\n")
                block = []
        if block:
            f.write("\n".join(block) + "\n")
    size = src.stat().st_size
    proc = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(src), str(tmp / "big_out.jsonl")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    if proc.returncode:
        raise SystemExit(f"the conversion failed:\n{proc.stderr}")
    n_in, n_out, dt, rss_kib = proc.stdout.split()
    rss_mb = int(rss_kib) / 1024
    print(
        f"Peak RSS converting {size / 2**20:,.0f} MB of JSON Lines ({int(n_in):,} records, "
        f"validated, written to JSONL) in a subprocess: {rss_mb:.1f} MB (target < 150 MB); "
        f"{float(dt):.1f}s, {int(n_in) / float(dt):,.0f} records/s"
    )
    baseline = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import resource, datapunk, pydantic; "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"  (interpreter + datapunk + pydantic alone: {int(baseline.stdout) / 1024:.1f} MB)")
    assert int(n_in) == int(n_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="CSV rows (default 500,000)")
    parser.add_argument("--jsonl-rows", type=int, default=300_000, help="JSONL records")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    parser.add_argument("--rss-mb", type=int, default=1024, help="JSONL size for the RSS test (MB)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the large-file RSS test")
    parser.add_argument(
        "--only",
        choices=("csv", "reference", "jsonl", "rss"),
        help="run one part of the benchmark",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="datapunk-bench-") as d:
        tmp = Path(d)
        if args.only in {None, "csv"}:
            bench_csv(tmp, args.rows, args.repeat)
        if args.only in {None, "reference"}:
            bench_reference(tmp, args.jsonl_rows, args.repeat)
        if args.only in {None, "jsonl"}:
            bench_jsonl(tmp, args.jsonl_rows, args.repeat)
        if args.only == "rss" or (args.only is None and not args.skip_rss):
            bench_rss(tmp, args.rss_mb)


if __name__ == "__main__":
    main()
