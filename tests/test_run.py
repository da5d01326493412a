"""Running pipelines: run, stream, arun, astream, one record; sources, sinks, policies, budgets."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

import datapunk

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ helpers
def inverse(x: int) -> float:
    return 1 / x


def inv_stage(**kw: Any) -> datapunk.Stage[int, float]:
    return datapunk.Stage(inverse, name="inverse", **kw)


class RecordingSink:
    """A Sink-protocol object that remembers what happened to it."""

    name = "recording"

    def __init__(self, *, fail_on: Any = None, fail_close: bool = False) -> None:
        self.records: list[Any] = []
        self.batches = 0
        self.state = "open"
        self.fail_on = fail_on
        self.fail_close = fail_close

    def write(self, records: list[Any]) -> None:
        for r in records:
            if self.fail_on is not None and r == self.fail_on:
                raise OSError(28, "No space left on device")
            self.records.append(r)
        self.batches += 1

    def close(self) -> None:
        if self.fail_close:
            raise OSError("cannot rename")
        self.state = "closed"

    def abort(self) -> None:
        self.state = "aborted"


class CloseOnlySink:
    """A sink without abort(): close() is called even when the run fails."""

    name = "close-only"

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.closed = False

    def write(self, records: list[Any]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        self.closed = True


class PositionedSource:
    """A Source-protocol object yielding (position, record) pairs."""

    def __init__(self, items: list[tuple[Any, Any]], *, fail_after: int | None = None) -> None:
        self.items = items
        self.name = "positioned"
        self.fail_after = fail_after

    def read(self):
        for i, item in enumerate(self.items):
            if self.fail_after is not None and i >= self.fail_after:
                raise OSError("connection reset")
            yield item


def broken_after(n: int):
    yield from range(n)
    raise RuntimeError("network down")


class TestSources:
    def test_any_iterable_is_a_source_with_index_positions(self):
        """Lists, tuples, ranges and generators are read in order, positions 0-based."""
        for source in ([1, 0, 2], (1, 0, 2), iter([1, 0, 2]), (x for x in [1, 0, 2])):
            out: list[Any] = []
            dead: list[datapunk.DeadLetter] = []
            datapunk.Pipeline(inv_stage()).run(source, out, dead_letter=dead, chunk_size=2)
            assert [1.0, 0.5] == out
            assert [(1, 0)] == [(d.position, d.record) for d in dead]

    def test_a_source_object_gives_its_own_positions(self):
        """A Source's positions (line numbers, tuples...) reach dead letters and the report."""
        src = PositionedSource([(10, 1), (("part", 2), 0), (12, 4)])
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(inv_stage()).run(src, [], dead_letter=dead)
        assert [("part", 2)] == [d.position for d in dead]
        assert [("part", 2)] == [e.position for e in report.errors]

    def test_malformed_records_fail_at_the_source_and_the_run_goes_on(self):
        """A Malformed item becomes a dead letter of stage '<source>' with its position."""
        src = PositionedSource(
            [(1, 2), (2, datapunk.Malformed("{oops", "broken JSON", "JSONDecodeError")), (3, 4)]
        )
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(inv_stage()).run(src, out, dead_letter=dead)
        assert [0.5, 0.25] == out
        assert [
            datapunk.DeadLetter(
                record="{oops",
                position=2,
                stage="<source>",
                error_type="JSONDecodeError",
                message="broken JSON",
                run_id=report.run_id,
            )
        ] == dead
        assert (3, 2, 1) == (report.records_in, report.records_out, report.failed)
        assert report.records_in == report.records_out + report.filtered + report.failed

    def test_malformed_records_in_every_chunk(self):
        """Malformed records are found in every chunk, not only the first."""
        items = [(i, datapunk.Malformed(str(i), "bad") if i % 3 == 0 else i) for i in range(1, 10)]
        dead: list[datapunk.DeadLetter] = []
        out: list[Any] = []
        report = datapunk.Pipeline(inv_stage()).run(
            PositionedSource(items), out, dead_letter=dead, chunk_size=2
        )
        assert [3, 6, 9] == [d.position for d in dead]
        assert [1 / i for i in (1, 2, 4, 5, 7, 8)] == out
        assert 9 == report.records_in

    @pytest.mark.parametrize(
        "source", [None, 5, b"bytes", object()], ids=["none", "int", "bytes", "object"]
    )
    def test_a_non_source_is_a_configuration_error(self, source):
        """Something that is neither iterable nor a Source fails before any work."""
        with pytest.raises(datapunk.ConfigurationError, match="cannot read records from"):
            datapunk.Pipeline(inverse).run(source, [])

    def test_an_iterable_raising_mid_way_is_a_source_error_issue3(self):
        """A generator that raises mid-way gives SourceError at the right position; records
        read before the failure are processed, not lost."""
        out: list[Any] = []
        with pytest.raises(datapunk.SourceError) as info:
            datapunk.Pipeline(lambda x: x * 10).run(broken_after(5), out, chunk_size=3)
        err = info.value
        assert "source '<generator>' raised RuntimeError: network down after 5 records" == str(err)
        assert 5 == err.position
        assert isinstance(err.__cause__, RuntimeError)
        assert [0, 10, 20, 30, 40] == out

    def test_stream_yields_what_was_read_before_a_source_failure_issue3(self):
        """stream() yields every record read before the source broke, then raises SourceError."""
        got: list[Any] = []
        with pytest.raises(datapunk.SourceError):
            got.extend(datapunk.Pipeline(lambda x: x).stream(broken_after(4)))
        assert [0, 1, 2, 3] == got

    def test_an_iterable_whose_iter_raises_is_a_source_error_issue3(self):
        """An object whose __iter__ raises gives SourceError, not the bare exception."""

        class Locked:
            def __iter__(self):
                raise PermissionError("locked")

        with pytest.raises(datapunk.SourceError, match="raised PermissionError: locked"):
            datapunk.Pipeline(inverse).run(Locked(), [])

    def test_a_source_object_raising_mid_way_is_a_source_error_issue3(self):
        """A Source whose iterator raises gives SourceError after the last good position."""
        src = PositionedSource([(1, 1), (2, 2), (3, 4)], fail_after=2)
        out: list[Any] = []
        with pytest.raises(datapunk.SourceError) as info:
            datapunk.Pipeline(inverse).run(src, out)
        assert "source 'positioned' raised OSError: connection reset after position 2" == str(
            info.value
        )
        assert 2 == info.value.position
        assert [1.0, 0.5] == out

    def test_a_source_whose_read_raises_is_a_source_error(self):
        """A Source whose read() itself fails names the source."""

        class Closed:
            name = "closed"

            def read(self):
                raise FileNotFoundError("no such file")

        with pytest.raises(datapunk.SourceError) as info:
            datapunk.Pipeline(inverse).run(Closed(), [])
        assert "cannot open source 'closed': FileNotFoundError: no such file" == str(info.value)

    def test_a_source_error_from_the_source_passes_through(self):
        """A SourceError a source raises on purpose reaches the caller unchanged."""
        mine = datapunk.SourceError("ragged row", path="x.csv", position=7)

        class Ragged:
            name = "ragged"

            def read(self):
                yield 1, 1
                raise mine

        with pytest.raises(datapunk.SourceError) as info:
            datapunk.Pipeline(inverse).run(Ragged(), [])
        assert mine is info.value


