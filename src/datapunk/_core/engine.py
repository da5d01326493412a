"""
The fused loop: compiled stages applied to one chunk of records.

A run reads its source in chunks (``chunk_size`` records). Each stage is applied
to the whole chunk in one tight loop before the next stage runs, so the per
record cost of the framework is one list append and one local call. Failures
are isolated per record: ``try`` costs nothing on Python 3.11+ until something
raises, and only then does the loop do any bookkeeping.

Every runner uses :func:`process_chunk` (or :func:`aprocess_chunk`): the result,
a :class:`ChunkResult`, holds the outputs, the failures and the counters of one
chunk, so runners that work in other threads, processes or machines merge
results exactly as the serial runner does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from itertools import pairwise
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from datapunk._core.errors import (
    DataProcessingError,
    StageError,
    ValidationError,
)
from datapunk._core.fused import fusible, run_segment
from datapunk._core.types import DeadLetter, Kind, Malformed, OnError, Position, safe_str

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from datapunk._core.policies import Guard
    from datapunk._core.stage import Stage

__all__ = [
    "ChunkResult",
    "Op",
    "apply_one",
    "aprocess_chunk",
    "compile_stages",
    "process_chunk",
    "run_coroutine",
]

T = TypeVar("T")

SOURCE_STAGE = "<source>"

# Indexes into an op's counters.
IN, OUT, FILTERED, FAILED, SKIPPED, WARNINGS, RETRIES, DEGRADED, BREAKER_OPENS = range(9)
N_COUNTERS = 9


@attrs.define(slots=True, eq=False)
class Op:
    """One compiled stage: what the fused loop needs, looked up once."""

    stage: Stage[Any, Any]
    name: str
    kind: Kind
    fn: Callable[..., Any]
    is_async: bool
    on_error: OnError
    warn: bool
    size: int
    convert: Callable[[Exception], DataProcessingError] | None
    index: int
    optional: bool = False
    guard: Guard | None = None

    def bound(self, counts: list[int]) -> Op:
        """Return a copy whose ``fn`` applies the stage's policies, counting into *counts*."""
        assert self.guard is not None
        return attrs.evolve(self, fn=self.guard.bind(counts))


def compile_stages(stage: Stage[Any, Any], on_error: OnError = "dead_letter") -> list[Op]:
    """
    Flatten *stage* into ops with unique names, resolving error policies.

    Args:
        stage: A stage or pipeline.
        on_error: The policy for stages that set none.

    Returns:
        The ops, in order.
    """
    ops: list[Op] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(stage.stages()):
        count = seen.get(s.name, 0) + 1
        seen[s.name] = count
        name = s.name if count == 1 else f"{s.name}#{count}"
        guard = _guard(s, name)
        ops.append(
            Op(
                stage=s,
                name=name,
                kind=s.kind,
                fn=s.fn if guard is None else guard.bind(None),
                is_async=s.is_async,
                on_error=s.on_error or on_error,
                warn=s.warn,
                size=s.size or 0,
                convert=s._convert,
                index=i,
                optional=getattr(s, "optional", False),
                guard=guard,
            )
        )
    return ops


def _guard(s: Stage[Any, Any], name: str) -> Guard | None:
    retry = getattr(s, "retry", None)
    timeout = getattr(s, "timeout", None)
    breaker = getattr(s, "breaker", None)
    if retry is None and timeout is None and breaker is None:
        return None  # no policy: the fused loop calls the raw function
    from datapunk._core.policies import make_guard

    return make_guard(
        s.fn,
        stage=name,
        kind=s.kind,
        is_async=s.is_async,
        retry=retry,
        timeout=timeout,
        breaker=breaker,
    )


@attrs.define(slots=True, eq=False)
class ChunkResult:
    """
    What processing one chunk produced.

    Attributes:
        outputs: Output records, in order.
        failures: ``(action, dead_letter)`` pairs; action is ``"dead_letter"``,
            ``"skip"`` or ``"warn"``.
        counts: Per op, the counters ``[in, out, filtered, failed, skipped,
            warnings, retries, degraded]``.
        seconds: Per op, the time spent in the op for this chunk.
        records_in: Source records in the chunk (malformed ones included).
        last_position: Position of the chunk's last source record.
        latencies: Per op, sampled per-record latencies in seconds; ``None``
            when only ``seconds`` was measured (then its per-record mean is
            the chunk's one sample).
        written: Outputs already written where the chunk was processed (to a
            part of a partitioned sink, or discarded): counted, not in
            ``outputs``.
        receipt: The receipt of the sink part the outputs went to, on the
            last chunk of a partition.
    """

    outputs: list[Any]
    failures: list[tuple[str, DeadLetter]]
    counts: list[list[int]]
    seconds: list[float]
    records_in: int
    last_position: Position | None
    latencies: list[list[float]] | None = None
    written: int = 0
    receipt: Any = None


