"""
Extension points: every one is a :class:`typing.Protocol`.

Any object with the right methods works; no base class is required. These
protocols are what :meth:`datapunk.Pipeline.run` and friends accept.

- :class:`Stage`: one step (``__call__``, ``name``, ``kind``).
- :class:`Validator`: a check (``validate``, ``name``).
- :class:`Source`: records with positions (``read``, ``name``).
- :class:`Sink`: where records go (``write``, ``close``; optionally ``abort``).
- :class:`Runner`: where chunks are processed (``run``).
- :class:`Hook`: receives run, chunk and error events (any subset of methods).
- :class:`CheckpointStore`: remembers how far a run got.
- :class:`ResumableSink`: a sink a checkpointed run resumes exactly
  (``flush``, ``resume``, ``suspend``).
- :class:`PartitionedSink`: a sink whose output is written in parts on
  other machines and assembled atomically (``part``, ``commit_parts``), each
  part a :class:`SinkPart` (``write``, ``commit``, ``abort``).

Third-party packages register implementations under the entry-point group
``datapunk.plugins``; :data:`registry` finds them on first use (never at
import) and checks each against its protocol::

    # pyproject.toml of a plugin distribution
    [project.entry-points."datapunk.plugins"]
    upper = "datapunk_upper:Upper"

    >>> import datapunk
    >>> [p.name for p in datapunk.plugins.registry.plugins()]  # doctest: +SKIP
    ['upper']

A plugin's kind (``stage``, ``validator``, ``source``, ``sink``, ``runner``,
``hook``, ``checkpoint``) is its ``datapunk_kind`` attribute, or is inferred
from its methods.
"""

from __future__ import annotations

import threading
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    Protocol,
    TypeAlias,
    TypeVar,
    cast,
    runtime_checkable,
)

import attrs

from datapunk._core.errors import ConfigurationError
from datapunk._core.types import safe_str

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from datapunk._core.report import RunReport
    from datapunk._core.run import Job
    from datapunk._core.types import DeadLetter, Kind, Position

__all__ = [
    "ENTRY_POINT_GROUP",
    "CheckpointStore",
    "Hook",
    "PartitionedSink",
    "PluginInfo",
    "PluginKind",
    "Registry",
    "ResumableSink",
    "Runner",
    "Sink",
    "SinkPart",
    "Source",
    "Stage",
    "Validator",
    "check_plugin",
    "registry",
]

T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)


@runtime_checkable
class Stage(Protocol[In_contra, Out_co]):
    """
    **Protocol**: one step of a pipeline.

    ``kind`` says how ``__call__`` is used: ``"map"`` (record → record),
    ``"filter"`` (record → bool), ``"flat_map"`` (record → iterable) or
    ``"batch"`` (list → list of the same length; give the object a ``size``).
    ``__call__`` may be ``async``.

    Example:
        >>> import datapunk
        >>> class AddOne:
        ...     name = "add_one"
        ...     kind = "map"
        ...     def __call__(self, record: int) -> int:
        ...         return record + 1
        >>> datapunk.Pipeline(AddOne()).apply(1)
        [2]
    """

    @property
    def name(self) -> str:
        """Name in reports and dead letters."""
        ...

    @property
    def kind(self) -> Kind:
        """``"map"``, ``"filter"``, ``"flat_map"`` or ``"batch"``."""
        ...

    def __call__(self, record: In_contra, /) -> Out_co:
        """Process one record (or one list, for ``batch``)."""
        ...


@runtime_checkable
class Validator(Protocol[In_contra, Out_co]):
    """
    **Protocol**: a check returning the trusted record or raising an error.

    ``validate`` raises :class:`datapunk.ValidationError` for a bad record.

    Wrap one with ``datapunk.Validator(obj.validate, name=obj.name)`` to use it
    as a stage and combine it with ``&``.

    Example:
        >>> import datapunk
        >>> class NotEmpty:
        ...     name = "not_empty"
        ...     def validate(self, record: str) -> str:
        ...         if not record:
        ...             raise datapunk.ValidationError(
        ...                 reasons=[datapunk.Reason((), "must not be empty", record)])
        ...         return record
        >>> v = NotEmpty()
        >>> datapunk.Validator(v.validate, name=v.name).apply("x")
        ['x']
    """

    @property
    def name(self) -> str:
        """Name in reports and dead letters."""
        ...

    def validate(self, record: In_contra, /) -> Out_co:
        """Return the trusted record or raise :class:`datapunk.ValidationError`."""
        ...