class TestSinks:
    def test_a_list_sink_is_appended_to(self):
        """Outputs are appended to a list sink, keeping what it held."""
        out = ["before"]
        datapunk.Pipeline(inverse).run([1, 2], out)
        assert ["before", 1.0, 0.5] == out

    def test_a_callable_sink_is_called_per_record(self):
        """A callable sink receives each output record, in order."""
        got: list[Any] = []
        datapunk.Pipeline(inverse).run([1, 2, 4], got.append, chunk_size=2)
        assert [1.0, 0.5, 0.25] == got

    def test_a_sink_object_is_written_in_batches_and_closed(self):
        """A Sink object gets write(batch) per chunk and close() on success."""
        sink = RecordingSink()
        datapunk.Pipeline(inverse).run([1, 2, 4], sink, chunk_size=2)
        assert ([1.0, 0.5, 0.25], 2, "closed") == (sink.records, sink.batches, sink.state)

    def test_no_sink_discards_but_counts(self):
        """With sink=None outputs are dropped but still counted."""
        report = datapunk.Pipeline(inverse).run([1, 2])
        assert 2 == report.records_out

    def test_dead_letter_sinks_take_every_form(self):
        """Dead letters go to a list, a callable or a Sink object alike."""
        as_list: list[Any] = []
        called: list[Any] = []
        obj = RecordingSink()
        for target in (as_list, called.append, obj):
            datapunk.Pipeline(inv_stage()).run([0, 1, 0], [], dead_letter=target)
        for got in (as_list, called, obj.records):
            assert [0, 2] == [d.position for d in got]
            assert all(isinstance(d, datapunk.DeadLetter) for d in got)
        assert "closed" == obj.state

    @pytest.mark.parametrize("sink", [5, b"x", object()], ids=["int", "bytes", "object"])
    def test_a_non_sink_is_a_configuration_error(self, sink):
        """Something that cannot take records fails before any work, naming the role."""
        with pytest.raises(datapunk.ConfigurationError, match="as the sink: pass a list"):
            datapunk.Pipeline(inverse).run([1], sink)

    def test_a_non_sink_dead_letter_is_a_configuration_error(self):
        """A bad dead-letter target names the dead-letter sink."""
        with pytest.raises(
            datapunk.ConfigurationError, match="cannot use int as the dead-letter sink"
        ):
            datapunk.Pipeline(inverse).run([1], [], dead_letter=3)

    def test_a_raising_sink_is_a_sink_error_and_nothing_is_lost(self):
        """A sink failure stops the run with SinkError; what was written stays, the rest is
        not claimed as written, and the sink is aborted."""
        sink = RecordingSink(fail_on=0.25)
        with pytest.raises(datapunk.SinkError) as info:
            datapunk.Pipeline(inverse).run([1, 2, 4, 8], sink, chunk_size=2)
        err = info.value
        assert (
            "the sink 'recording' raised OSError: [Errno 28] No space left on device; the run "
            "stopped so that no record is lost: fix the sink and run again"
        ) == str(err)
        assert isinstance(err.__cause__, OSError)
        assert {"path": "recording", "error_type": "OSError", "errno": 28} == err.details
        assert ([1.0, 0.5], "aborted") == (sink.records, sink.state)

    def test_a_raising_callable_sink_is_a_sink_error(self):
        """A callable sink that raises gives SinkError, not the bare exception."""

        def full(record: Any) -> None:
            raise ValueError("refused")

        with pytest.raises(datapunk.SinkError, match=r"the sink '<full>' raised ValueError"):
            datapunk.Pipeline(inverse).run([1], full)

    def test_a_raising_dead_letter_sink_is_a_sink_error(self):
        """A failing dead-letter sink stops the run: failed records are never dropped."""

        def full(letter: Any) -> None:
            raise OSError("full")

        with pytest.raises(
            datapunk.SinkError, match=r"the dead-letter sink '<full>' raised OSError: full"
        ):
            datapunk.Pipeline(inv_stage()).run([0], [], dead_letter=full)

    def test_a_sink_failing_to_close_is_a_sink_error(self):
        """close() failing means the output was not committed: SinkError."""
        sink = RecordingSink(fail_close=True)
        with pytest.raises(datapunk.SinkError) as info:
            datapunk.Pipeline(inverse).run([1], sink)
        assert "the sink 'recording' failed to close: OSError: cannot rename" == str(info.value)

    def test_a_sink_without_abort_is_closed_when_the_run_fails(self):
        """When the run fails, a sink without abort() is still closed (no leaked handle)."""
        sink = CloseOnlySink()
        with pytest.raises(datapunk.StageError):
            datapunk.Pipeline(inv_stage()).run([1, 0], sink, on_error="raise")
        assert sink.closed

    def test_abort_failing_does_not_hide_the_original_error(self):
        """If abort() raises too, the run's own error is what the caller sees."""

        class BadAbort(RecordingSink):
            def abort(self) -> None:
                raise RuntimeError("abort failed")

        with pytest.raises(datapunk.StageError):
            datapunk.Pipeline(inv_stage()).run([0], BadAbort(), on_error="raise")


