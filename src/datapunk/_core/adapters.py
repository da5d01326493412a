"""Turn what users pass as ``source``, ``sink`` and ``dead_letter`` into one shape."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from datapunk._core.errors import ConfigurationError, SinkError, SourceError
from datapunk._core.types import Malformed, Position, safe_str

__all__ = ["ChunkReader", "SinkAdapter", "as_sink", "as_source"]

#: One chunk as read: positions, records and the indexes of malformed records.
RawChunk = tuple[Sequence[Position], list[Any], list[int]]


class ChunkReader:
    """Reads a source in chunks of records with their positions."""

    def __init__(self, obj: Any, name: str, size: int) -> None:
        self.obj = obj
        self.name = name
        self.size = size

    def chunks(self) -> Iterator[RawChunk]:
        """Yield ``(positions, records, malformed_indexes)`` chunks of up to ``size`` records."""
        obj, size = self.obj, self.size
        if isinstance(obj, list | tuple):
            for start in range(0, len(obj), size):
                part = list(obj[start : start + size])
                yield range(start, start + len(part)), part, []
            return
        fast: Callable[[int], Iterator[RawChunk]] | None = getattr(obj, "_read_chunks", None)
        if callable(fast) and type(obj).__module__.startswith("datapunk."):
            yield from self._from_chunks(fast(size))  # datapunk's own: whole chunks
            return
        read: Callable[[], Iterable[Any]] | None = getattr(obj, "read", None)
        if callable(read) and not isinstance(obj, str | bytes):
            yield from self._from_source(read)
            return
        start = 0
        error: Exception | None = None
        try:
            it = iter(obj)
        except Exception as exc:
            it, error = iter(()), exc
        while error is None:
            records: list[Any] = []
            try:
                records.extend(islice(it, size))  # keeps what was read before a failure
            except Exception as exc:
                error = exc
            if records:
                yield range(start, start + len(records)), records, []
                start += len(records)
            elif error is None:
                return
        raise SourceError(
            f"source {self.name!r} raised {type(error).__name__}: {safe_str(error)} "
            f"after {start} records",
            path=self.name,
            position=start,
        ) from error

    def _from_chunks(self, chunks: Iterator[RawChunk]) -> Iterator[RawChunk]:
        last: Position | None = None
        try:
            for chunk in chunks:
                positions = chunk[0]
                if len(positions):
                    last = positions[len(positions) - 1]
                yield chunk
        except (SourceError, ConfigurationError):
            raise
        except Exception as exc:
            raise SourceError(
                f"source {self.name!r} raised {type(exc).__name__}: {safe_str(exc)} "
                f"after position {last}",
                path=self.name,
                position=last,
            ) from exc

    def _from_source(self, read: Callable[[], Iterable[Any]]) -> Iterator[RawChunk]:
        try:
            items = iter(read())
        except (SourceError, ConfigurationError):
            raise
        except Exception as exc:
            raise SourceError(
                f"cannot open source {self.name!r}: {type(exc).__name__}: {safe_str(exc)}",
                path=self.name,
            ) from exc
        positions: list[Position] = []
        records: list[Any] = []
        malformed: list[int] = []
        size = self.size
        last: Position | None = None
        while True:
            try:
                item = next(items, _END)
            except Exception as exc:
                if records:  # deliver what was read before the failure
                    yield positions, records, malformed
                if isinstance(exc, SourceError | ConfigurationError):
                    raise
                raise SourceError(
                    f"source {self.name!r} raised {type(exc).__name__}: {safe_str(exc)} "
                    f"after position {last}",
                    path=self.name,
                    position=last,
                ) from exc
            if item is _END:
                break
            position, record = item
            last = position
            if record.__class__ is Malformed:
                malformed.append(len(records))
            positions.append(position)
            records.append(record)
            if len(records) >= size:
                yield positions, records, malformed
                positions, records, malformed = [], [], []
        if records:
            yield positions, records, malformed


_END: Any = object()


def _source_name(obj: Any) -> str:
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(obj, list | tuple):
        return f"<{type(obj).__name__} of {len(obj)}>"
    return f"<{type(obj).__name__}>"


def as_source(obj: Any, chunk_size: int) -> ChunkReader:
    """
    Coerce *obj* to a chunk reader.

    Args:
        obj: An iterable, a :class:`datapunk.plugins.Source` or a path.
        chunk_size: Records per chunk.

    Returns:
        A :class:`ChunkReader`.

    Raises:
        ConfigurationError: If *obj* cannot be a source.
        SourceError: If a path cannot be opened.
    """
    if isinstance(obj, str | os.PathLike):
        from datapunk import io as dio

        obj = dio.read(obj)
    elif (
        isinstance(obj, bytes | bytearray)
        or obj is None
        or (not hasattr(obj, "__iter__") and not callable(getattr(obj, "read", None)))
    ):
        raise ConfigurationError(
            f"cannot read records from {type(obj).__name__} {safe_str(obj, 60)!r}: pass an "
            "iterable, a file path, or an object with a read() method yielding (position, record)",
            details={"got": type(obj).__name__},
        )
    return ChunkReader(obj, _source_name(obj), chunk_size)


class SinkAdapter:
    """Writes batches to a list, a callable or a :class:`datapunk.plugins.Sink`."""

    def __init__(self, obj: Any, role: str) -> None:
        self.obj = obj
        self.role = role
        self.name = _sink_name(obj)
        self.discard = obj is None
        self._extend: Callable[[Sequence[Any]], Any] | None = None
        self._call: Callable[[Any], Any] | None = None
        self._write: Callable[[Sequence[Any]], Any] | None = None
        if obj is None:
            pass
        elif isinstance(obj, list):
            self._extend = obj.extend
        elif callable(getattr(obj, "write", None)):
            self._write = obj.write
        elif callable(obj):
            self._call = obj
        else:
            raise ConfigurationError(
                f"cannot use {type(obj).__name__} as the {role}: pass a list, a callable, "
                "a file path, or an object with write(records) and close()",
                details={"role": role, "got": type(obj).__name__},
            )

    def write(self, records: Sequence[Any]) -> None:
        """Write one batch; any failure becomes a :class:`SinkError`."""
        if not records or self.discard:
            return
        try:
            if self._extend is not None:
                self._extend(records)
            elif self._write is not None:
                self._write(records)
            elif self._call is not None:
                call = self._call
                for r in records:
                    call(r)
        except SinkError:
            raise
        except Exception as exc:
            raise SinkError(
                f"the {self.role} {self.name!r} raised {type(exc).__name__}: {safe_str(exc)}; "
                "the run stopped so that no record is lost: fix the sink and run again",
                path=self.name,
                details={"error_type": type(exc).__name__, "errno": getattr(exc, "errno", None)},
            ) from exc

    def close(self) -> None:
        """Commit the output (for sinks that have ``close()``)."""
        close = getattr(self.obj, "close", None) if self._write is not None else None
        if close is None:
            return
        try:
            close()
        except SinkError:
            raise
        except Exception as exc:
            raise SinkError(
                f"the {self.role} {self.name!r} failed to close: "
                f"{type(exc).__name__}: {safe_str(exc)}",
                path=self.name,
            ) from exc

    @property
    def partitioned(self) -> bool:
        """Whether the sink can be written in parts (a ``PartitionedSink``)."""
        obj = self.obj
        return (
            self._write is not None
            and callable(getattr(obj, "part", None))
            and callable(getattr(obj, "commit_parts", None))
            and bool(getattr(obj, "partitioned", True))
        )

    def part(self, key: str) -> Any:
        """Return the sink's writer for the part named *key*."""
        try:
            return self.obj.part(key)
        except SinkError:
            raise
        except Exception as exc:
            raise SinkError(
                f"the {self.role} {self.name!r} cannot create part {key}: "
                f"{type(exc).__name__}: {safe_str(exc)}",
                path=self.name,
            ) from exc

    def commit_parts(self, receipts: Sequence[Any]) -> None:
        """Assemble the parts *receipts* name and commit the output."""
        try:
            self.obj.commit_parts(receipts)
        except SinkError:
            raise
        except Exception as exc:
            raise SinkError(
                f"the {self.role} {self.name!r} failed to assemble its parts: "
                f"{type(exc).__name__}: {safe_str(exc)}",
                path=self.name,
            ) from exc

    def abort(self) -> None:
        """Discard uncommitted output (``abort()`` if the sink has it, else ``close()``)."""
        if self._write is None:
            return
        abort = getattr(self.obj, "abort", None)
        try:
            if callable(abort):
                abort()
            else:
                close = getattr(self.obj, "close", None)
                if callable(close):
                    close()
        except Exception:  # noqa: S110 - the original failure is what the user must see
            pass


def _sink_name(obj: Any) -> str:
    name = getattr(obj, "name", None) or getattr(obj, "path", None)
    if name is not None:
        return str(name)
    if obj is None:
        return "<discard>"
    return f"<{getattr(obj, '__name__', type(obj).__name__)}>"


def as_sink(obj: Any, role: str = "sink") -> SinkAdapter:
    """
    Coerce *obj* to a sink adapter.

    Args:
        obj: ``None``, a list, a callable, a :class:`datapunk.plugins.Sink` or a path.
        role: ``"sink"`` or ``"dead-letter sink"``, for messages.

    Returns:
        A :class:`SinkAdapter`.

    Raises:
        ConfigurationError: If *obj* cannot be a sink.
    """
    if isinstance(obj, str | os.PathLike):
        from datapunk import io as dio

        obj = dio.write(obj)
    return SinkAdapter(obj, role)
