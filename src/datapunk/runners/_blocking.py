"""What runners that block their calling thread share."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datapunk._core.report import RunReport
    from datapunk._core.run import Job

__all__ = ["BlockingRunner"]


class BlockingRunner:
    """Base of runners whose ``run()`` blocks: ``arun()`` moves it to a helper thread."""

    __slots__ = ()

    def run(self, job: Job) -> RunReport:  # pragma: no cover - every subclass defines it
        """Run *job* to completion."""
        raise NotImplementedError

    async def arun(self, job: Job) -> RunReport:
        """
        Run *job* from async code without blocking the event loop.

        The run happens in a helper thread (``asyncio.to_thread``); hooks and
        sinks are called from that thread.

        Args:
            job: The run to execute.

        Returns:
            The run's report.
        """
        import asyncio

        return await asyncio.to_thread(self.run, job)
