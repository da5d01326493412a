"""Per-stage resilience: retry, timeout, circuit breaker, optional stages (issue 5)."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datapunk
from datapunk.testing import capture_logs

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """Fails the first *fails* calls for each record in *bad*, with *exc*."""

    def __init__(self, fails, bad=None, exc=ConnectionError):
        self.fails = fails
        self.bad = bad
        self.exc = exc
        self.calls: dict[object, int] = {}

    def __call__(self, x):
        n = self.calls[x] = self.calls.get(x, 0) + 1
        if (self.bad is None or x in self.bad) and n <= self.fails:
            raise self.exc(f"attempt {n} on {x} failed")
        return x * 10


def no_sleep(waits=None):
    waits = [] if waits is None else waits
    return waits.append


# ----------------------------------------------------------------------- retry
class TestRetryOptions:
    def test_int_is_shorthand_for_attempts(self):
        """retry=3 means datapunk.Retry(attempts=3)."""
        s = datapunk.Stage(lambda x: x, retry=3)
        assert s.retry == datapunk.Retry(attempts=3)
        assert s.options()["retry"] == datapunk.Retry(attempts=3)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"attempts": 0}, "attempts must be an integer >= 1"),
            ({"attempts": True}, "attempts must be an integer >= 1"),
            ({"backoff": -1}, "backoff must be >= 0"),
            ({"max_delay": "x"}, "max_delay must be a number"),
            ({"on": "ValueError"}, "on= must be an exception type"),
            ({"on": ()}, "on= must be an exception type"),
            ({"sleep": 3}, "sleep= must be callable"),
        ],
        ids=["zero", "bool", "negative-backoff", "text-delay", "text-on", "empty-on", "sleep"],
    )
    def test_invalid_retry_is_a_configuration_error(self, kwargs, match):
        """Bad Retry arguments fail at once with a message naming the option."""
        with pytest.raises(datapunk.ConfigurationError, match=match):
            datapunk.Retry(**kwargs)

    @pytest.mark.parametrize(
        ("opts", "match"),
        [
            ({"retry": "3"}, "retry= must be a datapunk.Retry"),
            ({"retry": 0}, "retry= must be a datapunk.Retry"),
            ({"timeout": 0}, "timeout must be > 0"),
            ({"timeout": "1"}, "timeout must be a number"),
            ({"breaker": 3}, "breaker= must be a datapunk.CircuitBreaker"),
            ({"optional": "yes"}, "optional= must be True or False"),
        ],
        ids=["retry-text", "retry-zero", "timeout-zero", "timeout-text", "breaker", "optional"],
    )
    def test_invalid_stage_policy_is_a_configuration_error(self, opts, match):
        """Bad policy options on a stage fail when the stage is built, naming it."""
        with pytest.raises(datapunk.ConfigurationError, match=f"stage 'f'.*{match}"):
            datapunk.Stage(lambda x: x, name="f", **opts)

    def test_helpers_and_decorator_accept_policies(self):
        """Filter, FlatMap, Batch and @stage(...) take the same policy options."""
        r = datapunk.Retry(2)
        b = datapunk.CircuitBreaker()
        made = [
            datapunk.Filter(bool, retry=r, timeout=1, breaker=b, optional=True),
            datapunk.FlatMap(list, retry=r, timeout=1, breaker=b, optional=True),
            datapunk.Batch(list, size=2, retry=r, timeout=1, breaker=b, optional=True),
            datapunk.stage(retry=r, timeout=1, breaker=b, optional=True)(lambda x: x),
            datapunk.stage(kind="filter", retry=2)(bool),
        ]
        for s in made[:4]:
            assert (s.retry, s.timeout, s.breaker, s.optional) == (r, 1.0, b, True)
        assert made[4].retry == r

    def test_delays_grow_exponentially_up_to_max_delay(self):
        """Without jitter the pauses are backoff * 2**n, capped at max_delay."""
        policy = datapunk.Retry(6, backoff=0.5, max_delay=3.0, jitter=False)
        assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]

    def test_full_jitter_draws_below_the_bound(self):
        """With jitter each pause is the bound times a uniform draw in [0, 1)."""
        policy = datapunk.Retry(4, backoff=1.0, max_delay=10.0, rand=lambda: 0.25)
        assert [policy.delay(n) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
        real = datapunk.Retry(4, backoff=1.0)
        assert all(0 <= real.delay(3) < 4.0 for _ in range(100))

    def test_repr_and_to_dict(self):
        """A Retry shows its settings (never the injected sleep)."""
        policy = datapunk.Retry(2, backoff=0.1, on=(KeyError, OSError))
        assert repr(policy) == (
            "Retry(attempts=2, backoff=0.1, max_delay=30.0, jitter=True, on=(KeyError, OSError,))"
        )
        assert policy.to_dict()["on"] == ["KeyError", "OSError"]
        assert hash(policy) == hash(datapunk.Retry(2, backoff=0.1, on=(KeyError, OSError)))


class TestRetryBehaviour:
    def test_transient_failures_are_retried_and_counted(self):
        """Records that fail twice then succeed go through; retries are counted."""
        waits: list[float] = []
        fn = Flaky(2, bad={1, 3})
        s = datapunk.Stage(
            fn, name="fetch", retry=datapunk.Retry(3, backoff=1, jitter=False, sleep=waits.append)
        )
        out: list[int] = []
        report = datapunk.Pipeline(s).run([0, 1, 2, 3], out)
        assert out == [0, 10, 20, 30]
        assert (report.retried, report.stages["fetch"].retries, report.failed) == (4, 4, 0)
        assert waits == [1.0, 2.0, 1.0, 2.0]

    def test_exhausted_attempts_fail_with_retry_error(self):
        """After the last attempt the record fails with RetryError, the cause kept."""
        s = datapunk.Stage(
            Flaky(9, bad={2}), name="fetch", retry=datapunk.Retry(3, sleep=no_sleep())
        )
        out: list[int] = []
        report = datapunk.Pipeline(s).run([1, 2, 3], out)
        assert out == [10, 30]
        (dl,) = report.dead_letters
        assert (dl.record, dl.position, dl.stage, dl.error_type, dl.attempts) == (
            2,
            1,
            "fetch",
            "RetryError",
            3,
        )
        assert dl.message == (
            "stage 'fetch' failed after 3 attempts; "
            "last error ConnectionError: attempt 3 on 2 failed"
        )
        assert report.records_in == len(out) + report.failed

    def test_retry_error_raised_with_cause_and_attempts(self):
        """With on_error='raise' the RetryError carries attempts and __cause__."""
        s = datapunk.Stage(Flaky(9), name="fetch", retry=datapunk.Retry(2, sleep=no_sleep()))
        with pytest.raises(datapunk.RetryError) as info:
            datapunk.Pipeline(s).run([5], [], on_error="raise")
        err = info.value
        assert err.attempts == 2
        assert isinstance(err.__cause__, ConnectionError)
        assert str(err.__cause__) == "attempt 2 on 5 failed"
        assert (err.stage, err.position) == ("fetch", 0)
        assert err.to_dict()["details"]["attempts"] == 2

    def test_only_listed_exceptions_are_retried(self):
        """An exception outside Retry.on fails at once, after one attempt."""
        fn = Flaky(1, exc=KeyError)
        s = datapunk.Stage(
            fn, name="f", retry=datapunk.Retry(5, on=ConnectionError, sleep=no_sleep())
        )
        report = datapunk.Pipeline(s).run([1], [])
        (dl,) = report.dead_letters
        assert (dl.error_type, dl.attempts, report.retried, fn.calls) == ("KeyError", 1, 0, {1: 1})

    def test_validation_error_is_never_retried(self):
        """Invalid data stays invalid: a ValidationError is not retried, whatever on= says."""
        calls = []

        def validate(x):
            calls.append(x)
            raise datapunk.ValidationError(reasons=[datapunk.Reason(("x",), "must be even", x)])

        s = datapunk.Stage(
            validate, name="v", retry=datapunk.Retry(5, on=(Exception,), sleep=no_sleep())
        )
        report = datapunk.Pipeline(s).run([3], [])
        (dl,) = report.dead_letters
        assert (dl.error_type, dl.attempts, calls, report.retried) == ("ValidationError", 1, [3], 0)
        assert dl.reasons[0].message == "must be even"

    def test_a_different_error_after_retries_keeps_the_attempt_count(self):
        """A non-retryable error on attempt 2 fails the record, recording 2 attempts."""
        calls = {"n": 0}

        def f(x):
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("flaky")
            raise KeyError("gone")

        s = datapunk.Stage(
            f, name="f", retry=datapunk.Retry(5, on=ConnectionError, sleep=no_sleep())
        )
        (dl,) = datapunk.Pipeline(s).run([1], []).dead_letters
        assert (dl.error_type, dl.attempts) == ("KeyError", 2)

    def test_async_stage_retries_with_async_sleep(self):
        """Async stages retry too; an injected sleep may return an awaitable."""
        waits: list[float] = []

        async def fake_sleep(d):
            waits.append(d)

        calls: dict[int, int] = {}

        async def fetch(x):
            calls[x] = calls.get(x, 0) + 1
            if calls[x] < 3:
                raise ConnectionError("down")
            return x + 1

        s = datapunk.stage(retry=datapunk.Retry(3, backoff=2, jitter=False, sleep=fake_sleep))(
            fetch
        )
        out: list[int] = []
        report = datapunk.Pipeline(s).run([1, 2], out)
        assert (out, waits, report.retried) == ([2, 3], [2.0, 4.0, 2.0, 4.0], 4)

    def test_async_stage_default_sleep_is_asyncio(self):
        """Without an injected sleep an async stage pauses with asyncio.sleep."""
        calls = []

        async def fetch(x):
            calls.append(x)
            if len(calls) == 1:
                raise ConnectionError("down")
            return x

        s = datapunk.stage(retry=datapunk.Retry(2, backoff=0.001))(fetch)
        assert datapunk.Pipeline(s).run([7], (out := [])).retried == 1
        assert out == [7]

    def test_sync_default_sleep_really_sleeps(self):
        """Without an injected sleep a sync stage pauses with time.sleep."""
        fn = Flaky(1)
        s = datapunk.Stage(fn, retry=datapunk.Retry(2, backoff=0.02, jitter=False))
        t0 = time.perf_counter()
        datapunk.Pipeline(s).run([1], [])
        assert time.perf_counter() - t0 >= 0.02

    def test_flat_map_and_filter_and_batch_retry(self):
        """Every kind of stage retries the whole call."""
        sleep = no_sleep()
        fm = Flaky(1)
        flat = datapunk.FlatMap(lambda x: [fm(x), fm(x) + 1], retry=datapunk.Retry(2, sleep=sleep))
        fl = Flaky(1)
        keep = datapunk.Filter(lambda x: fl(x) > 0, retry=datapunk.Retry(2, sleep=sleep))
        bt = Flaky(1)
        batch = datapunk.Batch(
            lambda xs: [bt(x) for x in xs], size=10, retry=datapunk.Retry(3, sleep=sleep)
        )
        out: list[int] = []
        report = datapunk.Pipeline(flat, keep, batch).run([1], out)
        assert out == [100, 110]
        # flat_map: 1 retry; filter: 1 per record (10, 11); batch: 1 per failing call
        assert [s.retries for s in report.stages.values()] == [1, 2, 2]
        assert report.failed == 0


# --------------------------------------------------------------------- timeout
class TestTimeout:
    def test_sync_stage_that_hangs_forever_times_out(self):
        """A sync stage that never returns fails its record with StageTimeout; the run goes on."""
        never = threading.Event()

        def hang(x):
            if x == 1:
                never.wait()  # hangs for ever
            return x

        s = datapunk.Stage(hang, name="hang", timeout=0.05)
        out: list[int] = []
        t0 = time.perf_counter()
        report = datapunk.Pipeline(s).run([0, 1, 2], out)
        assert time.perf_counter() - t0 < 2
        assert out == [0, 2]
        (dl,) = report.dead_letters
        assert (dl.record, dl.stage, dl.error_type) == (1, "hang", "StageTimeout")
        assert dl.message.startswith("stage 'hang' timed out after 0.0")
        assert dl.message.endswith("s (limit 0.05s)")
        never.set()

    def test_timeout_error_carries_limit_and_elapsed(self):
        """StageTimeout is a TimeoutError and a StageError, with limit and elapsed."""
        s = datapunk.Stage(lambda x: time.sleep(1), name="slow", timeout=0.02)
        with pytest.raises(datapunk.StageTimeout) as info:
            datapunk.Pipeline(s).run([1], [], on_error="raise")
        err = info.value
        assert isinstance(err, TimeoutError)
        assert isinstance(err, datapunk.StageError)
        assert err.limit == 0.02
        assert err.elapsed is not None
        assert err.elapsed >= 0.02
        assert err.details["limit"] == 0.02

    def test_async_stage_that_hangs_forever_times_out(self):
        """An async stage that never returns is cancelled by asyncio.timeout."""

        async def hang(x):
            if x == 1:
                await asyncio.Event().wait()
            return x

        s = datapunk.stage(timeout=0.05)(hang)
        out: list[int] = []
        report = datapunk.Pipeline(s).run([0, 1, 2], out)
        assert out == [0, 2]
        (dl,) = report.dead_letters
        assert (dl.record, dl.error_type) == (1, "StageTimeout")

    def test_async_stage_own_timeout_error_is_not_a_stage_timeout(self):
        """A TimeoutError the function raises itself stays what it is."""

        async def f(x):
            raise TimeoutError("upstream said so")

        (dl,) = datapunk.Pipeline(datapunk.stage(timeout=5)(f)).run([1]).dead_letters
        assert (dl.error_type, dl.message) == ("TimeoutError", "upstream said so")

    def test_sync_stage_own_timeout_error_is_not_a_stage_timeout(self):
        """A TimeoutError a sync function raises itself stays what it is."""

        def f(x):
            raise TimeoutError("upstream said so")

        (dl,) = datapunk.Pipeline(datapunk.Stage(f, timeout=5)).run([1]).dead_letters
        assert (dl.error_type, dl.message) == ("TimeoutError", "upstream said so")

    def test_fast_stage_is_unaffected(self):
        """Calls that finish in time return their results and raise their errors."""
        s = datapunk.Stage(lambda x: 10 // x, timeout=5)
        out: list[int] = []
        report = datapunk.Pipeline(s).run([1, 0, 2], out)
        assert out == [10, 5]
        assert report.dead_letters[0].error_type == "ZeroDivisionError"

    def test_timeouts_are_retried_inside_retry(self):
        """timeout is inside retry: a timed-out attempt is tried again."""
        calls = []

        def slow_once(x):
            calls.append(x)
            if len(calls) == 1:
                time.sleep(0.5)
            return x

        s = datapunk.Stage(slow_once, timeout=0.05, retry=datapunk.Retry(2, sleep=no_sleep()))
        out: list[int] = []
        report = datapunk.Pipeline(s).run([4], out)
        assert (out, report.retried) == ([4], 1)


# --------------------------------------------------------------------- breaker
class TestCircuitBreaker:
    def test_opens_after_consecutive_failures_and_fails_fast(self):
        """After failure_threshold failures records fail fast with CircuitOpenError."""
        clock = FakeClock()
        breaker = datapunk.CircuitBreaker(failure_threshold=2, reset_after=10, clock=clock)
        fn = Flaky(99)
        s = datapunk.Stage(fn, name="svc", breaker=breaker)
        report = datapunk.Pipeline(s).run([1, 2, 3, 4])
        assert [d.error_type for d in report.dead_letters] == [
            "ConnectionError",
            "ConnectionError",
            "CircuitOpenError",
            "CircuitOpenError",
        ]
        assert fn.calls == {1: 1, 2: 1}  # records 3 and 4 were never sent
        assert report.dead_letters[2].message == (
            "stage 'svc': circuit breaker 'breaker' is open after 2 consecutive failures; "
            "retrying the service in 10.0s. The record was not sent"
        )
        assert report.failed == 4
        assert report.stages["svc"].breaker_opens == 1
        assert breaker.state == "open"
        assert breaker.opened == 1

    def test_half_open_trial_success_closes(self):
        """After reset_after one trial call goes through; its success closes the breaker."""
        clock = FakeClock()
        breaker = datapunk.CircuitBreaker(failure_threshold=1, reset_after=5, clock=clock)
        fn = Flaky(1, bad={1})  # record 1 fails once
        pipe = datapunk.Pipeline(datapunk.Stage(fn, breaker=breaker))
        assert pipe.run([1]).failed == 1
        assert breaker.state == "open"
        clock.now = 5.0
        assert breaker.state == "half_open"
        out: list[int] = []
        assert pipe.run([1, 2], out).failed == 0  # 1 succeeds now (trial), 2 goes through closed
        assert out == [10, 20]
        assert breaker.state == "closed"
        assert breaker.transitions == [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
        ]

    def test_half_open_trial_failure_reopens(self):
        """A failed trial call opens the breaker for another cool-down."""
        clock = FakeClock()
        breaker = datapunk.CircuitBreaker(failure_threshold=1, reset_after=5, clock=clock)
        pipe = datapunk.Pipeline(datapunk.Stage(Flaky(99), name="svc", breaker=breaker))
        pipe.run([1])
        clock.now = 6.0
        report = pipe.run([2, 3])
        assert [d.error_type for d in report.dead_letters] == [
            "ConnectionError",
            "CircuitOpenError",
        ]
        assert breaker.state == "open"
        assert breaker.opened == 2
        assert report.stages["svc"].breaker_opens == 1

    def test_half_open_admits_at_most_half_open_max_trials(self):
        """While half-open, calls beyond half_open_max in flight fail fast."""
        clock = FakeClock()
        breaker = datapunk.CircuitBreaker(1, reset_after=1, half_open_max=1, clock=clock)
        breaker._after(ZeroDivisionError(), breaker._before("s"), "s", None)
        clock.now = 2
        assert breaker._before("s") is True  # the trial
        with pytest.raises(datapunk.CircuitOpenError, match="half-open and already has 1 trial"):
            breaker._before("s")
        breaker._after(None, True, "s", None)
        assert breaker.state == "closed"

    def test_shared_breaker_opens_for_every_stage(self):
        """Two stages calling one service share a breaker: failures add up, both fail fast."""
        clock = FakeClock()
        breaker = datapunk.CircuitBreaker(failure_threshold=2, reset_after=60, clock=clock)
        a = datapunk.Stage(Flaky(99), name="a", breaker=breaker, optional=True)
        b_fn = Flaky(99)
        b = datapunk.Stage(b_fn, name="b", breaker=breaker)
        report = datapunk.Pipeline(a, b).run([1, 2, 3])
        # a fails record 1 (1st failure), b fails record 1 (2nd: opens); then all fast-fail.
        assert report.stages["b"].breaker_opens == 1
        assert report.stages["a"].degraded == 3
        assert b_fn.calls == {1: 1}
        assert [d.error_type for d in report.dead_letters] == [
            "ConnectionError",
            "CircuitOpenError",
            "CircuitOpenError",
        ]

    def test_open_breaker_with_optional_passes_records_through(self):
        """optional=True: while the breaker is open records pass on unchanged."""
        breaker = datapunk.CircuitBreaker(failure_threshold=1, reset_after=60, clock=FakeClock())
        s = datapunk.Stage(Flaky(99), name="enrich", breaker=breaker, optional=True)
        out: list[int] = []
        report = datapunk.Pipeline(s).run([1, 2, 3], out)
        assert out == [1, 2, 3]
        assert (report.degraded, report.failed) == (3, 0)
        assert [e.error_type for e in report.errors] == [
            "ConnectionError",
            "CircuitOpenError",
            "CircuitOpenError",
        ]

    def test_validation_errors_do_not_open_the_breaker(self):
        """Bad data is not a service failure."""
        breaker = datapunk.CircuitBreaker(failure_threshold=1)
        check = datapunk.check(lambda x: x > 0, "must be positive")
        s = datapunk.Stage(check.fn, name="v", breaker=breaker)
        datapunk.Pipeline(s).run([-1, -2, 3])
        assert breaker.state == "closed"

    def test_state_changes_are_logged(self):
        """Opening, half-opening and closing each log one event."""
        clock = FakeClock()
        breaker = datapunk.CircuitBreaker(1, reset_after=1, name="api", clock=clock)
        pipe = datapunk.Pipeline(datapunk.Stage(Flaky(1), name="call", breaker=breaker))
        with capture_logs() as logs:
            pipe.run([1])
            clock.now = 1
            pipe.run([1])
        events = [(e["event"], e.get("breaker"), e.get("stage")) for e in logs if "breaker" in e]
        assert events == [
            ("breaker.opened", "api", "call"),
            ("breaker.half_open", "api", "call"),
            ("breaker.closed", "api", "call"),
        ]

    def test_invalid_breaker_is_a_configuration_error(self):
        """Thresholds must be positive integers."""
        with pytest.raises(datapunk.ConfigurationError, match="failure_threshold must be"):
            datapunk.CircuitBreaker(failure_threshold=0)
        with pytest.raises(datapunk.ConfigurationError, match="reset_after must be >= 0"):
            datapunk.CircuitBreaker(reset_after=-1)

    def test_breaker_pickles_with_its_state(self):
        """A breaker crosses process boundaries (a fresh lock, the same state)."""
        breaker = datapunk.CircuitBreaker(1, reset_after=100)
        breaker._after(ZeroDivisionError(), breaker._before("s"), "s", None)
        copy = pickle.loads(pickle.dumps(breaker))
        assert (copy.state, copy.opened, repr(copy)) == ("open", 1, repr(breaker))
        copy.reset()
        assert copy.state == "closed"


# -------------------------------------------------------------------- optional
class TestOptional:
    def test_failing_optional_stage_passes_records_unchanged(self):
        """The record continues unchanged; the report counts a degradation with its cause."""
        enrich = datapunk.Stage(lambda r: {**r, "geo": 1 / 0}, name="enrich", optional=True)
        out: list[dict[str, int]] = []
        report = datapunk.Pipeline(enrich, datapunk.Stage(lambda r: r["a"], name="get")).run(
            [{"a": 1}, {"a": 2}], out
        )
        assert out == [1, 2]
        assert (report.degraded, report.failed, report.stages["enrich"].degraded) == (2, 0, 2)
        assert report.stages["enrich"].records_out == 2
        sample = report.errors[0]
        assert (sample.action, sample.stage, sample.error_type, sample.position) == (
            "degrade",
            "enrich",
            "ZeroDivisionError",
            0,
        )
        assert report.dead_letters == ()
        assert "degraded 2" in str(report)

    def test_optional_overrides_raise(self):
        """An optional stage never stops the run, even with on_error='raise'."""
        s = datapunk.Stage(lambda x: 1 / 0, optional=True, on_error="raise")
        assert datapunk.Pipeline(s).run([1, 2], (out := [])).degraded == 2
        assert out == [1, 2]

    def test_optional_filter_flat_map_and_batch_keep_the_record(self):
        """Every kind of optional stage passes a failing record on unchanged."""
        pipe = datapunk.Pipeline(
            datapunk.Filter(lambda x: 1 / 0, optional=True),
            datapunk.FlatMap(lambda x: [1 / 0], optional=True),
            datapunk.Batch(lambda xs: 1 / 0, size=2, optional=True),
        )
        out: list[int] = []
        report = pipe.run([1, 2, 3], out)
        assert out == [1, 2, 3]
        assert report.degraded == 9
        assert report.records_in == report.records_out

    def test_optional_async_stage_degrades(self):
        """Async stages degrade the same way."""

        async def f(x):
            raise RuntimeError("down")

        report = datapunk.Pipeline(datapunk.stage(optional=True)(f)).run([1], (out := []))
        assert (out, report.degraded) == ([1], 1)

    def test_optional_after_retries(self):
        """Degradation happens only once retries are exhausted."""
        fn = Flaky(99)
        s = datapunk.Stage(fn, optional=True, retry=datapunk.Retry(3, sleep=no_sleep()))
        report = datapunk.Pipeline(s).run([1], (out := []))
        assert (out, report.retried, report.degraded, fn.calls) == ([1], 2, 1, {1: 3})
        assert report.errors[0].error_type == "RetryError"


# ------------------------------------------------------------------ composition
class TestComposition:
    def test_order_is_timeout_inside_retry_inside_breaker(self):
        """The breaker counts one failure per record, after that record's retries."""
        clock = FakeClock()
        breaker = datapunk.CircuitBreaker(failure_threshold=2, reset_after=60, clock=clock)
        fn = Flaky(99)
        s = datapunk.Stage(
            fn, name="svc", breaker=breaker, retry=datapunk.Retry(3, sleep=no_sleep()), timeout=5
        )
        report = datapunk.Pipeline(s).run([1, 2, 3])
        assert fn.calls == {1: 3, 2: 3}  # 3 attempts each, then the breaker opened
        assert [d.error_type for d in report.dead_letters] == [
            "RetryError",
            "RetryError",
            "CircuitOpenError",
        ]
        assert [d.attempts for d in report.dead_letters] == [3, 3, 1]
        assert report.retried == 4

    def test_stage_without_policies_runs_the_raw_function(self):
        """No policy, no wrapper: the compiled op calls the stage's own function."""
        from datapunk._core.engine import compile_stages

        def f(x):
            return x

        (op,) = compile_stages(datapunk.Pipeline(datapunk.Stage(f)))
        assert op.fn is f
        assert op.guard is None
        (guarded,) = compile_stages(datapunk.Pipeline(datapunk.Stage(f, retry=2)))
        assert guarded.fn is not f
        assert guarded.guard is not None

    def test_policies_show_in_describe(self):
        """describe() lists a stage's policies."""
        s = datapunk.Stage(lambda x: x, name="f", retry=2, timeout=1.5, optional=True)
        text = datapunk.Pipeline(s).describe()
        assert "retry=Retry(attempts=2" in text
        assert "timeout=1.5" in text
        assert "optional=True" in text


