"""Stages: one step of a pipeline, wrapping a plain function."""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast, final, overload

from datapunk._core.errors import ConfigurationError, DataProcessingError
from datapunk._core.types import KINDS, ON_ERROR, Kind, OnError

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable, Callable, Iterable

    from datapunk._core.pipeline import Pipeline
    from datapunk._core.policies import CircuitBreaker, Retry

__all__ = ["Batch", "Filter", "FlatMap", "Stage", "as_stage", "stage"]

In = TypeVar("In", contravariant=True)  # noqa: PLC0105 - conventional short names
Out = TypeVar("Out", covariant=True)  # noqa: PLC0105
A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")


def _default_name(fn: Any) -> str:
    name = getattr(fn, "__name__", None)
    if name is None and isinstance(fn, functools.partial):
        return _default_name(fn.func)
    if name is None:
        name = type(fn).__name__
    return "lambda" if name == "<lambda>" else str(name)


def _is_async(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we need the bound method itself
    return call is not None and (
        inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
    )


def _check_on_error(value: object, where: str) -> OnError | None:
    if value is None or value in ON_ERROR:
        return value
    raise ConfigurationError(
        f"{where}: on_error={value!r} is not one of {', '.join(map(repr, ON_ERROR))}",
        details={"option": "on_error", "value": repr(value)},
    )


class Stage(Generic[In, Out]):
    """
    One step of a pipeline: a function applied to every record.

    Build stages with :func:`datapunk.stage` or the helpers :class:`Filter`,
    :class:`FlatMap` and :class:`Batch`; compose them with ``|`` or
    :class:`datapunk.Pipeline`. ``Stage[A, B] | Stage[B, C]`` is a
    ``Pipeline[A, C]``; a type checker rejects stages whose types do not meet.

    Args:
        fn: The function. ``map``: record → record; ``filter``: record → bool;
            ``flat_map``: record → iterable of records; ``batch``: list of
            records → list of as many results. May be ``async``.
        kind: ``"map"``, ``"filter"``, ``"flat_map"`` or ``"batch"``.
        name: Name in reports and dead letters (default: the function's name).
        on_error: ``"dead_letter"``, ``"skip"`` or ``"raise"``; ``None`` uses
            the run's policy.
        size: Records per call, for ``batch`` stages only.
        retry: A :class:`datapunk.Retry`, or a number of attempts (``retry=3``).
        timeout: Seconds allowed per record (per call for a batch stage).
        breaker: A :class:`datapunk.CircuitBreaker`, possibly shared with
            other stages calling the same service.
        optional: On failure (after retries), pass the record on unchanged
            and count a degradation. See :mod:`datapunk._core.policies` for
            how the policies compose.

    Raises:
        ConfigurationError: If *fn* is not callable or an option is invalid.

    Example:
        >>> import datapunk
        >>> double = datapunk.Stage(lambda x: x * 2, name="double")
        >>> double(21)
        42

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_convert",
        "breaker",
        "fn",
        "is_async",
        "kind",
        "name",
        "on_error",
        "optional",
        "retry",
        "size",
        "timeout",
        "warn",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        kind: Kind = "map",
        name: str | None = None,
        on_error: OnError | None = None,
        size: int | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        breaker: CircuitBreaker | None = None,
        optional: bool = False,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(
                f"a stage needs a callable, got {type(fn).__name__} {fn!r:.60}",
                details={"got": type(fn).__name__},
            )
        if kind not in KINDS:
            raise ConfigurationError(
                f"kind={kind!r} is not one of {', '.join(KINDS)}",
                details={"option": "kind", "value": repr(kind)},
            )
        label = name if name is not None else _default_name(fn)
        if not isinstance(label, str) or not label:
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        if kind == "batch":
            if size is None:
                raise ConfigurationError(
                    f"batch stage {label!r} needs size=, the number of records per call"
                )
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigurationError(
                    f"batch stage {label!r}: size must be a positive integer, got {size!r}",
                    details={"option": "size", "value": repr(size)},
                )
        elif size is not None:
            raise ConfigurationError(f"size= is only for batch stages; {label!r} is a {kind}")
        self.fn = fn
        self.kind: Kind = kind
        self.name = label
        self.on_error: OnError | None = _check_on_error(on_error, f"stage {label!r}")
        self.size = size
        self.is_async = _is_async(fn)
        self.warn = False
        self._convert: Callable[[Exception], DataProcessingError] | None = None
        self.retry: Retry | None = None
        self.timeout: float | None = None
        self.breaker: CircuitBreaker | None = None
        self.optional = False
        if retry is not None or timeout is not None or breaker is not None or optional:
            self._set_policies(retry, timeout, breaker, optional)

    def _set_policies(
        self,
        retry: Retry | int | None,
        timeout: float | None,
        breaker: CircuitBreaker | None,
        optional: bool,
    ) -> None:
        from datapunk._core.policies import CircuitBreaker, check_timeout, to_retry

        owner = f"stage {self.name!r}"
        self.retry = to_retry(retry, owner)
        self.timeout = check_timeout(timeout, owner)
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ConfigurationError(
                f"{owner}: breaker= must be a datapunk.CircuitBreaker, got {breaker!r:.60}",
                details={"option": "breaker", "value": repr(breaker)},
            )
        self.breaker = breaker
        if not isinstance(optional, bool):
            raise ConfigurationError(
                f"{owner}: optional= must be True or False, got {optional!r:.60}",
                details={"option": "optional", "value": repr(optional)},
            )
        self.optional = optional

    # ------------------------------------------------------------------ calls
    def __call__(self, record: In) -> Out | None:
        """
        Run one record through the stage, for tests and the REPL.

        Args:
            record: The input record.

        Returns:
            The output record, or ``None`` when a filter drops it. A stage that
            can emit several records (``flat_map``) raises: use :meth:`apply`.

        Raises:
            ValidationError: The record is invalid.
            StageError: The stage's function raised; the original is ``__cause__``.
        """
        out = self.apply(record)
        if not out:
            return None
        if len(out) > 1:
            raise ConfigurationError(
                f"{self.name!r} emitted {len(out)} records for one input; "
                "call .apply(record) to get them all as a list"
            )
        return out[0]

    def apply(self, record: In) -> list[Out]:
        """
        Run one record through the stage and return every output.

        Args:
            record: The input record.

        Returns:
            A list: empty when filtered, one item for a map, any number for a
            flat_map.

        Raises:
            ValidationError: The record is invalid.
            StageError: The stage's function raised; the original is ``__cause__``.
        """
        from datapunk._core.engine import apply_one

        return apply_one(self, record)

    # ------------------------------------------------------------ composition
    def __or__(self, other: Stage[Out, T]) -> Pipeline[In, T]:
        """Compose: ``a | b`` runs ``b`` on the output of ``a``."""
        from datapunk._core.pipeline import Pipeline

        return Pipeline._compose(self, other)

    def stages(self) -> tuple[Stage[Any, Any], ...]:
        """Return the primitive stages this stage runs, in order."""
        return (self,)

    def options(self) -> dict[str, Any]:
        """
        Return the stage's settings as plain data (for ``check`` and reprs).

        Returns:
            A mapping of option names to values, omitting defaults.
        """
        opts: dict[str, Any] = {"kind": self.kind}
        if self.on_error is not None:
            opts["on_error"] = self.on_error
        if self.size is not None:
            opts["size"] = self.size
        if self.is_async:
            opts["async"] = True
        if self.warn:
            opts["warn"] = True
        if self.retry is not None:
            opts["retry"] = self.retry
        if self.timeout is not None:
            opts["timeout"] = self.timeout
        if self.breaker is not None:
            opts["breaker"] = self.breaker
        if self.optional:
            opts["optional"] = True
        return opts

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"<{type(self).__name__} {self.name!r} {opts}>"


# ------------------------------------------------------------------- helpers
@final
class Filter(Stage[T, T]):
    """
    A stage that keeps the records for which *predicate* is true.

    Args:
        predicate: record → bool (may be ``async``).
        name: Name in reports (default: the predicate's name).
        on_error: Error policy for records whose predicate raises.
        retry: Retry policy (see :class:`Stage`).
        timeout: Seconds allowed per record.
        breaker: A :class:`datapunk.CircuitBreaker`.
        optional: Pass the record on unchanged when the stage fails.

    Example:
        >>> import datapunk
        >>> p = datapunk.Filter(lambda x: x > 2)
        >>> p.apply(3), p.apply(1)
        ([3], [])
    """

    __slots__ = ()

    def __init__(
        self,
        predicate: Callable[[T], bool] | Callable[[T], Awaitable[bool]],
        *,
        name: str | None = None,
        on_error: OnError | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        breaker: CircuitBreaker | None = None,
        optional: bool = False,
    ) -> None:
        super().__init__(
            predicate,
            kind="filter",
            name=name,
            on_error=on_error,
            retry=retry,
            timeout=timeout,
            breaker=breaker,
            optional=optional,
        )


@final
class FlatMap(Stage[A, B]):
    """
    A stage that turns each record into any number of records.

    Args:
        fn: record → iterable of records (may be ``async``, or an async generator).
        name: Name in reports (default: the function's name).
        on_error: Error policy.
        retry: Retry policy (see :class:`Stage`).
        timeout: Seconds allowed per record.
        breaker: A :class:`datapunk.CircuitBreaker`.
        optional: Pass the record on unchanged when the stage fails.

    Example:
        >>> import datapunk
        >>> words = datapunk.FlatMap(str.split, name="words")
        >>> words.apply("a b c")
        ['a', 'b', 'c']
    """

    __slots__ = ()

    def __init__(
        self,
        fn: Callable[[A], Iterable[B]]
        | Callable[[A], Awaitable[Iterable[B]]]
        | Callable[[A], AsyncIterable[B]],
        *,
        name: str | None = None,
        on_error: OnError | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        breaker: CircuitBreaker | None = None,
        optional: bool = False,
    ) -> None:
        super().__init__(
            fn,
            kind="flat_map",
            name=name,
            on_error=on_error,
            retry=retry,
            timeout=timeout,
            breaker=breaker,
            optional=optional,
        )


@final
class Batch(Stage[A, B]):
    """
    A stage that processes records a list at a time, for vectorised work.

    *fn* receives up to *size* records and returns one result per record, in
    order. To fail one record without failing the batch, return an exception
    instance in its place. If *fn* raises, every record of the batch fails.
    Batches are formed within each chunk the runner reads, so a batch after a
    filter may hold fewer than *size* records.

    Args:
        fn: list of records → list of results of the same length (may be ``async``).
        size: Largest number of records per call.
        name: Name in reports (default: the function's name).
        on_error: Error policy.
        retry: Retry policy (see :class:`Stage`).
        timeout: Seconds allowed per record.
        breaker: A :class:`datapunk.CircuitBreaker`.
        optional: Pass the record on unchanged when the stage fails.

    Raises:
        ConfigurationError: If *size* is not a positive integer.

    Example:
        >>> import datapunk
        >>> square = datapunk.Batch(lambda xs: [x * x for x in xs], size=64)
        >>> square.apply(3)
        [9]
    """

    __slots__ = ()

    def __init__(
        self,
        fn: Callable[[list[A]], list[B]] | Callable[[list[A]], Awaitable[list[B]]],
        *,
        size: int,
        name: str | None = None,
        on_error: OnError | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        breaker: CircuitBreaker | None = None,
        optional: bool = False,
    ) -> None:
        super().__init__(
            fn,
            kind="batch",
            name=name,
            on_error=on_error,
            size=size,
            retry=retry,
            timeout=timeout,
            breaker=breaker,
            optional=optional,
        )


# ------------------------------------------------------------------ decorator
class _MapDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[[A], Awaitable[B]], /) -> Stage[A, B]: ...
    @overload
    def __call__(self, fn: Callable[[A], B], /) -> Stage[A, B]: ...


class _FilterDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[[A], Awaitable[bool]], /) -> Stage[A, A]: ...
    @overload
    def __call__(self, fn: Callable[[A], bool], /) -> Stage[A, A]: ...


class _FlatMapDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[[A], AsyncIterable[B]], /) -> Stage[A, B]: ...
    @overload
    def __call__(self, fn: Callable[[A], Awaitable[Iterable[B]]], /) -> Stage[A, B]: ...
    @overload
    def __call__(self, fn: Callable[[A], Iterable[B]], /) -> Stage[A, B]: ...


class _BatchDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[[list[A]], Awaitable[list[B]]], /) -> Stage[A, B]: ...
    @overload
    def __call__(self, fn: Callable[[list[A]], list[B]], /) -> Stage[A, B]: ...


@overload
def stage(fn: Callable[[A], Awaitable[B]], /) -> Stage[A, B]: ...
@overload
def stage(fn: Callable[[A], B], /) -> Stage[A, B]: ...
@overload
def stage(
    *,
    kind: Literal["map"] = ...,
    name: str | None = ...,
    on_error: OnError | None = ...,
    retry: Retry | int | None = ...,
    timeout: float | None = ...,
    breaker: CircuitBreaker | None = ...,
    optional: bool = ...,
) -> _MapDecorator: ...
@overload
def stage(
    *,
    kind: Literal["filter"],
    name: str | None = ...,
    on_error: OnError | None = ...,
    retry: Retry | int | None = ...,
    timeout: float | None = ...,
    breaker: CircuitBreaker | None = ...,
    optional: bool = ...,
) -> _FilterDecorator: ...
@overload
def stage(
    *,
    kind: Literal["flat_map"],
    name: str | None = ...,
    on_error: OnError | None = ...,
    retry: Retry | int | None = ...,
    timeout: float | None = ...,
    breaker: CircuitBreaker | None = ...,
    optional: bool = ...,
) -> _FlatMapDecorator: ...
@overload
def stage(
    *,
    kind: Literal["batch"],
    size: int,
    name: str | None = ...,
    on_error: OnError | None = ...,
    retry: Retry | int | None = ...,
    timeout: float | None = ...,
    breaker: CircuitBreaker | None = ...,
    optional: bool = ...,
) -> _BatchDecorator: ...
def stage(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    kind: Kind = "map",
    name: str | None = None,
    on_error: OnError | None = None,
    size: int | None = None,
    retry: Retry | int | None = None,
    timeout: float | None = None,
    breaker: CircuitBreaker | None = None,
    optional: bool = False,
) -> Any:
    """
    Turn a function into a :class:`Stage`, bare or with options.

    Args:
        fn: The function, when used bare (``@datapunk.stage``).
        kind: ``"map"`` (default), ``"filter"``, ``"flat_map"`` or ``"batch"``.
        name: Name in reports and dead letters (default: the function's name).
        on_error: ``"dead_letter"``, ``"skip"`` or ``"raise"``; ``None`` uses the run's.
        size: Records per call, for ``kind="batch"``.
        retry: A :class:`datapunk.Retry`, or a number of attempts (``retry=3``).
        timeout: Seconds allowed per record (per call for a batch stage).
        breaker: A :class:`datapunk.CircuitBreaker`, possibly shared with
            other stages calling the same service.
        optional: When the stage fails (after its retries), pass the record
            on unchanged and count a degradation instead of failing it.

    Returns:
        A :class:`Stage`, or a decorator that makes one.

    Raises:
        ConfigurationError: If an option is invalid or *fn* is not callable.

    Example:
        >>> import datapunk
        >>> @datapunk.stage
        ... def double(x: int) -> int:
        ...     return x * 2
        >>> @datapunk.stage(kind="filter")
        ... def small(x: int) -> bool:
        ...     return x < 10
        >>> (double | small).apply(3)
        [6]
    """
    policies: dict[str, Any] = {
        "retry": retry,
        "timeout": timeout,
        "breaker": breaker,
        "optional": optional,
    }
    if fn is not None:
        return Stage(fn, kind=kind, name=name, on_error=on_error, size=size, **policies)

    def decorate(func: Callable[..., Any]) -> Stage[Any, Any]:
        return Stage(func, kind=kind, name=name, on_error=on_error, size=size, **policies)

    # Check options now, so a mistake points at the decorator line.
    if kind not in KINDS:
        raise ConfigurationError(
            f"kind={kind!r} is not one of {', '.join(KINDS)}",
            details={"option": "kind", "value": repr(kind)},
        )
    _check_on_error(on_error, "@datapunk.stage")
    return decorate


def as_stage(obj: Any) -> Stage[Any, Any]:
    """
    Coerce *obj* to a :class:`Stage`.

    Accepts a :class:`Stage` (returned as is), any object meeting the
    :class:`datapunk.plugins.Stage` protocol (a callable with ``name`` and
    ``kind``), or a plain callable (a ``map`` stage).

    Args:
        obj: The thing to use as a stage.

    Returns:
        A :class:`Stage`.

    Raises:
        ConfigurationError: If *obj* cannot be a stage.
    """
    if isinstance(obj, Stage):
        return obj
    if not callable(obj):
        raise ConfigurationError(
            f"cannot use {type(obj).__name__} {obj!r:.60} as a stage: "
            "pass a function, a datapunk.Stage, or an object with __call__, name and kind",
            details={"got": type(obj).__name__},
        )
    kind = cast("Kind", getattr(obj, "kind", "map"))
    name = getattr(obj, "name", None)
    size = getattr(obj, "size", None) if kind == "batch" else None
    on_error = getattr(obj, "on_error", None)
    return Stage(
        obj, kind=kind, name=name if isinstance(name, str) else None, on_error=on_error, size=size
    )
