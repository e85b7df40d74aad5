"""The README's Python API example runs as written (doctest), on the embedded model, so it cannot go stale."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("### Python API", 1)[1]
    return re.search(r"```pycon\n(.*?)```", section, re.S).group(1)


@pytest.mark.integration
def test_readme_python_example(tmp_path, monkeypatch):
    rows = ["text,label"] + [f"{'a great film good and fine' if i % 2 else 'an awful film bad and poor'} {i},"
                             f"{'pos' if i % 2 else 'neg'}" for i in range(40)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LPFT_CACHE_DIR", str(tmp_path / "cache"))
    test = doctest.DocTestParser().get_doctest(readme_example(), {}, "README.md", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 8