# ------------------------------------------------------------------- hypothesis
class Step:
    """A map stage that fails record x on its first `transient` attempts if x % mod == rem,
    or always if x % perm_mod == 0; optionally slow on some records."""

    def __init__(self, index, mod, rem, transient, perm_mod, slow_mod):
        self.index, self.mod, self.rem = index, mod, rem
        self.transient, self.perm_mod, self.slow_mod = transient, perm_mod, slow_mod
        self.calls: dict[int, int] = {}

    def __call__(self, r):
        if self._count(r):
            time.sleep(0.03)
        return self._result(r)

    def _count(self, r):
        x = r["id"]
        n = self.calls[x] = self.calls.get(x, 0) + 1
        return bool(self.slow_mod and x % self.slow_mod == 0 and n == 1)

    def _result(self, r):
        x, n = r["id"], self.calls[r["id"]]
        if self.perm_mod and x % self.perm_mod == 0:
            raise ValueError(f"stage {self.index} rejects {x}")
        if self.mod and x % self.mod == self.rem and n <= self.transient:
            raise ConnectionError(f"stage {self.index} flaked on {x}")
        return {**r, "path": [*r["path"], self.index]}


class AsyncStep(Step):
    """The same, as a coroutine function (slow with asyncio.sleep)."""

    async def __call__(self, r):
        if self._count(r):
            await asyncio.sleep(0.03)
        return self._result(r)


