"""The lint gate: ``ruff check`` (rules and line length in pyproject.toml's ``[tool.ruff]``) passes on the sources,
tests and benchmarks. ``ruff format`` is not part of the gate (it would rewrite most files; see pyproject.toml)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    if importlib.util.find_spec("ruff") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ruff is not installed: pip install -e '.[test]' (the lint gate must run in CI)")
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "benchmarks"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"
