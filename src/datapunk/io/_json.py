"""
JSON documents: a top-level array is streamed element by element.

The reader never loads the whole array: it scans the text in blocks, cuts it
at the commas between top-level elements (tracking strings, escapes and
nesting), and parses one element at a time. An element that does not parse
becomes a failed record at its index, and reading goes on with the next one.
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, final

from datapunk._core.types import Malformed
from datapunk.io._files import (
    DEFAULT_MAX_LINE_BYTES,
    AtomicFile,
    check_max_line_bytes,
    check_readable,
    describe_bad_utf8,
    guard_write,
    open_binary,
)
from datapunk.io._jsonl import JsonlPart, dumps_function, encode_lines, loads_function
from datapunk.io._parts import Staging, append_parts, commit_assembled, non_empty

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence

    from datapunk.plugins import SinkPart

__all__ = ["JsonPart", "JsonSink", "JsonSource"]

_BLOCK = 1 << 16
_RAW_LIMIT = 10_000
_SPECIAL = re.compile(r'["\\\[\]{},]')
_IN_STRING = re.compile(r'["\\]')
_SURROGATE = re.compile("[\udc80-\udcff]")
_WS = " \t\r\n"
_raw_decode = json.JSONDecoder().raw_decode


def _printable(text: str) -> str:
    """Undecodable bytes (kept as surrogate escapes) shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Scanner:
    """Splits the text of a JSON array into its top-level elements."""

    def __init__(self, f: Any, encoding: str, limit: int) -> None:
        self.read = f.read
        self.decoder = codecs.getincrementaldecoder(encoding)("surrogateescape")
        self.limit = limit
        self.buf = ""
        self.eof = False
        self.dirty = False  # the buffer holds undecodable bytes

    def fill(self) -> bool:
        if self.eof:
            return False
        block = self.read(_BLOCK)
        text = self.decoder.decode(block, final=not block)
        if not block:
            self.eof = True
        if text:
            if not self.dirty and _SURROGATE.search(text):
                self.dirty = True
            self.buf += text
            return True
        return not self.eof

    def skip_ws(self, pos: int) -> int:
        while True:
            n = len(self.buf)
            while pos < n and self.buf[pos] in _WS:
                pos += 1
            if pos < n or not self.fill():
                return pos

    def element(self, start: int) -> tuple[int, int, bool, str | None]:
        """
        Scan one element from *start*.

        Returns:
            ``(end, next_start, oversize, problem)``: the element is
            ``buf[start:end]``; *next_start* is past its ``,`` or ``]`` (``-1``
            after the closing ``]``); *problem* describes a structural error.
        """
        depth = 0
        in_string = False
        pos = start
        oversize = False
        while True:
            if pos - start > self.limit:
                # Too big: keep only its head, go on scanning to the element's end.
                self.buf = self.buf[: start + 200] + self.buf[pos:]
                pos = start + 200
                oversize = True
            pattern = _IN_STRING if in_string else _SPECIAL
            m = pattern.search(self.buf, pos)
            if m is None:
                pos = len(self.buf)
                if not self.fill():
                    return pos, len(self.buf), oversize, "the file ends inside this element"
                continue
            pos = m.end()
            ch = m.group()
            if in_string:
                if ch == "\\":
                    if pos >= len(self.buf) and not self.fill():
                        return pos, pos, oversize, "the file ends inside a string"
                    pos += 1
                else:
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "[{":
                depth += 1
            elif ch in "]}":
                if depth == 0:
                    return (
                        pos - 1,
                        -1 if ch == "]" else pos,
                        oversize,
                        (None if ch == "]" else "unbalanced '}'"),
                    )
                depth -= 1
            elif depth == 0:  # a top-level comma
                return pos - 1, pos, oversize, None


