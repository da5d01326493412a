"""
The exception hierarchy.

Every exception datapunk raises on purpose derives from :class:`DatapunkError`
and carries a stable ``code``, a ``details`` mapping and :meth:`~DatapunkError.to_dict`.
Where a built-in exception fits, the class also derives from it, so generic
handlers (``except ValueError``) keep working::

    DatapunkError
    ├── ConfigurationError (ValueError)       bad arguments, specs, plugins
    ├── DataProcessingError                   one record could not be processed
    │   ├── ValidationError (ValueError)      ...because it is invalid (has .reasons)
    │   └── StageError                        ...because a stage raised
    │       ├── StageTimeout (TimeoutError)   ...because it took too long
    │       ├── RetryError                    ...even after retrying
    │       └── CircuitOpenError              ...because the stage's breaker is open
    ├── SourceError (OSError)                 input cannot be read
    ├── SinkError (OSError)                   output cannot be written
    └── ErrorBudgetExceeded                   too many records failed; has .report
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from datapunk._core.types import Position, Reason, safe_str

if TYPE_CHECKING:
    from datapunk._core.report import RunReport

__all__ = [
    "CircuitOpenError",
    "ConfigurationError",
    "DataProcessingError",
    "DatapunkError",
    "ErrorBudgetExceeded",
    "RetryError",
    "SinkError",
    "SourceError",
    "StageError",
    "StageTimeout",
    "ValidationError",
]


class DatapunkError(Exception):
    """
    Base class of every error datapunk raises on purpose.

    Attributes:
        code: A stable, machine-readable identifier (``"validation_error"``...).
        message: The human-readable message (also ``str(error)``).
        details: Context as plain data: stage, position, path...

    Example:
        >>> import datapunk
        >>> err = datapunk.ConfigurationError("bad option", details={"option": "kind"})
        >>> err.to_dict()["code"]
        'configuration_error'
    """

    code: ClassVar[str] = "datapunk_error"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors defeat the default pickling; errors cross
        # process boundaries (Processes and Dask runners), so restore by state.
        return (_restore_error, (type(self), self.__dict__.copy(), self.args))

    def to_dict(self) -> dict[str, Any]:
        """
        Return the error as JSON-friendly data.

        Returns:
            A mapping with ``code``, ``type``, ``message`` and ``details``.
        """
        return {
            "code": self.code,
            "type": type(self).__name__,
            "message": self.message,
            "details": {k: _plain(v) for k, v in self.details.items()},
        }


def _restore_error(cls: type[DatapunkError], state: dict[str, Any], args: tuple[Any, ...]) -> Any:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Reason):
        return value.to_dict()
    return safe_str(value)


class ConfigurationError(DatapunkError, ValueError):
    """
    A pipeline, stage, plugin or run option is set up wrongly.

    Raised before any record is processed, so nothing was written.
    """

    code = "configuration_error"


class DataProcessingError(DatapunkError):
    """
    One record could not be processed.

    Attributes:
        stage: Name of the stage that rejected the record, if known.
        position: Position of the record in its source, if known.
    """

    code = "data_processing_error"

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        position: Position | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        merged = {"stage": stage, "position": position, **(details or {})}
        super().__init__(message, details=merged)
        self.stage = stage
        self.position = position


class ValidationError(DataProcessingError, ValueError):
    """
    A record is invalid; ``reasons`` holds one entry per problem.

    Attributes:
        reasons: Every problem found, each a :class:`datapunk.Reason` with the
            field path, the message and the offending value (masked if secret).

    Example:
        >>> import datapunk
        >>> positive = datapunk.check(lambda r: r["x"] > 0, "x must be positive")
        >>> try:
        ...     positive({"x": -1})
        ... except datapunk.ValidationError as err:
        ...     print(err.reasons[0].message)
        x must be positive
    """

    code = "validation_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        reasons: Iterable[Reason] = (),
        stage: str | None = None,
        position: Position | None = None,
    ) -> None:
        self.reasons: tuple[Reason, ...] = tuple(reasons)
        if message is None:
            message = _summarise(self.reasons)
        super().__init__(message, stage=stage, position=position)

    def to_dict(self) -> dict[str, Any]:
        """
        Return the error as JSON-friendly data, with one entry per reason.

        Returns:
            A mapping with ``code``, ``type``, ``message`` and ``details``
            (``details["reasons"]`` lists the reasons).
        """
        data = super().to_dict()
        data["details"]["reasons"] = [r.to_dict() for r in self.reasons]
        return data


def _summarise(reasons: tuple[Reason, ...]) -> str:
    if not reasons:
        return "record is invalid"
    head = "; ".join(str(r) for r in reasons[:5])
    more = f" (and {len(reasons) - 5} more)" if len(reasons) > 5 else ""  # noqa: PLR2004
    noun = "problem" if len(reasons) == 1 else "problems"
    return f"{len(reasons)} validation {noun}: {head}{more}"


class StageError(DataProcessingError):
    """
    A stage raised while processing a record.

    The user's exception is kept as ``__cause__``, so its traceback shows in
    logs and debuggers.

    Attributes:
        error_type: Name of the original exception's type.
    """

    code = "stage_error"

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        position: Position | None = None,
        error_type: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            message,
            stage=stage,
            position=position,
            details={"error_type": error_type, **(details or {})},
        )
        self.error_type = error_type

    @classmethod
    def wrap(cls, exc: BaseException, *, stage: str, position: Position | None) -> StageError:
        """
        Wrap a user's exception, naming stage and position.

        Args:
            exc: The exception the stage raised.
            stage: Name of the stage.
            position: Position of the record in its source.

        Returns:
            A :class:`StageError` whose ``__cause__`` is *exc*.
        """
        where = f"stage {stage!r}" + ("" if position is None else f" at position {position}")
        err = cls(
            f"{where} raised {type(exc).__name__}: {safe_str(exc)}",
            stage=stage,
            position=position,
            error_type=type(exc).__name__,
        )
        err.__cause__ = exc
        return err


class StageTimeout(StageError, TimeoutError):
    """
    A stage took longer than its ``timeout=`` on one record.

    Attributes:
        limit: The time limit, in seconds.
        elapsed: How long the attempt had run when it was given up, in seconds.
    """

    code = "stage_timeout"
    limit: float | None = None
    elapsed: float | None = None


class RetryError(StageError):
    """
    A stage kept failing after every retry; the last failure is ``__cause__``.

    Attributes:
        attempts: How many times the stage was tried.
    """

    code = "retry_error"
    attempts: int = 1


class CircuitOpenError(StageError):
    """A stage's circuit breaker is open: the record failed fast without a call."""

    code = "circuit_open"


class SourceError(DatapunkError, OSError):
    """
    The input cannot be read (missing, unreadable, unknown format).

    Attributes:
        path: The path or name of the source, if any.
        position: Where in the source reading stopped, if known.
    """

    code = "source_error"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        position: Position | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details={"path": path, "position": position, **(details or {})})
        self.path = path
        self.position = position


class SinkError(DatapunkError, OSError):
    """
    The output cannot be written (disk full, permission denied, a sink raised).

    Attributes:
        path: The path or name of the sink, if any.
    """

    code = "sink_error"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details={"path": path, **(details or {})})
        self.path = path


class ErrorBudgetExceeded(DatapunkError):
    """
    More records failed than ``max_errors`` allows; the run stopped.

    Attributes:
        report: The partial :class:`datapunk.RunReport` of what was done.
    """

    code = "error_budget_exceeded"

    def __init__(self, message: str, *, report: RunReport) -> None:
        super().__init__(
            message,
            details={
                "failed": report.failed,
                "skipped": report.skipped,
                "records_in": report.records_in,
            },
        )
        self.report = report
