"""Async: many async stage calls in flight on one event loop."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, final

from datapunk._core.concurrent import Limit, aprocess_chunk_concurrent
from datapunk._core.errors import ConfigurationError
from datapunk.runners._common import check_job, positive

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from datapunk._core.adapters import RawChunk
    from datapunk._core.engine import ChunkResult
    from datapunk._core.report import RunReport
    from datapunk._core.run import Job

__all__ = ["Async"]


@final
class Async:
    """
    Await async stages with up to *concurrency* calls in flight.

    Within a chunk, each async stage is called for every record at once,
    bounded by one semaphore of *concurrency* slots shared by the whole run;
    the results are put back in input order, so outputs, counters and dead
    letters are exactly those of a serial run. Sync stages run on a thread
    pool so they never block the event loop. The next chunk is read only when
    fewer than ``max_chunks`` chunks are in flight: a slow stage slows the
    reading of the source (backpressure), it never fills memory.

    Use it from async code with ``await pipeline.arun(..., runner=Async())``
    (stages run on your loop, so they may share its clients and sessions), or
    from sync code with ``pipeline.run(..., runner=Async())``, which starts its
    own loop. Calling ``run()`` while an event loop is running in the same
    thread (Jupyter, an async web handler) raises a
    :class:`datapunk.ConfigurationError` telling you to ``await
    pipeline.arun(...)`` instead.

    Memory bound: at most ``max_chunks x chunk_size`` source records (plus
    their outputs) are in flight, where ``max_chunks`` defaults to
    ``max(2, ceil(concurrency / chunk_size) + 1)``.

    Args:
        concurrency: Async calls in flight at most (records, or batches for
            batch stages).
        ordered: Deliver outputs in input order (default). With ``False``,
            chunks are delivered as they finish.
        max_chunks: Chunks in flight at most (default: see above).
        threads: Threads for sync stages (default: Python's default pool size).

    Raises:
        ConfigurationError: An option is not a positive integer.

    Example:
        >>> import asyncio, datapunk
        >>> async def double(x):
        ...     await asyncio.sleep(0)
        ...     return 2 * x
        >>> out = []
        >>> _ = datapunk.Pipeline(double).run([1, 2], out, runner=datapunk.runners.Async(10))
        >>> out
        [2, 4]

    .. versionadded:: 0.1.0
    """

    __slots__ = ("concurrency", "max_chunks", "ordered", "threads")
    name = "async"

    def __init__(
        self,
        concurrency: int = 100,
        *,
        ordered: bool = True,
        max_chunks: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.concurrency: int = positive("concurrency", concurrency, "Async") or 1
        self.ordered = bool(ordered)
        self.max_chunks = positive("max_chunks", max_chunks, "Async", optional=True)
        self.threads = positive("threads", threads, "Async", optional=True)

    def run(self, job: Job) -> RunReport:
        """
        Run *job* on a new event loop, from synchronous code.

        Args:
            job: The run to execute.

        Returns:
            The run's report.

        Raises:
            ConfigurationError: An event loop is already running in this thread.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(job))
        raise ConfigurationError(
            "pipeline.run(..., runner=Async()) was called while an event loop is running in "
            "this thread (Jupyter, an async service), and it would block that loop. Use "
            "`report = await pipeline.arun(source, sink, runner=Async(...))` instead (in "
            "Jupyter, `await` works directly in a cell), or call run() from a thread without "
            "a loop (`await asyncio.to_thread(pipeline.run, ...)`)",
            details={"runner": "async"},
        )

    async def arun(self, job: Job) -> RunReport:
        """
        Run *job* on the running event loop.

        Args:
            job: The run to execute.

        Returns:
            The run's report.
        """
        check_job(job, "Async", ordered=self.ordered)
        loop = asyncio.get_running_loop()
        limit = Limit(self.concurrency)
        window = self.max_chunks or max(2, math.ceil(self.concurrency / job.chunk_size) + 1)
        ops, run_id, ordered = job.ops, job.run_id, self.ordered
        offload = ThreadPoolExecutor(self.threads, thread_name_prefix="datapunk-async")

        def work(chunk: RawChunk) -> asyncio.Task[ChunkResult]:
            positions, records, malformed = chunk
            return loop.create_task(
                aprocess_chunk_concurrent(
                    ops, positions, records, run_id, malformed, limit=limit, offload=offload
                )
            )

        async def results() -> AsyncGenerator[ChunkResult, None]:
            chunks = iter(job.chunks())
            pending: deque[asyncio.Task[ChunkResult]] = deque()
            try:
                while True:
                    chunk: Any = await loop.run_in_executor(offload, next, chunks, None)
                    if chunk is None:
                        break
                    pending.append(work(chunk))
                    while len(pending) >= window:
                        yield await _take(pending, ordered=ordered)
                while pending:
                    yield await _take(pending, ordered=ordered)
            finally:
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)

        gen = results()
        try:
            return await job.aexecute(gen, self.name)
        finally:
            await gen.aclose()
            offload.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return (
            f"Async(concurrency={self.concurrency}{', ordered=False' if not self.ordered else ''})"
        )


async def _take(pending: deque[asyncio.Task[ChunkResult]], *, ordered: bool) -> ChunkResult:
    if ordered:
        return await pending.popleft()
    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    task = next(t for t in pending if t in done)
    pending.remove(task)
    return task.result()


Async.__module__ = "datapunk.runners"