@runtime_checkable
class Source(Protocol[T_co]):
    """
    **Protocol**: records with their positions.

    ``read()`` yields ``(position, record)`` pairs. For input it cannot decode,
    it yields ``(position, datapunk.Malformed(raw, message))``: the run turns
    that into a failed record and goes on. An error that makes further reading
    impossible should raise :class:`datapunk.SourceError`.

    Example:
        >>> import datapunk
        >>> class Lines:
        ...     name = "lines"
        ...     def __init__(self, text: str) -> None:
        ...         self.text = text
        ...     def read(self):
        ...         for n, line in enumerate(self.text.split(), 1):
        ...             yield n, line
        >>> out = []
        >>> datapunk.Pipeline(str.upper).run(Lines("a b"), out).records_out
        2
    """

    @property
    def name(self) -> str:
        """Name (or path) for messages and reports."""
        ...

    def read(self) -> Iterator[tuple[Position, T_co | Any]]:
        """Yield ``(position, record)`` pairs."""
        ...


@runtime_checkable
class Sink(Protocol[T_contra]):
    """
    **Protocol**: where records go.

    ``write`` receives records in batches, in order. ``close`` commits the
    output when the run succeeded. If the sink also has ``abort()``, it is
    called instead of ``close`` when the run fails, to discard the output
    (file sinks write to a temporary file and rename it only in ``close``).

    Example:
        >>> import datapunk
        >>> class Printer:
        ...     name = "printer"
        ...     def write(self, records):
        ...         for r in records:
        ...             print(r)
        ...     def close(self):
        ...         print("done")
        >>> _ = datapunk.Pipeline(str.upper).run(["a"], Printer())
        A
        done
    """

    def write(self, records: Sequence[T_contra], /) -> None:
        """Write one batch of records."""
        ...

    def close(self) -> None:
        """Commit the output."""
        ...


@runtime_checkable
class Runner(Protocol):
    """
    **Protocol**: decides where chunks are processed.

    A runner receives the run's ``job``, processes the chunks of
    ``job.chunks()`` with ``job.process`` (or
    :func:`datapunk._core.engine.process_chunk` on ``job.ops`` elsewhere) and
    hands the results, in input order, to ``job.execute``.
    """

    def run(self, job: Job, /) -> RunReport:
        """Run the job to completion and return its report."""
        ...


@runtime_checkable
class Hook(Protocol):
    """
    **Protocol**: receives events of a run.

    Implement any subset of ``on_run_start(job)``, ``on_chunk(job, result)``,
    ``on_error(job, dead_letter, action)`` and ``on_run_end(job, report)``;
    missing methods are skipped. Hooks run in the calling thread, in order.
    """

    def on_run_end(self, job: Job, report: RunReport, /) -> None:
        """Called once when the run ends (``report.ok`` says how)."""
        ...


@runtime_checkable
class CheckpointStore(Protocol):
    """
    **Protocol**: remembers, per run key, how far a run got, so it can resume.

    The run key names one logical run: the pipeline's name and the source's
    identity. The saved state is plain JSON data: the number of source records
    and the last source position acknowledged as fully written (outputs and
    dead letters), the sinks' resume tokens, the pipeline's fingerprint and
    the run's counters. :meth:`save` must be atomic and durable: after a crash,
    :meth:`load` returns either the previous state or the new one, never a mix.

    A store may also keep dead letters (``save(key, state, dead_letters)``):
    it then stores them in the same transaction as the state, and
    ``dead_letters(key)`` returns them. :class:`datapunk.SQLiteCheckpoint` is
    the built-in store.
    """

    def load(self, key: str, /) -> dict[str, Any] | None:
        """Return the saved state for *key*, or ``None``."""
        ...

    def save(
        self, key: str, state: dict[str, Any], /, dead_letters: Sequence[DeadLetter] = ()
    ) -> None:
        """Durably save *state* (and append *dead_letters*) for *key*, atomically."""
        ...

    def clear(self, key: str, /) -> None:
        """Forget *key*: its state and its dead letters."""
        ...


