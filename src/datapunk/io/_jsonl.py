"""JSON Lines: one JSON value per line, read and written as a stream."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, final

from datapunk._core.errors import ConfigurationError
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
from datapunk.io._parts import FilePart, Staging, append_parts, commit_assembled

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator, Sequence

    from datapunk._core.adapters import RawChunk
    from datapunk.plugins import SinkPart

__all__ = [
    "JsonlPart",
    "JsonlSink",
    "JsonlSource",
    "dumps_function",
    "dumps_record",
    "encode_lines",
    "line_parser",
    "loads_function",
    "read_chunks",
]

_RAW_LIMIT = 10_000

# orjson reads integers beyond 64 bits as floats: lines holding a run of 19+
# digits go to the stdlib parser. Digits become "9", everything else " ".
_DIGITS = bytes(57 if 48 <= b <= 57 else 32 for b in range(256))  # noqa: PLR2004
_LONG_RUN = b"9" * 19


def _long_number(raw: bytes) -> bool:
    return _LONG_RUN in raw.translate(_DIGITS)


def _default(value: Any) -> Any:
    return jsonable(value)


def _finite(value: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN), as pydantic and orjson do."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# The C encoder, built once (json.dumps builds a new one on every call).
# Arguments: markers, default, string encoder, indent, key separator, item
# separator, sort_keys, skipkeys, allow_nan.
_C: Any = getattr(json.encoder, "c_make_encoder")(  # noqa: B009 - untyped C API
    None,
    _default,
    json.encoder.encode_basestring,
    None,
    ":",
    ",",
    False,  # noqa: FBT003 - sort_keys (the C API takes positional arguments only)
    False,  # noqa: FBT003 - skipkeys
    False,  # noqa: FBT003 - allow_nan
)


def _encode(value: Any) -> str:
    return "".join(_C(value, 0))


_ASCII = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_default
)


def dumps_record(record: Any) -> bytes:
    """
    Serialise one record as compact JSON (UTF-8 bytes), masking secrets.

    Plain dicts, lists, strings and numbers go to the C encoder; pydantic
    models to their own (Rust) serialiser, which masks secret fields;
    anything else goes through :func:`datapunk._core.types.jsonable`.
    Non-finite floats (NaN, infinity) are written as ``null``, as pydantic
    and orjson write them: JSON has no NaN.

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
        return _ASCII.encode(_finite(record)).encode()
    except ValueError:  # NaN / infinity
        return dumps_record(_finite(record))


def dumps_function(use_orjson: bool | None) -> Callable[[Any], bytes]:
    """
    Return the record serialiser: orjson when installed (and not refused).

    Both produce the same JSON (orjson is tried first and falls back to the
    stdlib for what it refuses: integers beyond 64 bits, non-string keys,
    lone surrogates).

    Args:
        use_orjson: ``True`` to require orjson, ``False`` for the stdlib,
            ``None`` for orjson if it is installed.

    Returns:
        A function turning one record into JSON bytes.
    """
    if use_orjson is False:
        return dumps_record
    try:
        import orjson
    except ImportError:
        if use_orjson:
            raise ConfigurationError(
                "use_orjson=True needs orjson: pip install datapunk[orjson]"
            ) from None
        return dumps_record
    fast = orjson.dumps
    failure = (TypeError, orjson.JSONEncodeError)

    def dumps(record: Any) -> bytes:
        if record.__class__ is dict:
            try:
                data: bytes = fast(record, default=_default)
            except failure:
                return dumps_record(record)
            return data
        return dumps_record(record)

    return dumps


def encode_lines(
    dumps: Callable[[Any], bytes], records: Sequence[Any], separator: bytes = b"\n"
) -> bytearray:
    """
    Serialise *records*, each followed by *separator*, into one buffer.

    Each record's JSON is appended as soon as it is made, so it is freed
    before the next one: holding a whole batch of small ``bytes`` objects
    (a list then ``join``) costs the allocator a fresh heap per batch, which
    measured six times slower with orjson.

    Args:
        dumps: What :func:`dumps_function` returned.
        records: The batch.
        separator: Written after every record.

    Returns:
        The bytes to write.
    """
    buf = bytearray()
    for record in records:
        buf += dumps(record)
        buf += separator
    return buf


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
            raise ConfigurationError(
                "use_orjson=True needs orjson: pip install datapunk[orjson]"
            ) from None
        return json.loads
    fast: Callable[[bytes], Any] = orjson.loads
    return fast


