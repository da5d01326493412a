"""Checkpoints and exact resume, and every fault of issue 5's list."""

from __future__ import annotations

import errno
import json
import sqlite3
from pathlib import Path

import pytest

import datapunk
from datapunk.state import SQLiteCheckpoint, fingerprint, run_key

pytestmark = pytest.mark.integration

N = 2500


def double(r):
    if r["i"] % 7 == 0:
        raise ValueError(f"{r['i']} is a multiple of 7")
    return {"i": r["i"], "twice": r["i"] * 2}


def keep(r):
    return r["i"] % 3 != 0


PIPE = datapunk.Pipeline(double, datapunk.Filter(keep), name="ck")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(N)))
    return path


@pytest.fixture
def expected(tmp_path: Path, src: Path) -> tuple[bytes, list[dict[str, object]]]:
    """Output and dead letters of an uninterrupted run without checkpoint."""
    ref = tmp_path / "ref"
    ref.mkdir()
    PIPE.run(src, ref / "out.jsonl", dead_letter=ref / "dead.jsonl", chunk_size=100)
    return (ref / "out.jsonl").read_bytes(), _dead(ref / "dead.jsonl")


def _dead(path: Path) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("run_id")
    return rows


class Boom(Exception):
    pass


class FailingAt:
    """A map stage that raises *exc* on record *at* while armed."""

    def __init__(self, at: int, exc: BaseException) -> None:
        self.at, self.exc, self.armed = at, exc, True

    def __call__(self, r):
        if self.armed and r["i"] == self.at:
            raise self.exc
        return r