class TestSinkErrorsPassThrough:
    def test_a_sink_raising_sink_error_is_not_wrapped(self):
        """A SinkError a sink raises on purpose reaches the caller unchanged."""
        mine = datapunk.SinkError("quota exceeded", path="bucket")

        class Quota(RecordingSink):
            def write(self, records: list[Any]) -> None:
                raise mine

        with pytest.raises(datapunk.SinkError) as info:
            datapunk.Pipeline(inverse).run([1], Quota())
        assert mine is info.value

    def test_a_sink_close_raising_sink_error_is_not_wrapped(self):
        """A SinkError from close() reaches the caller unchanged."""
        mine = datapunk.SinkError("rename failed", path="out")

        class BadClose(RecordingSink):
            def close(self) -> None:
                raise mine

        with pytest.raises(datapunk.SinkError) as info:
            datapunk.Pipeline(inverse).run([1], BadClose())
        assert mine is info.value

    def test_a_source_read_raising_source_error_is_not_wrapped(self):
        """A SourceError from read() itself reaches the caller unchanged."""
        mine = datapunk.SourceError("no such table", path="db")

        class Missing:
            name = "missing"

            def read(self):
                raise mine

        with pytest.raises(datapunk.SourceError) as info:
            datapunk.Pipeline(inverse).run(Missing(), [])
        assert mine is info.value


