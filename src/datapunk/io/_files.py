"""
Shared plumbing for file sources and sinks: opening, line reading, atomic writes.

Reading works on bytes, one line at a time with a length limit, so one huge
or undecodable line becomes one failed record instead of a crash or a memory
spike. Writing goes to a temporary file in the target's directory that is
flushed, fsynced and renamed over the target only on :meth:`AtomicFile.commit`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from datapunk._core.errors import ConfigurationError, SinkError, SourceError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "AtomicFile",
    "Bounded",
    "Line",
    "check_readable",
    "check_writable_dir",
    "iter_lines",
    "open_binary",
]

#: Longest line (or JSON element) a text source accepts, in bytes: 16 MiB.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_READ_BUFFER = 1 << 20


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def check_readable(path: Path) -> None:
    """
    Fail now, with a useful message, if *path* cannot be read.

    Args:
        path: The file to read.

    Raises:
        SourceError: If it is missing, a directory, unreadable or not gzip
            although named ``.gz``.
    """
    where = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceError(
            f"input file {where!r} does not exist: check the path "
            f"(the current directory is {str(Path.cwd())!r})",
            path=where,
        ) from None
    except OSError as exc:
        raise SourceError(
            f"cannot access input file {where!r}: {exc.strerror or exc}", path=where
        ) from exc
    if stat.S_ISDIR(info.st_mode):
        raise SourceError(
            f"input {where!r} is a directory, not a file: give the path of one file",
            path=where,
        )
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except PermissionError:
        raise SourceError(
            f"permission denied reading {where!r}: check the file's permissions",
            path=where,
        ) from None
    except OSError as exc:
        raise SourceError(
            f"cannot open input file {where!r}: {exc.strerror or exc}", path=where
        ) from exc
    if _is_gzip(path) and head and head != _GZIP_MAGIC:
        raise SourceError(
            f"input file {where!r} is named .gz but is not gzip-compressed: "
            "rename it without .gz or compress it",
            path=where,
        )


def check_writable_dir(path: Path) -> None:
    """
    Fail now if the output *path* cannot be created.

    Args:
        path: The file to be written.

    Raises:
        SinkError: If its directory is missing or not writable, or the path is a directory.
    """
    where = str(path)
    parent = path.parent if str(path.parent) else Path()
    if path.is_dir():
        raise SinkError(f"output {where!r} is a directory: give a file path", path=where)
    if not parent.is_dir():
        raise SinkError(
            f"cannot write {where!r}: directory {str(parent)!r} does not exist; create it first",
            path=where,
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SinkError(
            f"cannot write {where!r}: permission denied on directory {str(parent)!r}",
            path=where,
        )


def open_binary(path: Path) -> IO[bytes]:
    """
    Open *path* for reading bytes, decompressing ``.gz`` transparently.

    Args:
        path: The file.

    Returns:
        A binary file object.
    """
    if _is_gzip(path):
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return path.open("rb", buffering=_READ_BUFFER)


#: One physical line: ``(line_number, raw_bytes, oversize)``. For an oversize
#: line, ``raw_bytes`` is its first ``max_line_bytes`` bytes only.
Line = tuple[int, bytes, bool]


def iter_lines(f: IO[bytes], max_line_bytes: int, *, bom: bool = True) -> Iterator[Line]:
    """
    Yield the lines of *f* with 1-based numbers, a BOM stripped, length bounded.

    A line longer than *max_line_bytes* is read past (never held in memory
    whole) and flagged as oversize.

    Args:
        f: A binary file.
        max_line_bytes: Longest line kept.
        bom: Strip a UTF-8 byte order mark from the first line (reading from
            the start of a file).

    Yields:
        ``(number, raw, oversize)`` per line, line ending included in *raw*.
    """
    readline = f.readline
    limit = max_line_bytes + 1
    n = 0
    first = bom
    while True:
        line = readline(limit)
        if not line:
            return
        n += 1
        if first:
            first = False
            if line.startswith(_BOM):
                line = line[3:]
        if len(line) >= limit and not line.endswith(b"\n"):
            rest = line
            while rest and not rest.endswith(b"\n"):
                rest = readline(_READ_BUFFER)
            yield n, line[:max_line_bytes], True
            continue
        yield n, line, False


class Bounded:
    """
    A binary file's ``readline`` limited to the next *remaining* bytes.

    Args:
        f: A binary file, positioned where the range starts.
        remaining: The range's length in bytes.
    """

    __slots__ = ("f", "remaining")

    def __init__(self, f: Any, remaining: int) -> None:
        self.f = f
        self.remaining = remaining

    def readline(self, limit: int = -1) -> bytes:
        """Read one line, never past the range's end."""
        if self.remaining <= 0:
            return b""
        size = self.remaining if limit < 0 else min(limit, self.remaining)
        line: bytes = self.f.readline(size)
        self.remaining -= len(line)
        return line


