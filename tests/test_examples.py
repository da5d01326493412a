"""The bundled examples run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.e2e
def test_quickstart_runs_and_accounts_for_every_record() -> None:
    """examples/quickstart.py prints the report and its rejected records with positions."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "in 6  out 2  filtered 1  failed 3" in proc.stdout
    assert "record 3: value: Input should be a valid number" in proc.stdout
    assert "record 4: value: value must be >= 0 (got -1.0)" in proc.stdout


@pytest.mark.unit
def test_quickstart_report_in_process() -> None:
    """The quickstart's pipeline loses nothing: in == out + filtered + failed."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import quickstart  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLES))
    report = quickstart.main()
    assert (report.records_in, report.records_out, report.filtered, report.failed) == (6, 2, 1, 3)
    assert report.records_in == report.records_out + report.filtered + report.failed


@pytest.mark.e2e
@pytest.mark.slow
def test_scale_out_gives_the_same_answer_on_dask(tmp_path: Path) -> None:
    """examples/scale_out.py runs serially and on a local Dask cluster: same bytes, same rejects."""
    pytest.importorskip("distributed")
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "scale_out.py"),
            "--records",
            "5000",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "same output: True; same rejected records: True" in proc.stdout
    assert "of 'hot-sensors' (dask): ok" in proc.stdout
    assert "in 5,000" in proc.stdout
