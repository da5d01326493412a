"""A library is a guest: what ``import datapunk`` does (and does not do) in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytestmark = pytest.mark.integration

HEAVY = (
    "dask",
    "distributed",
    "pyarrow",
    "pandas",
    "numpy",
    "tqdm",
    "rich",
    "prometheus_client",
    "opentelemetry",
    "yaml",
    "pydantic",
    "aiohttp",
    "asyncpg",
    "redis",
)

# State before and after the import, in the same process, so whatever the
# interpreter or coverage loads at start-up cancels out.
PROBE = textwrap.dedent(
    """
    import json, logging, sys, threading

    def logging_state():
        root = logging.getLogger()
        dp = logging.getLogger("datapunk")
        return {
            "root_handlers": [repr(h) for h in root.handlers],
            "root_level": root.level,
            "datapunk_handlers": [repr(h) for h in dp.handlers],
            "datapunk_level": dp.level,
            "datapunk_propagate": dp.propagate,
            "datapunk_disabled": dp.disabled,
            "last_resort": repr(logging.lastResort),
        }

    opened = []
    sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
    before_modules = set(sys.modules)
    before_logging = logging_state()
    before_threads = threading.active_count()

    import datapunk

    structlog = sys.modules.get("structlog")
    print(json.dumps({
        "new_modules": sorted(set(sys.modules) - before_modules),
        "before_logging": before_logging,
        "after_logging": logging_state(),
        "before_threads": before_threads,
        "after_threads": threading.active_count(),
        "structlog_configured": bool(structlog and structlog.is_configured()),
        "opened": [p for p in opened if not p.endswith((".py", ".pyc", ".so", ".pth"))],
    }))
    """
)


@pytest.fixture(scope="module")
def after_import() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "" == proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


class TestImportIsCheap:
    @pytest.mark.parametrize("module", HEAVY)
    def test_no_heavy_module_is_imported(self, after_import, module):
        """import datapunk loads no optional or heavy dependency (pydantic waits for Validate)."""
        loaded = [
            m for m in after_import["new_modules"] if m == module or m.startswith(module + ".")
        ]
        assert [] == loaded

    def test_subpackages_load_lazily(self, after_import):
        """The CLI, I/O, runners, config and testing helpers are not imported up front."""
        lazy = {
            "datapunk.cli",
            "datapunk.io",
            "datapunk.runners",
            "datapunk.config",
            "datapunk.testing",
        }
        assert set() == lazy & set(after_import["new_modules"])

    def test_lazy_subpackages_are_reachable(self):
        """Attribute access imports a lazy subpackage on first use."""
        import datapunk

        assert "datapunk.runners" == datapunk.runners.__name__
        with pytest.raises(AttributeError, match="module 'datapunk' has no attribute 'nope'"):
            _ = datapunk.nope  # type: ignore[attr-defined]


class TestImportIsQuiet:
    def test_no_logging_configuration(self, after_import):
        """Neither the root logger nor the 'datapunk' logger is touched by the import."""
        assert after_import["before_logging"] == after_import["after_logging"]

    def test_structlog_is_not_configured(self, after_import):
        """The library never calls structlog.configure."""
        assert not after_import["structlog_configured"]

    def test_no_thread_is_started(self, after_import):
        """Importing starts no thread."""
        assert (1, 1) == (after_import["before_threads"], after_import["after_threads"])

    def test_no_file_is_read(self, after_import):
        """Importing reads no file other than code."""
        assert [] == after_import["opened"]

    def test_validate_loads_pydantic_on_first_use(self):
        """pydantic is imported when a Validate is built, not before."""
        probe = (
            "import sys, datapunk; before = 'pydantic' in sys.modules; "
            "datapunk.Validate(int); print(before, 'pydantic' in sys.modules)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert "False True" == proc.stdout.strip()

    def test_a_failing_run_prints_nothing_by_itself_issue3(self):
        """With logging unconfigured, a run that stops writes nothing to stdout or stderr."""
        probe = (
            "import datapunk\n"
            "try:\n"
            "    datapunk.Pipeline(lambda x: 1 / x).run([0], [], on_error='raise')\n"
            "except datapunk.StageError:\n"
            "    pass\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert ("", "") == (proc.stdout, proc.stderr)

    def test_events_reach_an_application_handler(self):
        """Once the application configures logging, datapunk's events reach it."""
        probe = (
            "import logging, sys, datapunk\n"
            "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='%(message)s')\n"
            "datapunk.Pipeline(lambda x: x).run([1], [])\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert ["event='run.started'", "event='run.finished'"] == [
            line.split()[0] for line in proc.stdout.splitlines()
        ]
