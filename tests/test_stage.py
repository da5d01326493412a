"""Stages: construction, the decorator, helpers, protocol objects and bad input."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

import datapunk
from datapunk._core.stage import as_stage

pytestmark = pytest.mark.unit


def double(x: int) -> int:
    return x * 2


async def adouble(x: int) -> int:
    return x * 2


class TestStage:
    def test_defaults(self):
        """A plain Stage is a sync map named after its function."""
        s = datapunk.Stage(double)
        assert ("double", "map", None, None, False) == (
            s.name,
            s.kind,
            s.on_error,
            s.size,
            s.is_async,
        )
        assert {"kind": "map"} == s.options()
        assert "<Stage 'double' kind='map'>" == repr(s)

    def test_options_and_repr_show_what_is_set(self):
        """options() and repr list the non-default settings."""
        s = datapunk.Stage(adouble, name="twice", on_error="skip")
        assert {"kind": "map", "on_error": "skip", "async": True} == s.options()
        assert "<Stage 'twice' kind='map', on_error='skip', async=True>" == repr(s)

    @pytest.mark.parametrize(
        ("fn", "name"),
        [
            (lambda x: x, "lambda"),
            (functools.partial(double), "double"),
            (str.upper, "upper"),
        ],
        ids=["lambda", "partial", "method"],
    )
    def test_default_names(self, fn, name):
        """Lambdas, partials and methods get readable default names."""
        assert name == datapunk.Stage(fn).name

    def test_a_callable_object_is_named_after_its_type(self):
        """A callable object without __name__ is named after its class."""

        class Scale:
            def __call__(self, x: int) -> int:
                return x * 3

        assert ("Scale", [6]) == (datapunk.Stage(Scale()).name, datapunk.Stage(Scale()).apply(2))

    def test_stages_returns_itself(self):
        """A primitive stage's stages() is just itself."""
        s = datapunk.Stage(double)
        assert (s,) == s.stages()

    def test_calling_a_stage_runs_one_record(self):
        """stage(record) returns the output; apply returns every output."""
        s = datapunk.Stage(double)
        assert (4, [4]) == (s(2), s.apply(2))

    def test_a_map_returning_none_gives_none(self):
        """A map whose result is None returns None (and one output from apply)."""
        s = datapunk.Stage(lambda x: None)
        assert (None, [None]) == (s(1), s.apply(1))

    def test_async_detection(self):
        """Coroutine functions, async generators and async __call__ are async."""

        async def agen(x: int):
            yield x

        class Async:
            async def __call__(self, x: int) -> int:
                return x

        assert [True, True, True, False] == [
            datapunk.Stage(adouble).is_async,
            datapunk.FlatMap(agen).is_async,
            datapunk.Stage(Async()).is_async,
            datapunk.Stage(double).is_async,
        ]


class TestBadInput:
    @pytest.mark.parametrize("fn", [None, 42, "upper"], ids=["none", "int", "str"])
    def test_a_non_callable_is_a_configuration_error(self, fn):
        """A stage needs a callable; the message names what was given."""
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Stage(fn)
        assert f"a stage needs a callable, got {type(fn).__name__} {fn!r:.60}" == str(info.value)
        assert not isinstance(info.value, TypeError)

    def test_an_unknown_kind_is_a_configuration_error(self):
        """kind must be one of the four kinds."""
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Stage(double, kind="nope")  # type: ignore[arg-type]
        assert "kind='nope' is not one of map, filter, flat_map, batch" == str(info.value)
        assert {"option": "kind", "value": "'nope'"} == info.value.details

    @pytest.mark.parametrize(
        "size", [0, -3, 1.5, True, "2"], ids=["zero", "neg", "float", "bool", "str"]
    )
    def test_a_bad_batch_size_is_a_configuration_error(self, size):
        """Batch(size=) must be a positive integer."""
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Batch(double, size=size)
        assert f"batch stage 'double': size must be a positive integer, got {size!r}" == str(
            info.value
        )

    def test_a_batch_without_size_is_a_configuration_error(self):
        """A batch stage says it needs size=."""
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Stage(double, kind="batch")
        assert "batch stage 'double' needs size=, the number of records per call" == str(info.value)

    def test_size_on_a_non_batch_is_a_configuration_error(self):
        """size= is refused on other kinds."""
        with pytest.raises(
            datapunk.ConfigurationError, match="size= is only for batch stages; 'double' is a map"
        ):
            datapunk.Stage(double, size=3)

    @pytest.mark.parametrize("bad", ["ignore", "RAISE", 1], ids=["word", "case", "int"])
    def test_a_bad_on_error_is_a_configuration_error(self, bad):
        """on_error must be one of the three policies, named in the message."""
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Stage(double, on_error=bad)
        assert (
            f"stage 'double': on_error={bad!r} is not one of 'dead_letter', 'skip', 'raise'"
            == str(info.value)
        )

    @pytest.mark.parametrize("name", ["", 5], ids=["empty", "int"])
    def test_a_bad_name_is_a_configuration_error(self, name):
        """A name must be a non-empty string."""
        with pytest.raises(datapunk.ConfigurationError, match="name must be a non-empty string"):
            datapunk.Stage(double, name=name)

    def test_helpers_check_their_function(self):
        """Filter, FlatMap and Batch refuse a non-callable with a ConfigurationError."""
        for make in (
            lambda: datapunk.Filter(3),
            lambda: datapunk.FlatMap(3),
            lambda: datapunk.Batch(3, size=2),
        ):
            with pytest.raises(datapunk.ConfigurationError, match="a stage needs a callable"):
                make()


