"""In-memory sources and sinks, for tests, notebooks and embedding."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar, final

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = ["MemorySink", "MemorySource"]

T = TypeVar("T")


@final
class MemorySource(Generic[T]):
    """
    Records from any iterable, with 0-based positions.

    A plain list works as a source too; this class adds a name and, for a
    re-iterable input, repeatable reads.

    Args:
        records: The records.
        name: Name in reports and messages.

    Example:
        >>> import datapunk
        >>> list(datapunk.io.MemorySource(["a", "b"]).read())
        [(0, 'a'), (1, 'b')]

    .. versionadded:: 0.1.0
    """

    format = "memory"

    def __init__(self, records: Iterable[T], *, name: str = "<memory>") -> None:
        self.records = records
        self.name = name

    def read(self) -> Iterator[tuple[int, T]]:
        """
        Yield ``(index, record)`` pairs.

        Yields:
            Pairs of 0-based index and record.
        """
        yield from enumerate(self.records)

    def __repr__(self) -> str:
        return f"MemorySource(name={self.name!r})"


@final
class MemorySink(Generic[T]):
    """
    Collects records in a list; :attr:`records` holds them once committed.

    Until :meth:`close`, written records are pending; :meth:`abort` drops
    them, like a file sink's temporary file.

    Args:
        name: Name in reports and messages.

    Example:
        >>> import datapunk
        >>> sink = datapunk.io.MemorySink()
        >>> _ = datapunk.Pipeline(str.upper).run(["a"], sink)
        >>> sink.records
        ['A']

    .. versionadded:: 0.1.0
    """

    format = "memory"

    def __init__(self, *, name: str = "<memory>") -> None:
        self.name = name
        self.records: list[T] = []
        self._pending: list[T] = []
        self.closed = False

    def write(self, records: Sequence[T]) -> None:
        """
        Keep *records* (pending until :meth:`close`).

        Args:
            records: The batch.
        """
        self._pending.extend(records)

    def close(self) -> None:
        """Commit the pending records to :attr:`records`."""
        self.records.extend(self._pending)
        self._pending = []
        self.closed = True

    def abort(self) -> None:
        """Drop the pending records."""
        self._pending = []
        self.closed = True

    def __repr__(self) -> str:
        return f"MemorySink(name={self.name!r}, records={len(self.records)})"
