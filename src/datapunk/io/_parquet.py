"""Parquet through the optional ``pyarrow`` extra, read and written in record batches."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

from datapunk._core.errors import ConfigurationError, SinkError, SourceError
from datapunk._core.types import jsonable
from datapunk.io._files import AtomicFile, check_readable, open_binary

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence

__all__ = ["ParquetSink", "ParquetSource"]

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
        self._file = AtomicFile(self.path, text=False)
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None

    def write(self, records: Sequence[Any]) -> None:
        """
        Buffer *records*, writing a row group whenever enough are buffered.

        Args:
            records: The batch.

        Raises:
            SinkError: If a record is not a mapping or does not fit the schema.
        """
        for record in records:
            rec = jsonable(record)
            if not isinstance(rec, dict):
                raise SinkError(
                    f"cannot write a {type(record).__name__} as a Parquet row to {self.name!r}: "
                    "records must be mappings, models or dataclasses",
                    path=self.name,
                )
            self._rows.append(rec)
        if len(self._rows) >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        pa, pq = _pyarrow()
        rows, self._rows = self._rows, []
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        if self.schema is not None:
            extra = [k for k in names if k not in self.schema.names]
            if extra:
                raise SinkError(
                    f"records have field(s) {extra} that are not columns of {self.name!r} "
                    f"({self.schema.names}, taken from the first row group): pass schema= "
                    "or write JSON Lines",
                    path=self.name,
                )
            names = dict.fromkeys(self.schema.names)
        columns = {k: [r.get(k) for r in rows] for k in names}
        try:
            table = pa.Table.from_pydict(columns, schema=self.schema)
            if self._writer is None:
                self.schema = table.schema
                self._writer = pq.ParquetWriter(
                    self._file.stream(), table.schema, compression=self.compression
                )
            self._writer.write_table(table, row_group_size=self.row_group_size)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise SinkError(
                f"records do not fit the Parquet schema of {self.name!r} ({exc}); the schema "
                "comes from the first row group: pass schema= or make field types consistent",
                path=self.name,
            ) from exc

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

    def __repr__(self) -> str:
        return f"ParquetSink({self.name!r})"
