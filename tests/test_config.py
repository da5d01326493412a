"""datapunk.config: declarative specs, interpolation, secrets and run-option precedence."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest

import datapunk
from datapunk.config import RunOptions, interpolate, load, load_spec, run_options

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

MODULE = """
import datapunk, pydantic

class Row(pydantic.BaseModel):
    record_id: str
    value: float

def double(r):
    return {"record_id": r.record_id, "value": r.value * 2}

def make_tagger(tag, api_key=None):
    def tag_it(r):
        return {**r, "tag": tag, "key": api_key}
    return tag_it

@datapunk.stage(kind="filter")
def positive(r):
    return r["value"] > 0

@datapunk.stage(on_error="skip", timeout=5.0)
def careful(r):
    return r

whole = datapunk.Pipeline(careful, name="whole")
"""


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "cfgmods.py").write_text(MODULE)
    return tmp_path


def write(dir_: Path, text: str, name: str = "p.toml") -> Path:
    p = dir_ / name
    p.write_text(textwrap.dedent(text))
    return p


class TestLoad:
    def test_toml_pipeline_runs(self, spec_dir: Path) -> None:
        """A TOML spec builds the stages in order, with options and policies."""
        p = write(
            spec_dir,
            """
            name = "demo"
            [[stages]]
            validate = "cfgmods:Row"
            [[stages]]
            function = "cfgmods:double"
            retry = 2
            [[stages]]
            function = "cfgmods:positive"
            on_error = "skip"
            [[stages]]
            function = "cfgmods:make_tagger"
            options = { tag = "t1" }
            """,
        )
        pipe, opts = load(p)
        out: list[Any] = []
        report = pipe.run(
            [{"record_id": "a", "value": 1}, {"record_id": "b", "value": -1}, {"value": "x"}], out
        )
        assert out == [{"record_id": "a", "value": 2.0, "tag": "t1", "key": None}]
        assert (report.records_in, report.filtered, report.failed) == (3, 1, 1)
        assert pipe.name == "demo"
        assert opts == RunOptions()

    def test_yaml_pipeline(self, spec_dir: Path) -> None:
        """The same spec in YAML."""
        p = write(
            spec_dir,
            """
            stages:
              - validate: cfgmods:Row
              - function: cfgmods:double
            run:
              max_errors: 5
            """,
            "p.yaml",
        )
        pipe, opts = datapunk.Pipeline.from_config(p)
        assert [s.name for s in pipe.stages()] == ["validate[Row]", "double"]
        assert opts.max_errors == 5

    def test_bundled_example_spec(self) -> None:
        """examples/pipeline.toml loads with the seed models."""
        pipe, opts = load(EXAMPLES / "pipeline.toml")
        assert [s.name for s in pipe.stages()] == ["validate[InputData]", "keep_valid", "process"]
        assert opts.max_errors == 0.5

    def test_batch_stage_and_kind_override(self, spec_dir: Path) -> None:
        """kind and size turn a function into a batch stage."""
        p = write(
            spec_dir,
            """
            [[stages]]
            function = "builtins:list"
            kind = "batch"
            size = 10
            """,
        )
        pipe, _ = load(p)
        (stage,) = pipe.stages()
        assert (stage.kind, stage.size) == ("batch", 10)


class TestStagesFromCode:
    def test_spec_settings_keep_the_stage_own(self, spec_dir: Path) -> None:
        """Settings in the spec are added to a stage's own; what the spec omits is kept."""
        p = write(spec_dir, '[[stages]]\nfunction = "cfgmods:careful"\nretry = 2\nname = "c2"\n')
        pipe, _ = load(p)
        (stage,) = pipe.stages()
        assert (stage.name, stage.on_error, stage.timeout, stage.retry.attempts) == (
            "c2",
            "skip",
            5.0,
            2,
        )
        import cfgmods  # type: ignore[import-not-found]

        assert cfgmods.careful.retry is None  # the original is untouched

    def test_kind_of_a_coded_stage_cannot_change(self, spec_dir: Path) -> None:
        """A spec cannot turn a filter written in code into a map."""
        p = write(spec_dir, '[[stages]]\nfunction = "cfgmods:positive"\nkind = "map"\n')
        with pytest.raises(datapunk.ConfigurationError, match="are set in its code"):
            load(p)

    def test_policies_on_a_pipeline_are_refused(self, spec_dir: Path) -> None:
        """retry= on a whole pipeline is refused with advice."""
        p = write(spec_dir, '[[stages]]\nfunction = "cfgmods:whole"\nretry = 2\n')
        with pytest.raises(datapunk.ConfigurationError, match="is a pipeline"):
            load(p)

    def test_a_pipeline_nests(self, spec_dir: Path) -> None:
        """A pipeline named by import path nests as it is."""
        p = write(spec_dir, '[[stages]]\nfunction = "cfgmods:whole"\n')
        pipe, _ = load(p)
        assert [s.name for s in pipe.stages()] == ["careful"]