@runtime_checkable
class ResumableSink(Protocol[T_contra]):
    """
    **Protocol**: a :class:`Sink` that a checkpointed run can resume exactly.

    - ``flush()`` makes everything written so far durable (e.g. flush and
      fsync) and returns a *token*, plain JSON data saying where the output
      ends (e.g. the temporary file and its byte offset).
    - ``resume(token)`` is called before the first write of a resumed run: it
      reopens the output as it was when *token* was returned, discarding
      anything written after it (a JSON Lines file is truncated back to the
      offset), so appending continues exactly after the acknowledged records.
    - ``suspend()`` is called instead of ``abort()`` when a checkpointed run
      stops: it releases the output (closes files) but keeps it for a resume.

    A checkpointed run commits a token together with the source position
    (see :class:`CheckpointStore`), so output and checkpoint never disagree.
    Sinks without these methods are still accepted: the checkpoint then
    advances after every chunk they accepted (exact for sinks that keep what
    they accepted, such as a list or a database written per batch).
    """

    def write(self, records: Sequence[T_contra], /) -> None:
        """Write one batch of records."""
        ...

    def close(self) -> None:
        """Commit the output."""
        ...

    def flush(self) -> Any:
        """Make the output durable so far and return a resume token (JSON data)."""
        ...

    def resume(self, token: Any, /) -> None:
        """Reopen the output at *token*, discarding anything written after it."""
        ...

    def suspend(self) -> None:
        """Release the output, keeping it for a later :meth:`resume`."""
        ...


@runtime_checkable
class SinkPart(Protocol[T_contra]):
    """
    **Protocol**: one part of a :class:`PartitionedSink`'s output.

    A part is created by the calling process and pickled to the worker that
    writes it, so it holds no open resource until its first ``write``.
    ``commit()`` makes the part durable (not yet visible under the output's
    name) and returns a *receipt*: plain picklable data the sink's
    ``commit_parts`` understands. ``abort()`` discards it.
    """

    def write(self, records: Sequence[T_contra], /) -> None:
        """Write one batch of records to this part."""
        ...

    def commit(self) -> Any:
        """Make the part durable and return its receipt."""
        ...

    def abort(self) -> None:
        """Discard the part."""
        ...


@runtime_checkable
class PartitionedSink(Protocol[T_contra]):
    """
    **Protocol**: a :class:`Sink` whose output can be written in parts, elsewhere.

    The Dask runner asks such a sink for one part per partition
    (``part(key)``), ships it to the worker that processes the partition,
    which writes the partition's outputs to it and commits it. When every
    partition has been delivered, the runner calls ``commit_parts(receipts)``
    with the parts' receipts in output order (instead of ``close()``): the
    sink assembles them and commits the output atomically. ``abort()``
    discards the parts too. The built-in JSON Lines, JSON and CSV sinks are
    partitioned sinks, and the Parquet sink is one when given a schema.

    A sink that can be written in parts only sometimes says so with a
    ``partitioned`` attribute: when it is false, the runner writes the
    outputs through ``write()`` and ``close()`` in the calling process.
    """

    def write(self, records: Sequence[T_contra], /) -> None:
        """Write one batch of records (when not written in parts)."""
        ...

    def close(self) -> None:
        """Commit the output (when not written in parts)."""
        ...

    def part(self, key: str, /) -> SinkPart[T_contra]:
        """Return a picklable writer for the part named *key* (unique in the run)."""
        ...

    def commit_parts(self, receipts: Sequence[Any], /) -> None:
        """Assemble the committed parts, in this order, and commit the output."""
        ...


# ------------------------------------------------------------------ registry
ENTRY_POINT_GROUP = "datapunk.plugins"
"""The entry-point group third-party packages register plugins under."""

PluginKind: TypeAlias = Literal[
    "stage", "validator", "source", "sink", "runner", "hook", "checkpoint"
]
"""What a plugin provides."""

# kind -> members the object must have (a class is checked for the same names).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "stage": ("__call__", "name", "kind"),
    "validator": ("validate", "name"),
    "source": ("read", "name"),
    "sink": ("write", "close"),
    "runner": ("run",),
    "hook": (),
    "checkpoint": ("load", "save", "clear"),
}
_HOOK_EVENTS = ("on_run_start", "on_chunk", "on_error", "on_run_end")


def _infer_kind(obj: Any) -> str | None:
    declared = getattr(obj, "datapunk_kind", None)
    if isinstance(declared, str):
        return declared
    for kind, member in (
        ("source", "read"),
        ("sink", "write"),
        ("validator", "validate"),
        ("runner", "run"),
        ("checkpoint", "load"),
        ("checkpoint", "save"),
    ):
        if hasattr(obj, member):
            return kind
    if callable(obj) and hasattr(obj, "kind"):
        return "stage"  # before hooks: a stage's on_error is a policy, not an event
    if any(hasattr(obj, e) for e in _HOOK_EVENTS):
        return "hook"
    if callable(obj):
        return "stage"
    return None


