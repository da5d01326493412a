"""The Dask runner on a local cluster of two worker processes."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

import datapunk
from datapunk.runners import Dask
from datapunk.runners._ranges import jsonl_ranges

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

pytest.importorskip("distributed")


def score(record: dict[str, Any]) -> int:
    if record["a"] % 7 == 3:
        raise ValueError(f"unlucky {record['a']}")
    return record["a"] * 2


def keep(x: int) -> bool:
    return x % 3 != 0


def halve_batch(values: list[int]) -> list[int]:
    if any(v % 13 == 0 for v in values):
        raise ValueError("whole batch refused")
    return [v // 2 for v in values]


def exit_on_42(record: dict[str, Any]) -> dict[str, Any]:
    if record["a"] == 42:
        os._exit(3)
    return record


PIPE = datapunk.Pipeline(score) | datapunk.Filter(keep) | datapunk.Batch(halve_batch, size=4)


def write_jsonl(path: Path, n: int, *, broken_every: int = 0) -> Path:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"a": i}) + "\n")
            if broken_every and i % broken_every == 5:
                f.write("\n{broken json\n")
    return path


def outcome(source: Any, **kw: Any) -> tuple[Any, ...]:
    out: list[Any] = []
    dead: list[datapunk.DeadLetter] = []
    report = PIPE.run(source, out, dead_letter=dead, chunk_size=50, **kw)
    letters = [(d.position, d.stage, d.error_type, d.message) for d in dead]
    counts = (report.records_in, report.records_out, report.filtered, report.failed)
    return out, letters, counts, report.runner


class TestDask:
    def test_jsonl_by_byte_ranges_matches_serial(self, dask_client, tmp_path):
        """A JSON Lines file split in byte ranges gives Serial's answer, line numbers included."""
        path = write_jsonl(tmp_path / "in.jsonl", 2000, broken_every=300)
        ranges = list(jsonl_ranges(datapunk.io.read(path), 50, 4) or ())
        assert len(ranges) == 4
        want = outcome(str(path))
        got = outcome(str(path), runner=Dask(dask_client, partitions=4))
        assert want[:3] == got[:3]
        assert got[3] == "dask"
        assert any(stage == "<source>" for _, stage, _, _ in got[1])

    def test_ranges_cover_the_file(self, tmp_path):
        """Byte ranges are contiguous, start on whole chunks and cover every line."""
        path = write_jsonl(tmp_path / "in.jsonl", 1000, broken_every=97)
        source = datapunk.io.read(path)
        ranges = list(jsonl_ranges(source, 30, 7) or ())
        assert 1 < len(ranges) <= 7
        assert ranges[0].start == 0
        assert not path.read_bytes()[ranges[-1].end :].strip()
        assert all(a.end == b.start for a, b in itertools.pairwise(ranges))
        records = [p for r in ranges for chunk in r.read(30) for p in chunk[0]]
        assert records == [p for p, _ in source.read()]

    def test_gzip_jsonl_is_read_by_the_caller(self, dask_client, tmp_path):
        """A gzip file cannot be split: it is read by the caller and still matches Serial."""
        path = write_jsonl(tmp_path / "in.jsonl.gz", 500)
        assert jsonl_ranges(datapunk.io.read(path), 50, 4) is None
        assert outcome(str(path))[:3] == outcome(str(path), runner=Dask(dask_client))[:3]

    @pytest.mark.parametrize("kind", ["list", "generator", "csv"])
    def test_other_sources_match_serial(self, dask_client, tmp_path, kind):
        """Lists, generators and CSV files give Serial's answer."""
        if kind == "csv":
            path = tmp_path / "in.csv"
            path.write_text("a\n" + "".join(f"{i}\n" for i in range(700)))
            pipe = datapunk.Pipeline(lambda r: {"a": int(r["a"])}) | PIPE
            w_out: list[Any] = []
            g_out: list[Any] = []
            w = pipe.run(str(path), w_out, chunk_size=50)
            g = pipe.run(str(path), g_out, chunk_size=50, runner=Dask(dask_client))
            assert (w_out, w.failed) == (g_out, g.failed)
            return
        records = [{"a": i} for i in range(700)]

        def make() -> Any:
            return list(records) if kind == "list" else iter(records)

        assert outcome(make())[:3] == outcome(make(), runner=Dask(dask_client))[:3]

    def test_default_client(self, dask_client):
        """Without a client, the current default client is used."""
        out: list[int] = []
        report = datapunk.Pipeline(lambda x: x + 1).run(range(10), out, runner=Dask())
        assert (out, report.runner) == (list(range(1, 11)), "dask")

    def test_unordered(self, dask_client):
        """ordered=False gives the same multiset of outputs and the same counts."""
        records = [{"a": i} for i in range(600)]
        want = outcome(records)
        got = outcome(records, runner=Dask(dask_client, ordered=False, partitions=6))
        assert Counter(want[0]) == Counter(got[0])
        assert sorted(want[1]) == sorted(got[1])
        assert want[2] == got[2]

    def test_raise_policy_reraises_and_commits_nothing(self, dask_client, tmp_path):
        """on_error='raise' re-raises the worker's error; the output file is not written."""
        target = tmp_path / "out.jsonl"
        with pytest.raises(datapunk.StageError, match="score"):
            datapunk.Pipeline(score).run(
                [{"a": i} for i in range(100)],
                str(target),
                on_error="raise",
                runner=Dask(dask_client),
            )
        assert not target.exists()

    def test_file_sink_written_once(self, dask_client, tmp_path):
        """Outputs reach a file sink in input order, committed once."""
        src = write_jsonl(tmp_path / "in.jsonl", 300)
        a, b = tmp_path / "serial.jsonl", tmp_path / "dask.jsonl"
        datapunk.Pipeline(score).run(str(src), str(a))
        datapunk.Pipeline(score).run(str(src), str(b), runner=Dask(dask_client, partitions=3))
        assert a.read_text() == b.read_text()

    def test_checkpoint_refused(self, dask_client):
        """Dask cannot resume from a checkpoint: refused at start."""
        from datapunk._core.run import Job

        job = Job.create(datapunk.Pipeline(score), [{"a": 1}], [])
        job.checkpoint = object()
        with pytest.raises(datapunk.ConfigurationError, match="checkpoint"):
            Dask(dask_client).run(job)

    def test_missing_dask_names_the_extra(self, monkeypatch):
        """Without dask.distributed the runner says what to install."""
        monkeypatch.setitem(sys.modules, "distributed", None)
        with pytest.raises(datapunk.ConfigurationError, match=r"pip install datapunk\[dask\]"):
            datapunk.Pipeline(score).run([{"a": 1}], [], runner=Dask())

    @pytest.mark.slow
    def test_killed_workers_fail_only_their_partition(self, tmp_path):
        """A partition that kills its workers becomes dead letters; the run goes on."""
        import dask
        import distributed

        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            distributed.LocalCluster(
                processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster, set_as_default=False) as client,
        ):
            out: list[Any] = []
            dead: list[datapunk.DeadLetter] = []
            report = datapunk.Pipeline(exit_on_42).run(
                [{"a": i} for i in range(200)],
                out,
                dead_letter=dead,
                chunk_size=10,
                runner=Dask(client, partitions=10),
            )
        assert [d.position for d in dead] == list(range(40, 50))
        assert {d.error_type for d in dead} == {"WorkerDied"}
        assert out == [{"a": i} for i in range(200) if not 40 <= i < 50]
        assert report.failed == 10

    @pytest.mark.slow
    def test_killed_workers_with_parts_written_on_workers(self, tmp_path):
        """The chunks of a killed partition are rerun as parts of their own; the file is whole."""
        import dask
        import distributed

        target = tmp_path / "out.jsonl"
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            distributed.LocalCluster(
                processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster, set_as_default=False) as client,
        ):
            dead: list[datapunk.DeadLetter] = []
            report = datapunk.Pipeline(exit_on_42).run(
                [{"a": i} for i in range(200)],
                str(target),
                dead_letter=dead,
                chunk_size=10,
                runner=Dask(client, partitions=5),
            )
        assert [d.position for d in dead] == list(range(40, 50))
        lines = target.read_text().splitlines()
        assert [json.loads(line)["a"] for line in lines] == [
            i for i in range(200) if not 40 <= i < 50
        ]
        assert report.records_out == 190
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def fail_on_sevens(x: int) -> int:
    if x % 7 == 0:
        raise ValueError("seven")
    return x


