"""Same answer everywhere: every runner gives Serial's outputs, counts and dead letters."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datapunk
from datapunk.runners import Async, Processes, Threads
from strategies import build, int_records, pipeline_specs

pytestmark = pytest.mark.integration

chunk_sizes = st.integers(min_value=1, max_value=9)
COUNTS = (
    "records_in",
    "records_out",
    "filtered",
    "failed",
    "skipped",
    "warnings",
    "retried",
    "degraded",
)
STAGE_COUNTS = ("records_in", "records_out", "filtered", "failed", "skipped", "warnings", "retries")


@dataclasses.dataclass(frozen=True)
class WholeBatchFails:
    """A batch stage whose whole batch fails when one value in it is unlucky."""

    unlucky: int

    def __call__(self, values: list[int]) -> list[int]:
        if any(v % 11 == self.unlucky for v in values):
            raise ValueError(f"batch of {len(values)} refused")
        return [v + 1 for v in values]


@st.composite
def pipelines(draw: st.DrawFn) -> datapunk.Pipeline[Any, Any]:
    """A generated pipeline, sometimes ending in a batch stage that fails whole batches."""
    pipe = build(draw(pipeline_specs(max_steps=5)))
    if draw(st.booleans()):
        size = draw(st.integers(min_value=1, max_value=5))
        unlucky = draw(st.integers(min_value=0, max_value=10))
        pipe = pipe | datapunk.Batch(WholeBatchFails(unlucky), size=size, name="whole")
    return pipe


def outcome(
    pipe: datapunk.Pipeline[Any, Any], records: list[int], chunk_size: int, runner: Any
) -> tuple[list[Any], list[tuple[Any, ...]], dict[str, Any], dict[str, Any]]:
    """Run and return outputs, dead letters, run counters and per-stage counters."""
    out: list[Any] = []
    dead: list[datapunk.DeadLetter] = []
    report = pipe.run(records, out, dead_letter=dead, chunk_size=chunk_size, runner=runner)
    assert report.runner == (runner.name if runner is not None else "serial")
    letters = [(d.position, d.stage, d.record, d.error_type, d.message) for d in dead]
    counts = {c: getattr(report, c) for c in COUNTS}
    stages = {name: tuple(getattr(s, c) for c in STAGE_COUNTS) for name, s in report.stages.items()}
    return out, letters, counts, stages


def check_same(
    pipe: datapunk.Pipeline[Any, Any],
    records: list[int],
    chunk_size: int,
    runner: Any,
    *,
    ordered: bool = True,
) -> None:
    want = outcome(pipe, records, chunk_size, None)
    got = outcome(pipe, records, chunk_size, runner)
    if ordered:
        assert want == got
    else:
        assert Counter(map(repr, want[0])) == Counter(map(repr, got[0]))
        assert sorted(want[1], key=repr) == sorted(got[1], key=repr)
        assert want[2:] == got[2:]


@pytest.fixture(scope="module")
def processes() -> Processes:
    return Processes(2, start_method="forkserver")


class TestSameAnswer:
    @given(pipe=pipelines(), records=int_records(), chunk_size=chunk_sizes, ordered=st.booleans())
    def test_threads(self, pipe, records, chunk_size, ordered):
        """Threads gives Serial's outputs, counts and dead letters."""
        check_same(pipe, records, chunk_size, Threads(4, ordered=ordered), ordered=ordered)

    @given(pipe=pipelines(), records=int_records(), chunk_size=chunk_sizes, ordered=st.booleans())
    def test_async(self, pipe, records, chunk_size, ordered):
        """Async gives Serial's outputs, counts and dead letters."""
        runner = Async(concurrency=7, ordered=ordered)
        check_same(pipe, records, chunk_size, runner, ordered=ordered)

    @settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(pipe=pipelines(), records=int_records(), chunk_size=chunk_sizes)
    def test_processes(self, processes, pipe, records, chunk_size):
        """Processes gives Serial's outputs, counts and dead letters."""
        check_same(pipe, records, chunk_size, processes)

    @settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(pipe=pipelines(), records=int_records(), chunk_size=chunk_sizes)
    def test_dask(self, dask_client, pipe, records, chunk_size):
        """Dask gives Serial's outputs, counts and dead letters."""
        from datapunk.runners import Dask

        check_same(pipe, records, chunk_size, Dask(dask_client, partitions=3))

    @settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(pipe=pipelines(), records=int_records(), chunk_size=chunk_sizes)
    def test_processes_unordered(self, processes, pipe, records, chunk_size):
        """Processes(ordered=False) gives the same multiset of outputs and the same counts."""
        runner = Processes(2, ordered=False, start_method="forkserver")
        check_same(pipe, records, chunk_size, runner, ordered=False)

    @pytest.mark.parametrize("runner", ["threads", "async", "processes"])
    @pytest.mark.parametrize("budget", [0, 3])
    def test_max_errors_stops_at_the_same_point(self, runner, budget):
        """The error budget stops every runner after the same chunk, with the same report."""

        def run(r: Any) -> tuple[Any, ...]:
            pipe = datapunk.Pipeline(datapunk.Stage(_fail_on_sevens, name="sevens"))
            with pytest.raises(datapunk.ErrorBudgetExceeded) as info:
                pipe.run(range(200), [], chunk_size=10, max_errors=budget, runner=r)
            rep = info.value.report
            return rep.records_in, rep.failed, rep.records_out

        assert run(None) == run(runner)

    @pytest.mark.parametrize("runner", ["threads", "async", "processes"])
    def test_retries_are_counted_the_same(self, runner):
        """Retries (resilience policies) are counted the same on every runner."""
        pipe = datapunk.Pipeline(
            datapunk.stage(retry=datapunk.Retry(attempts=3, backoff=0))(_flaky)
        )

        def run(r: Any) -> tuple[Any, ...]:
            out: list[Any] = []
            rep = pipe.run(range(30), out, runner=r, chunk_size=7)
            return out, rep.retried, rep.failed, [e.position for e in rep.errors]

        assert run(None) == run(runner)


def _fail_on_sevens(x: int) -> int:
    if x % 7 == 0:
        raise ValueError("seven")
    return x


def _flaky(x: int) -> int:
    # Deterministic per record: fails on the first attempts of every fifth record.
    if x % 5 == 0:
        raise ConnectionError("flaky")
    return x
