"""RunReport: what a run did, immutable, for terminals, notebooks and JSON."""

from __future__ import annotations

import json
import random
from html import escape
from typing import TYPE_CHECKING, Any

import attrs

from datapunk._core.engine import (
    BREAKER_OPENS,
    DEGRADED,
    FAILED,
    FILTERED,
    IN,
    N_COUNTERS,
    OUT,
    RETRIES,
    SKIPPED,
    SOURCE_STAGE,
    WARNINGS,
    ChunkResult,
    Op,
)
from datapunk._core.types import DeadLetter, Position, Reason, jsonable

if TYPE_CHECKING:
    import datetime as _dt
    from collections.abc import Mapping, Sequence

__all__ = ["ErrorSample", "RunReport", "RunStats", "StageReport"]

_RESERVOIR = 2048


@attrs.frozen
class ErrorSample:
    """
    One failed (or warned) record, as kept in a report's bounded sample.

    Attributes:
        stage: The stage that failed it.
        position: The record's position in its source.
        error_type: Name of the exception type.
        message: The error message.
        reasons: One :class:`datapunk.Reason` per problem.
        action: What happened to the record: ``"dead_letter"``, ``"skip"``,
            ``"warn"`` or ``"degrade"``.
    """

    stage: str
    position: Position | None
    error_type: str
    message: str
    reasons: tuple[Reason, ...] = ()
    action: str = "dead_letter"

    def to_dict(self) -> dict[str, Any]:
        """Return the sample as JSON-friendly data."""
        return {
            "stage": self.stage,
            "position": jsonable(self.position),
            "error_type": self.error_type,
            "message": self.message,
            "reasons": [r.to_dict() for r in self.reasons],
            "action": self.action,
        }


