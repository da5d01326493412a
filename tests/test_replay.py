"""Dead letters as data: replay them through a fixed pipeline (issue 5)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datapunk
from datapunk.state import DeadLetterSource, read_dead_letters

pytestmark = pytest.mark.integration


def strict(r):
    return {"id": r["id"], "amount": int(r["amount"])}


def lenient(r):
    try:
        amount = int(r["amount"])
    except ValueError:
        amount = int(float(r["amount"]))
    return {"id": r["id"], "amount": amount}


RECORDS = [
    {"id": 1, "amount": "10"},
    {"id": 2, "amount": "2.5"},
    {"id": 3, "amount": "x"},
    {"id": 4, "amount": "7.0"},
]


def test_replay_recovers_fixed_records_and_dead_letters_the_rest(tmp_path):
    """Records the fix handles are recovered; the others fail again, none lost."""
    first = datapunk.Pipeline(strict, name="load").run(RECORDS, [])
    assert [d.record["id"] for d in first.dead_letters] == [2, 3, 4]
    out: list[dict[str, int]] = []
    again: list[datapunk.DeadLetter] = []
    result = datapunk.replay(
        first.dead_letters, datapunk.Pipeline(lenient, name="load"), out, dead_letter=again
    )
    assert out == [{"id": 2, "amount": 2}, {"id": 4, "amount": 7}]
    assert (result.total, result.recovered, result.failed_again) == (3, 2, 1)
    (dl,) = again
    assert (dl.record, dl.position, dl.stage, dl.error_type) == (
        {"id": 3, "amount": "x"},
        2,  # the original position in the original source
        "lenient",
        "ValueError",
    )
    assert dl.message == "could not convert string to float: 'x'"
    assert str(result).startswith("replayed 3 dead letters: 2 recovered, 1 failed again\n")
    assert result.to_dict()["report"]["records_in"] == 3


def test_replay_from_a_dead_letter_file(tmp_path):
    """A dead-letter JSON Lines file written by a run replays into files."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + "{broken\n")
    dead = tmp_path / "dead.jsonl"
    datapunk.Pipeline(strict, name="load").run(src, tmp_path / "out.jsonl", dead_letter=dead)
    letters = list(read_dead_letters(dead))
    assert [(d.position, d.stage) for d in letters] == [
        (2, "strict"),
        (3, "strict"),
        (4, "strict"),
        (5, "<source>"),
    ]
    result = datapunk.replay(
        dead,
        datapunk.Pipeline(lenient),
        tmp_path / "fixed.jsonl",
        dead_letter=tmp_path / "d2.jsonl",
    )
    assert (result.total, result.recovered, result.failed_again) == (4, 2, 2)
    fixed = [json.loads(line) for line in (tmp_path / "fixed.jsonl").read_text().splitlines()]
    assert fixed == [{"id": 2, "amount": 2}, {"id": 4, "amount": 7}]
    still = [d.position for d in read_dead_letters(tmp_path / "d2.jsonl")]
    assert still == [3, 5]


def test_replay_of_dead_letters_kept_in_a_checkpoint(tmp_path):
    """Dead letters stored in the SQLite checkpoint replay directly."""
    ck = datapunk.SQLiteCheckpoint(tmp_path / "run.db")
    datapunk.Pipeline(strict, name="load").run(RECORDS, [], checkpoint=ck)
    (key,) = ck.runs()
    out: list[dict[str, int]] = []
    result = datapunk.replay(ck.dead_letters(key), datapunk.Pipeline(lenient), out)
    assert (result.recovered, result.failed_again) == (2, 1)


def test_malformed_dead_letter_lines_are_not_lost(tmp_path):
    """A line that is not a dead letter fails again with its line number, never skipped."""
    path = tmp_path / "dead.jsonl"
    good = datapunk.DeadLetter({"id": 1, "amount": "1"}, 0, "s", "E", "m").to_dict()
    path.write_text(json.dumps(good) + "\n\nnot json\n" + json.dumps({"x": 1}) + "\n")
    again: list[datapunk.DeadLetter] = []
    result = datapunk.replay(path, datapunk.Pipeline(strict), [], dead_letter=again)
    assert (result.total, result.recovered, result.failed_again) == (3, 1, 2)
    assert [(d.position, d.error_type) for d in again] == [
        (3, "MalformedDeadLetter"),
        (4, "MalformedDeadLetter"),
    ]
    assert again[1].message == (
        f"line 4 of {str(path)!r} is not a dead letter: "
        "not a dead letter (needs 'record' and 'stage')"
    )
    with pytest.raises(datapunk.SourceError, match="line 3"):
        list(read_dead_letters(path))


def test_missing_dead_letter_file(tmp_path):
    """A missing file is a SourceError naming it."""
    with pytest.raises(datapunk.SourceError, match="does not exist"):
        DeadLetterSource(tmp_path / "nope.jsonl")


def test_replay_rejects_other_items():
    """replay() takes dead letters, not plain records."""
    with pytest.raises(datapunk.ConfigurationError, match=r"replay\(\) takes datapunk\.DeadLetter"):
        datapunk.replay([1, 2], datapunk.Pipeline(strict))


def test_replay_accepts_a_plain_stage():
    """A stage (not only a pipeline) can be the fixed pipeline."""
    dl = datapunk.DeadLetter({"id": 1, "amount": "3"}, None, "s", "E", "m")
    out: list[dict[str, int]] = []
    assert datapunk.replay([dl], datapunk.Stage(strict), out).recovered == 1
    assert out == [{"id": 1, "amount": 3}]


@settings(max_examples=50, deadline=None)
@given(
    amounts=st.lists(
        st.one_of(
            st.integers(-100, 100).map(str),
            st.floats(-100, 100, allow_nan=False).map(repr),
            st.text(max_size=3),
        ),
        max_size=30,
    )
)
def test_nothing_is_lost_between_a_run_and_its_replay(amounts):
    """Every record ends up exactly once: first output, recovered, or failed again."""
    records = [{"id": i, "amount": a} for i, a in enumerate(amounts)]
    out: list[dict[str, int]] = []
    first = datapunk.Pipeline(strict).run(records, out)
    recovered: list[dict[str, int]] = []
    again: list[datapunk.DeadLetter] = []
    result = datapunk.replay(
        first.dead_letters, datapunk.Pipeline(lenient), recovered, dead_letter=again
    )
    ids = [r["id"] for r in out] + [r["id"] for r in recovered] + [d.record["id"] for d in again]
    assert sorted(ids) == list(range(len(amounts)))
    assert result.total == first.failed == result.recovered + result.failed_again


@pytest.mark.e2e
def test_replay_command(tmp_path):
    """`datapunk replay DEAD_LETTERS -c CONFIG -o OUTPUT` recovers what the fix handles."""
    import os
    import subprocess
    import sys

    (tmp_path / "stages.py").write_text(
        "def strict(r):\n    return {'id': r['id'], 'amount': int(r['amount'])}\n\n"
        "def lenient(r):\n    return {'id': r['id'], 'amount': int(float(r['amount']))}\n"
    )
    (tmp_path / "strict.toml").write_text('[[stages]]\nfunction = "stages:strict"\n')
    (tmp_path / "fixed.toml").write_text('[[stages]]\nfunction = "stages:lenient"\n')
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))

    def dp(*args):
        return subprocess.run(
            [sys.executable, "-m", "datapunk", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ},
            check=False,
        )

    first = dp(
        "process", "in.jsonl", "-c", "strict.toml", "-o", "out.jsonl", "--dead-letter", "dead.jsonl"
    )
    assert first.returncode == 0, first.stderr
    proc = dp("replay", "dead.jsonl", "-c", "fixed.toml", "-o", "recovered.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("replayed 3 dead letters: 2 recovered, 1 failed again\n")
    assert "1 record(s) failed again: see dead.still-failing.jsonl" in proc.stderr
    recovered = [json.loads(x) for x in (tmp_path / "recovered.jsonl").read_text().splitlines()]
    assert recovered == [{"id": 2, "amount": 2}, {"id": 4, "amount": 7}]
    (still,) = read_dead_letters(tmp_path / "dead.still-failing.jsonl")
    assert (still.record, still.position) == ({"id": 3, "amount": "x"}, 3)

    missing = dp("replay", "nope.jsonl", "-c", "fixed.toml", "-o", "r.jsonl")
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    usage = dp("replay", "dead.jsonl", "-o", "r.jsonl")
    assert usage.returncode == 2
