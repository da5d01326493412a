"""Invariants of DESIGN.md, proven with hypothesis over generated pipelines."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from typing import Any

import pydantic
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import datapunk
from strategies import (
    PipelineSpec,
    StepSpec,
    build,
    expected,
    int_records,
    one_to_one_specs,
    pipeline_specs,
)

pytestmark = pytest.mark.unit

chunk_sizes = st.none() | st.integers(min_value=1, max_value=7)
run_policies = st.sampled_from(["dead_letter", "skip"])


def _failures(report: datapunk.RunReport, dead: list[datapunk.DeadLetter]) -> list[tuple[Any, ...]]:
    order = {name: i for i, name in enumerate(report.stages)}
    rows = [(d.position, d.stage, "dead_letter") for d in dead]
    rows += [(e.position, e.stage, e.action) for e in report.errors if e.action != "dead_letter"]
    return sorted(rows, key=lambda r: (r[0], order[r[1]]))


class TestNothingIsLost:
    @given(spec=one_to_one_specs(), records=int_records(), chunk_size=chunk_sizes)
    @example(
        spec=PipelineSpec((StepSpec("filter", 3, 0, 2), StepSpec("map", 2, 1, 1))),
        records=[0, 1, 2, 3, 4, 5, 6],
        chunk_size=2,
    )
    def test_records_in_equals_out_filtered_failed_skipped(self, spec, records, chunk_size):
        """Along 1->1 chains every record read is output, filtered, failed or skipped."""
        sink: list[Any] = []
        report = build(spec).run(records, sink, chunk_size=chunk_size)
        assert report.records_in == len(records)
        assert report.records_in == (
            report.records_out + report.filtered + report.failed + report.skipped
        )
        assert len(sink) == report.records_out

    @given(spec=pipeline_specs(), records=int_records(), chunk_size=chunk_sizes)
    def test_every_stage_balances(self, spec, records, chunk_size):
        """Each stage's input is its output plus filtered, failed and skipped (flat_map aside)."""
        report = build(spec).run(records, [], chunk_size=chunk_size)
        previous_out = len(records)
        for stage in report.stages.values():
            assert stage.records_in == previous_out
            if stage.kind != "flat_map":
                assert stage.records_in == (
                    stage.records_out + stage.filtered + stage.failed + stage.skipped
                )
            previous_out = stage.records_out
        assert previous_out == report.records_out

    @given(
        spec=pipeline_specs(),
        records=int_records(),
        chunk_size=chunk_sizes,
        on_error=run_policies,
    )
    @example(
        spec=PipelineSpec((StepSpec("flat_map", 0, 0, 3), StepSpec("batch", 2, 0, 2))),
        records=[5, 4, 2],
        chunk_size=1,
        on_error="dead_letter",
    )
    def test_run_matches_the_oracle(self, spec, records, chunk_size, on_error):
        """Outputs, dead letters, skips, warnings and stage counters match a hand-computed run."""
        want = expected(spec, records, on_error)
        sink: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = build(spec).run(
            records, sink, dead_letter=dead, on_error=on_error, chunk_size=chunk_size
        )
        assert want.outputs == sink
        assert want.failures == _failures(report, dead)
        assert (want.failed, want.skipped, want.warnings, want.filtered) == (
            report.failed,
            report.skipped,
            report.warnings,
            report.filtered,
        )
        got_stages = {
            name: {
                "in": s.records_in,
                "out": s.records_out,
                "filtered": s.filtered,
                "failed": s.failed,
                "skipped": s.skipped,
                "warnings": s.warnings,
            }
            for name, s in report.stages.items()
        }
        assert want.stages == got_stages

    @given(spec=pipeline_specs(), records=int_records(), chunk_size=chunk_sizes)
    def test_every_failure_reaches_the_dead_letters_with_its_position(
        self, spec, records, chunk_size
    ):
        """Each dead letter holds the original source record at its position."""
        dead: list[datapunk.DeadLetter] = []
        report = build(spec).run(records, [], dead_letter=dead, chunk_size=chunk_size)
        assert report.failed == len(dead)
        for letter in dead:
            assert records[letter.position] == letter.record
            assert letter.stage in report.stages
            assert letter.run_id == report.run_id

    @given(spec=pipeline_specs(), records=int_records(max_size=30), chunk_size=chunk_sizes)
    def test_raise_stops_exactly_when_a_record_fails(self, spec, records, chunk_size):
        """Under on_error='raise' a run raises iff some record fails, naming a real failure."""
        spec = PipelineSpec(tuple(dataclasses.replace(s, on_error=None) for s in spec.steps))
        want = expected(spec, records, "raise")
        failures = [(p, s) for p, s, a in want.failures if a == "raise"]
        sink: list[Any] = []
        if not failures:
            report = build(spec).run(records, sink, on_error="raise", chunk_size=chunk_size)
            assert want.outputs == sink
            assert 0 == report.failed
            return
        with pytest.raises(datapunk.DataProcessingError) as info:
            build(spec).run(records, sink, on_error="raise", chunk_size=chunk_size)
        assert (info.value.position, info.value.stage) in failures

    @given(spec=pipeline_specs(), records=int_records(max_size=30))
    def test_without_a_dead_letter_sink_the_report_keeps_them(self, spec, records):
        """With no dead-letter sink, every failed record is in report.dead_letters."""
        dead: list[datapunk.DeadLetter] = []
        with_sink = build(spec).run(records, [], dead_letter=dead)
        without = build(spec).run(records, [])
        assert [(d.position, d.stage, d.record) for d in dead] == [
            (d.position, d.stage, d.record) for d in without.dead_letters
        ]
        assert with_sink.dead_letters == ()


