"""
Dask: partitions of the source processed on a Dask cluster.

Each partition is a run of consecutive chunks, processed on a worker by the
fused serial loop. Partitions are cut on chunk boundaries, so the chunks (and
the batches of batch stages) are exactly those of a serial run, and so are the
outputs, counters and dead letters. JSON Lines and CSV files are split by byte
ranges and Parquet files by row groups, read by the workers themselves; every
other source is read by the calling process and its chunks are shipped to the
workers. Outputs are written by the workers, one part per partition, and
assembled atomically by the calling process (see :mod:`datapunk.io._parts`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import pickle
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, final

import attrs

from datapunk._core.concurrent import failed_chunk
from datapunk._core.engine import process_chunk
from datapunk._core.errors import ConfigurationError, StageError
from datapunk._core.types import safe_str
from datapunk.runners._blocking import BlockingRunner
from datapunk.runners._common import check_job, positive, sink_mode, write_outputs
from datapunk.runners._ranges import absolute, file_ranges

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from datapunk._core.adapters import RawChunk
    from datapunk._core.engine import ChunkResult, Op
    from datapunk._core.report import RunReport
    from datapunk._core.run import Job

__all__ = ["Dask"]

_INSTALL = "pip install datapunk[dask]"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ConfigurationError(
            f"the Dask runner needs dask.distributed: {_INSTALL}",
            details={"install": _INSTALL},
        ) from exc
    return distributed


# ------------------------------------------------------------ partitions
@attrs.frozen
class _Chunks:
    """A partition read by the parent: its chunks travel with the task."""

    chunks: list[RawChunk]

    def read(self, chunk_size: int) -> Iterator[RawChunk]:
        return iter(self.chunks)


@attrs.frozen
class _ParquetRows:
    """Rows ``start..end`` of a Parquet file, read by the worker from their row groups."""

    source: Any
    start: int
    end: int
    groups: tuple[int, ...]
    skip: int

    def read(self, chunk_size: int) -> Iterator[RawChunk]:
        src = self.source
        wanted = self.end - self.start
        skip, index = self.skip, self.start
        rows: list[Any] = []
        with src._open() as pf:
            batches = pf.iter_batches(
                batch_size=src.batch_size, columns=src.columns, row_groups=list(self.groups)
            )
            for batch in batches:
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                take = min(batch.num_rows - skip, wanted)
                rows.extend(batch.slice(skip, take).to_pylist())
                skip, wanted = 0, wanted - take
                while len(rows) >= chunk_size:
                    head, rows = rows[:chunk_size], rows[chunk_size:]
                    yield range(index, index + len(head)), head, []
                    index += len(head)
                if not wanted:
                    break
        if rows:
            yield range(index, index + len(rows)), rows, []


def _parquet_parts(source: Any, chunk_size: int, partitions: int) -> list[_ParquetRows] | None:
    """Cut a Parquet file into row ranges of whole chunks (``None``: cannot)."""
    from datapunk.io._files import _is_gzip

    if _is_gzip(source.path):
        return None  # a compressed file cannot be entered in the middle
    with source._open() as pf:
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + n)
    total = starts[-1]
    n_chunks = math.ceil(total / chunk_size)
    per = math.ceil(n_chunks / max(1, partitions)) * chunk_size
    parts = []
    for start in range(0, total, per):
        end = min(total, start + per)
        groups = tuple(
            g for g in range(len(sizes)) if starts[g] < end and starts[g + 1] > start and sizes[g]
        )
        parts.append(_ParquetRows(source, start, end, groups, start - starts[groups[0]]))
    return parts


# ----------------------------------------------------------------- worker
_OPS_CACHE: dict[str, list[Op]] = {}


def _load_ops(token: str, blob: bytes) -> list[Op]:
    ops = _OPS_CACHE.get(token)
    if ops is None:
        import cloudpickle

        ops = cloudpickle.loads(blob)
        _OPS_CACHE.clear()  # one pipeline at a time per worker process
        _OPS_CACHE[token] = ops
    return ops


def _run_partition(
    token: str, blob: bytes, part: Any, chunk_size: int, run_id: str, out: Any = None
) -> tuple[str, Any]:
    """
    Process one partition on a worker: the fused serial loop, chunk after chunk.

    *out* says where the outputs go: ``None``, back with the results;
    ``"discard"``, nowhere (only counted); else a sink part, written here and
    committed at the end (its receipt rides on the last chunk's result).
    """
    ops = _load_ops(token, blob)
    results: list[ChunkResult] = []
    try:
        for positions, records, malformed in part.read(chunk_size):
            result = process_chunk(ops, positions, records, run_id, malformed)
            write_outputs(result, out)
            results.append(result)
        if out is not None and out != "discard":
            if results:
                results[-1].receipt = out.commit()
            else:
                out.abort()
    except Exception as exc:  # on_error="raise", an unreadable file range, a failing part
        if out is not None and out != "discard":
            with contextlib.suppress(Exception):
                out.abort()
        error: Exception = exc
        try:
            pickle.dumps(exc)
        except Exception:
            error = StageError(f"{type(exc).__name__}: {safe_str(exc)}")
        return "error", (len(results), results, error)
    return "ok", results


# ----------------------------------------------------------------- runner
@final
class Dask(BlockingRunner):
    """
    Run partitions of the source on a Dask cluster (``pip install datapunk[dask]``).

    The source is cut into partitions of whole chunks. A JSON Lines or CSV
    file is cut into byte ranges (the calling process scans it once to find
    where every chunk starts, so a quoted CSV field that spans lines is never
    cut) and a Parquet file into row ranges of whole row groups; the workers
    read their ranges themselves (the file must be at the same path on every
    worker: a shared or network file system). Other sources (iterables,
    gzip-compressed files, any ``Source``) are read by the calling process and
    their chunks are shipped with the tasks. Each partition runs the fused
    serial loop on a worker.

    Outputs are written per partition, on the workers, when the sink is a
    :class:`~datapunk.plugins.PartitionedSink` (the JSON Lines, JSON and CSV
    file sinks are): each worker writes its partition to a part file in a
    staging directory next to the output and commits it; when every partition
    is done, the calling process assembles the parts in input order and
    commits the output atomically (a failed run leaves no output and no
    parts). The output is byte for byte the one a serial run writes. Other
    sinks (lists, callables, Parquet) receive the outputs in the calling
    process. The counters and dead letters come back and are merged, in
    input order, into one :class:`datapunk.RunReport`; dead letters are
    written by the calling process.

    Stages travel to the workers with cloudpickle, so lambdas work; the
    modules they use must be importable on the workers.

    Args:
        client: A ``distributed.Client``. ``None`` uses the current default
            client, else the scheduler Dask's configuration names (the
            ``DASK_SCHEDULER_ADDRESS`` environment variable, handy with
            ``datapunk process --runner dask``), else a local cluster started
            for the run. For a real cluster:
            ``Dask(Client("tcp://scheduler:8786"))``.
        partitions: How many partitions to cut a file or a list into, at
            most (default: twice the cluster's threads). A JSON Lines or CSV
            file is cut into ranges of about equal bytes, submitted while the
            file is still being scanned. Other iterables are cut every
            ``partition_chunks`` chunks, as they are read.
        partition_chunks: Chunks per partition for iterables of unknown
            length (default 4).
        ordered: Deliver outputs in input order (default). With ``False``,
            partitions are delivered as they finish.
        max_in_flight: Partitions submitted and not yet delivered at most
            (default: twice the cluster's threads).
        write: ``"workers"`` (default) to write outputs on the workers when
            the sink supports parts; ``"caller"`` to bring every output back
            to the calling process and write it there.

    Memory bound: at most ``max_in_flight`` partitions are in flight; for
    sources read by the calling process that is ``max_in_flight x
    partition_chunks x chunk_size`` records held in the caller, and a file
    range is read by its worker one chunk at a time. Outputs written on the
    workers never come back; otherwise the outputs of up to
    ``max_in_flight`` partitions wait in the caller to be written.

    A task lost with its worker is retried by Dask. A partition that kills
    workers again and again (``distributed.KilledWorker``) is run again one
    chunk at a time: the chunk that still kills its worker fails into the
    dead letters (attributed to the first stage, since which stage crashed
    cannot be known), and the run goes on.

    Raises:
        ConfigurationError: dask is not installed, or an option is invalid.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("client", "max_in_flight", "ordered", "partition_chunks", "partitions", "write")
    name = "dask"

    def __init__(
        self,
        client: Any = None,
        partitions: int | None = None,
        *,
        partition_chunks: int = 4,
        ordered: bool = True,
        max_in_flight: int | None = None,
        write: Literal["workers", "caller"] = "workers",
    ) -> None:
        self.client = client
        self.partitions = positive("partitions", partitions, "Dask", optional=True)
        self.partition_chunks: int = positive("partition_chunks", partition_chunks, "Dask") or 1
        self.ordered = bool(ordered)
        self.max_in_flight = positive("max_in_flight", max_in_flight, "Dask", optional=True)
        if write not in ("workers", "caller"):
            raise ConfigurationError(
                f"Dask: write must be 'workers' or 'caller', got {write!r}",
                details={"runner": "Dask", "option": "write", "value": repr(write)},
            )
        self.write: Literal["workers", "caller"] = write

    def run(self, job: Job) -> RunReport:
        """
        Run *job* on the cluster.

        Args:
            job: The run to execute.

        Returns:
            The run's report.

        Raises:
            ConfigurationError: dask is missing, or the job needs something
                this runner cannot do (checkpoints).
        """
        distributed = _distributed()
        check_job(job, "Dask", ordered=self.ordered, checkpoints=False)
        import cloudpickle

        blob: bytes = cloudpickle.dumps(job.ops, protocol=pickle.HIGHEST_PROTOCOL)
        token = hashlib.sha256(blob).hexdigest()[:16] + job.run_id
        with contextlib.ExitStack() as stack:
            client = self.client
            if client is None:
                client = _default_client(distributed, stack)
            threads = max(1, sum(client.nthreads().values()))
            out = sink_mode(job, workers_write=self.write == "workers")
            results = self._results(job, client, distributed, blob, token, threads, out)
            try:
                return job.execute(results, self.name)
            finally:
                results.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def _partitions(self, job: Job, threads: int) -> Iterator[Any]:
        obj = job.reader.obj
        size = job.chunk_size
        target = self.partitions or 2 * threads
        ranges = file_ranges(obj, size, target)
        if ranges is not None:
            return ranges
        if _is_parquet(obj):
            parts = _parquet_parts(absolute(obj), size, target)
            if parts is not None:
                return iter(parts)
        per = self.partition_chunks
        if isinstance(obj, list | tuple):
            per = max(1, math.ceil(math.ceil(len(obj) / size) / target))
        return _group(job.chunks(), per)

    def _results(
        self,
        job: Job,
        client: Any,
        distributed: Any,
        blob: bytes,
        token: str,
        threads: int,
        out: str | None,
    ) -> Generator[ChunkResult, None, None]:
        window = self.max_in_flight or 2 * threads
        # The stages travel inline with every task (they are small, and
        # scattered data would be lost with a dying worker); workers unpickle
        # them once per run (cached by token).
        pending: deque[tuple[str, Any, Any]] = deque()
        size, run_id = job.chunk_size, job.run_id

        def submit(key: str, part: Any, **options: Any) -> Any:
            if isinstance(part, _Chunks):
                # Records go to a worker as data, not inside the task graph: the
                # scheduler keeps submitted graphs, and would grow with the source.
                part = _scatter(client, distributed, part)
            # Outputs go to a part of the sink, written by the worker, or back here.
            target = job.sink.part(key) if out == "parts" else out
            return client.submit(
                _run_partition, token, blob, part, size, run_id, target, pure=False, **options
            )

        try:
            for i, part in enumerate(self._partitions(job, threads)):
                key = f"{i:06d}"
                pending.append((key, part, submit(key, part)))
                while len(pending) >= window:
                    yield from self._take(job, pending, distributed, submit)
            while pending:
                yield from self._take(job, pending, distributed, submit)
        finally:
            for _, _, fut in pending:
                fut.cancel()

    def _take(
        self,
        job: Job,
        pending: deque[tuple[str, Any, Any]],
        distributed: Any,
        submit: Callable[..., Any],
    ) -> Iterator[ChunkResult]:
        if self.ordered:
            entry = pending.popleft()
        else:
            distributed.wait([f for _, _, f in pending], return_when="FIRST_COMPLETED")
            entry = next(e for e in pending if e[2].done())
            pending.remove(entry)
        key, part, fut = entry
        try:
            kind, value = fut.result()
        except (distributed.KilledWorker, _cancelled(distributed)) as exc:
            # Killed with its workers, or its records were lost with one.
            job.log.warning("worker.died", runner="dask", error=safe_str(exc, 200))
            yield from self._isolate(job, key, part, distributed, submit)
            return
        yield from _unpack(kind, value)

    def _isolate(
        self, job: Job, key: str, part: Any, distributed: Any, submit: Callable[..., Any]
    ) -> Iterator[ChunkResult]:
        """
        Run a partition whose workers died again, one chunk at a time.

        Partitions that were only unlucky (on a worker that another task
        killed) succeed; the chunk that kills its worker again fails into the
        dead letters, alone.
        """
        for j, chunk in enumerate(part.read(job.chunk_size)):
            fut = submit(f"{key}-{j:06d}", _Chunks([chunk]), retries=0)
            try:
                kind, value = fut.result()
            except (distributed.KilledWorker, _cancelled(distributed)) as exc:
                yield self._killed(job, chunk, exc)
                continue
            yield from _unpack(kind, value)

    def _killed(self, job: Job, chunk: RawChunk, exc: BaseException) -> ChunkResult:
        op = job.ops[0] if job.ops else None
        positions, records, malformed = chunk
        span = f"{positions[0]!r}..{positions[len(positions) - 1]!r}" if len(positions) else ""
        message = (
            f"the Dask worker running the chunk at positions {span} died, again when the "
            f"chunk was run alone ({safe_str(exc, 200)}); every record of that chunk failed "
            "and the run continued. Replay these dead letters with the Serial runner to find "
            "the record that crashes a stage"
        )
        if op is not None and op.on_error == "raise":
            raise StageError(message, stage=op.name, position=positions[0] if span else None)
        return failed_chunk(
            job.ops,
            positions,
            records,
            job.run_id,
            malformed,
            op_index=0,
            error_type="WorkerDied",
            message=message,
        )

    def __repr__(self) -> str:
        extra = f", partitions={self.partitions}" if self.partitions else ""
        return f"Dask(client={self.client!r}{extra})"


def _scatter(client: Any, distributed: Any, data: Any, attempts: int = 5) -> Any:
    """
    Send *data* to a worker, trying again if the worker dies as it arrives.

    A worker killed by a record (the case the runner isolates) may be the one
    the data was being sent to; its replacement, or another worker, takes it.
    """
    closed: tuple[type[BaseException], ...] = (distributed.comm.CommClosedError, OSError)
    for attempt in range(attempts):
        try:
            return client.scatter(data, hash=False)
        except closed:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _default_client(distributed: Any, stack: contextlib.ExitStack) -> Any:
    """
    The client to use when none was given.

    The current default client; else one connected to the scheduler Dask's
    configuration names (``DASK_SCHEDULER_ADDRESS``); else a local cluster
    started for the run (and closed with it).
    """
    try:
        return distributed.get_client()
    except ValueError:
        pass
    from dask.config import get as dask_config

    address = dask_config("scheduler-address", None)
    if address:
        return stack.enter_context(distributed.Client(address, set_as_default=False))
    cluster = stack.enter_context(distributed.LocalCluster(processes=True, dashboard_address=":0"))
    return stack.enter_context(distributed.Client(cluster, set_as_default=False))


def _is_parquet(obj: Any) -> bool:
    """Whether *obj* is datapunk's ParquetSource (without importing pyarrow)."""
    return type(obj).__name__ == "ParquetSource" and type(obj).__module__.startswith("datapunk")


def _cancelled(distributed: Any) -> type[BaseException]:
    error: type[BaseException] = getattr(
        distributed.client, "FutureCancelledError", distributed.CancelledError
    )
    return error


def _unpack(kind: str, value: Any) -> Iterator[ChunkResult]:
    if kind == "ok":
        yield from value
        return
    _, done, error = value
    yield from done
    raise error


def _group(chunks: Iterator[RawChunk], per: int) -> Iterator[_Chunks]:
    group: list[RawChunk] = []
    for chunk in chunks:
        group.append(chunk)
        if len(group) >= per:
            yield _Chunks(group)
            group = []
    if group:
        yield _Chunks(group)


Dask.__module__ = "datapunk.runners"
