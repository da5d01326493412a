"""
Runners: where and how a pipeline's chunks are processed.

Every runner meets the :class:`datapunk.plugins.Runner` protocol: an object
with ``run(job) -> RunReport`` (and, for use inside an event loop,
``async arun(job)``). Pass one to ``pipeline.run(..., runner=...)``, by object
or by name.

Built in:

- :class:`Serial` (``"serial"``, the default): one thread, the fused loop.
- :class:`Threads` (``"threads"``): stage calls on a thread pool, for I/O-bound
  sync stages.
- :class:`Processes` (``"processes"``): chunks on worker processes, for
  CPU-bound stages (``pip install datapunk[processes]`` for lambdas).
- :class:`Async` (``"async"``): async stages with many calls in flight on one
  event loop.
- :class:`Dask` (``"dask"``): partitions of the source on a Dask cluster
  (``pip install datapunk[dask]``).

Every runner produces the same outputs, counters and dead letters as
:class:`Serial` (with ``ordered=False``, the same outputs in another order).
Only :class:`Serial` is imported eagerly; the others load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datapunk._core.errors import ConfigurationError
from datapunk.runners._serial import Serial

if TYPE_CHECKING:
    from collections.abc import Callable

    from datapunk.runners._async import Async
    from datapunk.runners._dask import Dask
    from datapunk.runners._processes import Processes
    from datapunk.runners._threads import Threads

__all__ = ["Async", "Dask", "Processes", "Serial", "Threads", "by_name", "names"]

_LAZY = {
    "Threads": "datapunk.runners._threads",
    "Processes": "datapunk.runners._processes",
    "Async": "datapunk.runners._async",
    "Dask": "datapunk.runners._dask",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def _lazy(name: str) -> Callable[..., Any]:
    def factory(**options: Any) -> Any:
        return __getattr__(name)(**options)

    factory.__name__ = name
    return factory


_BUILTIN: dict[str, Callable[..., Any]] = {
    "serial": Serial,
    "threads": _lazy("Threads"),
    "processes": _lazy("Processes"),
    "async": _lazy("Async"),
    "dask": _lazy("Dask"),
}


def names() -> list[str]:
    """Return the names ``run(..., runner=NAME)`` accepts."""
    return sorted(_BUILTIN)


def by_name(name: str, **options: Any) -> Any:
    """
    Build a runner from its name.

    Args:
        name: One of :func:`names`.
        **options: Passed to the runner's constructor.

    Returns:
        The runner.

    Raises:
        ConfigurationError: If no runner has that name.
    """
    factory = _BUILTIN.get(name.strip().lower())
    if factory is None:
        raise ConfigurationError(
            f"unknown runner {name!r}; choose one of {', '.join(names())}",
            details={"runner": name},
        )
    return factory(**options)
