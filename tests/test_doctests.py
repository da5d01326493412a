"""Every example in a public docstring runs and shows what it claims."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "datapunk",
    "datapunk.plugins",
    "datapunk.runners",
    "datapunk.testing",
]


@pytest.mark.unit
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    """The module's docstring examples pass under doctest."""
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert (result.failed, result.attempted > 0) == (0, True)
