"""
Dask at scale: CSV files split by byte ranges, outputs written by the workers.

Each partition's outputs are written on its worker to a part file in a
staging directory, and the caller assembles the parts and commits the output
atomically; the result must be byte for byte what Serial writes.
"""

from __future__ import annotations

import csv
import itertools
import json
import pickle
import re
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datapunk
from datapunk._core.adapters import as_source
from datapunk.io import CsvSink, CsvSource, JsonlSink
from datapunk.plugins import PartitionedSink, SinkPart
from datapunk.runners import Dask
from datapunk.runners._ranges import csv_ranges, jsonl_ranges
from strategies import build, int_records, pipeline_specs

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

pytestmark = pytest.mark.integration

pytest.importorskip("distributed")

FIXED = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def double(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("a") == "13":
        raise ValueError("thirteen")
    return {**record, "twice": (record.get("a") or "") * 2}


class Spy:
    """A hook that records what the caller received for every chunk."""

    def __init__(self) -> None:
        self.outputs = 0
        self.written = 0

    def on_chunk(self, job: Any, result: Any) -> None:
        self.outputs += len(result.outputs)
        self.written += result.written


def leftovers(directory: Path, *keep: str) -> list[str]:
    """Files in *directory* other than *keep*: temporary files or staging directories."""
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


# ------------------------------------------------------------ CSV ranges
PIECES = [
    "a",
    "b,c",
    '"two\nlines"',
    '"x""y"',
    "",
    '"three\n\nlines"',
    'z"w',
    "\udcff",
    '"unterminated',
    "long" * 12,
]


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """CSV text with quoted newlines, ragged rows, blank lines, bad bytes and long lines."""
    rows = draw(
        st.lists(
            st.lists(st.sampled_from(PIECES), min_size=0, max_size=3).map(",".join),
            max_size=30,
        )
    )
    ending = draw(st.sampled_from(["", "\n", "\r\n"]))
    header = draw(st.sampled_from(["h1,h2", "h1,h2", "h1,h1", "\udcff,h2"]))
    text = header + "\n" + "\n".join(rows) + ending
    data = text.encode("utf-8", "surrogateescape")
    return (b"\xef\xbb\xbf" + data) if draw(st.booleans()) else data


def chunks_of(source: Any) -> list[tuple[list[Any], list[str], list[int]]]:
    return [(list(p), [repr(r) for r in rs], list(m)) for p, rs, m in source]


class TestCsvRanges:
    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        data=csv_files(),
        size=st.integers(1, 6),
        partitions=st.integers(1, 6),
        header=st.booleans(),
    )
    def test_ranges_read_what_serial_reads(self, tmp_path, data, size, partitions, header):
        """Records, line numbers and failures of the byte ranges are Serial's, in order."""
        path = tmp_path / "in.csv"
        path.write_bytes(data)
        source = CsvSource(path, max_line_bytes=40, fieldnames=None if header else ["h1", "h2"])
        try:
            want: Any = chunks_of(as_source(source, size).chunks())
        except datapunk.SourceError as exc:
            message = str(exc)
            with pytest.raises(datapunk.SourceError, match=re.escape(message)):
                list(csv_ranges(source, size, partitions) or ())
            return
        ranges = list(csv_ranges(source, size, partitions) or ())
        got = chunks_of(c for r in ranges for c in r.read(size))
        assert got == want
        if ranges:
            assert not data[ranges[-1].end :].strip()  # at most blank lines after
            assert all(a.end == b.start for a, b in itertools.pairwise(ranges))
            assert len(ranges) <= partitions

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        lines=st.lists(
            st.sampled_from(
                ['{"a": 1}', "2", "", "   ", "{broken", '"' + "x" * 50 + '"', "\udcff", "\ufeff3"]
            ),
            max_size=40,
        ),
        ending=st.sampled_from(["", "\n"]),
        size=st.integers(1, 6),
        partitions=st.integers(1, 6),
    )
    def test_jsonl_ranges_read_what_serial_reads(self, tmp_path, lines, ending, size, partitions):
        """JSON Lines byte ranges give Serial's chunks, blank and broken lines included."""
        path = tmp_path / "in.jsonl"
        data = ("\n".join(lines) + ending).encode("utf-8", "surrogateescape")
        path.write_bytes(data)
        source = datapunk.io.JsonlSource(path, max_line_bytes=40)
        want = chunks_of(as_source(source, size).chunks())
        ranges = list(jsonl_ranges(source, size, partitions) or ())
        assert chunks_of(c for r in ranges for c in r.read(size)) == want
        assert len(ranges) <= partitions
        if ranges:
            assert not data[ranges[-1].end :].strip()  # at most blank lines after
            assert all(a.end == b.start for a, b in itertools.pairwise(ranges))

    def test_a_quoted_field_spanning_lines_is_never_cut(self, tmp_path):
        """A record over several lines stays whole, wherever the chunk boundaries fall."""
        path = tmp_path / "in.csv"
        rows = [f'{i},"line one\nline two of {i}"\n' for i in range(40)]
        path.write_text("id,text\n" + "".join(rows))
        ranges = list(csv_ranges(CsvSource(path), 3, 5) or ())
        starts = [r.first_line for r in ranges]
        assert len(ranges) == 5
        assert all(s % 2 == 0 for s in starts)  # every record starts on an even line
        texts = [rec["text"] for r in ranges for _, recs, _ in r.read(3) for rec in recs]
        assert texts == [f"line one\nline two of {i}" for i in range(40)]

    def test_gzip_and_empty_files(self, tmp_path):
        """A gzip CSV cannot be entered in the middle; a header-only file has no ranges."""
        gz = tmp_path / "in.csv.gz"
        import gzip

        gz.write_bytes(gzip.compress(b"a\n1\n"))
        assert csv_ranges(CsvSource(gz), 10, 2) is None
        empty = tmp_path / "empty.csv"
        empty.write_text("a,b\n")
        assert list(csv_ranges(CsvSource(empty), 10, 2) or [None]) == []
        nothing = tmp_path / "nothing.csv"
        nothing.write_text("")
        assert list(csv_ranges(CsvSource(nothing), 10, 2) or [None]) == []

    def test_csv_on_dask_matches_serial(self, dask_client, tmp_path):
        """A CSV file read by the workers by byte ranges gives Serial's answer."""
        path = tmp_path / "in.csv"
        lines = ["a,note"]
        for i in range(600):
            note = f'"multi\nline {i}"' if i % 9 == 0 else f"n{i}"
            lines.append(f"{i},{note}" if i % 50 != 7 else f"{i},too,many")
        path.write_text("\n".join(lines) + "\n")
        pipe = datapunk.Pipeline(double)

        def run(runner: Any) -> tuple[Any, ...]:
            out: list[Any] = []
            dead: list[datapunk.DeadLetter] = []
            report = pipe.run(str(path), out, dead_letter=dead, chunk_size=40, runner=runner)
            return out, [(d.position, d.stage, d.error_type) for d in dead], report.failed

        want = run(None)
        got = run(Dask(dask_client, partitions=4))
        assert got == want
        assert {stage for _, stage, _ in want[1]} == {"<source>", "double"}


