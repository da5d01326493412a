"""
datapunk: production-grade record pipelines.

Read records, validate them, transform them, write them, with every record
accounted for and failures isolated::

    import datapunk

    @datapunk.stage
    def double(x: int) -> int:
        return x * 2

    report = (double | datapunk.Filter(lambda x: x > 2)).run([1, 2, 3], sink=[])

The three nouns are :class:`Stage`, :class:`Validator` and :class:`Pipeline`.
Subpackages (:mod:`datapunk.io`, :mod:`datapunk.runners`,
:mod:`datapunk.plugins`...) load on first use, so ``import datapunk`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from datapunk._core.errors import (
    CircuitOpenError,
    ConfigurationError,
    DataProcessingError,
    DatapunkError,
    ErrorBudgetExceeded,
    RetryError,
    SinkError,
    SourceError,
    StageError,
    StageTimeout,
    ValidationError,
)
from datapunk._core.pipeline import Pipeline
from datapunk._core.policies import CircuitBreaker, Retry
from datapunk._core.report import ErrorSample, RunReport, StageReport
from datapunk._core.stage import Batch, Filter, FlatMap, Stage, stage
from datapunk._core.types import DeadLetter, Malformed, Reason
from datapunk._core.validator import Validate, Validator, check

if TYPE_CHECKING:
    from datapunk import io, observe, plugins, runners, testing
    from datapunk.state import SQLiteCheckpoint, replay

__all__ = [
    "Batch",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigurationError",
    "DataProcessingError",
    "DatapunkError",
    "DeadLetter",
    "ErrorBudgetExceeded",
    "ErrorSample",
    "Filter",
    "FlatMap",
    "Malformed",
    "Pipeline",
    "Reason",
    "Retry",
    "RetryError",
    "RunReport",
    "SQLiteCheckpoint",
    "SinkError",
    "SourceError",
    "Stage",
    "StageError",
    "StageReport",
    "StageTimeout",
    "Validate",
    "ValidationError",
    "Validator",
    "__version__",
    "check",
    "io",
    "observe",
    "plugins",
    "replay",
    "runners",
    "stage",
    "testing",
]

# Public classes report the import users write (``datapunk.Pipeline``).
for _obj in (
    Batch,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    DataProcessingError,
    DatapunkError,
    DeadLetter,
    ErrorBudgetExceeded,
    ErrorSample,
    Filter,
    FlatMap,
    Malformed,
    Pipeline,
    Reason,
    Retry,
    RetryError,
    RunReport,
    SinkError,
    SourceError,
    Stage,
    StageError,
    StageReport,
    StageTimeout,
    Validate,
    ValidationError,
    Validator,
    check,
    stage,
):
    _obj.__module__ = "datapunk"
del _obj

_LAZY_SUBMODULES = frozenset(
    {"cli", "config", "io", "observe", "plugins", "runners", "state", "testing"}
)


# Loaded on first use (sqlite3 is not needed to import datapunk).
_LAZY_STATE = frozenset({"SQLiteCheckpoint", "replay"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_STATE:
        return getattr(importlib.import_module("datapunk.state"), name)
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"datapunk.{name}")
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("datapunk")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            from datapunk._version import __version__

            return __version__
    raise AttributeError(f"module 'datapunk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