def read_chunks(
    source: JsonlSource, f: IO[bytes], size: int, first_line: int = 1
) -> Iterator[RawChunk]:
    """
    Yield ``(positions, records, malformed)`` chunks of the lines of *f*.

    The records, positions and failures are exactly those of
    :meth:`JsonlSource.read`; building chunks here saves two generators per
    record. A failure while reading delivers the records read before it,
    then propagates.

    Args:
        source: The source (parser, encoding, line limit).
        f: The open file, positioned at the line numbered *first_line*.
        size: Records per chunk.
        first_line: The line number of the first line of *f* (a BOM is
            stripped only from line 1).
    """
    parse = line_parser(source._loads, source.encoding)
    encoding, limit = source.encoding, source.max_line_bytes
    base = first_line - 1
    positions: list[int] = []
    records: list[Any] = []
    malformed: list[int] = []
    try:
        for rel, raw, oversize in iter_lines(f, limit, bom=first_line == 1):
            n = base + rel
            if oversize:
                record: Any = Malformed(
                    raw[:200].decode(encoding, "replace") + "…",
                    f"line {n} is longer than max_line_bytes={limit}; "
                    "split the record or raise max_line_bytes",
                    "LineTooLong",
                )
                malformed.append(len(records))
            elif raw.isspace():
                continue
            else:
                record = parse(raw, n)
                if record.__class__ is Malformed:
                    malformed.append(len(records))
            positions.append(n)
            records.append(record)
            if len(records) >= size:
                yield positions, records, malformed
                positions, records, malformed = [], [], []
    except Exception:
        if records:  # deliver what was read before the failure
            yield positions, records, malformed
        raise
    if records:
        yield positions, records, malformed


def line_parser(loads: Callable[[bytes], Any], encoding: str) -> Callable[[bytes, int], Any]:
    """
    Return ``parse(raw, line_number)``: the value of one line, or a ``Malformed``.

    The common case (UTF-8, valid JSON) costs one parser call; anything else
    goes through :func:`parse_or_malformed` for a precise message.

    Args:
        loads: What :func:`loads_function` returned.
        encoding: The file's text encoding.
    """
    if encoding not in {"utf-8", "utf8"}:

        def slow(raw: bytes, n: int) -> Any:
            return parse_or_malformed(raw, loads, encoding, f"line {n}")

        return slow
    if loads is json.loads:

        def stdlib(raw: bytes, n: int) -> Any:
            try:
                return loads(raw)
            except Exception:  # diagnosed with a precise message
                return parse_or_malformed(raw, loads, encoding, f"line {n}")

        return stdlib
    digits, long_run = _DIGITS, _LONG_RUN

    def fast(raw: bytes, n: int) -> Any:
        if long_run not in raw.translate(digits):  # else: a big integer, for the stdlib
            try:
                return loads(raw)
            except Exception:  # noqa: S110 - diagnosed below, with a precise message
                pass
        return parse_or_malformed(raw, loads, encoding, f"line {n}")

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
    if encoding in {"utf-8", "utf8"} and (loads is json.loads or not _long_number(raw)):
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
        parse = line_parser(loads, encoding)
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
                yield n, parse(raw, n)

    def _read_chunks(self, size: int) -> Iterator[RawChunk]:
        """Yield chunks of *size* records, as :meth:`read` would give them, faster."""
        with open_binary(self.path) as f:
            yield from read_chunks(self, f, size)

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
        use_orjson: Serialise with orjson (``None``: when installed); the
            output is the same either way.

    Raises:
        SinkError: If the directory does not exist or is not writable.

    .. versionadded:: 0.1.0
    """

    format = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *, use_orjson: bool | None = None) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.use_orjson = use_orjson
        self._dumps = dumps_function(use_orjson)
        self._file = AtomicFile(self.path, text=False)
        self._staging = Staging(self.path)

    def part(self, key: str) -> SinkPart[Any]:
        """
        Return a writer for one part of the output, to use on a worker.

        Args:
            key: The part's name, unique in the run.

        Returns:
            A picklable :class:`datapunk.plugins.SinkPart`.
        """
        return JsonlPart(self._staging.create(), key, self.name, self.use_orjson)

    def commit_parts(self, receipts: Sequence[Any]) -> None:
        """
        Assemble the committed parts, in order, into the output and commit it.

        The result is byte for byte what writing the records here would give.

        Args:
            receipts: What the parts' ``commit()`` returned, in output order.
        """
        commit_assembled(self._file, self._staging, partial(append_parts, self._staging, receipts))

    def write(self, records: Sequence[Any]) -> None:
        """
        Append *records*, one JSON value per line.

        Args:
            records: The batch.
        """
        if not records:
            return
        data = encode_lines(self._dumps, records)
        stream = self._file.stream()
        guard_write(self.path, lambda: stream.write(data))

    def close(self) -> None:
        """Commit: flush, fsync and rename the file into place."""
        self._file.commit()

    def abort(self) -> None:
        """Discard everything written; the target is left untouched."""
        self._file.abort()
        self._staging.remove()

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


class JsonlPart(FilePart):
    """
    One part of a JSON Lines output, written on a worker (see :meth:`JsonlSink.part`).

    Args:
        directory: The staging directory.
        key: The part's name.
        target: The output's path, for messages.
        use_orjson: As for :class:`JsonlSink`.
    """

    def __init__(self, directory: Path, key: str, target: str, use_orjson: bool | None) -> None:
        super().__init__(directory, key, target)
        self.use_orjson = use_orjson

    def write(self, records: Sequence[Any]) -> None:
        """
        Append *records*, one JSON value per line.

        Args:
            records: The batch.
        """
        if not records:
            return
        self.write_bytes(encode_lines(dumps_function(self.use_orjson), records))
        self.records += len(records)