class TestDecorator:
    def test_bare(self):
        """@datapunk.stage makes a map stage named after the function."""

        @datapunk.stage
        def inc(x: int) -> int:
            return x + 1

        assert (True, "inc", "map", 3) == (
            isinstance(inc, datapunk.Stage),
            inc.name,
            inc.kind,
            inc(2),
        )

    def test_with_options(self):
        """@datapunk.stage(kind=, name=, on_error=) sets them."""

        @datapunk.stage(kind="filter", name="small", on_error="skip")
        def small(x: int) -> bool:
            return x < 3

        assert ("small", "filter", "skip") == (small.name, small.kind, small.on_error)
        assert ([1], []) == (small.apply(1), small.apply(5))

    def test_with_empty_options(self):
        """@datapunk.stage() with no options is a map stage."""

        @datapunk.stage()
        def inc(x: int) -> int:
            return x + 1

        assert ("map", 2) == (inc.kind, inc(1))

    def test_flat_map_and_batch(self):
        """The decorator makes flat_map and batch stages too."""

        @datapunk.stage(kind="flat_map")
        def split(s: str) -> list[str]:
            return s.split()

        @datapunk.stage(kind="batch", size=2)
        def squares(xs: list[int]) -> list[int]:
            return [x * x for x in xs]

        assert (["a", "b"], [9]) == (split.apply("a b"), squares.apply(3))
        assert 2 == squares.size

    def test_a_bad_kind_fails_at_the_decorator_line(self):
        """An unknown kind is refused when the decorator is made, before it is applied."""
        with pytest.raises(
            datapunk.ConfigurationError, match=re.escape("kind='nope' is not one of")
        ):
            datapunk.stage(kind="nope")  # type: ignore[call-overload]

    def test_a_bad_on_error_fails_at_the_decorator_line(self):
        """A bad on_error is refused when the decorator is made."""
        with pytest.raises(
            datapunk.ConfigurationError, match=re.escape("@datapunk.stage: on_error='oops'")
        ):
            datapunk.stage(on_error="oops")  # type: ignore[call-overload]

    def test_bare_with_a_non_callable(self):
        """datapunk.stage(42) is a ConfigurationError, not a TypeError."""
        with pytest.raises(datapunk.ConfigurationError, match="a stage needs a callable"):
            datapunk.stage(42)  # type: ignore[call-overload]


class TestHelpers:
    def test_filter(self):
        """Filter keeps records whose predicate is true."""
        f = datapunk.Filter(lambda x: x > 2, name="gt2")
        assert ("filter", [3], []) == (f.kind, f.apply(3), f.apply(1))

    def test_flat_map(self):
        """FlatMap emits any number of records."""
        f = datapunk.FlatMap(str.split, name="words")
        assert ("flat_map", ["a", "b"]) == (f.kind, f.apply("a b"))

    def test_batch(self):
        """Batch calls its function with a list and returns one result per record."""
        b = datapunk.Batch(lambda xs: [x * x for x in xs], size=64)
        assert ("batch", 64, [9]) == (b.kind, b.size, b.apply(3))
        assert {"kind": "batch", "size": 64} == b.options()

    def test_one_record_failure_raises_stage_error(self):
        """Applying a failing stage raises StageError with the cause."""
        with pytest.raises(datapunk.StageError) as info:
            datapunk.Filter(lambda x: 1 / x, name="inv").apply(0)
        assert isinstance(info.value.__cause__, ZeroDivisionError)


class TestProtocolObjects:
    def test_an_object_with_name_and_kind_is_a_stage(self):
        """Any callable with name and kind meets the Stage protocol and is used as such."""

        class Evens:
            name = "evens"
            kind = "filter"

            def __call__(self, x: int) -> bool:
                return x % 2 == 0

        obj = Evens()
        assert isinstance(obj, datapunk.plugins.Stage)
        s = as_stage(obj)
        assert ("evens", "filter") == (s.name, s.kind)
        assert [0, 2] == list(datapunk.Pipeline(obj).stream(range(4)))

    def test_a_protocol_batch_object_brings_its_size(self):
        """A batch-kind object gives its size and on_error."""

        class Halves:
            name = "halves"
            kind = "batch"
            size = 2
            on_error = "skip"

            def __call__(self, xs: list[int]) -> list[float]:
                return [x / 2 for x in xs]

        s = as_stage(Halves())
        assert ("batch", 2, "skip") == (s.kind, s.size, s.on_error)

    def test_a_protocol_object_with_a_bad_kind(self):
        """A protocol object with an unknown kind is a ConfigurationError."""

        class Odd:
            name = "odd"
            kind = "reduce"

            def __call__(self, x: Any) -> Any:
                return x

        with pytest.raises(datapunk.ConfigurationError, match="kind='reduce' is not one of"):
            datapunk.Pipeline(Odd())

    def test_a_plain_callable_is_a_map_stage(self):
        """A plain function becomes a map stage."""
        s = as_stage(double)
        assert ("double", "map") == (s.name, s.kind)
        assert s is as_stage(s)

    @pytest.mark.parametrize("obj", [None, 3, "x", [double]], ids=["none", "int", "str", "list"])
    def test_a_non_stage_is_a_configuration_error(self, obj):
        """A non-callable cannot be a stage: the message says what to pass."""
        with pytest.raises(datapunk.ConfigurationError) as info:
            as_stage(obj)
        assert str(info.value).startswith(f"cannot use {type(obj).__name__} ")
        assert (
            "pass a function, a datapunk.Stage, or an object with __call__, name and kind"
            in str(info.value)
        )
