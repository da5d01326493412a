"""
Extension points: every one is a :class:`typing.Protocol`.

Any object with the right methods works; no base class is required. These
protocols are what :meth:`datapunk.Pipeline.run` and friends accept.

- :class:`Stage`: one step (``__call__``, ``name``, ``kind``).
- :class:`Validator`: a check (``validate``, ``name``).
- :class:`Source`: records with positions (``read``, ``name``).
- :class:`Sink`: where records go (``write``, ``close``; optionally ``abort``).
- :class:`Runner`: where chunks are processed (``run``).
- :class:`Hook`: receives run, chunk and error events (any subset of methods).
- :class:`CheckpointStore`: remembers how far a run got.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from datapunk._core.report import RunReport
    from datapunk._core.run import Job
    from datapunk._core.types import Kind, Position

__all__ = [
    "CheckpointStore",
    "Hook",
    "Runner",
    "Sink",
    "Source",
    "Stage",
    "Validator",
]

T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)


@runtime_checkable
class Stage(Protocol[In_contra, Out_co]):
    """
    **Protocol**: one step of a pipeline.

    ``kind`` says how ``__call__`` is used: ``"map"`` (record → record),
    ``"filter"`` (record → bool), ``"flat_map"`` (record → iterable) or
    ``"batch"`` (list → list of the same length; give the object a ``size``).
    ``__call__`` may be ``async``.

    Example:
        >>> import datapunk
        >>> class AddOne:
        ...     name = "add_one"
        ...     kind = "map"
        ...     def __call__(self, record: int) -> int:
        ...         return record + 1
        >>> datapunk.Pipeline(AddOne()).apply(1)
        [2]
    """

    @property
    def name(self) -> str:
        """Name in reports and dead letters."""
        ...

    @property
    def kind(self) -> Kind:
        """``"map"``, ``"filter"``, ``"flat_map"`` or ``"batch"``."""
        ...

    def __call__(self, record: In_contra, /) -> Out_co:
        """Process one record (or one list, for ``batch``)."""
        ...


@runtime_checkable
class Validator(Protocol[In_contra, Out_co]):
    """
    **Protocol**: a check returning the trusted record or raising an error.

    ``validate`` raises :class:`datapunk.ValidationError` for a bad record.

    Wrap one with ``datapunk.Validator(obj.validate, name=obj.name)`` to use it
    as a stage and combine it with ``&``.

    Example:
        >>> import datapunk
        >>> class NotEmpty:
        ...     name = "not_empty"
        ...     def validate(self, record: str) -> str:
        ...         if not record:
        ...             raise datapunk.ValidationError(
        ...                 reasons=[datapunk.Reason((), "must not be empty", record)])
        ...         return record
        >>> v = NotEmpty()
        >>> datapunk.Validator(v.validate, name=v.name).apply("x")
        ['x']
    """

    @property
    def name(self) -> str:
        """Name in reports and dead letters."""
        ...

    def validate(self, record: In_contra, /) -> Out_co:
        """Return the trusted record or raise :class:`datapunk.ValidationError`."""
        ...


@runtime_checkable
class Source(Protocol[T_co]):
    """
    **Protocol**: records with their positions.

    ``read()`` yields ``(position, record)`` pairs. For input it cannot decode,
    it yields ``(position, datapunk.Malformed(raw, message))``: the run turns
    that into a failed record and goes on. An error that makes further reading
    impossible should raise :class:`datapunk.SourceError`.

    Example:
        >>> import datapunk
        >>> class Lines:
        ...     name = "lines"
        ...     def __init__(self, text: str) -> None:
        ...         self.text = text
        ...     def read(self):
        ...         for n, line in enumerate(self.text.split(), 1):
        ...             yield n, line
        >>> out = []
        >>> datapunk.Pipeline(str.upper).run(Lines("a b"), out).records_out
        2
    """

    @property
    def name(self) -> str:
        """Name (or path) for messages and reports."""
        ...

    def read(self) -> Iterator[tuple[Position, T_co | Any]]:
        """Yield ``(position, record)`` pairs."""
        ...


@runtime_checkable
class Sink(Protocol[T_contra]):
    """
    **Protocol**: where records go.

    ``write`` receives records in batches, in order. ``close`` commits the
    output when the run succeeded. If the sink also has ``abort()``, it is
    called instead of ``close`` when the run fails, to discard the output
    (file sinks write to a temporary file and rename it only in ``close``).

    Example:
        >>> import datapunk
        >>> class Printer:
        ...     name = "printer"
        ...     def write(self, records):
        ...         for r in records:
        ...             print(r)
        ...     def close(self):
        ...         print("done")
        >>> _ = datapunk.Pipeline(str.upper).run(["a"], Printer())
        A
        done
    """

    def write(self, records: Sequence[T_contra], /) -> None:
        """Write one batch of records."""
        ...

    def close(self) -> None:
        """Commit the output."""
        ...


@runtime_checkable
class Runner(Protocol):
    """
    **Protocol**: decides where chunks are processed.

    A runner receives the run's ``job``, processes the chunks of
    ``job.chunks()`` with ``job.process`` (or
    :func:`datapunk._core.engine.process_chunk` on ``job.ops`` elsewhere) and
    hands the results, in input order, to ``job.execute``.
    """

    def run(self, job: Job, /) -> RunReport:
        """Run the job to completion and return its report."""
        ...


@runtime_checkable
class Hook(Protocol):
    """
    **Protocol**: receives events of a run.

    Implement any subset of ``on_run_start(job)``, ``on_chunk(job, result)``,
    ``on_error(job, dead_letter, action)`` and ``on_run_end(job, report)``;
    missing methods are skipped. Hooks run in the calling thread, in order.
    """

    def on_run_end(self, job: Job, report: RunReport, /) -> None:
        """Called once when the run ends (``report.ok`` says how)."""
        ...


@runtime_checkable
class CheckpointStore(Protocol):
    """
    **Protocol**: remembers how far a run got, so it can resume after a crash.

    Per run key, it keeps the last source position whose records were fully
    written.
    """

    def load(self, key: str, /) -> dict[str, Any] | None:
        """Return the saved state for *key*, or ``None``."""
        ...

    def save(self, key: str, state: dict[str, Any], /) -> None:
        """Durably save *state* for *key*."""
        ...

    def clear(self, key: str, /) -> None:
        """Forget *key* (the run finished)."""
        ...
