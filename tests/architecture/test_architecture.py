"""The shape of the codebase: ``reference`` and ``optimized`` side by side with no edge between them,
``conformance`` above both, and no source or test file much beyond 400 lines except declarative tables.

A reference that shares code with what it verifies cannot catch that code's bugs, so the first two
checks are what make the reference-vs-optimized comparisons mean something.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("reference", "optimized")

LONGEST = 400
"""Lines a source file may have."""
DECLARATIVE_TABLES: dict[str, str] = {}
"""Files allowed beyond :data:`LONGEST`, with the reason: tables, read as data."""


def imported_packages(source: str) -> set[str]:
    """The top-level packages a module imports anywhere in its body (functions included)."""
    packages = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            packages.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Call) and _dynamic_import(node.func) and node.args:
            named = node.args[0]  # importlib.import_module("x.y") or __import__("x.y")
            if isinstance(named, ast.Constant) and isinstance(named.value, str):
                packages.add(named.value.partition(".")[0])
    return packages


def _dynamic_import(function: ast.expr) -> bool:
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    return name in ("import_module", "__import__")


def crossings(package: str) -> list[str]:
    """The modules of one implementation that import the other."""
    other = next(name for name in PACKAGES if name != package)
    return [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / package).rglob("*.py"))
        if other in imported_packages(path.read_text())
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_of_one_implementation_imports_the_other(package: str) -> None:
    assert crossings(package) == []


def test_the_import_scan_sees_an_import_inside_a_function() -> None:
    """The meta-test: the scan is not blind to a lazy or relative-looking import."""
    source = textwrap.dedent(
        """
        def helper():
            from optimized.plan import Task
            import reference.rounding as r
            importlib.import_module("conformance.cli")
            __import__("numba")
        """
    )
    assert imported_packages(source) == {"optimized", "reference", "conformance", "numba"}


@pytest.mark.e2e  # runs a new interpreter
@pytest.mark.parametrize("package", PACKAGES)
def test_importing_one_implementation_loads_no_module_of_the_other(package: str) -> None:
    """Every module of ``package`` imported in a fresh interpreter: none of the other's is loaded."""
    other = next(name for name in PACKAGES if name != package)
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import {package}
        for module in pkgutil.walk_packages({package}.__path__, "{package}."):
            importlib.import_module(module.name)
        print(sorted(name for name in sys.modules if name.partition(".")[0] == "{other}"))
        print(len([name for name in sys.modules if name.partition(".")[0] == "{package}"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=True
    )
    loaded_other, own_count = done.stdout.splitlines()
    assert loaded_other == "[]"
    assert int(own_count) > 5  # the walk imported the package's modules, not nothing


def test_conformance_stands_above_both() -> None:
    """Nothing of ``reference`` or ``optimized`` imports ``conformance``."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            assert "conformance" not in imported_packages(path.read_text()), path


def test_no_source_file_is_longer_than_about_400_lines() -> None:
    long_files = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for package in (*PACKAGES, "conformance", "benchmarks", "tests")
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    too_long = {
        name: lines
        for name, lines in long_files.items()
        if lines > LONGEST and name not in DECLARATIVE_TABLES
    }
    assert too_long == {}
