"""The command line, from the shell: every format, every malformed input, every exit code."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import datapunk
from datapunk.cli import main

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

STAGES = """
import pydantic, datapunk

class Row(pydantic.BaseModel):
    record_id: str
    value: float

@datapunk.stage
def double(r: Row) -> dict:
    return {"record_id": r.record_id, "value": r.value * 2}

def boom(r):
    raise RuntimeError("stage exploded")

def make_auth(api_key):
    def auth(r):
        if r.get("record_id") == "leak":
            raise ValueError("refused")
        return {**r, "auth": api_key}
    return auth
"""

ROWS = [
    {"record_id": "a", "value": 1.5},
    {"record_id": 'b, "q"', "value": 2},
    {"record_id": "c\nd", "value": -3},
]


def dp(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m datapunk ARGS` (coverage follows the subprocess through env)."""
    return subprocess.run(
        [sys.executable, "-m", "datapunk", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )


def read_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_input(path: Path, rows: list[dict[str, Any]]) -> None:
    sink = datapunk.io.write(path)
    sink.write(rows)
    sink.close()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "stages.py").write_text(STAGES)
    (tmp_path / "p.toml").write_text(
        '[[stages]]\nvalidate = "stages:Row"\n[[stages]]\nfunction = "stages:double"\n'
    )
    return tmp_path


