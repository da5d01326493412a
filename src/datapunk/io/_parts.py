"""
Outputs written in parts, elsewhere, and assembled atomically.

A runner that processes partitions on other machines (Dask) asks a file sink
for one *part* per partition. A part is a small picklable object; on the
worker it writes its records under a temporary name in a *staging directory*
next to the target, and :meth:`FilePart.commit` closes and renames it to its
final part name, returning a *receipt* (plain data). When every
partition is done, the sink's ``commit_parts(receipts)`` assembles the parts,
in the receipts' order, into the target's temporary file, commits that
(fsync + rename) and removes the staging directory. Until then nothing has
the target's name; a failed run removes the staging directory, so no output
that looks complete is ever left behind.

The staging directory is created by the calling process, so the target must
be on a file system the workers share with it (as the input files must).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from datapunk._core.errors import SinkError
from datapunk._core.types import safe_str
from datapunk.io._files import guard_write

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from datapunk.io._files import AtomicFile

__all__ = [
    "FilePart",
    "Staging",
    "append_parts",
    "binary_layer",
    "commit_assembled",
    "non_empty",
]

_BUFFER = 1 << 20


class Staging:
    """
    The staging directory of one output: created on first use, removed at the end.

    Args:
        target: The output file the parts will be assembled into.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.directory: Path | None = None

    def create(self) -> Path:
        """
        Return the staging directory, creating it next to the target if needed.

        Raises:
            SinkError: If it cannot be created.
        """
        if self.directory is None:
            # Absolute: the workers writing parts run in directories of their own.
            parent = (self.target.parent if str(self.target.parent) else Path()).resolve()
            try:
                made = tempfile.mkdtemp(dir=parent, prefix=f".{self.target.name}.", suffix=".parts")
            except OSError as exc:
                raise SinkError(
                    f"cannot create a staging directory next to {str(self.target)!r}: "
                    f"{exc.strerror or exc}",
                    path=str(self.target),
                ) from exc
            self.directory = Path(made)
        return self.directory

    def file(self, receipt: Any) -> Path:
        """
        Return the committed part file a receipt names.

        Raises:
            SinkError: If the receipt is not one of this output's.
        """
        name = receipt.get("file") if isinstance(receipt, dict) else None
        if self.directory is None or not isinstance(name, str) or "/" in name or "\\" in name:
            raise SinkError(
                f"invalid part receipt for {str(self.target)!r}: {safe_str(receipt, 120)}",
                path=str(self.target),
            )
        return self.directory / name

    def remove(self) -> None:
        """
        Delete the staging directory and every part in it.

        Workers of a failed run may still be writing parts: a part created
        while the directory is being emptied makes its removal fail, so it is
        tried again; once the directory is gone, no part can be created.
        """
        if self.directory is None:
            return
        for _ in range(100):
            shutil.rmtree(self.directory, ignore_errors=True)
            if not self.directory.exists():
                break
            time.sleep(0.01)
        self.directory = None


