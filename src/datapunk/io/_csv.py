"""CSV and TSV through the standard library's :mod:`csv`."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, final

from datapunk._core.errors import ConfigurationError, SinkError, SourceError
from datapunk._core.types import Malformed, jsonable
from datapunk.io._files import (
    _BOM,
    DEFAULT_MAX_LINE_BYTES,
    AtomicFile,
    Bounded,
    check_max_line_bytes,
    check_readable,
    describe_bad_utf8,
    guard_write,
    open_binary,
)
from datapunk.io._parts import FilePart, Staging, append_parts, commit_assembled, non_empty

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Iterator, Sequence

    from datapunk.plugins import SinkPart

__all__ = ["ChunkScan", "CsvPart", "CsvSink", "CsvSource", "read_range"]

_PLAIN = frozenset({str, int, float, bool, type(None)})


def _check_delimiter(delimiter: object) -> str:
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
        raise ConfigurationError(
            f"delimiter must be one character other than a quote or newline, got {delimiter!r}",
            details={"option": "delimiter"},
        )
    return delimiter


def _decoded_lines(
    f: Any,
    encoding: str,
    limit: int,
    bad: dict[int, tuple[str, str]],
    *,
    first_line: int = 1,
    bom: bool = True,
) -> Iterator[str]:
    """
    Feed :func:`csv.reader` decoded lines, bounded in length.

    An undecodable or oversize line is replaced (by its text with U+FFFD, or
    by an empty line) and recorded in *bad* under its 1-based number, so the
    row holding it becomes a failed record. A UTF-8 BOM is stripped (when
    *bom*: reading from the start of the file). *first_line* is the number of
    the first line read.
    """
    readline = f.readline
    size = limit + 1
    first = readline(size)
    if bom and first.startswith(_BOM):
        first = first[3:]
    line = first
    n = first_line - 1
    while line:
        n += 1
        if len(line) >= size and not line.endswith(b"\n"):
            rest = line
            while rest and not rest.endswith(b"\n"):
                rest = readline(1 << 20)
            message = (
                f"line {n} is longer than max_line_bytes={limit}; "
                "split the record or raise max_line_bytes"
            )
            bad[n] = ("LineTooLong", message)
            yield "\n"
        else:
            try:
                yield line.decode(encoding)
            except UnicodeDecodeError as exc:
                bad[n] = (
                    "UnicodeDecodeError",
                    f"line {n} is {describe_bad_utf8(line, exc, encoding)}",
                )
                yield line.decode(encoding, "replace")
        line = readline(size)


@final
class CsvSource:
    r"""
    Read a CSV (or TSV) file with a header row; each row becomes a dict.

    Values stay text (types are the validators' business), except that
    values listed in *null_values* become ``None``. Positions are the 1-based
    line number where the row starts, as an editor shows it. A row with more
    or fewer fields than the header, an undecodable line or an oversize line
    becomes a failed record at its line; the rest is read. A UTF-8 byte
    order mark is stripped.

    Args:
        path: The file (``.csv``, ``.tsv``, optionally ``.gz``).
        delimiter: Field separator (default ``","``, ``"\t"`` for ``.tsv``).
        encoding: Text encoding (default UTF-8).
        null_values: Field values read as ``None`` (default: the empty field).
        fieldnames: Column names, when the file has no header row.
        max_line_bytes: Longest line accepted (default 16 MiB).

    Raises:
        SourceError: If the file is missing, a directory or unreadable.
        ConfigurationError: If an option is invalid.

    Example:
        >>> import datapunk, pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "in.csv"
        >>> _ = p.write_text("id,score\na,1\nb,NA\n")
        >>> list(datapunk.io.CsvSource(p, null_values=["NA"]).read())
        [(2, {'id': 'a', 'score': '1'}), (3, {'id': 'b', 'score': None})]

    .. versionadded:: 0.1.0
    """

    format = "csv"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        delimiter: str = ",",
        encoding: str = "utf-8",
        null_values: Iterable[str] = ("",),
        fieldnames: Sequence[str] | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.delimiter = _check_delimiter(delimiter)
        self.encoding = encoding
        if isinstance(null_values, str):
            raise ConfigurationError(
                f"null_values must be a list of strings, got the string {null_values!r}; "
                f"write [{null_values!r}]",
                details={"option": "null_values"},
            )
        self.null_values = frozenset(null_values)
        self.fieldnames = list(fieldnames) if fieldnames is not None else None
        self.max_line_bytes = check_max_line_bytes(max_line_bytes)
        check_readable(self.path)

    def read(self) -> Iterator[tuple[int, Any]]:
        """
        Yield ``(line_number, row_dict)`` for every data row.

        Yields:
            Pairs of the row's first line number and the row (or ``datapunk.Malformed``).

        Raises:
            SourceError: If the header row itself cannot be read.
        """
        bad: dict[int, tuple[str, str]] = {}
        with open_binary(self.path) as f:
            lines = _decoded_lines(f, self.encoding, self.max_line_bytes, bad)
            reader = csv.reader(lines, delimiter=self.delimiter, strict=False)
            header = self.fieldnames
            if header is None:
                header = self._header(reader, bad)
                if header is None:
                    return
            yield from self._rows(reader, bad, header)

    def _header(self, reader: Any, bad: dict[int, tuple[str, str]]) -> list[str] | None:
        try:
            for row in reader:
                if not row:
                    continue
                if bad:
                    (_, message), *_ = bad.values()
                    raise SourceError(
                        f"cannot read the header row of {self.name!r}: {message}",
                        path=self.name,
                        position=reader.line_num,
                    )
                if len(set(row)) != len(row):
                    dupes = sorted({c for c in row if row.count(c) > 1})
                    raise SourceError(
                        f"the header row of {self.name!r} repeats column(s) {dupes}: "
                        "rename them or pass fieldnames=",
                        path=self.name,
                        position=reader.line_num,
                    )
                return list(row)
        except csv.Error as exc:
            raise SourceError(
                f"cannot read the header row of {self.name!r} (line {reader.line_num}): {exc}",
                path=self.name,
                position=reader.line_num,
            ) from exc
        return None

    def _rows(
        self, reader: Any, bad: dict[int, tuple[str, str]], header: list[str], base: int = 0
    ) -> Iterator[tuple[int, Any]]:
        """Yield the data rows; *base* is the number of lines before the reader's first."""
        width = len(header)
        nulls = self.null_values
        delimiter = self.delimiter
        end = base + reader.line_num
        while True:
            try:
                # The common case stays in this loop; anything odd is handled
                # off the fast path (and the loop resumes where it was).
                for row in reader:
                    start = end + 1
                    end = base + reader.line_num
                    if len(row) == width and not bad:
                        record = dict(zip(header, row, strict=True))
                        if nulls and not nulls.isdisjoint(row):
                            for k, v in record.items():
                                if v in nulls:
                                    record[k] = None
                        yield start, record
                    elif row or bad:
                        odd = self._odd(row, start, end, header, bad, delimiter)
                        if odd is not None:
                            yield start, odd
            except csv.Error as exc:
                start, end = end + 1, base + reader.line_num
                for n in range(start, end + 1):
                    bad.pop(n, None)
                yield (
                    start,
                    Malformed(
                        f"<lines {start}-{end}>",
                        f"line {start} cannot be parsed as CSV: {exc}",
                        "CsvError",
                    ),
                )
            else:
                return

    def _odd(
        self,
        row: list[str],
        start: int,
        end: int,
        header: list[str],
        bad: dict[int, tuple[str, str]],
        delimiter: str,
    ) -> Any:
        """
        Handle a row off the fast path: a bad line in it, a ragged row, a blank line.

        Returns:
            The record, a ``Malformed``, or ``None`` for a blank line.
        """
        width = len(header)
        hits = [n for n in range(start, end + 1) if n in bad]
        if hits:
            error_type, message = bad[hits[0]]
            for n in hits:
                del bad[n]
            return Malformed(_unparse(row, delimiter), message, error_type)
        if not row:
            return None
        if len(row) != width:
            return Malformed(
                _unparse(row, delimiter),
                f"line {start} has {len(row)} field(s) but the header has {width}; "
                "fix the row (a missing or extra delimiter, or an unquoted "
                f"{delimiter!r} inside a value)",
                "RaggedRow",
            )
        nulls = self.null_values
        return {k: (None if v in nulls else v) for k, v in zip(header, row, strict=True)}

    def __repr__(self) -> str:
        return f"CsvSource({self.name!r})"


class _Counting:
    """A binary file's ``readline``, counting the bytes read."""

    __slots__ = ("f", "pos")

    def __init__(self, f: Any) -> None:
        self.f = f
        self.pos = 0

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.f.readline(limit)
        self.pos += len(line)
        return line


class ChunkScan:
    """
    Where every chunk of a CSV file's records starts, found by the parser itself.

    The file is tokenised by :mod:`csv` exactly as :meth:`CsvSource.read`
    does (no dicts are built), so a quoted field spanning lines, a ragged row
    or a bad line counts as it will when read, and a cut never falls inside a
    record. Iterating yields ``(byte offset, line number, records before)``
    where each chunk starts, the first one included, and lastly the end of
    the file with the number of records; :attr:`header` is set before the
    first item. A file with no header row yields nothing.

    Args:
        source: An uncompressed CSV source.
        chunk_size: Records per chunk.

    Raises:
        SourceError: (when iterated) If the header row cannot be read.
    """

    def __init__(self, source: CsvSource, chunk_size: int) -> None:
        self.source = source
        self.chunk_size = chunk_size
        self.header: list[str] = []

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        source, size = self.source, self.chunk_size
        bad: dict[int, tuple[str, str]] = {}
        with source.path.open("rb") as f:
            counting = _Counting(f)
            lines = _decoded_lines(counting, source.encoding, source.max_line_bytes, bad)
            reader = csv.reader(lines, delimiter=source.delimiter, strict=False)
            header = source.fieldnames
            if header is None:
                header = source._header(reader, bad)
                if header is None:
                    return
            self.header = header
            yield counting.pos, reader.line_num + 1, 0
            records = 0
            end = reader.line_num
            while True:
                try:
                    for row in reader:
                        start, end = end + 1, reader.line_num
                        hit = False
                        if bad:
                            for n in range(start, end + 1):
                                hit = bad.pop(n, None) is not None or hit
                        if not row and not hit:
                            continue  # a blank line: no record
                        records += 1
                        if records % size == 0:
                            yield counting.pos, end + 1, records
                except csv.Error:
                    start, end = end + 1, reader.line_num
                    for n in range(start, end + 1):
                        bad.pop(n, None)
                    records += 1
                    if records % size == 0:
                        yield counting.pos, end + 1, records
                else:
                    break
            yield counting.pos, end + 1, records


def read_range(
    source: CsvSource, start: int, end: int, first_line: int, header: list[str]
) -> Iterator[tuple[int, Any]]:
    """
    Yield the records of bytes ``start..end`` of *source*, as :meth:`CsvSource.read` would.

    Args:
        source: The CSV source.
        start: Byte offset of the range (a record's first byte).
        end: Byte offset where the range ends (a record's end).
        first_line: The line number at *start*.
        header: The columns.

    Yields:
        ``(line_number, record)`` pairs.
    """
    bad: dict[int, tuple[str, str]] = {}
    with source.path.open("rb") as f:
        f.seek(start)
        lines = _decoded_lines(
            Bounded(f, end - start),
            source.encoding,
            source.max_line_bytes,
            bad,
            first_line=first_line,
            bom=start == 0,
        )
        reader = csv.reader(lines, delimiter=source.delimiter, strict=False)
        yield from source._rows(reader, bad, header, base=first_line - 1)


def _unparse(row: list[str], delimiter: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(row)
    return buf.getvalue()


def _cell(value: Any) -> Any:
    """One CSV cell: plain values as they are, others as JSON text."""
    if value.__class__ in _PLAIN:
        return value
    plain = jsonable(value)
    if isinstance(plain, dict | list):
        return json.dumps(plain, ensure_ascii=False)
    return plain


@final
class CsvSink:
    r"""
    Write records as CSV, atomically (temporary file, fsync, rename on close).

    The header is *fieldnames*, or the keys of the first record. Records may
    be dicts, pydantic models, dataclasses or attrs classes; ``None`` becomes
    an empty field, nested values become JSON text and secrets are masked.

    Args:
        path: The target (``.csv``, ``.tsv``, optionally ``.gz``).
        delimiter: Field separator (default ``","``, ``"\t"`` for ``.tsv``).
        encoding: Text encoding (default UTF-8).
        fieldnames: The columns, in order.

    Raises:
        SinkError: If the directory does not exist or is not writable, or
            (when writing) a record has a field not in the header.

    .. versionadded:: 0.1.0
    """

    format = "csv"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        delimiter: str = ",",
        encoding: str = "utf-8",
        fieldnames: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.delimiter = _check_delimiter(delimiter)
        self.fieldnames = list(fieldnames) if fieldnames is not None else None
        self._fields: frozenset[str] = frozenset(self.fieldnames or ())
        self.encoding = encoding
        self._file = AtomicFile(self.path, encoding=encoding, newline="")
        self._writer: Any = None
        self._quote_all: Any = None
        self._staging = Staging(self.path)

    def part(self, key: str) -> SinkPart[Any]:
        """
        Return a writer for one part of the output, to use on a worker.

        Args:
            key: The part's name, unique in the run.

        Returns:
            A picklable :class:`datapunk.plugins.SinkPart`.
        """
        return CsvPart(
            self._staging.create(),
            key,
            self.name,
            delimiter=self.delimiter,
            encoding=self.encoding,
            fieldnames=self.fieldnames,
        )

    def commit_parts(self, receipts: Sequence[Any]) -> None:
        """
        Assemble the committed parts, in order, into the output and commit it.

        The header is *fieldnames*, or the columns of the first record of the
        first part that has records, so the file is what writing the records
        here would give. Parts whose records had other columns are re-laid
        under the header; a record with a field not in the header fails the
        run, as it would here.

        Args:
            receipts: What the parts' ``commit()`` returned, in output order.

        Raises:
            SinkError: A record had a field that is not a column.
        """
        parts = non_empty(receipts)

        def assemble(binary: IO[bytes]) -> None:
            if parts:
                header = self.fieldnames or list(parts[0]["header"])
                self._check_columns(header, parts)
                self._assemble(binary, header, parts)

        commit_assembled(self._file, self._staging, assemble)

    def _check_columns(self, header: list[str], parts: list[dict[str, Any]]) -> None:
        known = set(header)
        for receipt in parts:
            extra = [c for c in receipt["columns"] if c not in known]
            if extra:
                raise SinkError(
                    f"record has field(s) {extra} that are not columns of {self.name!r} "
                    f"({header}, taken from the first record): give fieldnames= "
                    "or write JSON Lines",
                    path=self.name,
                )

    def _assemble(self, binary: IO[bytes], header: list[str], parts: list[dict[str, Any]]) -> None:
        # Everything goes to the binary layer: nothing is pending in the text
        # layer, and a flush of it would end a compressed block early.
        text = io.StringIO()
        writer = csv.writer(text, delimiter=self.delimiter, lineterminator="\n")
        quote_all = csv.writer(
            text, delimiter=self.delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL
        )

        def drain() -> None:
            binary.write(text.getvalue().encode(self.encoding))
            text.seek(0)
            text.truncate()

        writer.writerow(header)
        drain()
        for receipt in parts:
            if receipt["columns"] == header and not receipt.get("grown"):
                append_parts(self._staging, [receipt], binary)
                continue
            # Columns in another order, or found as the part went: re-lay its rows.
            columns = receipt["columns"]
            with self._staging.file(receipt).open(encoding=self.encoding, newline="") as f:
                for i, row in enumerate(csv.reader(f, delimiter=self.delimiter)):
                    cells = dict(zip(columns, row, strict=False))
                    laid = [cells.get(k) for k in header]
                    if any(c is not None and "\r" in c for c in laid):
                        quote_all.writerow(laid)
                    else:
                        writer.writerow(laid)
                    if i % 1000 == 999:  # noqa: PLR2004
                        drain()
            drain()

    def _start(self, first: dict[str, Any]) -> Any:
        if self.fieldnames is None:
            self.fieldnames = [str(k) for k in first]
            self._fields = frozenset(self.fieldnames)
        stream = self._file.stream()
        writer = csv.writer(stream, delimiter=self.delimiter, lineterminator="\n")
        # The stdlib quotes a lone "\r" only if it is in the line terminator:
        # rows holding one go through a writer that quotes every field.
        self._quote_all = csv.writer(
            stream, delimiter=self.delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL
        )
        writer.writerow(self.fieldnames)
        self._writer = writer
        return writer

    def write(self, records: Sequence[Any]) -> None:
        """
        Append *records* as rows.

        Args:
            records: The batch.

        Raises:
            SinkError: If a record is not a mapping or has fields not in the header.
        """
        rows: list[list[Any]] = []
        for record in records:
            rec = record if record.__class__ is dict else jsonable(record)
            if not isinstance(rec, dict):
                raise SinkError(
                    f"cannot write a {type(record).__name__} as a CSV row to {self.name!r}: "
                    "records must be mappings, models or dataclasses (or write JSON Lines)",
                    path=self.name,
                )
            writer = self._writer or self._start(rec)
            fields = self._fields
            if rec.keys() != fields:
                extra = [k for k in rec if k not in fields]
                if extra:
                    raise SinkError(
                        f"record has field(s) {extra} that are not columns of {self.name!r} "
                        f"({self.fieldnames}, taken from the first record): give fieldnames= "
                        "or write JSON Lines",
                        path=self.name,
                    )
            assert self.fieldnames is not None
            row = [_cell(rec.get(k)) for k in self.fieldnames]
            if any(c.__class__ is str and "\r" in c for c in row):
                guard_write(self.path, partial(writer.writerows, rows))
                rows = []
                guard_write(self.path, partial(self._quote_all.writerow, row))
                continue
            rows.append(row)
        if rows:
            guard_write(self.path, partial(self._writer.writerows, rows))

    def close(self) -> None:
        """Commit: flush, fsync and rename the file into place."""
        self._file.commit()

    def abort(self) -> None:
        """Discard everything written; the target is left untouched."""
        self._file.abort()
        self._staging.remove()

    def __repr__(self) -> str:
        return f"CsvSink({self.name!r})"


class CsvPart(FilePart):
    """
    One part of a CSV output, written on a worker (see :meth:`CsvSink.part`).

    Rows are written without a header; the receipt names the first record's
    keys (the output's header, if this is the first part with records) and
    the rows' columns (*fieldnames*, or the first record's keys extended by
    any new key a later record has), which :meth:`CsvSink.commit_parts`
    checks and lays under the output's header.

    Args:
        directory: The staging directory.
        key: The part's name.
        target: The output's path, for messages.
        delimiter: Field separator.
        encoding: Text encoding.
        fieldnames: The output's columns, when fixed.
    """

    def __init__(
        self,
        directory: Path,
        key: str,
        target: str,
        *,
        delimiter: str,
        encoding: str,
        fieldnames: list[str] | None,
    ) -> None:
        super().__init__(directory, key, target)
        self.delimiter = delimiter
        self.encoding = encoding
        self.fixed = fieldnames is not None
        self.columns: list[Any] | None = list(fieldnames) if fieldnames is not None else None
        self.header = self.columns
        self.grown = False
        self._text: Any = None

    def write(self, records: Sequence[Any]) -> None:
        """
        Append *records* as rows.

        Args:
            records: The batch.

        Raises:
            SinkError: A record is not a mapping, or has a field that is not
                one of the fixed *fieldnames*.
        """
        if not records:
            return
        if self._text is None:
            self._text = io.TextIOWrapper(
                self._stream(), encoding=self.encoding, newline="", write_through=False
            )
        writer = csv.writer(self._text, delimiter=self.delimiter, lineterminator="\n")
        columns = self.columns
        fields = frozenset(columns or ())
        for record in records:
            rec = record if record.__class__ is dict else jsonable(record)
            if not isinstance(rec, dict):
                raise SinkError(
                    f"cannot write a {type(record).__name__} as a CSV row to {self.target!r}: "
                    "records must be mappings, models or dataclasses (or write JSON Lines)",
                    path=self.target,
                )
            if columns is None:
                self.columns = columns = [str(k) for k in rec]
                self.header = list(columns)
                fields = frozenset(columns)
            if rec.keys() != fields:
                extra = [k for k in rec if k not in fields]
                if extra and self.fixed:
                    raise SinkError(
                        f"record has field(s) {extra} that are not columns of {self.target!r} "
                        f"({columns}, taken from the first record): give fieldnames= "
                        "or write JSON Lines",
                        path=self.target,
                    )
                if extra:
                    columns.extend(extra)
                    fields = frozenset(columns)
                    self.grown = True
            row = [_cell(rec.get(k)) for k in columns]
            if any(c.__class__ is str and "\r" in c for c in row):
                csv.writer(
                    self._text, delimiter=self.delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL
                ).writerow(row)
            else:
                writer.writerow(row)
        self.records += len(records)

    def abort(self) -> None:
        """Close and delete the part's temporary file."""
        if self._text is not None:
            with contextlib.suppress(Exception):
                self._text.detach()
            self._text = None
        super().abort()

    def _finish(self) -> None:
        if self._text is not None:
            self._text.flush()
            self._text.detach()
            self._text = None

    def receipt(self) -> dict[str, Any]:
        """Return the first record's columns, those of the rows written, and whether they grew."""
        return {"header": self.header, "columns": self.columns, "grown": self.grown}