class TestErrorPolicies:
    def test_dead_letter_is_the_default(self):
        """By default a failing record goes to the dead letters and the run goes on."""
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(inv_stage()).run([1, 0, 2], out, dead_letter=dead)
        assert [1.0, 0.5] == out
        assert [
            datapunk.DeadLetter(
                record=0,
                position=1,
                stage="inverse",
                error_type="ZeroDivisionError",
                message="division by zero",
                run_id=report.run_id,
            )
        ] == dead
        assert (1, 0, True) == (report.failed, report.skipped, report.ok)

    def test_skip_counts_and_samples_but_does_not_dead_letter(self):
        """Skipped records are counted, listed in the error sample, and not dead-lettered."""
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(inv_stage()).run(
            [1, 0, 0], [], dead_letter=dead, on_error="skip"
        )
        assert [] == dead
        assert (0, 2) == (report.failed, report.skipped)
        assert [(1, "skip"), (2, "skip")] == [(e.position, e.action) for e in report.errors]
        assert 2 == report.stages["inverse"].skipped
        assert report.records_in == report.records_out + report.skipped

    def test_raise_stops_with_a_stage_error_naming_stage_and_position(self):
        """on_error='raise' stops at the first failure with StageError wrapping the cause."""
        sink = RecordingSink()
        with pytest.raises(datapunk.StageError) as info:
            datapunk.Pipeline(inv_stage()).run([1, 0, 2], sink, on_error="raise")
        err = info.value
        assert "stage 'inverse' at position 1 raised ZeroDivisionError: division by zero" == str(
            err
        )
        assert ("inverse", 1, "ZeroDivisionError") == (err.stage, err.position, err.error_type)
        assert isinstance(err.__cause__, ZeroDivisionError)
        assert "aborted" == sink.state

    def test_raise_keeps_a_validation_error_and_adds_where(self):
        """A validator failing under 'raise' raises its ValidationError with stage and position."""
        positive = datapunk.check(lambda x: x > 0, "must be positive", name="positive")
        with pytest.raises(datapunk.ValidationError) as info:
            datapunk.Pipeline(positive).run([1, -1], [], on_error="raise")
        err = info.value
        assert ("positive", 1) == (err.stage, err.position)
        assert {"stage": "positive", "position": 1} == {
            k: err.details[k] for k in ("stage", "position")
        }
        assert [("must be positive", "check")] == [(r.message, r.type) for r in err.reasons]

    def test_a_stage_policy_overrides_the_run_policy(self):
        """A stage's own on_error wins over the run's."""
        skipper = datapunk.Stage(inverse, name="skipper", on_error="skip")
        strict = datapunk.Stage(lambda x: 1 / (x - 1), name="strict")
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(skipper, strict).run([0, 1, 2], [], dead_letter=dead)
        assert (1, 1) == (report.skipped, report.failed)
        assert [("strict", 1)] == [(d.stage, d.position) for d in dead]
        with pytest.raises(datapunk.StageError, match="stage 'strict' at position 1"):
            datapunk.Pipeline(skipper, strict).run([0, 1, 2], [], on_error="raise")

    def test_a_stage_set_to_raise_raises_under_a_lenient_run(self):
        """on_error='raise' on a stage stops the run even when the run's policy is 'skip'."""
        with pytest.raises(datapunk.StageError):
            datapunk.Pipeline(inv_stage(on_error="raise")).run([0], [], on_error="skip")

    @pytest.mark.parametrize("bad", ["ignore", None, 3], ids=["word", "none", "int"])
    def test_a_bad_run_policy_is_a_configuration_error(self, bad):
        """An unknown on_error for the run names the choices."""
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Pipeline(inverse).run([1], [], on_error=bad)
        assert f"on_error={bad!r} is not one of 'dead_letter', 'skip', 'raise'" == str(info.value)

    def test_failures_keep_the_original_record_after_transformations(self):
        """A record failing in a later stage is dead-lettered as it came from the source."""
        dead: list[datapunk.DeadLetter] = []
        pipe = datapunk.Pipeline(lambda x: x - 5, inv_stage())
        pipe.run([6, 5, 7], [], dead_letter=dead)
        assert [(5, 1, "inverse")] == [(d.record, d.position, d.stage) for d in dead]

    def test_an_exception_whose_str_raises_is_still_reported(self):
        """A user exception with a broken __str__ still becomes a dead letter."""

        class Nasty(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no str for you")

        def boom(x: Any) -> Any:
            raise Nasty

        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(boom).run([1], [], dead_letter=dead)
        assert [("Nasty", "<Nasty (str() failed)>")] == [(d.error_type, d.message) for d in dead]
        assert 1 == report.failed
        with pytest.raises(datapunk.StageError) as info:
            datapunk.Pipeline(boom).run([1], [], on_error="raise")
        assert "stage 'boom' at position 0 raised Nasty: <Nasty (str() failed)>" == str(info.value)


class TestErrorBudget:
    def test_more_failures_than_max_errors_stops_the_run(self):
        """Exceeding an integer budget raises ErrorBudgetExceeded with the partial report."""
        sink = RecordingSink()
        dead = RecordingSink()
        with pytest.raises(datapunk.ErrorBudgetExceeded) as info:
            datapunk.Pipeline(inv_stage()).run(
                [1, 0, 2, 0, 3, 0, 4, 0], sink, dead_letter=dead, max_errors=1, chunk_size=2
            )
        err = info.value
        report = err.report
        assert (False, 4, 2, 2) == (report.ok, report.records_in, report.records_out, report.failed)
        assert "2 records failed, more than max_errors=1" == report.stop_reason
        assert str(err).startswith(f"run {report.run_id} stopped: 2 records failed")
        assert {"failed": 2, "skipped": 0, "records_in": 4} == err.details
        assert ("aborted", "aborted") == (sink.state, dead.state)

    def test_exactly_max_errors_failures_is_fine(self):
        """A run with as many failures as the budget allows completes."""
        report = datapunk.Pipeline(inv_stage()).run([0, 1, 0], [], max_errors=2)
        assert (True, 2) == (report.ok, report.failed)

    def test_max_errors_zero_stops_at_the_first_failure(self):
        """max_errors=0 tolerates no failure."""
        with pytest.raises(datapunk.ErrorBudgetExceeded):
            datapunk.Pipeline(inv_stage()).run([1, 0], [], max_errors=0)

    def test_skipped_records_count_against_the_budget(self):
        """Skipped records are errors too for max_errors."""
        with pytest.raises(datapunk.ErrorBudgetExceeded) as info:
            datapunk.Pipeline(inv_stage()).run([0, 0], [], on_error="skip", max_errors=1)
        assert (0, 2) == (info.value.report.failed, info.value.report.skipped)

    def test_a_rate_is_not_checked_before_100_records(self):
        """A float budget ignores the first 99 records' error rate."""
        report = datapunk.Pipeline(inv_stage()).run([0] * 10 + [1] * 89, [], max_errors=0.01)
        assert (True, 10) == (report.ok, report.failed)

    def test_a_rate_over_the_budget_stops_the_run(self):
        """A float budget stops the run once the failed share exceeds it over 100+ records."""
        records = [0 if i % 10 == 0 else i for i in range(200)]
        with pytest.raises(datapunk.ErrorBudgetExceeded) as info:
            datapunk.Pipeline(inv_stage()).run(records, [], max_errors=0.05, chunk_size=100)
        report = info.value.report
        assert (100, 10) == (report.records_in, report.failed)
        assert "10 of 100 records failed (10.0%), more than max_errors=5.0%" == report.stop_reason

    def test_a_rate_within_the_budget_completes(self):
        """A failed share at or under the rate lets the run finish."""
        records = [0 if i % 20 == 0 else i for i in range(200)]
        report = datapunk.Pipeline(inv_stage()).run(records, [], max_errors=0.05)
        assert (True, 10) == (report.ok, report.failed)

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            (-1, "max_errors must be >= 0, got -1"),
            (1.0, "max_errors as a rate must be between 0 and 1 (exclusive), got 1.0"),
            (0.0, "max_errors as a rate must be between 0 and 1 (exclusive), got 0.0"),
            (2.5, "max_errors as a rate must be between 0 and 1 (exclusive), got 2.5"),
            (True, "max_errors must be a count (int >= 0) or a rate (0 < float < 1), got True"),
            ("3", "max_errors must be a count (int >= 0) or a rate (0 < float < 1), got '3'"),
        ],
        ids=["negative", "one", "zero-rate", "big-rate", "bool", "str"],
    )
    def test_a_bad_budget_is_a_configuration_error(self, bad, message):
        """An invalid max_errors fails before any record is read."""
        read: list[int] = []

        def source():
            read.append(1)
            yield 1

        with pytest.raises(datapunk.ConfigurationError, match=re.escape(message)):
            datapunk.Pipeline(inverse).run(source(), [], max_errors=bad)
        assert [] == read