class BatchStep(Step):
    """The same, over a list (one failure fails the call for the whole batch)."""

    def __call__(self, rs):
        return [Step.__call__(self, r) for r in rs]


SHAPES = {"sync": Step, "async": AsyncStep, "batch": BatchStep}

steps = st.builds(
    dict,
    shape=st.sampled_from(sorted(SHAPES)),
    mod=st.integers(0, 5),
    rem=st.integers(0, 4),
    transient=st.integers(0, 3),
    perm_mod=st.sampled_from([0, 0, 3, 7]),
    slow_mod=st.sampled_from([0, 0, 0, 9]),
    retry=st.sampled_from([None, 1, 2, 3]),
    timeout=st.sampled_from([None, None, 0.01]),
    optional=st.booleans(),
    breaker=st.sampled_from([None, 2, 5]),
    keep_mod=st.sampled_from([0, 0, 4]),
    on_error=st.sampled_from([None, "skip", "dead_letter"]),
)


@settings(max_examples=40, deadline=None)
@given(specs=st.lists(steps, min_size=1, max_size=4), n=st.integers(0, 40))
def test_no_record_lost_or_duplicated_under_any_policy_combination(specs, n):
    """For generated failing/slow stages and policies, every record is accounted for once."""
    stages = []
    for i, spec in enumerate(specs):
        fn = SHAPES[spec["shape"]](
            i, spec["mod"], spec["rem"], spec["transient"], spec["perm_mod"], spec["slow_mod"]
        )
        breaker = (
            None
            if spec["breaker"] is None
            else datapunk.CircuitBreaker(spec["breaker"], reset_after=3600)
        )
        retry = None if spec["retry"] is None else datapunk.Retry(spec["retry"], sleep=no_sleep())
        stages.append(
            datapunk.Stage(
                fn,
                name=f"s{i}",
                retry=retry,
                timeout=spec["timeout"],
                breaker=breaker,
                optional=spec["optional"],
                on_error=spec["on_error"],
                kind="batch" if spec["shape"] == "batch" else "map",
                size=3 if spec["shape"] == "batch" else None,
            )
        )
        if spec["keep_mod"]:
            stages.append(
                datapunk.Filter(lambda r, m=spec["keep_mod"]: r["id"] % m != 0, name=f"k{i}")
            )
    records = [{"id": x, "path": []} for x in range(n)]
    out: list[dict[str, object]] = []
    dead: list[datapunk.DeadLetter] = []
    report = datapunk.Pipeline(*stages).run(records, out, dead_letter=dead, chunk_size=7)

    out_ids = [r["id"] for r in out]
    dead_ids = [d.record["id"] for d in dead]
    assert len(set(out_ids)) == len(out_ids)
    assert len(set(dead_ids)) == len(dead_ids)
    assert not set(out_ids) & set(dead_ids)
    assert out_ids == sorted(out_ids)  # order kept
    assert report.records_in == n
    assert n == len(out) + len(dead) + report.filtered + report.skipped
    assert report.failed == len(dead)
    previous = n
    for s in report.stages.values():
        assert s.records_in == previous
        assert s.records_in == s.records_out + s.filtered + s.failed + s.skipped
        previous = s.records_out
    assert report.retried == sum(s.retries for s in report.stages.values())
    assert report.degraded == sum(s.degraded for s in report.stages.values())
    # Every retry a stage reports was a real extra call of its function.
    for stage in stages:
        if isinstance(stage.fn, Step) and stage.kind == "map":
            calls = stage.fn.calls
            assert report.stages[stage.name].retries == sum(calls.values()) - len(calls)


