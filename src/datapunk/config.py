"""
Declarative pipelines: a TOML or YAML file describes source, stages and sinks.

::

    # pipeline.toml
    name = "flights"

    [source]
    path = "data/flights.csv"
    null_values = ["", "NA"]          # any option of datapunk.io.read

    [sink]
    path = "clean.jsonl"

    [dead_letter]
    path = "rejects.jsonl"

    [run]
    max_errors = 0.2                  # runner, chunk_size, on_error, progress...

    [[stages]]
    validate = "myproject.models:Flight"   # a model, dataclass or TypedDict

    [[stages]]
    function = "myproject.stages:enrich"   # a function or a datapunk.Stage
    retry = 3

    [[stages]]
    plugin = "geo-lookup"                  # an installed plugin
    options = { api_key = "${GEO_API_KEY}" }

Load it with :meth:`datapunk.Pipeline.from_config` (or :func:`load`)::

    pipeline, options = datapunk.Pipeline.from_config("pipeline.toml")
    report = pipeline.run(options.source, options.sink, **options.run_kwargs())

Strings may use ``${VAR}`` and ``${VAR:-default}`` (``$$`` is a literal
``$``). Option values under a secret-looking key (``password``, ``token``,
``api_key``, ``secret``, ``dsn``, ``credentials``) or written as
``{ secret = "..." }`` become :class:`pydantic.SecretStr`: they never appear
in logs, reports, reprs, errors or dead letters.

Run options come, in order of precedence, from the command line, the
environment (``DATAPUNK_RUNNER``, ``DATAPUNK_MAX_ERRORS``,
``DATAPUNK_CHUNK_SIZE``, ``DATAPUNK_ON_ERROR``, ``DATAPUNK_PROGRESS``,
``DATAPUNK_ERROR_SAMPLE_SIZE``), the file's ``[run]`` table, and defaults.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from datapunk._core.errors import ConfigurationError
from datapunk._core.types import safe_str

if TYPE_CHECKING:
    from datapunk._core.pipeline import Pipeline

__all__ = [
    "ENV_PREFIX",
    "SECRET_KEYS",
    "EndpointSpec",
    "Loaded",
    "PipelineSpec",
    "RunOptions",
    "StageSpec",
    "build",
    "interpolate",
    "load",
    "load_spec",
    "open_endpoint",
    "run_options",
]

ENV_PREFIX = "DATAPUNK_"
"""Environment variables overriding run options start with this."""

SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_?key|dsn|credential)", re.IGNORECASE)
"""Option keys whose values are treated as secrets."""

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# --------------------------------------------------------------------- models
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunOptions(_Model):
    """
    How to run: the ``[run]`` table, environment overrides and CLI flags merged.

    Attributes:
        runner: Runner name (``serial``, ``threads``...).
        max_errors: Error budget: a count, or a rate between 0 and 1.
        chunk_size: Records read and processed together.
        on_error: Policy for stages that set none.
        progress: Show a progress bar.
        error_sample_size: Errors kept in the report.
        source: The source path or object, if any.
        sink: The sink path or object, if any.
        dead_letter: The dead-letter path or object, if any.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    runner: str = "serial"
    max_errors: int | float | None = None
    chunk_size: int | None = Field(default=None, ge=1)
    on_error: Literal["dead_letter", "skip", "raise"] = "dead_letter"
    progress: bool = False
    error_sample_size: int = Field(default=100, ge=0)
    source: Any = None
    sink: Any = None
    dead_letter: Any = None

    def run_kwargs(self) -> dict[str, Any]:
        """
        Return the keyword arguments for :meth:`datapunk.Pipeline.run`.

        Returns:
            ``dead_letter``, ``runner``, ``max_errors``, ``chunk_size``,
            ``on_error``, ``progress`` and ``error_sample_size``.
        """
        return {
            "dead_letter": self.dead_letter,
            "runner": self.runner,
            "max_errors": self.max_errors,
            "chunk_size": self.chunk_size,
            "on_error": self.on_error,
            "progress": self.progress,
            "error_sample_size": self.error_sample_size,
        }


