"""
How a run uses its checkpoint store: resume, acknowledge, finish.

The protocol, for each checkpoint (after at least ``every`` records or
``seconds``, and at the end):

1. outputs and dead letters of the delivered chunks are already written;
2. each resumable sink's ``flush()`` makes them durable and returns a token;
3. the store saves, in one transaction, the number of source records and the
   last source position delivered, the tokens, the counters and (for a store
   that keeps them) the new dead letters.

A crash before step 3 leaves the previous checkpoint in place, and the
output files hold more bytes than it acknowledges; resuming truncates them
back to the acknowledged tokens and reprocesses the records after the
acknowledged position. Every record therefore appears exactly once in the
final output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapunk._core.errors import ConfigurationError, SinkError
from datapunk._core.types import DeadLetter, jsonable, safe_str

if TYPE_CHECKING:
    from collections.abc import Iterator

    import datapunk
    from datapunk._core.adapters import ChunkReader, RawChunk, SinkAdapter
    from datapunk._core.engine import ChunkResult, Op
    from datapunk._core.run import Job

__all__ = ["Checkpointer", "fingerprint", "run_key"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _code_digest(fn: Any, h: Any, depth: int = 0) -> None:
    code = getattr(fn, "__code__", None)
    if code is None:
        func = getattr(fn, "__func__", None)  # bound method
        code = getattr(func, "__code__", None)
    if code is None and depth < 2:  # noqa: PLR2004 - a callable object: its __call__
        call = type(fn).__dict__.get("__call__")
        if call is not None and getattr(call, "__code__", None) is not None:
            _code_digest(call, h, depth + 1)
            h.update(f"{type(fn).__module__}.{type(fn).__qualname__}".encode())
            return
    if code is None:
        name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        h.update(f"{getattr(fn, '__module__', '')}.{name}".encode())
        return
    _hash_code(code, h)


def _hash_code(code: Any, h: Any) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            _hash_code(const, h)
        else:
            h.update(_ADDRESS.sub("", repr(const)).encode())


def fingerprint(ops: list[Op]) -> str:
    """
    Return a digest of what a pipeline does: stages, kinds, options and code.

    Two runs with the same fingerprint produce the same output from the same
    input, so one may resume the other. Changing a stage's code, its options
    or the order of stages changes the fingerprint.

    Args:
        ops: The compiled stages.

    Returns:
        A short hex digest.
    """
    h = hashlib.sha256()
    for op in ops:
        opts = {k: v for k, v in op.stage.options().items() if k != "async"}
        text = json.dumps(
            [op.name, op.kind, op.on_error, {k: repr(v) for k, v in sorted(opts.items())}],
            default=safe_str,
        )
        h.update(_ADDRESS.sub("", text).encode())
        _code_digest(op.stage.fn, h)
    return h.hexdigest()[:16]


def run_key(pipeline: datapunk.Stage[Any, Any], reader: ChunkReader) -> str:
    """
    Return the key naming one logical run: pipeline name and source identity.

    Args:
        pipeline: The pipeline.
        reader: The run's source.

    Returns:
        ``"<pipeline name> <- <source>"``; a file source is named by its absolute path.
    """
    path = getattr(reader.obj, "path", None)
    source = str(Path(path).resolve()) if isinstance(path, str | os.PathLike) else reader.name
    return f"{pipeline.name} <- {source}"


def _resumable(adapter: SinkAdapter | None) -> bool:
    if adapter is None or adapter.discard:
        return True
    obj = adapter.obj
    return callable(getattr(obj, "flush", None)) and callable(getattr(obj, "resume", None))


def _check_resumable(adapter: SinkAdapter | None) -> None:
    # A sink that discards its output when a run stops (abort) but cannot
    # reopen it (resume) would lose the acknowledged records on a resume.
    if adapter is None or _resumable(adapter):
        return
    if callable(getattr(adapter.obj, "abort", None)):
        raise ConfigurationError(
            f"the {adapter.role} {adapter.name!r} cannot be resumed after a crash: it "
            "discards its output when a run stops and has no resume(). With checkpoint= "
            "write JSON Lines (.jsonl), or use a sink with flush(), resume() and suspend()",
            details={"role": adapter.role, "sink": adapter.name},
        )


def as_store(checkpoint: Any) -> Any:
    """
    Coerce ``checkpoint=`` to a store.

    Raises:
        ConfigurationError: If it is neither a path nor a store.
    """
    if isinstance(checkpoint, str | os.PathLike):
        from datapunk.state._sqlite import SQLiteCheckpoint

        return SQLiteCheckpoint(checkpoint)
    if all(callable(getattr(checkpoint, m, None)) for m in ("load", "save", "clear")):
        return checkpoint
    raise ConfigurationError(
        f"checkpoint= must be a file path or a checkpoint store (load, save, clear), "
        f"got {type(checkpoint).__name__}",
        details={"option": "checkpoint", "got": type(checkpoint).__name__},
    )


class Checkpointer:
    """One run's use of its checkpoint store (built by :meth:`Job.create`)."""

    def __init__(
        self,
        store: Any,
        *,
        key: str,
        fingerprint: str,
        sink: SinkAdapter,
        dead_letter: SinkAdapter | None,
    ) -> None:
        self.store = store
        self.key = key
        self.fingerprint = fingerprint
        self.sink = sink
        self.dead_letter = dead_letter
        self.keeps_dead_letters = dead_letter is None and callable(
            getattr(store, "dead_letters", None)
        )
        self.every: int | None = getattr(store, "every", None)
        self.seconds: float | None = getattr(store, "seconds", 1.0)
        # Sinks that cannot resume are acknowledged after every chunk they accept.
        self.every_chunk = not (_resumable(sink) and _resumable(dead_letter)) or (
            self.every is None and self.seconds is None
        )
        self.state: dict[str, Any] | None = None
        self.skip = 0
        self.skip_position: Any = None
        self.pending: list[DeadLetter] = []
        self.unacked = 0
        self.last_ack = time.monotonic()
        self.position: Any = None
        self.run_ids: list[str] = []

    @classmethod
    def create(
        cls,
        checkpoint: Any,
        pipeline: datapunk.Stage[Any, Any],
        ops: list[Op],
        reader: ChunkReader,
        sink: SinkAdapter,
        dead_letter: SinkAdapter | None,
    ) -> Checkpointer:
        """
        Open the store and load the run's state, refusing a changed pipeline.

        Raises:
            ConfigurationError: The store is unusable, or the saved run was
                made by a different pipeline.
        """
        store = as_store(checkpoint)
        try:
            return cls._open(store, pipeline, ops, reader, sink, dead_letter)
        except BaseException:
            close = getattr(store, "close", None)
            if callable(close):
                close()
            raise

    @classmethod
    def _open(
        cls,
        store: Any,
        pipeline: datapunk.Stage[Any, Any],
        ops: list[Op],
        reader: ChunkReader,
        sink: SinkAdapter,
        dead_letter: SinkAdapter | None,
    ) -> Checkpointer:
        _check_resumable(sink)
        _check_resumable(dead_letter)
        self = cls(
            store,
            key=run_key(pipeline, reader),
            fingerprint=fingerprint(ops),
            sink=sink,
            dead_letter=dead_letter,
        )
        if getattr(store, "fresh", False):
            store.clear(self.key)
        state = store.load(self.key)
        if state is not None and state.get("phase") != "finished":
            saved = state.get("fingerprint")
            if saved != self.fingerprint:
                raise ConfigurationError(
                    f"cannot resume run {self.key!r} from checkpoint {_name(store)!r}: the "
                    f"pipeline changed since it was saved (fingerprint {saved} then, "
                    f"{self.fingerprint} now: a stage, its options or its code differ), so "
                    "the output would mix two pipelines. To start over, delete the checkpoint "
                    "file or pass datapunk.SQLiteCheckpoint(path, fresh=True) "
                    "(CLI: run without --resume)",
                    details={
                        "key": self.key,
                        "saved_fingerprint": saved,
                        "fingerprint": self.fingerprint,
                    },
                )
            self.state = state
        return self

    # --------------------------------------------------------------- begin
    def begin(self, job: Job) -> None:
        """Restore counters and reopen outputs of an interrupted run, or start afresh."""
        state = self.state
        if state is not None:
            try:
                self._restore(job, state)
            except SinkError:
                if state.get("phase") != "closing":
                    raise
                # Killed while renaming the finished outputs into place: the
                # partial files are gone, so redo the run from the start.
                job.log.warning("checkpoint.restart", key=self.key, reason="interrupted close")
                self.state = None
                self.skip = 0
        if self.state is None:
            self.store.clear(self.key)
            self.run_ids = [job.run_id]
            self._save(job, phase="running")
        else:
            self.run_ids = [*state.get("run_ids", []), job.run_id] if state else [job.run_id]
            job.log.info("checkpoint.resumed", key=self.key, records=self.skip)

    def _restore(self, job: Job, state: dict[str, Any]) -> None:
        tokens = state.get("tokens", {})
        for role, adapter in (("sink", self.sink), ("dead_letter", self.dead_letter)):
            token = tokens.get(role)
            if adapter is not None and token is not None and not adapter.discard:
                resume = getattr(adapter.obj, "resume", None)
                if callable(resume):
                    try:
                        resume(token)
                    except SinkError:
                        raise
                    except Exception as exc:
                        raise SinkError(
                            f"cannot resume the {adapter.role} {adapter.name!r}: "
                            f"{type(exc).__name__}: {safe_str(exc)}",
                            path=adapter.name,
                        ) from exc
        self.skip = int(state.get("records_in", 0))
        self.skip_position = state.get("position")
        self.position = self.skip_position
        stats = state.get("stats") or {}
        counts = stats.get("counts")
        if isinstance(counts, list) and len(counts) == len(job.stats.counts):
            for mine, saved in zip(job.stats.counts, counts, strict=True):
                for j, value in enumerate(saved[: len(mine)]):
                    mine[j] = int(value)
        job.stats.records_in = int(stats.get("records_in", self.skip))
        job.stats.records_out = int(stats.get("records_out", 0))
        job.stats.source_failed = int(stats.get("source_failed", 0))
        if self.keeps_dead_letters:
            job.kept_dead_letters.extend(self.store.dead_letters(self.key))

    # ---------------------------------------------------------------- read
    def chunks(self, chunks: Iterator[RawChunk]) -> Iterator[RawChunk]:
        """Yield the source's chunks after the acknowledged records."""
        left = self.skip
        last: Any = None
        for positions, records, malformed in chunks:
            if left:
                n = len(records)
                if n <= left:
                    left -= n
                    last = positions[n - 1] if n else last
                    if left == 0:
                        self._check_position(last)
                    continue
                last = positions[left - 1]
                self._check_position(last)
                positions = positions[left:]  # noqa: PLW2901 - drop acknowledged records
                records = records[left:]  # noqa: PLW2901
                malformed = [j - left for j in malformed if j >= left]  # noqa: PLW2901
                left = 0
            yield positions, records, malformed
        if left:
            raise ConfigurationError(
                f"cannot resume run {self.key!r}: the source has fewer records than the "
                f"{self.skip} the checkpoint acknowledged; it changed since the interrupted "
                "run. Start a fresh run (delete the checkpoint)",
                details={"key": self.key, "acknowledged": self.skip},
            )

    def _check_position(self, position: Any) -> None:
        if self.skip_position is not None and jsonable(position) != self.skip_position:
            raise ConfigurationError(
                f"cannot resume run {self.key!r}: record {self.skip} of the source is at "
                f"position {position!r}, but the checkpoint acknowledged position "
                f"{self.skip_position!r}; the source changed since the interrupted run. "
                "Start a fresh run (delete the checkpoint)",
                details={"key": self.key},
            )

    # ------------------------------------------------------------- deliver
    def delivered(self, job: Job, result: ChunkResult) -> None:
        """Note one chunk written to the sinks; checkpoint when one is due."""
        if self.keeps_dead_letters and result.failures:
            self.pending.extend(dl for action, dl in result.failures if action == "dead_letter")
        if result.records_in:
            self.position = jsonable(result.last_position)
        self.unacked += result.records_in
        if (
            self.every_chunk
            or (self.every is not None and self.unacked >= self.every)
            or (self.seconds is not None and time.monotonic() - self.last_ack >= self.seconds)
        ):
            self._save(job, phase="running")

    def _save(self, job: Job, *, phase: str) -> None:
        tokens: dict[str, Any] = {}
        for role, adapter in (("sink", self.sink), ("dead_letter", self.dead_letter)):
            if adapter is None or adapter.discard:
                continue
            flush = getattr(adapter.obj, "flush", None)
            if callable(flush) and callable(getattr(adapter.obj, "resume", None)):
                try:
                    tokens[role] = flush()
                except SinkError:
                    raise
                except Exception as exc:
                    raise SinkError(
                        f"the {adapter.role} {adapter.name!r} failed to flush: "
                        f"{type(exc).__name__}: {safe_str(exc)}",
                        path=adapter.name,
                    ) from exc
        stats = job.stats
        state = {
            "fingerprint": self.fingerprint,
            "phase": phase,
            "records_in": stats.records_in,
            "position": self.position,
            "tokens": tokens,
            "run_ids": self.run_ids,
            "stats": {
                "records_in": stats.records_in,
                "records_out": stats.records_out,
                "source_failed": stats.source_failed,
                "counts": stats.counts,
            },
        }
        if self.keeps_dead_letters:
            self.store.save(self.key, state, self.pending)
        else:
            self.store.save(self.key, state)
        self.pending = []
        self.unacked = 0
        self.last_ack = time.monotonic()

    # -------------------------------------------------------------- finish
    def closing(self, job: Job) -> None:
        """Acknowledge everything before the outputs are committed."""
        self._save(job, phase="closing")

    def finished(self, job: Job) -> None:
        """Mark the run finished (its dead letters stay in the store)."""
        state = self.store.load(self.key) or {}
        state["phase"] = "finished"
        state["tokens"] = {}
        state["fingerprint"] = self.fingerprint
        self.store.save(self.key, state)
        self._close_store()
        job.log.info("checkpoint.finished", key=self.key)

    def suspend(self, job: Job) -> None:
        """Release resumable outputs (kept for a resume), abort the others."""
        for adapter in (self.sink, self.dead_letter):
            if adapter is None:
                continue
            suspend = getattr(adapter.obj, "suspend", None)
            if _resumable(adapter) and callable(suspend):
                try:
                    suspend()
                except Exception:  # noqa: S112 - the run's own failure is what matters
                    continue
            else:
                adapter.abort()
        self._close_store()

    def _close_store(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()


def _name(store: Any) -> str:
    return str(getattr(store, "name", None) or type(store).__name__)
