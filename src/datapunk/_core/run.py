"""
A run in progress: the :class:`Job` every runner drives.

A runner decides *where* chunks are processed (this thread, a pool, another
process, a cluster); the job does everything else the same way for all of
them: it reads the source in chunks, merges each :class:`ChunkResult` in input
order, writes outputs and dead letters, keeps the counters, enforces the error
budget, commits or discards the outputs, and builds the :class:`RunReport`.
"""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any, TypeVar

from datapunk._core.adapters import ChunkReader, RawChunk, SinkAdapter, as_sink, as_source
from datapunk._core.engine import ChunkResult, Op, aprocess_chunk, compile_stages, process_chunk
from datapunk._core.errors import ConfigurationError, ErrorBudgetExceeded
from datapunk._core.report import RunReport, RunStats
from datapunk._core.stage import Stage, as_stage
from datapunk._core.types import ON_ERROR, DeadLetter, OnError, safe_str
from datapunk.observe import get_logger

__all__ = ["DEFAULT_CHUNK_SIZE", "Job", "Stream", "resolve_runner"]

T = TypeVar("T")

DEFAULT_CHUNK_SIZE = 1000
MIN_RECORDS_FOR_RATE = 100


def _check_budget(max_errors: float | None) -> float | None:
    if max_errors is None:
        return None
    if isinstance(max_errors, bool) or not isinstance(max_errors, int | float):
        raise ConfigurationError(
            f"max_errors must be a count (int >= 0) or a rate (0 < float < 1), got {max_errors!r}"
        )
    if isinstance(max_errors, int):
        if max_errors < 0:
            raise ConfigurationError(f"max_errors must be >= 0, got {max_errors}")
    elif not 0 < max_errors < 1:
        raise ConfigurationError(
            f"max_errors as a rate must be between 0 and 1 (exclusive), got {max_errors}; "
            "pass an int for a count"
        )
    return max_errors