class TestRunOptions:
    @pytest.mark.parametrize("bad", [0, -1, 1.5, True], ids=["zero", "negative", "float", "bool"])
    def test_a_bad_chunk_size_is_a_configuration_error(self, bad):
        """chunk_size must be a positive integer."""
        with pytest.raises(
            datapunk.ConfigurationError,
            match=re.escape(f"chunk_size must be a positive integer, got {bad!r}"),
        ):
            datapunk.Pipeline(inverse).run([1], [], chunk_size=bad)

    def test_a_bad_error_sample_size_is_a_configuration_error(self):
        """error_sample_size must be an integer >= 0."""
        with pytest.raises(datapunk.ConfigurationError, match="error_sample_size must be"):
            datapunk.Pipeline(inverse).run([1], [], error_sample_size=-1)

    def test_a_bad_checkpoint_is_a_configuration_error(self):
        """checkpoint= refuses an object that is neither a path nor a store, before any work."""
        with pytest.raises(datapunk.ConfigurationError, match="checkpoint= must be a file path"):
            datapunk.Pipeline(inverse).run([1], [], checkpoint=object())

    def test_runners_by_name_and_object(self):
        """runner= takes a name or a runner object; both give the same answer."""
        by_name: list[Any] = []
        by_obj: list[Any] = []
        datapunk.Pipeline(inverse).run([1, 2], by_name, runner="serial")
        report = datapunk.Pipeline(inverse).run([1, 2], by_obj, runner=datapunk.runners.Serial())
        assert by_name == by_obj == [1.0, 0.5]
        assert "serial" == report.runner

    def test_an_unknown_runner_is_a_configuration_error(self):
        """An unknown runner name lists the known ones."""
        with pytest.raises(
            datapunk.ConfigurationError, match="unknown runner 'warp'; choose one of"
        ):
            datapunk.Pipeline(inverse).run([1], [], runner="warp")

    def test_a_runner_without_run_is_a_configuration_error(self):
        """A runner object must have run(job)."""
        with pytest.raises(datapunk.ConfigurationError, match="runner must be a name"):
            datapunk.Pipeline(inverse).run([1], [], runner=object())

    def test_arun_needs_an_async_capable_runner(self):
        """arun with a runner lacking arun() says so."""

        class SyncOnly:
            def run(self, job: Any) -> Any:  # pragma: no cover - never called
                raise AssertionError

        with pytest.raises(datapunk.ConfigurationError, match="cannot run inside an event loop"):
            asyncio.run(datapunk.Pipeline(inverse).arun([1], [], runner=SyncOnly()))

    def test_hooks_receive_run_chunk_and_error_events(self):
        """Hooks get on_run_start, on_chunk per chunk, on_error per failure and on_run_end."""
        events: list[Any] = []

        class Hook:
            def on_run_start(self, job: Any) -> None:
                events.append("start")

            def on_chunk(self, job: Any, result: Any) -> None:
                events.append(("chunk", result.records_in))

            def on_error(self, job: Any, letter: Any, action: str) -> None:
                events.append(("error", letter.position, action))

            def on_run_end(self, job: Any, report: Any) -> None:
                events.append(("end", report.ok))

        datapunk.Pipeline(inv_stage()).run([1, 0, 2], [], hooks=[Hook(), object()], chunk_size=2)
        assert [
            "start",
            ("error", 1, "dead_letter"),
            ("chunk", 2),
            ("chunk", 1),
            ("end", True),
        ] == events

    def test_progress_shows_and_closes(self, capsys):
        """progress=True draws on standard error and the run's answer is unchanged."""
        out: list[Any] = []
        report = datapunk.Pipeline(inverse, name="prog").run([1, 2], out, progress=True)
        assert ([1.0, 0.5], True) == (out, report.ok)
        assert "prog" in capsys.readouterr().err


