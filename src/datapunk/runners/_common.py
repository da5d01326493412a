"""Helpers the built-in runners share: option checks and in-order delivery."""

from __future__ import annotations

from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any, TypeVar

from datapunk._core.errors import ConfigurationError, SinkError
from datapunk._core.types import safe_str

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from datapunk._core.adapters import RawChunk
    from datapunk._core.engine import ChunkResult
    from datapunk._core.run import Job

__all__ = ["check_job", "positive", "resize", "run_futures", "sink_mode", "write_outputs"]

T = TypeVar("T")


def positive(name: str, value: Any, runner: str, *, optional: bool = False) -> int | None:
    """
    Check that *value* is a positive integer (or ``None`` when *optional*).

    Raises:
        ConfigurationError: It is not.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"{runner}: {name} must be a positive integer, got {value!r}",
            details={"runner": runner, "option": name, "value": repr(value)},
        )
    return value


def check_job(job: Job, runner: str, *, ordered: bool, checkpoints: bool = True) -> None:
    """
    Refuse, at start, what *runner* cannot do with *job*.

    Raises:
        ConfigurationError: The job asks for something the runner cannot honour.
    """
    if job.checkpoint is not None and (not ordered or not checkpoints):
        why = "ordered=False delivers chunks out of order" if checkpoints else "it cannot"
        raise ConfigurationError(
            f"runner {runner} cannot resume from a checkpoint ({why}); run with "
            f"{'ordered=True' if checkpoints else 'the Serial, Threads or Processes runner'} "
            "or without checkpoint=",
            details={"runner": runner, "option": "checkpoint"},
        )


def resize(job: Job, chunk_size: int | None) -> None:
    """Make *job* read chunks of *chunk_size* records (``None``: keep the job's)."""
    if chunk_size is not None:
        job.chunk_size = chunk_size
        job.reader.size = chunk_size


def run_futures(
    chunks: Iterator[RawChunk],
    submit: Callable[[RawChunk], Future[T]],
    window: int,
    *,
    ordered: bool,
) -> Generator[T, None, None]:
    """
    Submit chunks, at most *window* at a time, and yield their results.

    The source is read only when a slot is free (backpressure). With *ordered*
    results come in input order; otherwise as they complete. When the consumer
    stops early (an error), pending work is cancelled.
    """
    pending: deque[Future[T]] = deque()
    try:
        for chunk in chunks:
            pending.append(submit(chunk))
            while len(pending) >= window:
                yield from _take(pending, ordered=ordered)
        while pending:
            yield from _take(pending, ordered=ordered)
    finally:
        for fut in pending:
            fut.cancel()


def _take(pending: deque[Future[T]], *, ordered: bool) -> Iterator[T]:
    if ordered:
        yield pending.popleft().result()
        return
    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    for fut in [f for f in pending if f in done]:
        pending.remove(fut)
        yield fut.result()


def sink_mode(job: Job, *, workers_write: bool = True) -> str | None:
    """
    Decide where a worker's outputs go, and prepare *job* for it.

    Returns:
        ``"discard"`` when the run has no sink (outputs are only counted);
        ``"parts"`` when the sink is partitioned and workers may write (the
        job then collects receipts and commits the parts); ``None`` to send
        outputs back to the caller.
    """
    if job.sink.discard:
        return "discard"
    if workers_write and job.checkpoint is None and job.sink.partitioned:
        job.receipts = []
        return "parts"
    return None


def write_outputs(result: ChunkResult, out: Any) -> None:
    """
    On a worker: write *result*'s outputs to the sink part *out*, keeping only their count.

    *out* is ``None`` (outputs go back with the result), ``"discard"`` (no
    sink: only counted) or a :class:`datapunk.plugins.SinkPart`.

    Raises:
        SinkError: The part could not take the records.
    """
    if out is None:
        return
    records = result.outputs
    if out != "discard" and records:
        try:
            out.write(records)
        except SinkError:
            raise
        except Exception as exc:
            raise SinkError(
                f"the sink part {safe_str(out, 100)} raised {type(exc).__name__}: "
                f"{safe_str(exc)}; the run stopped so that no record is lost"
            ) from exc
    result.written, result.outputs = len(records), []
