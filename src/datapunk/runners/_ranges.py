"""
Byte ranges of JSON Lines and CSV files, read where they are processed.

The calling process scans a file once to find where every chunk of records
starts (JSON Lines: its lines, unparsed; CSV: the :mod:`csv` tokenizer, since
a quoted field may span lines), and hands out ranges of whole chunks; a
worker reads its range itself and gets exactly the chunks, positions and
malformed records a serial run reads. Used by the Dask runner (ranges of many
chunks) and the Processes runner (one chunk per range).
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import IO, TYPE_CHECKING, Any, cast

import attrs

from datapunk._core.types import Malformed

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from datapunk._core.adapters import RawChunk

__all__ = [
    "CsvRange",
    "JsonlRange",
    "absolute",
    "chunk_ranges",
    "chunked",
    "csv_ranges",
    "cuts",
    "file_ranges",
    "jsonl_ranges",
]


class _OneChunk:
    """Reading a range cut for exactly one chunk."""

    def read(self, chunk_size: int) -> Iterator[RawChunk]:  # pragma: no cover - overridden
        raise NotImplementedError

    def chunk(self) -> RawChunk:
        """Read the range as one chunk (it was cut to hold exactly one)."""
        chunks = list(self.read(1 << 62))
        return chunks[0] if chunks else ([], [], [])


@attrs.frozen
class JsonlRange(_OneChunk):
    """A byte range of a JSON Lines file, read by the worker."""

    source: Any
    start: int
    end: int
    first_line: int

    def read(self, chunk_size: int) -> Iterator[RawChunk]:
        from datapunk.io._files import Bounded
        from datapunk.io._jsonl import read_chunks

        with self.source.path.open("rb") as f:
            f.seek(self.start)
            bounded = cast("IO[bytes]", Bounded(f, self.end - self.start))
            yield from read_chunks(self.source, bounded, chunk_size, self.first_line)


def jsonl_ranges(source: Any, chunk_size: int, partitions: int) -> Iterator[JsonlRange] | None:
    """Cut a JSON Lines file into byte ranges of whole chunks as it is scanned (or ``None``)."""
    from datapunk.io._files import _is_gzip

    if _is_gzip(source.path):
        return None  # a gzip stream cannot be entered in the middle
    return (
        JsonlRange(source, start, stop, line)
        for start, stop, line in cuts(jsonl_boundaries(source, chunk_size), source.path, partitions)
    )


def jsonl_boundaries(source: Any, chunk_size: int) -> Iterator[tuple[int, int, int]]:
    """Yield where each chunk of a JSON Lines file starts, then its end (lines, not parsed)."""
    from datapunk.io._files import iter_lines

    records = 0
    n = 0
    yield 0, 1, 0
    with source.path.open("rb") as f:
        for n, raw, oversize in iter_lines(f, source.max_line_bytes):
            if oversize or not raw.isspace():
                records += 1
                if records % chunk_size == 0:
                    yield f.tell(), n + 1, records
        yield f.tell(), n + 1, records


@attrs.frozen
class CsvRange(_OneChunk):
    """A byte range of a CSV file holding whole records, read by the worker."""

    source: Any
    start: int
    end: int
    first_line: int
    header: tuple[str, ...]

    def read(self, chunk_size: int) -> Iterator[RawChunk]:
        from datapunk.io._csv import read_range

        rows = read_range(self.source, self.start, self.end, self.first_line, list(self.header))
        return chunked(rows, chunk_size)


def csv_ranges(source: Any, chunk_size: int, partitions: int) -> Iterator[CsvRange] | None:
    """Cut a CSV file into byte ranges of whole chunks, as it is scanned (``None``: cannot)."""
    from datapunk.io._csv import ChunkScan
    from datapunk.io._files import _is_gzip

    if _is_gzip(source.path):
        return None  # a gzip stream cannot be entered in the middle
    scan = ChunkScan(source, chunk_size)
    return (
        CsvRange(source, start, stop, line, tuple(scan.header))
        for start, stop, line in cuts(scan, source.path, partitions)
    )


def cuts(
    boundaries: Iterable[tuple[int, int, int]], path: Any, partitions: int
) -> Iterator[tuple[int, int, int]]:
    """
    Group chunk boundaries into at most *partitions* byte ranges, as they are found.

    *boundaries* are ``(byte offset, line number, records before)`` where each
    chunk starts, then the end of the file. A range ends at the first chunk
    boundary past its share of the file's bytes and is yielded at once, so
    partitions are submitted while the file is still being scanned. Yields
    ``(start, end, first line)`` of the ranges holding records (what follows
    the last one is blank lines, if anything).
    """
    step = max(1, math.ceil(path.stat().st_size / max(1, partitions)))
    start: tuple[int, int, int] | None = None
    last: tuple[int, int, int] | None = None
    for boundary in boundaries:
        last = boundary
        if start is None:
            start = boundary
            continue
        offset, _, count = boundary
        if count > start[2] and offset - start[0] >= step:
            yield start[0], offset, start[1]
            start = boundary
    if start is not None and last is not None and last[2] > start[2]:
        yield start[0], last[0], start[1]


def chunked(pairs: Iterator[tuple[Any, Any]], chunk_size: int) -> Iterator[RawChunk]:
    """Group ``(position, record)`` pairs into chunks, noting the malformed ones."""
    positions: list[Any] = []
    records: list[Any] = []
    malformed: list[int] = []
    for position, record in pairs:
        if record.__class__ is Malformed:
            malformed.append(len(records))
        positions.append(position)
        records.append(record)
        if len(records) >= chunk_size:
            yield positions, records, malformed
            positions, records, malformed = [], [], []
    if records:
        yield positions, records, malformed


def absolute(source: Any) -> Any:
    """
    Return a copy of a file source whose path is absolute.

    Workers open the file themselves, in a working directory of their own: a
    relative path must mean the calling process's directory.
    """
    copied = copy.copy(source)
    copied.path = source.path.resolve()
    return copied


def file_ranges(source: Any, chunk_size: int, partitions: int) -> Iterator[Any] | None:
    """
    Cut an uncompressed JSON Lines or CSV file into at most *partitions* ranges.

    Returns:
        The ranges (lazily, as the file is scanned), or ``None`` if *source*
        is not such a file.
    """
    from datapunk.io import CsvSource, JsonlSource

    if isinstance(source, JsonlSource):
        return jsonl_ranges(absolute(source), chunk_size, partitions)
    if isinstance(source, CsvSource):
        return csv_ranges(absolute(source), chunk_size, partitions)
    return None


def chunk_ranges(source: Any, chunk_size: int) -> Iterator[Any] | None:
    """
    Cut an uncompressed JSON Lines or CSV file into ranges of one chunk each.

    Returns:
        The ranges (lazily, as the file is scanned), or ``None`` if *source*
        is not such a file.
    """
    from datapunk.io import CsvSource, JsonlSource
    from datapunk.io._csv import ChunkScan
    from datapunk.io._files import _is_gzip

    if not isinstance(source, JsonlSource | CsvSource) or _is_gzip(source.path):
        return None
    source = absolute(source)
    if isinstance(source, JsonlSource):
        return (
            JsonlRange(source, start, end, line)
            for start, end, line in _pairs(jsonl_boundaries(source, chunk_size))
        )
    scan = ChunkScan(source, chunk_size)
    return (
        CsvRange(source, start, end, line, tuple(scan.header)) for start, end, line in _pairs(scan)
    )


def _pairs(boundaries: Iterable[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
    """Yield ``(start, end, first line)`` between consecutive boundaries that hold records."""
    for (start, line, before), (end, _, after) in itertools.pairwise(boundaries):
        if after > before:
            yield start, end, line
