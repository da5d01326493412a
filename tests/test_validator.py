"""Validators: Validate(T), check(), combination with &, warn-only, and secrets."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import pydantic
import pytest
from pydantic import Field, SecretStr, field_validator, model_validator
from typing_extensions import TypedDict

import datapunk

pytestmark = pytest.mark.unit


class Flight(pydantic.BaseModel):
    dep_delay: float


class Trip(pydantic.BaseModel):
    name: str
    flights: list[Flight]


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Row(TypedDict):
    id: int
    label: str


def reasons_of(validator: Any, record: Any) -> list[tuple[Any, ...]]:
    with pytest.raises(datapunk.ValidationError) as info:
        validator(record)
    return [(r.path, r.value, r.type) for r in info.value.reasons]


class TestValidate:
    def test_a_model_returns_the_validated_instance(self):
        """A valid dict becomes a model instance, coerced the pydantic way."""
        got = datapunk.Validate(Trip)({"name": "t", "flights": [{"dep_delay": "1.5"}]})
        assert Trip(name="t", flights=[Flight(dep_delay=1.5)]) == got

    def test_one_reason_per_problem_with_tuple_paths(self):
        """Each problem is one reason with its field path as a tuple, message and value."""
        v = datapunk.Validate(Trip)
        with pytest.raises(datapunk.ValidationError) as info:
            v({"flights": [{"dep_delay": 1}, {"dep_delay": "late"}]})
        assert [
            datapunk.Reason(("name",), "Field required", None, "missing"),
            datapunk.Reason(
                ("flights", 1, "dep_delay"),
                "Input should be a valid number, unable to parse string as a number",
                "late",
                "float_parsing",
            ),
        ] == list(info.value.reasons)
        assert str(info.value).startswith("2 validation problems: name: Field required")

    def test_a_dataclass(self):
        """A dataclass is validated into an instance."""
        v = datapunk.Validate(Point)
        assert Point(1, 2) == v({"x": 1, "y": "2"})
        assert [(("y",), "b", "int_parsing")] == reasons_of(v, {"x": 1, "y": "b"})

    def test_a_typed_dict(self):
        """A TypedDict is validated into a dict."""
        v = datapunk.Validate(Row)
        assert {"id": 1, "label": "a"} == v({"id": "1", "label": "a"})
        assert [(("id",), "x", "int_parsing")] == reasons_of(v, {"id": "x", "label": "a"})

    def test_any_type_adapter_type(self):
        """Any type a TypeAdapter accepts works, constraints included."""
        v = datapunk.Validate(list[Annotated[int, Field(gt=0)]])
        assert [1, 2] == v([1, "2"])
        assert [((1,), -1, "greater_than")] == reasons_of(v, [1, -1])

    def test_strict_mode_refuses_coercion(self):
        """strict=True refuses what lax mode would coerce."""
        assert Flight(dep_delay=1.0) == datapunk.Validate(Flight)({"dep_delay": "1"})
        strict = datapunk.Validate(Flight, strict=True)
        assert [(("dep_delay",), "1", "float_type")] == reasons_of(strict, {"dep_delay": "1"})

    def test_names(self):
        """The default name is validate[Type]; name= overrides it."""
        assert "validate[Flight]" == datapunk.Validate(Flight).name
        assert "flights" == datapunk.Validate(Flight, name="flights").name
        v = datapunk.Validate(Flight)
        assert ("map", Flight, None) == (v.kind, v.type, v.strict)

    @pytest.mark.parametrize("tp", [5, [1], object()], ids=["int", "unhashable", "object"])
    def test_an_unusable_type_is_a_configuration_error(self, tp):
        """A type pydantic cannot validate against is a ConfigurationError saying what to pass."""
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Validate(tp)
        assert str(info.value).startswith(f"cannot validate against {tp!r}: ")
        assert str(info.value).endswith(
            "Pass a pydantic model, dataclass, TypedDict or another type pydantic accepts"
        )

    def test_as_a_stage_in_a_run(self):
        """Invalid records become dead letters with their reasons; valid ones flow on."""
        out: list[Any] = []
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(datapunk.Validate(Flight)).run(
            [{"dep_delay": 1}, {"dep_delay": "x"}], out, dead_letter=dead
        )
        assert [Flight(dep_delay=1.0)] == out
        assert [(1, "validate[Flight]", "ValidationError", ("dep_delay",))] == [
            (d.position, d.stage, d.error_type, d.reasons[0].path) for d in dead
        ]
        assert [("dep_delay",)] == [r.path for e in report.errors for r in e.reasons]

    def test_validate_method(self):
        """validate() is the validator's call, raising ValidationError."""
        v = datapunk.Validate(Flight)
        assert Flight(dep_delay=2.0) == v.validate({"dep_delay": 2})
        with pytest.raises(datapunk.ValidationError):
            v.validate({"dep_delay": "x"})

    def test_a_value_error_inside_a_field_validator_is_one_reason(self):
        """A field validator raising ValueError gives a reason at that field."""

        class Odd(pydantic.BaseModel):
            x: int

            @field_validator("x")
            @classmethod
            def boom(cls, v: int) -> int:
                raise ValueError("odd value")

        assert [(("x",), 1, "value_error")] == reasons_of(datapunk.Validate(Odd), {"x": 1})

    def test_an_unexpected_exception_in_a_model_is_one_whole_record_reason(self):
        """A validator raising something pydantic does not catch becomes one whole-record reason."""

        class Lookup(pydantic.BaseModel):
            x: int

            @field_validator("x")
            @classmethod
            def find(cls, v: int) -> int:
                raise KeyError(v)

        with pytest.raises(datapunk.ValidationError) as info:
            datapunk.Validate(Lookup)({"x": 1})
        assert [datapunk.Reason((), "1", None, "KeyError")] == list(info.value.reasons)

    def test_a_model_with_a_forward_reference_is_rebuilt(self):
        """A model completed after its definition is rebuilt on first use."""
        v = datapunk.Validate(Later)
        assert Later(child=Child(n=1)) == v({"child": {"n": "1"}})