@attrs.frozen
class StageReport:
    """
    Counters and latencies of one stage in a run.

    Attributes:
        name: The stage's (unique) name.
        kind: ``map``, ``filter``, ``flat_map`` or ``batch``.
        records_in: Records that reached the stage.
        records_out: Records it emitted.
        filtered: Records a filter dropped.
        failed: Records that failed and went to the dead letters.
        skipped: Records that failed under ``on_error="skip"``.
        warnings: Records a warn-only validator let pass.
        retries: Retries made.
        degraded: Records an ``optional`` stage passed on unchanged after failing.
        breaker_opens: Times a failure in this stage opened its circuit breaker.
        seconds: Time spent in the stage.
        latency_p50_ms: Median time per record, in milliseconds.
        latency_p95_ms: 95th percentile, in milliseconds.
        latency_p99_ms: 99th percentile, in milliseconds.
    """

    name: str
    kind: str
    records_in: int = 0
    records_out: int = 0
    filtered: int = 0
    failed: int = 0
    skipped: int = 0
    warnings: int = 0
    retries: int = 0
    degraded: int = 0
    breaker_opens: int = 0
    seconds: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    latency_p99_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the stage report as JSON-friendly data."""
        return attrs.asdict(self)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = round(q * (len(sorted_values) - 1))
    return sorted_values[k]


@attrs.frozen
class RunReport:
    """
    What a run did: counts, per-stage figures, timings and a sample of errors.

    A report is immutable. ``str(report)`` is a table for terminals,
    ``report._repr_html_()`` renders in Jupyter and :meth:`to_json` serialises it.

    For every 1→1 chain of stages, ``records_in == records_out + filtered +
    failed + skipped`` (``flat_map`` stages may emit more or fewer records).

    Attributes:
        run_id: Unique id of the run (the correlation id in logs).
        pipeline: The pipeline's name.
        started: When the run started (UTC).
        finished: When it finished (UTC).
        duration_s: Wall time in seconds.
        records_in: Records read from the source (malformed ones included).
        records_out: Records delivered to the sink.
        filtered: Records dropped by filters.
        failed: Records that failed (sent to the dead letters).
        skipped: Records that failed under ``on_error="skip"``.
        warnings: Records a warn-only validator let pass.
        retried: Retries made, over all stages.
        degraded: Records passed on unchanged by failing ``optional`` stages.
        throughput: Records read per second.
        stages: Per stage name, a :class:`StageReport`.
        errors: A bounded sample of failures and warnings.
        dead_letters: Every failed record, when the run had no dead-letter sink.
        ok: True if the run went through to the end (failed records
            included); False if it was stopped.
        stop_reason: Why the run stopped early, if it did.
        runner: The runner's name.
    """

    run_id: str
    pipeline: str
    started: _dt.datetime
    finished: _dt.datetime
    duration_s: float
    records_in: int
    records_out: int
    filtered: int
    failed: int
    skipped: int
    warnings: int
    retried: int
    degraded: int
    throughput: float
    stages: Mapping[str, StageReport]
    errors: tuple[ErrorSample, ...]
    dead_letters: tuple[DeadLetter, ...] = ()
    ok: bool = True
    stop_reason: str | None = None
    runner: str = "serial"

    def to_dict(self) -> dict[str, Any]:
        """
        Return the report as JSON-friendly data.

        Returns:
            Plain data: timestamps as ISO 8601, stages and errors as mappings.
        """
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "runner": self.runner,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "duration_s": self.duration_s,
            "records_in": self.records_in,
            "records_out": self.records_out,
            "filtered": self.filtered,
            "failed": self.failed,
            "skipped": self.skipped,
            "warnings": self.warnings,
            "retried": self.retried,
            "degraded": self.degraded,
            "throughput": self.throughput,
            "ok": self.ok,
            "stop_reason": self.stop_reason,
            "stages": {name: s.to_dict() for name, s in self.stages.items()},
            "errors": [e.to_dict() for e in self.errors],
            "dead_letters": [d.to_dict() for d in self.dead_letters],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """
        Return the report as JSON text.

        Args:
            indent: Indentation, or ``None`` for one line.

        Returns:
            JSON text.
        """
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    # ------------------------------------------------------------- rendering
    def _summary(self) -> str:
        state = "ok" if self.ok else f"STOPPED: {self.stop_reason}"
        return (
            f"run {self.run_id} of {self.pipeline!r} ({self.runner}): {state}\n"
            f"in {self.records_in:,}  out {self.records_out:,}  filtered {self.filtered:,}  "
            f"failed {self.failed:,}  skipped {self.skipped:,}  warnings {self.warnings:,}"
            + (f"  retried {self.retried:,}" if self.retried else "")
            + (f"  degraded {self.degraded:,}" if self.degraded else "")
            + f"\n{self.duration_s:.3f}s, {self.throughput:,.0f} records/s"
        )

    _COLUMNS = (
        "stage",
        "kind",
        "in",
        "out",
        "filtered",
        "failed",
        "skipped",
        "warn",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    )

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (
                s.name,
                s.kind,
                f"{s.records_in:,}",
                f"{s.records_out:,}",
                f"{s.filtered:,}",
                f"{s.failed:,}",
                f"{s.skipped:,}",
                f"{s.warnings:,}",
                f"{s.latency_p50_ms:.4f}",
                f"{s.latency_p95_ms:.4f}",
                f"{s.latency_p99_ms:.4f}",
            )
            for s in self.stages.values()
        ]

    def __str__(self) -> str:
        rows = [self._COLUMNS, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._COLUMNS))]

        def line(r: tuple[str, ...]) -> str:
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
            cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:], strict=True)]
            return "  ".join(cells).rstrip()

        out = [self._summary(), "", line(rows[0]), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in rows[1:]]
        if self.errors:
            out += ["", f"errors (sample of {len(self.errors)}):"]
            for e in self.errors[:10]:
                out.append(f"  [{e.action}] {e.stage} @ {e.position}: {e.error_type}: {e.message}")
            if len(self.errors) > 10:  # noqa: PLR2004
                out.append(f"  … {len(self.errors) - 10} more in report.errors")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(c)}</th>" for c in self._COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self._rows()
        )
        errs = "".join(
            f"<li>[{escape(e.action)}] {escape(e.stage)} @ {escape(str(e.position))}: "
            f"{escape(e.error_type)}: {escape(e.message)}</li>"
            for e in self.errors[:10]
        )
        summary = escape(self._summary()).replace("\n", "<br>")
        return (
            f'<div class="datapunk-report"><p>{summary}</p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            + (f"<p>errors (sample of {len(self.errors)}):</p><ul>{errs}</ul>" if errs else "")
            + "</div>"
        )


class RunStats:
    """Mutable counters of a run in progress; :meth:`freeze` makes the report."""

    def __init__(self, ops: Sequence[Op], error_sample_size: int = 100) -> None:
        self.ops = ops
        self.counts = [[0] * N_COUNTERS for _ in ops]
        self.seconds = [0.0] * len(ops)
        self.latencies: list[list[float]] = [[] for _ in ops]
        self._seen = [0] * len(ops)
        self._rng = random.Random(0)  # noqa: S311 - sampling, not security
        self.records_in = 0
        self.records_out = 0
        self.source_failed = 0
        self.errors: list[ErrorSample] = []
        self.error_sample_size = error_sample_size

    @property
    def failed(self) -> int:
        """Failed records so far, over the source and every stage."""
        return self.source_failed + sum(c[FAILED] for c in self.counts)

    @property
    def skipped(self) -> int:
        """Skipped records so far."""
        return sum(c[SKIPPED] for c in self.counts)

    def merge(self, result: ChunkResult) -> None:
        """Add one chunk's counters, timings and error sample."""
        self.records_in += result.records_in
        self.records_out += len(result.outputs) + result.written
        for i, (mine, theirs) in enumerate(zip(self.counts, result.counts, strict=True)):
            for j in range(N_COUNTERS):
                mine[j] += theirs[j]
            n = theirs[IN]
            if n:
                self.seconds[i] += result.seconds[i]
                if result.latencies is None:
                    self._sample(i, result.seconds[i] / n)
                else:
                    for latency in result.latencies[i]:
                        self._sample(i, latency)
        for action, dl in result.failures:
            if dl.stage == SOURCE_STAGE:
                self.source_failed += 1
            self.add_error(action, dl)

    def add_error(self, action: str, dl: DeadLetter) -> None:
        """Keep *dl* in the bounded error sample (the first ``error_sample_size``)."""
        sample = ErrorSample(dl.stage, dl.position, dl.error_type, dl.message, dl.reasons, action)
        if len(self.errors) < self.error_sample_size:
            self.errors.append(sample)

    def _sample(self, i: int, seconds_per_record: float) -> None:
        self._seen[i] += 1
        bucket = self.latencies[i]
        if len(bucket) < _RESERVOIR:
            bucket.append(seconds_per_record)
        else:
            k = self._rng.randrange(self._seen[i])
            if k < _RESERVOIR:
                bucket[k] = seconds_per_record

    def freeze(
        self,
        *,
        run_id: str,
        pipeline: str,
        started: _dt.datetime,
        finished: _dt.datetime,
        duration_s: float,
        dead_letters: Sequence[DeadLetter] = (),
        ok: bool = True,
        stop_reason: str | None = None,
        runner: str = "serial",
    ) -> RunReport:
        """Build the immutable :class:`RunReport`."""
        stages: dict[str, StageReport] = {}
        for op, c, secs, lat in zip(
            self.ops, self.counts, self.seconds, self.latencies, strict=True
        ):
            ordered = sorted(lat)
            stages[op.name] = StageReport(
                name=op.name,
                kind=op.kind,
                records_in=c[IN],
                records_out=c[OUT],
                filtered=c[FILTERED],
                failed=c[FAILED],
                skipped=c[SKIPPED],
                warnings=c[WARNINGS],
                retries=c[RETRIES],
                degraded=c[DEGRADED],
                breaker_opens=c[BREAKER_OPENS],
                seconds=secs,
                latency_p50_ms=_percentile(ordered, 0.50) * 1000,
                latency_p95_ms=_percentile(ordered, 0.95) * 1000,
                latency_p99_ms=_percentile(ordered, 0.99) * 1000,
            )
        return RunReport(
            run_id=run_id,
            pipeline=pipeline,
            started=started,
            finished=finished,
            duration_s=duration_s,
            records_in=self.records_in,
            records_out=self.records_out,
            filtered=sum(c[FILTERED] for c in self.counts),
            failed=self.failed,
            skipped=self.skipped,
            warnings=sum(c[WARNINGS] for c in self.counts),
            retried=sum(c[RETRIES] for c in self.counts),
            degraded=sum(c[DEGRADED] for c in self.counts),
            throughput=self.records_in / duration_s if duration_s > 0 else 0.0,
            stages=stages,
            errors=tuple(self.errors),
            dead_letters=tuple(dead_letters),
            ok=ok,
            stop_reason=stop_reason,
            runner=runner,
        )