def flaky(x: int) -> int:
    if x % 5 == 0:
        raise ConnectionError("flaky")
    return x


class TestPoliciesOnDask:
    @pytest.mark.parametrize("budget", [0, 3])
    def test_max_errors_stops_at_the_same_point(self, dask_client, budget):
        """The error budget stops a Dask run after the same chunk as a serial run."""

        def run(runner: Any) -> tuple[Any, ...]:
            pipe = datapunk.Pipeline(fail_on_sevens)
            with pytest.raises(datapunk.ErrorBudgetExceeded) as info:
                pipe.run(range(200), [], chunk_size=10, max_errors=budget, runner=runner)
            rep = info.value.report
            return rep.records_in, rep.failed, rep.records_out

        assert run(None) == run(Dask(dask_client, partitions=5))

    def test_retries_are_counted_the_same(self, dask_client):
        """Retries happen on the workers and are counted as in a serial run."""
        pipe = datapunk.Pipeline(datapunk.stage(retry=datapunk.Retry(attempts=3, backoff=0))(flaky))

        def run(runner: Any) -> tuple[Any, ...]:
            out: list[Any] = []
            rep = pipe.run(range(30), out, runner=runner, chunk_size=7)
            return out, rep.retried, rep.failed, [e.position for e in rep.errors]

        assert run(None) == run(Dask(dask_client))


class TestParquet:
    def test_row_groups_match_serial(self, dask_client, tmp_path):
        """A Parquet file split by row groups gives Serial's answer, row indexes included."""
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        from datapunk.runners._dask import _parquet_parts

        path = tmp_path / "in.parquet"
        pq.write_table(pa.table({"a": list(range(1000))}), path, row_group_size=70)
        source = datapunk.io.read(path)
        parts = _parquet_parts(source, 50, 4)
        assert parts is not None
        assert [(p.start, p.end) for p in parts] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
        rows = [
            (pos, r)
            for p in parts
            for chunk in p.read(50)
            for pos, r in zip(*chunk[:2], strict=True)
        ]
        assert rows == list(source.read())
        want = outcome(str(path))
        got = outcome(str(path), runner=Dask(dask_client, partitions=4))
        assert want[:3] == got[:3]


def test_arun(dask_client):
    """await pipeline.arun(...) works with the Dask runner."""
    import asyncio

    async def main() -> list[int]:
        out: list[int] = []
        await datapunk.Pipeline(fail_on_sevens).arun(range(1, 7), out, runner=Dask(dask_client))
        return out

    assert asyncio.run(main()) == [1, 2, 3, 4, 5, 6]