@final
class JsonSource:
    """
    Read a JSON file: each element of a top-level array is a record.

    The array is streamed (memory holds one element, not the file). Positions
    are 0-based array indexes. An element that is not valid JSON, not valid
    UTF-8 or larger than *max_line_bytes* becomes a failed record at its
    index; the next elements are still read. A file whose top level is not an
    array is one record at position 0.

    Args:
        path: The file (``.json``, optionally ``.gz``).
        encoding: Text encoding (default UTF-8).
        max_line_bytes: Largest element accepted (default 16 MiB).
        use_orjson: Accepted for symmetry with :class:`JsonlSource`; array
            elements are parsed by the standard library's C decoder, which
            can parse in place inside the read buffer.

    Raises:
        SourceError: If the file is missing, a directory or unreadable.

    Example:
        >>> import datapunk, pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "in.json"
        >>> _ = p.write_text('[{"a": 1}, {"a": 2}]')
        >>> list(datapunk.io.JsonSource(p).read())
        [(0, {'a': 1}), (1, {'a': 2})]

    .. versionadded:: 0.1.0
    """

    format = "json"

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
        Yield ``(index, element)`` for every element of the array.

        Yields:
            Pairs of index and parsed element (or ``datapunk.Malformed``).
        """
        with open_binary(self.path) as f:
            sc = _Scanner(f, self.encoding, self.max_line_bytes)
            sc.fill()
            sc.buf = sc.buf.removeprefix("\ufeff")
            pos = sc.skip_ws(0)
            if pos >= len(sc.buf):
                return
            if sc.buf[pos] != "[":
                yield from self._single(sc, pos)
                return
            yield from self._elements(sc, pos + 1)

    def _parse(self, sc: _Scanner, text: str, what: str) -> Any:
        """Parse one element's text, or say precisely why it is not valid."""
        if sc.dirty and _SURROGATE.search(text):
            raw = text.encode("utf-8", "surrogateescape")
            try:
                raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                problem = describe_bad_utf8(raw, exc, self.encoding)
            else:  # pragma: no cover - a surrogate always comes from a bad byte
                problem = "not valid text"
            return Malformed(
                _printable(text)[:_RAW_LIMIT], f"{what} is {problem}", "UnicodeDecodeError"
            )
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            return Malformed(
                text.strip()[:_RAW_LIMIT],
                f"{what} is not valid JSON: {exc.msg} at column {exc.colno}; "
                "fix or remove the element and run again",
                "JSONDecodeError",
            )
        except (ValueError, RecursionError) as exc:
            return Malformed(
                text[:_RAW_LIMIT], f"{what} cannot be parsed: {exc}", type(exc).__name__
            )

    def _single(self, sc: _Scanner, pos: int) -> Iterator[tuple[int, Any]]:
        while sc.fill():
            if len(sc.buf) > self.max_line_bytes:
                yield (
                    0,
                    Malformed(
                        _printable(sc.buf[:200]) + "…",
                        f"the JSON document is larger than max_line_bytes={self.max_line_bytes}; "
                        "make it an array (it is then streamed) or raise max_line_bytes",
                        "LineTooLong",
                    ),
                )
                return
        yield 0, self._parse(sc, sc.buf[pos:], "the document")

    def _fast(self, sc: _Scanner, start: int) -> tuple[Any, int] | None:
        """
        Parse the element at *start* with the C decoder, if it is well formed.

        Returns:
            ``(value, next)`` where *next* is past the following ``,`` (or
            ``-1`` after the closing ``]``), or ``None`` to take the slow path.
        """
        try:
            value, end = _raw_decode(sc.buf, start)
        except (ValueError, RecursionError):
            return None
        if sc.dirty and _SURROGATE.search(sc.buf, start, end):
            return None
        after = sc.skip_ws(end)
        if after >= len(sc.buf):
            return None
        ch = sc.buf[after]
        if ch == ",":
            return value, after + 1
        if ch == "]":
            return value, -after - 2  # -1 - (position after "]")
        return None  # a number cut by the buffer's end, or garbage: let the scanner decide

    def _elements(self, sc: _Scanner, pos: int) -> Iterator[tuple[int, Any]]:
        index = 0
        pos = sc.skip_ws(pos)
        if sc.buf[pos : pos + 1] == "]":
            yield from self._trailing(sc, pos + 1, index)
            return
        while True:
            start = sc.skip_ws(pos)
            fast = self._fast(sc, start)
            if fast is not None:
                value, nxt = fast
                yield index, value
                index += 1
                if nxt < 0:
                    yield from self._trailing(sc, -nxt - 1, index)
                    return
            else:
                end, nxt, oversize, problem = sc.element(start)
                text = sc.buf[start:end]
                what = f"element {index}"
                if oversize:
                    yield (
                        index,
                        Malformed(
                            _printable(text[:200]) + "…",
                            f"{what} is larger than max_line_bytes={self.max_line_bytes}; "
                            "split the record or raise max_line_bytes",
                            "LineTooLong",
                        ),
                    )
                elif problem is not None:
                    yield (
                        index,
                        Malformed(
                            _printable(text).strip()[:_RAW_LIMIT],
                            f"{what} is not valid JSON: {problem}",
                            "JSONDecodeError",
                        ),
                    )
                elif not text.strip():
                    yield (
                        index,
                        Malformed(
                            "",
                            f"{what} is empty (two commas in a row, or a trailing comma)",
                            "JSONDecodeError",
                        ),
                    )
                else:
                    yield index, self._parse(sc, text, what)
                index += 1
                if problem is not None and problem.startswith("the file ends"):
                    return
                if nxt == -1:
                    yield from self._trailing(sc, end + 1, index)
                    return
            # Drop what was consumed once it is a block's worth, so memory
            # holds about one block plus one element (and copying stays linear).
            if nxt > _BLOCK:
                sc.buf = sc.buf[nxt:]
                nxt = 0
            pos = nxt

    def _trailing(self, sc: _Scanner, pos: int, index: int) -> Iterator[tuple[int, Any]]:
        pos = sc.skip_ws(pos)
        if pos < len(sc.buf):
            rest = _printable(sc.buf[pos : pos + 200])
            yield (
                index,
                Malformed(
                    rest,
                    f"unexpected data after the closing ']' of the array: {rest[:40]!r}; "
                    "remove it (one file holds one JSON array)",
                    "JSONDecodeError",
                ),
            )

    def __repr__(self) -> str:
        return f"JsonSource({self.name!r})"


