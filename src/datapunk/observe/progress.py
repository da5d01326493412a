"""A progress display for ``run(..., progress=True)``."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datapunk._core.engine import ChunkResult
    from datapunk._core.report import RunReport
    from datapunk._core.run import Job

__all__ = ["ProgressHook"]


class ProgressHook:
    """
    Show records read, written and failed while a run goes on.

    Uses ``tqdm`` when it is installed (``pip install datapunk[progress]``;
    ``tqdm.auto`` draws a widget in Jupyter and a bar in a terminal), otherwise
    a single line on standard error, redrawn at most ten times a second.
    """

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._last = 0.0

    def on_run_start(self, job: Job) -> None:
        """Open the bar."""
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._bar = None
        else:
            self._bar = tqdm(desc=job.pipeline.name, unit="rec", file=self._stream)

    def on_chunk(self, job: Job, result: ChunkResult) -> None:
        """Advance by one chunk."""
        if self._bar is not None:
            self._bar.update(result.records_in)
            self._bar.set_postfix(failed=job.stats.failed, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= 0.1:  # noqa: PLR2004
            self._last = now
            self._draw(job)

    def _draw(self, job: Job, end: str = "") -> None:
        s = job.stats
        self._stream.write(
            f"\r{job.pipeline.name}: {s.records_in:,} in, {s.records_out:,} out, "
            f"{s.failed:,} failed{end}"
        )
        self._stream.flush()

    def on_run_end(self, job: Job, report: RunReport) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self._draw(job, "\n")