class TestErrors:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (
                '[[stages]]\nfunction = "cfgmods:double"\nkind = "mapp"\n',
                "stages[0].kind: 'mapp' is not one of map, filter, flat_map, batch",
            ),
            (
                '[[stages]]\nfunction = "cfgmods:double"\nretries = 3\n',
                "stages[0].retries: unknown key",
            ),
            ("stages = []\n", "stages: List should have at least 1 item"),
            ("name = 'x'\n", "stages: required key is missing"),
            (
                '[[stages]]\nfunction = "a:b"\nvalidate = "c:d"\n',
                "stages[0]: give exactly one of 'function', 'validate' or 'plugin'",
            ),
            (
                '[[stages]]\nfunction = "cfgmods"\n',
                "stages[0].function: 'cfgmods' is not an import path",
            ),
            (
                '[[stages]]\nfunction = "nosuchmod:f"\n',
                "stages[0].function: cannot import module 'nosuchmod'",
            ),
            (
                '[[stages]]\nfunction = "cfgmods:nope"\n',
                "stages[0].function: module 'cfgmods' has no attribute 'nope'",
            ),
            (
                '[[stages]]\nfunction = "cfgmods:double"\non_error = "explode"\n',
                "stages[0].on_error: 'explode' is not one of dead_letter, skip, raise",
            ),
            ('[[stages]]\nplugin = "no-such-plugin"\n', "no plugin named 'no-such-plugin'"),
            (
                '[[stages]]\nfunction = "cfgmods:make_tagger"\noptions = { colour = 1 }\n',
                "cannot build the stage",
            ),
            (
                '[[stages]]\nfunction = "cfgmods:double"\n[run]\nrunner = 3\n',
                "run.runner (from the configuration file): Input should be a valid string",
            ),
            (
                '[source]\nformat = "csv"\n[[stages]]\nfunction = "cfgmods:double"\n',
                "source: give exactly one of 'path' or 'plugin'",
            ),
            ("[[stages]\n", "not valid TOML"),
        ],
    )
    def test_mistakes_name_file_key_and_hint(self, spec_dir: Path, body: str, message: str) -> None:
        """Every mistake is a ConfigurationError naming the file and the key path."""
        p = write(spec_dir, body)
        with pytest.raises(datapunk.ConfigurationError) as info:
            load(p)
        assert str(p) in str(info.value)
        assert message in str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing spec file is a ConfigurationError."""
        with pytest.raises(datapunk.ConfigurationError, match="does not exist"):
            load(tmp_path / "nope.toml")

    def test_unknown_suffix(self, tmp_path: Path) -> None:
        """Only .toml, .yaml and .yml are specs."""
        p = tmp_path / "p.ini"
        p.write_text("")
        with pytest.raises(datapunk.ConfigurationError, match=r"name it \.toml, \.yaml or \.yml"):
            load(p)

    def test_bad_yaml(self, tmp_path: Path) -> None:
        """Invalid YAML is reported with the file."""
        p = write(tmp_path, "stages: [\n", "p.yaml")
        with pytest.raises(datapunk.ConfigurationError, match="not valid YAML"):
            load(p)

    def test_top_level_must_be_a_table(self, tmp_path: Path) -> None:
        """A YAML list at the top level is refused."""
        p = write(tmp_path, "- a\n", "p.yaml")
        with pytest.raises(datapunk.ConfigurationError, match="top level must be a table"):
            load(p)


class TestInterpolation:
    def test_variables_and_defaults(self) -> None:
        """${VAR} reads the environment, ${VAR:-d} falls back, $$ escapes."""
        env = {"HOST": "db", "EMPTY": ""}
        got = interpolate(
            {"a": "${HOST}:${PORT:-5432}", "b": ["$${HOST}"], "c": 3, "d": "${EMPTY:-x}"}, env
        )
        assert got == {"a": "db:5432", "b": ["${HOST}"], "c": 3, "d": ""}

    def test_missing_variable_is_named(self, spec_dir: Path) -> None:
        """A missing variable without default names the variable and the key."""
        p = write(
            spec_dir,
            '[sink]\npath = "${OUT_DIR}/x.jsonl"\n[[stages]]\nfunction = "cfgmods:double"\n',
        )
        with pytest.raises(
            datapunk.ConfigurationError, match=r"sink.path uses \$\{OUT_DIR\}.*OUT_DIR is not set"
        ):
            load(p, env={})

    def test_secret_options_become_secretstr(self, spec_dir: Path) -> None:
        """Secret-looking keys and {secret = ...} values are SecretStr, masked everywhere."""
        p = write(
            spec_dir,
            """
            [[stages]]
            function = "cfgmods:make_tagger"
            options = { tag = { secret = "${TAG}" }, api_key = "${KEY}" }
            """,
        )
        pipe, _ = load(p, env={"TAG": "t0ps3cret", "KEY": "k3y"})
        out: list[Any] = []
        dead: list[Any] = []
        pipe.run([{"a": 1}], out, dead_letter=dead)
        (rec,) = out
        assert isinstance(rec["tag"], pydantic.SecretStr)
        assert rec["key"].get_secret_value() == "k3y"
        assert "k3y" not in repr(pipe)
        assert "k3y" not in repr(rec)


class TestRunOptions:
    def test_precedence_cli_env_file_defaults(self) -> None:
        """CLI flags beat DATAPUNK_* variables, which beat the file, which beats defaults."""
        file = {"runner": "threads", "max_errors": 3, "chunk_size": 10}
        env = {
            "DATAPUNK_MAX_ERRORS": "0.25",
            "DATAPUNK_CHUNK_SIZE": "20",
            "DATAPUNK_PROGRESS": "true",
        }
        got = run_options(file, env=env, cli={"chunk_size": 30, "runner": None})
        assert (got.runner, got.max_errors, got.chunk_size, got.progress, got.on_error) == (
            "threads",
            0.25,
            30,
            True,
            "dead_letter",
        )

    def test_bad_env_value_names_the_variable(self) -> None:
        """An invalid DATAPUNK_* value names the variable."""
        with pytest.raises(datapunk.ConfigurationError, match="DATAPUNK_CHUNK_SIZE"):
            run_options({}, env={"DATAPUNK_CHUNK_SIZE": "many"})
        with pytest.raises(
            datapunk.ConfigurationError, match="DATAPUNK_MAX_ERRORS='lots' is not a number"
        ):
            run_options({}, env={"DATAPUNK_MAX_ERRORS": "lots"})

    def test_from_config_overrides(self, spec_dir: Path) -> None:
        """Pipeline.from_config applies overrides over env over file."""
        p = write(
            spec_dir,
            '[[stages]]\nfunction = "cfgmods:double"\n[run]\nrunner = "threads"\nchunk_size = 5\n',
        )
        _, opts = datapunk.Pipeline.from_config(
            p, env={"DATAPUNK_RUNNER": "serial"}, overrides={"chunk_size": 7}
        )
        assert (opts.runner, opts.chunk_size) == ("serial", 7)

    def test_spec_model_is_public(self) -> None:
        """The spec models report datapunk.config as their module."""
        assert datapunk.config.PipelineSpec.__module__ == "datapunk.config"
        spec = load_spec(EXAMPLES / "pipeline.toml")
        assert spec.name == "flights"


FLAKY = """
calls = {"n": 0}

