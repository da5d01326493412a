"""
Sources and sinks: files in and out, and in-memory records.

:func:`read` and :func:`write` pick the format from the file name::

    import datapunk

    source = datapunk.io.read("flights.csv", null_values=["", "NA"])
    sink = datapunk.io.write("clean.jsonl")
    report = pipeline.run(source, sink, dead_letter="rejects.jsonl")

``pipeline.run("in.csv", "out.jsonl")`` does the same with default options.

========================  =========================  ==========================
suffix                    source                     position
========================  =========================  ==========================
``.csv``, ``.tsv``        :class:`CsvSource`         line where the row starts
``.jsonl``, ``.ndjson``   :class:`JsonlSource`       line number
``.json``                 :class:`JsonSource`        array index
``.parquet``, ``.pq``     :class:`ParquetSource`     row index
========================  =========================  ==========================

Each may end in ``.gz`` (gzip-compressed). Positions count from 1 for lines
(as an editor shows them) and from 0 for indexes. Sinks write to a temporary
file next to the target and rename it into place when the run succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from datapunk._core.errors import ConfigurationError, SinkError, SourceError
from datapunk.io._csv import CsvSink, CsvSource
from datapunk.io._files import DEFAULT_MAX_LINE_BYTES
from datapunk.io._json import JsonSink, JsonSource
from datapunk.io._jsonl import JsonlSink, JsonlSource
from datapunk.io._memory import MemorySink, MemorySource
from datapunk.io._parquet import ParquetSink, ParquetSource

if TYPE_CHECKING:
    import os

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "FORMATS",
    "CsvSink",
    "CsvSource",
    "Format",
    "JsonSink",
    "JsonSource",
    "JsonlSink",
    "JsonlSource",
    "MemorySink",
    "MemorySource",
    "ParquetSink",
    "ParquetSource",
    "detect_format",
    "read",
    "write",
]

Format: TypeAlias = Literal["csv", "tsv", "jsonl", "json", "parquet"]
"""The file formats :func:`read` and :func:`write` know."""

#: Suffix (without ``.gz``) → format.
FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_SOURCES: dict[str, Any] = {
    "csv": CsvSource,
    "jsonl": JsonlSource,
    "json": JsonSource,
    "parquet": ParquetSource,
}
_SINKS: dict[str, Any] = {
    "csv": CsvSink,
    "jsonl": JsonlSink,
    "json": JsonSink,
    "parquet": ParquetSink,
}

for _cls in (
    CsvSink,
    CsvSource,
    JsonSink,
    JsonSource,
    JsonlSink,
    JsonlSource,
    MemorySink,
    MemorySource,
    ParquetSink,
    ParquetSource,
):
    _cls.__module__ = "datapunk.io"
del _cls


def detect_format(path: str | os.PathLike[str]) -> Format | None:
    """
    Return the format a file name implies, ignoring a trailing ``.gz``.

    Args:
        path: A file name.

    Returns:
        The format, or ``None`` if the suffix is unknown.

    Example:
        >>> detect_format("data/flights.csv.gz")
        'csv'
    """
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return FORMATS.get(suffixes[-1]) if suffixes else None


def _known() -> str:
    return ", ".join(sorted(FORMATS)) + " (each optionally .gz)"


def _resolve(path: str | os.PathLike[str], fmt: str | None, role: str) -> str:
    error = SourceError if role == "input" else SinkError
    if fmt is not None:
        name = fmt.lower().lstrip(".")
        name = FORMATS.get(f".{name}", name)
        if name not in {"csv", "tsv", "jsonl", "json", "parquet"}:
            raise ConfigurationError(
                f"unknown format {fmt!r}; choose one of csv, tsv, jsonl, json, parquet",
                details={"option": "format", "value": fmt},
            )
        return name
    found = detect_format(path)
    if found is None:
        raise error(
            f"cannot tell the format of {role} {str(path)!r} from its name: use one of "
            f"{_known()}, or pass format= (--format on the command line)",
            path=str(path),
        )
    return found


def read(path: str | os.PathLike[str], *, format: str | None = None, **options: Any) -> Any:  # noqa: A002
    r"""
    Open a file as a source, choosing the format by suffix.

    The file is checked now: a missing or unreadable file, a directory, an
    unknown suffix or a corrupt Parquet file raises here, before a run
    writes anything.

    Args:
        path: The file (``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson``, ``.json``,
            ``.parquet``; each optionally ``.gz``).
        format: Use this format whatever the suffix.
        **options: Passed to the source class (``delimiter=``, ``encoding=``,
            ``null_values=``, ``max_line_bytes=``, ``batch_size=``...).

    Returns:
        A source (:class:`CsvSource`, :class:`JsonlSource`, :class:`JsonSource`
        or :class:`ParquetSource`).

    Raises:
        SourceError: If the file cannot be read or its format is unknown.
        ConfigurationError: If an option is invalid.

    Example:
        >>> import datapunk, pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "in.tsv"
        >>> _ = p.write_text("a\tb\n1\t2\n")
        >>> list(datapunk.io.read(p).read())
        [(2, {'a': '1', 'b': '2'})]
    """
    fmt = _resolve(path, format, "input")
    if fmt == "tsv":
        options.setdefault("delimiter", "\t")
        fmt = "csv"
    return _build(_SOURCES[fmt], path, options, "source")


def write(path: str | os.PathLike[str], *, format: str | None = None, **options: Any) -> Any:  # noqa: A002
    """
    Open a file as a sink, choosing the format by suffix.

    Nothing is created until the first write; the output appears under its
    name only when the sink is closed at the end of a successful run.

    Args:
        path: The target file (same suffixes as :func:`read`).
        format: Use this format whatever the suffix.
        **options: Passed to the sink class (``delimiter=``, ``fieldnames=``,
            ``row_group_size=``...).

    Returns:
        A sink (:class:`CsvSink`, :class:`JsonlSink`, :class:`JsonSink` or
        :class:`ParquetSink`).

    Raises:
        SinkError: If the directory is missing or not writable, or the format is unknown.
        ConfigurationError: If an option is invalid.
    """
    fmt = _resolve(path, format, "output")
    if fmt == "tsv":
        options.setdefault("delimiter", "\t")
        fmt = "csv"
    return _build(_SINKS[fmt], path, options, "sink")


def _build(cls: Any, path: str | os.PathLike[str], options: dict[str, Any], role: str) -> Any:
    try:
        return cls(path, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        import inspect

        allowed = [
            p.name
            for p in inspect.signature(cls).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        unknown = sorted(set(options) - set(allowed))
        raise ConfigurationError(
            f"{cls.__name__} ({role} for {str(path)!r}) has no option(s) {unknown}; "
            f"its options are {allowed}",
            details={"options": unknown},
        ) from None