class TestProcessFormats:
    @pytest.mark.parametrize(
        "suffix",
        [
            ".csv",
            ".tsv",
            ".jsonl",
            ".ndjson",
            ".json",
            ".parquet",
            ".csv.gz",
            ".jsonl.gz",
            ".json.gz",
        ],
    )
    def test_every_input_format(self, work: Path, suffix: str) -> None:
        """process reads each format, validates, transforms and writes JSON Lines (exit 0)."""
        src = work / f"in{suffix}"
        write_input(src, ROWS)
        out = work / "out.jsonl"
        proc = dp("process", str(src), "-c", str(work / "p.toml"), "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert [
            {"record_id": r["record_id"], "value": float(r["value"]) * 2} for r in ROWS
        ] == read_jsonl(out)
        assert "in 3  out 3  filtered 0  failed 0" in proc.stdout

    @pytest.mark.parametrize("out_suffix", [".csv", ".json", ".parquet", ".jsonl.gz", ".tsv"])
    def test_default_pipeline_converts_by_format(self, work: Path, out_suffix: str) -> None:
        """Without -c, process copies records into the output's format."""
        src = work / "in.jsonl"
        write_input(src, [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}])
        out = work / f"out{out_suffix}"
        proc = dp("process", str(src), "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}] == [
            r for _, r in datapunk.io.read(out).read()
        ]

    def test_format_flag(self, work: Path) -> None:
        """--format reads a file whose suffix says nothing."""
        src = work / "in.txt"
        src.write_text('{"a": 1}\n')
        out = work / "o.jsonl"
        proc = dp("process", str(src), "--format", "jsonl", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert read_jsonl(out) == [{"a": 1}]


class TestMalformedInput:
    def run_messy(
        self, work: Path, name: str, data: bytes, *extra: str
    ) -> tuple[list[Any], list[Any]]:
        src = work / name
        src.write_bytes(data)
        out, dead = work / "out.jsonl", work / "dead.jsonl"
        proc = dp("process", str(src), "-o", str(out), "--dead-letter", str(dead), *extra)
        assert proc.returncode == 0, proc.stderr
        return read_jsonl(out), read_jsonl(dead)

    def test_csv_mess(self, work: Path) -> None:
        """BOM stripped; ragged rows and bad UTF-8 become dead letters at their lines."""
        out, dead = self.run_messy(work, "in.csv", b"\xef\xbb\xbfa,b\n1,2\n3\n4,\xff\n5,6,7\n8,9\n")
        assert out == [{"a": "1", "b": "2"}, {"a": "8", "b": "9"}]
        assert [(d["position"], d["stage"], d["error_type"]) for d in dead] == [
            (3, "<source>", "RaggedRow"),
            (4, "<source>", "UnicodeDecodeError"),
            (5, "<source>", "RaggedRow"),
        ]
        assert all(set(d) >= {"message", "reasons", "record"} for d in dead)

    def test_jsonl_mess(self, work: Path) -> None:
        """Broken JSON and invalid UTF-8 lines are dead letters at their line numbers."""
        out, dead = self.run_messy(work, "in.jsonl", b'{"a": 1}\n{"a": \n\xfe\n{"a": 2}\n')
        assert out == [{"a": 1}, {"a": 2}]
        assert [(d["position"], d["error_type"], d["record"]) for d in dead] == [
            (2, "JSONDecodeError", '{"a": '),
            (3, "UnicodeDecodeError", "\ufffd"),
        ]

    def test_oversize_line_via_config(self, work: Path) -> None:
        """max_line_bytes from the spec's [source] table fails an oversize line at its number."""
        src = work / "in.jsonl"
        src.write_text(
            '{"record_id": "a", "value": 1}\n{"record_id": "' + "x" * 500 + '", "value": 2}\n'
        )
        spec = work / "big.toml"
        spec.write_text(
            f'[source]\npath = "{src}"\nmax_line_bytes = 100\n[[stages]]\nvalidate = "stages:Row"\n'
        )
        out, dead = work / "o.jsonl", work / "d.jsonl"
        proc = dp("process", "-c", str(spec), "-o", str(out), "--dead-letter", str(dead))
        assert proc.returncode == 0, proc.stderr
        assert [(d["position"], d["error_type"]) for d in read_jsonl(dead)] == [(2, "LineTooLong")]
        assert len(read_jsonl(out)) == 1

    def test_json_array_mess(self, work: Path) -> None:
        """A broken array element is a dead letter at its index."""
        out, dead = self.run_messy(work, "in.json", b'[{"a": 1}, {"a" 2}, {"a": 3}]')
        assert out == [{"a": 1}, {"a": 3}]
        assert [(d["position"], d["error_type"]) for d in dead] == [(1, "JSONDecodeError")]

    def test_bundled_example(self, tmp_path: Path) -> None:
        """The README command on the bundled messy file: exit 0, every rejected row explained."""
        out, dead = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
        proc = dp(
            "process",
            "examples/flights.csv",
            "-c",
            "examples/pipeline.toml",
            "-o",
            str(out),
            "--dead-letter",
            str(dead),
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        assert "in 16  out 7  filtered 1  failed 8" in proc.stdout
        rejects = read_jsonl(dead)
        assert len(rejects) == 8
        assert {d["error_type"] for d in rejects} == {
            "RaggedRow",
            "UnicodeDecodeError",
            "ValidationError",
        }
        assert all(isinstance(d["position"], int) and d["message"] for d in rejects)
        assert [r["record_id"] for r in read_jsonl(out)][:2] == ["r001", "r002"]

    @pytest.mark.parametrize("runner", ["threads", "processes", "async"])
    def test_bundled_example_on_every_runner(self, tmp_path: Path, runner: str) -> None:
        """--runner gives the same output and dead letters as the default serial runner."""
        outs = []
        for name in ("serial", runner):
            out, dead = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.dead.jsonl"
            proc = dp(
                *("process", "examples/flights.csv", "-c", "examples/pipeline.toml"),
                *("-o", str(out), "--dead-letter", str(dead), "--runner", name),
                cwd=ROOT,
            )
            assert proc.returncode == 0, proc.stderr
            rejects = sorted((d["position"], d["error_type"]) for d in read_jsonl(dead))
            outs.append((out.read_text(), rejects))
        assert outs[0] == outs[1]

    def test_bundled_jsonl_example(self, tmp_path: Path) -> None:
        """The bundled JSON Lines file: broken line, bad UTF-8, BOM, invalid records."""
        out, dead = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
        proc = dp(
            "process",
            "examples/flights.jsonl",
            "-c",
            "examples/pipeline.toml",
            "-o",
            str(out),
            "--dead-letter",
            str(dead),
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        kinds = sorted((d["position"], d["error_type"]) for d in read_jsonl(dead))
        assert kinds == [
            (3, "ValidationError"),
            (5, "JSONDecodeError"),
            (6, "UnicodeDecodeError"),
            (9, "ValidationError"),
            (10, "ValidationError"),
        ]
        assert [r["record_id"] for r in read_jsonl(out)] == ["j001", "j002", "j007 été", "j009"]


class TestExitCodes:
    def test_0_with_dead_letters(self, work: Path) -> None:
        """A run with failed records still exits 0."""
        src = work / "in.jsonl"
        src.write_text('{"record_id": "a", "value": "x"}\n')
        proc = dp("process", str(src), "-c", str(work / "p.toml"), "-o", str(work / "o.jsonl"))
        assert (proc.returncode, proc.stderr) == (0, "")

    def test_1_error_budget(self, work: Path) -> None:
        """Exceeding --max-errors exits 1, prints the report, commits nothing."""
        src = work / "in.jsonl"
        src.write_text('{"record_id": "a", "value": "x"}\n{"record_id": "b", "value": 1}\n')
        out = work / "o.jsonl"
        proc = dp(
            "process", str(src), "-c", str(work / "p.toml"), "-o", str(out), "--max-errors", "0"
        )
        assert proc.returncode == 1
        assert "STOPPED" in proc.stdout
        assert proc.stderr.strip().endswith("or raise max_errors")
        assert "Traceback" not in proc.stderr
        assert not out.exists()

    def test_1_error_budget_from_env(self, work: Path) -> None:
        """DATAPUNK_MAX_ERRORS sets the budget when no flag does."""
        src = work / "in.jsonl"
        src.write_text('{"record_id": "a", "value": "x"}\n')
        proc = dp(
            "process",
            str(src),
            "-c",
            str(work / "p.toml"),
            "-o",
            str(work / "o.jsonl"),
            env={"DATAPUNK_MAX_ERRORS": "0"},
        )
        assert proc.returncode == 1

    def test_1_stage_raises(self, work: Path) -> None:
        """A failing stage with on_error='raise' stops the run: exit 1, one line, no traceback."""
        spec = work / "raise.toml"
        spec.write_text('[[stages]]\nfunction = "stages:boom"\non_error = "raise"\n')
        src = work / "in.jsonl"
        src.write_text("{}\n")
        proc = dp("process", str(src), "-c", str(spec), "-o", str(work / "o.jsonl"))
        assert proc.returncode == 1
        assert "stage exploded" in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_debug_shows_traceback(self, work: Path) -> None:
        """--debug prints the traceback of the failure."""
        spec = work / "raise.toml"
        spec.write_text('[[stages]]\nfunction = "stages:boom"\non_error = "raise"\n')
        src = work / "in.jsonl"
        src.write_text("{}\n")
        proc = dp("process", str(src), "-c", str(spec), "-o", str(work / "o.jsonl"), "--debug")
        assert proc.returncode == 1
        assert "Traceback" in proc.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["process", "{w}/missing.csv", "-o", "{w}/o.jsonl"], "does not exist: check the path"),
            (["process", "{w}", "-o", "{w}/o.jsonl"], "cannot tell the format of input"),
            (["process", "{w}/in.jsonl", "-o", "{w}/nodir/o.jsonl"], "directory"),
            (["process", "{w}/in.jsonl", "-o", "{w}/o.xml"], "cannot tell the format of output"),
            (
                ["process", "{w}/in.jsonl", "-o", "{w}/o.jsonl", "--runner", "warp"],
                "unknown runner 'warp'",
            ),
            (
                ["process", "{w}/in.jsonl", "-o", "{w}/o.jsonl", "-c", "{w}/bad.toml"],
                "stages[0].kind: 'mapp' is not one of",
            ),
            (
                ["process", "{w}/in.jsonl", "-o", "{w}/o.jsonl", "-c", "{w}/nope.toml"],
                "does not exist",
            ),
            (["process", "{w}/in.jsonl"], "give an OUTPUT file"),
            (["process", "-o", "{w}/o.jsonl"], "give an INPUT file"),
            (
                ["process", "{w}/in.jsonl", "-o", "{w}/o.jsonl", "--max-errors", "lots"],
                "not a count",
            ),
            (["process", "{w}/in.jsonl", "-o", "{w}/o.jsonl", "--max-errors", "1.5"], "max_errors"),
            (["check", "{w}/bad.toml"], "stages[0].kind"),
            (["frobnicate"], "invalid choice"),
            ([], "usage:"),
        ],
        ids=[
            "missing-input",
            "directory-input",
            "missing-out-dir",
            "unknown-out-suffix",
            "unknown-runner",
            "bad-config",
            "missing-config",
            "no-output",
            "no-input",
            "bad-max-errors",
            "bad-rate",
            "check-bad-config",
            "unknown-command",
            "no-command",
        ],
    )
    def test_2_usage_and_configuration(self, work: Path, args: list[str], message: str) -> None:
        """Usage and configuration errors exit 2 with one clear line and no traceback."""
        (work / "in.jsonl").write_text('{"a": 1}\n')
        (work / "bad.toml").write_text('[[stages]]\nfunction = "stages:double"\nkind = "mapp"\n')
        proc = dp(*[a.format(w=work) for a in args])
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (work / "o.jsonl").exists()


