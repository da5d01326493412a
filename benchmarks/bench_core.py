"""
Framework overhead of the serial runner, as a ratio to a hand-written loop.

Run with ``nox -s bench`` (or ``python benchmarks/bench_core.py``). Each case
does the same work twice in the same process, by hand and through datapunk,
and prints the ratio datapunk / hand (best of several repeats):

(a) 1,000,000 ints through 5 trivial map/filter stages: also the overhead in
    nanoseconds per record per stage (target <= 1 us).
(b) 200,000 JSON-like dicts -> Validate(pydantic model) -> map -> filter ->
    list sink, 2 % invalid (target <= 1.25x).
(c) ``import datapunk`` time as a ratio to ``import pydantic`` (target <= 1.2x),
    each in a fresh interpreter, with bytecode compiled for both first (as an
    installer does; an environment with PYTHONDONTWRITEBYTECODE would otherwise
    recompile every module on every import).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pydantic

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


# ---------------------------------------------------------------- (a) ints
def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


def not_div7(x: int) -> bool:
    return x % 7 != 0


def dec(x: int) -> int:
    return x - 1


def positive(x: int) -> bool:
    return x > 0


def case_ints(n: int, repeat: int) -> dict[str, float]:
    data = list(range(n))

    def hand() -> list[int]:
        out: list[int] = []
        append = out.append
        for x in data:
            try:
                y = inc(x)
                y = double(y)
                if not not_div7(y):
                    continue
                y = dec(y)
                if not positive(y):
                    continue
                append(y)
            except Exception:
                continue
        return out

    pipe = datapunk.Pipeline(
        datapunk.stage(inc),
        datapunk.stage(double),
        datapunk.Filter(not_div7),
        datapunk.stage(dec),
        datapunk.Filter(positive),
    )

    def framework() -> list[int]:
        out: list[int] = []
        pipe.run(data, out)
        return out

    assert hand() == framework()
    t_hand = best_of(hand, repeat)
    t_dp = best_of(framework, repeat)
    overhead_ns = (t_dp - t_hand) / n / 5 * 1e9
    return {
        "hand_s": t_hand,
        "datapunk_s": t_dp,
        "ratio": t_dp / t_hand,
        "ns_per_record_stage": overhead_ns,
    }


# ------------------------------------------------------------ (b) pydantic
class Flight(pydantic.BaseModel):
    record_id: str
    value: float
    is_valid: bool
    carrier: str
    distance: int


def make_rows(n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {
            "record_id": f"r{i}",
            "value": i * 0.5,
            "is_valid": i % 3 != 0,
            "carrier": "XY",
            "distance": i % 2000,
        }
        if i % 50 == 0:  # 2 % invalid
            row["value"] = "n/a"
        rows.append(row)
    return rows


def enrich(f: Flight) -> dict[str, Any]:
    return {
        "id": f.record_id,
        "processed": f.value * 2,
        "valid": f.is_valid,
        "km": f.distance * 1.609,
    }


def keep(d: dict[str, Any]) -> bool:
    return bool(d["valid"])


def case_pydantic(n: int, repeat: int) -> dict[str, float]:
    rows = make_rows(n)
    validate = Flight.model_validate

    def hand() -> tuple[list[dict[str, Any]], list[tuple[int, Exception]]]:
        out: list[dict[str, Any]] = []
        bad: list[tuple[int, Exception]] = []
        for i, row in enumerate(rows):
            try:
                m = validate(row)
            except pydantic.ValidationError as exc:
                bad.append((i, exc))
                continue
            d = enrich(m)
            if keep(d):
                out.append(d)
        return out, bad

    pipe = datapunk.Validate(Flight) | datapunk.stage(enrich) | datapunk.Filter(keep)

    def framework() -> tuple[list[dict[str, Any]], list[datapunk.DeadLetter]]:
        out: list[dict[str, Any]] = []
        dead: list[datapunk.DeadLetter] = []
        pipe.run(rows, out, dead_letter=dead)
        return out, dead

    h_out, h_bad = hand()
    f_out, f_bad = framework()
    assert h_out == f_out
    assert [i for i, _ in h_bad] == [d.position for d in f_bad]
    t_hand = best_of(hand, repeat)
    t_dp = best_of(framework, repeat)
    return {"hand_s": t_hand, "datapunk_s": t_dp, "ratio": t_dp / t_hand}


# ---------------------------------------------------------------- (c) import
def compile_bytecode(*modules: str) -> None:
    """Write .pyc files for *modules*, as an installer does, so both sides are measured alike."""
    import compileall
    import importlib.util
    from pathlib import Path

    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            compileall.compile_dir(Path(spec.origin).parent, quiet=1)


def import_time(module: str, repeat: int) -> float:
    code = (
        f"import time; t0 = time.perf_counter(); import {module}; print(time.perf_counter() - t0)"
    )
    samples = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-X", "frozen_modules=on", "-c", code],
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(float(out.stdout))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply record counts")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    a = case_ints(int(1_000_000 * args.scale), args.repeat)
    print(
        f"(a) 1M ints x 5 stages: hand {a['hand_s']:.3f}s, datapunk {a['datapunk_s']:.3f}s, "
        f"ratio {a['ratio']:.2f}x, overhead {a['ns_per_record_stage']:.0f} ns/record/stage "
        "(target <= 1000 ns)"
    )
    b = case_pydantic(int(200_000 * args.scale), args.repeat)
    print(
        f"(b) 200k dicts -> Validate -> map -> filter: hand {b['hand_s']:.3f}s, "
        f"datapunk {b['datapunk_s']:.3f}s, ratio {b['ratio']:.2f}x (target <= 1.25x)"
    )
    compile_bytecode("datapunk", "pydantic", "pydantic_core", "attrs", "attr", "structlog")
    t_dp = import_time("datapunk", 7)
    t_pd = import_time("pydantic", 7)
    print(
        f"(c) import datapunk {t_dp * 1000:.1f} ms vs import pydantic {t_pd * 1000:.1f} ms: "
        f"ratio {t_dp / t_pd:.2f}x (target <= 1.2x)"
    )


if __name__ == "__main__":
    main()
