"""
Chunk drivers for concurrent runners.

The serial loop (:func:`datapunk._core.engine.process_chunk`) applies one op to
a whole chunk before the next op. The drivers here keep exactly that shape, and
exactly the same result, but make the *calls* of one op concurrent: on a thread
pool (``Threads``) or as tasks on an event loop (``Async``). The calls' outcomes
are collected first and then folded, in input order, by the same bookkeeping the
serial loop uses, so outputs, counters and dead letters are identical to a
serial run, whatever the order in which the calls finished.

:func:`failed_chunk` builds the result of a chunk whose worker died: every
record of the chunk becomes a dead letter naming the stage that was running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from datapunk._core.engine import (
    _ASYNC,
    _SYNC,
    FAILED,
    IN,
    OUT,
    SKIPPED,
    ChunkResult,
    Op,
    _batch_collect,
    _batch_results,
    _Chunk,
    _collect_async,
    _enter,
    _finish,
    _leave,
    _start,
    run_coroutine,
)
from datapunk._core.types import DeadLetter, Position

if TYPE_CHECKING:
    from concurrent.futures import Executor

__all__ = [
    "Limit",
    "PMap",
    "ThreadLoops",
    "aprocess_chunk_concurrent",
    "failed_chunk",
    "process_chunk_observed",
    "process_chunk_parallel",
]

T = TypeVar("T")

#: ``pmap(fn, items) -> results`` in input order (``Executor.map`` fits).
PMap: TypeAlias = Callable[[Callable[[Any], Any], Sequence[Any]], Iterable[Any]]
#: One call's outcome: ``(True, result)`` or ``(False, exception)``.
Outcome: TypeAlias = tuple[bool, Any]
Vals: TypeAlias = tuple[list[Any], list[int] | None]


def _outcome(fn: Callable[[Any], Any]) -> Callable[[Any], Outcome]:
    def call(arg: Any) -> Outcome:
        try:
            return True, fn(arg)
        except Exception as exc:
            return False, exc

    return call


# ----------------------------------------------------------------- folding
def _fold(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk, outcomes: Sequence[Outcome]
) -> Vals:
    """Account for per-record outcomes in input order, as the serial loop does."""
    out: list[Any] = []
    kept: list[int] = []
    src = range(len(vals)) if idx is None else idx
    kind = op.kind
    for v, k, (ok, r) in zip(vals, src, outcomes, strict=True):
        if kind == "map":
            if ok:
                out.append(r)
                kept.append(k)
            elif ch.fail(op, k, r, v):
                out.append(v)
                kept.append(k)
        elif kind == "filter":
            if ok and not r:
                continue
            if ok or ch.fail(op, k, r, v):  # kept, or passed on (warn / optional)
                out.append(v)
                kept.append(k)
        elif ok:  # flat_map
            out.extend(r)
            kept.extend([k] * len(r))
        elif ch.fail(op, k, r, v):
            out.append(v)
            kept.append(k)
    return out, kept


def _batches(vals: list[Any], idx: list[int] | None, size: int) -> list[tuple[list[Any], Any]]:
    src: Sequence[int] = range(len(vals)) if idx is None else idx
    return [(vals[s : s + size], src[s : s + size]) for s in range(0, len(vals), size)]


def _fold_batches(
    op: Op,
    batches: list[tuple[list[Any], Any]],
    ch: _Chunk,
    outcomes: Sequence[Outcome],
) -> Vals:
    out: list[Any] = []
    kept: list[int] = []
    for (batch, bidx), (ok, r) in zip(batches, outcomes, strict=True):
        if ok:
            _batch_collect(op, batch, bidx, r, out, kept, ch)
            continue
        for v, k in zip(batch, bidx, strict=True):
            if ch.fail(op, k, r, v):
                out.append(v)
                kept.append(k)
    return out, kept


# ------------------------------------------------------------------ drivers
def _drive(
    ops: Sequence[Op],
    positions: Sequence[Position],
    records: Sequence[Any],
    run_id: str,
    malformed: Sequence[int],
    apply: Callable[[Op, list[Any], list[int] | None, _Chunk], Vals],
    on_op: Callable[[int], None] | None = None,
) -> ChunkResult:
    ch, vals, idx = _start(ops, positions, records, run_id, malformed)
    seconds = [0.0] * len(ops)
    latencies: list[list[float]] = [[] for _ in ops]
    for op in ops:
        if not vals:
            break
        if on_op is not None:
            on_op(op.index)
        bound, n, t0 = _enter(op, vals, ch)
        vals, idx = apply(bound, vals, idx, ch)
        _leave(bound, n, vals, ch, t0, seconds, latencies)
    return _finish(ch, vals, seconds, len(records), latencies)


def _serial_apply(op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk) -> Vals:
    if op.is_async:
        return run_coroutine(_ASYNC[op.kind](op, vals, idx, ch))
    return _SYNC[op.kind](op, vals, idx, ch)


def process_chunk_observed(
    ops: Sequence[Op],
    positions: Sequence[Position],
    records: Sequence[Any],
    run_id: str,
    malformed: Sequence[int],
    on_op: Callable[[int], None],
) -> ChunkResult:
    """
    Run the fused serial loop, calling ``on_op(op.index)`` before each op.

    Used by process workers so the parent knows which stage was running if
    the worker dies.

    Returns:
        The chunk's :class:`ChunkResult` (identical to ``process_chunk``).
    """
    return _drive(ops, positions, records, run_id, malformed, _serial_apply, on_op)


class ThreadLoops:
    """
    One event loop per worker thread, for async stages called from threads.

    Unlike :func:`datapunk._core.engine.run_coroutine`'s thread-local loops,
    these are closed by :meth:`close` when the run ends, so pool threads leave
    no open loop behind.
    """

    def __init__(self) -> None:
        self._runners: dict[int, asyncio.Runner] = {}
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run *coro* on this thread's loop."""
        key = threading.get_ident()
        runner = self._runners.get(key)
        if runner is None:
            runner = asyncio.Runner()
            with self._lock:
                self._runners[key] = runner
        return runner.run(coro)

    def close(self) -> None:
        """Close every loop (call once the threads are idle)."""
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.close()


