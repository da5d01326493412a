"""
Models and stages for ``examples/pipeline.toml``.

``pipeline.toml`` imports these by path (``"models:InputData"``); the
directory of the configuration file is on the import path while it loads.
"""

from __future__ import annotations

import pydantic

import datapunk


class InputData(pydantic.BaseModel):
    """A raw record as it arrives."""

    record_id: str
    value: float
    is_valid: bool


class OutputData(pydantic.BaseModel):
    """A processed record."""

    record_id: str
    processed_value: float


@datapunk.stage(kind="filter")
def keep_valid(record: InputData) -> bool:
    """Keep only the records flagged valid."""
    return record.is_valid


@datapunk.stage
def process(record: InputData) -> OutputData:
    """Double the value."""
    return OutputData(record_id=record.record_id, processed_value=record.value * 2)