def _state(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(db)
    try:
        (body,) = conn.execute("SELECT state FROM datapunk_runs").fetchone()
    finally:
        conn.close()
    return json.loads(body)


# -------------------------------------------------------------------- resume
class TestResume:
    def test_interrupted_run_resumes_to_the_uninterrupted_output(self, tmp_path, src, expected):
        """A run stopped mid-way and run again gives exactly the uninterrupted output."""
        stop = FailingAt(1234, KeyboardInterrupt())
        pipe = datapunk.Pipeline(datapunk.Stage(stop, name="stop"), *PIPE.parts, name="ck")
        db = tmp_path / "run.db"
        out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
        ck = SQLiteCheckpoint(db, every=None, seconds=None)
        with pytest.raises(KeyboardInterrupt):
            pipe.run(src, out, dead_letter=dead, checkpoint=ck, chunk_size=100)
        assert not out.exists()
        assert _state(db)["records_in"] == 1200  # the chunks before the failing one
        stop.armed = False
        report = pipe.run(src, out, dead_letter=dead, checkpoint=ck, chunk_size=100)
        assert out.read_bytes() == expected[0]
        assert _dead(dead) == expected[1]
        # Counters cover the whole logical run, not only the resumed part.
        assert report.records_in == N
        assert report.failed == len(expected[1])
        assert report.records_in == report.records_out + report.filtered + report.failed
        assert _state(db)["phase"] == "finished"

    def test_path_is_shorthand_for_sqlite_checkpoint(self, tmp_path, src, expected):
        """checkpoint='run.db' uses the SQLite store."""
        report = PIPE.run(
            src,
            tmp_path / "o.jsonl",
            dead_letter=tmp_path / "d.jsonl",
            checkpoint=tmp_path / "r.db",
        )
        assert (tmp_path / "o.jsonl").read_bytes() == expected[0]
        assert report.records_in == N
        assert _state(tmp_path / "r.db")["phase"] == "finished"

    def test_finished_run_starts_afresh(self, tmp_path, src, expected):
        """Running a finished run again redoes it from the start."""
        db = tmp_path / "r.db"
        for _ in range(2):
            report = PIPE.run(src, tmp_path / "o.jsonl", checkpoint=db, chunk_size=100)
            assert report.records_in == N
            assert len(report.dead_letters) == len(expected[1])
        assert (tmp_path / "o.jsonl").read_bytes() == expected[0]

    def test_dead_letters_kept_in_the_checkpoint_survive_a_resume(self, tmp_path, src, expected):
        """Without a dead-letter sink, dead letters live in the checkpoint database."""
        stop = FailingAt(1500, SystemExit(3))
        pipe = datapunk.Pipeline(datapunk.Stage(stop, name="stop"), *PIPE.parts, name="ck")
        ck = SQLiteCheckpoint(tmp_path / "r.db", every=None, seconds=None)
        with pytest.raises(SystemExit):
            pipe.run(src, tmp_path / "o.jsonl", checkpoint=ck, chunk_size=100)
        key = next(iter(ck.runs()))
        saved = list(ck.dead_letters(key))
        assert [d.record["i"] for d in saved] == [i for i in range(1500) if i % 7 == 0]
        stop.armed = False
        report = pipe.run(src, tmp_path / "o.jsonl", checkpoint=ck, chunk_size=100)
        got = [{k: v for k, v in d.to_dict().items() if k != "run_id"} for d in report.dead_letters]
        assert got == expected[1]
        assert [d.to_dict()["record"] for d in ck.dead_letters(key)] == [
            d["record"] for d in expected[1]
        ]
        assert len({d.run_id for d in report.dead_letters}) == 2  # two sessions of one run

    def test_list_sink_is_acknowledged_after_every_chunk(self, tmp_path):
        """A sink that cannot resume is checkpointed after every chunk it accepted."""
        saves = []

        class Counting(dict):
            def load(self, key):
                return self.get(key)

            def save(self, key, state, dead_letters=()):
                saves.append(state["records_in"])
                self[key] = state

            def clear(self, key):
                self.pop(key, None)

        store = Counting()
        out: list[int] = []
        datapunk.Pipeline(lambda x: x, name="p").run(range(10), out, checkpoint=store, chunk_size=3)
        assert saves == [0, 3, 6, 9, 10, 10, 10]  # begin, chunks, closing, finished
        assert out == list(range(10))
        assert store[next(iter(store))]["phase"] == "finished"

    def test_interval_by_records(self, tmp_path, src):
        """every= acknowledges after at least that many records."""
        ck = SQLiteCheckpoint(tmp_path / "r.db", every=1000, seconds=None)
        seen = []
        save = ck.save

        def spy(key, state, dead_letters=()):
            seen.append(state["records_in"])
            save(key, state, dead_letters)

        ck.save = spy  # type: ignore[method-assign]
        PIPE.run(src, tmp_path / "o.jsonl", checkpoint=ck, chunk_size=300)
        assert seen == [0, 1200, 2400, 2500, 2500]

    def test_custom_store_meets_the_protocol(self):
        """Any object with load, save and clear is a checkpoint store."""
        from datapunk.plugins import CheckpointStore

        class Memory:
            def __init__(self):
                self.data = {}

            def load(self, key):
                return self.data.get(key)

            def save(self, key, state, dead_letters=()):
                self.data[key] = json.loads(json.dumps(state))

            def clear(self, key):
                self.data.pop(key, None)

        store = Memory()
        assert isinstance(store, CheckpointStore)
        assert isinstance(SQLiteCheckpoint("x.db"), CheckpointStore)
        report = datapunk.Pipeline(lambda x: x + 1, name="p").run([1, 2], [], checkpoint=store)
        assert report.records_out == 2

    def test_resumable_sink_protocol(self, tmp_path):
        """The JSON Lines sink meets ResumableSink; lists do not need to."""
        from datapunk.plugins import ResumableSink

        assert isinstance(datapunk.io.write(tmp_path / "x.jsonl"), ResumableSink)
        assert not isinstance([], ResumableSink)

    def test_threads_runner_resumes_too(self, tmp_path, src, expected):
        """An ordered parallel runner checkpoints and resumes like Serial."""
        stop = FailingAt(1700, KeyboardInterrupt())
        pipe = datapunk.Pipeline(datapunk.Stage(stop, name="stop"), *PIPE.parts, name="ck")
        ck = SQLiteCheckpoint(tmp_path / "r.db", every=None, seconds=None)
        out = tmp_path / "o.jsonl"
        with pytest.raises(KeyboardInterrupt):
            pipe.run(src, out, checkpoint=ck, chunk_size=100, runner="threads")
        stop.armed = False
        pipe.run(src, out, checkpoint=ck, chunk_size=100, runner="threads")
        assert out.read_bytes() == expected[0]


# -------------------------------------------------------------------- faults
class TestFaults:
    def test_corrupt_checkpoint_database(self, tmp_path, src):
        """A file that is not a checkpoint database is refused before anything is written."""
        db = tmp_path / "run.db"
        db.write_bytes(b"this is not a database" * 100)
        out = tmp_path / "o.jsonl"
        with pytest.raises(datapunk.ConfigurationError) as info:
            PIPE.run(src, out, checkpoint=db)
        assert str(info.value) == (
            f"checkpoint {str(db)!r} is not a datapunk checkpoint database or is corrupt "
            "(file is not a database); move it away to start a fresh run, or pass another path"
        )
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
        assert db.read_bytes() == b"this is not a database" * 100  # left for inspection

    def test_locked_checkpoint_database(self, tmp_path, src):
        """A database locked by another process is refused after the timeout."""
        db = tmp_path / "run.db"
        SQLiteCheckpoint(db).runs()  # create it
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(datapunk.ConfigurationError) as info:
                PIPE.run(src, tmp_path / "o.jsonl", checkpoint=SQLiteCheckpoint(db, timeout=0.05))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert str(info.value).startswith(
            f"checkpoint {str(db)!r} is locked by another process (is another run using it?)"
        )
        assert not (tmp_path / "o.jsonl").exists()
        # Once the lock is gone the same run works.
        assert PIPE.run(src, tmp_path / "o.jsonl", checkpoint=db).records_in == N

    def test_checkpoint_from_a_different_pipeline(self, tmp_path, src, expected):
        """A changed pipeline refuses to resume, says why and how to start over."""
        db = SQLiteCheckpoint(tmp_path / "run.db", every=None, seconds=None)
        stop = FailingAt(600, KeyboardInterrupt())
        first = datapunk.Pipeline(datapunk.Stage(stop, name="stop"), *PIPE.parts, name="ck")
        with pytest.raises(KeyboardInterrupt):
            first.run(src, tmp_path / "o.jsonl", checkpoint=db, chunk_size=100)

        def other_double(r):
            return {"i": r["i"], "twice": r["i"] * 3}

        changed = datapunk.Pipeline(
            datapunk.Stage(stop, name="stop"), other_double, datapunk.Filter(keep), name="ck"
        )
        with pytest.raises(datapunk.ConfigurationError) as info:
            changed.run(src, tmp_path / "o.jsonl", checkpoint=db, chunk_size=100)
        message = str(info.value)
        assert message.startswith(f"cannot resume run 'ck <- {src.resolve()}' from checkpoint ")
        assert "the pipeline changed since it was saved" in message
        assert "delete the checkpoint file or pass datapunk.SQLiteCheckpoint(path, fresh=True)" in (
            message
        )
        assert info.value.details["saved_fingerprint"] != info.value.details["fingerprint"]
        # The interrupted run's progress is untouched, and resumes with the original pipeline.
        assert _state(db.path)["records_in"] == 600
        stop.armed = False
        first.run(src, tmp_path / "o.jsonl", checkpoint=db, chunk_size=100)
        out = (tmp_path / "o.jsonl").read_bytes()
        assert out == expected[0]
        # fresh=True starts over with the new pipeline.
        changed.run(src, tmp_path / "o.jsonl", checkpoint=SQLiteCheckpoint(db.path, fresh=True))
        assert _state(db.path)["records_in"] == N

    @pytest.mark.parametrize(
        ("code", "text"),
        [(errno.ENOSPC, "No space left on device"), (errno.EACCES, "Permission denied")],
        ids=["disk-full", "permission-denied"],
    )
    def test_sink_failure_stops_without_advancing_the_checkpoint(self, tmp_path, code, text):
        """ENOSPC / EACCES on the sink: SinkError, checkpoint not past unwritten records,
        and resume after the fault is fixed completes exactly."""

        class Disk:
            name = "disk"

            def __init__(self):
                self.rows: list[int] = []
                self.fail_at: int | None = 3

            def write(self, records):
                if self.fail_at is not None and records[0] // 10 == self.fail_at:
                    raise OSError(code, text)
                self.rows.extend(records)

            def close(self):
                pass

        sink = Disk()
        db = tmp_path / "run.db"
        pipe = datapunk.Pipeline(lambda x: x, name="p")
        with pytest.raises(datapunk.SinkError) as info:
            pipe.run(range(100), sink, checkpoint=db, chunk_size=10)
        assert str(info.value) == (
            f"the sink 'disk' raised {type(OSError(code, text)).__name__}: [Errno {code}] {text}; "
            "the run stopped so that "
            "no record is lost: fix the sink and run again"
        )
        assert info.value.details["errno"] == code
        assert _state(db)["records_in"] == 30  # not past the records that were not written
        sink.fail_at = None
        report = pipe.run(range(100), sink, checkpoint=db, chunk_size=10)
        assert sink.rows == list(range(100))
        assert report.records_in == 100

    def test_disk_full_on_a_json_lines_file_resumes_exactly(
        self, tmp_path, src, expected, monkeypatch
    ):
        """A file sink that runs out of space mid-run is resumed byte for byte."""
        from datapunk.io._jsonl import JsonlSink

        real_write = JsonlSink.write
        calls = {"n": 0}

        def full(self, records):
            calls["n"] += 1
            if calls["n"] == 9:
                real_write(self, records[: len(records) // 2])  # half of the batch got out
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(self, records)

        monkeypatch.setattr(JsonlSink, "write", full)
        out = tmp_path / "o.jsonl"
        ck = SQLiteCheckpoint(tmp_path / "r.db", every=None, seconds=None)
        with pytest.raises(datapunk.SinkError, match="No space left on device"):
            PIPE.run(src, out, dead_letter=tmp_path / "d.jsonl", checkpoint=ck, chunk_size=100)
        assert not out.exists()
        monkeypatch.setattr(JsonlSink, "write", real_write)
        PIPE.run(src, out, dead_letter=tmp_path / "d.jsonl", checkpoint=ck, chunk_size=100)
        assert out.read_bytes() == expected[0]
        assert _dead(tmp_path / "d.jsonl") == expected[1]

    @pytest.mark.parametrize(
        "exc", [KeyboardInterrupt(), SystemExit(2)], ids=["KeyboardInterrupt", "SystemExit"]
    )
    def test_keyboard_interrupt_and_system_exit_are_not_swallowed(
        self, tmp_path, src, expected, exc
    ):
        """A stage raising KeyboardInterrupt/SystemExit stops the run; the checkpoint stays
        consistent and the resumed run completes exactly."""
        stop = FailingAt(950, exc)
        retrying = datapunk.Stage(stop, name="stop", retry=datapunk.Retry(5, sleep=lambda d: None))
        pipe = datapunk.Pipeline(retrying, *PIPE.parts, name="ck")
        ck = SQLiteCheckpoint(tmp_path / "r.db", every=None, seconds=None)
        out, dead = tmp_path / "o.jsonl", tmp_path / "d.jsonl"
        with pytest.raises(type(exc)):
            pipe.run(src, out, dead_letter=dead, checkpoint=ck, chunk_size=100)
        state = _state(tmp_path / "r.db")
        assert (state["records_in"], state["phase"]) == (900, "running")
        assert not out.exists()
        stop.armed = False
        pipe.run(src, out, dead_letter=dead, checkpoint=ck, chunk_size=100)
        assert out.read_bytes() == expected[0]
        assert _dead(dead) == expected[1]

    def test_keyboard_interrupt_without_checkpoint_discards_the_output(self, tmp_path, src):
        """Without a checkpoint the interrupted output is discarded, never half-written."""
        pipe = datapunk.Pipeline(FailingAt(5, KeyboardInterrupt()), name="p")
        with pytest.raises(KeyboardInterrupt):
            pipe.run(src, tmp_path / "o.jsonl")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]

    def test_exception_whose_str_raises(self, tmp_path):
        """An exception with a broken __str__ becomes a dead letter with a placeholder message."""

        class Nasty(Exception):
            def __str__(self):
                raise RuntimeError("no str for you")

        def f(x):
            if x == 2:
                raise Nasty
            return x

        ck = SQLiteCheckpoint(tmp_path / "r.db")
        pipe = datapunk.Pipeline(datapunk.Stage(f, retry=datapunk.Retry(2, sleep=lambda d: None)))
        report = pipe.run(range(4), out := [], checkpoint=ck)
        assert out == [0, 1, 3]
        (dl,) = report.dead_letters
        assert (dl.error_type, dl.attempts) == ("RetryError", 2)
        assert (
            dl.message
            == "stage 'f' failed after 2 attempts; last error Nasty: <Nasty (str() failed)>"
        )
        (stored,) = ck.dead_letters(next(iter(ck.runs())))
        assert stored.message == dl.message
        with pytest.raises(datapunk.StageError, match=r"raised Nasty: <Nasty \(str\(\) failed\)>"):
            datapunk.Pipeline(f).run([2], on_error="raise")

    def test_source_that_shrank_cannot_be_resumed(self, tmp_path, src):
        """A source with fewer records than acknowledged is refused with advice."""
        stop = FailingAt(2000, KeyboardInterrupt())
        pipe = datapunk.Pipeline(datapunk.Stage(stop, name="stop"), *PIPE.parts, name="ck")
        db = SQLiteCheckpoint(tmp_path / "r.db", every=None, seconds=None)
        with pytest.raises(KeyboardInterrupt):
            pipe.run(src, tmp_path / "o.jsonl", checkpoint=db, chunk_size=100)
        src.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(50)))
        with pytest.raises(datapunk.ConfigurationError, match="the source has fewer records than"):
            pipe.run(src, tmp_path / "o.jsonl", checkpoint=db, chunk_size=100)

    def test_source_that_changed_cannot_be_resumed(self, tmp_path):
        """A record at another position than acknowledged is refused."""
        stop = FailingAt(30, KeyboardInterrupt())
        pipe = datapunk.Pipeline(stop, name="p")

        class Src:
            name = "src"

            def __init__(self, step):
                self.step = step

            def read(self):
                for i in range(50):
                    yield i * self.step, {"i": i}

        db = SQLiteCheckpoint(tmp_path / "r.db", every=None, seconds=None)
        with pytest.raises(KeyboardInterrupt):
            pipe.run(Src(1), [], checkpoint=db, chunk_size=10)
        with pytest.raises(datapunk.ConfigurationError, match="the source changed"):
            pipe.run(Src(2), [], checkpoint=db, chunk_size=10)

    def test_invalid_checkpoint_arguments(self, tmp_path):
        """Bad checkpoint= values and options are configuration errors."""
        pipe = datapunk.Pipeline(lambda x: x)
        with pytest.raises(datapunk.ConfigurationError, match="checkpoint= must be a file path"):
            pipe.run([1], checkpoint=3)
        with pytest.raises(datapunk.ConfigurationError, match="every= must be"):
            SQLiteCheckpoint(tmp_path / "x.db", every=0)
        with pytest.raises(datapunk.ConfigurationError, match="seconds= must be"):
            SQLiteCheckpoint(tmp_path / "x.db", seconds=-1)
        with pytest.raises(datapunk.ConfigurationError, match="does not exist; create it first"):
            pipe.run([1], checkpoint=tmp_path / "missing" / "x.db")

    def test_output_that_cannot_resume_is_refused(self, tmp_path):
        """A file format without resume support is refused up front, not lost later."""
        out = tmp_path / "o.csv"
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Pipeline(lambda x: {"x": x}).run([1], out, checkpoint=tmp_path / "r.db")
        assert str(info.value) == (
            f"the sink {str(out)!r} cannot be resumed after a crash: it discards its output "
            "when a run stops and has no resume(). With checkpoint= write JSON Lines (.jsonl), "
            "or use a sink with flush(), resume() and suspend()"
        )
        assert not (tmp_path / "r.db").exists()

    def test_compressed_output_cannot_be_checkpointed(self, tmp_path):
        """gzip output cannot be truncated back, so it is refused with a checkpoint."""
        with pytest.raises(
            datapunk.SinkError, match=r"compressed \(.gz\) output cannot be resumed"
        ):
            datapunk.Pipeline(lambda x: x).run(
                [1], tmp_path / "o.jsonl.gz", checkpoint=tmp_path / "r.db"
            )


