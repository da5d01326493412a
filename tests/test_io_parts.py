"""File sinks written in parts and assembled: the same bytes as writing in one place."""

from __future__ import annotations

import itertools
import pickle
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datapunk

if TYPE_CHECKING:
    from pathlib import Path

KEYS = ["a", "b", "c"]
values = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.sampled_from(["", "x", "a,b", 'q"q', "two\nlines", "cr\rhere", "é"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.lists(st.integers(0, 3), max_size=2),
)
records = st.lists(
    st.lists(st.sampled_from(KEYS), unique=True, min_size=1).flatmap(
        lambda keys: st.fixed_dictionaries(dict.fromkeys(keys, values))
    ),
    max_size=25,
)


def write_whole(path: Path, batches: list[list[Any]], **options: Any) -> bytes | str:
    sink = datapunk.io.write(path, **options)
    try:
        for batch in batches:
            sink.write(batch)
        sink.close()
    except datapunk.SinkError as exc:
        sink.abort()
        return type(exc).__name__
    return path.read_bytes()


def write_parts(path: Path, groups: list[list[list[Any]]], **options: Any) -> bytes | str:
    """Each group of batches is one part, pickled as it would travel to a worker."""
    sink = datapunk.io.write(path, **options)
    receipts = []
    try:
        for i, group in enumerate(groups):
            part = pickle.loads(pickle.dumps(sink.part(f"{i:06d}")))
            try:
                for batch in group:
                    part.write(batch)
            except datapunk.SinkError:
                part.abort()
                raise
            receipts.append(part.commit())
        sink.commit_parts(receipts)
    except datapunk.SinkError as exc:
        sink.abort()
        return type(exc).__name__
    return path.read_bytes()


@st.composite
def split(draw: st.DrawFn) -> tuple[list[list[Any]], list[list[list[Any]]]]:
    """Records cut into batches, and the batches cut into consecutive groups (parts)."""
    recs = draw(records)
    cuts = sorted(draw(st.lists(st.integers(0, len(recs)), max_size=6)))
    bounds = [0, *cuts, len(recs)]
    batches = [recs[a:b] for a, b in itertools.pairwise(bounds)]
    group_cuts = sorted(draw(st.lists(st.integers(0, len(batches)), max_size=4)))
    gb = [0, *group_cuts, len(batches)]
    groups = [batches[a:b] for a, b in itertools.pairwise(gb)]
    return batches, groups


class TestAssembledParts:
    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        data=split(),
        suffix=st.sampled_from(["jsonl", "json", "csv", "tsv", "jsonl.gz", "csv.gz"]),
        fixed=st.booleans(),
    )
    def test_same_bytes_as_one_writer(self, tmp_path_factory, data, suffix, fixed):
        """Any split into parts gives the one-writer file, or the same error and no file."""
        batches, groups = data
        d = tmp_path_factory.mktemp("parts")
        options: dict[str, Any] = {}
        if fixed and ("csv" in suffix or "tsv" in suffix):
            options["fieldnames"] = ["c", "a", "b"]
        whole = write_whole(d / f"whole.{suffix}", batches, **options)
        parted = write_parts(d / f"parted.{suffix}", groups, **options)
        assert parted == whole
        names = sorted(p.name for p in d.iterdir())
        assert names == ([] if isinstance(whole, str) else [f"parted.{suffix}", f"whole.{suffix}"])

    def test_receipts_name_records_and_columns(self, tmp_path):
        """A CSV part's receipt says how many rows it holds and under which columns."""
        sink = datapunk.io.CsvSink(tmp_path / "out.csv")
        part = sink.part("000000")
        part.write([{"b": 1}, {"a": 2, "b": 3}])
        receipt = part.commit()
        assert receipt["records"] == 2
        assert receipt["header"] == ["b"]
        assert (receipt["columns"], receipt["grown"]) == (["b", "a"], True)
        # As when written in one place: the header is the first record's keys.
        with pytest.raises(datapunk.SinkError, match=r"field\(s\) \['a'\].*\['b'\]"):
            sink.commit_parts([receipt])
        assert list(tmp_path.iterdir()) == []

    def test_non_mapping_record_in_a_csv_part(self, tmp_path):
        """A CSV part refuses a record that is not a mapping, as the sink does."""
        sink = datapunk.io.CsvSink(tmp_path / "out.csv")
        part = sink.part("000000")
        with pytest.raises(datapunk.SinkError, match="cannot write a int as a CSV row"):
            part.write([3])
        part.abort()
        sink.abort()
        assert list(tmp_path.iterdir()) == []

    def test_staging_directory_cannot_be_created(self, tmp_path, monkeypatch):
        """No room for the staging directory: a SinkError naming the output."""
        sink = datapunk.io.JsonlSink(tmp_path / "out.jsonl")

        def full(**kwargs: Any) -> str:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("tempfile.mkdtemp", full)
        with pytest.raises(datapunk.SinkError, match=r"staging directory next to .*No space left"):
            sink.part("000000")

    def test_part_in_a_vanished_directory(self, tmp_path):
        """A worker whose staging directory is gone (the run was aborted) fails its part."""
        sink = datapunk.io.JsonlSink(tmp_path / "out.jsonl")
        part = sink.part("000000")
        sink.abort()
        with pytest.raises(datapunk.SinkError, match="file system every worker shares"):
            part.write([{"a": 1}])