def _has(obj: Any, member: str) -> bool:
    if member in {"name", "kind"} and isinstance(obj, type):
        # A class may set name/kind in __init__; only instances can tell.
        return True
    if member == "__call__":
        if isinstance(obj, type):  # every class is callable: look for the method itself
            return any("__call__" in vars(k) for k in obj.__mro__ if k is not object)
        return callable(obj)
    return hasattr(obj, member)


def check_plugin(name: str, obj: Any, kind: str | None = None) -> PluginKind:
    """
    Check that *obj* meets the protocol of its kind; return the kind.

    Args:
        name: The plugin's name, for messages.
        obj: The plugin (an instance, a class or a function).
        kind: The kind it must be; default: its ``datapunk_kind`` or what
            its methods suggest.

    Returns:
        The plugin's kind.

    Raises:
        ConfigurationError: Naming the plugin and each missing method.

    Example:
        >>> class Shout:
        ...     name, kind = "shout", "map"
        ...     def __call__(self, record: str) -> str:
        ...         return record.upper()
        >>> check_plugin("shout", Shout())
        'stage'
    """
    found = kind or _infer_kind(obj)
    if found is None:
        raise ConfigurationError(
            f"plugin {name!r} ({safe_str(obj, 80)}) meets no datapunk protocol: give it a "
            "datapunk_kind attribute (stage, validator, source, sink, runner, hook, "
            "checkpoint) and the methods of that protocol",
            details={"plugin": name},
        )
    if found not in _REQUIRED:
        raise ConfigurationError(
            f"plugin {name!r} declares datapunk_kind={found!r}, which is not one of "
            f"{', '.join(_REQUIRED)}",
            details={"plugin": name, "kind": found},
        )
    missing = [m for m in _REQUIRED[found] if not _has(obj, m)]
    if found == "hook" and not any(hasattr(obj, e) for e in _HOOK_EVENTS):
        missing = [" or ".join(_HOOK_EVENTS)]
    if missing:
        raise ConfigurationError(
            f"plugin {name!r} is a {found} but does not meet the {found.capitalize()} "
            f"protocol: missing {', '.join(missing)}",
            details={"plugin": name, "kind": found, "missing": missing},
        )
    return cast("PluginKind", found)  # checked against _REQUIRED above


@attrs.frozen
class PluginInfo:
    """
    One plugin as the registry knows it.

    Attributes:
        name: The name pipelines use (the entry point's name).
        kind: What it provides, or ``None`` if it could not be loaded.
        value: Where it lives (``"package.module:object"``).
        distribution: The installed distribution that provides it.
        version: That distribution's version.
        error: Why the plugin is unusable, or ``None``.
    """

    name: str
    kind: PluginKind | None
    value: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True if the plugin loaded and meets its protocol."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Return the plugin's description as JSON-friendly data."""
        return {**attrs.asdict(self), "ok": self.ok}