class TestStore:
    def test_store_closes_its_connection_as_a_context_manager(self, tmp_path):
        """`with SQLiteCheckpoint(...)` closes the database when the block ends."""
        with SQLiteCheckpoint(tmp_path / "c.db") as ck:
            ck.save("k", {"phase": "running"})
            assert ck.load("k") == {"phase": "running", "fingerprint": ""}
            assert ck._conn is not None
        assert ck._conn is None

    def test_interrupted_while_renaming_outputs_restarts_cleanly(self, tmp_path, src, expected):
        """Killed after the output was renamed but before the run was marked finished:
        the next run starts over and still writes the exact output."""
        stop = FailingAt(1300, KeyboardInterrupt())
        pipe = datapunk.Pipeline(datapunk.Stage(stop, name="stop"), *PIPE.parts, name="ck")
        ck = SQLiteCheckpoint(tmp_path / "r.db", every=None, seconds=None)
        out = tmp_path / "o.jsonl"
        with pytest.raises(KeyboardInterrupt):
            pipe.run(src, out, checkpoint=ck, chunk_size=100)
        # Make it look like the crash hit between the rename and the last save.
        key, state = next(iter(ck.runs().items()))
        state["phase"] = "closing"
        Path(state["tokens"]["sink"]["tmp"]).unlink()
        ck.save(key, state)
        stop.armed = False
        report = pipe.run(src, out, checkpoint=ck, chunk_size=100)
        assert out.read_bytes() == expected[0]
        assert report.records_in == N

    def test_store_helpers(self, tmp_path):
        """repr, runs(), dead_letters(), clear(), close() and pickling."""
        import pickle

        ck = SQLiteCheckpoint(tmp_path / "r.db")
        assert repr(ck) == f"SQLiteCheckpoint({str(tmp_path / 'r.db')!r})"
        dl = datapunk.DeadLetter({"a": 1}, (3, "x"), "s", "E", "m", attempts=2, run_id="r1")
        ck.save("k", {"fingerprint": "f", "records_in": 3}, [dl])
        assert ck.load("k") == {"fingerprint": "f", "records_in": 3}
        assert list(ck.dead_letters("k")) == [dl]
        assert ck.runs() == {"k": {"fingerprint": "f", "records_in": 3}}
        copy = pickle.loads(pickle.dumps(ck))
        assert copy.load("k") == ck.load("k")
        ck.clear("k")
        assert (ck.load("k"), list(ck.dead_letters("k"))) == (None, [])
        ck.close()
        copy.close()
        assert ck.load("missing") is None  # reopens on use

    def test_dead_letters_table_is_queryable(self, tmp_path):
        """The dead-letter table has one column per field, for SQL."""
        ck = SQLiteCheckpoint(tmp_path / "r.db")
        datapunk.Pipeline(double, name="p").run([{"i": 7}, {"i": 8}], [], checkpoint=ck)
        conn = sqlite3.connect(tmp_path / "r.db")
        rows = conn.execute(
            "SELECT position, stage, error_type, message, attempts FROM datapunk_dead_letters"
        ).fetchall()
        conn.close()
        assert rows == [("0", "double", "ValueError", "7 is a multiple of 7", 1)]

    def test_newer_schema_is_refused(self, tmp_path):
        """A checkpoint written by a newer datapunk is not touched."""
        db = tmp_path / "r.db"
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA user_version=99")
        conn.close()
        with pytest.raises(datapunk.ConfigurationError, match="has schema version 99"):
            SQLiteCheckpoint(db).load("k")


