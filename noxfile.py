"""Developer and CI tasks for datapunk.

``nox`` with no arguments runs what CI runs: the test suite on every
supported Python (then the combined coverage gate), lint, type checks and the
docs build. ``nox -l`` lists every session; ``nox -s bench`` runs the
benchmarks.

The interpreters are found on ``PATH`` (``python3.11`` ...); nox never
downloads one. With pyenv, put them all on ``PATH`` first::

    export PYENV_VERSION=$(pyenv versions --bare | grep -E '^3\\.1[1-9]\\.' | paste -sd:)

Tool versions live in ``pyproject.toml``'s ``[dependency-groups]``, so
``uv pip install --group dev`` gives a local environment with the same tools.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = "CI" in os.environ
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)  # from the trove classifiers
NEWEST = PYTHONS[-1]
IN_CI = "CI" in os.environ

# Every optional extra the test suite exercises.
TEST_EXTRAS = ".[yaml,json,orjson,parquet,dask,processes,progress]"

# One coverage data file per tests session; the `coverage` session combines
# them and enforces `fail_under` from pyproject.toml.
COVERAGE_DIR = ROOT / ".coverage-data"
# Data written by tests sessions of *this* nox invocation (sessions run
# one after another in this process), so a gate never counts stale data.
_FRESH_COVERAGE: list[Path] = []


def _groups(*names: str) -> tuple[str, ...]:
    return nox.project.dependency_groups(PYPROJECT, *names)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite under coverage (arguments after -- go to pytest)."""
    session.install(*_groups("tests"), TEST_EXTRAS)

    data_dir = COVERAGE_DIR / session.name
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    data_file = data_dir / ".coverage"
    env = {"COVERAGE_FILE": str(data_file)}
    if IN_CI:
        env["HYPOTHESIS_PROFILE"] = "ci"

    session.run("coverage", "run", "-m", "pytest", "-n", "auto", *session.posargs, env=env)
    session.run("coverage", "combine", "--quiet", env=env)
    _FRESH_COVERAGE.append(data_file)

    # A full run feeds the coverage gate; a focused run (posargs) does not.
    if not session.posargs:
        session.notify("coverage")


@nox.session(python=NEWEST)
def coverage(session: nox.Session) -> None:
    """Combine the tests sessions' coverage and enforce fail_under (90%)."""
    session.install(*_groups("tests"))
    data_files = _FRESH_COVERAGE or sorted(COVERAGE_DIR.glob("*/.coverage"))
    if not data_files:
        session.error("No coverage data: run a tests session first (nox -s tests).")
    env = {"COVERAGE_FILE": str(COVERAGE_DIR / ".coverage")}
    session.run("coverage", "combine", "--keep", "--quiet", *map(str, data_files), env=env)
    session.run("coverage", "report", env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install(*_groups("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=NEWEST)
def typecheck(session: nox.Session) -> None:
    """Type-check the package and the typing examples with mypy and pyright."""
    session.install(*_groups("typecheck"), TEST_EXTRAS)
    session.run("mypy", "src", "tests/typing")
    session.run("pyright", "src", "tests/typing")


@nox.session(python=NEWEST)
def docs(session: nox.Session) -> None:
    """Build the HTML docs; every warning and broken reference is an error."""
    session.install(*_groups("docs"), ".")
    shutil.rmtree(ROOT / "docs" / "_build", ignore_errors=True)
    session.run(
        "sphinx-build", "-W", "-n", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(python=NEWEST, default=False)
def bench(session: nox.Session) -> None:
    """Run every benchmarks/bench_*.py (each prints its ratios)."""
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if not scripts:
        session.error("No benchmarks/bench_*.py found.")
    session.install(*_groups("bench"), TEST_EXTRAS)
    for script in scripts:
        session.run("python", str(script.relative_to(ROOT)), *session.posargs)