class EndpointSpec(_Model):
    """
    A source, sink or dead-letter sink: a file path or a plugin, with options.

    Keys other than ``path``, ``format``, ``plugin`` and ``options`` are
    options too (``null_values``, ``delimiter``...).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    path: str | None = None
    format: str | None = None
    plugin: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> EndpointSpec:
        if (self.path is None) == (self.plugin is None):
            raise ValueError("give exactly one of 'path' or 'plugin'")
        return self

    def all_options(self) -> dict[str, Any]:
        """Return ``options`` merged with the extra keys, secrets wrapped."""
        extra = dict(self.model_extra or {})
        return _secrets({**extra, **self.options})


class StageSpec(_Model):
    """
    One entry of ``[[stages]]``: exactly one of ``function``, ``validate``, ``plugin``.

    ``function`` and ``validate`` are import paths (``"package.module:name"``).
    With ``options``, the imported object (or plugin) is called with them and
    must return the stage; without, it is the stage (or the class to
    instantiate, for a plugin class).
    """

    function: str | None = None
    validate_: str | None = Field(default=None, alias="validate")
    plugin: str | None = None
    name: str | None = None
    kind: Literal["map", "filter", "flat_map", "batch"] | None = None
    on_error: Literal["dead_letter", "skip", "raise"] | None = None
    size: int | None = Field(default=None, ge=1)
    retry: int | dict[str, Any] | None = None
    timeout: float | None = Field(default=None, gt=0)
    breaker: dict[str, Any] | None = None
    optional: bool = False
    warn: bool = False
    strict: bool | None = None
    options: dict[str, Any] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_target(self) -> StageSpec:
        given = [k for k in ("function", "validate_", "plugin") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'function', 'validate' or 'plugin'")
        if self.validate_ is None and (self.warn or self.strict is not None):
            raise ValueError("'warn' and 'strict' apply to 'validate' stages only")
        return self

    @property
    def target(self) -> str:
        """What the stage is built from, for messages (``function 'm:f'``)."""
        if self.function is not None:
            return f"function {self.function!r}"
        if self.validate_ is not None:
            return f"validate {self.validate_!r}"
        return f"plugin {self.plugin!r}"


class PipelineSpec(_Model):
    """
    A whole declarative pipeline, as read from TOML or YAML.

    Attributes:
        name: The pipeline's name in reports and logs.
        source: Where records come from (a path, or a table).
        sink: Where outputs go.
        dead_letter: Where failed records go.
        stages: The stages, in order.
        run: Run options (see :class:`RunOptions`).
    """

    name: str | None = None
    source: str | EndpointSpec | None = None
    sink: str | EndpointSpec | None = None
    dead_letter: str | EndpointSpec | None = None
    stages: list[StageSpec] = Field(min_length=1)
    run: dict[str, Any] = Field(default_factory=dict)


class Loaded(NamedTuple):
    """
    What :func:`load` returns: ``(pipeline, options)``.

    ``pipeline`` is the ready :class:`datapunk.Pipeline`; ``options`` the merged
    :class:`RunOptions` (with source and sinks).
    """

    pipeline: Pipeline[Any, Any]
    """The ready pipeline."""
    options: RunOptions
    """How to run it."""


# -------------------------------------------------------------- interpolation
def interpolate(value: Any, env: Mapping[str, str] | None = None, *, where: str = "") -> Any:
    """
    Replace ``${VAR}`` and ``${VAR:-default}`` in every string of *value*.

    Args:
        value: Parsed configuration data (dicts, lists, strings...).
        env: The variables (default: ``os.environ``).
        where: Key path of *value*, for messages.

    Returns:
        The data with variables substituted (``$$`` becomes ``$``).

    Raises:
        ConfigurationError: If a variable without default is not set.

    Example:
        >>> interpolate({"url": "https://${HOST:-localhost}/x"}, {})
        {'url': 'https://localhost/x'}
    """
    environ = os.environ if env is None else env
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            var, default = m.group(1), m.group(2)
            found = environ.get(var)
            if found is None:
                if default is None:
                    raise ConfigurationError(
                        f"{where or 'the configuration'} uses ${{{var}}}, but the environment "
                        f"variable {var} is not set: set it, or write ${{{var}:-default}}",
                        details={"variable": var, "key": where},
                    )
                return default
            return found

        return _VAR.sub(sub, value)
    if isinstance(value, Mapping):
        return {
            k: interpolate(v, environ, where=f"{where}.{k}" if where else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, environ, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping) and set(value) == {"secret"}:
            out[key] = SecretStr(str(value["secret"]))
        elif isinstance(value, str) and SECRET_KEYS.search(str(key)):
            out[key] = SecretStr(value)
        elif isinstance(value, Mapping):
            out[key] = _secrets(value)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------- loading
def _parse_file(path: Path) -> Any:
    where = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(
            f"configuration file {where!r} does not exist: check the path",
            details={"path": where},
        ) from None
    except IsADirectoryError:
        raise ConfigurationError(
            f"configuration {where!r} is a directory: give a .toml or .yaml file",
            details={"path": where},
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read configuration file {where!r}: {exc.strerror or exc}",
            details={"path": where},
        ) from exc
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(data.decode("utf-8-sig"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"{where}: not valid TOML: {exc}", details={"path": where}
            ) from None
    if suffix in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError:
            raise ConfigurationError(
                f"{where}: reading YAML needs PyYAML: pip install datapunk[yaml] "
                "(or write the pipeline in TOML)",
                details={"path": where, "extra": "yaml"},
            ) from None
        try:
            return yaml.safe_load(data.decode("utf-8-sig"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"{where}: not valid YAML: {exc}", details={"path": where}
            ) from None
    raise ConfigurationError(
        f"cannot tell the format of configuration {where!r}: name it .toml, .yaml or .yml",
        details={"path": where},
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"str", "EndpointSpec", "function-after[_one_target(), EndpointSpec]"}:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"{safe_str(value, 60)!r} is not one of {expected.replace(' or ', ', ')}"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the configuration guide for the keys)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def _format_errors(where: str, exc: pydantic.ValidationError) -> str:
    seen: set[str] = set()
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and ("[" in p or p in {"str", "EndpointSpec"}))
        )
        line = f"{_loc(loc) or '(top level)'}: {_describe(err)}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    head = lines[0] if len(lines) == 1 else f"{len(lines)} problems: " + "; ".join(lines)
    return f"{where}: {head}"


def load_spec(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> PipelineSpec:
    """
    Read, interpolate and validate a pipeline file.

    Args:
        path: A ``.toml``, ``.yaml`` or ``.yml`` file.
        env: Variables for ``${VAR}`` (default: ``os.environ``).

    Returns:
        The validated :class:`PipelineSpec`.

    Raises:
        ConfigurationError: Naming the file, the key path and the problem.
    """
    p = Path(path)
    data = _parse_file(p)
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{p}: the top level must be a table of keys (source, stages, ...)",
            details={"path": str(p)},
        )
    try:
        data = interpolate(data, env)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{p}: {exc.message}", details=exc.details) from None
    try:
        return PipelineSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigurationError(_format_errors(str(p), exc), details={"path": str(p)}) from None


def _import(target: str, where: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"{where}: {target!r} is not an import path; write 'package.module:name'",
            details={"key": where},
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"{where}: cannot import module {module_name!r} ({exc}); check the name and that "
            "it is installed or on PYTHONPATH (paths relative to the config file work too)",
            details={"key": where},
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"{where}: module {module_name!r} has no attribute {attr!r}",
                details={"key": where},
            ) from None
    return obj


def _exception_type(name: Any, where: str) -> type[BaseException]:
    """Resolve ``"ConnectionError"`` (a built-in) or ``"pkg.mod:Error"`` to a class."""
    import builtins

    if isinstance(name, str):
        found = _import(name, where) if ":" in name else getattr(builtins, name, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
    raise ConfigurationError(
        f"{where}: {name!r} is not an exception type; write a built-in name such as "
        "'ConnectionError' or an import path such as 'httpx:TransportError'",
        details={"key": where},
    )


def _stage_policies(spec: StageSpec, where: str = "stage") -> dict[str, Any]:
    from datapunk._core.policies import CircuitBreaker, Retry

    out: dict[str, Any] = {}
    if isinstance(spec.retry, dict):
        options = dict(spec.retry)
        if "on" in options:
            on = options["on"]
            names = on if isinstance(on, list) else [on]
            options["on"] = tuple(
                _exception_type(n, f"{where}.retry.on[{i}]") for i, n in enumerate(names)
            )
        out["retry"] = _build(Retry, options, f"{where}.retry")
    elif spec.retry is not None:
        out["retry"] = spec.retry
    if spec.timeout is not None:
        out["timeout"] = spec.timeout
    if spec.breaker is not None:
        out["breaker"] = _build(CircuitBreaker, spec.breaker, f"{where}.breaker")
    if spec.optional:
        out["optional"] = True
    return out


def _build(cls: Any, options: dict[str, Any], where: str) -> Any:
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"{where}: {exc}", details={"key": where}) from None


def _adjust_stage(
    stage: Any, spec: StageSpec, settings: dict[str, Any], policies: dict[str, Any]
) -> Any:
    """Apply a spec's settings to a stage built in code, keeping what it does not set."""
    import copy

    import datapunk

    if (spec.kind and spec.kind != stage.kind) or (spec.size and spec.size != stage.size):
        raise ConfigurationError(
            f"the kind and size of stage {stage.name!r} are set in its code; "
            "remove 'kind' and 'size' from the configuration",
            details={"stage": stage.name},
        )
    if not (settings or policies):
        return stage
    if isinstance(stage, datapunk.Pipeline):
        raise ConfigurationError(
            f"{stage.name!r} is a pipeline: set name, on_error, retry, timeout, breaker "
            "and optional on its stages, not on the whole pipeline",
            details={"stage": stage.name},
        )
    new = copy.copy(stage)
    new.name = settings.get("name", stage.name)
    new.on_error = settings.get("on_error", stage.on_error)
    new._set_policies(
        policies.get("retry", stage.retry),
        policies.get("timeout", stage.timeout),
        policies.get("breaker", stage.breaker),
        policies.get("optional", stage.optional),
    )
    return new