class TestSameAnswer:
    @given(spec=pipeline_specs(), records=int_records(), chunk_size=chunk_sizes)
    def test_stream_run_and_arun_agree(self, spec, records, chunk_size):
        """stream, run, arun and astream give the same outputs, dead letters and counts."""
        pipe = build(spec)
        run_out: list[Any] = []
        run_dead: list[datapunk.DeadLetter] = []
        report = pipe.run(records, run_out, dead_letter=run_dead, chunk_size=chunk_size)

        stream_dead: list[datapunk.DeadLetter] = []
        stream = pipe.stream(records, dead_letter=stream_dead, chunk_size=chunk_size)
        stream_out = list(stream)

        arun_out: list[Any] = []
        arun_dead: list[datapunk.DeadLetter] = []
        areport = asyncio.run(
            pipe.arun(records, arun_out, dead_letter=arun_dead, chunk_size=chunk_size)
        )

        async def collect() -> list[Any]:
            return [x async for x in pipe.astream(records, chunk_size=chunk_size)]

        astream_out = asyncio.run(collect())

        def key(dead: list[datapunk.DeadLetter]) -> list[tuple[Any, ...]]:
            return [(d.position, d.stage, d.record, d.error_type, d.message) for d in dead]

        assert run_out == stream_out == arun_out == astream_out
        assert key(run_dead) == key(stream_dead) == key(arun_dead)
        counts = ("records_in", "records_out", "filtered", "failed", "skipped", "warnings")
        assert [getattr(report, c) for c in counts] == [getattr(areport, c) for c in counts]
        assert stream.report is not None
        assert [getattr(report, c) for c in counts] == [getattr(stream.report, c) for c in counts]

    @given(spec=pipeline_specs(), records=int_records(max_size=20), chunk_size=chunk_sizes)
    def test_chunk_size_does_not_change_the_answer(self, spec, records, chunk_size):
        """Outputs and dead letters do not depend on how the source is chunked."""
        pipe = build(spec)
        base_out: list[Any] = []
        base_dead: list[datapunk.DeadLetter] = []
        pipe.run(records, base_out, dead_letter=base_dead)
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        pipe.run(records, out, dead_letter=dead, chunk_size=chunk_size)
        assert base_out == out
        assert sorted((d.position, d.stage) for d in base_dead) == sorted(
            (d.position, d.stage) for d in dead
        )

    @given(spec=pipeline_specs(), records=int_records(max_size=20))
    def test_generated_pipelines_pickle(self, spec, records):
        """A generated pipeline survives pickling and gives the same answer (process runners)."""
        pipe = build(spec)
        clone = pickle.loads(pickle.dumps(pipe))
        out1: list[Any] = []
        out2: list[Any] = []
        pipe.run(records, out1)
        clone.run(records, out2)
        assert out1 == out2

    @given(spec=one_to_one_specs(), value=st.integers(min_value=0, max_value=200))
    def test_calling_the_pipeline_matches_a_run_of_one(self, spec, value):
        """pipeline(record) returns what a one-record run outputs, or raises if it fails."""
        pipe = build(spec)
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = pipe.run([value], out, dead_letter=dead)
        if report.failed or report.skipped:
            with pytest.raises(datapunk.DataProcessingError):
                pipe(value)
        else:
            assert (out[0] if out else None) == pipe(value)