class Later(pydantic.BaseModel):
    child: Child


class Child(pydantic.BaseModel):
    n: int


class TestCheck:
    def test_passes_the_record_unchanged(self):
        """A passing rule returns the very same record."""
        record = {"age": 3}
        assert record is datapunk.check(lambda r: r["age"] >= 0, "age must be >= 0")(record)

    def test_a_false_predicate_gives_one_reason(self):
        """A false predicate gives one 'check' reason with the message."""
        v = datapunk.check(lambda r: r > 0, "must be positive")
        with pytest.raises(datapunk.ValidationError) as info:
            v(-1)
        assert (datapunk.Reason((), "must be positive", None, "check"),) == info.value.reasons
        assert ("must be positive", False) == (v.name, v.transforms)

    def test_field_gives_path_and_value(self):
        """field= puts the path and the field's value in the reason."""
        v = datapunk.check(lambda r: r["a"]["b"] > 0, "b > 0", field=("a", "b"))
        assert [(("a", "b"), -2, "check")] == reasons_of(v, {"a": {"b": -2}})
        by_name = datapunk.check(lambda r: r["age"] >= 0, "age >= 0", field="age")
        assert [(("age",), -3, "check")] == reasons_of(by_name, {"age": -3})

    def test_field_on_objects_and_missing_fields(self):
        """field= reads attributes of objects, and a missing field gives value None."""
        v = datapunk.check(lambda r: False, "never", field="x")
        assert [(("x",), 1, "check")] == reasons_of(v, Point(1, 2))
        assert [(("x",), None, "check")] == reasons_of(v, {"y": 1})

    def test_a_raising_predicate_is_a_validation_failure(self):
        """A predicate that raises makes the record invalid, naming the exception."""
        v = datapunk.check(lambda r: r["age"] > 0, "age must be positive", field="age")
        with pytest.raises(datapunk.ValidationError) as info:
            v({})
        assert [("age must be positive (KeyError: 'age')", None)] == [
            (r.message, r.value) for r in info.value.reasons
        ]
        assert isinstance(info.value.__cause__, KeyError)

    def test_a_non_callable_predicate_is_a_configuration_error(self):
        """check() needs a callable."""
        with pytest.raises(
            datapunk.ConfigurationError, match="check\\(\\) needs a callable predicate, got str"
        ):
            datapunk.check("x > 0", "positive")  # type: ignore[arg-type]