def _build_stage(spec: StageSpec, where: str) -> Any:
    import datapunk
    from datapunk.plugins import registry

    settings: dict[str, Any] = {
        k: v
        for k, v in (
            ("name", spec.name),
            ("on_error", spec.on_error),
        )
        if v is not None
    }
    try:
        if spec.validate_ is not None:
            model = _import(spec.validate_, f"{where}.validate")
            return datapunk.Validate(
                model,
                name=spec.name,
                warn=spec.warn,
                on_error=spec.on_error,
                strict=spec.strict,
            )
        if spec.function is not None:
            obj = _import(spec.function, f"{where}.function")
        else:
            assert spec.plugin is not None
            obj = registry.load(spec.plugin)
            if isinstance(obj, type) and spec.options is None:
                obj = obj()
        if spec.options is not None:
            obj = obj(**_secrets(spec.options))
        policies = _stage_policies(spec, where)
        if isinstance(obj, datapunk.Stage):
            return _adjust_stage(obj, spec, settings, policies)
        kind: Any = spec.kind or getattr(obj, "kind", "map")
        fn = obj
        size = spec.size if spec.size is not None else getattr(obj, "size", None)
        if isinstance(getattr(obj, "name", None), str):
            settings.setdefault("name", obj.name)
        return datapunk.Stage(
            fn, kind=kind, size=size if kind == "batch" else None, **settings, **policies
        )
    except ConfigurationError as exc:
        if exc.message.startswith(where):
            raise
        raise ConfigurationError(
            f"{where} ({spec.target}): {exc.message}", details=exc.details
        ) from None
    except TypeError as exc:
        raise ConfigurationError(
            f"{where} ({spec.target}): cannot build the stage: {safe_str(exc)}",
            details={"key": where},
        ) from None


