"""
How datapunk emits log events without configuring anything.

The library only emits: it never adds handlers or calls ``structlog.configure``.
If the application configured structlog, events follow that configuration.
Otherwise they go to the standard library logger ``"datapunk"`` (silent unless
the application configures :mod:`logging`), so importing or running datapunk
never prints on its own.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["capturing", "get_logger"]

# Active datapunk.testing.capture_logs() blocks, innermost last.
_CAPTURES: list[Any] = []


def capturing(capture: Any) -> None:
    """Route events to *capture* (a ``structlog.testing.LogCapture``); ``None`` pops."""
    if capture is None:
        _CAPTURES.pop()
    else:
        _CAPTURES.append(capture)


def get_logger(**initial: Any) -> Any:
    """
    Return a structlog logger for datapunk events, bound to *initial* values.

    Args:
        **initial: Context bound to every event (``run_id``, ``pipeline``...).

    Returns:
        A structlog bound logger.
    """
    if _CAPTURES:
        return structlog.wrap_logger(
            None,
            processors=[_CAPTURES[-1]],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        ).bind(**initial)
    if structlog.is_configured():
        return structlog.get_logger("datapunk").bind(**initial)
    return structlog.wrap_logger(
        logging.getLogger("datapunk"),
        processors=[
            structlog.stdlib.filter_by_level,
            _drop_unless_handled,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event", "run_id", "pipeline"]),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    ).bind(**initial)


def _drop_unless_handled(logger: Any, _method_name: str, event_dict: Any) -> Any:
    """
    Drop the event when the application configured no handler for it.

    Without this, :data:`logging.lastResort` would print warnings to standard
    error on its own, and a library only emits.
    """
    if not logger.hasHandlers():
        raise structlog.DropEvent
    return event_dict