class Registry:
    """
    The plugins installed under the ``datapunk.plugins`` entry-point group.

    Discovery happens on first use, not at import. Each plugin is loaded and
    checked against its protocol; one that fails to import or does not meet
    its protocol is reported (:meth:`plugins` lists it with ``error`` set)
    without affecting the others, and :meth:`load` raises a
    :class:`datapunk.ConfigurationError` naming the plugin and what is wrong.

    Args:
        group: The entry-point group to read.

    .. versionadded:: 0.1.0
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self.group = group
        self._lock = threading.Lock()
        self._infos: dict[str, PluginInfo] | None = None
        self._objects: dict[str, Any] = {}

    def _discover(self) -> dict[str, PluginInfo]:
        with self._lock:
            if self._infos is not None:
                return self._infos
            from importlib.metadata import entry_points

            infos: dict[str, PluginInfo] = {}
            for ep in entry_points(group=self.group):
                dist = getattr(ep, "dist", None)
                dist_name = dist.metadata["Name"] if dist is not None else None
                version = dist.version if dist is not None else None
                if ep.name in infos:
                    first = infos[ep.name]
                    infos[ep.name] = attrs.evolve(
                        first,
                        kind=None,
                        error=f"two distributions provide plugin {ep.name!r}: "
                        f"{first.distribution} and {dist_name}; uninstall one",
                    )
                    continue
                try:
                    obj = ep.load()
                except Exception as exc:
                    infos[ep.name] = PluginInfo(
                        ep.name,
                        None,
                        ep.value,
                        dist_name,
                        version,
                        f"failed to import: {type(exc).__name__}: {safe_str(exc, 200)}",
                    )
                    continue
                try:
                    kind = check_plugin(ep.name, obj)
                except ConfigurationError as exc:
                    infos[ep.name] = PluginInfo(
                        ep.name, None, ep.value, dist_name, version, exc.message
                    )
                    continue
                self._objects[ep.name] = obj
                infos[ep.name] = PluginInfo(ep.name, kind, ep.value, dist_name, version)
            self._infos = infos
            return infos

    def refresh(self) -> None:
        """Forget what was discovered (after installing a plugin in this process)."""
        with self._lock:
            self._infos = None
            self._objects.clear()

    def plugins(self, kind: str | None = None) -> list[PluginInfo]:
        """
        List the installed plugins, broken ones included (with ``error`` set).

        Args:
            kind: Only plugins of this kind.

        Returns:
            The plugins, sorted by name.
        """
        infos = sorted(self._discover().values(), key=lambda i: i.name)
        return [i for i in infos if kind is None or i.kind == kind]

    def names(self, kind: str | None = None) -> list[str]:
        """
        Return the names of the usable plugins.

        Args:
            kind: Only plugins of this kind.

        Returns:
            The names, sorted.
        """
        return [i.name for i in self.plugins(kind) if i.ok]

    def get(self, name: str) -> PluginInfo:
        """
        Describe one plugin.

        Args:
            name: Its name.

        Returns:
            Its :class:`PluginInfo`.

        Raises:
            ConfigurationError: If no plugin has that name.
        """
        info = self._discover().get(name)
        if info is None:
            known = ", ".join(self.names()) or "none are installed"
            raise ConfigurationError(
                f"no plugin named {name!r} (installed: {known}); install the package "
                f"that provides it, or check the name with `datapunk plugins`",
                details={"plugin": name},
            )
        return info

    def load(self, name: str, kind: str | None = None) -> Any:
        """
        Return the plugin object registered as *name*.

        Args:
            name: Its name.
            kind: The kind the caller needs (checked).

        Returns:
            The object the entry point names (a class, function or instance).

        Raises:
            ConfigurationError: If it is unknown, broken, or not of *kind*.
        """
        info = self.get(name)
        if info.error is not None:
            raise ConfigurationError(
                f"plugin {name!r} from {info.distribution} is unusable: {info.error}",
                details={"plugin": name},
            )
        if kind is not None and info.kind != kind:
            raise ConfigurationError(
                f"plugin {name!r} is a {info.kind}, not a {kind}",
                details={"plugin": name, "kind": info.kind},
            )
        return self._objects[name]

    def register(self, name: str, obj: Any, *, kind: str | None = None) -> PluginInfo:
        """
        Register *obj* as plugin *name* in this process, checking its protocol.

        Useful for tests and applications that build plugins at run time.

        Args:
            name: The name pipelines will use.
            obj: The plugin.
            kind: Its kind (default: declared or inferred).

        Returns:
            The new :class:`PluginInfo`.

        Raises:
            ConfigurationError: If *obj* does not meet its protocol or the
                name is taken.
        """
        found = check_plugin(name, obj, kind)
        infos = self._discover()
        with self._lock:
            if name in infos:
                raise ConfigurationError(
                    f"a plugin named {name!r} is already registered "
                    f"({infos[name].value}); pick another name",
                    details={"plugin": name},
                )
            module = getattr(obj, "__module__", "?")
            qual = getattr(obj, "__qualname__", type(obj).__qualname__)
            info = PluginInfo(name, found, f"{module}:{qual}", None, None)
            infos[name] = info
            self._objects[name] = obj
        return info

    def unregister(self, name: str) -> None:
        """
        Remove a plugin registered with :meth:`register`.

        Args:
            name: Its name.
        """
        infos = self._discover()
        with self._lock:
            infos.pop(name, None)
            self._objects.pop(name, None)

    def __repr__(self) -> str:
        state = "not discovered yet" if self._infos is None else f"{len(self._infos)} plugins"
        return f"<Registry {self.group!r}: {state}>"


registry = Registry()
"""The process-wide plugin registry (discovers on first use)."""