class _Chunk:
    """Per-chunk state the op loops share: originals, positions and failures."""

    __slots__ = ("counts", "failures", "keys", "positions", "records", "run_id", "secret_paths")

    def __init__(
        self,
        positions: Sequence[Position],
        records: Sequence[Any],
        n_ops: int,
        run_id: str,
        secret_paths: tuple[tuple[str | int, ...], ...] = (),
    ) -> None:
        self.secret_paths = secret_paths
        self.positions = positions
        self.records = records
        self.failures: list[tuple[str, DeadLetter]] = []
        # (record index, op index) per failure: results list failures in this
        # order whatever order the stages ran in (fused or one stage at a time).
        self.keys: list[tuple[int, int]] = []
        self.counts = [[0] * N_COUNTERS for _ in range(n_ops)]
        self.run_id = run_id

    def fail(self, op: Op, k: int, exc: Exception, value: Any) -> bool:
        """
        Record that the record at original index *k* failed in *op*.

        Returns:
            True if the record passes on unchanged (a warn-only validator, or
            an ``optional`` stage: a degradation).

        Raises:
            DataProcessingError: When the op's policy is ``"raise"``.
        """
        position = self.positions[k]
        err: DataProcessingError | None
        if isinstance(exc, DataProcessingError):
            err = exc
        elif op.convert is not None:
            err = op.convert(exc)
        else:
            err = None
        counts = self.counts[op.index]
        warn = op.warn and isinstance(err, ValidationError)
        if err is None:
            error_type, message, reasons = type(exc).__name__, safe_str(exc), ()
        else:
            error_type, message = type(err).__name__, err.message
            reasons = getattr(err, "reasons", ())
        degrade = op.optional and not warn
        if not warn and not degrade and op.on_error == "raise":
            if err is None:
                raise StageError.wrap(exc, stage=op.name, position=position)
            if err.stage is None:
                err.stage, err.position = op.name, position
                err.details.update(stage=op.name, position=position)
            if err is exc:
                raise err
            raise err from exc
        action = "warn" if warn else "degrade" if degrade else op.on_error
        if warn:
            counts[WARNINGS] += 1
        elif degrade:
            counts[DEGRADED] += 1
        elif action == "skip":
            counts[SKIPPED] += 1
        else:
            counts[FAILED] += 1
        self.keys.append((k, op.index))
        self.failures.append(
            (
                action,
                DeadLetter(
                    record=self.records[k],
                    position=position,
                    stage=op.name,
                    error_type=error_type,
                    message=message,
                    reasons=tuple(reasons),
                    attempts=_attempts(exc),
                    run_id=self.run_id,
                    secret_paths=self.secret_paths,
                ),
            )
        )
        return warn or degrade


def _attempts(exc: BaseException) -> int:
    # Set by the retry policy (datapunk._core.policies) on what a stage raised.
    n = getattr(exc, "_datapunk_attempts", 1)
    return n if isinstance(n, int) and n >= 1 else 1


def _keep(idx: list[int] | None, n: int, bad: list[int]) -> list[int]:
    """Original indexes minus the (local) positions in *bad*."""
    drop = set(bad)
    source = range(n) if idx is None else idx
    return [k for j, k in enumerate(source) if j not in drop]


# ----------------------------------------------------------------- sync loops
def _map(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk
) -> tuple[list[Any], list[int] | None]:
    fn = op.fn
    out: list[Any] = []
    append = out.append
    bad: list[int] | None = None
    for v in vals:
        try:
            append(fn(v))
        except Exception as exc:
            j = len(out) + (len(bad) if bad else 0)
            if ch.fail(op, j if idx is None else idx[j], exc, v):
                append(v)
            else:
                if bad is None:
                    bad = []
                bad.append(j)
    if bad:
        idx = _keep(idx, len(vals), bad)
    return out, idx