ASYNC_EXPECTED = [20, -20, 20, -20, 60, -60, 60, -60]


class TestAsyncStages:
    @staticmethod
    def pipeline() -> datapunk.Pipeline[Any, Any]:
        async def add(x: int) -> int:
            if x == 3:
                raise ValueError("three")
            return x + 1

        async def even(x: int) -> bool:
            return x % 2 == 0

        async def twice(x: int) -> list[int]:
            return [x, x]

        async def signs(x: int):
            yield x
            yield -x

        async def tens(xs: list[int]) -> list[int]:
            return [x * 10 for x in xs]

        return datapunk.Pipeline(
            datapunk.Stage(add),
            datapunk.Filter(even),
            datapunk.FlatMap(twice),
            datapunk.FlatMap(signs),
            datapunk.Batch(tens, size=3),
        )

    def test_every_async_kind_runs_from_sync_code(self):
        """Async map, filter, flat_map (coroutine and async generator) and batch run in run()."""
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = self.pipeline().run(range(6), out, dead_letter=dead)
        assert ASYNC_EXPECTED == out
        assert [(3, "add")] == [(d.position, d.stage) for d in dead]
        assert (6, 8, 3, 1) == (
            report.records_in,
            report.records_out,
            report.filtered,
            report.failed,
        )

    def test_every_async_kind_runs_in_arun(self):
        """The same pipeline under arun gives the same answer on the caller's loop."""
        out: list[Any] = []
        report = asyncio.run(self.pipeline().arun(range(6), out))
        assert ASYNC_EXPECTED == out
        assert (8, 1) == (report.records_out, report.failed)

    def test_astream_yields_the_same(self):
        """astream yields the same outputs lazily."""

        async def collect() -> list[Any]:
            return [x async for x in self.pipeline().astream(range(6), chunk_size=2)]

        assert ASYNC_EXPECTED == asyncio.run(collect())

    def test_run_works_inside_a_running_loop(self):
        """Calling the sync run() from inside an event loop (Jupyter) still works."""

        async def inside() -> list[Any]:
            out: list[Any] = []
            self.pipeline().run(range(6), out)
            return out

        assert ASYNC_EXPECTED == asyncio.run(inside())

    def test_async_failures_follow_the_policy(self):
        """An async stage failing under 'raise' raises StageError with the cause."""

        async def boom(x: int) -> int:
            raise KeyError(x)

        async def boom_filter(x: int) -> bool:
            raise KeyError(x)

        async def boom_flat(x: int) -> list[int]:
            raise KeyError(x)

        async def boom_batch(xs: list[int]) -> list[int]:
            raise KeyError(xs[0])

        for stage in (
            datapunk.Stage(boom),
            datapunk.Filter(boom_filter),
            datapunk.FlatMap(boom_flat),
            datapunk.Batch(boom_batch, size=2),
        ):
            dead: list[datapunk.DeadLetter] = []
            report = datapunk.Pipeline(stage).run([1, 2, 3], [], dead_letter=dead)
            assert ([0, 1, 2], 3) == ([d.position for d in dead], report.failed), stage.name
            with pytest.raises(datapunk.StageError) as info:
                asyncio.run(datapunk.Pipeline(stage).arun([7], [], on_error="raise"))
            assert isinstance(info.value.__cause__, KeyError)

    def test_an_async_callable_object_is_async(self):
        """An object with an async __call__ is awaited."""

        class Doubler:
            async def __call__(self, x: int) -> int:
                return x * 2

        assert [2, 4] == list(datapunk.Pipeline(datapunk.Stage(Doubler())).stream([1, 2]))

    def test_warn_validator_after_async_stage(self):
        """A warn validator after an async stage lets its output pass, counting a warning."""

        async def half(x: int) -> float:
            return x / 2

        warn = datapunk.check(lambda x: x < 1, "big", warn=True)
        out: list[Any] = []
        report = asyncio.run(datapunk.Pipeline(datapunk.Stage(half), warn).arun([1, 4], out))
        assert ([0.5, 2.0], 1) == (out, report.warnings)


class TestPrivateLoops:
    def test_a_threads_private_loop_is_closed_when_the_thread_ends(self):
        """Async stages run from a short-lived thread leave no open event loop behind."""
        import gc
        import threading

        loops: list[asyncio.AbstractEventLoop] = []

        async def grab(x: int) -> int:
            loops.append(asyncio.get_running_loop())
            return x

        def work() -> None:
            datapunk.Pipeline(datapunk.Stage(grab)).run([1], [])

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        gc.collect()
        assert loops
        assert loops[0].is_closed()

    def test_a_helper_loop_is_closed_when_its_thread_ends(self):
        """Called inside a running loop, sync APIs use a helper loop, closed with its thread."""
        import gc
        import threading

        loops: list[asyncio.AbstractEventLoop] = []

        async def grab(x: int) -> int:
            loops.append(asyncio.get_running_loop())
            return x

        def work() -> None:
            async def inside() -> None:
                assert datapunk.Pipeline(datapunk.Stage(grab))(5) == 5

            asyncio.run(inside())

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        gc.collect()
        assert loops
        assert loops[0].is_closed()


