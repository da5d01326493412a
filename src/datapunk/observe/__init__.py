"""Observability: structured logging, and (later) metrics, progress and health."""

from __future__ import annotations

from datapunk.observe._log import get_logger

__all__ = ["get_logger"]
