"""Parquet through the optional ``pyarrow`` extra, read and written in record batches."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, final

from datapunk._core.errors import ConfigurationError, SinkError, SourceError
from datapunk._core.types import jsonable
from datapunk.io._files import AtomicFile, check_readable, open_binary
from datapunk.io._parts import FilePart, Staging, commit_assembled, non_empty

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence

    from datapunk.plugins import SinkPart

__all__ = ["ParquetPart", "ParquetSink", "ParquetSource"]

_INSTALL = "pip install datapunk[parquet]"


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigurationError(
            f"reading or writing Parquet needs pyarrow: {_INSTALL}",
            details={"extra": "parquet"},
        ) from None
    return pa, pq


def _check_batch_size(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"{option} must be a positive integer, got {value!r}", details={"option": option}
        )
    return value


@final
class ParquetSource:
    """
    Read a Parquet file in record batches; each row becomes a dict.

    Positions are 0-based row indexes. The file's metadata is read when the
    source is created, so a corrupt file fails before anything is written.

    Args:
        path: The file (``.parquet``; ``.parquet.gz`` works but cannot be read
            in parallel and is slower).
        batch_size: Rows decoded at a time (memory holds one batch).
        columns: Read only these columns.

    Raises:
        SourceError: If the file is missing, unreadable or not valid Parquet.
        ConfigurationError: If pyarrow is not installed.

    .. versionadded:: 0.1.0
    """

    format = "parquet"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 10_000,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.batch_size = _check_batch_size(batch_size, "batch_size")
        self.columns = list(columns) if columns is not None else None
        _pyarrow()
        check_readable(self.path)
        with self._open() as pf:
            self.num_rows: int = pf.metadata.num_rows

    @contextlib.contextmanager
    def _open(self) -> Iterator[Any]:
        _, pq = _pyarrow()
        with open_binary(self.path) as f:
            try:
                pf = pq.ParquetFile(f)
            except Exception as exc:
                raise SourceError(
                    f"{self.name!r} is not a valid Parquet file ({type(exc).__name__}: {exc}); "
                    "check that it was written completely and is not another format",
                    path=self.name,
                ) from exc
            try:
                yield pf
            finally:
                pf.close()

    def read(self) -> Iterator[tuple[int, Any]]:
        """
        Yield ``(row_index, row_dict)`` for every row.

        Yields:
            Pairs of row index and row.

        Raises:
            SourceError: If a row group is corrupt.
        """
        index = 0
        with self._open() as pf:
            batches = pf.iter_batches(batch_size=self.batch_size, columns=self.columns)
            while True:
                try:
                    batch = next(batches, None)
                except Exception as exc:
                    raise SourceError(
                        f"cannot read {self.name!r} after row {index}: {type(exc).__name__}: {exc}",
                        path=self.name,
                        position=index,
                    ) from exc
                if batch is None:
                    return
                for row in batch.to_pylist():
                    yield index, row
                    index += 1

    def __repr__(self) -> str:
        return f"ParquetSource({self.name!r})"


@final
class ParquetSink:
    """
    Write records to a Parquet file in row groups, atomically.

    The schema is inferred from the first row group (or given as a
    ``pyarrow.Schema``); records are dicts, pydantic models, dataclasses or
    attrs classes, with secrets masked.

    Args:
        path: The target (``.parquet``, optionally ``.gz``).
        row_group_size: Records buffered per row group.
        schema: A ``pyarrow.Schema`` to use instead of inferring one.
        compression: Parquet compression codec.

    Raises:
        SinkError: If the directory does not exist or is not writable.
        ConfigurationError: If pyarrow is not installed.

    .. versionadded:: 0.1.0
    """

    format = "parquet"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        row_group_size: int = 65_536,
        schema: Any = None,
        compression: str = "zstd",
    ) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.row_group_size = _check_batch_size(row_group_size, "row_group_size")
        self.schema = schema
        self.compression = compression
        _pyarrow()
        self._fixed_schema = schema is not None
        self._file = AtomicFile(self.path, text=False)
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None
        self._staging = Staging(self.path)

    def write(self, records: Sequence[Any]) -> None:
        """
        Buffer *records*, writing a row group whenever enough are buffered.

        Args:
            records: The batch.

        Raises:
            SinkError: If a record is not a mapping or does not fit the schema.
        """
        self._rows.extend(_rows(records, self.name))
        if len(self._rows) >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        pa, pq = _pyarrow()
        rows, self._rows = self._rows, []
        table = _table(rows, self.schema, self.name)
        try:
            if self._writer is None:
                self.schema = table.schema
                self._writer = pq.ParquetWriter(
                    self._file.stream(), table.schema, compression=self.compression
                )
            self._writer.write_table(table, row_group_size=self.row_group_size)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise _misfit(self.name, exc) from exc

    @property
    def partitioned(self) -> bool:
        """
        Whether the output can be written in parts (see :meth:`part`): when *schema* was given.

        Without a schema, the output's schema comes from its first row group,
        which no worker writing a later part can know.
        """
        return self._fixed_schema

    def part(self, key: str) -> SinkPart[Any]:
        """
        Return a writer for one part of the output, to use on a worker.

        Args:
            key: The part's name, unique in the run.

        Returns:
            A picklable :class:`datapunk.plugins.SinkPart`.

        Raises:
            ConfigurationError: No *schema* was given (see :attr:`partitioned`).
        """
        if not self._fixed_schema:
            raise ConfigurationError(
                f"{self.name!r} cannot be written in parts without schema=: its schema comes "
                "from its first row group",
                details={"option": "schema"},
            )
        return ParquetPart(self._staging.create(), key, self.name, self.schema, self.row_group_size)

    def commit_parts(self, receipts: Sequence[Any]) -> None:
        """
        Copy the row groups of the committed parts, in order, into the output and commit it.

        Args:
            receipts: What the parts' ``commit()`` returned, in output order.
        """
        _, pq = _pyarrow()
        parts = non_empty(receipts)

        def assemble(binary: IO[bytes]) -> None:
            if not parts:  # as an empty run writes it
                pq.ParquetWriter(binary, self.schema).close()
                return
            writer = pq.ParquetWriter(binary, self.schema, compression=self.compression)
            for receipt in parts:
                pf = pq.ParquetFile(self._staging.file(receipt))
                for group in range(pf.num_row_groups):
                    writer.write_table(pf.read_row_group(group), row_group_size=self.row_group_size)
            writer.close()

        commit_assembled(self._file, self._staging, assemble)

    def close(self) -> None:
        """Write the last row group and the footer, then commit the file."""
        pa, pq = _pyarrow()
        if self._rows or self._writer is None:
            if not self._rows and self._writer is None:
                schema = self.schema if self.schema is not None else pa.schema([])
                self._writer = pq.ParquetWriter(self._file.stream(), schema)
            else:
                self._flush()
        writer: Any = self._writer
        writer.close()
        self._file.commit()

    def abort(self) -> None:
        """Discard everything written; the target is left untouched."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the file is deleted anyway
                self._writer.close()
        self._file.abort()
        self._staging.remove()

    def __repr__(self) -> str:
        return f"ParquetSink({self.name!r})"