# --------------------------------------------------------------- fingerprint
class TestFingerprint:
    def test_same_pipeline_same_fingerprint(self):
        """Rebuilding the same pipeline gives the same fingerprint; code changes change it."""
        from datapunk._core.engine import compile_stages

        def a(x):
            return x + 1

        def b(x):
            return x + 2

        fp = lambda p: fingerprint(compile_stages(p))  # noqa: E731
        assert fp(datapunk.Pipeline(a, name="p")) == fp(datapunk.Pipeline(a, name="p"))
        assert fp(datapunk.Pipeline(a)) != fp(datapunk.Pipeline(datapunk.Stage(b, name="a")))
        assert fp(datapunk.Pipeline(datapunk.Stage(a, retry=2))) != fp(datapunk.Pipeline(a))

    def test_run_key_names_pipeline_and_source(self, tmp_path, src):
        """The run key is the pipeline name and the source's absolute path."""
        from datapunk._core.adapters import as_source

        assert run_key(PIPE, as_source(src, 10)) == f"ck <- {src.resolve()}"
        assert run_key(PIPE, as_source([1, 2], 10)) == "ck <- <list of 2>"


# ---------------------------------------------------------------- command line
CLI_STAGES = """
import os

def double(r):
    stop = os.environ.get("STOP_AT")
    if stop is not None and r["i"] == int(stop):
        raise KeyboardInterrupt
    if r["i"] % 7 == 0:
        raise ValueError(f"{r['i']} is a multiple of 7")
    return {"i": r["i"], "twice": r["i"] * 2}

def triple(r):
    return {"i": r["i"], "twice": r["i"] * 3}
"""