def _nap(seconds):
    """A sleep that does not sleep (module level, so it pickles)."""


class TestRunners:
    @pytest.mark.parametrize("runner", ["threads", "processes", "async"])
    def test_every_runner_applies_policies_like_serial(self, runner):
        """Retries, degradations, breaker and dead letters come out the same on every runner."""

        def build():
            return datapunk.Pipeline(
                datapunk.Stage(
                    Flaky(1, bad=set(range(0, 60, 3))),
                    name="flaky",
                    retry=datapunk.Retry(2, sleep=_nap),
                    timeout=5,
                ),
                datapunk.Stage(Flaky(9, bad=set(range(0, 600, 70))), name="opt", optional=True),
                datapunk.Stage(
                    Flaky(9, bad={500}), name="strict", retry=datapunk.Retry(3, sleep=_nap)
                ),
            )

        serial_out: list[int] = []
        serial = build().run(range(60), serial_out, chunk_size=8)
        out: list[int] = []
        report = build().run(range(60), out, chunk_size=8, runner=runner)
        assert out == serial_out
        assert [d.to_dict() | {"run_id": ""} for d in report.dead_letters] == [
            d.to_dict() | {"run_id": ""} for d in serial.dead_letters
        ]
        assert (report.retried, report.degraded, report.failed) == (
            serial.retried,
            serial.degraded,
            serial.failed,
        )
        assert (serial.retried, serial.degraded, serial.failed) == (22, 9, 1)