def flaky(r):
    calls["n"] += 1
    if calls["n"] % 2:
        raise ConnectionError("blip")
    return r
"""


class TestRetryInSpecs:
    def test_retry_on_names_exception_types(self, tmp_path: Path) -> None:
        """retry.on lists exception names; the stage retries them and the run recovers."""
        (tmp_path / "flakymod.py").write_text(FLAKY)
        path = write(
            tmp_path,
            """
            name = "flaky"
            [[stages]]
            function = "flakymod:flaky"
            retry = {attempts = 3, backoff = 0.0, on = ["ConnectionError", "builtins:OSError"]}
            """,
        )
        pipeline, _ = datapunk.Pipeline.from_config(path)
        out: list[int] = []
        report = pipeline.run([1, 2, 3], out)
        assert ([1, 2, 3], 3, 0) == (out, report.retried, report.failed)

    @pytest.mark.parametrize(
        ("retry", "message"),
        [
            ('{attempts = 3, on = ["NoSuchError"]}', "stages[0].retry.on[0]: 'NoSuchError' is not"),
            ('{attempts = 3, on = ["int"]}', "stages[0].retry.on[0]: 'int' is not an exception"),
            ("{attemps = 3}", "stages[0].retry: Retry.__init__() got an unexpected keyword"),
        ],
        ids=["unknown-name", "not-an-exception", "misspelt-option"],
    )
    def test_bad_retry_options_name_the_key(self, tmp_path: Path, retry: str, message: str) -> None:
        """A wrong retry setting is a ConfigurationError naming file, key path and fix."""
        (tmp_path / "flakymod.py").write_text(FLAKY)
        path = write(
            tmp_path, f'name = "x"\n[[stages]]\nfunction = "flakymod:flaky"\nretry = {retry}\n'
        )
        with pytest.raises(datapunk.ConfigurationError) as info:
            datapunk.Pipeline.from_config(path)
        assert message in str(info.value)
        assert str(path) in str(info.value)
