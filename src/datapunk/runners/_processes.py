"""
Processes: for CPU-bound stages, one chunk per worker process at a time.

The parent reads the source (or, for a JSON Lines or CSV file, only finds its
chunks' byte ranges), sends each chunk to an idle worker over a pipe, and
merges the results in input order. Each worker runs the fused serial loop
on its chunk. A worker that dies (segfault, ``os._exit``, killed for memory)
fails only the records of the chunk it was running: they become dead letters
naming the stage that was running, a new worker takes its place, and the run
goes on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, cast, final

from datapunk._core.concurrent import failed_chunk, process_chunk_observed
from datapunk._core.errors import ConfigurationError, StageError
from datapunk._core.types import safe_str
from datapunk.runners._blocking import BlockingRunner
from datapunk.runners._common import check_job, positive, resize, sink_mode, write_outputs
from datapunk.runners._ranges import chunk_ranges

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from multiprocessing.context import SpawnProcess
    from multiprocessing.sharedctypes import Synchronized

    from datapunk._core.adapters import RawChunk
    from datapunk._core.engine import ChunkResult, Op
    from datapunk._core.report import RunReport
    from datapunk._core.run import Job

__all__ = ["Processes", "dumps"]

_INSTALL = "pip install datapunk[processes]"


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:
        return None
    return cloudpickle


def dumps(obj: Any, what: str) -> bytes:
    """
    Pickle *obj* for another process: pickle, else cloudpickle.

    Objects that refer to ``__main__`` (a notebook, a script run directly) are
    pickled by value with cloudpickle, since another process cannot import
    them by name.

    Args:
        obj: What to send.
        what: What it is, for the error message.

    Returns:
        The pickled bytes.

    Raises:
        ConfigurationError: *obj* cannot be pickled (and cloudpickle is
            missing or cannot pickle it either).
    """
    try:
        blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        error: Exception | None = exc
        blob = b""
    else:
        error = None
        if b"__main__" not in blob:
            return blob
    cp = _cloudpickle()
    if cp is None:
        if error is None:
            return blob  # refers to __main__; a spawned worker re-imports a script's main
        raise ConfigurationError(
            f"cannot send the {what} to worker processes: {type(error).__name__}: "
            f"{safe_str(error)}. Lambdas, nested and notebook-defined functions need "
            f"cloudpickle: {_INSTALL}",
            details={"install": _INSTALL},
        ) from error
    try:
        result: bytes = cp.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot send the {what} to worker processes: {type(exc).__name__}: "
            f"{safe_str(exc)}; stages and records must be picklable (cloudpickle was tried too)",
        ) from exc
    return result


# ------------------------------------------------------------------ worker
def _worker(conn: Connection, ops_blob: bytes, current: Synchronized[int]) -> None:
    """Entry point of a worker process: load the ops, then process chunks until told to stop."""
    with contextlib.suppress(ValueError, OSError):  # not in the main thread of a weird host
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        ops: list[Op] = pickle.loads(ops_blob)  # noqa: S301 - our own parent sent it
    except Exception as exc:
        conn.send_bytes(pickle.dumps(("init_error", f"{type(exc).__name__}: {safe_str(exc)}")))
        return
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))

    def on_op(i: int) -> None:
        current.value = i

    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not msg:
            return
        task, run_id, out = pickle.loads(msg)  # noqa: S301
        try:
            # A chunk of records, or a byte range of a file holding one chunk.
            positions, records, malformed = task if isinstance(task, tuple) else task.chunk()
            result = process_chunk_observed(ops, positions, records, run_id, malformed, on_op)
            current.value = -1
            # Outputs go back, nowhere ("discard"), or to a part of the sink, written here.
            write_outputs(result, out)
            if out is not None and out != "discard":
                result.receipt = out.commit()
            payload: tuple[str, Any] = ("ok", result)
        except Exception as exc:  # on_error="raise", a failing part: re-raised in order
            if out is not None and out != "discard":
                with contextlib.suppress(Exception):
                    out.abort()
            payload = ("error", exc)
        current.value = -1
        conn.send_bytes(_dump_result(payload))


def _dump_result(payload: tuple[str, Any]) -> bytes:
    try:
        return dumps(payload, "result")
    except ConfigurationError as exc:
        kind, value = payload
        if kind == "error":
            summary = StageError(
                f"{type(value).__name__}: {safe_str(value)} (the original exception could "
                "not be sent from the worker process)"
            )
            return pickle.dumps(("error", summary))
        return pickle.dumps(("unpicklable", safe_str(exc)))


# ------------------------------------------------------------------ parent
class _Worker:
    __slots__ = ("conn", "current", "job", "pid", "proc")

    def __init__(self, ctx: Any, ops_blob: bytes) -> None:
        parent, child = ctx.Pipe()
        self.current: Synchronized[int] = ctx.Value("i", -1, lock=False)
        self.proc: SpawnProcess = ctx.Process(
            target=_worker,
            args=(child, ops_blob, self.current),
            daemon=True,
            name="datapunk-process",
        )
        self.proc.start()
        child.close()
        self.conn: Connection = parent
        self.job: tuple[int, Any] | None = None  # (sequence, chunk or file range)
        self.pid = self.proc.pid

    def handshake(self) -> None:
        """Wait until the worker loaded the stages; raise if it could not."""
        ready = wait([self.conn, self.proc.sentinel])
        if self.conn in ready:
            with contextlib.suppress(EOFError, OSError):
                kind, value = pickle.loads(self.conn.recv_bytes())  # noqa: S301
                if kind == "ready":
                    return
                raise ConfigurationError(
                    f"a worker process could not load the pipeline's stages: {value}. Define "
                    "stage functions at module level in an importable module, or install "
                    f"cloudpickle ({_INSTALL}) for lambdas and notebook functions",
                    details={"install": _INSTALL},
                )
        self.proc.join(5)
        raise ConfigurationError(
            f"a worker process exited while starting ({_describe_exit(self.proc.exitcode)}); "
            "check that the pipeline's module can be imported without side effects and that "
            "a script guards its entry point with `if __name__ == '__main__':`"
        )

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send_bytes(b"")
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)
        with contextlib.suppress(OSError):
            self.conn.close()
        self.proc.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: often the system running out of memory)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


def _span(chunk: RawChunk) -> str:
    positions = chunk[0]
    if not len(positions):
        return "an empty chunk"
    return f"positions {positions[0]!r}..{positions[len(positions) - 1]!r}"


@final
class Processes(BlockingRunner):
    """
    Run chunks on worker processes, for CPU-bound stages.

    The calling process reads the source in chunks of *chunk_size* records and
    hands each chunk to an idle worker, which runs the stages on it and sends
    back the outputs, counters and failures; the results are merged in input
    order, so outputs, counters and dead letters are exactly those of a serial
    run with the same chunk size.

    An uncompressed JSON Lines or CSV file is only scanned by the calling
    process, for chunk boundaries: each worker reads and parses the byte range
    of its chunk itself. With a partitioned file sink (JSON Lines, JSON, CSV,
    Parquet with a schema), each worker writes its chunk's outputs as a part
    and the calling process assembles the parts at the end, as on Dask. A
    checkpointed run reads and writes in the calling process, so it can
    resume.

    Stages and records travel by :mod:`pickle`. Lambdas, nested functions and
    functions defined in a notebook or ``__main__`` go by value with
    cloudpickle (``pip install datapunk[processes]``). Workers are started
    with the ``spawn`` method, so a script must guard its entry point with
    ``if __name__ == "__main__":``.

    A worker that dies (a segfault in an extension, ``os._exit``, killed for
    using too much memory) fails the records of the chunk it was running, and
    only those: each becomes a dead letter of the stage that was running, with
    the exit reason in its message. A new worker replaces it and the run goes
    on. Those records may be sent to ``"skip"`` or stop the run
    (``"raise"``) according to that stage's error policy.

    Memory bound: at most ``2 x workers`` chunks are read and not yet
    delivered at any time (one running in each worker, the rest waiting to be
    delivered in order), i.e. ``2 x workers x chunk_size`` source records.

    Args:
        workers: Worker processes (default: the number of CPUs).
        chunk_size: Records per chunk sent to a worker (default: the run's
            ``chunk_size``, 1000). Larger chunks amortise the pickling.
        ordered: Deliver outputs in input order (default). With ``False``,
            chunks are delivered as they finish.
        start_method: ``"spawn"`` (default) or ``"forkserver"`` (workers
            start faster, but inherit the environment and ``sys.path`` the
            fork server had when it started). ``"fork"`` is refused: forking
            a multi-threaded process can deadlock.

    Raises:
        ConfigurationError: An option is invalid.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("chunk_size", "ordered", "start_method", "workers")
    name = "processes"

    def __init__(
        self,
        workers: int | None = None,
        chunk_size: int | None = None,
        *,
        ordered: bool = True,
        start_method: str = "spawn",
    ) -> None:
        self.workers: int = positive("workers", workers, "Processes", optional=True) or (
            os.cpu_count() or 1
        )
        self.chunk_size = positive("chunk_size", chunk_size, "Processes", optional=True)
        self.ordered = bool(ordered)
        if start_method not in ("spawn", "forkserver"):
            raise ConfigurationError(
                f"Processes: start_method must be 'spawn' or 'forkserver', got {start_method!r}",
                details={"option": "start_method", "value": repr(start_method)},
            )
        if start_method not in multiprocessing.get_all_start_methods():
            raise ConfigurationError(
                f"Processes: start_method {start_method!r} is not available on this platform"
            )
        self.start_method = start_method

    def run(self, job: Job) -> RunReport:
        """
        Run *job* to completion.

        Args:
            job: The run to execute.

        Returns:
            The run's report.

        Raises:
            ConfigurationError: Stages cannot be sent to workers, or the job
                needs something this runner cannot do.
        """
        check_job(job, "Processes", ordered=self.ordered)
        resize(job, self.chunk_size)
        ops_blob = dumps(job.ops, "pipeline's stages")
        ctx = multiprocessing.get_context(self.start_method)
        pool: list[_Worker] = []
        try:
            pool.extend(_Worker(ctx, ops_blob) for _ in range(self.workers))
            for w in pool:
                w.handshake()
            results = self._results(job, ctx, ops_blob, pool)
            try:
                return job.execute(results, self.name)
            finally:
                results.close()
        finally:
            for w in pool:
                w.stop()

    def _results(
        self, job: Job, ctx: Any, ops_blob: bytes, pool: list[_Worker]
    ) -> Generator[ChunkResult, None, None]:
        tasks = self._tasks(job)
        out = sink_mode(job)
        window = 2 * len(pool)
        done: dict[int, tuple[str, Any]] = {}
        sent = delivered = 0
        exhausted = False
        while True:
            # Hand chunks to idle workers while the window allows (backpressure).
            for w in pool:
                if exhausted or w.job is not None or sent - delivered >= window:
                    continue
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                part = job.sink.part(f"{sent:09d}") if out == "parts" else out
                w.conn.send_bytes(dumps((task, job.run_id, part), "records"))
                w.job = (sent, task)
                sent += 1
            # Deliver what is ready.
            while delivered in done or (not self.ordered and done):
                seq = delivered if self.ordered else next(iter(done))
                kind, value = done.pop(seq)
                delivered += 1
                if kind == "error":
                    raise value
                yield value
            busy = [w for w in pool if w.job is not None]
            if not busy:
                if exhausted and not done:
                    return
                continue
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for i, w in enumerate(pool):
                if w.job is None:
                    continue
                if w.conn in ready:
                    try:
                        msg = w.conn.recv_bytes()
                    except (EOFError, OSError):
                        msg = None
                    if msg is not None:
                        done[w.job[0]] = self._decode(job, w, msg)
                        w.job = None
                        continue
                if w.conn in ready or w.proc.sentinel in ready:
                    done[w.job[0]] = self._died(job, w)
                    w.job = None
                    w.stop()
                    pool[i] = replacement = _Worker(ctx, ops_blob)
                    replacement.handshake()

    def _tasks(self, job: Job) -> Iterator[Any]:
        """
        What to send to the workers: byte ranges of a file, else chunks of records.

        An uncompressed JSON Lines or CSV file is scanned here (lines, or the
        csv tokenizer: no records are built) and each worker reads and parses
        its own chunk; anything else is read here and its chunks are sent.
        A resumed run reads through its checkpoint, which skips what was done.
        """
        if job.checkpoint is None:
            ranges = chunk_ranges(job.reader.obj, job.chunk_size)
            if ranges is not None:
                return ranges
        return iter(job.chunks())

    def _chunk(self, w: _Worker) -> RawChunk:
        """The records of the task a worker was given (a range is read here)."""
        assert w.job is not None
        task = w.job[1]
        if isinstance(task, tuple):
            return cast("RawChunk", task)
        return cast("RawChunk", task.chunk())

    def _decode(self, job: Job, w: _Worker, msg: bytes) -> tuple[str, Any]:
        kind, value = pickle.loads(msg)  # noqa: S301 - our own worker sent it
        if kind == "unpicklable":
            chunk = self._chunk(w)
            return "ok", failed_chunk(
                job.ops,
                *chunk[:2],
                job.run_id,
                chunk[2],
                op_index=len(job.ops) - 1,
                error_type="UnpicklableOutput",
                message=(
                    f"the chunk at {_span(chunk)} was processed but its outputs could not be "
                    f"sent back from the worker process: {value}; make the last stage return "
                    "picklable records"
                ),
            )
        return kind, value

    def _died(self, job: Job, w: _Worker) -> tuple[str, Any]:
        assert w.job is not None
        w.proc.join(5)
        chunk = self._chunk(w)
        op_index = max(w.current.value, 0)
        op = job.ops[op_index] if job.ops else None
        stage = op.name if op is not None else "<pipeline>"
        message = (
            f"the worker process (pid {w.pid}) running stage {stage!r} on the chunk at "
            f"{_span(chunk)} died: {_describe_exit(w.proc.exitcode)}. Every record of that "
            "chunk failed; the run continued with a new worker. Find the record that crashes "
            "the stage by replaying these dead letters with the Serial runner"
        )
        if op is not None and op.on_error == "raise":
            return "error", StageError(message, stage=stage, position=chunk[0][0])
        result = failed_chunk(
            job.ops,
            *chunk[:2],
            job.run_id,
            chunk[2],
            op_index=op_index,
            error_type="WorkerDied",
            message=message,
        )
        job.log.warning("worker.died", pid=w.pid, stage=stage, records=len(chunk[1]))
        return "ok", result

    def __repr__(self) -> str:
        extra = f", chunk_size={self.chunk_size}" if self.chunk_size else ""
        order = ", ordered=False" if not self.ordered else ""
        return f"Processes(workers={self.workers}{extra}{order})"


Processes.__module__ = "datapunk.runners"
