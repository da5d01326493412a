"""The Threads, Processes and Async runners, and the runner registry."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import datapunk
from datapunk._core.run import Job
from datapunk.runners import Async, Processes, Serial, Threads

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ helpers
def double(x: int) -> int:
    return x * 2


def fail_on_sevens(x: int) -> int:
    if x % 7 == 0:
        raise ValueError(f"{x} is a multiple of seven")
    return x


def exit_on_42(x: int) -> int:
    if x == 42:
        os._exit(7)
    return x


def kill_on_42(x: int) -> int:
    if x == 42:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def segfault_on_42(x: int) -> int:
    if x == 42:
        ctypes.string_at(0)
    return x


def to_lock(x: int) -> Any:
    return threading.Lock() if x == 5 else x


class Counting:
    """A source that counts how many records were read, and a sink that checks the lead."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read = 0
        self.written = 0
        self.max_lead = 0

    def source(self) -> Any:
        for i in range(self.n):
            self.read += 1
            yield i

    def sink(self, records: list[Any]) -> None:
        self.max_lead = max(self.max_lead, self.read - self.written)
        self.written += len(records)


class ListSink:
    name = "list-sink"

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.counter: Counting | None = None

    def write(self, records: Any) -> None:
        if self.counter is not None:
            self.counter.sink(records)
        self.items.extend(records)

    def close(self) -> None:
        pass


def serial(pipe: datapunk.Pipeline[Any, Any], records: Any, **kw: Any) -> tuple[Any, ...]:
    out: list[Any] = []
    dead: list[datapunk.DeadLetter] = []
    report = pipe.run(records, out, dead_letter=dead, **kw)
    return out, [(d.position, d.stage) for d in dead], report


@pytest.fixture(scope="module")
def procs() -> Processes:
    return Processes(2, start_method="forkserver")