def _endpoint(spec: str | EndpointSpec | None, role: str) -> Any:
    if spec is None:
        return None
    if isinstance(spec, str):
        return spec
    if spec.plugin is not None:
        from datapunk.plugins import registry

        kind = "source" if role == "source" else "sink"
        factory = registry.load(spec.plugin, kind)
        options = spec.all_options()
        return factory(**options) if isinstance(factory, type) or options else factory
    assert spec.path is not None
    return _FileEndpoint(spec.path, spec.format, spec.all_options(), role)


class _FileEndpoint:
    """A file path with reader/writer options, opened when the run starts."""

    def __init__(self, path: str, fmt: str | None, options: dict[str, Any], role: str) -> None:
        self.path = path
        self.format = fmt
        self.options = options
        self.role = role

    def open(self, path: str | None = None) -> Any:
        from datapunk import io

        target = path or self.path
        opts = dict(self.options)
        if self.role == "source":
            return io.read(target, format=self.format, **opts)
        return io.write(target, format=self.format, **opts)

    def __repr__(self) -> str:
        return f"{self.path}"


def _env_run_options(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in (
        "runner",
        "max_errors",
        "chunk_size",
        "on_error",
        "progress",
        "error_sample_size",
    ):
        value = env.get(ENV_PREFIX + field.upper())
        if value is None or value == "":
            continue
        out[field] = _coerce(field, value)
    return out


def _coerce(field: str, value: str) -> Any:
    if field == "max_errors":
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                raise ConfigurationError(
                    f"{ENV_PREFIX}MAX_ERRORS={value!r} is not a number: give a count "
                    "(e.g. 10) or a rate (e.g. 0.05)",
                    details={"variable": f"{ENV_PREFIX}MAX_ERRORS"},
                ) from None
    return value


def run_options(
    file_values: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
    where: str = "run options",
) -> RunOptions:
    """
    Merge run options: CLI flags over ``DATAPUNK_*`` variables over the file over defaults.

    Args:
        file_values: The file's ``[run]`` table (plus source/sink keys).
        env: The environment (default: ``os.environ``).
        cli: Values given on the command line (``None`` values are ignored).
        where: Names the origin in messages.

    Returns:
        The merged :class:`RunOptions`.

    Raises:
        ConfigurationError: If a value is invalid (naming where it came from).
    """
    environ = os.environ if env is None else env
    layers = [
        ("the configuration file", dict(file_values or {})),
        ("the environment", _env_run_options(environ)),
        ("the command line", {k: v for k, v in (cli or {}).items() if v is not None}),
    ]
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, layer in layers:
        for key, value in layer.items():
            merged[key] = value
            origin[key] = name
    try:
        return RunOptions.model_validate(merged)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        source = origin.get(key, where)
        shown = f"{ENV_PREFIX}{key.upper()}" if source == "the environment" else f"run.{key}"
        raise ConfigurationError(
            f"{where}: {shown} (from {source}): {_describe(err)}",
            details={"key": key, "origin": source},
        ) from None


def build(
    spec: PipelineSpec,
    *,
    base: str | os.PathLike[str] = ".",
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    where: str = "configuration",
) -> Loaded:
    """
    Build the pipeline a spec describes, and merge its run options.

    Args:
        spec: A validated spec.
        base: Directory of the spec file: on ``sys.path`` while the stages
            are imported, so modules next to the spec import.
        env: The environment for ``DATAPUNK_*`` overrides.
        overrides: Command-line values (highest precedence): run options and
            ``source``, ``sink``, ``dead_letter``.
        where: Names the spec in messages.

    Returns:
        The pipeline and its :class:`RunOptions`.

    Raises:
        ConfigurationError: If a stage cannot be built or an option is invalid.
    """
    import datapunk

    base_dir = str(Path(base).resolve())
    added = base_dir not in sys.path
    if added:  # only while the stages are imported: a library leaves sys.path alone
        sys.path.insert(0, base_dir)
    try:
        stages = [_build_stage(s, f"{where}: stages[{i}]") for i, s in enumerate(spec.stages)]
    finally:
        if added:
            sys.path.remove(base_dir)
    pipeline: Pipeline[Any, Any] = datapunk.Pipeline(*stages, name=spec.name)
    file_values = dict(spec.run)
    for role in ("source", "sink", "dead_letter"):
        file_values[role] = _endpoint(getattr(spec, role), role)
    options = run_options(file_values, env=env, cli=overrides, where=where)
    return Loaded(pipeline, options)


def load(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Loaded:
    """
    Load a TOML or YAML pipeline file: the pipeline, ready, and its run options.

    Args:
        path: The file.
        env: The environment for ``${VAR}`` and ``DATAPUNK_*`` (default: ``os.environ``).
        overrides: Command-line values (highest precedence).

    Returns:
        ``(pipeline, options)`` as a :class:`Loaded` named tuple.

    Raises:
        ConfigurationError: Naming the file, the key path and the problem.

    .. versionadded:: 0.1.0
    """
    spec = load_spec(path, env)
    return build(spec, base=Path(path).parent, env=env, overrides=overrides, where=str(path))


def open_endpoint(value: Any, role: str, path: str | os.PathLike[str] | None = None) -> Any:
    """
    Turn a source/sink run option into what :meth:`datapunk.Pipeline.run` takes.

    A file endpoint from a spec is opened with its options
    (:func:`datapunk.io.read` / :func:`datapunk.io.write`); with *path* (a
    command-line override) the spec's options still apply when the format is
    the same. Other values are returned as they are.

    Args:
        value: A path, a file endpoint from a spec, an object, or ``None``.
        role: ``"source"``, ``"sink"`` or ``"dead_letter"``.
        path: A path that replaces the spec's.

    Returns:
        A source or sink object, a path, or ``None``.
    """
    from datapunk import io

    if path is not None:
        if isinstance(value, _FileEndpoint) and (
            io.detect_format(path) == (value.format or io.detect_format(value.path))
        ):
            return value.open(os.fspath(path))
        return io.read(path) if role == "source" else io.write(path)
    if isinstance(value, _FileEndpoint):
        return value.open()
    if isinstance(value, str) and value:
        return io.read(value) if role == "source" else io.write(value)
    return value


for _cls in (EndpointSpec, Loaded, PipelineSpec, RunOptions, StageSpec):
    _cls.__module__ = "datapunk.config"
del _cls
