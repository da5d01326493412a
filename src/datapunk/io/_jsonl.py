"""JSON Lines: one JSON value per line, read and written as a stream."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

from datapunk._core.types import Malformed, jsonable
from datapunk.io._files import (
    DEFAULT_MAX_LINE_BYTES,
    AtomicFile,
    check_max_line_bytes,
    check_readable,
    describe_bad_utf8,
    guard_write,
    iter_lines,
    open_binary,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["JsonlSink", "JsonlSource", "dumps_record", "loads_function"]

_RAW_LIMIT = 10_000
# orjson reads integers beyond 64 bits as floats; such lines go to the stdlib.
_LONG_NUMBER = re.compile(rb"\d{19}").search


def _default(value: Any) -> Any:
    return jsonable(value)


_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default
)
_encode = _ENCODER.encode
_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def dumps_record(record: Any) -> bytes:
    """
    Serialise one record as compact JSON (UTF-8 bytes), masking secrets.

    Plain dicts, lists, strings and numbers go to the C encoder; pydantic
    models to their own (Rust) serialiser, which masks secret fields;
    anything else goes through :func:`datapunk._core.types.jsonable`.
    Non-finite floats become strings (``"nan"``, ``"inf"``), as in reports.

    Args:
        record: The record.

    Returns:
        JSON on one line (newlines inside strings are escaped).
    """
    if record.__class__ is not dict:
        serializer = getattr(record.__class__, "__pydantic_serializer__", None)
        if serializer is not None and hasattr(record, "model_fields_set"):
            data: bytes = serializer.to_json(record)
            return data
    try:
        return _encode(record).encode()
    except UnicodeEncodeError:  # a lone surrogate: escape it, JSON can carry it
        return _ASCII.encode(jsonable(record)).encode()
    except ValueError:  # NaN / infinity: follow jsonable's convention
        return _encode(jsonable(record)).encode()


def loads_function(use_orjson: bool | None) -> Callable[[bytes], Any]:
    """
    Return the JSON parser for bytes: orjson when installed (and not refused).

    Args:
        use_orjson: ``True`` to require orjson, ``False`` to use the stdlib,
            ``None`` to use orjson if it is installed.

    Returns:
        A function parsing one JSON document from bytes.
    """
    if use_orjson is False:
        return json.loads
    try:
        import orjson
    except ImportError:
        if use_orjson:
            from datapunk._core.errors import ConfigurationError

            raise ConfigurationError(
                "use_orjson=True needs orjson: pip install datapunk[orjson]"
            ) from None
        return json.loads
    fast: Callable[[bytes], Any] = orjson.loads
    return fast


def parse_or_malformed(raw: bytes, loads: Callable[[bytes], Any], encoding: str, what: str) -> Any:
    """
    Parse *raw* JSON, or return a :class:`datapunk.Malformed` saying precisely why not.

    Args:
        raw: The bytes of one JSON value.
        loads: The fast parser (orjson or json).
        encoding: The text encoding of *raw*.
        what: Where the value is, for messages (``"line 3"``).

    Returns:
        The value, or a ``Malformed``.
    """
    if encoding in {"utf-8", "utf8"} and (loads is json.loads or not _LONG_NUMBER(raw)):
        try:
            return loads(raw)
        except Exception:  # noqa: S110 - diagnosed below, with the stdlib's precise message
            pass
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return Malformed(
            raw.decode(encoding, "replace").rstrip("\r\n")[:_RAW_LIMIT],
            f"{what} is {describe_bad_utf8(raw, exc, encoding)}",
            "UnicodeDecodeError",
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return Malformed(
            text.rstrip("\r\n")[:_RAW_LIMIT],
            f"{what} is not valid JSON: {exc.msg} at column {exc.colno}; "
            "fix or remove the line and run again",
            "JSONDecodeError",
        )
    except (ValueError, RecursionError) as exc:
        return Malformed(text[:_RAW_LIMIT], f"{what} cannot be parsed: {exc}", type(exc).__name__)


@final
class JsonlSource:
    r"""
    Read a JSON Lines file (``.jsonl``, ``.ndjson``, optionally ``.gz``): one value per line.

    Positions are 1-based line numbers, as an editor shows them. Blank lines
    are skipped. A line that is not valid UTF-8, not valid JSON or longer than
    *max_line_bytes* becomes a failed record at its line; the rest is read.
    A UTF-8 byte order mark is stripped.

    Args:
        path: The file.
        encoding: Text encoding (JSON Lines is UTF-8 by definition).
        max_line_bytes: Longest line accepted (default 16 MiB).
        use_orjson: Parse with orjson (``None``: when installed).

    Raises:
        SourceError: If the file is missing, a directory or unreadable.

    Example:
        >>> import datapunk, pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"
        >>> _ = p.write_text('{"a": 1}\n{"a": 2}\n')
        >>> list(datapunk.io.JsonlSource(p).read())
        [(1, {'a': 1}), (2, {'a': 2})]

    .. versionadded:: 0.1.0
    """

    format = "jsonl"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encoding: str = "utf-8",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        use_orjson: bool | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.encoding = encoding
        self.max_line_bytes = check_max_line_bytes(max_line_bytes)
        self._loads = loads_function(use_orjson)
        check_readable(self.path)

    def read(self) -> Iterator[tuple[int, Any]]:
        """
        Yield ``(line_number, value)`` for every non-blank line.

        Yields:
            Pairs of line number and parsed value (or ``datapunk.Malformed``).
        """
        loads, encoding, limit = self._loads, self.encoding, self.max_line_bytes
        with open_binary(self.path) as f:
            for n, raw, oversize in iter_lines(f, limit):
                if oversize:
                    yield (
                        n,
                        Malformed(
                            raw[:200].decode(encoding, "replace") + "…",
                            f"line {n} is longer than max_line_bytes={limit}; "
                            "split the record or raise max_line_bytes",
                            "LineTooLong",
                        ),
                    )
                    continue
                if raw.isspace():
                    continue
                yield n, parse_or_malformed(raw, loads, encoding, f"line {n}")

    def __repr__(self) -> str:
        return f"JsonlSource({self.name!r})"


@final
class JsonlSink:
    """
    Write records as JSON Lines, atomically (temporary file, fsync, rename on close).

    Records may be dicts, lists, scalars, pydantic models, dataclasses or attrs
    classes; secrets are written as ``"**********"``. A ``.gz`` path is
    compressed.

    Args:
        path: The target file.

    Raises:
        SinkError: If the directory does not exist or is not writable.

    .. versionadded:: 0.1.0
    """

    format = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        self._file = AtomicFile(self.path, text=False)

    def write(self, records: Sequence[Any]) -> None:
        """
        Append *records*, one JSON value per line.

        Args:
            records: The batch.
        """
        if not records:
            return
        dumps = dumps_record
        data = b"\n".join([dumps(r) for r in records]) + b"\n"
        stream = self._file.stream()
        guard_write(self.path, lambda: stream.write(data))

    def close(self) -> None:
        """Commit: flush, fsync and rename the file into place."""
        self._file.commit()

    def abort(self) -> None:
        """Discard everything written; the target is left untouched."""
        self._file.abort()

    def flush(self) -> dict[str, Any]:
        """
        Make what was written durable; return a resume token (for checkpoints).

        Returns:
            The temporary file and its byte offset.
        """
        return self._file.flush()

    def resume(self, token: dict[str, Any]) -> None:
        """
        Continue the output of an interrupted run after its last acknowledged record.

        Args:
            token: What :meth:`flush` returned in the interrupted run.
        """
        self._file.resume(token)

    def suspend(self) -> None:
        """Close the output but keep it, so a checkpointed run can resume it."""
        self._file.suspend()

    def __repr__(self) -> str:
        return f"JsonlSink({self.name!r})"
