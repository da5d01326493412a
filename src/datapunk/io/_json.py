"""
JSON documents: a top-level array is streamed element by element.

The reader never loads the whole array: it scans the text in blocks, cuts it
at the commas between top-level elements (tracking strings, escapes and
nesting), and parses one element at a time. An element that does not parse
becomes a failed record at its index, and reading goes on with the next one.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

from datapunk._core.types import Malformed
from datapunk.io._files import (
    DEFAULT_MAX_LINE_BYTES,
    AtomicFile,
    check_max_line_bytes,
    check_readable,
    guard_write,
    open_binary,
)
from datapunk.io._jsonl import dumps_function, loads_function, parse_or_malformed

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence

__all__ = ["JsonSink", "JsonSource"]

_BLOCK = 1 << 16
_SPECIAL = re.compile(rb'["\\\[\]{},]')
_IN_STRING = re.compile(rb'["\\]')
_WS = b" \t\r\n"


class _Scanner:
    """Splits the bytes of a JSON array into its top-level elements."""

    def __init__(self, f: Any, limit: int) -> None:
        self.read = f.read
        self.limit = limit
        self.buf = b""
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        block = self.read(_BLOCK)
        if not block:
            self.eof = True
            return False
        self.buf += block
        return True

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
                if ch == b"\\":
                    if pos >= len(self.buf) and not self.fill():
                        return pos, pos, oversize, "the file ends inside a string"
                    pos += 1
                else:
                    in_string = False
            elif ch == b'"':
                in_string = True
            elif ch in b"[{":
                depth += 1
            elif ch in b"]}":
                if depth == 0:
                    return (
                        pos - 1,
                        -1 if ch == b"]" else pos,
                        oversize,
                        (None if ch == b"]" else "unbalanced '}'"),
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
        use_orjson: Parse with orjson (``None``: when installed).

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
        with open_binary(self.path) as raw:
            f: Any = raw
            if self.encoding.lower().replace("_", "-") not in {"utf-8", "utf8"}:
                f = _Recoder(raw, self.encoding)
            sc = _Scanner(f, self.max_line_bytes)
            sc.fill()
            if sc.buf.startswith(codecs.BOM_UTF8):
                sc.buf = sc.buf[3:]
            pos = sc.skip_ws(0)
            if pos >= len(sc.buf):
                return
            if sc.buf[pos : pos + 1] != b"[":
                yield from self._single(sc, pos)
                return
            yield from self._elements(sc, pos + 1)

    def _single(self, sc: _Scanner, pos: int) -> Iterator[tuple[int, Any]]:
        while sc.fill():
            if len(sc.buf) > self.max_line_bytes:
                yield (
                    0,
                    Malformed(
                        sc.buf[:200].decode("utf-8", "replace") + "…",
                        f"the JSON document is larger than max_line_bytes={self.max_line_bytes}; "
                        "make it an array (it is then streamed) or raise max_line_bytes",
                        "LineTooLong",
                    ),
                )
                return
        yield 0, parse_or_malformed(sc.buf[pos:], self._loads, "utf-8", "the document")

    def _elements(self, sc: _Scanner, pos: int) -> Iterator[tuple[int, Any]]:
        index = 0
        loads = self._loads
        pos = sc.skip_ws(pos)
        if sc.buf[pos : pos + 1] == b"]":
            yield from self._trailing(sc, pos + 1, index)
            return
        while True:
            start = sc.skip_ws(pos)
            end, nxt, oversize, problem = sc.element(start)
            raw = sc.buf[start:end]
            what = f"element {index}"
            if oversize:
                yield (
                    index,
                    Malformed(
                        raw[:200].decode("utf-8", "replace") + "…",
                        f"{what} is larger than max_line_bytes={self.max_line_bytes}; "
                        "split the record or raise max_line_bytes",
                        "LineTooLong",
                    ),
                )
            elif problem is not None:
                text = raw.decode("utf-8", "replace").strip()
                yield (
                    index,
                    Malformed(
                        text[:10_000], f"{what} is not valid JSON: {problem}", "JSONDecodeError"
                    ),
                )
            elif not raw.strip():
                yield (
                    index,
                    Malformed(
                        "",
                        f"{what} is empty (two commas in a row, or a trailing comma)",
                        "JSONDecodeError",
                    ),
                )
            else:
                yield index, parse_or_malformed(raw, loads, "utf-8", what)
            index += 1
            if problem is not None and problem.startswith("the file ends"):
                return
            if nxt == -1:
                yield from self._trailing(sc, end + 1, index)
                return
            # Drop what was consumed so the buffer stays one element long.
            sc.buf = sc.buf[nxt:]
            pos = 0

    def _trailing(self, sc: _Scanner, pos: int, index: int) -> Iterator[tuple[int, Any]]:
        pos = sc.skip_ws(pos)
        if pos < len(sc.buf):
            rest = sc.buf[pos : pos + 200].decode("utf-8", "replace")
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


class _Recoder:
    """Re-encodes a non-UTF-8 byte stream as UTF-8, incrementally."""

    def __init__(self, raw: Any, encoding: str) -> None:
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder(encoding)("replace")

    def read(self, n: int) -> bytes:
        block = self.raw.read(n)
        return self.decoder.decode(block, final=not block).encode("utf-8")


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
        self._dumps = dumps_function(use_orjson)
        self._file = AtomicFile(self.path, text=False)
        self._count = 0

    def write(self, records: Sequence[Any]) -> None:
        """
        Append *records* to the array.

        Args:
            records: The batch.
        """
        if not records:
            return
        body = b",\n".join([self._dumps(r) for r in records])
        text = (b"[\n" if self._count == 0 else b",\n") + body
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

    def __repr__(self) -> str:
        return f"JsonSink({self.name!r})"
