"""
Per-stage resilience: retry, timeout, circuit breaker and graceful degradation.

A stage takes any of ``retry=``, ``timeout=``, ``breaker=`` and ``optional=``.
For each record (each call, for a ``batch`` stage) they compose in one fixed
order, from the outside in::

    breaker( retry( timeout( fn(record) ) ) )

- The **breaker** is asked once per record. While it is open the record fails
  at once with :class:`datapunk.CircuitOpenError`, without calling the stage
  and without retrying. It sees one outcome per record: the outcome after the
  retries.
- **Retry** repeats the call when it raises one of ``Retry.on`` (never a
  :class:`datapunk.ValidationError`), sleeping with exponential backoff and
  full jitter between attempts. When the attempts run out the record fails
  with :class:`datapunk.RetryError` (``__cause__`` is the last failure).
- **Timeout** bounds each attempt; a timed-out attempt raises
  :class:`datapunk.StageTimeout`, which is retried like any other error when
  ``Retry.on`` includes it (the default, ``Exception``, does).
- **optional=True** applies last: when the record fails after all of the
  above, it passes on unchanged and the report counts a degradation.

A stage without policies runs its function directly: policies cost nothing
unless they are used.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, final

from datapunk._core.errors import (
    CircuitOpenError,
    ConfigurationError,
    RetryError,
    StageTimeout,
    ValidationError,
)
from datapunk._core.types import safe_str

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from concurrent.futures import Future

__all__ = [
    "CircuitBreaker",
    "Guard",
    "Retry",
    "check_timeout",
    "make_guard",
    "to_retry",
]

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]

# Counter slots of an op (kept equal to datapunk._core.engine's).
_RETRIES: Final = 6
_BREAKER_OPENS: Final = 8

_ATTEMPTS_ATTR: Final = "_datapunk_attempts"
_EVENTS: Final = {
    "open": "breaker.opened",
    "half_open": "breaker.half_open",
    "closed": "breaker.closed",
}


def _note_attempts(exc: BaseException, attempts: int) -> None:
    with contextlib.suppress(AttributeError, TypeError):  # exceptions with __slots__
        setattr(exc, _ATTEMPTS_ATTR, attempts)


def _positive(value: object, option: str, owner: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{owner}: {option} must be a number, got {type(value).__name__} {value!r:.40}",
            details={"option": option, "value": repr(value)},
        )
    if not (value >= 0 if allow_zero else value > 0) or value != value:  # noqa: PLR0124 - NaN
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(
            f"{owner}: {option} must be {bound}, got {value!r}",
            details={"option": option, "value": repr(value)},
        )
    return float(value)


# ---------------------------------------------------------------------- retry
@final
class Retry:
    """
    Retry a failing stage with exponential backoff and full jitter.

    The delay before retry *n* (``n = 1`` after the first failure) is drawn
    uniformly from ``[0, min(max_delay, backoff * 2 ** (n - 1))]`` ("full
    jitter"), so many workers retrying at once spread out instead of
    hammering a recovering service together. With ``jitter=False`` the delay
    is the upper bound itself.

    Args:
        attempts: Total tries per record, the first one included (``>= 1``).
        backoff: Base delay in seconds.
        max_delay: Upper bound of any one delay, in seconds.
        jitter: Draw each delay at random below its bound (full jitter).
        on: Exception types that are retried; anything else fails at once.
            A :class:`datapunk.ValidationError` is never retried: invalid data
            stays invalid.
        sleep: Called with the delay in seconds between attempts (default
            :func:`time.sleep`, or :func:`asyncio.sleep` for async stages; an
            injected function may return an awaitable). Tests pass a fake so
            they never really sleep.
        rand: Returns a float in ``[0, 1)`` for the jitter (default
            :func:`random.random`).

    Raises:
        ConfigurationError: If an argument is out of range.

    Example:
        >>> import datapunk
        >>> waits = []
        >>> policy = datapunk.Retry(attempts=4, backoff=0.5, jitter=False, sleep=waits.append)
        >>> calls = []
        >>> @datapunk.stage(retry=policy)
        ... def flaky(x: int) -> int:
        ...     calls.append(x)
        ...     if len(calls) < 3:
        ...         raise ConnectionError("try again")
        ...     return x
        >>> flaky(7), waits
        (7, [0.5, 1.0])

    .. versionadded:: 0.1.0
    """

    __slots__ = ("attempts", "backoff", "jitter", "max_delay", "on", "rand", "sleep")

    def __init__(
        self,
        attempts: int = 3,
        *,
        backoff: float = 0.1,
        max_delay: float = 30.0,
        jitter: bool = True,
        on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        sleep: Callable[[float], Any] | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError(
                "Retry: attempts must be an integer >= 1 (the first try included), "
                f"got {attempts!r}",
                details={"option": "attempts", "value": repr(attempts)},
            )
        self.attempts = attempts
        self.backoff = _positive(backoff, "backoff", "Retry", allow_zero=True)
        self.max_delay = _positive(max_delay, "max_delay", "Retry", allow_zero=True)
        self.jitter = bool(jitter)
        types = on if isinstance(on, tuple) else (on,)
        if not types or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in types
        ):
            raise ConfigurationError(
                f"Retry: on= must be an exception type or a tuple of them, got {on!r:.80}",
                details={"option": "on", "value": repr(on)},
            )
        self.on: tuple[type[BaseException], ...] = types
        if sleep is not None and not callable(sleep):
            raise ConfigurationError(f"Retry: sleep= must be callable, got {sleep!r:.60}")
        if rand is not None and not callable(rand):
            raise ConfigurationError(f"Retry: rand= must be callable, got {rand!r:.60}")
        self.sleep = sleep
        self.rand = rand

    def delay(self, retry_number: int) -> float:
        """
        Return the pause before retry number *retry_number* (1-based).

        Args:
            retry_number: 1 for the pause after the first failure, and so on.

        Returns:
            Seconds to wait.
        """
        bound = min(self.max_delay, self.backoff * 2.0 ** (retry_number - 1))
        if not self.jitter:
            return bound
        if self.rand is not None:
            return bound * self.rand()
        import random

        return bound * random.random()  # noqa: S311 - jitter, not security

    def retries(self, exc: BaseException) -> bool:
        """
        Say whether *exc* is worth another attempt under this policy.

        Args:
            exc: The exception an attempt raised.

        Returns:
            True if it is one of :attr:`on` and not a validation error.
        """
        return isinstance(exc, self.on) and not isinstance(exc, ValidationError)

    def to_dict(self) -> dict[str, Any]:
        """Return the policy's settings as plain data."""
        return {
            "attempts": self.attempts,
            "backoff": self.backoff,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
            "on": [t.__name__ for t in self.on],
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Retry):
            return NotImplemented
        return self.to_dict() == other.to_dict() and (self.on == other.on)

    def __hash__(self) -> int:
        return hash((self.attempts, self.backoff, self.max_delay, self.jitter, self.on))

    def __repr__(self) -> str:
        on = ", ".join(t.__name__ for t in self.on)
        return (
            f"Retry(attempts={self.attempts}, backoff={self.backoff}, "
            f"max_delay={self.max_delay}, jitter={self.jitter}, on=({on},))"
        )


def to_retry(value: object, owner: str) -> Retry | None:
    """
    Normalise a stage's ``retry=`` option.

    Args:
        value: ``None``, a :class:`Retry`, or an int (shorthand for
            ``Retry(attempts=value)``).
        owner: Names the stage in messages.

    Returns:
        The policy, or ``None``.

    Raises:
        ConfigurationError: If *value* is none of those.
    """
    if value is None or isinstance(value, Retry):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return Retry(attempts=value)
    raise ConfigurationError(
        f"{owner}: retry= must be a datapunk.Retry or a number of attempts >= 1, got {value!r:.60}",
        details={"option": "retry", "value": repr(value)},
    )


def check_timeout(value: object, owner: str) -> float | None:
    """
    Normalise a stage's ``timeout=`` option (seconds per record, or ``None``).

    Raises:
        ConfigurationError: If *value* is not a positive number.
    """
    if value is None:
        return None
    return _positive(value, "timeout", owner)


# ------------------------------------------------------------ circuit breaker
@final
class CircuitBreaker:
    """
    Stop calling a failing downstream service for a while, then probe it.

    The breaker starts **closed** (calls go through). After
    *failure_threshold* consecutive failed records it **opens**: records fail
    at once with :class:`datapunk.CircuitOpenError` (routed by the stage's
    ``on_error``, so nothing is lost; or passed on unchanged with
    ``optional=True``). After *reset_after* seconds it is **half-open**: up to
    *half_open_max* trial calls go through; the first success closes it, a
    failure opens it again for another cool-down.

    One breaker may be shared by several stages that call the same service:
    their failures add up and they open and close together. Every state
    change is logged (``breaker.opened``, ``breaker.half_open``,
    ``breaker.closed``) and counted; the report's per-stage
    ``breaker_opens`` says which stage's failure opened it. A validation
    error is bad data, not a service failure: it does not count.

    A breaker is thread-safe. Each process has its own copy (the processes
    runner pickles it), so its state is not shared across processes.

    Args:
        failure_threshold: Consecutive failures that open the breaker.
        reset_after: Seconds the breaker stays open before a trial call.
        half_open_max: Trial calls allowed at once while half-open.
        name: Name in logs (default ``"breaker"``).
        clock: Returns the time in seconds (default :func:`time.monotonic`);
            tests inject a fake.

    Raises:
        ConfigurationError: If an argument is out of range.

    Example:
        >>> import datapunk
        >>> breaker = datapunk.CircuitBreaker(failure_threshold=2, reset_after=60)
        >>> breaker.state
        'closed'

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_failures",
        "_lock",
        "_opened_at",
        "_state",
        "_trials",
        "clock",
        "failure_threshold",
        "half_open_max",
        "name",
        "opened",
        "reset_after",
        "transitions",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        half_open_max: int = 1,
        *,
        name: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        for option, value in (
            ("failure_threshold", failure_threshold),
            ("half_open_max", half_open_max),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"CircuitBreaker: {option} must be an integer >= 1, got {value!r}",
                    details={"option": option, "value": repr(value)},
                )
        self.failure_threshold = failure_threshold
        self.reset_after = _positive(reset_after, "reset_after", "CircuitBreaker", allow_zero=True)
        self.half_open_max = half_open_max
        self.name = name or "breaker"
        self.clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0
        self.opened = 0
        """How many times the breaker opened."""
        self.transitions: list[tuple[BreakerState, BreakerState]] = []
        """Every state change, in order, as ``(from, to)``."""

    # -------------------------------------------------------------- state
    @property
    def state(self) -> BreakerState:
        """``"closed"``, ``"open"`` or ``"half_open"`` (open and cooled down)."""
        with self._lock:
            if self._state == "open" and self.clock() - self._opened_at >= self.reset_after:
                return "half_open"
            return self._state

    def reset(self) -> None:
        """Close the breaker and forget past failures."""
        with self._lock:
            self._state, self._failures, self._trials = "closed", 0, 0

    def _move(self, to: BreakerState, stage: str, **info: Any) -> None:
        # Called with the lock held.
        frm = self._state
        self._state = to
        self.transitions.append((frm, to))
        from datapunk.observe import get_logger

        log = get_logger(breaker=self.name, stage=stage)
        if to == "open":
            log.warning(_EVENTS[to], previous=frm, **info)
        else:
            log.info(_EVENTS[to], previous=frm, **info)

    def _before(self, stage: str) -> bool:
        """Admit a call or raise; returns True for a half-open trial call."""
        with self._lock:
            if self._state == "closed":
                return False
            now = self.clock()
            if self._state == "open":
                waited = now - self._opened_at
                if waited < self.reset_after:
                    raise CircuitOpenError(
                        f"stage {stage!r}: circuit breaker {self.name!r} is open after "
                        f"{self._failures} consecutive failures; retrying the service in "
                        f"{self.reset_after - waited:.1f}s. The record was not sent",
                        error_type="CircuitOpenError",
                        details={"breaker": self.name, "state": "open"},
                    )
                self._move("half_open", stage)
                self._trials = 0
            if self._trials >= self.half_open_max:
                raise CircuitOpenError(
                    f"stage {stage!r}: circuit breaker {self.name!r} is half-open and "
                    f"already has {self._trials} trial call(s) in flight; the record was not sent",
                    error_type="CircuitOpenError",
                    details={"breaker": self.name, "state": "half_open"},
                )
            self._trials += 1
            return True

    def _after(
        self, exc: BaseException | None, trial: bool, stage: str, counts: list[int] | None
    ) -> None:
        """Record one call's outcome (``exc`` None: success)."""
        failed = isinstance(exc, Exception) and not isinstance(exc, ValidationError)
        interrupted = exc is not None and not isinstance(exc, Exception)
        with self._lock:
            if trial:
                self._trials = max(0, self._trials - 1)
                if interrupted or self._state != "half_open":
                    return
                if failed:
                    self._open(stage, counts, "trial call failed")
                else:
                    self._failures = 0
                    self._move("closed", stage)
                return
            if self._state != "closed" or interrupted:
                return
            if not failed:
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open(stage, counts, f"{self._failures} consecutive failures")

    def _open(self, stage: str, counts: list[int] | None, why: str) -> None:
        self._opened_at = self.clock()
        self.opened += 1
        if counts is not None:
            counts[_BREAKER_OPENS] += 1
        self._move("open", stage, reason=why, cool_down_s=self.reset_after)

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self._lock = threading.Lock()

    def to_dict(self) -> dict[str, Any]:
        """Return the breaker's settings as plain data."""
        return {
            "failure_threshold": self.failure_threshold,
            "reset_after": self.reset_after,
            "half_open_max": self.half_open_max,
            "name": self.name,
        }

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(failure_threshold={self.failure_threshold}, "
            f"reset_after={self.reset_after}, half_open_max={self.half_open_max}, "
            f"name={self.name!r})"
        )


# ------------------------------------------------------------ sync timeouts
_MAX_WORKERS = 64


class _Workers:
    """
    Daemon threads that run sync stages under a timeout.

    Python cannot stop a thread: a call that times out keeps running in its
    worker until it returns by itself; its result is then thrown away and the
    worker serves the next call. The threads are daemons, so a call stuck for
    ever does not keep the interpreter from exiting. At most ``_MAX_WORKERS``
    threads exist; when all are busy (many calls stuck), a new call waits for
    one during its own time limit and then times out.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0

    def submit(self, fn: Callable[[Any], Any], arg: Any, limit: float) -> Future[Any] | None:
        from concurrent.futures import Future

        deadline = time.monotonic() + limit
        with self._cond:
            while not self._idle and self._count >= _MAX_WORKERS:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._idle:
                worker = self._idle.pop()
            else:
                self._count += 1
                worker = _Worker(self, self._count)
        fut: Future[Any] = Future()
        worker.tasks.put((fn, arg, fut))
        return fut

    def release(self, worker: _Worker) -> None:
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()


class _Worker:
    def __init__(self, pool: _Workers, n: int) -> None:
        import queue

        self.pool = pool
        self.tasks: queue.SimpleQueue[tuple[Callable[[Any], Any], Any, Future[Any]]] = (
            queue.SimpleQueue()
        )
        thread = threading.Thread(target=self._loop, name=f"datapunk-timeout-{n}", daemon=True)
        thread.start()

    def _loop(self) -> None:
        while True:
            fn, arg, fut = self.tasks.get()
            try:
                result = fn(arg)
            except BaseException as exc:  # handed to the caller, which re-raises it
                fut.set_exception(exc)
            else:
                fut.set_result(result)
            del fn, arg, fut
            self.pool.release(self)


_workers: _Workers | None = None
_workers_lock = threading.Lock()


def _pool() -> _Workers:
    global _workers  # noqa: PLW0603 - one lazily created pool per process
    if _workers is None:
        with _workers_lock:
            if _workers is None:
                _workers = _Workers()
    return _workers


def _timeout_error(stage: str, limit: float, elapsed: float, note: str = "") -> StageTimeout:
    err = StageTimeout(
        f"stage {stage!r} timed out after {elapsed:.3f}s (limit {limit:g}s){note}",
        error_type="StageTimeout",
        details={"limit": limit, "elapsed": round(elapsed, 6)},
    )
    err.limit, err.elapsed = limit, elapsed
    return err


# --------------------------------------------------------------------- guard
@final
class Guard:
    """
    The policies of one stage, applied around its function.

    :meth:`bind` returns the callable the fused loop uses instead of the raw
    function, reporting retries (and breaker openings) into one chunk's
    counters.
    """

    __slots__ = ("breaker", "fn", "is_async", "kind", "retry", "stage", "timeout")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        stage: str,
        kind: str,
        is_async: bool,
        retry: Retry | None,
        timeout: float | None,
        breaker: CircuitBreaker | None,
    ) -> None:
        self.fn = fn
        self.stage = stage
        self.kind = kind
        self.is_async = is_async
        self.retry = retry
        self.timeout = timeout
        self.breaker = breaker

    def bind(self, counts: list[int] | None) -> Callable[[Any], Any]:
        """
        Return the guarded function, counting into *counts* (one op's counters).

        Args:
            counts: The op's counters in the current chunk, or ``None``.

        Returns:
            A function of one argument (async if the stage is async).
        """
        if self.is_async:
            return self._bind_async(counts)
        return self._bind_sync(counts)

    # ---------------------------------------------------------------- sync
    def _once_sync(self) -> Callable[[Any], Any]:
        fn = self.fn
        if self.kind == "flat_map":
            raw = fn

            def fn(arg: Any) -> Any:
                return list(raw(arg))

        limit = self.timeout
        if limit is None:
            return fn
        stage = self.stage
        inner = fn

        from concurrent.futures import TimeoutError as FutureTimeout

        def timed(arg: Any) -> Any:
            t0 = time.monotonic()
            fut = _pool().submit(inner, arg, limit)
            if fut is None:
                raise _timeout_error(
                    stage,
                    limit,
                    time.monotonic() - t0,
                    f"; all {_MAX_WORKERS} timeout threads are busy with calls that timed out "
                    "earlier and are still running",
                )
            try:
                return fut.result(timeout=max(0.0, limit - (time.monotonic() - t0)))
            except FutureTimeout:
                if fut.done():  # the function's own TimeoutError, or it just finished
                    return fut.result()
                raise _timeout_error(stage, limit, time.monotonic() - t0) from None

        return timed

    def _bind_sync(self, counts: list[int] | None) -> Callable[[Any], Any]:
        once = self._once_sync()
        retry, breaker, stage = self.retry, self.breaker, self.stage

        def attempt(arg: Any) -> Any:
            if retry is None:
                return once(arg)
            sleep = retry.sleep if retry.sleep is not None else time.sleep
            n = 1
            while True:
                try:
                    return once(arg)
                except Exception as exc:
                    if not retry.retries(exc):
                        if n > 1:
                            _note_attempts(exc, n)
                        raise
                    if n >= retry.attempts:
                        raise _exhausted(stage, n, exc) from exc
                    if counts is not None:
                        counts[_RETRIES] += 1
                    sleep(retry.delay(n))
                    n += 1

        if breaker is None:
            return attempt

        def guarded(arg: Any) -> Any:
            trial = breaker._before(stage)
            try:
                result = attempt(arg)
            except BaseException as exc:
                breaker._after(exc, trial, stage, counts)
                raise
            breaker._after(None, trial, stage, counts)
            return result

        return guarded

    # --------------------------------------------------------------- async
    def _bind_async(self, counts: list[int] | None) -> Callable[[Any], Awaitable[Any]]:
        import asyncio

        fn, kind, limit = self.fn, self.kind, self.timeout
        retry, breaker, stage = self.retry, self.breaker, self.stage

        async def call(arg: Any) -> Any:
            result = fn(arg)
            if kind == "flat_map":
                if hasattr(result, "__aiter__"):
                    return [item async for item in result]
                return list(await result)
            return await result

        async def once(arg: Any) -> Any:
            if limit is None:
                return await call(arg)
            t0 = time.monotonic()
            cm = asyncio.timeout(limit)
            try:
                async with cm:
                    return await call(arg)
            except TimeoutError:
                if cm.expired():
                    raise _timeout_error(stage, limit, time.monotonic() - t0) from None
                raise

        async def attempt(arg: Any) -> Any:
            if retry is None:
                return await once(arg)
            n = 1
            while True:
                try:
                    return await once(arg)
                except Exception as exc:
                    if not retry.retries(exc):
                        if n > 1:
                            _note_attempts(exc, n)
                        raise
                    if n >= retry.attempts:
                        raise _exhausted(stage, n, exc) from exc
                    if counts is not None:
                        counts[_RETRIES] += 1
                    pause = retry.delay(n)
                    if retry.sleep is None:
                        await asyncio.sleep(pause)
                    else:
                        slept = retry.sleep(pause)
                        if inspect.isawaitable(slept):
                            await slept
                    n += 1

        if breaker is None:
            return attempt

        async def guarded(arg: Any) -> Any:
            trial = breaker._before(stage)
            try:
                result = await attempt(arg)
            except BaseException as exc:
                breaker._after(exc, trial, stage, counts)
                raise
            breaker._after(None, trial, stage, counts)
            return result

        return guarded

    def __repr__(self) -> str:
        return (
            f"<Guard {self.stage!r} retry={self.retry!r} timeout={self.timeout!r} "
            f"breaker={self.breaker!r}>"
        )


def _exhausted(stage: str, attempts: int, exc: Exception) -> RetryError:
    err = RetryError(
        f"stage {stage!r} failed after {attempts} attempts; last error "
        f"{type(exc).__name__}: {safe_str(exc)}",
        error_type=type(exc).__name__,
        details={"attempts": attempts},
    )
    err.attempts = attempts
    _note_attempts(err, attempts)
    return err


def make_guard(
    fn: Callable[..., Any],
    *,
    stage: str,
    kind: str,
    is_async: bool,
    retry: Retry | None,
    timeout: float | None,
    breaker: CircuitBreaker | None,
) -> Guard | None:
    """
    Return the :class:`Guard` for a stage's policies, or ``None`` if it has none.

    Args:
        fn: The stage's function.
        stage: The stage's unique name in the run.
        kind: The stage's kind.
        is_async: Whether *fn* is async.
        retry: The retry policy.
        timeout: Seconds per attempt.
        breaker: The circuit breaker.

    Returns:
        A guard, or ``None`` when no policy is set.
    """
    if retry is None and timeout is None and breaker is None:
        return None
    return Guard(
        fn,
        stage=stage,
        kind=kind,
        is_async=is_async,
        retry=retry,
        timeout=timeout,
        breaker=breaker,
    )
