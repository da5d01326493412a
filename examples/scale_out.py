"""
Scale out: one pipeline on one core and on a Dask cluster, with the same answer.

Run it with ``python examples/scale_out.py`` (needs ``pip install datapunk[dask]``).

It writes a JSON Lines file of sensor readings, a few of them broken, and runs
one pipeline over it — validate, convert, filter — first serially, then on
Dask. On Dask the workers read byte ranges of the input themselves and write
their partitions of the output; the calling process assembles the parts and
commits the output atomically. The script checks that both runs wrote the same
bytes and rejected the same records, and prints both reports.

Without ``--scheduler`` it starts a local cluster of two worker processes. To
use a real cluster, give its scheduler's address; the work directory must then
be on a file system every worker shares (``--workdir``), and datapunk and
pydantic must be installed on the workers::

    python examples/scale_out.py --scheduler tcp://scheduler:8786 --workdir /shared/tmp
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import pydantic

import datapunk
from datapunk.runners import Dask

HOT_F = 80.0
BROKEN_EVERY = 1000


class Reading(pydantic.BaseModel):
    """A sensor reading as it arrives."""

    sensor: str
    celsius: float = pydantic.Field(ge=-90, le=60)


def to_fahrenheit(reading: Reading) -> dict[str, object]:
    """Convert to Fahrenheit, rounded to a tenth."""
    return {"sensor": reading.sensor, "fahrenheit": round(reading.celsius * 9 / 5 + 32, 1)}


def hot(record: dict[str, object]) -> bool:
    """Keep the readings above 80 °F."""
    return float(str(record["fahrenheit"])) > HOT_F


PIPELINE = datapunk.Pipeline(
    datapunk.Validate(Reading),
    datapunk.Stage(to_fahrenheit),
    datapunk.Filter(hot),
    name="hot-sensors",
)


def make_input(path: Path, records: int) -> None:
    """Write *records* readings, one in a thousand out of range or not JSON at all."""
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as f:
        for i in range(records):
            if i % BROKEN_EVERY == BROKEN_EVERY - 1:
                odd = i % (2 * BROKEN_EVERY) == BROKEN_EVERY - 1
                f.write("{truncated\n" if odd else '{"sensor": "s1", "celsius": 300}\n')
                continue
            reading = {"sensor": f"s{i % 50}", "celsius": round(rng.uniform(-20, 45), 2)}
            f.write(json.dumps(reading) + "\n")


def main(argv: list[str] | None = None) -> tuple[datapunk.RunReport, datapunk.RunReport]:
    """Run serially and on Dask; check the answers agree; return both reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--scheduler", help="a Dask scheduler address (default: a local cluster)")
    parser.add_argument("--workdir", help="a directory every worker can read and write")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)

    import distributed

    work = Path(tempfile.mkdtemp(prefix="datapunk-scale-", dir=args.workdir))
    source = work / "readings.jsonl"
    make_input(source, args.records)

    t0 = time.perf_counter()
    serial = PIPELINE.run(source, work / "serial.jsonl", dead_letter=work / "serial-rejects.jsonl")
    serial_s = time.perf_counter() - t0

    if args.scheduler:
        client = distributed.Client(args.scheduler)
        cluster = None
    else:
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=":0"
        )
        client = distributed.Client(cluster)
    try:
        t0 = time.perf_counter()
        on_dask = PIPELINE.run(
            source,
            work / "dask.jsonl",
            dead_letter=work / "dask-rejects.jsonl",
            runner=Dask(client),
        )
        dask_s = time.perf_counter() - t0
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    same_output = (work / "serial.jsonl").read_bytes() == (work / "dask.jsonl").read_bytes()

    def rejected(name: str) -> list[tuple[object, object, object]]:
        lines = (work / name).read_text(encoding="utf-8").splitlines()
        return [(d["position"], d["stage"], d["error_type"]) for d in map(json.loads, lines)]

    same_rejects = rejected("serial-rejects.jsonl") == rejected("dask-rejects.jsonl")
    print(serial)
    print(on_dask)
    print(f"serial {serial_s:.2f} s, dask {dask_s:.2f} s")
    print(f"same output: {same_output}; same rejected records: {same_rejects}")
    if not (same_output and same_rejects):
        raise SystemExit("the runs disagree")
    return serial, on_dask


if __name__ == "__main__":
    main()
