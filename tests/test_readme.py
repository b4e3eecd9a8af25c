"""The README's Python examples run and print what the README says they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert len(_python_blocks()) >= 2


def test_readme_examples_print_what_their_comments_say() -> None:
    for block in _python_blocks():
        expected = [m.group(1).strip() for m in re.finditer(r"print\(.*\)\s+# (.*)", block)]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), {})
        printed = out.getvalue().splitlines()
        assert len(printed) == len(expected)
        for line, comment in zip(printed, expected, strict=True):
            # the comment starts with the printed value; anything after two spaces explains it
            assert comment.split("  ")[0].strip() == line.strip(), (line, comment)