class TestCombine:
    def test_and_reports_every_failing_reason(self):
        """a & b runs both and reports each failing reason, not only the first."""
        positive = datapunk.check(lambda x: x > 0, "positive")
        even = datapunk.check(lambda x: x % 2 == 0, "even")
        both = positive & even
        with pytest.raises(datapunk.ValidationError) as info:
            both(-1)
        assert ["positive", "even"] == [r.message for r in info.value.reasons]
        assert ("positive & even", 2) == (both.name, both(2))

    def test_and_flattens(self):
        """(a & b) & c has three parts, not a nested pair."""
        a, b, c = (datapunk.check(lambda x: True, n) for n in "abc")
        combined = (a & b) & c
        assert [a, b, c] == list(combined.parts)

    def test_a_model_then_rules_on_the_model(self):
        """After Validate(Model), rules see the model instance; the result is the model."""
        v = datapunk.Validate(Flight) & datapunk.check(lambda f: f.dep_delay < 60, "too late")
        assert Flight(dep_delay=1.0) == v({"dep_delay": "1"})
        assert ["too late"] == [r.message for r in _reasons(v, {"dep_delay": 90})]
        assert v.transforms

    def test_rules_after_a_failed_model_do_not_run(self):
        """Once a transforming part fails, later parts (expecting its output) are not run."""
        seen: list[Any] = []

        def rule(f: Any) -> bool:
            seen.append(f)
            return True

        v = datapunk.Validate(Flight) & datapunk.check(rule, "never")
        assert [("dep_delay",)] == [r.path for r in _reasons(v, {"dep_delay": "x"})]
        assert [] == seen

    def test_and_with_a_non_validator_is_a_configuration_error(self):
        """& only combines validators."""
        with pytest.raises(datapunk.ConfigurationError, match="& combines validators; got Stage"):
            datapunk.check(lambda x: True, "ok") & datapunk.Stage(lambda x: x)  # type: ignore[operator]

    def test_a_plain_exception_in_a_combined_part(self):
        """A part raising a plain exception makes the combination fail with one reason."""

        def crash(x: Any) -> Any:
            raise RuntimeError("bug")

        v = datapunk.Validator(crash, name="crash") & datapunk.check(lambda x: True, "ok")
        report = datapunk.Pipeline(v).run([1], [], dead_letter=(dead := []))
        assert 1 == report.failed
        assert [("RuntimeError",)] == [tuple(r.type for r in d.reasons) for d in dead]


def _reasons(v: Any, record: Any) -> tuple[datapunk.Reason, ...]:
    with pytest.raises(datapunk.ValidationError) as info:
        v(record)
    return info.value.reasons


class TestWarn:
    def test_warn_validators_pass_failing_records(self):
        """warn=True: a failing record passes unchanged and counts a warning."""
        v = datapunk.Validate(Flight, warn=True)
        out: list[Any] = []
        report = datapunk.Pipeline(v).run([{"dep_delay": "x"}, {"dep_delay": 1}], out)
        assert [{"dep_delay": "x"}, Flight(dep_delay=1.0)] == out
        assert (1, 0) == (report.warnings, report.failed)
        assert {"kind": "map", "warn": True} == v.options()

    def test_calling_a_warn_validator_returns_the_record(self):
        """Calling a warn validator on a bad record returns it unchanged."""
        v = datapunk.check(lambda x: x > 0, "positive", warn=True)
        assert -1 == v(-1)


class TestWarnCombined:
    def test_a_warn_only_validator_cannot_be_combined_issue3(self):
        """Combining a warn-only validator with & is refused instead of silently failing records."""
        strict = datapunk.check(lambda r: r > 0, "must be positive")
        lenient = datapunk.check(lambda r: r < 100, "looks too large", warn=True)
        with pytest.raises(datapunk.ConfigurationError, match="cannot be combined with &"):
            strict & lenient

    def test_as_separate_stages_the_warning_passes_the_record(self):
        """Chained instead, the warn-only rule warns and the record passes."""
        strict = datapunk.check(lambda r: r > 0, "must be positive")
        lenient = datapunk.check(lambda r: r < 100, "looks too large", warn=True)
        out: list[int] = []
        report = (strict | lenient).run([5, 500, -1], out)
        assert ([5, 500], 1, 1) == (out, report.warnings, report.failed)