class InputData(pydantic.BaseModel):
    record_id: str
    value: float
    is_valid: bool


raw_records = st.lists(
    st.fixed_dictionaries(
        {
            "record_id": st.text(max_size=5),
            "value": st.floats(allow_nan=False, allow_infinity=False)
            | st.sampled_from(["n/a", None, "1.5"]),
            "is_valid": st.booleans(),
        }
    ),
    max_size=40,
)


class WithMalformed:
    """A Source yielding 1-based line numbers, some lines undecodable."""

    name = "lines"

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def read(self) -> Any:
        yield from enumerate(self.items, 1)


class TestValidatedAndMalformedInput:
    @given(records=raw_records, chunk_size=chunk_sizes)
    def test_exactly_the_invalid_records_fail(self, records, chunk_size):
        """Validate -> filter: every record is output, filtered or dead-lettered at its position."""
        pipe = datapunk.Pipeline(
            datapunk.Validate(InputData), datapunk.Filter(lambda r: r.is_valid, name="valid")
        )
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = pipe.run(records, out, dead_letter=dead, chunk_size=chunk_size)
        bad = [i for i, r in enumerate(records) if r["value"] in (None, "n/a")]
        assert bad == [d.position for d in dead]
        assert [records[i] for i in bad] == [d.record for d in dead]
        assert all(d.reasons[0].path == ("value",) for d in dead)
        assert report.records_in == report.records_out + report.filtered + report.failed
        assert [
            r["record_id"] for r in records if r["value"] not in (None, "n/a") and r["is_valid"]
        ] == [r.record_id for r in out]

    @given(
        items=st.lists(st.integers(min_value=1, max_value=9) | st.none(), max_size=40),
        chunk_size=chunk_sizes,
    )
    def test_malformed_input_fails_at_its_position(self, items, chunk_size):
        """Each Malformed item is one failed record at its own line; the others run."""
        source = [
            datapunk.Malformed(f"<{i}>", "undecodable") if x is None else x
            for i, x in enumerate(items)
        ]
        pipe = datapunk.Pipeline(datapunk.Stage(lambda x: 10 // (x - 5), name="div"))
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = pipe.run(WithMalformed(source), out, dead_letter=dead, chunk_size=chunk_size)
        want_dead = sorted(
            [(i + 1, "<source>") for i, x in enumerate(items) if x is None]
            + [(i + 1, "div") for i, x in enumerate(items) if x == 5]
        )
        assert want_dead == sorted((d.position, d.stage) for d in dead)
        assert [10 // (x - 5) for x in items if x is not None and x != 5] == out
        assert report.records_in == len(items) == report.records_out + report.failed
        stream_dead: list[datapunk.DeadLetter] = []
        streamed = list(
            pipe.stream(WithMalformed(source), dead_letter=stream_dead, chunk_size=chunk_size)
        )
        assert (out, sorted((d.position, d.stage) for d in dead)) == (
            streamed,
            sorted((d.position, d.stage) for d in stream_dead),
        )
