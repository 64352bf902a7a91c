"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
# Blocks that open with a file name (``# my_asgd.py``) are files of an example, run by the tests of
# what they show (tests/test_external.py); the others run here as written.
EXAMPLES = [
    block
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    if not re.match(r"# \w+\.py\n", block)
]


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index: int) -> None:
    exec(compile(EXAMPLES[index], f"README example {index}", "exec"), {})
