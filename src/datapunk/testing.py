"""
Helpers for testing your own pipelines, as datapunk tests its own.

- :class:`MemorySource`: records with explicit positions, and malformed input.
- :class:`MemorySink`: collects records and tells whether the run committed.
- :func:`capture_logs`: the log events datapunk emitted, as dicts.

Example:
    >>> import datapunk
    >>> from datapunk.testing import MemorySink, MemorySource
    >>> sink = MemorySink()
    >>> src = MemorySource([1, 2, datapunk.Malformed("??", "not a number")], start=1)
    >>> report = datapunk.Pipeline(lambda x: x * 10).run(src, sink)
    >>> sink.records, sink.committed, report.failed
    ([10, 20], True, 1)
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator, MutableMapping, Sequence

    from datapunk._core.types import Position

__all__ = ["MemorySink", "MemorySource", "capture_logs"]

T = TypeVar("T")


class MemorySource(Generic[T]):
    """
    A :class:`datapunk.plugins.Source` over an in-memory list.

    Args:
        records: The records; :class:`datapunk.Malformed` items become failed
            records, as broken input from a file would.
        start: Position of the first record (1 mimics line numbers).
        name: The source's name.
        fail_after: Raise ``OSError`` after yielding this many records
            (to test a source that breaks mid-way).
    """

    def __init__(
        self,
        records: Iterable[T],
        *,
        start: int = 0,
        name: str = "memory",
        fail_after: int | None = None,
    ) -> None:
        self.records = list(records)
        self.start = start
        self.name = name
        self.fail_after = fail_after

    def read(self) -> Iterator[tuple[Position, T]]:
        """Yield ``(position, record)`` pairs."""
        for i, record in enumerate(self.records):
            if self.fail_after is not None and i >= self.fail_after:
                raise OSError(f"{self.name}: simulated read failure at record {i}")
            yield self.start + i, record


class MemorySink(Generic[T]):
    """
    A :class:`datapunk.plugins.Sink` that keeps what it receives.

    Attributes:
        records: Everything written, in order.
        batches: How many ``write`` calls were made.
        committed: True once ``close()`` was called (the run succeeded).
        aborted: True once ``abort()`` was called (the run failed).

    Args:
        fail_on_write: Raise this exception on the N-th write (see *fail_at*).
        fail_at: Which write (0-based) raises *fail_on_write*.
    """

    def __init__(self, *, fail_on_write: BaseException | None = None, fail_at: int = 0) -> None:
        self.records: list[T] = []
        self.batches = 0
        self.committed = False
        self.aborted = False
        self.name = "memory-sink"
        self._fail = fail_on_write
        self._fail_at = fail_at

    def write(self, records: Sequence[T]) -> None:
        """Keep *records* (or raise the configured failure)."""
        if self._fail is not None and self.batches == self._fail_at:
            self.batches += 1
            raise self._fail
        self.batches += 1
        self.records.extend(records)

    def close(self) -> None:
        """Mark the output committed."""
        self.committed = True

    def abort(self) -> None:
        """Mark the output discarded."""
        self.aborted = True


@contextlib.contextmanager
def capture_logs() -> Generator[list[MutableMapping[str, Any]], None, None]:
    """
    Capture the log events datapunk emits inside the ``with`` block.

    Works whether or not the application configured structlog, and leaves
    its configuration untouched. Only runs started inside the block are captured.

    Yields:
        A list that fills with one dict per event (``event``, ``log_level``
        and the bound context such as ``run_id``).

    Example:
        >>> import datapunk
        >>> from datapunk.testing import capture_logs
        >>> with capture_logs() as logs:
        ...     _ = datapunk.Pipeline(str.upper).run(["a"])
        >>> [e["event"] for e in logs]
        ['run.started', 'run.finished']
    """
    from structlog.testing import LogCapture

    from datapunk.observe._log import capturing

    cap = LogCapture()
    capturing(cap)
    try:
        yield cap.entries
    finally:
        capturing(None)