def _sync_call(op: Op, run: Callable[[Coroutine[Any, Any, Any]], Any]) -> Callable[[Any], Any]:
    fn = op.fn
    if op.is_async:
        if op.kind == "flat_map":
            return lambda v: run(_collect_async(fn(v)))
        return lambda v: run(fn(v))
    if op.kind == "flat_map":
        return lambda v: list(fn(v))
    return fn


def process_chunk_parallel(
    ops: Sequence[Op],
    positions: Sequence[Position],
    records: Sequence[Any],
    run_id: str,
    malformed: Sequence[int],
    pmap: PMap,
    loops: ThreadLoops | None = None,
    slices: int | None = None,
) -> ChunkResult:
    """
    Run one chunk through every op, each op's calls spread with *pmap*.

    Per-record calls (and per-batch calls of batch ops) run concurrently;
    their outcomes are folded in input order, so the result is identical to
    :func:`datapunk._core.engine.process_chunk`. Async stages are awaited on
    the worker thread's private loop.

    Args:
        ops: The compiled stages.
        positions: One position per record.
        records: The source records.
        run_id: Stamped on dead letters.
        malformed: Indexes of malformed records.
        pmap: ``pmap(fn, items)`` returning results in order (e.g. ``Executor.map``).
        loops: Event loops for async stages in the pool's threads (default:
            :func:`datapunk._core.engine.run_coroutine`).
        slices: Hand the calls to *pmap* in about this many runs of
            consecutive records (fewer hand-offs); ``None``: one per call.

    Returns:
        The chunk's :class:`ChunkResult`.
    """

    def apply(op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk) -> Vals:
        call = _sync_call(op, run_coroutine if loops is None else loops.run)
        if op.kind == "batch":
            batches = _batches(vals, idx, op.size)

            def one_batch(b: list[Any]) -> list[Any]:
                return _batch_results(b, call(b))

            outcomes = list(pmap(_outcome(one_batch), [b for b, _ in batches]))
            return _fold_batches(op, batches, ch, outcomes)
        if len(vals) == 1:  # nothing to spread
            return _fold(op, vals, idx, ch, [_outcome(call)(vals[0])])
        return _fold(op, vals, idx, ch, _spread_sync(pmap, _outcome(call), vals, slices))

    return _drive(ops, positions, records, run_id, malformed, apply)