def check_max_line_bytes(value: object) -> int:
    """
    Validate the ``max_line_bytes`` option.

    Args:
        value: The option's value.

    Returns:
        The value as an int.

    Raises:
        ConfigurationError: If it is not a positive integer.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"max_line_bytes must be a positive integer (bytes), got {value!r}",
            details={"option": "max_line_bytes"},
        )
    return value


def describe_bad_utf8(raw: bytes, exc: UnicodeDecodeError, encoding: str) -> str:
    """
    Explain an undecodable line: which byte, at which column, what to do.

    Args:
        raw: The line.
        exc: The decoding error.
        encoding: The encoding tried.

    Returns:
        A message.
    """
    bad = raw[exc.start : exc.end].hex(" ")
    return (
        f"not valid {encoding}: byte(s) 0x{bad} at column {exc.start + 1}; "
        f"fix the file's encoding or pass encoding= (e.g. 'latin-1')"
    )


class AtomicFile:
    r"""
    A file written under a temporary name and renamed over the target on commit.

    The temporary file lives in the target's directory (so the rename is
    atomic), is created on first use, and is flushed and fsynced before the
    rename. :meth:`abort` deletes it, so a failed run never leaves a file that
    looks complete.

    Args:
        path: The target path.
        text: Open in text mode (UTF-8 unless *encoding*), else binary.
        encoding: Text encoding.
        newline: Newline translation for text mode (``"\n"`` by default,
            ``""`` for CSV).
    """

    def __init__(
        self, path: Path, *, text: bool = True, encoding: str = "utf-8", newline: str = "\n"
    ) -> None:
        check_writable_dir(path)
        self.path = path
        self._text = text
        self._encoding = encoding
        self._newline = newline
        self._raw: IO[bytes] | None = None
        self._gzip: gzip.GzipFile | None = None
        self._stream: IO[Any] | None = None
        self._tmp: str | None = None
        self._done = False

    def stream(self) -> IO[Any]:
        """
        Return the open stream, creating the temporary file on first call.

        Returns:
            A text or binary stream.

        Raises:
            SinkError: If the temporary file cannot be created.
        """
        if self._stream is not None:
            return self._stream
        if self._done:
            raise SinkError(f"output {str(self.path)!r} was already closed", path=str(self.path))
        try:
            fd, tmp = tempfile.mkstemp(
                dir=self.path.parent if str(self.path.parent) else ".",
                prefix=f".{self.path.name}.",
                suffix=".tmp",
            )
        except OSError as exc:
            raise SinkError(
                f"cannot create a temporary file next to {str(self.path)!r}: {exc.strerror or exc}",
                path=str(self.path),
            ) from exc
        self._tmp = tmp
        raw: IO[bytes] = os.fdopen(fd, "wb", buffering=_READ_BUFFER)
        self._raw = raw
        binary: Any = raw
        if _is_gzip(self.path):
            self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
            binary = self._gzip
        if self._text:
            self._stream = io.TextIOWrapper(
                binary,
                encoding=self._encoding,
                newline=self._newline,
                write_through=False,
            )
        else:
            self._stream = binary
        return cast("IO[Any]", self._stream)

    def commit(self) -> None:
        """
        Flush, fsync and rename the temporary file over the target.

        Raises:
            SinkError: If any step fails (the temporary file is then removed).
        """
        if self._done:
            return
        self.stream()  # an empty output is still an output
        try:
            stream, raw = self._stream, self._raw
            assert stream is not None
            assert raw is not None
            if isinstance(stream, io.TextIOWrapper):
                stream.flush()
                stream.detach()
            if self._gzip is not None:
                self._gzip.close()
            raw.flush()
            os.fsync(raw.fileno())
            raw.close()
            assert self._tmp is not None
            umask = os.umask(0)
            os.umask(umask)
            tmp = Path(self._tmp)
            tmp.chmod(0o666 & ~umask)
            tmp.replace(self.path)
            self._fsync_dir()
        except Exception as exc:
            self.abort()
            raise SinkError(
                f"cannot finish writing {str(self.path)!r}: {type(exc).__name__}: {exc}",
                path=str(self.path),
            ) from exc
        self._done = True
        self._stream = None

    def _fsync_dir(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent if str(self.path.parent) else ".", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # ------------------------------------------------------- resumable output
    def flush(self) -> dict[str, Any]:
        """
        Flush and fsync what was written; return where the output ends.

        Returns:
            A resume token: ``{"tmp": temporary path, "offset": bytes}``.

        Raises:
            SinkError: If the file is compressed (gzip output cannot be
                resumed) or cannot be flushed.
        """
        where = str(self.path)
        if self._gzip is not None or _is_gzip(self.path):
            raise SinkError(
                f"cannot checkpoint {where!r}: compressed (.gz) output cannot be resumed; "
                "write uncompressed output when using checkpoint=",
                path=where,
            )
        stream = self.stream()
        raw = self._raw
        assert raw is not None
        try:
            stream.flush()
            raw.flush()
            os.fsync(raw.fileno())
            offset = raw.tell()
        except OSError as exc:
            raise SinkError(f"cannot flush {where!r}: {exc.strerror or exc}", path=where) from exc
        return {"tmp": self._tmp, "offset": offset}

    def resume(self, token: dict[str, Any]) -> None:
        """
        Reopen the temporary file of *token*, truncated to its offset, for appending.

        Args:
            token: What :meth:`flush` returned.

        Raises:
            SinkError: If the temporary file is gone or cannot be reopened.
        """
        where = str(self.path)
        tmp, offset = token.get("tmp"), token.get("offset")
        if not isinstance(tmp, str) or not isinstance(offset, int) or offset < 0:
            raise SinkError(f"invalid resume token for {where!r}: {token!r:.120}", path=where)
        try:
            raw: IO[bytes] = Path(tmp).open("r+b", buffering=_READ_BUFFER)  # noqa: SIM115
        except FileNotFoundError:
            raise SinkError(
                f"cannot resume {where!r}: its partial output {tmp!r} is gone; "
                "start a fresh run (delete the checkpoint)",
                path=where,
            ) from None
        except OSError as exc:
            raise SinkError(
                f"cannot resume {where!r}: {tmp!r}: {exc.strerror or exc}", path=where
            ) from exc
        size = raw.seek(0, os.SEEK_END)
        if size < offset:
            raw.close()
            raise SinkError(
                f"cannot resume {where!r}: its partial output {tmp!r} has {size} bytes, "
                f"fewer than the {offset} the checkpoint acknowledged",
                path=where,
            )
        raw.truncate(offset)
        raw.seek(offset)
        self._tmp, self._raw, self._done = tmp, raw, False
        self._stream = (
            io.TextIOWrapper(raw, encoding=self._encoding, newline=self._newline)
            if self._text
            else raw
        )

    def suspend(self) -> None:
        """Flush and close the temporary file, keeping it for :meth:`resume`."""
        self._done = True
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.flush()
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.close()
        self._stream = None

    def abort(self) -> None:
        """Close and delete the temporary file; the target is left untouched."""
        self._done = True
        for closer in (self._gzip, self._raw):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        self._stream = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                Path(self._tmp).unlink()
            self._tmp = None


def guard_write(path: Path, action: Callable[[], object]) -> None:
    """
    Run *action*, turning an ``OSError`` into a :class:`SinkError` naming *path*.

    Args:
        path: The output path, for the message.
        action: What to do.

    Raises:
        SinkError: If *action* raises ``OSError``.
    """
    try:
        action()
    except SinkError:
        raise
    except OSError as exc:
        raise SinkError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}", path=str(path)
        ) from exc