class TestCommands:
    @pytest.mark.parametrize("command", [[], ["process"], ["check"], ["plugins"], ["version"]])
    def test_help_with_example(self, command: list[str]) -> None:
        """--help on every command exits 0 and shows an example."""
        proc = dp(*command, "--help")
        assert proc.returncode == 0
        assert "example" in proc.stdout
        assert "datapunk" in proc.stdout

    def test_version(self) -> None:
        """--version and version print the installed version."""
        assert dp("--version").stdout == f"datapunk {datapunk.__version__}\n"
        assert dp("version").stdout == f"datapunk {datapunk.__version__}\n"

    def test_check_prints_the_pipeline(self) -> None:
        """check validates a spec and prints stages, kinds and options without running."""
        proc = dp("check", "examples/pipeline.toml", cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[:4] == [
            "pipeline 'flights'",
            "  1. validate[InputData]  map",
            "  2. keep_valid  filter",
            "  3. process  map",
        ]
        assert "max_errors=0.5" in proc.stdout

    def test_report_json(self, work: Path) -> None:
        """--report-json writes the report as JSON instead of printing the table."""
        src = work / "in.jsonl"
        src.write_text('{"record_id": "a", "value": 1}\n{"record_id": "b"}\n')
        report = work / "r.json"
        proc = dp(
            "process",
            str(src),
            "-c",
            str(work / "p.toml"),
            "-o",
            str(work / "o.jsonl"),
            "--report-json",
            str(report),
        )
        assert (proc.returncode, proc.stdout) == (0, "")
        data = json.loads(report.read_text())
        assert (data["records_in"], data["records_out"], data["failed"]) == (2, 1, 1)

    def test_json_logs_on_stderr(self, work: Path) -> None:
        """--log-format json --log-level info writes JSON log lines to stderr, results to stdout."""
        src = work / "in.jsonl"
        src.write_text('{"record_id": "a", "value": 1}\n')
        proc = dp(
            "process",
            str(src),
            "-o",
            str(work / "o.jsonl"),
            "--log-format",
            "json",
            "--log-level",
            "info",
        )
        assert proc.returncode == 0
        events = [json.loads(line) for line in proc.stderr.splitlines()]
        assert [e["event"] for e in events] == ["run.started", "run.finished"]
        assert len({e["run_id"] for e in events}) == 1
        assert "in 1  out 1" in proc.stdout

    def test_quiet_by_default(self, work: Path) -> None:
        """With default settings a successful run logs nothing."""
        src = work / "in.jsonl"
        src.write_text("{}\n")
        assert dp("process", str(src), "-o", str(work / "o.jsonl")).stderr == ""

    def test_progress_flag(self, work: Path) -> None:
        """--progress runs (the bar goes to stderr)."""
        src = work / "in.jsonl"
        src.write_text("{}\n")
        assert dp("process", str(src), "-o", str(work / "o.jsonl"), "--progress").returncode == 0

    def test_config_source_and_sink(self, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With source and sink in the spec, process needs no paths; relative paths use the cwd."""
        write_input(work / "in.csv", ROWS)
        (work / "full.toml").write_text(
            '[source]\npath = "in.csv"\n[sink]\npath = "out.jsonl"\n'
            '[dead_letter]\npath = "dead.jsonl"\n'
            '[[stages]]\nvalidate = "stages:Row"\n'
        )
        proc = dp("process", "-c", "full.toml", cwd=work)
        assert proc.returncode == 0, proc.stderr
        assert len(read_jsonl(work / "out.jsonl")) == 3
        assert (work / "dead.jsonl").read_text() == ""


class TestInProcess:
    """The same entry point called in-process (measured by coverage directly)."""

    def test_main_returns_exit_codes(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """main() returns 0/2 and leaves structlog unconfigured afterwards."""
        import structlog

        src = work / "in.jsonl"
        src.write_text('{"record_id": "a", "value": 1}\n')
        assert (
            main(["process", str(src), "-c", str(work / "p.toml"), "-o", str(work / "o.jsonl")])
            == 0
        )
        assert main(["process", str(work / "nope.jsonl"), "-o", str(work / "x.jsonl")]) == 2
        assert main(["version"]) == 0
        assert main(["--help"]) == 0
        assert main([]) == 2
        assert not structlog.is_configured()
        out = capsys.readouterr()
        assert "datapunk: error: input file" in out.err

    def test_bad_log_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An invalid DATAPUNK_LOG_LEVEL is a usage error."""
        monkeypatch.setenv("DATAPUNK_LOG_LEVEL", "loud")
        assert main(["version"]) == 2


@pytest.mark.security
class TestSecrets:
    def test_secret_from_env_never_leaks(self, work: Path) -> None:
        """A secret from the environment appears in no output, log line, report or dead letter."""
        secret = "s3cr3t-T0KEN-value"
        spec = work / "secret.toml"
        spec.write_text(
            textwrap.dedent(
                """
            [[stages]]
            function = "stages:make_auth"
            options = { api_key = "${API_TOKEN}" }
            """
            )
        )
        src = work / "in.jsonl"
        src.write_text('{"record_id": "ok"}\n{"record_id": "leak"}\n{broken\n')
        out, dead, rep = work / "o.jsonl", work / "d.jsonl", work / "r.json"
        env = {"API_TOKEN": secret}
        runs = [
            dp(
                "process",
                str(src),
                "-c",
                str(spec),
                "-o",
                str(out),
                "--dead-letter",
                str(dead),
                "--log-level",
                "debug",
                "--log-format",
                "json",
                env=env,
            ),
            dp(
                "process",
                str(src),
                "-c",
                str(spec),
                "-o",
                str(out),
                "--dead-letter",
                str(dead),
                "--report-json",
                str(rep),
                "--log-level",
                "debug",
                env=env,
            ),
            dp("check", str(spec), "--log-level", "debug", env=env),
            dp(
                "process",
                str(src),
                "-c",
                str(spec),
                "-o",
                str(out),
                "--max-errors",
                "0",
                "--debug",
                env=env,
            ),
        ]
        assert [r.returncode for r in runs] == [0, 0, 0, 1]
        texts = [r.stdout + r.stderr for r in runs]
        texts += [out.read_text(), dead.read_text(), rep.read_text()]
        for text in texts:
            assert secret not in text
        assert read_jsonl(out)[0]["auth"] == "**********"
        assert len(read_jsonl(dead)) == 2


def test_gzip_output_from_cli(tmp_path: Path) -> None:
    """An output ending in .gz is compressed."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1}\n')
    out = tmp_path / "o.jsonl.gz"
    assert dp("process", str(src), "-o", str(out)).returncode == 0
    assert gzip.decompress(out.read_bytes()) == b'{"a":1}\n'
