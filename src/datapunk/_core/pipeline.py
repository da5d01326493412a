"""Pipeline: an ordered composition of stages, itself a stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

from datapunk._core.errors import ConfigurationError
from datapunk._core.stage import Stage, as_stage

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Iterable, Iterator, Mapping

    from datapunk._core.report import RunReport
    from datapunk._core.types import Kind, OnError
    from datapunk.config import Loaded

__all__ = ["Pipeline"]

In = TypeVar("In", contravariant=True)  # noqa: PLC0105
Out = TypeVar("Out", covariant=True)  # noqa: PLC0105
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
F = TypeVar("F")
G = TypeVar("G")
T = TypeVar("T")


def _composite_kind(stages: tuple[Stage[Any, Any], ...]) -> Kind:
    kinds = {s.kind for s in stages}
    if kinds <= {"map", "batch"}:
        return "map"
    if "flat_map" in kinds:
        return "flat_map"
    return "filter"


class Pipeline(Stage[In, Out]):
    """
    An ordered composition of stages; itself a stage, so pipelines nest.

    ``Pipeline(a, b, c)`` and ``a | b | c`` build the same pipeline. A pipeline
    is generic in its input and output: ``Stage[A, B] | Stage[B, C]`` is a
    ``Pipeline[A, C]``.

    Args:
        *stages: The stages, in order: :class:`Stage` objects, other pipelines,
            objects meeting the :class:`datapunk.plugins.Stage` protocol, or
            plain functions (used as ``map`` stages).
        name: Name in reports and logs (default: the stage names joined by ``|``).

    Raises:
        ConfigurationError: If no stage is given or one is not usable as a stage.

    Example:
        >>> import datapunk
        >>> double = datapunk.Stage(lambda x: x * 2, name="double")
        >>> even = datapunk.Filter(lambda x: x % 4 == 0, name="div4")
        >>> pipe = datapunk.Pipeline(double, even, name="demo")
        >>> list(pipe.stream([1, 2, 3, 4]))
        [4, 8]
        >>> report = pipe.run(range(10), sink=[])
        >>> report.records_in, report.records_out, report.filtered
        (10, 5, 5)

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_explicit_name", "parts")

    @overload
    def __init__(self: Pipeline[A, B], s1: Stage[A, B], /, *, name: str | None = ...) -> None: ...
    @overload
    def __init__(
        self: Pipeline[A, C], s1: Stage[A, B], s2: Stage[B, C], /, *, name: str | None = ...
    ) -> None: ...
    @overload
    def __init__(
        self: Pipeline[A, D],
        s1: Stage[A, B],
        s2: Stage[B, C],
        s3: Stage[C, D],
        /,
        *,
        name: str | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Pipeline[A, E],
        s1: Stage[A, B],
        s2: Stage[B, C],
        s3: Stage[C, D],
        s4: Stage[D, E],
        /,
        *,
        name: str | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Pipeline[A, F],
        s1: Stage[A, B],
        s2: Stage[B, C],
        s3: Stage[C, D],
        s4: Stage[D, E],
        s5: Stage[E, F],
        /,
        *,
        name: str | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Pipeline[A, G],
        s1: Stage[A, B],
        s2: Stage[B, C],
        s3: Stage[C, D],
        s4: Stage[D, E],
        s5: Stage[E, F],
        s6: Stage[F, G],
        /,
        *,
        name: str | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Pipeline[Any, Any],
        s1: Stage[Any, Any],
        s2: Stage[Any, Any],
        s3: Stage[Any, Any],
        s4: Stage[Any, Any],
        s5: Stage[Any, Any],
        s6: Stage[Any, Any],
        s7: Stage[Any, Any],
        /,
        *rest: Stage[Any, Any],
        name: str | None = ...,
    ) -> None: ...
    def __init__(self, *stages: Any, name: str | None = None) -> None:
        if not stages:
            raise ConfigurationError("a Pipeline needs at least one stage")
        parts = tuple(as_stage(s) for s in stages)
        label = name if name is not None else " | ".join(p.name for p in parts)
        if len(label) > 80 and name is None:  # noqa: PLR2004
            label = label[:79] + "…"
        super().__init__(self._call_unsupported, kind=_composite_kind(parts), name=label)
        self.parts = parts
        self._explicit_name = name is not None

    @staticmethod
    def _call_unsupported(record: Any) -> Any:  # pragma: no cover - never called
        raise AssertionError(f"a Pipeline's stages are run by the engine, not on {record!r}")

    @classmethod
    def _compose(cls, left: Stage[Any, Any], right: Any) -> Pipeline[Any, Any]:
        """``left | right``: flattens unnamed pipelines, keeps named ones nested."""
        right_stage = as_stage(right)
        items: list[Stage[Any, Any]] = []
        for side in (left, right_stage):
            if isinstance(side, Pipeline) and not side._explicit_name:
                items.extend(side.parts)
            else:
                items.append(side)
        return Pipeline(*items)

    # --------------------------------------------------------------- identity
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self.parts == other.parts and self.name == other.name

    def __hash__(self) -> int:
        return hash((self.parts, self.name))

    def __len__(self) -> int:
        return len(self.parts)

    def __iter__(self) -> Iterator[Stage[Any, Any]]:
        return iter(self.parts)

    def stages(self) -> tuple[Stage[Any, Any], ...]:
        """Return the primitive stages, nested pipelines flattened, in order."""
        return tuple(s for part in self.parts for s in part.stages())

    def options(self) -> dict[str, Any]:
        """Return the pipeline's settings as plain data."""
        return {"kind": "pipeline", "stages": [s.name for s in self.parts]}

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self.parts)
        return f"<Pipeline {self.name!r} [{inner}]>"

    def describe(self) -> str:
        """
        Return a readable outline of the pipeline: one line per stage.

        Returns:
            One header line, then one line per stage with its kind and options.
        """
        from datapunk._core.engine import compile_stages

        lines = [f"pipeline {self.name!r}"]
        for i, op in enumerate(compile_stages(self), 1):
            opts = {k: v for k, v in op.stage.options().items() if k != "kind"}
            extra = " ".join(f"{k}={v!r}" for k, v in opts.items())
            lines.append(f"  {i}. {op.name}  {op.kind}{'  ' + extra if extra else ''}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{i}</td><td>{escape(s.name)}</td><td>{escape(s.kind)}</td></tr>"
            for i, s in enumerate(self.stages(), 1)
        )
        return (
            f"<div><strong>Pipeline {escape(self.name)}</strong>"
            f"<table><tr><th>#</th><th>stage</th><th>kind</th></tr>{rows}</table></div>"
        )

    # ----------------------------------------------------------- declarative
    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Loaded:
        """
        Build a pipeline from a TOML or YAML file (see :mod:`datapunk.config`).

        Args:
            path: The pipeline file.
            env: Variables for ``${VAR}`` and ``DATAPUNK_*`` (default: ``os.environ``).
            overrides: Run options that win over the environment and the file.

        Returns:
            ``(pipeline, options)``: the ready pipeline and its merged
            :class:`datapunk.config.RunOptions`.

        Raises:
            ConfigurationError: Naming the file, the key path and the problem.

        .. versionadded:: 0.1.0
        """
        from datapunk.config import load

        return load(path, env=env, overrides=overrides)

    # ---------------------------------------------------------------- running
    def run(
        self,
        source: Any,
        sink: Any = None,
        *,
        dead_letter: Any = None,
        on_error: OnError = "dead_letter",
        max_errors: float | None = None,
        runner: Any = None,
        checkpoint: Any = None,
        progress: bool = False,
        chunk_size: int | None = None,
        hooks: Iterable[Any] = (),
        error_sample_size: int = 100,
    ) -> RunReport:
        """
        Run every record of *source* through the pipeline.

        Args:
            source: Any iterable (positions are 0-based indexes), a
                :class:`datapunk.plugins.Source`, or a file path.
            sink: Where outputs go: a ``list`` (appended to), a callable
                (called per record), a :class:`datapunk.plugins.Sink`, a file
                path, or ``None`` to discard them (counted all the same).
            dead_letter: Where failed records go, as :class:`datapunk.DeadLetter`
                objects; same forms as *sink*. With ``None`` they are kept in
                ``report.dead_letters``.
            on_error: The policy for stages that set none: ``"dead_letter"``,
                ``"skip"`` or ``"raise"``.
            max_errors: Stop the run with :class:`datapunk.ErrorBudgetExceeded`
                when more records fail: an integer count, or a rate
                ``0 < r < 1`` checked once at least 100 records were read.
            runner: How to execute: ``None`` / ``"serial"`` (default), a runner
                object or name (see :mod:`datapunk.runners`).
            checkpoint: A checkpoint store or path, to resume after a crash.
            progress: Show a progress bar.
            chunk_size: Records read and processed together (default 1000).
            hooks: Objects receiving run, chunk and error events.
            error_sample_size: How many errors the report keeps as a sample.

        Returns:
            The :class:`datapunk.RunReport`.

        Raises:
            ErrorBudgetExceeded: More records failed than *max_errors* allows.
            StageError: A stage failed with ``on_error="raise"``.
            ValidationError: A validator failed with ``on_error="raise"``.
            SourceError: The source could not be read.
            SinkError: A sink could not be written.
            ConfigurationError: An argument is invalid.
        """
        from datapunk._core.run import Job, resolve_runner

        job = Job.create(
            self,
            source,
            sink,
            dead_letter=dead_letter,
            on_error=on_error,
            max_errors=max_errors,
            checkpoint=checkpoint,
            progress=progress,
            chunk_size=chunk_size,
            hooks=hooks,
            error_sample_size=error_sample_size,
        )
        report: RunReport = resolve_runner(runner).run(job)
        return report

    async def arun(
        self,
        source: Any,
        sink: Any = None,
        *,
        dead_letter: Any = None,
        on_error: OnError = "dead_letter",
        max_errors: float | None = None,
        runner: Any = None,
        checkpoint: Any = None,
        progress: bool = False,
        chunk_size: int | None = None,
        hooks: Iterable[Any] = (),
        error_sample_size: int = 100,
    ) -> RunReport:
        """
        Run the pipeline inside a running event loop (``await pipeline.arun(...)``).

        Takes the same arguments as :meth:`run`. Async stages are awaited on
        the caller's loop; sync stages run inline.

        Returns:
            The :class:`datapunk.RunReport`.
        """
        from datapunk._core.run import Job, resolve_runner

        job = Job.create(
            self,
            source,
            sink,
            dead_letter=dead_letter,
            on_error=on_error,
            max_errors=max_errors,
            checkpoint=checkpoint,
            progress=progress,
            chunk_size=chunk_size,
            hooks=hooks,
            error_sample_size=error_sample_size,
        )
        r = resolve_runner(runner)
        arun = getattr(r, "arun", None)
        if arun is None:
            raise ConfigurationError(
                f"runner {type(r).__name__} cannot run inside an event loop; "
                "use pipeline.run(...) or an async-capable runner"
            )
        report: RunReport = await arun(job)
        return report

    def stream(
        self,
        source: Iterable[In],
        *,
        on_error: OnError = "dead_letter",
        dead_letter: Any = None,
        chunk_size: int | None = None,
    ) -> Iterator[Out]:
        """
        Yield outputs lazily as the source is consumed (for notebooks and embedding).

        Records are read and processed *chunk_size* at a time, so at most one
        chunk is held in memory. Failed records follow each stage's error
        policy; with ``"dead_letter"`` they go to *dead_letter* (or are
        dropped from the stream but never silently: pass *dead_letter* to keep
        them, or use :meth:`run` for a report).

        Args:
            source: An iterable or a :class:`datapunk.plugins.Source`.
            on_error: The policy for stages that set none.
            dead_letter: Where failed records go (a list, callable or sink).
            chunk_size: Records read together (default 1000).

        Yields:
            Output records, in input order.
        """
        from datapunk._core.run import Job

        job = Job.create(
            self, source, None, dead_letter=dead_letter, on_error=on_error, chunk_size=chunk_size
        )
        return job.iter_outputs()

    async def astream(
        self,
        source: Iterable[In],
        *,
        on_error: OnError = "dead_letter",
        dead_letter: Any = None,
        chunk_size: int | None = None,
    ) -> AsyncIterator[Out]:
        """
        Like :meth:`stream`, as an async generator awaited on the caller's loop.

        Args:
            source: An iterable or a :class:`datapunk.plugins.Source`.
            on_error: The policy for stages that set none.
            dead_letter: Where failed records go (a list, callable or sink).
            chunk_size: Records read together (default 1000).

        Yields:
            Output records, in input order.
        """
        from datapunk._core.run import Job

        job = Job.create(
            self, source, None, dead_letter=dead_letter, on_error=on_error, chunk_size=chunk_size
        )
        from contextlib import aclosing

        async with aclosing(job.aiter_outputs()) as items:  # closed with this generator
            async for item in items:
                yield item
