"""Threads: for I/O-bound sync stages (HTTP calls, database lookups, files)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, final

from datapunk._core.concurrent import ThreadLoops, process_chunk_parallel
from datapunk.runners._blocking import BlockingRunner
from datapunk.runners._common import check_job, positive, run_futures

if TYPE_CHECKING:
    from datapunk._core.adapters import RawChunk
    from datapunk._core.engine import ChunkResult
    from datapunk._core.report import RunReport
    from datapunk._core.run import Job

__all__ = ["Threads"]


@final
class Threads(BlockingRunner):
    """
    Run each stage's calls on a pool of threads.

    Chunks are read as for :class:`Serial` and each chunk goes through the
    stages one after another; within a stage, the calls for the chunk's
    records (or batches) run concurrently on *workers* threads, and their
    results are put back in input order. Outputs, counters and dead letters
    are exactly those of a serial run.

    Threads help when stages wait (network, disk, ``time.sleep``): the GIL is
    released while waiting. Pure-Python CPU work does not get faster on
    threads; use :class:`Processes` for that. Stage functions must be safe to
    call from several threads at once.

    Memory bound: at most *max_in_flight* chunks are read and being processed
    at once, i.e. ``max_in_flight x chunk_size`` source records (plus their
    outputs), whatever the size of the source.

    Args:
        workers: Threads that call the stages.
        max_in_flight: Chunks processed at the same time (default 2, so the
            pool stays busy at chunk boundaries).
        ordered: Deliver outputs in input order (default). With ``False``,
            chunks are delivered as they finish; their content is unchanged.

    Raises:
        ConfigurationError: An option is not a positive integer.

    Example:
        >>> import datapunk
        >>> out = []
        >>> pipe = datapunk.Pipeline(str.upper)
        >>> _ = pipe.run(["a", "b"], out, runner=datapunk.runners.Threads(4))
        >>> out
        ['A', 'B']

    .. versionadded:: 0.1.0
    """

    __slots__ = ("max_in_flight", "ordered", "workers")
    name = "threads"

    def __init__(self, workers: int = 8, *, max_in_flight: int = 2, ordered: bool = True) -> None:
        self.workers: int = positive("workers", workers, "Threads") or 1
        self.max_in_flight: int = positive("max_in_flight", max_in_flight, "Threads") or 1
        self.ordered = bool(ordered)

    def run(self, job: Job) -> RunReport:
        """
        Run *job* to completion.

        Args:
            job: The run to execute.

        Returns:
            The run's report.

        Raises:
            ConfigurationError: The job needs something this runner cannot do.
        """
        check_job(job, "Threads", ordered=self.ordered)
        ops, run_id = job.ops, job.run_id
        loops = ThreadLoops()
        slices = 4 * self.workers  # a few runs of records per thread: fewer hand-offs
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="datapunk-worker") as pool,
            ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="datapunk-chunk") as chunks,
        ):

            def work(chunk: RawChunk) -> ChunkResult:
                positions, records, malformed = chunk
                return process_chunk_parallel(
                    ops, positions, records, run_id, malformed, pool.map, loops, slices
                )

            def submit(chunk: RawChunk) -> Future[ChunkResult]:
                return chunks.submit(work, chunk)

            results = run_futures(job.chunks(), submit, self.max_in_flight, ordered=self.ordered)
            try:
                return job.execute(results, self.name)
            finally:
                results.close()
                pool.shutdown(wait=True, cancel_futures=True)
                loops.close()

    def __repr__(self) -> str:
        return (
            f"Threads(workers={self.workers}, max_in_flight={self.max_in_flight}"
            f"{', ordered=False' if not self.ordered else ''})"
        )


Threads.__module__ = "datapunk.runners"