class Job:
    """
    One run of a pipeline: what to read, what to run, where to write.

    Runners receive a job and call :meth:`execute` (or :meth:`aexecute`) with
    the chunk results they computed, in input order. Use :meth:`chunks` to read
    the source, :attr:`ops` and :func:`datapunk._core.engine.process_chunk` (or
    :meth:`process`) to compute results.
    """

    def __init__(
        self,
        pipeline: Stage[Any, Any],
        reader: ChunkReader,
        sink: SinkAdapter,
        dead_letter: SinkAdapter | None,
        *,
        ops: list[Op],
        on_error: OnError,
        max_errors: float | None,
        chunk_size: int,
        checkpoint: Any,
        progress: bool,
        hooks: Sequence[Any],
        error_sample_size: int,
    ) -> None:
        self.pipeline = pipeline
        self.reader = reader
        self.sink = sink
        self.dead_letter = dead_letter
        self.ops = ops
        self.on_error = on_error
        self.max_errors = max_errors
        self.chunk_size = chunk_size
        self.checkpoint = checkpoint
        self.progress = progress
        self.hooks = tuple(hooks)
        self.run_id = uuid.uuid4().hex[:12]
        self.stats = RunStats(ops, error_sample_size)
        self.kept_dead_letters: list[DeadLetter] = []
        #: Receipts of the sink parts written elsewhere, in output order;
        #: ``None`` unless a runner writes the outputs in parts.
        self.receipts: list[Any] | None = None
        self.started = _dt.datetime.now(_dt.UTC)
        self._t0 = time.perf_counter()
        self.runner_name = "serial"
        self.log = get_logger(run_id=self.run_id, pipeline=pipeline.name)

    @classmethod
    def create(
        cls,
        pipeline: Stage[Any, Any],
        source: Any,
        sink: Any = None,
        *,
        dead_letter: Any = None,
        on_error: OnError = "dead_letter",
        max_errors: float | None = None,
        checkpoint: Any = None,
        progress: bool = False,
        chunk_size: int | None = None,
        hooks: Iterable[Any] = (),
        error_sample_size: int = 100,
    ) -> Job:
        """
        Check every argument and build the job; nothing is read or written yet.

        Raises:
            ConfigurationError: If an argument is invalid.
        """
        if on_error not in ON_ERROR:
            raise ConfigurationError(
                f"on_error={on_error!r} is not one of {', '.join(map(repr, ON_ERROR))}"
            )
        budget = _check_budget(max_errors)
        ops = compile_stages(as_stage(pipeline), on_error)
        largest_batch = max((op.size for op in ops), default=0)
        if chunk_size is None:
            size = max(DEFAULT_CHUNK_SIZE, largest_batch)
        elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        else:
            size = chunk_size
        if progress:
            hooks = (*hooks, _progress_hook())
        if (
            not isinstance(error_sample_size, int)
            or isinstance(error_sample_size, bool)
            or error_sample_size < 0
        ):
            raise ConfigurationError(
                f"error_sample_size must be an integer >= 0, got {error_sample_size!r}"
            )
        reader = as_source(source, size)
        out = as_sink(sink, "sink")
        dl = None if dead_letter is None else as_sink(dead_letter, "dead-letter sink")
        if checkpoint is not None:
            from datapunk.state._checkpointer import Checkpointer

            checkpoint = Checkpointer.create(checkpoint, as_stage(pipeline), ops, reader, out, dl)
        return cls(
            pipeline,
            reader,
            out,
            dl,
            ops=ops,
            on_error=on_error,
            max_errors=budget,
            chunk_size=size,
            checkpoint=checkpoint,
            progress=progress,
            hooks=tuple(hooks),
            error_sample_size=error_sample_size,
        )

    # --------------------------------------------------------------- reading
    def chunks(self) -> Iterator[RawChunk]:
        """Yield the source's chunks: ``(positions, records, malformed_indexes)``."""
        if self.checkpoint is not None:  # resuming: skip what was acknowledged
            return self.checkpoint.chunks(self.reader.chunks())  # type: ignore[no-any-return]
        return self.reader.chunks()

    def process(self, chunk: RawChunk) -> ChunkResult:
        """Process one chunk in this thread (the fused serial loop)."""
        positions, records, malformed = chunk
        return process_chunk(self.ops, positions, records, self.run_id, malformed)

    async def aprocess(self, chunk: RawChunk) -> ChunkResult:
        """Process one chunk on the running event loop."""
        positions, records, malformed = chunk
        return await aprocess_chunk(self.ops, positions, records, self.run_id, malformed)

    # ------------------------------------------------------------ delivering
    def deliver(self, result: ChunkResult) -> None:
        """
        Account for one processed chunk, in input order.

        Counters, outputs, dead letters and hooks; then the error budget.

        Raises:
            SinkError: A sink failed.
            ErrorBudgetExceeded: Too many records failed.
        """
        self.stats.merge(result)
        self.sink.write(result.outputs)
        if result.receipt is not None and self.receipts is not None:
            self.receipts.append(result.receipt)
        if result.failures:
            dead = [dl for action, dl in result.failures if action == "dead_letter"]
            if dead:
                if self.dead_letter is None:
                    self.kept_dead_letters.extend(dead)
                else:
                    self.dead_letter.write(dead)
            for action, dl in result.failures:
                self._emit("on_error", dl, action)
            self.log.debug("chunk.failures", count=len(result.failures))
        if self.checkpoint is not None:  # acknowledge after the writes
            self.checkpoint.delivered(self, result)
        self._emit("on_chunk", result)
        self._enforce_budget()

    def _enforce_budget(self) -> None:
        budget = self.max_errors
        if budget is None:
            return
        errors = self.stats.failed + self.stats.skipped
        seen = self.stats.records_in
        if isinstance(budget, int):
            if errors > budget:
                self._stop(f"{errors} records failed, more than max_errors={budget}")
        elif seen >= MIN_RECORDS_FOR_RATE and errors / seen > budget:
            self._stop(
                f"{errors} of {seen} records failed ({errors / seen:.1%}), "
                f"more than max_errors={budget:.1%}"
            )

    def _stop(self, why: str) -> None:
        report = self.report(ok=False, stop_reason=why)
        raise ErrorBudgetExceeded(
            f"run {self.run_id} stopped: {why}. File outputs were not committed (list and "
            "callable sinks keep what earlier chunks delivered); the partial "
            "report is on the exception's .report. Fix the failing records (see "
            "report.errors) or raise max_errors",
            report=report,
        )

    def _emit(self, event: str, *args: Any) -> None:
        for hook in self.hooks:
            method = getattr(hook, event, None)
            if method is not None:
                method(self, *args)

    # -------------------------------------------------------------- finishing
    def report(self, *, ok: bool = True, stop_reason: str | None = None) -> RunReport:
        """Build the :class:`RunReport` of what was done so far."""
        finished = _dt.datetime.now(_dt.UTC)
        return self.stats.freeze(
            run_id=self.run_id,
            pipeline=self.pipeline.name,
            started=self.started,
            finished=finished,
            duration_s=time.perf_counter() - self._t0,
            dead_letters=self.kept_dead_letters,
            ok=ok,
            stop_reason=stop_reason,
            runner=self.runner_name,
        )

    def _begin(self, runner_name: str) -> None:
        self.runner_name = runner_name
        self.log.info("run.started", runner=runner_name, source=self.reader.name)
        if self.checkpoint is not None:
            self.checkpoint.begin(self)
        self._emit("on_run_start")

    def _commit(self) -> RunReport:
        if self.checkpoint is not None:
            self.checkpoint.closing(self)
        if self.receipts is not None:
            self.sink.commit_parts(self.receipts)
        else:
            self.sink.close()
        if self.dead_letter is not None:
            self.dead_letter.close()
        if self.checkpoint is not None:
            self.checkpoint.finished(self)
        report = self.report()
        self.log.info(
            "run.finished",
            records_in=report.records_in,
            records_out=report.records_out,
            failed=report.failed,
            duration_s=round(report.duration_s, 6),
        )
        self._emit("on_run_end", report)
        return report

    def _abort(self, exc: BaseException) -> None:
        if self.checkpoint is not None:  # keep resumable outputs for a resume
            self.checkpoint.suspend(self)
        else:
            self.sink.abort()
            if self.dead_letter is not None:
                self.dead_letter.abort()
        self.log.warning("run.stopped", error_type=type(exc).__name__, error=safe_str(exc, 300))
        self._emit("on_run_end", self.report(ok=False, stop_reason=safe_str(exc, 300)))

    def execute(self, results: Iterable[ChunkResult], runner_name: str = "serial") -> RunReport:
        """
        Deliver *results* (in input order), then commit and report.

        On any failure the outputs are discarded (sinks' ``abort()``) and the
        error propagates.

        Args:
            results: The chunk results, computed by the runner, in input order.
            runner_name: Shown in the report.

        Returns:
            The :class:`RunReport`.
        """
        self._begin(runner_name)
        try:
            for result in results:
                self.deliver(result)
            return self._commit()
        except BaseException as exc:
            self._abort(exc)
            raise

    async def aexecute(
        self, results: AsyncIterable[ChunkResult], runner_name: str = "serial"
    ) -> RunReport:
        """Like :meth:`execute`, for results produced asynchronously."""
        self._begin(runner_name)
        try:
            async for result in results:
                self.deliver(result)
            return self._commit()
        except BaseException as exc:
            self._abort(exc)
            raise

    # --------------------------------------------------------------- streams
    def iter_outputs(self) -> Stream[Any]:
        """Return a lazy iterator over outputs (``pipeline.stream``)."""
        return Stream(self)

    async def aiter_outputs(self) -> AsyncGenerator[Any, None]:
        """Yield outputs asynchronously (``pipeline.astream``)."""
        self._begin("serial")
        try:
            for chunk in self.chunks():
                result = await self.aprocess(chunk)
                self.deliver(result)
                for item in result.outputs:
                    yield item
            self._commit()
        except GeneratorExit:
            # Closed early, as Stream: what was read is accounted for; commit it.
            self._commit()
            raise
        except BaseException as exc:
            self._abort(exc)
            raise