def _filter(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk
) -> tuple[list[Any], list[int] | None]:
    fn = op.fn
    out: list[Any] = []
    kept: list[int] = []
    append = out.append
    keep = kept.append
    src = range(len(vals)) if idx is None else idx
    for v, k in zip(vals, src, strict=True):
        try:
            if fn(v):
                append(v)
                keep(k)
        except Exception as exc:
            if ch.fail(op, k, exc, v):
                append(v)
                keep(k)
    return out, kept


def _flat_map(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk
) -> tuple[list[Any], list[int] | None]:
    fn = op.fn
    out: list[Any] = []
    kept: list[int] = []
    src = range(len(vals)) if idx is None else idx
    for v, k in zip(vals, src, strict=True):
        try:
            items = list(fn(v))
        except Exception as exc:
            if ch.fail(op, k, exc, v):
                out.append(v)
                kept.append(k)
            continue
        out.extend(items)
        kept.extend([k] * len(items))
    return out, kept


def _batch_results(batch: list[Any], result: Any) -> list[Any]:
    if not isinstance(result, list | tuple):
        raise TypeError(f"batch stage must return a list, got {type(result).__name__}")
    if len(result) != len(batch):
        raise ValueError(
            f"batch stage returned {len(result)} results for {len(batch)} records; "
            "return exactly one result per record (an exception instance fails one record)"
        )
    return list(result)


def _batch_collect(
    op: Op,
    batch: list[Any],
    bidx: Sequence[int],
    result: Any,
    out: list[Any],
    kept: list[int],
    ch: _Chunk,
) -> None:
    for v, k, r in zip(batch, bidx, result, strict=True):
        if isinstance(r, BaseException):
            exc = r if isinstance(r, Exception) else RuntimeError(safe_str(r))
            if ch.fail(op, k, exc, v):
                out.append(v)
                kept.append(k)
        else:
            out.append(r)
            kept.append(k)


def _batch(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk
) -> tuple[list[Any], list[int] | None]:
    size = op.size
    src: Sequence[int] = range(len(vals)) if idx is None else idx
    out: list[Any] = []
    kept: list[int] = []
    for start in range(0, len(vals), size):
        batch = vals[start : start + size]
        bidx = src[start : start + size]
        try:
            result = _batch_results(batch, op.fn(batch))
        except Exception as exc:
            for v, k in zip(batch, bidx, strict=True):
                if ch.fail(op, k, exc, v):
                    out.append(v)
                    kept.append(k)
            continue
        _batch_collect(op, batch, bidx, result, out, kept, ch)
    return out, kept


_SYNC = {"map": _map, "filter": _filter, "flat_map": _flat_map, "batch": _batch}


# ---------------------------------------------------------------- async loops
async def _amap(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk
) -> tuple[list[Any], list[int] | None]:
    fn = op.fn
    out: list[Any] = []
    kept: list[int] = []
    src = range(len(vals)) if idx is None else idx
    for v, k in zip(vals, src, strict=True):
        try:
            out.append(await fn(v))
        except Exception as exc:
            if not ch.fail(op, k, exc, v):
                continue
            out.append(v)
        kept.append(k)
    return out, kept


async def _afilter(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk
) -> tuple[list[Any], list[int] | None]:
    fn = op.fn
    out: list[Any] = []
    kept: list[int] = []
    src = range(len(vals)) if idx is None else idx
    for v, k in zip(vals, src, strict=True):
        try:
            if await fn(v):
                out.append(v)
                kept.append(k)
        except Exception as exc:
            if ch.fail(op, k, exc, v):
                out.append(v)
                kept.append(k)
    return out, kept


async def _collect_async(result: Any) -> list[Any]:
    if hasattr(result, "__aiter__"):
        return [item async for item in result]
    return list(await result)


async def _aflat_map(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk
) -> tuple[list[Any], list[int] | None]:
    fn = op.fn
    out: list[Any] = []
    kept: list[int] = []
    src = range(len(vals)) if idx is None else idx
    for v, k in zip(vals, src, strict=True):
        try:
            items = await _collect_async(fn(v))
        except Exception as exc:
            if ch.fail(op, k, exc, v):
                out.append(v)
                kept.append(k)
            continue
        out.extend(items)
        kept.extend([k] * len(items))
    return out, kept


