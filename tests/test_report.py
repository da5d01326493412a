"""RunReport and its parts: counts, stage figures, the error sample, JSON, text and HTML."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import uuid
from typing import Any

import attrs
import pydantic
import pytest

import datapunk
from datapunk._core.types import jsonable

pytestmark = pytest.mark.unit


def inverse(x: float) -> float:
    return 1 / x


def sample_report(**run: Any) -> datapunk.RunReport:
    pipe = datapunk.Pipeline(
        datapunk.Stage(inverse, name="inverse"),
        datapunk.Filter(lambda x: x < 1, name="small"),
        datapunk.check(lambda x: x > 0.2, "tiny", name="tiny?", warn=True),
        name="demo",
    )
    return pipe.run([1, 0, 2, 4, 0, 5], [], **run)


class TestCounts:
    def test_totals(self):
        """The report counts records in, out, filtered, failed, skipped and warnings."""
        report = sample_report()
        assert (6, 3, 1, 2, 0, 1) == (
            report.records_in,
            report.records_out,
            report.filtered,
            report.failed,
            report.skipped,
            report.warnings,
        )
        assert (True, None, "demo", "serial") == (
            report.ok,
            report.stop_reason,
            report.pipeline,
            report.runner,
        )

    def test_stage_reports(self):
        """Each stage has its own counters, in pipeline order."""
        stages = sample_report().stages
        assert ["inverse", "small", "tiny?"] == list(stages)
        inv, small, tiny = stages.values()
        assert ("map", 6, 4, 2) == (inv.kind, inv.records_in, inv.records_out, inv.failed)
        assert ("filter", 4, 3, 1) == (
            small.kind,
            small.records_in,
            small.records_out,
            small.filtered,
        )
        assert (3, 3, 1) == (tiny.records_in, tiny.records_out, tiny.warnings)

    def test_timings(self):
        """Times, throughput and latency percentiles are filled and ordered."""
        report = sample_report()
        assert report.started <= report.finished
        assert report.duration_s > 0
        assert report.throughput == pytest.approx(report.records_in / report.duration_s)
        for s in report.stages.values():
            assert 0 <= s.latency_p50_ms <= s.latency_p95_ms <= s.latency_p99_ms
            assert s.seconds >= 0

    def test_latency_is_sampled_per_chunk(self):
        """Many chunks give many latency samples, bounded by a reservoir."""
        report = datapunk.Pipeline(inverse).run(range(1, 3001), [], chunk_size=1)
        stage = report.stages["inverse"]
        assert 3000 == stage.records_in
        assert stage.latency_p99_ms >= stage.latency_p50_ms > 0

    def test_an_empty_run(self):
        """A run of no records reports zeros and is ok."""
        report = datapunk.Pipeline(inverse).run([], [])
        assert (0, 0, 0, True, ()) == (
            report.records_in,
            report.records_out,
            report.failed,
            report.ok,
            report.errors,
        )
        assert 0.0 == report.stages["inverse"].latency_p50_ms

    def test_the_report_is_immutable(self):
        """A report cannot be changed."""
        report = sample_report()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            report.records_in = 0  # type: ignore[misc]


class TestErrorSample:
    def test_errors_and_warnings_are_sampled_with_their_action(self):
        """The sample lists failures and warnings with stage, position, type and action."""
        report = sample_report()
        assert [
            ("inverse", 1, "ZeroDivisionError", "dead_letter"),
            ("inverse", 4, "ZeroDivisionError", "dead_letter"),
            ("tiny?", 5, "ValidationError", "warn"),
        ] == sorted((e.stage, e.position, e.error_type, e.action) for e in report.errors)

    def test_the_sample_is_bounded(self):
        """The sample keeps at most error_sample_size errors; counts stay exact."""
        report = datapunk.Pipeline(inverse).run([0] * 250, [], chunk_size=50)
        assert (100, 250) == (len(report.errors), report.failed)
        small = datapunk.Pipeline(inverse).run([0] * 20, [], error_sample_size=5)
        assert (5, 20) == (len(small.errors), small.failed)
        none = datapunk.Pipeline(inverse).run([0] * 3, [], error_sample_size=0)
        assert ((), 3) == (none.errors, none.failed)

    def test_dead_letters_are_kept_only_without_a_sink(self):
        """report.dead_letters holds failures when no dead-letter sink was given."""
        assert [1, 4] == [d.position for d in sample_report().dead_letters]
        assert () == sample_report(dead_letter=[]).dead_letters


class TestSerialisation:
    def test_to_dict(self):
        """to_dict gives plain data with every field."""
        report = sample_report()
        data = report.to_dict()
        assert {
            "run_id",
            "pipeline",
            "runner",
            "started",
            "finished",
            "duration_s",
            "records_in",
            "records_out",
            "filtered",
            "failed",
            "skipped",
            "warnings",
            "retried",
            "degraded",
            "throughput",
            "ok",
            "stop_reason",
            "stages",
            "errors",
            "dead_letters",
        } <= set(data)
        assert report.started.isoformat() == data["started"]
        assert (6, 3) == (data["records_in"], data["records_out"])
        assert report.stages["small"].to_dict() == data["stages"]["small"]
        assert {
            "stage": "inverse",
            "position": 1,
            "error_type": "ZeroDivisionError",
            "message": "division by zero",
            "reasons": [],
            "action": "dead_letter",
        } == data["errors"][0]

    def test_to_json_round_trips_to_the_dict(self):
        """to_json is the dict as JSON, indented or on one line."""
        report = sample_report()
        assert report.to_dict() == json.loads(report.to_json())
        assert "\n" not in report.to_json(indent=None)

    def test_str_is_a_table(self):
        """str() shows a summary, one row per stage and the error sample."""
        report = sample_report()
        text = str(report)
        lines = text.splitlines()
        assert lines[0] == f"run {report.run_id} of 'demo' (serial): ok"
        assert "in 6  out 3  filtered 1  failed 2  skipped 0  warnings 1" == lines[1]
        header = lines[4].split()
        assert ["stage", "kind", "in", "out", "filtered", "failed", "skipped", "warn"] == header[:8]
        assert ["inverse", "map", "6", "4", "0", "2", "0", "0"] == lines[6].split()[:8]
        assert "errors (sample of 3):" in lines
        assert "  [dead_letter] inverse @ 1: ZeroDivisionError: division by zero" in lines

    def test_str_of_a_stopped_run(self):
        """A stopped run says why in its first line."""
        with pytest.raises(datapunk.ErrorBudgetExceeded) as info:
            datapunk.Pipeline(inverse, name="p").run([0, 0], [], max_errors=1)
        assert (
            str(info.value.report)
            .splitlines()[0]
            .endswith(": STOPPED: 2 records failed, more than max_errors=1")
        )

    def test_str_cuts_the_error_list(self):
        """At most ten errors are printed, with a pointer to the rest."""
        text = str(datapunk.Pipeline(inverse).run([0] * 12, []))
        assert "  … 2 more in report.errors" in text.splitlines()

    def test_retries_and_degraded_show_only_when_present(self):
        """The summary mentions retries and degradations only when there were some."""
        assert "retried" not in str(sample_report()).splitlines()[1]

    def test_html(self):
        """_repr_html_ is a table with escaped names and the error sample."""
        pipe = datapunk.Pipeline(datapunk.Stage(inverse, name="<inv>"), name="a&b")
        html = pipe.run([0, 1], [])._repr_html_()
        assert html.startswith('<div class="datapunk-report"><p>run ')
        assert "of &#x27;a&amp;b&#x27;" in html
        assert "<td>&lt;inv&gt;</td><td>map</td><td>2</td><td>1</td>" in html
        assert "<p>errors (sample of 1):</p><ul><li>[dead_letter] &lt;inv&gt; @ 0:" in html
        assert "<ul>" not in datapunk.Pipeline(inverse).run([1], [])._repr_html_()


class TestDeadLetter:
    def test_to_dict_and_back(self):
        """A dead letter round-trips through to_dict/from_dict (and JSON)."""
        letter = datapunk.DeadLetter(
            record={"a": 1},
            position=("file.csv", 3),
            stage="parse",
            error_type="ValidationError",
            message="bad",
            reasons=(datapunk.Reason(("a",), "must be positive", 1, "check"),),
            attempts=2,
            run_id="abc",
        )
        data = json.loads(json.dumps(letter.to_dict()))
        assert letter == datapunk.DeadLetter.from_dict(data)

    def test_from_dict_defaults(self):
        """Missing keys get defaults."""
        assert datapunk.DeadLetter(None, None, "", "", "") == datapunk.DeadLetter.from_dict({})


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class DC:
    a: int


@attrs.define
class AT:
    b: int


class PM(pydantic.BaseModel):
    c: int
    s: pydantic.SecretStr


class TestJsonable:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, None),
            (1.5, 1.5),
            (float("nan"), "nan"),
            (float("inf"), "inf"),
            ({"k": (1, {2})}, {"k": [1, [2]]}),
            (dt.date(2024, 1, 2), "2024-01-02"),
            (dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC), "2024-01-02T03:04:00+00:00"),
            (decimal.Decimal("1.10"), "1.10"),
            (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
            (Colour.RED, "red"),
            (b"abc", "abc"),
            (b"\xff\x00", "base64:/wA="),
            (DC(1), {"a": 1}),
            (AT(2), {"b": 2}),
            (PM(c=3, s=pydantic.SecretStr("pw")), {"c": 3, "s": "**********"}),
            (pydantic.SecretStr("pw"), "**********"),
            (
                datapunk.Reason((), "m"),
                {"path": [], "message": "m", "value": None, "type": "value_error"},
            ),
            (object, "<class 'object'>"),
        ],
        ids=lambda v: type(v).__name__,
    )
    def test_values_become_json_data(self, value, expected):
        """Every kind of value becomes JSON data, secrets masked."""
        assert expected == jsonable(value)
        json.dumps(jsonable(value))

    def test_reason_str(self):
        """A reason reads as path: message (got value)."""
        assert "value: must be positive (got -1)" == str(
            datapunk.Reason(("value",), "must be positive", -1)
        )
        assert "record: bad (got None)" == str(datapunk.Reason((), "bad"))