class TestBatch:
    def test_batches_have_at_most_size_records(self):
        """The batch function sees lists of at most size records, in order."""
        seen: list[list[int]] = []

        def record(xs: list[int]) -> list[int]:
            seen.append(list(xs))
            return xs

        datapunk.Pipeline(datapunk.Batch(record, size=3)).run(range(7), [])
        assert [[0, 1, 2], [3, 4, 5], [6]] == seen

    def test_an_exception_instance_fails_one_record(self):
        """Returning an exception instance in a record's place fails only that record."""

        def some(xs: list[int]) -> list[Any]:
            return [ValueError(f"bad {x}") if x == 2 else x * 10 for x in xs]

        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(datapunk.Batch(some, size=2, name="some")).run(
            range(4), out, dead_letter=dead
        )
        assert [0, 10, 30] == out
        assert [(2, "some", "ValueError", "bad 2")] == [
            (d.position, d.stage, d.error_type, d.message) for d in dead
        ]
        assert (4, 3, 1) == (
            report.stages["some"].records_in,
            report.stages["some"].records_out,
            report.stages["some"].failed,
        )

    def test_a_base_exception_instance_fails_one_record(self):
        """A BaseException instance in the results fails the record without stopping the run."""
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        datapunk.Pipeline(
            datapunk.Batch(lambda xs: [KeyboardInterrupt("ki") if x else x for x in xs], size=4)
        ).run([0, 1], out, dead_letter=dead)
        assert [0] == out
        assert [(1, "RuntimeError", "ki")] == [(d.position, d.error_type, d.message) for d in dead]

    def test_a_tuple_result_is_accepted(self):
        """A batch function may return a tuple."""
        assert [1, 2] == list(datapunk.Pipeline(datapunk.Batch(tuple, size=2)).stream([1, 2]))

    def test_a_wrong_length_result_fails_the_whole_batch(self):
        """Too few results fail every record of that batch with a message saying what to do."""
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(datapunk.Batch(lambda xs: xs[:1], size=3, name="short")).run(
            range(4), out, dead_letter=dead
        )
        assert [3] == out
        assert [0, 1, 2] == [d.position for d in dead]
        message = (
            "batch stage returned 1 results for 3 records; return exactly one result per "
            "record (an exception instance fails one record)"
        )
        assert {message} == {d.message for d in dead}
        assert report.records_in == report.records_out + report.failed

    def test_a_non_list_result_fails_the_batch(self):
        """A result that is not a list fails the batch's records, naming the type."""
        dead: list[datapunk.DeadLetter] = []
        datapunk.Pipeline(datapunk.Batch(lambda xs: 5, size=2)).run([1, 2], [], dead_letter=dead)
        assert [("TypeError", "batch stage must return a list, got int")] * 2 == [
            (d.error_type, d.message) for d in dead
        ]

    def test_a_raising_batch_fails_every_record_of_the_batch(self):
        """If the batch function raises, each record of that batch fails, the others go on."""

        def picky(xs: list[int]) -> list[int]:
            if 0 in xs:
                raise ZeroDivisionError("zero in batch")
            return xs

        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        datapunk.Pipeline(datapunk.Batch(picky, size=2)).run([1, 0, 3, 4], out, dead_letter=dead)
        assert [3, 4] == out
        assert [0, 1] == [d.position for d in dead]

    def test_a_batch_after_a_filter_keeps_positions(self):
        """Positions stay right when a batch sees records a filter thinned out."""
        dead: list[datapunk.DeadLetter] = []
        pipe = datapunk.Pipeline(
            datapunk.Filter(lambda x: x % 2 == 1),
            datapunk.Batch(lambda xs: [ValueError() if x == 5 else x for x in xs], size=2),
        )
        pipe.run(range(8), [], dead_letter=dead, chunk_size=3)
        assert [(5, 5)] == [(d.position, d.record) for d in dead]

    def test_a_raising_batch_under_raise_policy(self):
        """A failing batch under 'raise' raises StageError at the first record's position."""
        with pytest.raises(datapunk.StageError, match="at position 0 raised TypeError"):
            datapunk.Pipeline(datapunk.Batch(lambda xs: None, size=2)).run(
                [1, 2], [], on_error="raise"
            )

    def test_chunks_are_at_least_one_batch(self):
        """The default chunk holds a whole batch of the largest batch stage."""
        seen: list[int] = []

        def count(xs: list[int]) -> list[int]:
            seen.append(len(xs))
            return xs

        datapunk.Pipeline(datapunk.Batch(count, size=1500)).run(range(3000), [])
        assert [1500, 1500] == seen


class TestWarnValidators:
    def test_warn_lets_the_record_pass_and_counts_a_warning(self):
        """A warn-only validator passes the record on, counts a warning and samples it."""
        warn = datapunk.check(lambda x: x < 10, "is big", warn=True, name="big?")
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(warn, inverse).run([1, 20], out, dead_letter=dead)
        assert [1.0, 0.05] == out
        assert [] == dead
        assert (1, 0, 2) == (report.warnings, report.failed, report.records_out)
        assert [("big?", 1, "warn")] == [(e.stage, e.position, e.action) for e in report.errors]
        assert 1 == report.stages["big?"].warnings

    def test_warn_ignores_the_raise_policy(self):
        """A warn validator never stops a run, even with on_error='raise'."""
        warn = datapunk.check(lambda x: x < 10, "is big", warn=True)
        report = datapunk.Pipeline(warn).run([20], [], on_error="raise")
        assert (1, 1) == (report.warnings, report.records_out)

    def test_a_warn_validator_raising_a_non_validation_error_fails_the_record(self):
        """Only validation problems are warnings: a crash in a warn validator is a failure."""

        def crash(x: Any) -> Any:
            raise RuntimeError("bug")

        v = datapunk.Validator(crash, warn=True, name="crashy")
        report = datapunk.Pipeline(v).run([1], [])
        assert (0, 1) == (report.warnings, report.failed)


