"""The code on the pages written as complete examples runs as shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["quickstart.md", "guides/testing.md"]


@pytest.mark.unit
@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str) -> None:
    """Every python block of the page runs, in order, in one namespace."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.DOTALL)
    assert blocks, f"{page} has no python example"
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), namespace)
