"""
Shared hypothesis strategies: records and generated pipelines.

A generated pipeline is described by a :class:`PipelineSpec`: plain, frozen,
picklable data. :func:`build` turns a spec into a :class:`datapunk.Pipeline`
whose stage functions are instances of module-level classes, so the pipeline
pickles too (for process and Dask runners). :func:`expected` is an oracle: it
computes, record by record and without datapunk, what a run of the spec must
produce (outputs, dead letters, skips, warnings and per-stage counters).

Failures are injected on chosen records: a step fails a value when
``value % fail_mod == fail_rem`` (``fail_mod == 0`` never fails).

Typical use::

    @given(spec=pipeline_specs(), records=int_records())
    def test_same_answer(spec, records):
        want = expected(spec, records)
        report = build(spec).run(records, sink := [], runner=...)
        assert want.outputs == sink
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

import datapunk

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "KINDS",
    "POLICIES",
    "AsyncMapFn",
    "BatchFn",
    "CheckFn",
    "Expected",
    "FilterFn",
    "FlatMapFn",
    "InjectedError",
    "MapFn",
    "PipelineSpec",
    "StepSpec",
    "build",
    "build_step",
    "expected",
    "int_records",
    "json_records",
    "one_to_one_specs",
    "pipeline_specs",
    "step_specs",
]

KINDS = ("map", "async_map", "filter", "async_filter", "flat_map", "batch", "check", "warn")
ONE_TO_ONE_KINDS = tuple(k for k in KINDS if k != "flat_map")
POLICIES = (None, "dead_letter", "skip")


class InjectedError(Exception):
    """The exception generated stages raise on the records chosen to fail."""


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """
    One generated step.

    Attributes:
        kind: One of :data:`KINDS`.
        fail_mod: A value fails when ``value % fail_mod == fail_rem`` (0: never).
        fail_rem: See *fail_mod*.
        param: map: the number added; filter: keep values not divisible by it;
            flat_map: emits ``value % param`` copies; batch: the batch size.
        on_error: The step's own policy (``None``: the run's).
    """

    kind: str
    fail_mod: int = 0
    fail_rem: int = 0
    param: int = 1
    on_error: str | None = None

    def fails(self, value: int) -> bool:
        """Whether this step fails *value*."""
        return self.fail_mod > 0 and value % self.fail_mod == self.fail_rem


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """A generated pipeline: its steps, in order."""

    steps: tuple[StepSpec, ...]

    def names(self) -> list[str]:
        """The stage names :func:`build` gives the steps."""
        return [f"s{i}_{s.kind}" for i, s in enumerate(self.steps)]

    @property
    def one_to_one(self) -> bool:
        """Whether every step emits at most one record per input."""
        return all(s.kind != "flat_map" for s in self.steps)


# ----------------------------------------------------------- stage functions
@dataclasses.dataclass(frozen=True)
class MapFn:
    """``value + add``; raises :class:`InjectedError` on chosen values."""

    spec: StepSpec

    def __call__(self, value: int) -> int:
        if self.spec.fails(value):
            raise InjectedError(f"map refuses {value}")
        return value + self.spec.param


@dataclasses.dataclass(frozen=True)
class AsyncMapFn:
    """The async twin of :class:`MapFn`."""

    spec: StepSpec

    async def __call__(self, value: int) -> int:
        if self.spec.fails(value):
            raise InjectedError(f"async map refuses {value}")
        return value + self.spec.param


@dataclasses.dataclass(frozen=True)
class FilterFn:
    """Keeps values not divisible by ``param``; raises on chosen values."""

    spec: StepSpec

    def __call__(self, value: int) -> bool:
        if self.spec.fails(value):
            raise InjectedError(f"filter refuses {value}")
        return value % self.spec.param != 0


@dataclasses.dataclass(frozen=True)
class AsyncFilterFn:
    """The async twin of :class:`FilterFn`."""

    spec: StepSpec

    async def __call__(self, value: int) -> bool:
        if self.spec.fails(value):
            raise InjectedError(f"async filter refuses {value}")
        return value % self.spec.param != 0


@dataclasses.dataclass(frozen=True)
class FlatMapFn:
    """Emits ``value % param`` records ``value * 10 + i``; raises on chosen values."""

    spec: StepSpec

    def __call__(self, value: int) -> list[int]:
        if self.spec.fails(value):
            raise InjectedError(f"flat_map refuses {value}")
        return [value * 10 + i for i in range(value % self.spec.param)]


@dataclasses.dataclass(frozen=True)
class BatchFn:
    """Doubles each value; an :class:`InjectedError` instance in place of chosen ones."""

    spec: StepSpec

    def __call__(self, values: list[int]) -> list[Any]:
        return [
            InjectedError(f"batch refuses {v}") if self.spec.fails(v) else v * 2 for v in values
        ]


@dataclasses.dataclass(frozen=True)
class CheckFn:
    """A validator rule: raises :class:`datapunk.ValidationError` on chosen values."""

    spec: StepSpec

    def __call__(self, value: int) -> int:
        if self.spec.fails(value):
            raise datapunk.ValidationError(
                reasons=[datapunk.Reason((), "value is unlucky", value, "check")]
            )
        return value


def build_step(spec: StepSpec, name: str) -> datapunk.Stage[Any, Any]:  # noqa: PLR0911 - one return per kind
    """Build the stage for one step."""
    policy: Any = spec.on_error
    kind = spec.kind
    if kind == "map":
        return datapunk.Stage(MapFn(spec), name=name, on_error=policy)
    if kind == "async_map":
        return datapunk.Stage(AsyncMapFn(spec), name=name, on_error=policy)
    if kind == "filter":
        return datapunk.Filter(FilterFn(spec), name=name, on_error=policy)
    if kind == "async_filter":
        return datapunk.Filter(AsyncFilterFn(spec), name=name, on_error=policy)
    if kind == "flat_map":
        return datapunk.FlatMap(FlatMapFn(spec), name=name, on_error=policy)
    if kind == "batch":
        return datapunk.Batch(BatchFn(spec), size=spec.param, name=name, on_error=policy)
    if kind in {"check", "warn"}:
        return datapunk.Validator(
            CheckFn(spec), name=name, on_error=policy, warn=kind == "warn", transforms=False
        )
    raise ValueError(f"unknown step kind {kind!r}")  # pragma: no cover


def build(spec: PipelineSpec, *, name: str | None = None) -> datapunk.Pipeline[Any, Any]:
    """Build the pipeline a spec describes."""
    stages = [build_step(s, n) for s, n in zip(spec.steps, spec.names(), strict=True)]
    return datapunk.Pipeline(*stages, name=name)


# -------------------------------------------------------------------- oracle
@dataclasses.dataclass
class Expected:
    """
    What a run of a spec must produce.

    Attributes:
        outputs: Output records, in order.
        failures: ``(position, stage, action)`` for every failure, skip and
            warning, in source order then stage order.
        stages: Per stage name, ``{"in", "out", "filtered", "failed",
            "skipped", "warnings"}``.
    """

    outputs: list[Any]
    failures: list[tuple[int, str, str]]
    stages: dict[str, dict[str, int]]

    def actions(self, action: str) -> list[tuple[int, str]]:
        """``(position, stage)`` of the failures with *action*."""
        return [(p, s) for p, s, a in self.failures if a == action]

    @property
    def failed(self) -> int:
        """Records sent to the dead letters."""
        return len(self.actions("dead_letter"))

    @property
    def skipped(self) -> int:
        """Records skipped."""
        return len(self.actions("skip"))

    @property
    def warnings(self) -> int:
        """Warnings counted."""
        return len(self.actions("warn"))

    @property
    def filtered(self) -> int:
        """Records dropped by filters."""
        return sum(c["filtered"] for c in self.stages.values())


def _counter() -> dict[str, int]:
    return dict.fromkeys(("in", "out", "filtered", "failed", "skipped", "warnings"), 0)


def expected(spec: PipelineSpec, records: Sequence[int], on_error: str = "dead_letter") -> Expected:
    """Compute, without datapunk, what running *spec* over *records* must give."""
    names = spec.names()
    stages = {n: _counter() for n in names}
    outputs: list[Any] = []
    failures: list[tuple[int, str, str]] = []
    for position, record in enumerate(records):
        values = [record]
        for step, name in zip(spec.steps, names, strict=True):
            counts = stages[name]
            nxt: list[int] = []
            for v in values:
                counts["in"] += 1
                if step.fails(v):
                    if step.kind == "warn":
                        action = "warn"
                        nxt.append(v)
                    else:
                        action = step.on_error or on_error
                    failures.append((position, name, action))
                    counts[{"warn": "warnings", "skip": "skipped"}.get(action, "failed")] += 1
                    continue
                if step.kind in {"map", "async_map"}:
                    nxt.append(v + step.param)
                elif step.kind in {"filter", "async_filter"}:
                    if v % step.param != 0:
                        nxt.append(v)
                    else:
                        counts["filtered"] += 1
                elif step.kind == "flat_map":
                    nxt.extend(v * 10 + i for i in range(v % step.param))
                elif step.kind == "batch":
                    nxt.append(v * 2)
                else:
                    nxt.append(v)
            counts["out"] += len(nxt)
            values = nxt
        outputs.extend(values)
    # The engine reports failures stage-major within a chunk: compare sorted.
    order = {n: i for i, n in enumerate(names)}
    failures.sort(key=lambda f: (f[0], order[f[1]]))
    return Expected(outputs, failures, stages)


# ---------------------------------------------------------------- strategies
def int_records(max_size: int = 60) -> st.SearchStrategy[list[int]]:
    """Lists of small non-negative ints (values drive the injected failures)."""
    return st.lists(st.integers(min_value=0, max_value=200), max_size=max_size)


def json_records(max_size: int = 30) -> st.SearchStrategy[list[Any]]:
    """Lists of JSON-like values (dicts of scalars, lists, nested dicts)."""
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
    scalars |= st.floats(allow_nan=False, allow_infinity=False)
    values = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=10,
    )
    return st.lists(st.dictionaries(st.text(max_size=8), values, max_size=5), max_size=max_size)


@st.composite
def step_specs(draw: st.DrawFn, kinds: Sequence[str] = KINDS) -> StepSpec:
    """One step of any of *kinds*, failing on some values, with a random policy."""
    kind = draw(st.sampled_from(tuple(kinds)))
    fail_mod = draw(st.integers(min_value=0, max_value=7))
    fail_rem = draw(st.integers(min_value=0, max_value=max(fail_mod - 1, 0)))
    if kind in {"map", "async_map"}:
        param = draw(st.integers(min_value=0, max_value=9))
    elif kind in {"filter", "async_filter"}:
        param = draw(st.integers(min_value=2, max_value=5))
    elif kind == "flat_map":
        param = draw(st.integers(min_value=1, max_value=4))
    elif kind == "batch":
        param = draw(st.integers(min_value=1, max_value=8))
    else:
        param = 1
    on_error = None if kind == "warn" else draw(st.sampled_from(POLICIES))
    return StepSpec(kind, fail_mod, fail_rem, param, on_error)


def pipeline_specs(
    kinds: Sequence[str] = KINDS, min_steps: int = 1, max_steps: int = 6
) -> st.SearchStrategy[PipelineSpec]:
    """Random chains of steps of *kinds*."""
    return st.lists(step_specs(kinds), min_size=min_steps, max_size=max_steps).map(
        lambda steps: PipelineSpec(tuple(steps))
    )


def one_to_one_specs(max_steps: int = 6) -> st.SearchStrategy[PipelineSpec]:
    """Random chains without ``flat_map`` (each stage emits at most one record per input)."""
    return pipeline_specs(ONE_TO_ONE_KINDS, max_steps=max_steps)
