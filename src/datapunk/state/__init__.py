"""
State: checkpoints that make a killed run resume exactly, and dead letters as data.

- :class:`SQLiteCheckpoint`: the built-in checkpoint store (one SQLite file).
  ``pipeline.run(source, sink, checkpoint="run.db")`` uses it.
- :func:`replay`: push dead letters through a fixed pipeline.
- :func:`read_dead_letters` / :class:`DeadLetterSource`: read a dead-letter
  JSON Lines file back as :class:`datapunk.DeadLetter` objects.
- :func:`fingerprint` and :func:`run_key`: how a checkpoint recognises a run.

Any object with ``load``, ``save`` and ``clear`` (the
:class:`datapunk.plugins.CheckpointStore` protocol) can replace the SQLite
store; any sink with ``flush``, ``resume`` and ``suspend``
(:class:`datapunk.plugins.ResumableSink`) is resumed exactly.
"""

from __future__ import annotations

from datapunk.state._checkpointer import fingerprint, run_key
from datapunk.state._replay import DeadLetterSource, ReplayReport, read_dead_letters, replay
from datapunk.state._sqlite import SQLiteCheckpoint

__all__ = [
    "DeadLetterSource",
    "ReplayReport",
    "SQLiteCheckpoint",
    "fingerprint",
    "read_dead_letters",
    "replay",
    "run_key",
]

SQLiteCheckpoint.__module__ = "datapunk"
ReplayReport.__module__ = "datapunk"
replay.__module__ = "datapunk"
DeadLetterSource.__module__ = "datapunk.state"
read_dead_letters.__module__ = "datapunk.state"
fingerprint.__module__ = "datapunk.state"
run_key.__module__ = "datapunk.state"