class Stream(Iterator[T]):
    """
    The lazy iterator ``pipeline.stream(...)`` returns.

    After it is exhausted, :attr:`report` holds the run's report (and the
    failed records, in ``report.dead_letters``, when no dead-letter sink was
    given).
    """

    def __init__(self, job: Job) -> None:
        self._job = job
        self._gen = self._generate()
        self.report: RunReport | None = None

    def _generate(self) -> Generator[T, None, None]:
        job = self._job
        job._begin("serial")
        try:
            for chunk in job.chunks():
                result = job.process(chunk)
                job.deliver(result)
                yield from result.outputs
            self.report = job._commit()
        except GeneratorExit:
            # Closed early: what was read is fully accounted for; commit it.
            self.report = job._commit()
            raise
        except BaseException as exc:
            job._abort(exc)
            raise

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        return next(self._gen)

    def close(self) -> None:
        """Stop early, releasing the source."""
        self._gen.close()


def _progress_hook() -> Any:
    from datapunk.observe.progress import ProgressHook

    return ProgressHook()


# ------------------------------------------------------------------- runners
def resolve_runner(runner: Any) -> Any:
    """
    Return the runner object for ``run(..., runner=...)``.

    Args:
        runner: ``None`` or a name (``"serial"``, ``"threads"``...), or an
            object with ``run(job)``.

    Returns:
        A runner.

    Raises:
        ConfigurationError: If the name is unknown or the object has no ``run``.
    """
    from datapunk import runners

    if runner is None:
        return runners.Serial()
    if isinstance(runner, str):
        return runners.by_name(runner)
    if callable(getattr(runner, "run", None)):
        return runner
    raise ConfigurationError(
        f"runner must be a name ({', '.join(runners.names())}) or an object with run(job), "
        f"got {type(runner).__name__}"
    )
