"""
Runners: where and how a pipeline's chunks are processed.

Every runner meets the :class:`datapunk.plugins.Runner` protocol: an object
with ``run(job) -> RunReport`` (and, for use inside an event loop,
``async arun(job)``). Pass one to ``pipeline.run(..., runner=...)``, by object
or by name.

Built in:

- :class:`Serial` (``"serial"``, the default): one thread, the fused loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datapunk._core.errors import ConfigurationError
from datapunk.runners._serial import Serial

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Serial", "by_name", "names"]

_BUILTIN: dict[str, Callable[[], Any]] = {
    "serial": Serial,
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
