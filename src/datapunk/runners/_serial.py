"""The default runner: everything in the calling thread, one fused loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from datapunk._core.engine import ChunkResult
    from datapunk._core.report import RunReport
    from datapunk._core.run import Job

__all__ = ["Serial"]


@final
class Serial:
    """
    Run every stage in the calling thread, chunk after chunk.

    Consecutive stages are fused: each chunk of records goes through every
    stage in one tight loop, so the framework adds little to a hand-written
    loop. Async stages are awaited one record at a time.

    Example:
        >>> import datapunk
        >>> pipe = datapunk.Pipeline(lambda x: x + 1)
        >>> pipe.run([1, 2], [], runner=datapunk.runners.Serial()).records_out
        2
    """

    name = "serial"

    def run(self, job: Job) -> RunReport:
        """
        Run *job* to completion.

        Args:
            job: The run to execute.

        Returns:
            The run's report.
        """
        return job.execute((job.process(chunk) for chunk in job.chunks()), self.name)

    async def arun(self, job: Job) -> RunReport:
        """
        Run *job* on the running event loop, awaiting async stages there.

        Args:
            job: The run to execute.

        Returns:
            The run's report.
        """

        async def results() -> AsyncIterator[ChunkResult]:
            for chunk in job.chunks():
                yield await job.aprocess(chunk)

        return await job.aexecute(results(), self.name)

    def __repr__(self) -> str:
        return "Serial()"


Serial.__module__ = "datapunk.runners"
