"""
Exactly-once output across SIGKILLs: the checkpoint's end-to-end proof (issue 5).

A subprocess runs a pipeline over 100,000 JSON Lines records with a
checkpoint. It is killed with SIGKILL at 20 random moments (while it reads,
processes, writes, or commits) and started again each time; the final output
must equal, byte for byte, that of an uninterrupted run, and the dead letters
must equal it field for field (run ids aside).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

N_RECORDS = 100_000
KILLS = 20

WORKER = r"""
import sys
import time

import datapunk

src, out, dead, db = sys.argv[1:5]


def parse(r):
    if r["i"] % 200 == 0:  # slow enough that kills land mid-run, not only at start-up
        time.sleep(0.005)
    if r["i"] % 37 == 0:
        raise ValueError(f"record {r['i']} is divisible by 37")
    return {"id": r["i"], "name": r["name"].upper(), "score": r["i"] * 0.5, "note": r["note"]}


def keep(r):
    return r["id"] % 5 != 0


def explode(r):
    return [r, {"id": r["id"], "copy": True}] if r["id"] % 11 == 0 else [r]


pipe = datapunk.Pipeline(
    datapunk.Stage(parse),
    datapunk.Filter(keep),
    datapunk.FlatMap(explode),
    name="kill-resume",
)
checkpoint = None if db == "-" else datapunk.SQLiteCheckpoint(db, every=10_000, seconds=None)
report = pipe.run(src, out, dead_letter=dead, checkpoint=checkpoint)
print(report.records_in, report.records_out, report.failed, report.filtered)
"""


def _run(args: list[str], cwd: Path, *, quiet: bool = False) -> subprocess.Popen[bytes]:
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        stdout=out,
        stderr=out,
    )


def _startup_seconds() -> float:
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import datapunk, sqlite3"],
        check=True,
        env={**os.environ},
    )
    return time.monotonic() - t0


def _dead_letters(path: Path) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("run_id")
    return rows


def _wait_until_writing(proc: subprocess.Popen[bytes], db: Path, limit: float = 60) -> None:
    """Return once the run has written output its checkpoint does not cover yet."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if _unacknowledged_bytes(db) > 0:
            return
        time.sleep(0.002)


def _has_checkpoint(db: Path) -> bool:
    import sqlite3

    if not db.exists():
        return False
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM datapunk_runs").fetchone()[0] > 0
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def _unacknowledged_bytes(db: Path) -> int:
    """Bytes written to the partial output after the last checkpoint (0 if none)."""
    import sqlite3

    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT state FROM datapunk_runs").fetchone()
    except sqlite3.Error:
        return 0
    finally:
        conn.close()
    if row is None:
        return 0
    token = json.loads(row[0]).get("tokens", {}).get("sink")
    if not token:
        return 0
    try:
        size = Path(token["tmp"]).stat().st_size
    except FileNotFoundError:  # the run finished and renamed it
        return 0
    return size - int(token["offset"])


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_output_5(tmp_path):
    """Twenty SIGKILLs, each followed by a resume, change neither output nor dead letters."""
    src = tmp_path / "in.jsonl"
    with src.open("w") as f:
        for i in range(N_RECORDS):
            note = f"{i:06d}" * 20  # ~120 bytes: output outgrows write buffers between checkpoints
            f.write(json.dumps({"i": i, "name": f"user{i}", "note": note}) + "\n")

    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    startup = _startup_seconds()
    t0 = time.monotonic()
    proc = _run([str(src), "out.jsonl", "dead.jsonl", "-"], ref_dir)
    _, err = proc.communicate(timeout=300)
    duration = time.monotonic() - t0
    assert proc.returncode == 0, err.decode()
    expected_out = (ref_dir / "out.jsonl").read_bytes()
    expected_dead = _dead_letters(ref_dir / "dead.jsonl")
    assert len(expected_dead) == len(range(0, N_RECORDS, 37))

    work = tmp_path / "resumed"
    work.mkdir()
    db = work / "run.db"
    args = [str(src), "out.jsonl", "dead.jsonl", str(db)]
    rng = random.Random(int(os.environ.get("KILL_SEED", "5")))
    kills = 0
    unacked_at_kill = []
    before_first_checkpoint = 0
    # Kill moments span start-up (import, opening the checkpoint, resuming)
    # and the run itself (reading, processing, writing, committing), short
    # enough that twenty kills happen before the run can finish.
    running = max(0.2, duration - startup)
    for k in range(KILLS):
        proc = _run(args, work, quiet=True)
        if k % 4 == 3:
            # Every fourth kill strikes while output is being written beyond
            # the last checkpoint (often in the middle of a line).
            _wait_until_writing(proc, db)
        else:
            time.sleep(rng.uniform(0.3 * startup, startup + running / 5))
        if proc.poll() is not None:  # finished before the kill: nothing to resume
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        kills += 1
        unacked_at_kill.append(_unacknowledged_bytes(db))
        before_first_checkpoint += not _has_checkpoint(db)
        assert not (work / "out.jsonl").exists(), "a killed run left a complete-looking output"
    proc = _run(args, work)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()

    assert kills == KILLS
    # Some kills struck after output was written but before it was acknowledged.
    assert any(n > 0 for n in unacked_at_kill), unacked_at_kill
    assert (work / "out.jsonl").read_bytes() == expected_out
    assert _dead_letters(work / "dead.jsonl") == expected_dead
    # Nothing is left behind: no temporary files next to the outputs.
    # The one exception: a kill in the few milliseconds between creating the
    # output's temporary file and committing the very first checkpoint leaves
    # that file orphaned (the output itself is still exact).
    leftovers = sorted(p.name for p in work.iterdir() if p.name.endswith(".tmp"))
    assert len(leftovers) <= 2 * before_first_checkpoint, leftovers