class TestStream:
    def test_stream_is_lazy(self):
        """stream() reads the source one chunk at a time, as it is consumed."""
        read: list[int] = []

        def source():
            for i in range(10):
                read.append(i)
                yield i

        stream = datapunk.Pipeline(lambda x: x).stream(source(), chunk_size=3)
        assert [] == read
        assert 0 == next(stream)
        assert [0, 1, 2] == read
        assert iter(stream) is stream

    def test_stream_report_after_exhaustion(self):
        """Once exhausted, the stream's report holds the counts and kept dead letters."""
        stream = datapunk.Pipeline(inv_stage()).stream([1, 0, 2])
        assert [1.0, 0.5] == list(stream)
        assert stream.report is not None
        assert (3, 2, 1) == (
            stream.report.records_in,
            stream.report.records_out,
            stream.report.failed,
        )
        assert [1] == [d.position for d in stream.report.dead_letters]

    def test_closing_a_stream_early_commits_what_was_read(self):
        """close() mid-way commits the dead letters read so far and builds the report."""
        dead = RecordingSink()
        stream = datapunk.Pipeline(inv_stage()).stream(
            [0, 1, 2, 0, 4], dead_letter=dead, chunk_size=2
        )
        assert 1.0 == next(stream)
        stream.close()
        assert ("closed", [0]) == (dead.state, [d.position for d in dead.records])
        assert stream.report is not None
        assert 2 == stream.report.records_in

    def test_closing_an_astream_early_commits_like_stream_issue3(self):
        """Breaking out of astream commits the dead-letter sink, as stream does."""
        dead = RecordingSink()

        async def consume() -> None:
            agen = datapunk.Pipeline(inv_stage()).astream(
                [0, 1, 2, 0, 4], dead_letter=dead, chunk_size=2
            )
            async for x in agen:
                if x == 1.0:
                    break
            await agen.aclose()

        asyncio.run(consume())
        assert ("closed", [0]) == (dead.state, [d.position for d in dead.records])

    def test_stream_raise_policy_propagates(self):
        """A failure under 'raise' propagates out of the iteration."""
        stream = datapunk.Pipeline(inv_stage()).stream([1, 0], on_error="raise")
        with pytest.raises(datapunk.StageError, match="position 1"):
            list(stream)

    def test_astream_raise_policy_propagates_and_aborts(self):
        """A failure under 'raise' propagates out of astream and aborts the dead-letter sink."""
        dead = RecordingSink()

        async def consume() -> list[Any]:
            pipe = datapunk.Pipeline(inv_stage())
            return [x async for x in pipe.astream([1, 0], on_error="raise", dead_letter=dead)]

        with pytest.raises(datapunk.StageError, match="position 1"):
            asyncio.run(consume())
        assert "aborted" == dead.state

    def test_stream_skip_policy(self):
        """Skipped records are not yielded and not dead-lettered."""
        dead: list[Any] = []
        stream = datapunk.Pipeline(inv_stage()).stream([0, 1], on_error="skip", dead_letter=dead)
        assert [1.0] == list(stream)
        assert [] == dead
        assert stream.report is not None
        assert 1 == stream.report.skipped


class TestOneRecord:
    def test_calling_a_pipeline_returns_the_output(self):
        """pipeline(record) runs one record through and returns the result."""
        pipe = datapunk.Pipeline(lambda x: x + 1, inverse)
        assert 0.5 == pipe(1)

    def test_a_filtered_record_gives_none(self):
        """A record a filter drops gives None; apply gives an empty list."""
        pipe = datapunk.Pipeline(datapunk.Filter(lambda x: x > 0))
        assert (None, []) == (pipe(-1), pipe.apply(-1))

    def test_calling_raises_the_stage_error(self):
        """pipeline(record) raises the failing stage's error, whatever its policy."""
        pipe = datapunk.Pipeline(inv_stage(on_error="skip"))
        with pytest.raises(datapunk.StageError) as info:
            pipe(0)
        assert "stage 'inverse' at position 0 raised ZeroDivisionError: division by zero" == str(
            info.value
        )
        assert isinstance(info.value.__cause__, ZeroDivisionError)

    def test_calling_a_flat_map_with_several_outputs_points_at_apply(self):
        """One input giving several outputs cannot be returned by __call__: use apply()."""
        pipe = datapunk.Pipeline(datapunk.FlatMap(lambda x: [x, x]))
        with pytest.raises(datapunk.ConfigurationError, match=r"call \.apply\(record\)"):
            pipe(1)
        assert [1, 1] == pipe.apply(1)
        assert [] == datapunk.FlatMap(lambda x: []).apply(1)

    def test_calling_an_async_stage_works(self):
        """An async stage can be called like a sync one."""

        async def double(x: int) -> int:
            return x * 2

        assert 4 == datapunk.Stage(double)(2)