# ----------------------------------------------------------------- registry
class TestRegistry:
    def test_names(self):
        """Every built-in runner is registered by name."""
        assert datapunk.runners.names() == ["async", "dask", "processes", "serial", "threads"]

    @pytest.mark.parametrize(
        ("name", "cls"),
        [("threads", "Threads"), ("processes", "Processes"), ("async", "Async"), ("dask", "Dask")],
    )
    def test_by_name(self, name, cls):
        """by_name builds the runner, passing options on."""
        runner = datapunk.runners.by_name(name)
        assert type(runner).__name__ == cls
        assert type(runner).__module__ == "datapunk.runners"
        assert runner.name == name

    def test_by_name_with_options(self):
        """Options reach the constructor."""
        assert datapunk.runners.by_name("threads", workers=3).workers == 3

    @pytest.mark.parametrize("name", ["threads", "async", "processes"])
    def test_run_by_name(self, name):
        """run(..., runner=NAME) uses that runner."""
        out: list[int] = []
        report = datapunk.Pipeline(double).run(range(5), out, runner=name)
        assert (out, report.runner) == ([0, 2, 4, 6, 8], name)

    def test_import_is_lazy(self):
        """Importing datapunk loads no pool, no dask and no cloudpickle."""
        probe = (
            "import sys{imports}; "
            "heavy = ('concurrent', 'multiprocessing', 'dask', 'distributed', "
            "'cloudpickle', 'asyncio'); "
            "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))"
        )

        def loaded(imports: str) -> set[str]:
            out = subprocess.run(
                [sys.executable, "-c", probe.format(imports=imports)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return set(out.split())

        # Measured against a bare interpreter: a coverage-measured child process
        # loads some of these modules itself.
        assert set() == loaded(", datapunk, datapunk.runners") - loaded("")

    @pytest.mark.parametrize(
        "make",
        [
            lambda: Threads(0),
            lambda: Threads(2, max_in_flight=-1),
            lambda: Threads("4"),  # type: ignore[arg-type]
            lambda: Processes(0),
            lambda: Processes(2, chunk_size=0),
            lambda: Processes(2, start_method="fork"),
            lambda: Async(0),
            lambda: Async(10, max_chunks=0),
            lambda: datapunk.runners.Dask(partitions=0),
        ],
        ids=["threads", "in-flight", "str", "procs", "chunk", "fork", "async", "chunks", "dask"],
    )
    def test_bad_options(self, make):
        """Invalid options raise ConfigurationError at construction."""
        with pytest.raises(datapunk.ConfigurationError):
            make()

    def test_reprs(self):
        """Runners have readable reprs."""
        assert repr(Threads(4)) == "Threads(workers=4, max_in_flight=2)"
        assert repr(Processes(2, 10)) == "Processes(workers=2, chunk_size=10)"
        assert repr(Async(5, ordered=False)) == "Async(concurrency=5, ordered=False)"

    @pytest.mark.parametrize(
        "runner", [Threads(2, ordered=False), Async(ordered=False), Processes(2, ordered=False)]
    )
    def test_checkpoint_refused_when_unordered(self, runner):
        """A checkpointed run on an unordered runner is refused at start."""
        job = Job.create(datapunk.Pipeline(double), [1, 2], [])
        job.checkpoint = object()
        with pytest.raises(datapunk.ConfigurationError, match="checkpoint"):
            runner.run(job)


# ------------------------------------------------------------------ threads
class TestThreads:
    def test_calls_run_concurrently(self):
        """Calls within a chunk overlap, up to the number of workers."""
        lock = threading.Lock()
        state = {"now": 0, "max": 0}

        def slow(x: int) -> int:
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.02)
            with lock:
                state["now"] -= 1
            return x

        out: list[int] = []
        datapunk.Pipeline(slow).run(range(64), out, runner=Threads(8))
        assert out == list(range(64))
        assert 4 <= state["max"] <= 8

    def test_failures_match_serial(self):
        """Outputs and dead letters (positions, stages) are those of a serial run."""
        pipe = datapunk.Pipeline(fail_on_sevens) | datapunk.Filter(lambda x: x % 3 != 0)
        want = serial(pipe, range(100), chunk_size=8)
        got = serial(pipe, range(100), chunk_size=8, runner=Threads(4))
        assert want[:2] == got[:2]

    def test_async_stages_run_on_worker_threads(self):
        """Async stages work on the Threads runner."""

        async def inc(x: int) -> int:
            await asyncio.sleep(0)
            return x + 1

        out: list[int] = []
        datapunk.Pipeline(inc).run(range(20), out, runner=Threads(4), chunk_size=5)
        assert out == list(range(1, 21))

    def test_raise_policy_stops_the_run(self):
        """on_error='raise' stops the run with the stage's error, as in Serial."""
        with pytest.raises(datapunk.StageError, match="fail_on_sevens"):
            datapunk.Pipeline(fail_on_sevens).run(
                range(1, 30), [], on_error="raise", runner=Threads(4)
            )

    def test_memory_is_bounded(self):
        """At most max_in_flight chunks are read ahead of what was written."""
        counter = Counting(2000)
        sink = ListSink()
        sink.counter = counter
        datapunk.Pipeline(double).run(
            counter.source(), sink, chunk_size=10, runner=Threads(4, max_in_flight=3)
        )
        assert len(sink.items) == 2000
        assert counter.max_lead <= 3 * 10


# ---------------------------------------------------------------- processes
@pytest.mark.integration
class TestProcesses:
    def test_same_answer_as_serial(self, procs):
        """Outputs, dead letters and counts are those of a serial run."""
        pipe = datapunk.Pipeline(fail_on_sevens) | datapunk.Stage(double)
        want = serial(pipe, range(300), chunk_size=16)
        got = serial(pipe, range(300), chunk_size=16, runner=procs)
        assert want[:2] == got[:2]
        assert (want[2].records_in, want[2].failed) == (got[2].records_in, got[2].failed)

    def test_lambdas_travel_with_cloudpickle(self, procs):
        """Lambdas and nested functions work (cloudpickle)."""
        offset = 10
        out: list[int] = []
        datapunk.Pipeline(lambda x: x + offset).run(range(5), out, runner=procs)
        assert out == [10, 11, 12, 13, 14]

    def test_missing_cloudpickle_names_the_extra(self, monkeypatch):
        """Without cloudpickle a lambda stage is refused, naming the extra to install."""
        from datapunk.runners import _processes

        monkeypatch.setattr(_processes, "_cloudpickle", lambda: None)
        with pytest.raises(datapunk.ConfigurationError, match=r"pip install datapunk\[processes\]"):
            datapunk.Pipeline(lambda x: x).run([1], [], runner=Processes(1))

    @pytest.mark.parametrize(
        ("stage", "why"),
        [
            (exit_on_42, "exit code 7"),
            (kill_on_42, "SIGKILL"),
            (segfault_on_42, "SIGSEGV"),
        ],
        ids=["os._exit", "sigkill", "segfault"],
    )
    def test_dead_worker_fails_only_its_chunk(self, procs, stage, why):
        """A dying worker fails its chunk's records, and only those; the run goes on."""
        pipe = datapunk.Pipeline(double) | datapunk.Stage(stage, name="crashy")
        out: list[int] = []
        dead: list[datapunk.DeadLetter] = []
        report = pipe.run(range(200), out, dead_letter=dead, chunk_size=25, runner=procs)
        # The record at position 21 reaches the crashing stage as 42: chunk 0..24.
        assert [d.position for d in dead] == list(range(25))
        assert {d.stage for d in dead} == {"crashy"}
        assert {d.error_type for d in dead} == {"WorkerDied"}
        assert why in dead[0].message
        assert "positions 0..24" in dead[0].message
        assert out == [2 * x for x in range(25, 200)]
        assert (report.records_in, report.records_out, report.failed) == (200, 175, 25)
        crashy = report.stages["crashy"]
        assert (crashy.records_in, crashy.failed) == (200, 25)

    def test_dead_worker_under_raise_policy_stops_the_run(self, procs):
        """With on_error='raise' a dead worker stops the run with a StageError."""
        with pytest.raises(datapunk.StageError, match="died"):
            datapunk.Pipeline(exit_on_42).run(
                range(100), [], on_error="raise", chunk_size=10, runner=procs
            )

    def test_raise_policy_reraises_the_stage_error(self, procs):
        """on_error='raise' re-raises the worker's error in the parent."""
        with pytest.raises(datapunk.StageError, match="fail_on_sevens"):
            datapunk.Pipeline(fail_on_sevens).run(range(1, 30), [], on_error="raise", runner=procs)

    def test_unpicklable_outputs_become_dead_letters(self, procs):
        """Outputs that cannot travel back fail their chunk with a clear reason."""
        dead: list[datapunk.DeadLetter] = []
        out: list[Any] = []
        datapunk.Pipeline(to_lock).run(
            range(20), out, dead_letter=dead, chunk_size=10, runner=procs
        )
        assert out == list(range(10, 20))
        assert [d.position for d in dead] == list(range(10))
        assert dead[0].error_type == "UnpicklableOutput"

    def test_stages_a_worker_cannot_load_are_refused_at_start(self, monkeypatch):
        """A stage whose module exists only in the parent fails the run at start, clearly."""
        import types

        module = types.ModuleType("datapunk_test_parent_only")
        exec("def shout(x):\n    return str(x).upper()\n", module.__dict__)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        with pytest.raises(datapunk.ConfigurationError, match="could not load"):
            datapunk.Pipeline(module.shout).run(["a"], [], runner=Processes(1))

    def test_spawn_and_chunk_size(self):
        """The default spawn start method works; chunk_size sets the chunks sent."""
        out: list[int] = []
        report = datapunk.Pipeline(double).run(range(50), out, runner=Processes(1, chunk_size=7))
        assert out == [2 * x for x in range(50)]
        assert report.runner == "processes"

    def test_memory_is_bounded(self, procs):
        """At most 2 x workers chunks are read ahead of what was written."""
        counter = Counting(1000)
        sink = ListSink()
        sink.counter = counter
        datapunk.Pipeline(double).run(counter.source(), sink, chunk_size=10, runner=procs)
        assert len(sink.items) == 1000
        assert counter.max_lead <= 2 * 2 * 10


# -------------------------------------------------------------------- async
class TestAsync:
    def test_concurrency_is_bounded_and_reached(self):
        """At most `concurrency` calls are in flight, and that many are reached."""
        state = {"now": 0, "max": 0}

        async def slow(x: int) -> int:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            await asyncio.sleep(0.005)
            state["now"] -= 1
            return x

        out: list[int] = []
        datapunk.Pipeline(slow).run(range(300), out, runner=Async(25), chunk_size=40)
        assert out == list(range(300))
        assert state["max"] == 25

    def test_arun_uses_the_callers_loop(self):
        """await pipeline.arun(...) awaits stages on the caller's loop."""
        loops: set[int] = set()

        async def where(x: int) -> int:
            loops.add(id(asyncio.get_running_loop()))
            return x

        async def main() -> tuple[list[int], int]:
            out: list[int] = []
            await datapunk.Pipeline(where).arun(range(10), out, runner=Async(4))
            return out, id(asyncio.get_running_loop())

        out, loop_id = asyncio.run(main())
        assert out == list(range(10))
        assert loops == {loop_id}

    def test_run_inside_a_loop_explains(self):
        """run() inside a running loop says to await arun() instead."""

        async def main() -> None:
            datapunk.Pipeline(double).run([1], [], runner=Async())

        with pytest.raises(datapunk.ConfigurationError, match=r"await pipeline\.arun"):
            asyncio.run(main())

    def test_sync_stages_are_offloaded(self):
        """Sync stages run on a thread pool, never on the loop's thread."""
        names: set[str] = set()

        def where(x: int) -> int:
            names.add(threading.current_thread().name)
            return x

        datapunk.Pipeline(where).run(range(10), [], runner=Async())
        assert names
        assert threading.main_thread().name not in names

    def test_failures_match_serial(self):
        """Outputs and dead letters are those of a serial run."""

        async def afail(x: int) -> int:
            await asyncio.sleep(0)
            return fail_on_sevens(x)

        pipe = datapunk.Pipeline(afail) | datapunk.Stage(double)
        want = serial(pipe, range(100), chunk_size=9)
        got = serial(pipe, range(100), chunk_size=9, runner=Async(10))
        assert want[:2] == got[:2]

    def test_raise_policy_stops_the_run(self):
        """on_error='raise' stops the run with the stage's error."""

        async def afail(x: int) -> int:
            return fail_on_sevens(x)

        with pytest.raises(datapunk.StageError, match="afail"):
            datapunk.Pipeline(afail).run(range(1, 30), [], on_error="raise", runner=Async())

    def test_backpressure_bounds_memory(self):
        """The source is read only as chunks complete (max_chunks x chunk_size ahead)."""
        counter = Counting(500)
        sink = ListSink()
        sink.counter = counter

        async def inc(x: int) -> int:
            await asyncio.sleep(0)
            return x + 1

        datapunk.Pipeline(inc).run(counter.source(), sink, chunk_size=10, runner=Async(5))
        assert len(sink.items) == 500
        assert counter.max_lead <= 2 * 10


class TestSerialStillDefault:
    def test_default_runner(self):
        """Without a runner, the run is serial."""
        assert datapunk.Pipeline(double).run([1], []).runner == Serial.name


# -------------------------------------------------------------- checkpoints
def fail_when_told(x: int) -> int:
    if os.environ.get("DATAPUNK_TEST_FAIL_AT") == str(x):
        raise RuntimeError(f"told to fail at {x}")
    return x * 3


@pytest.mark.integration
class TestCheckpoints:
    @pytest.mark.parametrize(
        "runner",
        # spawn: a fork server's workers keep the environment it started with.
        [Threads(4), Async(10), Processes(2)],
        ids=["threads", "async", "processes"],
    )
    def test_resume_gives_the_uninterrupted_output(self, runner, tmp_path, monkeypatch):
        """An ordered parallel run stopped midway resumes to exactly the uninterrupted output."""
        pipe = datapunk.Pipeline(fail_when_told, name="resumable")
        records = list(range(500))
        want = tmp_path / "want.jsonl"
        pipe.run(records, str(want), chunk_size=25)

        out, db = tmp_path / "out.jsonl", tmp_path / "ckpt.db"
        monkeypatch.setenv("DATAPUNK_TEST_FAIL_AT", "310")
        with pytest.raises(datapunk.StageError):
            pipe.run(
                records,
                str(out),
                chunk_size=25,
                checkpoint=str(db),
                on_error="raise",
                runner=runner,
            )
        monkeypatch.delenv("DATAPUNK_TEST_FAIL_AT")
        report = pipe.run(
            records, str(out), chunk_size=25, checkpoint=str(db), on_error="raise", runner=runner
        )
        assert out.read_bytes() == want.read_bytes()
        assert report.records_in == 500


class TestArun:
    @pytest.mark.parametrize("runner", [Threads(2), Processes(1)], ids=["threads", "processes"])
    def test_arun_runs_in_a_helper_thread(self, runner):
        """await pipeline.arun(...) works with the thread and process runners."""

        async def main() -> list[int]:
            out: list[int] = []
            await datapunk.Pipeline(double).arun(range(5), out, runner=runner)
            return out

        assert asyncio.run(main()) == [0, 2, 4, 6, 8]


def parse_a(record: dict[str, Any]) -> int:
    return int(record["a"]) * 2


@pytest.mark.integration
class TestEdges:
    @pytest.mark.parametrize(
        "runner", [Threads(2), Async(5), Processes(1)], ids=["threads", "async", "processes"]
    )
    def test_empty_source(self, runner):
        """An empty source gives an empty, successful run."""
        out: list[Any] = []
        report = datapunk.Pipeline(double).run([], out, runner=runner)
        assert (out, report.records_in, report.ok) == ([], 0, True)

    @pytest.mark.parametrize(
        "runner", [Threads(2), Async(5), Processes(2)], ids=["threads", "async", "processes"]
    )
    def test_malformed_lines_fail_at_their_positions(self, runner, tmp_path):
        """Malformed input lines become dead letters at the same line numbers as in Serial."""
        path = tmp_path / "in.jsonl"
        lines = [f'{{"a": {i}}}' if i % 9 else "{broken" for i in range(200)]
        path.write_text("\n".join(lines) + "\n")
        pipe = datapunk.Pipeline(parse_a)
        want = serial(pipe, str(path), chunk_size=16)
        got = serial(pipe, str(path), chunk_size=16, runner=runner)
        assert want[:2] == got[:2]
        assert {stage for _, stage in got[1]} == {"<source>"}
