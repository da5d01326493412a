"""Pipelines: composition with | and Pipeline(...), nesting, names, identity and rendering."""

from __future__ import annotations

from typing import Any

import pytest

import datapunk

pytestmark = pytest.mark.unit


def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


a = datapunk.Stage(inc, name="a")
b = datapunk.Stage(double, name="b")
c = datapunk.Filter(lambda x: x % 3 != 0, name="c")


class TestComposition:
    def test_pipe_and_constructor_build_the_same_pipeline(self):
        """a | b | c equals Pipeline(a, b, c)."""
        assert datapunk.Pipeline(a, b, c) == a | b | c
        assert hash(datapunk.Pipeline(a, b, c)) == hash(a | b | c)
        assert (a, b, c) == (a | b | c).parts

    def test_composition_runs_in_order(self):
        """Records go through the stages left to right."""
        assert [2, 4, 8] == list((a | b | c).stream([0, 1, 2, 3]))

    def test_a_pipeline_is_a_stage(self):
        """A pipeline can be called and applied like a stage."""
        pipe = a | b
        assert isinstance(pipe, datapunk.Stage)
        assert (4, [4]) == (pipe(1), pipe.apply(1))

    def test_plain_functions_are_map_stages(self):
        """Pipeline(f, g) accepts plain functions; | accepts them on the right."""
        assert [4] == datapunk.Pipeline(inc, double).apply(1)
        assert [4] == (a | double).apply(1)

    def test_unnamed_pipelines_flatten(self):
        """(a | b) | c is flat; an unnamed pipeline on the right flattens too."""
        assert (a, b, c) == ((a | b) | c).parts
        assert (a, b, c) == (a | (b | c)).parts

    def test_named_pipelines_nest(self):
        """A named pipeline stays one part, and runs its stages in place."""
        inner = datapunk.Pipeline(a, b, name="inner")
        outer = inner | c
        assert (inner, c) == outer.parts
        assert (a, b, c) == outer.stages()
        assert [2, 4, 8] == list(outer.stream([0, 1, 2, 3]))
        nested = datapunk.Pipeline(datapunk.Pipeline(inner, name="mid"), c, name="outer")
        assert (a, b, c) == nested.stages()

    def test_length_and_iteration(self):
        """len() and iteration give the top-level parts."""
        pipe = a | b | c
        assert (3, [a, b, c]) == (len(pipe), list(pipe))

    def test_an_empty_pipeline_is_a_configuration_error(self):
        """A pipeline needs at least one stage."""
        with pytest.raises(
            datapunk.ConfigurationError, match="a Pipeline needs at least one stage"
        ):
            datapunk.Pipeline()

    def test_a_non_stage_part_is_a_configuration_error(self):
        """A non-callable part is refused with a ConfigurationError, not a TypeError."""
        with pytest.raises(datapunk.ConfigurationError, match="cannot use int 3 as a stage"):
            datapunk.Pipeline(a, 3)
        with pytest.raises(
            datapunk.ConfigurationError, match="cannot use NoneType None as a stage"
        ):
            a | None  # type: ignore[operator]

    def test_equality_with_other_things(self):
        """A pipeline is not equal to a non-pipeline; different names differ."""
        assert (a | b) != a
        assert datapunk.Pipeline(a, b, name="x") != datapunk.Pipeline(a, b, name="y")


class TestNames:
    def test_default_name_joins_the_stage_names(self):
        """The default name is the parts' names joined by ' | '."""
        assert "a | b | c" == (a | b | c).name

    def test_explicit_name(self):
        """name= names the pipeline."""
        assert "etl" == datapunk.Pipeline(a, b, name="etl").name

    def test_long_default_names_are_cut(self):
        """A default name longer than 80 characters is cut with an ellipsis."""
        stages = [datapunk.Stage(inc, name=f"stage_number_{i}") for i in range(10)]
        name = datapunk.Pipeline(*stages).name
        assert (80, "…") == (len(name), name[-1])

    def test_duplicate_stage_names_are_made_unique_in_reports(self):
        """The same stage used twice is reported as name and name#2."""
        report = datapunk.Pipeline(a, a, a).run([1], [])
        assert ["a", "a#2", "a#3"] == list(report.stages)


class TestKinds:
    @pytest.mark.parametrize(
        ("parts", "kind"),
        [
            ((a, b), "map"),
            ((a, datapunk.Batch(list, size=2)), "map"),
            ((a, c), "filter"),
            ((a, c, datapunk.FlatMap(lambda x: [x])), "flat_map"),
        ],
        ids=["maps", "batch", "filter", "flat_map"],
    )
    def test_a_pipeline_has_the_kind_of_its_widest_part(self, parts, kind):
        """Maps and batches make a map; a filter makes a filter; a flat_map makes a flat_map."""
        assert kind == datapunk.Pipeline(*parts).kind

    def test_options(self):
        """options() lists the kind and the parts' names."""
        assert {"kind": "pipeline", "stages": ["a", "b"]} == (a | b).options()


class TestRendering:
    def test_repr(self):
        """repr shows the name and each part's repr."""
        assert "<Pipeline 'a | b' [<Stage 'a' kind='map'>, <Stage 'b' kind='map'>]>" == repr(a | b)

    def test_describe(self):
        """describe() lists each primitive stage with its kind and options."""
        skip = datapunk.Stage(double, name="b", on_error="skip")
        assert (
            "pipeline 'demo'\n  1. a  map\n  2. b  map  on_error='skip'"
            == datapunk.Pipeline(a, skip, name="demo").describe()
        )

    def test_html(self):
        """The Jupyter repr is a table of the stages, with names escaped."""
        odd = datapunk.Stage(inc, name="<odd>")
        html = datapunk.Pipeline(odd, c, name="p&q")._repr_html_()
        assert html.startswith("<div><strong>Pipeline p&amp;q</strong><table>")
        assert "<td>1</td><td>&lt;odd&gt;</td><td>map</td>" in html
        assert "<td>2</td><td>c</td><td>filter</td>" in html


class TestRunShortcuts:
    def test_run_docstring_example(self):
        """The counts of a small run are what the docs say."""
        double_ = datapunk.Stage(lambda x: x * 2, name="double")
        even = datapunk.Filter(lambda x: x % 4 == 0, name="div4")
        pipe = datapunk.Pipeline(double_, even, name="demo")
        report = pipe.run(range(10), sink=[])
        assert (10, 5, 5, "demo") == (
            report.records_in,
            report.records_out,
            report.filtered,
            report.pipeline,
        )

    def test_stream_accepts_a_source_object(self):
        """stream() takes a Source object as well as an iterable."""

        class Src:
            name = "src"

            def read(self) -> Any:
                yield from [(1, 1), (2, 2)]

        assert [2, 3] == list(datapunk.Pipeline(inc).stream(Src()))