@final
class JsonSink:
    """
    Write records as one JSON array, atomically (temporary file, fsync, rename).

    Elements are written one per line as they arrive, so memory holds one
    batch, not the array.

    Args:
        path: The target (``.json``, optionally ``.gz``).
        use_orjson: Serialise with orjson (``None``: when installed).

    Raises:
        SinkError: If the directory does not exist or is not writable.

    .. versionadded:: 0.1.0
    """

    format = "json"

    def __init__(self, path: str | os.PathLike[str], *, use_orjson: bool | None = None) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.use_orjson = use_orjson
        self._dumps = dumps_function(use_orjson)
        self._file = AtomicFile(self.path, text=False)
        self._count = 0
        self._staging = Staging(self.path)

    def part(self, key: str) -> SinkPart[Any]:
        """
        Return a writer for one part of the array, to use on a worker.

        Args:
            key: The part's name, unique in the run.

        Returns:
            A picklable :class:`datapunk.plugins.SinkPart`.
        """
        return JsonPart(self._staging.create(), key, self.name, self.use_orjson)

    def commit_parts(self, receipts: Sequence[Any]) -> None:
        """
        Assemble the committed parts, in order, into the array and commit it.

        The result is byte for byte what writing the records here would give.

        Args:
            receipts: What the parts' ``commit()`` returned, in output order.
        """

        def assemble(binary: IO[bytes]) -> None:
            if not non_empty(receipts):
                binary.write(b"[]\n")
                return
            binary.write(b"[\n")
            append_parts(self._staging, receipts, binary, separator=b",\n")
            binary.write(b"\n]\n")

        commit_assembled(self._file, self._staging, assemble)

    def write(self, records: Sequence[Any]) -> None:
        """
        Append *records* to the array.

        Args:
            records: The batch.
        """
        if not records:
            return
        text = bytearray(b"[\n" if self._count == 0 else b",\n")
        text += encode_lines(self._dumps, records, b",\n")
        del text[-2:]
        self._count += len(records)
        stream = self._file.stream()
        guard_write(self.path, lambda: stream.write(text))

    def close(self) -> None:
        """Close the array and commit the file."""
        stream = self._file.stream()
        guard_write(self.path, lambda: stream.write(b"[]\n" if self._count == 0 else b"\n]\n"))
        self._file.commit()

    def abort(self) -> None:
        """Discard everything written; the target is left untouched."""
        self._file.abort()
        self._staging.remove()

    def __repr__(self) -> str:
        return f"JsonSink({self.name!r})"


class JsonPart(JsonlPart):
    r"""
    One part of a JSON array output, written on a worker (see :meth:`JsonSink.part`).

    Elements are separated by ``",\n"`` instead of ended by ``"\n"``;
    :meth:`JsonSink.commit_parts` adds the brackets and the commas between
    parts.
    """

    def write(self, records: Sequence[Any]) -> None:
        """
        Append *records* to this part of the array.

        Args:
            records: The batch.
        """
        if not records:
            return
        body = encode_lines(dumps_function(self.use_orjson), records, b",\n")
        del body[-2:]
        self.write_bytes(body if not self.records else b",\n" + body)
        self.records += len(records)