def _rows(records: Sequence[Any], name: str) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        rec = jsonable(record)
        if not isinstance(rec, dict):
            raise SinkError(
                f"cannot write a {type(record).__name__} as a Parquet row to {name!r}: "
                "records must be mappings, models or dataclasses",
                path=name,
            )
        rows.append(rec)
    return rows


def _misfit(name: str, exc: Exception) -> SinkError:
    return SinkError(
        f"records do not fit the Parquet schema of {name!r} ({exc}); the schema "
        "comes from the first row group: pass schema= or make field types consistent",
        path=name,
    )


def _table(rows: list[dict[str, Any]], schema: Any, name: str) -> Any:
    """Build an Arrow table of *rows* (under *schema*, if given)."""
    pa, _ = _pyarrow()
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    if schema is not None:
        extra = [k for k in names if k not in schema.names]
        if extra:
            raise SinkError(
                f"records have field(s) {extra} that are not columns of {name!r} "
                f"({schema.names}, taken from the first row group): pass schema= "
                "or write JSON Lines",
                path=name,
            )
        names = dict.fromkeys(schema.names)
    columns = {k: [r.get(k) for r in rows] for k in names}
    try:
        return pa.Table.from_pydict(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _misfit(name, exc) from exc


class ParquetPart(FilePart):
    """
    One part of a Parquet output with a fixed schema, written on a worker.

    The part is a Parquet file of its own; :meth:`ParquetSink.commit_parts`
    copies its row groups into the output.

    Args:
        directory: The staging directory.
        key: The part's name.
        target: The output's path, for messages.
        schema: The output's ``pyarrow.Schema``.
        row_group_size: Records buffered per row group.
    """

    def __init__(
        self, directory: Path, key: str, target: str, schema: Any, row_group_size: int
    ) -> None:
        super().__init__(directory, key, target)
        self.schema = schema
        self.row_group_size = row_group_size
        self._buffer: list[dict[str, Any]] = []
        self._writer: Any = None

    def write(self, records: Sequence[Any]) -> None:
        """
        Buffer *records*, writing a row group whenever enough are buffered.

        Args:
            records: The batch.

        Raises:
            SinkError: A record is not a mapping or does not fit the schema.
        """
        self._buffer.extend(_rows(records, self.target))
        self.records += len(records)
        if len(self._buffer) >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        _, pq = _pyarrow()
        rows, self._buffer = self._buffer, []
        table = _table(rows, self.schema, self.target)
        if self._writer is None:
            # Uncompressed: the part is read back once, when the output is assembled.
            self._writer = pq.ParquetWriter(self._stream(), self.schema, compression="none")
        self._writer.write_table(table, row_group_size=self.row_group_size)

    def _finish(self) -> None:
        if self._buffer or self._writer is None:
            self._flush()
        writer: Any = self._writer
        writer.close()
        self._writer = None

    def abort(self) -> None:
        """Close and delete the part's temporary file."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        super().abort()
