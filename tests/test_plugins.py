"""datapunk.plugins: protocols, the entry-point registry, and a real installed plugin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import datapunk
from datapunk.plugins import PluginInfo, Registry, check_plugin

PLUGIN_SRC = Path(__file__).resolve().parent / "plugin_pkg"


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install tests/plugin_pkg (a real distribution with entry points) into a fresh directory."""
    work = tmp_path_factory.mktemp("plugin")
    src = work / "src"
    shutil.copytree(PLUGIN_SRC, src)
    target = work / "site"

    def has_pip() -> bool:
        probe = [sys.executable, "-m", "pip", "--version"]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    uv = shutil.which("uv")
    if not has_pip() and uv is None:  # nox's uv-made environments have no pip
        subprocess.run([sys.executable, "-m", "ensurepip", "-q"], capture_output=True, check=False)
    if has_pip():
        cmd = [sys.executable, "-m", "pip", "install", "-q"]
    elif uv is not None:
        cmd = [uv, "pip", "install", "-q", "--python", sys.executable]
    else:
        pytest.fail("installing the test plugin needs pip, uv or ensurepip in this environment")
    proc = subprocess.run(
        [*cmd, "--no-deps", "--target", str(target), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return target


@pytest.fixture
def installed(plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry that sees the installed test plugin (on sys.path, like site-packages)."""
    monkeypatch.syspath_prepend(str(plugin_path))
    for name in [m for m in sys.modules if m.startswith("datapunk_testplugin")]:
        monkeypatch.delitem(sys.modules, name)
    return Registry()


def env_with(plugin_path: Path) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(plugin_path), path) if p)}


# ----------------------------------------------------------------- protocols
class Shout:
    name = "shout"
    kind = "map"

    def __call__(self, record: str) -> str:
        return record.upper()


class Lines:
    name = "lines"

    def read(self) -> Any:
        yield from enumerate(["a", "b"])


class Collect:
    def __init__(self) -> None:
        self.got: list[Any] = []
        self.closed = False

    def write(self, records: Any) -> None:
        self.got.extend(records)

    def close(self) -> None:
        self.closed = True


class NotEmpty:
    name = "not_empty"

    def validate(self, record: str) -> str:
        if not record:
            raise datapunk.ValidationError(reasons=[datapunk.Reason((), "empty", record)])
        return record


@pytest.mark.unit
class TestProtocols:
    def test_third_party_objects_without_base_classes(self) -> None:
        """A stage, source, sink and validator written without datapunk base classes all work."""
        sink = Collect()
        v = NotEmpty()
        pipe = datapunk.Pipeline(datapunk.Validator(v.validate, name=v.name), Shout())
        report = pipe.run(Lines(), sink)
        assert (sink.got, sink.closed, report.records_out) == (["A", "B"], True, 2)

    @pytest.mark.parametrize(
        ("obj", "kind"),
        [
            (Shout(), "stage"),
            (Lines(), "source"),
            (Collect(), "sink"),
            (NotEmpty(), "validator"),
            (datapunk.runners.Serial(), "runner"),
            (datapunk.Stage(len), "stage"),
        ],
        ids=["stage", "source", "sink", "validator", "runner", "datapunk-stage"],
    )
    def test_kinds_are_inferred(self, obj: Any, kind: str) -> None:
        """The kind comes from the methods an object has."""
        assert kind == check_plugin("p", obj)
        assert isinstance(obj, getattr(datapunk.plugins, kind.capitalize()))

    def test_plain_function_is_not_a_stage_plugin(self) -> None:
        """A bare function lacks the Stage protocol's name and kind: wrap it in datapunk.stage."""
        with pytest.raises(datapunk.ConfigurationError, match="Stage protocol: missing name, kind"):
            check_plugin("fn", len)

    def test_missing_method_is_named(self) -> None:
        """A sink without close() is refused, naming plugin and method."""

        class Half:
            def write(self, records: Any) -> None:
                pass

        with pytest.raises(
            datapunk.ConfigurationError, match=r"plugin 'half'.*Sink protocol: missing close"
        ):
            check_plugin("half", Half())

    def test_stage_class_needs_call(self) -> None:
        """A stage plugin given as a class must define __call__ (being a class is not enough)."""

        class NoCall:
            datapunk_kind = "stage"
            kind = "map"

        assert check_plugin("shout", Shout) == "stage"
        with pytest.raises(datapunk.ConfigurationError, match="missing __call__"):
            check_plugin("nocall", NoCall)

    def test_declared_kind_is_checked(self) -> None:
        """datapunk_kind declares the kind; its protocol is enforced."""

        class Store:
            datapunk_kind = "checkpoint"

            def load(self, key: str) -> None:
                return None

        with pytest.raises(datapunk.ConfigurationError, match="missing save, clear"):
            check_plugin("store", Store())

    def test_unknown_declared_kind(self) -> None:
        """A datapunk_kind that is not a kind is refused."""

        class Odd:
            datapunk_kind = "teleporter"

        with pytest.raises(datapunk.ConfigurationError, match="'teleporter', which is not one of"):
            check_plugin("odd", Odd())

    def test_object_meeting_no_protocol(self) -> None:
        """An object with none of the protocols' methods is refused."""
        with pytest.raises(datapunk.ConfigurationError, match="meets no datapunk protocol"):
            check_plugin("nothing", object())

    def test_hook_needs_an_event(self) -> None:
        """A declared hook needs at least one on_* method."""

        class Hook:
            datapunk_kind = "hook"

        with pytest.raises(datapunk.ConfigurationError, match="missing on_run_start or"):
            check_plugin("hook", Hook())


@pytest.mark.unit
class TestRegistry:
    def test_discovery_is_lazy(self) -> None:
        """Importing datapunk.plugins reads no entry points."""
        code = "import datapunk.plugins as p; print(p.registry._infos is None)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "True"

    def test_register_and_load(self) -> None:
        """register() checks the protocol; load() returns the object; names are unique."""
        reg = Registry(group="datapunk.tests.none")
        info = reg.register("shout", Shout())
        assert (info.kind, info.ok) == ("stage", True)
        assert isinstance(reg.load("shout", "stage"), Shout)
        with pytest.raises(datapunk.ConfigurationError, match="already registered"):
            reg.register("shout", Shout())
        with pytest.raises(datapunk.ConfigurationError, match="is a stage, not a source"):
            reg.load("shout", "source")
        reg.unregister("shout")
        with pytest.raises(datapunk.ConfigurationError, match="no plugin named 'shout'"):
            reg.load("shout")

    def test_register_refuses_bad_plugin(self) -> None:
        """register() refuses an object that does not meet its protocol."""
        reg = Registry(group="datapunk.tests.none")
        with pytest.raises(datapunk.ConfigurationError, match="missing close"):
            reg.register("half", type("Half", (), {"write": lambda self, r: None})())


@pytest.mark.integration
@pytest.mark.slow
class TestInstalledPlugin:
    def test_lists_name_kind_version_distribution(self, installed: Registry) -> None:
        """The installed distribution's plugins are listed with kind, version and distribution."""
        ok = {i.name: i for i in installed.plugins() if i.ok}
        assert ok["upper"] == PluginInfo(
            "upper", "stage", "datapunk_testplugin:Upper", "datapunk-testplugin", "1.2.3"
        )
        assert ok["countdown"].kind == "source"

    def test_broken_plugins_are_reported_not_fatal(self, installed: Registry) -> None:
        """A plugin that fails to import, or misses a method, is reported; the others work."""
        infos = {i.name: i for i in installed.plugins()}
        assert (
            "failed to import: RuntimeError: this plugin is broken on purpose"
            == infos["broken"].error
        )
        assert infos["half-sink"].error is not None
        assert "missing close" in infos["half-sink"].error
        with pytest.raises(
            datapunk.ConfigurationError,
            match="plugin 'broken' from datapunk-testplugin is unusable",
        ):
            installed.load("broken")
        assert installed.names() == ["countdown", "upper"]

    def test_used_from_a_toml_spec(
        self, installed: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A spec names a plugin stage and a plugin source; options reach the plugin."""
        monkeypatch.setattr(datapunk.plugins, "registry", installed)
        spec = tmp_path / "p.toml"
        spec.write_text(
            '[source]\nplugin = "countdown"\nstart = 2\n\n'
            '[[stages]]\nfunction = "json:dumps"\n\n'
            '[[stages]]\nfunction = "json:loads"\n\n'
            '[[stages]]\nplugin = "upper"\noptions = { field = "n" }\n'
        )
        pipe, opts = datapunk.Pipeline.from_config(spec)
        out: list[Any] = []
        pipe.run(opts.source, out)
        assert out == [{"n": "2"}, {"n": "1"}]
        assert [s.name for s in pipe.stages()][-1] == "upper[n]"

    @pytest.mark.e2e
    def test_datapunk_plugins_command(self, plugin_path: Path) -> None:
        """`python -m datapunk plugins` lists the installed plugins, broken ones marked."""
        proc = subprocess.run(
            [sys.executable, "-m", "datapunk", "plugins"],
            capture_output=True,
            text=True,
            env=env_with(plugin_path),
            check=False,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
        assert lines["upper"].split()[:4] == ["upper", "stage", "datapunk-testplugin", "1.2.3"]
        assert "BROKEN: failed to import" in lines["broken"]
        proc = subprocess.run(
            [sys.executable, "-m", "datapunk", "plugins", "--json"],
            capture_output=True,
            text=True,
            env=env_with(plugin_path),
            check=True,
            timeout=60,
        )
        data = {p["name"]: p for p in json.loads(proc.stdout)}
        assert (data["countdown"]["kind"], data["countdown"]["ok"]) == ("source", True)

    @pytest.mark.e2e
    def test_process_with_a_plugin_stage(self, plugin_path: Path, tmp_path: Path) -> None:
        """`datapunk process` runs a spec whose stage is an installed plugin."""
        data = tmp_path / "in.jsonl"
        data.write_text('{"record_id": "a1"}\n{"record_id": "b2"}\n')
        spec = tmp_path / "p.toml"
        spec.write_text('[[stages]]\nplugin = "upper"\n')
        out = tmp_path / "out.jsonl"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "datapunk",
                "process",
                str(data),
                "-c",
                str(spec),
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            env=env_with(plugin_path),
            check=False,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert out.read_text() == '{"record_id":"A1"}\n{"record_id":"B2"}\n'
