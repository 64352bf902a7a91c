"""Sphinx configuration: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.

Nothing is fetched at build time (no intersphinx). The API reference imports the installed
packages (``pip install -e ".[conformance,dev]"``); nothing is mocked.
"""

from __future__ import annotations

import inspect
import sys
from importlib import metadata
from pathlib import Path

from sphinx.application import Sphinx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))  # benchmark_results: the performance page's run
sys.path.insert(0, str(HERE.parent))  # the packages of this checkout (the version: the installed one)

project = "ASGD conformance"
author = "the asgd-conformance authors"
copyright = "the asgd-conformance authors, BSD-3-Clause"
release = version = metadata.version("asgd-conformance")

extensions = ["myst_parser", "sphinx.ext.autodoc", "benchmark_results"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_data", "_ext", "_generated"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links, as on GitHub

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

smartquotes = False  # commands in tables and text stay as typed (--quick, selection='smoke')

html_theme = "furo"
html_title = f"ASGD conformance {release}"
html_static_path: list[str] = []


def drop_type_docstrings(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """A constant has no docstring of its own: autodoc would show its type's (``dict()``'s, ...)."""
    doc = getattr(type(obj), "__doc__", None)
    if what not in ("data", "attribute") or not isinstance(doc, str):
        return
    if "\n".join(lines).strip() == inspect.cleandoc(doc).strip():
        lines.clear()


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-docstring", drop_type_docstrings)
