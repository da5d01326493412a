"""Sphinx configuration for the datapunk docs (built offline, warnings are errors)."""

from __future__ import annotations

from importlib.metadata import version as _dist_version

project = "datapunk"
author = "The datapunk developers"
copyright = f"2026, {author}"
release = _dist_version("datapunk")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

# -- MyST ----------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3

# -- autodoc / napoleon ----------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- nitpicky (-n) ---------------------------------------------------------
# The build runs offline, so there is no intersphinx: references to the
# standard library, typing and third-party packages cannot resolve. Ignore
# those and private names; every reference to datapunk's public API must
# resolve.
nitpick_ignore_regex = [
    # Anything outside datapunk: builtins (str, int), typing/collections.abc,
    # pydantic, structlog, attrs, and bare type variables (In, Out, T).
    (r"py:.*", r"(?!datapunk\b).*"),
    # Private modules and names inside datapunk (datapunk._core.stage.X).
    (r"py:.*", r"datapunk(\.\w+)*\._\w*(\.\w+)*"),
    # Type variables of generic classes (datapunk.plugins.T_co...).
    (r"py:.*", r"datapunk(\.\w+)*\.(T|T_co|T_contra|In|Out|In_contra|Out_co|[A-G])"),
]

# -- HTML --------------------------------------------------------------------
html_theme = "furo"
html_title = f"datapunk {release}"
