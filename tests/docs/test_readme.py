"""The Python examples of the README and of the documentation's pages run as written, and what the
pages name (files, pages) exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
SOURCES = [README, *PAGES, DOCS / "api.rst"]
# Blocks that open with a file name (``# my_asgd.py``) are files of an example, run by the tests of
# what they show (tests/conformance/test_external.py, from the README); the others run here as written.
FILE_NAME = re.compile(r"# (\w+\.py)\n")


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


EXAMPLES = {
    f"{path.relative_to(ROOT)}:{index}": block
    for path in (README, *PAGES)
    for index, block in enumerate(python_blocks(path))
    if not FILE_NAME.match(block)
}


def test_the_readme_and_the_pages_have_examples() -> None:
    assert sum(name.startswith("README.md:") for name in EXAMPLES) >= 1
    assert sum(name.startswith("docs/") for name in EXAMPLES) >= 3


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_runs(name: str) -> None:
    exec(compile(EXAMPLES[name], name, "exec"), {})


def test_example_files_in_the_pages_are_the_readmes() -> None:
    """tests/conformance/test_external.py runs the README's example files; a page that shows one
    shows the same file, so that test runs it too."""
    readme = {match.group(1): block for block in python_blocks(README) if (match := FILE_NAME.match(block))}
    assert {"my_asgd.py", "test_my_asgd.py"} <= set(readme)
    for page in PAGES:
        for block in python_blocks(page):
            if match := FILE_NAME.match(block):
                assert block == readme.get(match.group(1)), (
                    f"{page.name}: {match.group(1)} differs from the README's"
                )


def test_the_readme_is_a_front_page_that_links_every_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    pages = {path.name for path in DOCS.iterdir() if path.suffix in (".md", ".rst")} - {"index.md"}
    linked = set(re.findall(r"\]\(docs/([\w-]+\.(?:md|rst))\)", text))
    assert pages - linked == set(), "pages the README does not link"
    assert linked - pages == set(), "links to pages that do not exist"
    assert "python -m sphinx -b html docs docs/_build/html" in text
    assert "python -m pytest" in text


def test_every_page_is_in_the_table_of_contents() -> None:
    toctree = re.search(r"```\{toctree\}\n(.*?)```", (DOCS / "index.md").read_text(), flags=re.DOTALL)
    assert toctree is not None
    listed = {
        line.strip() for line in toctree.group(1).splitlines() if line.strip() and not line.startswith(":")
    }
    pages = {path.stem for path in DOCS.iterdir() if path.suffix in (".md", ".rst")} - {"index"}
    assert listed == pages


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_files_a_page_names_exist(source: Path) -> None:
    """Paths in backticks (``tests/optimized/test_fork.py``, ``conformance/ulp.py``), images, and
    test files named alone (``test_stateful.py``) in a row that gives the folder."""
    text = source.read_text()
    base = ROOT if source == README else DOCS
    missing = []
    for path in re.findall(
        r"`((?:tests|conformance|optimized|reference|benchmarks|docs)/[\w/.-]+\.\w+)`", text
    ):
        if not (ROOT / path).exists() and not path.startswith(("docs/_data/", "docs/_build/")):
            missing.append(path)
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        if not (base / image).exists():
            missing.append(image)
    test_files = {path.name for path in (ROOT / "tests").rglob("test_*.py")}
    missing += [name for name in re.findall(r"`(test_\w+\.py)`", text) if name not in test_files]
    assert missing == []


def test_the_pages_name_the_test_functions_that_exist() -> None:
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    for page in PAGES:
        for name in re.findall(r"`(test_\w+)`", page.read_text()):
            assert f"def {name}(" in tests, f"{page.name}: {name}"
