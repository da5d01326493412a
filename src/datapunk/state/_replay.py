"""Dead letters as data: read them back and replay them through a fixed pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

import attrs

from datapunk._core.errors import ConfigurationError, SourceError
from datapunk._core.types import DeadLetter, Malformed, safe_str

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import datapunk
    from datapunk._core.report import RunReport

__all__ = ["DeadLetterSource", "ReplayReport", "read_dead_letters", "replay"]


def read_dead_letters(path: str | os.PathLike[str]) -> Iterator[DeadLetter]:
    """
    Read a dead-letter JSON Lines file (as written by ``dead_letter="x.jsonl"``).

    Args:
        path: The file.

    Yields:
        One :class:`datapunk.DeadLetter` per line.

    Raises:
        SourceError: If the file cannot be read or a line is not a dead letter.
    """
    for line_no, item in DeadLetterSource(path).read():
        if isinstance(item, Malformed):
            raise SourceError(
                f"{str(path)!r} line {line_no}: {item.message}", path=str(path), position=line_no
            )
        yield item


@final
class DeadLetterSource:
    """
    A source of the dead letters in a JSON Lines file, one per line.

    Each item is a :class:`datapunk.DeadLetter`; a line that is not one
    becomes a :class:`datapunk.Malformed` item at its line number, so nothing
    in the file is silently skipped.

    Args:
        path: The dead-letter file.

    Raises:
        SourceError: If the file does not exist or cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        if not self.path.is_file():
            raise SourceError(
                f"dead-letter file {self.name!r} does not exist or is not a file", path=self.name
            )

    def read(self) -> Iterator[tuple[int, Any]]:
        """
        Yield ``(line_number, dead_letter)`` pairs.

        Yields:
            The line number and the :class:`datapunk.DeadLetter` (or ``Malformed``).
        """
        try:
            f = self.path.open("rb")
        except OSError as exc:
            raise SourceError(
                f"cannot read dead-letter file {self.name!r}: {exc.strerror or exc}",
                path=self.name,
            ) from exc
        with f:
            for n, raw in enumerate(f, 1):
                if raw.isspace():
                    continue
                yield n, _parse_dead_letter(raw, n, self.name)


def _parse_dead_letter(raw: bytes, n: int, name: str) -> DeadLetter | Malformed:
    why = "not a dead letter (needs 'record' and 'stage')"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        why = safe_str(exc)
    else:
        if isinstance(data, dict) and "record" in data and "stage" in data:
            try:
                return DeadLetter.from_dict(data)
            except (ValueError, TypeError) as exc:
                why = safe_str(exc)
    return Malformed(
        raw.decode("utf-8", "replace").rstrip("\r\n")[:10_000],
        f"line {n} of {name!r} is not a dead letter: {why}",
        "MalformedDeadLetter",
    )


class _Records:
    """The records of dead letters, each at its original position."""

    def __init__(self, items: Iterable[Any], name: str) -> None:
        self.items = items
        self.name = name
        self.total = 0

    def read(self) -> Iterator[tuple[Any, Any]]:
        for n, item in enumerate(self._dead_letters(), 1):
            self.total += 1
            if isinstance(item, tuple):  # (line, Malformed) from a file
                yield item
                continue
            position = item.position if item.position is not None else n
            yield position, item.record

    def _dead_letters(self) -> Iterator[Any]:
        for item in self.items:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Malformed):  # noqa: PLR2004
                yield item
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], DeadLetter):  # noqa: PLR2004
                yield item[1]
            elif isinstance(item, DeadLetter):
                yield item
            else:
                raise ConfigurationError(
                    f"replay() takes datapunk.DeadLetter objects or a dead-letter file, "
                    f"got an item of type {type(item).__name__}",
                    details={"got": type(item).__name__},
                )


@final
@attrs.frozen
class ReplayReport:
    """
    What a replay did: how many failed records were recovered.

    ``total == recovered + failed_again``: a replayed record either goes
    through (to the sink, or dropped by a filter) or fails again (to the new
    dead-letter output, or ``report.dead_letters``).

    Attributes:
        total: Dead letters replayed.
        recovered: Records that went through the fixed pipeline.
        failed_again: Records that failed again (or were skipped).
        report: The run's full :class:`datapunk.RunReport`.
    """

    total: int
    recovered: int
    failed_again: int
    report: RunReport

    def __str__(self) -> str:
        return (
            f"replayed {self.total:,} dead letters: {self.recovered:,} recovered, "
            f"{self.failed_again:,} failed again\n{self.report}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the replay report as JSON-friendly data."""
        return {
            "total": self.total,
            "recovered": self.recovered,
            "failed_again": self.failed_again,
            "report": self.report.to_dict(),
        }


def replay(
    dead_letters: Iterable[DeadLetter] | str | os.PathLike[str],
    pipeline: datapunk.Stage[Any, Any],
    sink: Any = None,
    *,
    dead_letter: Any = None,
    **run_options: Any,
) -> ReplayReport:
    """
    Push failed records through a (fixed) pipeline again.

    Each dead letter's original record is processed at its original
    position, so records that fail again keep pointing at the source.
    Nothing is lost: every replayed record is either recovered (written to
    *sink*, or dropped by a filter) or fails again into *dead_letter* (or
    ``report.dead_letters``).

    Args:
        dead_letters: :class:`datapunk.DeadLetter` objects (a list, or
            ``store.dead_letters(key)`` of a :class:`datapunk.SQLiteCheckpoint`),
            or the path of a dead-letter JSON Lines file.
        pipeline: The pipeline to run them through.
        sink: Where recovered records go (any form :meth:`Pipeline.run` accepts).
        dead_letter: Where records that fail again go.
        **run_options: Passed to :meth:`datapunk.Pipeline.run` (``runner=``...).

    Returns:
        A :class:`ReplayReport`: totals and the run's report.

    Raises:
        SourceError: If the dead-letter file cannot be read.
        ConfigurationError: If an argument is invalid.

    Example:
        >>> import datapunk
        >>> report = datapunk.Pipeline(int, name="parse").run(["1", "x"], [])
        >>> fixed = datapunk.Pipeline(lambda s: 0 if s == "x" else int(s), name="parse")
        >>> out = []
        >>> datapunk.replay(report.dead_letters, fixed, out).recovered, out
        (1, [0])

    .. versionadded:: 0.1.0
    """
    from datapunk._core.pipeline import Pipeline

    if isinstance(dead_letters, str | os.PathLike):
        items: Iterable[Any] = DeadLetterSource(dead_letters).read()
        name = str(dead_letters)
    else:
        items = dead_letters
        name = "<dead letters>"
    source = _Records(items, name)
    pipe = pipeline if isinstance(pipeline, Pipeline) else Pipeline(pipeline)
    report = pipe.run(source, sink, dead_letter=dead_letter, **run_options)
    failed_again = report.failed + report.skipped
    return ReplayReport(
        total=report.records_in,
        recovered=report.records_in - failed_again,
        failed_again=failed_again,
        report=report,
    )