class FilePart:
    """
    One part of an output, written where it is used (a Dask worker).

    Picklable until its first write. Subclasses define ``write(records)``
    (turning records into bytes for :meth:`write_bytes`, or writing to the
    stream themselves), may flush layers of their own before the commit
    (``_finish``) and add to the receipt (:meth:`receipt`).

    Args:
        directory: The staging directory.
        key: The part's name (unique in the run; sorts in input order).
        target: The final output's path, for messages.
    """

    def __init__(self, directory: Path, key: str, target: str) -> None:
        self.directory = str(directory)
        self.key = key
        self.target = target
        self.records = 0
        self._raw: IO[bytes] | None = None
        self._tmp: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        if self._raw is not None:
            raise TypeError(f"part {self.key} of {self.target!r} is open and cannot be pickled")
        return self.__dict__.copy()

    def _stream(self) -> IO[bytes]:
        if self._raw is None:
            try:
                fd, tmp = tempfile.mkstemp(
                    dir=self.directory, prefix=f"part-{self.key}-", suffix=".tmp"
                )
            except OSError as exc:
                raise SinkError(
                    f"cannot write part {self.key} of {self.target!r} in {self.directory!r}: "
                    f"{exc.strerror or exc}; the output's directory must be on a file "
                    "system every worker shares",
                    path=self.target,
                ) from exc
            self._tmp = tmp
            self._raw = os.fdopen(fd, "wb", buffering=_BUFFER)
        return self._raw

    def write_bytes(self, data: bytes | bytearray) -> None:
        """Append *data* to the part."""
        stream = self._stream()
        try:
            stream.write(data)
        except OSError as exc:
            raise SinkError(
                f"cannot write part {self.key} of {self.target!r}: {exc.strerror or exc}",
                path=self.target,
            ) from exc

    def receipt(self) -> dict[str, Any]:
        """Return what :meth:`commit` adds to the receipt (subclasses)."""
        return {}

    def _finish(self) -> None:
        """Flush any layer above the binary file (subclasses)."""

    def commit(self) -> dict[str, Any]:
        """
        Give the part its final part name, where the caller will find it; return its receipt.

        Returns:
            ``{"file": name, "records": count, ...}``.

        Raises:
            SinkError: If it cannot be flushed or renamed.
        """
        raw = self._stream()
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        assert self._tmp is not None
        final = f"{self._tmp[: -len('.tmp')]}.part"
        # No fsync: a part only has to outlive the run, which a crash ends
        # anyway; the assembled output is fsynced before it takes its name.
        # Closing is enough for the caller to see it, even on NFS.
        try:
            raw.close()
            Path(self._tmp).replace(final)
        except OSError as exc:
            self.abort()
            raise SinkError(
                f"cannot finish part {self.key} of {self.target!r}: {exc.strerror or exc}",
                path=self.target,
            ) from exc
        self._raw = self._tmp = None
        return {"file": Path(final).name, "records": self.records, **self.receipt()}

    def abort(self) -> None:
        """Close and delete the part's temporary file."""
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.close()
            self._raw = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                Path(self._tmp).unlink()
            self._tmp = None


def append_parts(
    staging: Staging, receipts: Sequence[Any], binary: IO[bytes], *, separator: bytes = b""
) -> int:
    """
    Copy the parts *receipts* name, in order, into *binary*.

    Args:
        staging: The output's staging directory.
        receipts: The parts' receipts, in output order.
        binary: Where to copy (the target's temporary file, or its gzip layer).
        separator: Bytes written between two non-empty parts.

    Returns:
        How many records the parts hold.
    """
    records = 0
    for receipt in non_empty(receipts):
        if records and separator:
            binary.write(separator)
        with staging.file(receipt).open("rb") as part:
            shutil.copyfileobj(part, binary, _BUFFER)
        records += receipt["records"]
    return records


def binary_layer(stream: IO[Any]) -> IO[bytes]:
    """
    Return the binary stream under a text stream that has nothing pending (or *stream*).

    Nothing is flushed: a flush would end a compressed block early, and the
    output would no longer be byte for byte the one written in one place.
    """
    if isinstance(stream, io.TextIOWrapper):
        binary: IO[bytes] = stream.buffer
        return binary
    return stream


def non_empty(receipts: Sequence[Any]) -> list[dict[str, Any]]:
    """The receipts of parts that hold records, in order."""
    return [r for r in receipts if isinstance(r, dict) and r.get("records")]


def commit_assembled(
    file: AtomicFile, staging: Staging, assemble: Callable[[IO[bytes]], object]
) -> None:
    """
    Build an output from its parts and commit it, or leave nothing at all.

    *assemble* writes the output to the binary layer of *file*'s temporary
    file; then the file is committed (fsync + rename). On any failure the
    temporary file is discarded. The staging directory is removed either way.

    Raises:
        SinkError: Writing failed (an ``OSError`` names the output).
    """
    try:
        binary = binary_layer(file.stream())
        guard_write(file.path, lambda: assemble(binary))
        file.commit()
    except BaseException:
        file.abort()
        raise
    finally:
        staging.remove()