async def _abatch(
    op: Op, vals: list[Any], idx: list[int] | None, ch: _Chunk
) -> tuple[list[Any], list[int] | None]:
    size = op.size
    src: Sequence[int] = range(len(vals)) if idx is None else idx
    out: list[Any] = []
    kept: list[int] = []
    for start in range(0, len(vals), size):
        batch = vals[start : start + size]
        bidx = src[start : start + size]
        try:
            result = _batch_results(batch, await op.fn(batch))
        except Exception as exc:
            for v, k in zip(batch, bidx, strict=True):
                if ch.fail(op, k, exc, v):
                    out.append(v)
                    kept.append(k)
            continue
        _batch_collect(op, batch, bidx, result, out, kept, ch)
    return out, kept


_ASYNC = {"map": _amap, "filter": _afilter, "flat_map": _aflat_map, "batch": _abatch}


# ------------------------------------------------------------ chunk drivers
def _start(
    ops: Sequence[Op],
    positions: Sequence[Position],
    records: Sequence[Any],
    run_id: str,
    malformed: Sequence[int],
) -> tuple[_Chunk, list[Any], list[int] | None]:
    secrets = tuple(p for op in ops for p in getattr(op.stage, "secret_paths", ()))
    ch = _Chunk(positions, records, len(ops), run_id, secrets)
    vals = records if isinstance(records, list) else list(records)
    idx: list[int] | None = None
    if malformed:
        for j in malformed:
            bad: Malformed = vals[j]
            ch.keys.append((j, -1))
            ch.failures.append(
                (
                    "dead_letter",
                    DeadLetter(
                        record=bad.raw,
                        position=positions[j],
                        stage=SOURCE_STAGE,
                        error_type=bad.error_type,
                        message=bad.message,
                        run_id=run_id,
                    ),
                )
            )
        drop = set(malformed)
        idx = [j for j in range(len(vals)) if j not in drop]
        vals = [vals[j] for j in idx]
    return ch, vals, idx


def _finish(
    ch: _Chunk,
    vals: list[Any],
    seconds: list[float],
    n_in: int,
    latencies: list[list[float]] | None = None,
) -> ChunkResult:
    failures = ch.failures
    keys = ch.keys
    if len(keys) > 1 and any(a > b for a, b in pairwise(keys)):
        order = sorted(range(len(keys)), key=keys.__getitem__)
        failures = [failures[i] for i in order]
    return ChunkResult(
        outputs=vals,
        failures=failures,
        counts=ch.counts,
        seconds=seconds,
        records_in=n_in,
        last_position=ch.positions[n_in - 1] if n_in else None,
        latencies=latencies,
    )


def process_chunk(
    ops: Sequence[Op],
    positions: Sequence[Position],
    records: Sequence[Any],
    run_id: str = "",
    malformed: Sequence[int] = (),
) -> ChunkResult:
    """
    Run one chunk of source records through every op (the fused serial loop).

    Async ops are awaited one record at a time on a private event loop.

    Args:
        ops: The compiled stages.
        positions: One position per record.
        records: The source records.
        run_id: Stamped on dead letters.
        malformed: Indexes of :class:`datapunk.Malformed` records (they fail at once).

    Returns:
        The chunk's :class:`ChunkResult`.
    """
    ch, vals, idx = _start(ops, positions, records, run_id, malformed)
    seconds = [0.0] * len(ops)
    latencies: list[list[float]] = [[] for _ in ops]
    i, n_ops = 0, len(ops)
    while i < n_ops and vals:
        op = ops[i]
        if fusible(op):
            vals, idx, i = _fused(ops, i, vals, idx, ch, seconds, latencies)
            continue
        op, n, t0 = _enter(op, vals, ch)
        if op.is_async:
            vals, idx = run_coroutine(_ASYNC[op.kind](op, vals, idx, ch))
        else:
            vals, idx = _SYNC[op.kind](op, vals, idx, ch)
        _leave(op, n, vals, ch, t0, seconds, latencies)
        i += 1
    return _finish(ch, vals, seconds, len(records), latencies)


def _fused(
    ops: Sequence[Op],
    i: int,
    vals: list[Any],
    idx: list[int] | None,
    ch: _Chunk,
    seconds: list[float],
    latencies: list[list[float]],
) -> tuple[list[Any], list[int] | None, int]:
    """Run the longest run of fusible ops from ``ops[i]`` as one generated loop."""
    j = i + 1
    while j < len(ops) and fusible(ops[j]):
        j += 1
    segment = ops[i:j]
    fns = [o.fn if o.guard is None else o.guard.bind(ch.counts[o.index]) for o in segment]
    vals, idx = run_segment(segment, fns, vals, idx, ch, latencies, track=j < len(ops))
    for o in segment:
        lat = latencies[o.index]
        if lat:
            seconds[o.index] = sum(lat) / len(lat) * ch.counts[o.index][IN]
    return vals, idx, j


