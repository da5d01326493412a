"""The exception hierarchy: bases, codes, details, to_dict, pickling and hostile messages."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

import datapunk
from datapunk._core.types import safe_str

pytestmark = pytest.mark.unit

HIERARCHY = [
    (datapunk.DatapunkError, (Exception,), "datapunk_error"),
    (datapunk.ConfigurationError, (datapunk.DatapunkError, ValueError), "configuration_error"),
    (datapunk.DataProcessingError, (datapunk.DatapunkError,), "data_processing_error"),
    (datapunk.ValidationError, (datapunk.DataProcessingError, ValueError), "validation_error"),
    (datapunk.StageError, (datapunk.DataProcessingError,), "stage_error"),
    (datapunk.StageTimeout, (datapunk.StageError, TimeoutError), "stage_timeout"),
    (datapunk.RetryError, (datapunk.StageError,), "retry_error"),
    (datapunk.CircuitOpenError, (datapunk.StageError,), "circuit_open"),
    (datapunk.SourceError, (datapunk.DatapunkError, OSError), "source_error"),
    (datapunk.SinkError, (datapunk.DatapunkError, OSError), "sink_error"),
    (datapunk.ErrorBudgetExceeded, (datapunk.DatapunkError,), "error_budget_exceeded"),
]


def a_report() -> datapunk.RunReport:
    return datapunk.Pipeline(lambda x: 1 / x, name="inv").run([0, 1], [])


def examples() -> list[datapunk.DatapunkError]:
    reason = datapunk.Reason(("a", 0), "must be positive", -1, "check")
    stage_err = datapunk.StageError.wrap(ValueError("bad"), stage="parse", position=3)
    return [
        datapunk.DatapunkError("base", details={"k": 1}),
        datapunk.ConfigurationError("bad option", details={"option": "kind"}),
        datapunk.DataProcessingError("cannot", stage="s", position=(1, 2)),
        datapunk.ValidationError(reasons=[reason], stage="v", position=7),
        stage_err,
        datapunk.StageTimeout("slow", stage="s", position=1, error_type="TimeoutError"),
        datapunk.RetryError("gave up", stage="s", position=1),
        datapunk.CircuitOpenError("open", stage="s"),
        datapunk.SourceError("unreadable", path="in.csv", position=12),
        datapunk.SinkError("disk full", path="out.csv"),
        datapunk.ErrorBudgetExceeded("too many", report=a_report()),
    ]


class TestHierarchy:
    @pytest.mark.parametrize(
        ("cls", "bases", "code"), HIERARCHY, ids=[c.__name__ for c, _, _ in HIERARCHY]
    )
    def test_bases_and_codes(self, cls, bases, code):
        """Each error derives from the documented bases and has a stable code."""
        assert all(issubclass(cls, base) for base in bases)
        assert issubclass(cls, datapunk.DatapunkError)
        assert code == cls.code

    def test_codes_are_unique(self):
        """No two classes share a code."""
        codes = [code for _, _, code in HIERARCHY]
        assert sorted(set(codes)) == sorted(codes)

    def test_builtin_handlers_still_catch(self):
        """except ValueError catches configuration and validation errors."""
        with pytest.raises(ValueError, match="bad"):
            raise datapunk.ConfigurationError("bad")
        with pytest.raises(OSError, match="gone"):
            raise datapunk.SourceError("gone")


class TestToDict:
    def test_base(self):
        """to_dict has code, type, message and plain details."""
        err = datapunk.ConfigurationError("bad option", details={"option": "kind"})
        assert {
            "code": "configuration_error",
            "type": "ConfigurationError",
            "message": "bad option",
            "details": {"option": "kind"},
        } == err.to_dict()
        assert "bad option" == str(err) == err.message

    def test_data_processing_error_names_stage_and_position(self):
        """Stage and position are attributes and details."""
        err = datapunk.DataProcessingError("cannot", stage="s", position=(1, 2))
        assert ("s", (1, 2)) == (err.stage, err.position)
        assert {"stage": "s", "position": [1, 2]} == err.to_dict()["details"]

    def test_validation_error_lists_reasons(self):
        """A ValidationError's dict lists each reason; its message summarises them."""
        reasons = [
            datapunk.Reason(("a",), "is required"),
            datapunk.Reason(("b", 0), "must be positive", -1, "check"),
        ]
        err = datapunk.ValidationError(reasons=reasons, stage="v", position=7)
        assert (
            "2 validation problems: a: is required (got None); b.0: must be positive (got -1)"
            == (str(err))
        )
        assert {
            "stage": "v",
            "position": 7,
            "reasons": [
                {"path": ["a"], "message": "is required", "value": None, "type": "value_error"},
                {"path": ["b", 0], "message": "must be positive", "value": -1, "type": "check"},
            ],
        } == err.to_dict()["details"]

    def test_validation_error_summaries(self):
        """Summaries cover no reason, one reason, and more than five."""
        assert "record is invalid" == str(datapunk.ValidationError())
        one = datapunk.ValidationError(reasons=[datapunk.Reason((), "bad", 1)])
        assert "1 validation problem: record: bad (got 1)" == str(one)
        many = datapunk.ValidationError(reasons=[datapunk.Reason((i,), "bad") for i in range(7)])
        assert str(many).startswith("7 validation problems: 0: bad (got None);")
        assert str(many).endswith("4: bad (got None) (and 2 more)")
        assert "explicit" == str(datapunk.ValidationError("explicit"))

    def test_stage_error_wrap(self):
        """StageError.wrap names stage, position and the cause's type, and keeps the cause."""
        cause = KeyError("id")
        err = datapunk.StageError.wrap(cause, stage="parse", position=3)
        assert "stage 'parse' at position 3 raised KeyError: 'id'" == str(err)
        assert (cause, "KeyError") == (err.__cause__, err.error_type)
        assert {"stage": "parse", "position": 3, "error_type": "KeyError"} == err.to_dict()[
            "details"
        ]
        nowhere = datapunk.StageError.wrap(cause, stage="parse", position=None)
        assert "stage 'parse' raised KeyError: 'id'" == str(nowhere)

    def test_source_and_sink_errors_carry_paths(self):
        """SourceError has path and position; SinkError has path."""
        src = datapunk.SourceError("unreadable", path="in.csv", position=12)
        sink = datapunk.SinkError("disk full", path="out.csv", details={"errno": 28})
        assert ("in.csv", 12) == (src.path, src.position)
        assert {"path": "in.csv", "position": 12} == src.to_dict()["details"]
        assert {"path": "out.csv", "errno": 28} == sink.to_dict()["details"]

    def test_error_budget_exceeded_carries_the_report(self):
        """ErrorBudgetExceeded keeps the report and summarises it in details."""
        report = a_report()
        err = datapunk.ErrorBudgetExceeded("too many", report=report)
        assert report is err.report
        assert {"failed": 1, "skipped": 0, "records_in": 2} == err.to_dict()["details"]

    def test_details_become_plain_data(self):
        """Odd values in details become strings; reasons and nested containers become data."""

        class Thing:
            def __str__(self) -> str:
                return "thing"

        err = datapunk.DatapunkError(
            "x",
            details={"obj": Thing(), "nested": {"t": (1, Thing())}, "r": datapunk.Reason((), "m")},
        )
        assert {
            "obj": "thing",
            "nested": {"t": [1, "thing"]},
            "r": {"path": [], "message": "m", "value": None, "type": "value_error"},
        } == err.to_dict()["details"]

    @pytest.mark.parametrize("err", examples(), ids=lambda e: type(e).__name__)
    def test_every_error_serialises_to_json(self, err):
        """to_dict of every error is JSON-serialisable."""
        data = json.loads(json.dumps(err.to_dict()))
        assert (err.code, type(err).__name__, err.message) == (
            data["code"],
            data["type"],
            data["message"],
        )


