"""
Fusing consecutive sync stages into one generated loop.

For a run of consecutive synchronous ``map`` / ``filter`` / ``flat_map`` stages,
the engine generates (once per shape, then cached) a Python function whose body
is the loop a careful programmer would write by hand::

    for v, k in zip(vals, src):
        try:
            v = f0(v)                 # map
        except Exception as e:
            if not fail(o0, k, e, v):
                continue
        try:
            if not f1(v):             # filter
                x1 += 1
                continue
        except Exception as e:
            if not fail(o1, k, e, v):
                continue
        append(v)
        keep(k)

Each record goes through every stage before the next record starts, so
intermediate values die at once (no chunk-sized lists of them survive long
enough to be promoted by the garbage collector), and the per-record cost of the
framework is one ``try`` (free on 3.11+ until something raises) per stage.

Latency is measured on a sample: a *timed* variant of the same loop, which
reads the clock around each stage, runs the first records of every chunk
(one in :data:`SAMPLE_EVERY`), the plain variant runs the rest.
"""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from datapunk._core.engine import Op, _Chunk

__all__ = ["SAMPLE_EVERY", "fusible", "run_segment"]

#: One record in this many (at least one per chunk) is timed stage by stage.
SAMPLE_EVERY = 64

_FUSIBLE = frozenset({"map", "filter", "flat_map"})


def fusible(op: Op) -> bool:
    """Whether *op* can be part of a generated loop."""
    return not op.is_async and op.kind in _FUSIBLE


def _generate(kinds: tuple[str, ...], *, timed: bool, track: bool) -> Callable[..., Any]:
    n = len(kinds)
    lines: list[str] = []
    emit = lines.append
    args = ", ".join([*(f"f{i}" for i in range(n)), *(f"o{i}" for i in range(n))])
    emit(f"def segment(vals, src, fail, perf, lat, {args}):")
    emit("    out = []")
    emit("    append = out.append")
    emit("    kept = []")
    emit("    keep = kept.append")
    for i in range(n):
        emit(f"    x{i} = 0")  # filtered (filter) or produced (flat_map)
    emit("    for v, k in zip(vals, src):")
    depth = 2

    def put(text: str) -> None:
        emit("    " * depth + text)

    for i, kind in enumerate(kinds):
        if timed:
            put("t = perf()")
        if kind == "map":
            put("try:")
            put(f"    v = f{i}(v)")
            put("except Exception as e:")
            put(f"    if not fail(o{i}, k, e, v):")
            if timed:
                put(f"        lat[{i}].append(perf() - t)")
            put("        continue")
            if timed:
                put(f"lat[{i}].append(perf() - t)")
        elif kind == "filter":
            put("try:")
            put(f"    ok = f{i}(v)")
            put("except Exception as e:")
            put(f"    ok = fail(o{i}, k, e, v)")
            put("    if not ok:")
            if timed:
                put(f"        lat[{i}].append(perf() - t)")
            put("        continue")
            put("else:")
            put("    if not ok:")
            put(f"        x{i} += 1")
            if timed:
                put(f"        lat[{i}].append(perf() - t)")
            put("        continue")
            if timed:
                put(f"lat[{i}].append(perf() - t)")
        else:  # flat_map: the rest of the stages run once per produced item
            put("try:")
            put(f"    items = list(f{i}(v))")
            put("except Exception as e:")
            put(f"    if not fail(o{i}, k, e, v):")
            if timed:
                put(f"        lat[{i}].append(perf() - t)")
            put("        continue")
            put("    items = [v]")
            if timed:
                put(f"lat[{i}].append(perf() - t)")
            put(f"x{i} += len(items)")
            put("for v in items:")
            depth += 1
    put("append(v)")
    if track:
        put("keep(k)")
    emit("    return out, kept, (" + "".join(f"x{i}, " for i in range(n)) + ")")
    namespace: dict[str, Any] = {}
    source = "\n".join(lines)
    code = compile(source, f"<datapunk fused loop {'/'.join(kinds)}>", "exec")
    exec(code, namespace)  # noqa: S102 - our own generated source, no user input
    fn: Callable[..., Any] = namespace["segment"]
    fn.__doc__ = source
    return fn


_cached_generate = cache(_generate)


def _segment_fn(kinds: tuple[str, ...], *, timed: bool, track: bool) -> Callable[..., Any]:
    return _cached_generate(kinds, timed=timed, track=track)


def run_segment(
    ops: Sequence[Op],
    fns: Sequence[Callable[..., Any]],
    vals: list[Any],
    idx: list[int] | None,
    ch: _Chunk,
    latencies: list[list[float]],
    *,
    track: bool,
) -> tuple[list[Any], list[int] | None]:
    """
    Run *vals* through the fused loop of *ops* and do the counting.

    Args:
        ops: Consecutive fusible ops.
        fns: The functions to call for each op (policies already bound).
        vals: Records entering the first op.
        idx: Their indexes in the chunk (``None``: ``0..len(vals)-1``).
        ch: The chunk's shared state (counters, failures).
        latencies: Per op (by ``op.index``), where to append sampled latencies.
        track: Whether the caller needs the output records' chunk indexes.

    Returns:
        The outputs and, when *track*, their chunk indexes.
    """
    kinds = tuple(op.kind for op in ops)
    n = len(vals)
    src: Sequence[int] = range(n) if idx is None else idx
    sample = max(1, n // SAMPLE_EVERY)
    lat: list[list[float]] = [latencies[op.index] for op in ops]
    timed = _segment_fn(kinds, timed=True, track=track)
    fast = _segment_fn(kinds, timed=False, track=track)
    fail = ch.fail
    perf = time.perf_counter
    out, kept, extra = timed(vals[:sample], src[:sample], fail, perf, lat, *fns, *ops)
    if n > sample:
        out2, kept2, extra2 = fast(vals[sample:], src[sample:], fail, perf, lat, *fns, *ops)
        out += out2
        kept += kept2
        extra = tuple(a + b for a, b in zip(extra, extra2, strict=True))
    _count(ops, ch, n, extra)
    return out, (kept if track else None)


def _count(ops: Sequence[Op], ch: _Chunk, n_in: int, extra: Sequence[int]) -> None:
    from datapunk._core.engine import FAILED, FILTERED, IN, OUT, SKIPPED

    entering = n_in
    for op, x in zip(ops, extra, strict=True):
        counts = ch.counts[op.index]
        counts[IN] += entering
        lost = counts[FAILED] + counts[SKIPPED]
        if op.kind == "flat_map":
            leaving = x
        else:
            counts[FILTERED] += x
            leaving = entering - lost - x
        counts[OUT] += leaving
        entering = leaving