class Limit:
    """
    The in-flight bound of an async run, shared by every chunk in flight.

    A slot is held by a worker coroutine, which then awaits calls one after
    another until its chunk has no record left: the bound costs one acquire
    per worker, not one per call.
    """

    __slots__ = ("semaphore", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.semaphore = asyncio.Semaphore(width)


async def _spread(
    limit: Limit, items: Sequence[Any], call: Callable[[Any], Awaitable[Any]]
) -> list[Outcome]:
    """Await ``call(item)`` for every item, at most ``limit.width`` at once; outcomes in order."""
    results: list[Outcome] = [(False, None)] * len(items)
    todo = iter(enumerate(items))

    async def worker() -> None:
        async with limit.semaphore:
            for i, v in todo:
                try:
                    results[i] = (True, await call(v))
                except Exception as exc:
                    results[i] = (False, exc)

    n = min(limit.width, len(items))
    if n == 1:
        await worker()
    else:
        await asyncio.gather(*(worker() for _ in range(n)))
    return results


def _spread_sync(
    pmap: PMap, call: Callable[[Any], Outcome], vals: list[Any], slices: int | None
) -> list[Outcome]:
    if slices is None or slices >= len(vals):
        return list(pmap(call, vals))
    step = -(-len(vals) // slices)
    runs = [vals[i : i + step] for i in range(0, len(vals), step)]
    out: list[Outcome] = []
    for part in pmap(lambda run: [call(v) for v in run], runs):
        out.extend(part)
    return out


async def aprocess_chunk_concurrent(
    ops: Sequence[Op],
    positions: Sequence[Position],
    records: Sequence[Any],
    run_id: str,
    malformed: Sequence[int],
    *,
    limit: Limit,
    offload: Executor | None,
) -> ChunkResult:
    """
    Run one chunk on the running loop, awaiting async calls concurrently.

    At most *limit* async calls are in flight (the semaphore is shared by every
    chunk of the run). Sync ops run in *offload* (a thread pool) so they never
    block the loop. Outcomes are folded in input order: the result is identical
    to :func:`datapunk._core.engine.process_chunk`.

    Args:
        ops: The compiled stages.
        positions: One position per record.
        records: The source records.
        run_id: Stamped on dead letters.
        malformed: Indexes of malformed records.
        limit: Bounds the async calls in flight (shared by the run).
        offload: Thread pool for sync ops (``None``: the loop's default).

    Returns:
        The chunk's :class:`ChunkResult`.
    """
    loop = asyncio.get_running_loop()
    ch, vals, idx = _start(ops, positions, records, run_id, malformed)
    seconds = [0.0] * len(ops)
    latencies: list[list[float]] = [[] for _ in ops]

    for unbound in ops:
        if not vals:
            break
        op, n, t0 = _enter(unbound, vals, ch)
        if not op.is_async:
            vals, idx = await loop.run_in_executor(offload, _SYNC[op.kind], op, vals, idx, ch)
        elif op.kind == "batch":
            fn = op.fn
            batches = _batches(vals, idx, op.size)

            async def one_batch(b: list[Any], fn: Any = fn) -> list[Any]:
                return _batch_results(b, await fn(b))

            outcomes = await _spread(limit, [b for b, _ in batches], one_batch)
            vals, idx = _fold_batches(op, batches, ch, outcomes)
        else:
            fn = op.fn
            if op.kind == "flat_map":

                async def one(v: Any, fn: Any = fn) -> list[Any]:
                    return await _collect_async(fn(v))

                outcomes = await _spread(limit, vals, one)
            else:
                outcomes = await _spread(limit, vals, fn)
            vals, idx = _fold(op, vals, idx, ch, outcomes)
        _leave(op, n, vals, ch, t0, seconds, latencies)
    return _finish(ch, vals, seconds, len(records), latencies)


def failed_chunk(
    ops: Sequence[Op],
    positions: Sequence[Position],
    records: Sequence[Any],
    run_id: str,
    malformed: Sequence[int],
    *,
    op_index: int,
    error_type: str,
    message: str,
) -> ChunkResult:
    """
    Build the result of a chunk whose worker died while running ``ops[op_index]``.

    Malformed records fail at the source as usual. Every other record becomes a
    dead letter of the stage that was running: the stages before it count the
    records as passed on, that stage counts them as failed, so every counter
    stays consistent (under ``on_error="skip"`` they count as skipped). A
    filter before the crash may have dropped some of them:
    the worker's partial work is lost, so they are all reported.

    Returns:
        A :class:`ChunkResult` with no outputs.
    """
    ch, vals, idx = _start(ops, positions, records, run_id, malformed)
    seconds = [0.0] * len(ops)
    if ops and vals:
        src = range(len(vals)) if idx is None else idx
        n = len(vals)
        for op in ops[:op_index]:
            ch.counts[op.index][IN] += n
            ch.counts[op.index][OUT] += n
        op = ops[op_index]
        action = "skip" if op.on_error == "skip" else "dead_letter"
        ch.counts[op.index][IN] += n
        ch.counts[op.index][SKIPPED if action == "skip" else FAILED] += n
        ch.failures.extend(
            (
                action,
                DeadLetter(
                    record=records[k],
                    position=positions[k],
                    stage=op.name,
                    error_type=error_type,
                    message=message,
                    run_id=run_id,
                ),
            )
            for k in src
        )
        vals = []
    return _finish(ch, vals, seconds, len(records))