# ------------------------------------------------------ writes on workers
@pytest.fixture(scope="module")
def jsonl_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "in.jsonl"
    lines = [json.dumps({"a": str(i), "n": i}) for i in range(3000)]
    lines.insert(100, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


class TestWritesOnWorkers:
    @pytest.mark.parametrize("suffix", ["jsonl", "json", "csv", "tsv", "jsonl.gz", "csv.gz"])
    def test_output_is_serials_byte_for_byte(self, dask_client, tmp_path, jsonl_input, suffix):
        """Each format assembled from the workers' parts is exactly Serial's file."""
        pipe = datapunk.Pipeline(double)
        serial, parted = tmp_path / f"serial.{suffix}", tmp_path / f"dask.{suffix}"
        want = pipe.run(str(jsonl_input), str(serial), chunk_size=100)
        spy = Spy()
        got = pipe.run(
            str(jsonl_input),
            str(parted),
            chunk_size=100,
            hooks=[spy],
            runner=Dask(dask_client, partitions=5),
        )
        assert parted.read_bytes() == serial.read_bytes()
        assert (got.records_out, got.failed) == (want.records_out, want.failed) == (2999, 2)
        assert (spy.outputs, spy.written) == (0, 2999)  # nothing came back to the caller
        assert leftovers(tmp_path, serial.name, parted.name) == []

    def test_caller_writes_when_asked(self, dask_client, tmp_path, jsonl_input):
        """write='caller' brings the outputs back; the file is the same."""
        pipe = datapunk.Pipeline(double)
        a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        pipe.run(str(jsonl_input), str(a), runner=Dask(dask_client, partitions=3))
        spy = Spy()
        pipe.run(
            str(jsonl_input),
            str(b),
            hooks=[spy],
            runner=Dask(dask_client, partitions=3, write="caller"),
        )
        assert a.read_bytes() == b.read_bytes()
        assert (spy.outputs, spy.written) == (2999, 0)

    def test_discarded_outputs_never_travel(self, dask_client, jsonl_input):
        """Without a sink, the workers only count the outputs."""
        spy = Spy()
        report = datapunk.Pipeline(double).run(
            str(jsonl_input), hooks=[spy], runner=Dask(dask_client, partitions=3)
        )
        assert report.records_out == 2999
        assert (spy.outputs, spy.written) == (0, 2999)

    def test_failed_run_leaves_no_output_and_no_parts(self, dask_client, tmp_path, jsonl_input):
        """A run stopped by its error budget commits nothing and removes every part."""
        target = tmp_path / "out.jsonl"
        with pytest.raises(datapunk.ErrorBudgetExceeded):
            datapunk.Pipeline(double).run(
                str(jsonl_input),
                str(target),
                max_errors=1,
                runner=Dask(dask_client, partitions=4),
            )
        assert leftovers(tmp_path) == []

    def test_raise_policy_leaves_no_parts(self, dask_client, tmp_path, jsonl_input):
        """on_error='raise' aborts the parts of every partition."""
        target = tmp_path / "out.csv"
        with pytest.raises(datapunk.StageError, match="thirteen"):
            datapunk.Pipeline(double).run(
                [{"a": str(i)} for i in range(200)],
                str(target),
                on_error="raise",
                runner=Dask(dask_client, partitions=4),
            )
        assert leftovers(tmp_path) == []

    def test_csv_parts_with_other_columns_are_relaid(self, dask_client, tmp_path):
        """Records whose keys vary by partition give Serial's CSV: one header, same rows."""
        records: list[dict[str, Any]] = [{"a": 1, "b": "x"} for _ in range(30)]
        records += [{"b": "only b"} for _ in range(30)]  # a later part starts without "a"
        records += [{"b": "y\rz", "a": 2} for _ in range(30)]  # other order, needs quoting
        records += [{"b": "w"}, {"a": 3, "b": "v"}] * 15  # grows inside a part
        serial, parted = tmp_path / "serial.csv", tmp_path / "dask.csv"
        datapunk.Pipeline(dict).run(records, str(serial), chunk_size=10)
        datapunk.Pipeline(dict).run(
            records, str(parted), chunk_size=10, runner=Dask(dask_client, partitions=6)
        )
        assert parted.read_bytes() == serial.read_bytes()
        with serial.open(newline="") as f:
            assert next(csv.reader(f)) == ["a", "b"]

    def test_csv_field_outside_the_header_fails_as_in_serial(self, dask_client, tmp_path):
        """A record with a column the header lacks stops the run, and nothing is written."""
        records = [{"a": i} for i in range(40)] + [{"a": 1, "extra": 2}]
        for runner in (None, Dask(dask_client, partitions=4)):
            target = tmp_path / "out.csv"
            with pytest.raises(datapunk.SinkError, match=r"field\(s\) \['extra'\]"):
                datapunk.Pipeline(dict).run(records, str(target), chunk_size=10, runner=runner)
            assert leftovers(tmp_path) == []

    def test_csv_fixed_fieldnames_refuse_other_fields_on_the_worker(self, dask_client, tmp_path):
        """With fieldnames=, a worker refuses a foreign field as Serial does."""
        sink = CsvSink(tmp_path / "out.csv", fieldnames=["a"])
        with pytest.raises(datapunk.SinkError, match=r"field\(s\) \['b'\]"):
            datapunk.Pipeline(dict).run(
                [{"a": 1}, {"a": 2, "b": 3}], sink, runner=Dask(dask_client, partitions=2)
            )
        assert leftovers(tmp_path) == []

    def test_empty_output(self, dask_client, tmp_path):
        """No record passes: the output exists and is Serial's empty file."""
        for suffix in ("jsonl", "json", "csv"):
            a, b = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
            drop = datapunk.Pipeline(datapunk.Filter(lambda r: False, name="none"))
            drop.run([{"a": 1}] * 20, str(a))
            drop.run([{"a": 1}] * 20, str(b), runner=Dask(dask_client, partitions=2))
            assert a.read_bytes() == b.read_bytes()

    def test_parquet_with_a_schema_is_written_on_the_workers(self, dask_client, tmp_path):
        """Parquet parts (a schema given) hold the rows Serial writes, with its schema."""
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        schema = pa.schema([("a", pa.string()), ("n", pa.int64()), ("twice", pa.string())])
        records = [{"a": str(i), "n": i} for i in range(2500)]
        serial, parted = tmp_path / "serial.parquet", tmp_path / "dask.parquet"
        pipe = datapunk.Pipeline(double)
        pipe.run(records, datapunk.io.write(serial, schema=schema, row_group_size=300))
        spy = Spy()
        report = pipe.run(
            records,
            datapunk.io.write(parted, schema=schema, row_group_size=300),
            chunk_size=100,
            hooks=[spy],
            runner=Dask(dask_client, partitions=4),
        )
        assert (spy.outputs, spy.written) == (0, 2499)
        assert report.failed == 1
        want, got = pq.read_table(serial), pq.read_table(parted)
        assert got.schema == want.schema
        assert got.to_pylist() == want.to_pylist()
        assert leftovers(tmp_path, serial.name, parted.name) == []

    def test_parquet_without_a_schema_is_written_by_the_caller(self, dask_client, tmp_path):
        """Without schema= a Parquet output's schema is its first row group's: written here."""
        pq = pytest.importorskip("pyarrow.parquet")
        sink = datapunk.io.write(tmp_path / "out.parquet")
        assert not sink.partitioned
        with pytest.raises(datapunk.ConfigurationError, match="without schema="):
            sink.part("000000")
        spy = Spy()
        datapunk.Pipeline(dict).run(
            [{"a": i} for i in range(50)],
            sink,
            hooks=[spy],
            runner=Dask(dask_client, partitions=2),
        )
        assert (spy.outputs, spy.written) == (50, 0)
        assert pq.read_table(tmp_path / "out.parquet").to_pylist() == [{"a": i} for i in range(50)]

    def test_parquet_part_refuses_foreign_fields(self, tmp_path):
        """A Parquet part checks records against the schema, as the sink does."""
        pa = pytest.importorskip("pyarrow")
        sink = datapunk.io.write(tmp_path / "out.parquet", schema=pa.schema([("a", pa.int64())]))
        part = sink.part("000000")
        part.write([{"a": 1, "b": 2}])  # buffered: checked when its row group is written
        with pytest.raises(datapunk.SinkError, match=r"field\(s\) \['b'\]"):
            part.commit()
        bad = sink.part("000001")
        bad.write([{"a": "not a number"}])
        with pytest.raises(datapunk.SinkError, match="do not fit the Parquet schema"):
            bad.commit()
        sink.commit_parts([])
        assert pa.parquet.read_table(tmp_path / "out.parquet").num_rows == 0
        assert leftovers(tmp_path, "out.parquet") == []

    @pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
    def test_relative_paths_mean_the_callers_directory(
        self, dask_client, tmp_path, monkeypatch, suffix
    ):
        """Workers started elsewhere read and write the files the caller's relative paths name."""
        if suffix == "parquet":
            pa = pytest.importorskip("pyarrow")
            pq = pytest.importorskip("pyarrow.parquet")
            pq.write_table(pa.table({"a": [str(i) for i in range(300)]}), tmp_path / "in.parquet")
        elif suffix == "csv":
            (tmp_path / "in.csv").write_text("a\n" + "".join(f"{i}\n" for i in range(300)))
        else:
            (tmp_path / "in.jsonl").write_text("".join(f'{{"a": "{i}"}}\n' for i in range(300)))
        monkeypatch.chdir(tmp_path)  # the workers' directory is the one they started in
        pipe = datapunk.Pipeline(double)
        pipe.run(f"in.{suffix}", "serial.jsonl", chunk_size=50)
        pipe.run(
            f"in.{suffix}", "dask.jsonl", chunk_size=50, runner=Dask(dask_client, partitions=3)
        )
        assert (tmp_path / "dask.jsonl").read_bytes() == (tmp_path / "serial.jsonl").read_bytes()

    def test_bad_write_option(self):
        """An unknown write= is refused with the allowed values."""
        with pytest.raises(datapunk.ConfigurationError, match="'workers' or 'caller'"):
            Dask(write="driver")  # type: ignore[arg-type]

    @FIXED
    @given(pipe_spec=pipeline_specs(max_steps=4), records=int_records(), size=st.integers(1, 9))
    def test_same_file_as_serial(self, dask_client, tmp_path_factory, pipe_spec, records, size):
        """Generated pipelines over a JSON Lines file write Serial's output and dead letters."""
        pipe = build(pipe_spec)
        d = tmp_path_factory.mktemp("same")
        src = d / "in.jsonl"
        src.write_text("".join(f"{r}\n" for r in records))
        results = []
        for name, runner in (("serial", None), ("dask", Dask(dask_client, partitions=3))):
            out, dead = d / f"{name}.jsonl", d / f"{name}.dead.jsonl"
            report = pipe.run(
                str(src), str(out), dead_letter=str(dead), chunk_size=size, runner=runner
            )
            letters = [
                {k: v for k, v in json.loads(line).items() if k not in ("run_id", "timestamp")}
                for line in dead.read_text().splitlines()
            ]
            results.append((out.read_bytes(), letters, report.records_out, report.failed))
        assert results[0] == results[1]


# ------------------------------------------------------------- protocol
class ListParts:
    """A partitioned sink of our own: parts are lists, assembled into one list."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.committed = False

    def write(self, records: Sequence[Any]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        self.committed = True

    def part(self, key: str) -> ListPart:
        return ListPart(key)

    def commit_parts(self, receipts: Sequence[Any]) -> None:
        for receipt in receipts:
            self.records.extend(receipt["records"])
        self.committed = True


class ListPart:
    def __init__(self, key: str) -> None:
        self.key = key
        self.records: list[Any] = []

    def write(self, records: Sequence[Any]) -> None:
        self.records.extend(records)

    def commit(self) -> dict[str, Any]:
        return {"key": self.key, "records": self.records}

    def abort(self) -> None:
        self.records = []


class TestProtocol:
    def test_builtin_sinks_meet_the_protocols(self, tmp_path):
        """JSON Lines, JSON and CSV sinks are partitioned; their parts are sink parts."""
        for suffix in ("jsonl", "json", "csv"):
            sink = datapunk.io.write(tmp_path / f"out.{suffix}")
            assert isinstance(sink, PartitionedSink)
            part = sink.part("000001")
            assert isinstance(part, SinkPart)
            assert pickle.loads(pickle.dumps(part)).key == "000001"
            sink.abort()
        assert leftovers(tmp_path) == []

    def test_a_plugin_partitioned_sink(self, dask_client):
        """Any object with part() and commit_parts() receives the parts in input order."""
        sink = ListParts()
        report = datapunk.Pipeline(lambda x: x * 10).run(
            range(100), sink, chunk_size=7, runner=Dask(dask_client, partitions=5)
        )
        assert sink.committed
        assert sink.records == [x * 10 for x in range(100)]
        assert report.records_out == 100

    def test_an_open_part_cannot_travel(self, tmp_path):
        """A part that has started writing refuses to be pickled (it holds a file)."""
        sink = JsonlSink(tmp_path / "out.jsonl")
        part = sink.part("000000")
        part.write([{"a": 1}])
        with pytest.raises(TypeError, match="open and cannot be pickled"):
            pickle.dumps(part)
        part.abort()
        sink.abort()

    def test_a_foreign_receipt_is_refused(self, tmp_path):
        """commit_parts with a receipt that names no part of this output fails cleanly."""
        sink = JsonlSink(tmp_path / "out.jsonl")
        sink.part("000000")
        with pytest.raises(datapunk.SinkError, match="invalid part receipt"):
            sink.commit_parts([{"file": "../../etc/passwd", "records": 1}])
        assert leftovers(tmp_path) == []

    def test_a_missing_part_fails_the_commit(self, tmp_path):
        """A part file that vanished is an error; the output is not created."""
        sink = JsonlSink(tmp_path / "out.jsonl")
        part = sink.part("000000")
        part.write([{"a": 1}])
        receipt = part.commit()
        (sink._staging.file(receipt)).unlink()
        with pytest.raises(datapunk.SinkError, match=r"out\.jsonl"):
            sink.commit_parts([receipt])
        assert leftovers(tmp_path) == []

    def test_parts_commit_and_abort_directly(self, tmp_path):
        """A part committed then assembled gives the file; an aborted part leaves nothing."""
        sink = CsvSink(tmp_path / "out.csv")
        first, dropped = sink.part("000000"), sink.part("000001")
        first.write([{"a": 1, "b": None}])
        dropped.write([{"a": 2, "b": 3}])
        dropped.abort()
        sink.commit_parts([first.commit()])
        assert (tmp_path / "out.csv").read_text() == "a,b\n1,\n"
        assert leftovers(tmp_path, "out.csv") == []


class TestScatter:
    def test_scatter_tries_again_when_the_worker_dies(self, monkeypatch):
        """Data sent to a worker that dies on arrival is sent again (to another one)."""
        import distributed

        from datapunk.runners._dask import _scatter

        monkeypatch.setattr("time.sleep", lambda s: None)

        class Flaky:
            calls = 0

            def scatter(self, data: Any, hash: bool) -> str:  # noqa: A002
                self.calls += 1
                if self.calls < 3:
                    raise distributed.comm.CommClosedError("stream closed")
                return "future"

        client = Flaky()
        assert _scatter(client, distributed, [1]) == "future"
        assert client.calls == 3
        with pytest.raises(distributed.comm.CommClosedError):
            _scatter(Flaky(), distributed, [1], attempts=2)


class TestDefaultClient:
    def test_scheduler_address_from_daskconfig(self, dask_client, monkeypatch):
        """Without a client or a default one, Dask's configured scheduler address is used."""
        import dask
        import distributed

        def no_default() -> Any:
            raise ValueError("no client")

        made: list[Any] = []
        real = distributed.Client

        def client(*args: Any, **kwargs: Any) -> Any:
            made.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(distributed, "get_client", no_default)
        monkeypatch.setattr(distributed, "Client", client)
        address = dask_client.scheduler.address
        out: list[int] = []
        with dask.config.set({"scheduler-address": address}):
            report = datapunk.Pipeline(lambda x: x * 3).run(range(20), out, runner=Dask())
        assert out == [x * 3 for x in range(20)]
        assert report.runner == "dask"
        assert made == [(address,)]