def _enter(op: Op, vals: list[Any], ch: _Chunk) -> tuple[Op, int, float]:
    """Count the records entering a one-stage-at-a-time op and bind its policies."""
    n = len(vals)
    ch.counts[op.index][IN] += n
    if op.guard is not None:
        op = op.bound(ch.counts[op.index])
    return op, n, time.perf_counter()


def _leave(
    op: Op,
    n: int,
    vals: list[Any],
    ch: _Chunk,
    t0: float,
    seconds: list[float],
    latencies: list[list[float]],
) -> None:
    """Count what a one-stage-at-a-time op let through, and its time."""
    elapsed = time.perf_counter() - t0
    seconds[op.index] += elapsed
    latencies[op.index].append(elapsed / n)
    counts = ch.counts[op.index]
    counts[OUT] += len(vals)
    if op.kind == "filter":
        counts[FILTERED] += n - len(vals) - counts[FAILED] - counts[SKIPPED]


async def aprocess_chunk(
    ops: Sequence[Op],
    positions: Sequence[Position],
    records: Sequence[Any],
    run_id: str = "",
    malformed: Sequence[int] = (),
) -> ChunkResult:
    """
    Like :func:`process_chunk`, awaiting async ops on the running loop.

    Args:
        ops: The compiled stages.
        positions: One position per record.
        records: The source records.
        run_id: Stamped on dead letters.
        malformed: Indexes of :class:`datapunk.Malformed` records (they fail at once).

    Returns:
        The chunk's :class:`ChunkResult`.
    """
    ch, vals, idx = _start(ops, positions, records, run_id, malformed)
    seconds = [0.0] * len(ops)
    latencies: list[list[float]] = [[] for _ in ops]
    i, n_ops = 0, len(ops)
    while i < n_ops and vals:
        op = ops[i]
        if fusible(op):
            vals, idx, i = _fused(ops, i, vals, idx, ch, seconds, latencies)
            continue
        op, n, t0 = _enter(op, vals, ch)
        if op.is_async:
            vals, idx = await _ASYNC[op.kind](op, vals, idx, ch)
        else:
            vals, idx = _SYNC[op.kind](op, vals, idx, ch)
        _leave(op, n, vals, ch, t0, seconds, latencies)
        i += 1
    return _finish(ch, vals, seconds, len(records), latencies)


# ---------------------------------------------------------- running coroutines
_local = threading.local()


class _PrivateLoop:
    """
    A thread's private event loop, closed when the thread's locals go away.

    Worker threads of a pool come and go; without this, each would leave an
    unclosed loop (and its selector's file descriptors) behind.
    """

    def __init__(self) -> None:
        import asyncio

        self.runner = asyncio.Runner()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit, anything may be gone
            self.runner.close()


class _LoopThread:
    """An event loop in a helper thread, for callers already inside a loop."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="datapunk-loop", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit, anything may be gone
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=1)
            self.loop.close()


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """
    Run *coro* to completion from synchronous code.

    Uses one private event loop per thread (kept for the next call). When the
    calling thread already runs a loop (Jupyter, an async service), the
    coroutine runs on a private loop in a helper thread instead, so sync APIs
    work everywhere.

    Args:
        coro: The coroutine.

    Returns:
        Its result.
    """
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        private: _PrivateLoop | None = getattr(_local, "private", None)
        if private is None:
            private = _PrivateLoop()
            _local.private = private
        return private.runner.run(coro)
    helper: _LoopThread | None = getattr(_local, "helper", None)
    if helper is None:
        helper = _LoopThread()
        _local.helper = helper
    return helper.run(coro)


# ------------------------------------------------------------------ one record
def apply_one(stage: Stage[Any, Any], record: Any) -> list[Any]:
    """
    Run one record through *stage*, raising its error (``stage(record)``).

    Args:
        stage: A stage or pipeline.
        record: The record.

    Returns:
        The outputs (empty if filtered).
    """
    ops = compile_stages(stage, on_error="raise")
    ops = [attrs.evolve(op, on_error="raise") for op in ops]
    return process_chunk(ops, (0,), [record]).outputs
