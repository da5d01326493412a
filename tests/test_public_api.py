"""The public surface is pinned: changing it must be a decision, made here on purpose."""

from __future__ import annotations

import inspect
import re
import types

import pytest

import datapunk

pytestmark = pytest.mark.unit

PUBLIC = [
    "Batch",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigurationError",
    "DataProcessingError",
    "DatapunkError",
    "DeadLetter",
    "ErrorBudgetExceeded",
    "ErrorSample",
    "Filter",
    "FlatMap",
    "Malformed",
    "Pipeline",
    "Reason",
    "Retry",
    "RetryError",
    "RunReport",
    "SQLiteCheckpoint",
    "SinkError",
    "SourceError",
    "Stage",
    "StageError",
    "StageReport",
    "StageTimeout",
    "Validate",
    "ValidationError",
    "Validator",
    "__version__",
    "check",
    "io",
    "observe",
    "plugins",
    "replay",
    "runners",
    "stage",
    "testing",
]

NAMES = [n for n in PUBLIC if n != "__version__"]


class TestSurface:
    def test_all_is_pinned_and_sorted(self):
        """__all__ is exactly the pinned list, sorted."""
        assert PUBLIC == datapunk.__all__
        assert sorted(datapunk.__all__) == datapunk.__all__

    @pytest.mark.parametrize("name", PUBLIC)
    def test_every_public_name_resolves(self, name):
        """Every name in __all__ is importable from datapunk."""
        assert getattr(datapunk, name) is not None

    def test_star_import_gives_the_public_names(self):
        """from datapunk import * works and binds every public name."""
        namespace: dict[str, object] = {}
        exec("from datapunk import *", namespace)
        assert set(PUBLIC) <= set(namespace)

    def test_dir_lists_the_public_names(self):
        """dir(datapunk) includes the lazy names too."""
        assert set(PUBLIC) <= set(dir(datapunk))

    def test_version(self):
        """__version__ is a version string."""
        assert re.match(r"^\d+\.\d+", datapunk.__version__)


class TestPublicObjects:
    @pytest.mark.parametrize(
        "name", [n for n in NAMES if not isinstance(getattr(datapunk, n), types.ModuleType)]
    )
    def test_classes_and_functions_report_datapunk(self, name):
        """Public classes and functions say datapunk.X, the import users write."""
        assert "datapunk" == getattr(datapunk, name).__module__

    @pytest.mark.parametrize("name", NAMES)
    def test_every_public_name_has_a_docstring(self, name):
        """Every public class, function and subpackage is documented."""
        doc = inspect.getdoc(getattr(datapunk, name))
        assert doc
        assert doc.strip()

    @pytest.mark.parametrize(
        "name",
        [n for n in NAMES if inspect.isclass(getattr(datapunk, n))],
    )
    def test_public_methods_have_docstrings(self, name):
        """Every public method of a public class is documented."""
        cls = getattr(datapunk, name)
        undocumented = [
            attr
            for attr, value in vars(cls).items()
            if not attr.startswith("_")
            and (
                inspect.isfunction(value)
                or isinstance(value, classmethod | staticmethod | property)
            )
            and not inspect.getdoc(value)
        ]
        assert [] == undocumented

    def test_errors_are_the_documented_tree(self):
        """Every public exception derives from DatapunkError."""
        errors = [
            getattr(datapunk, n)
            for n in NAMES
            if inspect.isclass(getattr(datapunk, n)) and issubclass(getattr(datapunk, n), Exception)
        ]
        assert all(issubclass(e, datapunk.DatapunkError) for e in errors)
        assert 11 == len(errors)
