"""
Runner benchmarks: speedups over Serial and flat memory (``nox -s bench``).

Prints one line per figure. Run directly: ``python benchmarks/bench_runners.py``
(``--quick`` for a smaller, faster pass; ``--only async,threads`` to choose).

- async: 10,000 records through ``await asyncio.sleep(0.01)``, concurrency 100
  (target <= 1.2 s; 1.0 s is the floor: 100 waves of 10 ms).
- threads: ``time.sleep(0.01)`` per record, 32 workers, 10,000 records; serial
  throughput is measured on a 300-record subset and extrapolated (target >= 25x).
- processes: ~1 ms of pure-Python CPU per record, 20,000 records, Processes(2)
  against Serial on the same records (target >= 1.7x on 2 cores).
- dask: the JSON Lines workload (400,000 records: parse, validate, transform,
  filter, write JSON Lines) on a LocalCluster of 2 worker processes, against
  Serial and Processes(2), with outputs written on the workers and brought
  back to the caller; the same workload from CSV split by byte ranges;
  per-partition overhead from runs with few and many partitions.
- rss: peak RSS of each runner streaming 500,000 and 2,000,000 generated
  records, each run in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import datapunk
from datapunk.runners import Async, Processes, Threads

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ stages
async def async_io(record: int) -> int:
    await asyncio.sleep(0.01)
    return record


def blocking_io(record: int) -> int:
    time.sleep(0.01)
    return record


def cpu_1ms(record: int) -> int:
    # About 1 ms of pure-Python work on this machine (calibrated below).
    acc = record
    for i in range(CPU_LOOPS):
        acc = (acc * 31 + i) % 1_000_003
    return acc


CPU_LOOPS = int(os.environ.get("DATAPUNK_BENCH_CPU_LOOPS", "0")) or 12_000


def check_row(row: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(row.get("id"), int) or not isinstance(row.get("price"), float):
        raise datapunk.ValidationError(
            reasons=[datapunk.Reason(("id",), "id must be an int and price a float", row)]
        )
    return row


def enrich(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"].title(),
        "total": round(row["price"] * row["qty"], 2),
        "tags": sorted(row["tags"]),
    }


def big_enough(row: dict[str, Any]) -> bool:
    return row["total"] >= 5.0


def add_one(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"] + 1, "payload": record["payload"]}


async def aadd_one(record: dict[str, Any]) -> dict[str, Any]:
    return add_one(record)


JSONL_PIPE = datapunk.Pipeline(
    datapunk.Stage(check_row, name="check"),
    datapunk.Stage(enrich),
    datapunk.Filter(big_enough),
    name="jsonl-workload",
)


def from_csv(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "name": row["name"],
        "price": float(row["price"]),
        "qty": int(row["qty"]),
        "tags": json.loads(row["tags"]),
    }


CSV_PIPE = datapunk.Pipeline(datapunk.Stage(from_csv), JSONL_PIPE, name="csv-workload")


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def line(name: str, text: str) -> None:
    print(f"{name:<10} {text}", flush=True)


# -------------------------------------------------------------- benchmarks
def bench_async(quick: bool) -> None:
    n = 2_000 if quick else 10_000
    pipe = datapunk.Pipeline(async_io)
    wall = timed(lambda: pipe.run(range(n), None, runner=Async(concurrency=100)))
    floor = n / 100 * 0.01
    line(
        "async",
        f"{n} records, sleep(0.01), concurrency 100: {wall:.3f} s "
        f"(floor {floor:.2f} s, {floor / wall:.0%} of ideal; target <= {1.2 * floor:.2f} s: "
        f"{'OK' if wall <= 1.2 * floor else 'MISSED'})",
    )


def bench_threads(quick: bool) -> None:
    n, subset = (2_000, 100) if quick else (10_000, 300)
    pipe = datapunk.Pipeline(blocking_io)
    serial = timed(lambda: pipe.run(range(subset), None))
    threads = timed(lambda: pipe.run(range(n), None, runner=Threads(32)))
    ratio = (n / threads) / (subset / serial)
    line(
        "threads",
        f"{n} records, time.sleep(0.01), 32 workers: {threads:.2f} s; serial {subset} records "
        f"{serial:.2f} s (extrapolated to {serial * n / subset:.1f} s); speedup {ratio:.1f}x "
        f"(target >= 25x: {'OK' if ratio >= 25 else 'MISSED'})",
    )


def bench_processes(quick: bool) -> None:
    n = 4_000 if quick else 20_000
    per = timed(lambda: [cpu_1ms(i) for i in range(200)]) / 200
    pipe = datapunk.Pipeline(cpu_1ms)
    load = os.getloadavg()[0]
    c0 = os.times()
    serial = timed(lambda: pipe.run(range(n), None))
    c1 = os.times()
    procs = timed(lambda: pipe.run(range(n), None, runner=Processes(2)))
    c2 = os.times()
    ratio = serial / procs
    serial_cpu = c1.user + c1.system - c0.user - c0.system
    procs_cpu = c2.children_user + c2.children_system - c1.children_user - c1.children_system
    line(
        "processes",
        f"{n} records x {per * 1000:.2f} ms CPU: serial {serial:.2f} s, Processes(2) "
        f"{procs:.2f} s (worker start-up included); speedup {ratio:.2f}x "
        f"(target >= 1.7x: {'OK' if ratio >= 1.7 else 'MISSED'})",
    )
    line(
        "processes",
        f"CPU actually obtained: serial {serial_cpu / serial:.2f} cores, Processes(2) workers "
        f"{procs_cpu / procs:.2f} cores (load average {load:.1f} on {os.cpu_count()} CPUs "
        "when started: other processes compete for the cores)",
    )


def make_jsonl(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row = {
                "id": i,
                "name": f"item number {i % 977}",
                "price": (i % 1000) / 10 + 0.5,
                "qty": i % 7,
                "tags": ["b", "a", str(i % 13)],
            }
            if i % 10_000 == 17:
                f.write("{not json\n")
            f.write(json.dumps(row) + "\n")


def make_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("id,name,price,qty,tags\n")
        for i in range(n):
            name = f'"item\nnumber {i % 977}"' if i % 100 == 3 else f"item number {i % 977}"
            f.write(f'{i},{name},{(i % 1000) / 10 + 0.5},{i % 7},"[""b"",""a"",""{i % 13}""]"\n')


def bench_dask(quick: bool) -> None:
    import distributed

    n = 50_000 if quick else 400_000
    tmp = Path(tempfile.mkdtemp(prefix="datapunk-bench-"))
    src, csv_src = tmp / "in.jsonl", tmp / "in.csv"
    make_jsonl(src, n)
    make_csv(csv_src, n)
    out, want = tmp / "out.jsonl", tmp / "serial.jsonl"
    serial = timed(lambda: JSONL_PIPE.run(str(src), str(want)))
    procs = timed(lambda: JSONL_PIPE.run(str(src), str(out), runner=Processes(2)))
    csv_serial = timed(lambda: CSV_PIPE.run(str(csv_src), str(tmp / "csv-serial.jsonl")))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        from datapunk.runners import Dask

        JSONL_PIPE.run(str(src), None, runner=Dask(client, partitions=2))  # warm up workers
        dask = timed(lambda: JSONL_PIPE.run(str(src), str(out), runner=Dask(client, partitions=4)))
        assert out.read_bytes() == want.read_bytes(), "Dask's output differs from Serial's"
        caller = timed(
            lambda: JSONL_PIPE.run(
                str(src), str(out), runner=Dask(client, partitions=4, write="caller")
            )
        )
        csv_out = tmp / "csv-dask.jsonl"
        csv_dask = timed(
            lambda: CSV_PIPE.run(str(csv_src), str(csv_out), runner=Dask(client, partitions=4))
        )
        assert csv_out.read_bytes() == (tmp / "csv-serial.jsonl").read_bytes()
        few, many = 4, 100
        t_few = timed(lambda: JSONL_PIPE.run(str(src), None, runner=Dask(client, partitions=few)))
        t_many = timed(lambda: JSONL_PIPE.run(str(src), None, runner=Dask(client, partitions=many)))
        # 1-chunk partitions of a tiny input isolate the fixed cost of a task.
        tiny = [{"id": i, "payload": ""} for i in range(200)]
        t_tiny = timed(
            lambda: datapunk.Pipeline(add_one).run(
                tiny, None, chunk_size=1, runner=Dask(client, partitions=200)
            )
        )
    per_part = (t_many - t_few) / (many - few)
    line(
        "dask",
        f"{n} JSONL records (parse, validate, enrich, filter, write): serial {serial:.2f} s, "
        f"Processes(2) {procs:.2f} s, Dask LocalCluster(2) {dask:.2f} s; Dask/Serial speedup "
        f"{serial / dask:.2f}x, Dask/Processes(2) speedup {procs / dask:.2f}x, "
        f"Processes(2)/Serial speedup {serial / procs:.2f}x",
    )
    line(
        "dask",
        f"outputs written on the workers {dask:.2f} s vs brought back to the caller "
        f"{caller:.2f} s ({caller / dask:.2f}x); same bytes as Serial",
    )
    line(
        "dask",
        f"{n} CSV records by byte ranges (quoted newlines every 100 rows): serial "
        f"{csv_serial:.2f} s, Dask {csv_dask:.2f} s; Dask/Serial speedup "
        f"{csv_serial / csv_dask:.2f}x; same bytes as Serial",
    )
    line(
        "dask",
        f"per-partition overhead: {per_part * 1000:.1f} ms ({few} vs {many} partitions: "
        f"{t_few:.2f} s vs {t_many:.2f} s); 200 one-record partitions: {t_tiny:.2f} s "
        f"({t_tiny / 200 * 1000:.1f} ms each)",
    )


# --------------------------------------------------------------------- rss
def _records(n: int) -> Any:
    for i in range(n):
        yield {"id": i, "payload": "x" * 100}


def rss_child(runner: str, n: int) -> None:
    """Run in a fresh interpreter: stream *n* records, print peak RSS in MB."""
    stage: Any = aadd_one if runner == "async" else add_one
    pipe = datapunk.Pipeline(stage)
    client = cluster = None
    if runner == "serial":
        r: Any = None
    elif runner == "threads":
        r = Threads(8)
    elif runner == "processes":
        r = Processes(2)
    elif runner == "async":
        r = Async(100)
    else:
        import distributed

        from datapunk.runners import Dask

        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = distributed.Client(cluster)
        r = Dask(client, partition_chunks=4)
    report = pipe.run(_records(n), None, runner=r)
    assert report.records_out == n
    me = _peak_rss_mb()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    workers = 0.0
    if client is not None:
        import psutil

        rss = client.run(lambda: psutil.Process().memory_info().rss)
        workers = max(rss.values()) / 2**20
        client.close()
        cluster.close()
    print(json.dumps({"parent": me, "children": kids, "workers": workers}))


def _peak_rss_mb() -> float:
    """This process's peak RSS. ru_maxrss survives fork+exec (a child would report
    its parent's peak), so on Linux read VmHWM, which starts afresh with the program."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_rss(quick: bool) -> None:
    sizes = (100_000, 400_000) if quick else (500_000, 2_000_000)
    for runner in ("serial", "threads", "processes", "async", "dask"):
        figures = []
        for n in sizes:
            t0 = time.perf_counter()
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--rss-child", runner, str(n)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            data = json.loads(out)
            extra = ""
            if data["workers"]:
                extra = f", worker now {data['workers']:.0f} MB"
            elif data["children"]:
                extra = f", worker peak {data['children']:.0f} MB"
            figures.append(
                f"{n / 1e6:g}M: {data['parent']:.0f} MB{extra} ({time.perf_counter() - t0:.1f} s)"
            )
        line("rss", f"{runner:<9} peak RSS  " + "  |  ".join(figures))


BENCHES = {
    "async": bench_async,
    "threads": bench_threads,
    "processes": bench_processes,
    "dask": bench_dask,
    "rss": bench_rss,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated benchmarks")
    parser.add_argument("--rss-child", nargs=2, metavar=("RUNNER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    for name in args.only.split(","):
        BENCHES[name.strip()](args.quick)


if __name__ == "__main__":
    main()