class SecretModel(pydantic.BaseModel):
    user: str
    password: SecretStr

    @model_validator(mode="before")
    @classmethod
    def known_user(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("user") == "mallory":
            raise ValueError("unknown user")
        return data

    @field_validator("password")
    @classmethod
    def long_enough(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 6:
            raise ValueError("password too short")
        return v


class Login(pydantic.BaseModel):
    creds: SecretModel
    attempts: int


SECRET = "hunter2-s3cr3t"


class Aliased(pydantic.BaseModel):
    password: SecretStr = Field(alias="pw")


class Wrapped(pydantic.BaseModel):
    maybe: SecretStr | None = None
    many: list[SecretStr]
    pair: tuple[str, SecretStr]
    by_key: dict[str, SecretStr]
    plain: str = ""


@dataclasses.dataclass
class SecretPoint:
    x: int
    token: SecretStr


@pytest.mark.security
class TestSecrets:
    @pytest.mark.parametrize(
        ("record", "validator"),
        [
            ({"user": "bob", "password": 12345678}, datapunk.Validate(SecretModel)),
            ({"user": "bob", "password": "Zq9x!"}, datapunk.Validate(SecretModel)),
            ({"user": "mallory", "password": SECRET}, datapunk.Validate(SecretModel)),
            (
                {"creds": {"user": "mallory", "password": SECRET}, "attempts": 1},
                datapunk.Validate(Login),
            ),
            (
                {"creds": {"user": 5, "password": 987654321}, "attempts": "x"},
                datapunk.Validate(Login),
            ),
        ],
        ids=[
            "wrong-type",
            "field-validator",
            "model-validator-issue3",
            "nested-model-issue3",
            "nested",
        ],
    )
    def test_secret_values_never_leak(self, record, validator):
        """A failing record's secret is in no reason, message, dead letter reason or report."""
        secret = str(record.get("password", record.get("creds", {}).get("password")))
        dead: list[datapunk.DeadLetter] = []
        report = datapunk.Pipeline(validator).run([record], [], dead_letter=dead)
        assert 1 == report.failed
        letter = dead[0].to_dict()
        del letter["record"]  # the original input, kept verbatim for replay
        texts = [
            json.dumps(letter),
            report.to_json(),
            str(report),
            report._repr_html_(),
            repr(dead[0].reasons),
            "".join(str(r) for r in dead[0].reasons),
            dead[0].message,
        ]
        with pytest.raises(datapunk.ValidationError) as info:
            validator(record)
        texts += [str(info.value), json.dumps(info.value.to_dict()), repr(info.value.reasons)]
        with pytest.raises(datapunk.ErrorBudgetExceeded) as budget:
            datapunk.Pipeline(validator).run([record], [], dead_letter=[], max_errors=0)
        texts += [str(budget.value), budget.value.report.to_json(), str(budget.value.report)]
        for text in texts:
            assert secret not in text

    def test_report_json_without_a_dead_letter_sink_hides_secrets(self):
        """With no dead-letter sink, the report's JSON does not reveal a secret input field."""
        record = {"user": "bob", "password": 12345678}
        report = datapunk.Pipeline(datapunk.Validate(SecretModel)).run([record], [])
        assert "12345678" not in report.to_json()

    def test_plain_text_secrets_are_masked_when_a_later_stage_fails_issue3(self):
        """A field a validator declares secret is masked in dead letters of any later stage."""

        def reject(r: Any) -> Any:
            raise ValueError("rejected")

        class Nested(pydantic.BaseModel):
            login: SecretModel

        dead: list[datapunk.DeadLetter] = []
        record = {"login": {"user": "bob", "password": "hunter2"}}
        datapunk.Pipeline(datapunk.Validate(Nested), reject).run([record], [], dead_letter=dead)
        assert {"login": {"user": "bob", "password": "**********"}} == dead[0].to_dict()["record"]
        assert record == dead[0].record  # the in-memory dead letter keeps the original

    def test_a_secret_in_a_trusted_record_is_masked_in_dead_letters(self):
        """A record that is already a model with a SecretStr is masked in to_dict and JSON."""
        login = SecretModel(user="bob", password=SecretStr(SECRET))

        def reject(r: Any) -> Any:
            raise ValueError("rejected")

        dead: list[datapunk.DeadLetter] = []
        datapunk.Pipeline(reject).run([login], [], dead_letter=dead)
        assert {"user": "bob", "password": "**********"} == dead[0].to_dict()["record"]
        assert SECRET not in json.dumps(dead[0].to_dict())

    @pytest.mark.parametrize(
        ("tp", "record", "path"),
        [
            (Aliased, {"pw": 12345678}, ("pw",)),
            (
                Wrapped,
                {"maybe": 12345678, "many": [], "pair": ["a", "b"], "by_key": {}},
                ("maybe",),
            ),
            (Wrapped, {"many": ["ok", 12345678], "pair": ["a", "b"], "by_key": {}}, ("many", 1)),
            (Wrapped, {"many": [], "pair": ["a", 12345678], "by_key": {}}, ("pair", 1)),
            (Wrapped, {"many": [], "pair": ["a", "b"], "by_key": {"k": 12345678}}, ("by_key", "k")),
            (SecretPoint, {"x": 1, "token": 12345678}, ("token",)),
        ],
        ids=["alias", "optional", "list", "tuple", "dict", "dataclass"],
    )
    def test_secrets_inside_containers_are_masked(self, tp, record, path):
        """Secrets behind aliases, Optional, lists, tuples, dicts and dataclasses are masked."""
        with pytest.raises(datapunk.ValidationError) as info:
            datapunk.Validate(tp)(record)
        assert [(path, "**********")] == [
            (r.path, r.value) for r in info.value.reasons if r.path == path
        ]
        assert "12345678" not in str(info.value)

    def test_non_secret_values_are_kept(self):
        """Values of ordinary fields next to secrets are kept, to help debugging."""
        with pytest.raises(datapunk.ValidationError) as info:
            datapunk.Validate(Wrapped)({"many": [], "pair": [5, "b"], "by_key": {}, "plain": [1]})
        assert {("pair", 0): 5, ("plain",): [1]} == {r.path: r.value for r in info.value.reasons}

    def test_a_secret_value_in_a_reason_is_masked(self):
        """A Reason given a SecretStr value keeps only the mask."""
        reason = datapunk.Reason(("password",), "bad", SecretStr(SECRET))
        assert "**********" == reason.value
        assert "password: bad (got **********)" == str(reason)
