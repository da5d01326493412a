"""The built-in checkpoint store: one SQLite file (stdlib ``sqlite3``, WAL mode)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, final

from datapunk._core.errors import ConfigurationError, SinkError
from datapunk._core.types import DeadLetter, safe_str

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator, Sequence

__all__ = ["SQLiteCheckpoint"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS datapunk_runs (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS datapunk_dead_letters (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    position TEXT,
    stage TEXT NOT NULL,
    error_type TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (key, seq)
);
"""


def _check_interval(every: object, seconds: object) -> tuple[int | None, float | None]:
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ConfigurationError(
            f"SQLiteCheckpoint: every= must be a number of records >= 1 or None, got {every!r}",
            details={"option": "every", "value": repr(every)},
        )
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0
    ):
        raise ConfigurationError(
            f"SQLiteCheckpoint: seconds= must be a number >= 0 or None, got {seconds!r}",
            details={"option": "seconds", "value": repr(seconds)},
        )
    return every, None if seconds is None else float(seconds)


@final
class SQLiteCheckpoint:
    """
    Checkpoints in one SQLite file: resume a killed run exactly where it stopped.

    The file holds, per run key (pipeline name and source), the state of the
    run: the source position acknowledged as fully written, the sinks' resume
    tokens, the pipeline's fingerprint and the counters. When the run has no
    dead-letter sink, its dead letters are kept in the same file (table
    ``datapunk_dead_letters``), written in the same transaction as the state.
    The database runs in WAL mode with ``synchronous=FULL``: a saved
    checkpoint survives a crash or a power cut.

    A run acknowledges progress after at least *every* records or *seconds*
    seconds, whichever comes first (both ``None``: after every chunk), and
    always at the end. More frequent checkpoints mean less work redone after
    a crash and a little more overhead (an fsync per checkpoint).

    ``pipeline.run(source, sink, checkpoint="run.db")`` is the same as
    ``checkpoint=datapunk.SQLiteCheckpoint("run.db")``.

    Args:
        path: The database file (created if missing).
        every: Acknowledge at least every this many source records.
        seconds: Acknowledge at least every this many seconds.
        fresh: Discard any saved state of the runs that use this store and
            start them from the beginning.
        timeout: Seconds to wait for a database locked by another process.

    Raises:
        ConfigurationError: If an option is invalid.

    Example:
        >>> import datapunk, pathlib, tempfile
        >>> db = pathlib.Path(tempfile.mkdtemp()) / "run.db"
        >>> pipe = datapunk.Pipeline(lambda x: x * 2, name="double")
        >>> pipe.run([1, 2, 3], [], checkpoint=datapunk.SQLiteCheckpoint(db)).records_out
        3

    .. versionadded:: 0.1.0
    """

    datapunk_kind = "checkpoint"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        every: int | None = None,
        seconds: float | None = 1.0,
        fresh: bool = False,
        timeout: float = 5.0,
    ) -> None:
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ConfigurationError(
                f"SQLiteCheckpoint needs a file path, got {type(path).__name__} {path!r:.60}"
            )
        self.path = Path(path)
        self.name = str(path)
        self.every, self.seconds = _check_interval(every, seconds)
        self.fresh = bool(fresh)
        self.timeout = float(timeout)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------- connection
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        import sqlite3

        where = self.name
        parent = self.path.parent if str(self.path.parent) else Path()
        if not parent.is_dir():
            raise ConfigurationError(
                f"checkpoint {where!r}: directory {str(parent)!r} does not exist; create it first",
                details={"path": where},
            )
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot open checkpoint {where!r}: {safe_str(exc)}", details={"path": where}
            ) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version in (0, _SCHEMA_VERSION):
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                # Fail now, not mid-run, if another process holds the write lock.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            conn.close()
            raise self._open_error(exc) from exc
        except BaseException:
            conn.close()
            raise
        if version not in (0, _SCHEMA_VERSION):
            conn.close()
            raise ConfigurationError(
                f"checkpoint {where!r} has schema version {version}, this datapunk "
                f"understands {_SCHEMA_VERSION}: use a new checkpoint file",
                details={"path": where},
            )
        self._conn = conn
        return conn

    def _open_error(self, exc: Exception) -> ConfigurationError:
        where = self.name
        text = safe_str(exc)
        if "locked" in text or "busy" in text:
            return ConfigurationError(
                f"checkpoint {where!r} is locked by another process (is another run using it?); "
                f"waited {self.timeout:g}s. Wait for that run to finish or use another file",
                details={"path": where, "error": text},
            )
        return ConfigurationError(
            f"checkpoint {where!r} is not a datapunk checkpoint database or is corrupt "
            f"({text}); move it away to start a fresh run, or pass another path",
            details={"path": where, "error": text},
        )

    def close(self) -> None:
        """Close the database connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A store read after its run (runs(), dead_letters()) reopens its
        # connection; close it with the store rather than leave it to the GC.
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    # -------------------------------------------------------- the protocol
    def load(self, key: str) -> dict[str, Any] | None:
        """
        Return the saved state of run *key*, or ``None``.

        Args:
            key: The run key.

        Returns:
            The state (JSON data), with the stored ``fingerprint``.

        Raises:
            ConfigurationError: If the database is corrupt or locked.
        """
        import sqlite3

        with self._lock:
            try:
                row = (
                    self._connect()
                    .execute("SELECT fingerprint, state FROM datapunk_runs WHERE key = ?", (key,))
                    .fetchone()
                )
            except sqlite3.Error as exc:
                raise self._open_error(exc) from exc
        if row is None:
            return None
        try:
            state: dict[str, Any] = json.loads(row[1])
        except ValueError as exc:
            raise ConfigurationError(
                f"checkpoint {self.name!r} holds an unreadable state for run {key!r}: "
                "move the file away to start a fresh run",
                details={"path": self.name, "key": key},
            ) from exc
        state["fingerprint"] = row[0]
        return state

    def save(
        self, key: str, state: dict[str, Any], dead_letters: Sequence[DeadLetter] = ()
    ) -> None:
        """
        Save *state* and append *dead_letters* for run *key* in one durable transaction.

        Args:
            key: The run key.
            state: JSON data; its ``fingerprint`` is stored in its own column.
            dead_letters: Failed records to keep with the run.

        Raises:
            SinkError: If the transaction fails (disk full, database locked...);
                the previous state is kept.
        """
        import sqlite3

        now = _dt.datetime.now(_dt.UTC).isoformat()
        body = json.dumps(state, separators=(",", ":"), default=safe_str)
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if dead_letters:
                        seq = conn.execute(
                            "SELECT COALESCE(MAX(seq), 0) FROM datapunk_dead_letters WHERE key = ?",
                            (key,),
                        ).fetchone()[0]
                        conn.executemany(
                            "INSERT INTO datapunk_dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [
                                _dead_letter_row(key, seq + i, dl)
                                for i, dl in enumerate(dead_letters, 1)
                            ],
                        )
                    conn.execute(
                        "INSERT OR REPLACE INTO datapunk_runs VALUES (?, ?, ?, ?)",
                        (key, str(state.get("fingerprint", "")), body, now),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise SinkError(
                    f"cannot save checkpoint {self.name!r}: {safe_str(exc)}; the run stopped "
                    "at its last saved checkpoint and resumes from there",
                    path=self.name,
                    details={"error_type": type(exc).__name__},
                ) from exc

    def clear(self, key: str) -> None:
        """
        Forget run *key*: its state and its dead letters.

        Args:
            key: The run key.

        Raises:
            ConfigurationError: If the database is locked or corrupt.
        """
        import sqlite3

        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DELETE FROM datapunk_dead_letters WHERE key = ?", (key,))
                conn.execute("DELETE FROM datapunk_runs WHERE key = ?", (key,))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._open_error(exc) from exc

    def dead_letters(self, key: str) -> Iterator[DeadLetter]:
        """
        Yield the dead letters kept for run *key*, in the order they failed.

        Args:
            key: The run key.

        Yields:
            :class:`datapunk.DeadLetter` objects.
        """
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    "SELECT data FROM datapunk_dead_letters WHERE key = ? ORDER BY seq", (key,)
                )
                .fetchall()
            )
        for (data,) in rows:
            yield DeadLetter.from_dict(json.loads(data))

    def runs(self) -> dict[str, dict[str, Any]]:
        """
        Return every run the file knows, by key.

        Returns:
            Per key, the saved state.
        """
        with self._lock:
            rows = (
                self._connect()
                .execute("SELECT key, fingerprint, state FROM datapunk_runs")
                .fetchall()
            )
        out: dict[str, dict[str, Any]] = {}
        for key, fingerprint, body in rows:
            state = json.loads(body)
            state["fingerprint"] = fingerprint
            out[key] = state
        return out

    def __repr__(self) -> str:
        return f"SQLiteCheckpoint({self.name!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_conn"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _dead_letter_row(key: str, seq: int, dl: DeadLetter) -> tuple[Any, ...]:
    data = dl.to_dict()
    return (
        key,
        seq,
        json.dumps(data["position"]),
        dl.stage,
        dl.error_type,
        dl.message,
        dl.attempts,
        dl.run_id,
        json.dumps(data, separators=(",", ":"), default=safe_str, ensure_ascii=False),
    )