class TestPickling:
    @pytest.mark.parametrize("err", examples(), ids=lambda e: type(e).__name__)
    def test_round_trip(self, err):
        """Every error survives pickling (process runners) with message, details and attributes."""
        clone = pickle.loads(pickle.dumps(err))
        assert type(err) is type(clone)
        assert (str(err), err.to_dict()) == (str(clone), clone.to_dict())
        assert {k: v for k, v in vars(err).items() if k != "report"} == {
            k: v for k, v in vars(clone).items() if k != "report"
        }

    def test_error_budget_report_survives(self):
        """The partial report survives pickling."""
        err = datapunk.ErrorBudgetExceeded("too many", report=a_report())
        clone = pickle.loads(pickle.dumps(err))
        assert err.report.to_dict() == clone.report.to_dict()

    def test_validation_reasons_survive(self):
        """Reasons survive pickling."""
        err = datapunk.ValidationError(reasons=[datapunk.Reason(("a",), "m", 1)])
        assert err.reasons == pickle.loads(pickle.dumps(err)).reasons


class TestHostileExceptions:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    def test_safe_str_never_raises(self):
        """safe_str of an exception whose __str__ raises names its type."""
        assert "<Nasty (str() failed)>" == safe_str(self.Nasty())

    def test_safe_str_cuts_long_text(self):
        """Long text is cut to the limit with an ellipsis."""
        assert "aaaa…" == safe_str("a" * 50, limit=5)

    def test_wrapping_a_nasty_exception(self):
        """StageError.wrap works on an exception whose __str__ raises."""
        err = datapunk.StageError.wrap(self.Nasty(), stage="s", position=0)
        assert "stage 's' at position 0 raised Nasty: <Nasty (str() failed)>" == str(err)

    def test_a_nasty_exception_in_a_check_predicate(self):
        """A predicate raising a nasty exception still gives a readable reason."""
        nasty = self.Nasty

        def pred(x: Any) -> bool:
            raise nasty

        with pytest.raises(datapunk.ValidationError) as info:
            datapunk.check(pred, "must hold")(1)
        assert "must hold (Nasty: <Nasty (str() failed)>)" == info.value.reasons[0].message