def _dp(*args, cwd, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "datapunk", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.e2e
class TestCommandLine:
    @pytest.fixture
    def work(self, tmp_path, src):
        (tmp_path / "stages.py").write_text(CLI_STAGES)
        (tmp_path / "p.toml").write_text(
            'name = "cli"\n[run]\nchunk_size = 100\n[[stages]]\nfunction = "stages:double"\n'
        )
        (tmp_path / "changed.toml").write_text(
            'name = "cli"\n[run]\nchunk_size = 100\n[[stages]]\nfunction = "stages:triple"\n'
        )
        return tmp_path

    def test_checkpoint_and_resume(self, work):
        """--checkpoint records progress; --resume continues the interrupted run exactly."""
        ref = _dp("process", "in.jsonl", "-c", "p.toml", "-o", "ref.jsonl", cwd=work)
        assert ref.returncode == 0, ref.stderr
        args = ["process", "in.jsonl", "-c", "p.toml", "-o", "out.jsonl", "--checkpoint", "r.db"]
        stopped = _dp(*args, cwd=work, env={"STOP_AT": "1234"})
        assert stopped.returncode == 130, stopped.stderr
        assert stopped.stderr.endswith(
            "datapunk: error: interrupted; progress is saved in the checkpoint: run the same "
            "command with --resume to continue\n"
        )
        assert not (work / "out.jsonl").exists()
        progress = _state(work / "r.db")
        assert progress["phase"] == "running"
        resumed = _dp(*args, "--resume", cwd=work)
        assert resumed.returncode == 0, resumed.stderr
        assert (work / "out.jsonl").read_bytes() == (work / "ref.jsonl").read_bytes()
        state = _state(work / "r.db")
        assert (state["phase"], len(state["run_ids"]), state["records_in"]) == ("finished", 2, N)

    def test_without_resume_a_run_starts_afresh(self, work):
        """--checkpoint without --resume discards an interrupted run's progress."""
        args = ["process", "in.jsonl", "-c", "p.toml", "-o", "out.jsonl", "--checkpoint", "r.db"]
        assert _dp(*args, cwd=work, env={"STOP_AT": "2000"}).returncode == 130
        again = _dp(*args, cwd=work)
        assert again.returncode == 0, again.stderr
        assert len(_state(work / "r.db")["run_ids"]) == 1

    def test_resume_defaults_to_a_checkpoint_next_to_the_output(self, work):
        """--resume alone keeps its checkpoint in OUTPUT.checkpoint.db."""
        proc = _dp("process", "in.jsonl", "-c", "p.toml", "-o", "out.jsonl", "--resume", cwd=work)
        assert proc.returncode == 0, proc.stderr
        assert _state(work / "out.jsonl.checkpoint.db")["phase"] == "finished"

    def test_resume_with_a_changed_pipeline_is_a_usage_error(self, work):
        """A changed pipeline cannot resume: exit code 2 and the reason."""
        args = ["in.jsonl", "-o", "out.jsonl", "--checkpoint", "r.db"]
        assert _dp("process", *args, "-c", "p.toml", cwd=work, env={"STOP_AT": "300"}).returncode
        proc = _dp("process", *args, "-c", "changed.toml", "--resume", cwd=work)
        assert proc.returncode == 2
        assert "the pipeline changed since it was saved" in proc.stderr
        assert "run without --resume" in proc.stderr

    def test_corrupt_checkpoint_is_a_usage_error(self, work):
        """A corrupt checkpoint file: exit code 2, nothing written."""
        (work / "r.db").write_text("garbage" * 100)
        proc = _dp(
            "process",
            "in.jsonl",
            "-c",
            "p.toml",
            "-o",
            "out.jsonl",
            "--checkpoint",
            "r.db",
            "--resume",
            cwd=work,
        )
        assert proc.returncode == 2
        assert "is not a datapunk checkpoint database or is corrupt" in proc.stderr
        assert not (work / "out.jsonl").exists()
