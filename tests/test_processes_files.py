"""
Processes on files: workers read their chunk's byte range and write their outputs.

The caller only scans the file for chunk boundaries and assembles the parts;
outputs, dead letters and counters must still be exactly Serial's.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest

import datapunk
from datapunk.runners import Processes

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def scaled(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("a") in ("13", 13):
        raise ValueError("thirteen")
    return {**record, "scaled": int(record["a"]) * 10}


def exit_on_42(record: dict[str, Any]) -> dict[str, Any]:
    if record["a"] == 42:
        os._exit(3)
    return record


class Spy:
    """A hook that records what the caller received for every chunk."""

    def __init__(self) -> None:
        self.outputs = 0
        self.written = 0

    def on_chunk(self, job: Any, result: Any) -> None:
        self.outputs += len(result.outputs)
        self.written += result.written


@pytest.fixture(scope="module")
def procs() -> Processes:
    return Processes(2, start_method="forkserver")


def make_input(directory: Path, suffix: str) -> Path:
    path = directory / f"in.{suffix}"
    if suffix == "csv":
        rows = ["a,note"]
        for i in range(500):
            note = f'"two\nlines {i}"' if i % 7 == 0 else f"n{i}"
            rows.append(f"{i},{note}" if i % 97 != 5 else f"{i},too,many")
        path.write_text("\n".join(rows) + "\n")
    else:
        lines = [json.dumps({"a": i}) if i % 89 != 3 else "{broken" for i in range(500)]
        path.write_text("\n".join(lines) + "\n\n")
    return path


class TestFilesOnProcesses:
    @pytest.mark.parametrize("suffix", ["jsonl", "csv"])
    @pytest.mark.parametrize("out_suffix", ["jsonl", "csv"])
    def test_same_files_as_serial(self, procs, tmp_path, suffix, out_suffix):
        """Outputs and dead letters are Serial's, byte for byte; nothing came back."""
        src = make_input(tmp_path, suffix)
        pipe = datapunk.Pipeline(scaled)
        results = []
        for name, runner in (("serial", None), ("procs", procs)):
            spy = Spy()
            out, dead = tmp_path / f"{name}.{out_suffix}", tmp_path / f"{name}-dead.jsonl"
            report = pipe.run(src, out, dead_letter=dead, chunk_size=30, hooks=[spy], runner=runner)
            letters = [
                (d["position"], d["stage"], d["error_type"])
                for d in map(json.loads, dead.read_text().splitlines())
            ]
            results.append((out.read_bytes(), letters, report.records_out, report.failed))
            if runner is not None:
                assert (spy.outputs, spy.written) == (0, report.records_out)
        assert results[0] == results[1]
        assert results[0][3] > 0
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    def test_dead_worker_on_a_range_fails_its_chunk(self, procs, tmp_path):
        """A worker dying on a chunk it read itself: that chunk's lines fail, read again here."""
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps({"a": i}) + "\n" for i in range(200)))
        out = tmp_path / "out.jsonl"
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(exit_on_42).run(
            src, out, dead_letter=dead, chunk_size=10, runner=procs
        )
        # {"a": 42} is on line 43; its chunk holds lines 41..50.
        assert [d.position for d in dead] == list(range(41, 51))
        assert {d.error_type for d in dead} == {"WorkerDied"}
        assert dead[0].record == {"a": 40}
        assert "positions 41..50" in dead[0].message
        written = [json.loads(line)["a"] for line in out.read_text().splitlines()]
        assert written == [i for i in range(200) if not 40 <= i < 50]
        assert report.records_out == 190
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]

    def test_failed_run_leaves_no_parts(self, procs, tmp_path):
        """A run stopped by its error budget leaves neither output nor parts."""
        src = make_input(tmp_path, "jsonl")
        with pytest.raises(datapunk.ErrorBudgetExceeded):
            datapunk.Pipeline(scaled).run(
                src, tmp_path / "out.jsonl", max_errors=0, chunk_size=30, runner=procs
            )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]

    def test_a_list_sink_still_receives_outputs(self, procs, tmp_path):
        """Sinks that cannot be written in parts get the outputs in the caller, in order."""
        src = make_input(tmp_path, "jsonl")
        out: list[Any] = []
        datapunk.Pipeline(scaled).run(src, out, chunk_size=30, runner=procs)
        want: list[Any] = []
        datapunk.Pipeline(scaled).run(src, want, chunk_size=30)
        assert out == want
