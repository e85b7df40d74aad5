"""The code gates. Lint: ``ruff check`` (rules and line length in pyproject.toml's ``[tool.ruff]``) passes on the
sources, tests and benchmarks; ``ruff format`` is not part of the gate (it would rewrite most files; see
pyproject.toml). Types: mypy (pyproject.toml's ``[tool.mypy]`` lists the modules it covers) finds no errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_gate(tool: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m <tool> <args>`` in the repository; a missing tool skips, except under CI=true where it fails
    (the gates must run in CI)."""
    if importlib.util.find_spec(tool) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{tool} is not installed: pip install -e '.[test]' (the gate must run in CI)")
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]')")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=REPO, capture_output=True, text=True)


def test_ruff_check_passes():
    result = run_gate("ruff", "check", "--no-cache", "src", "tests", "benchmarks")
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"


def test_mypy_passes():
    result = run_gate("mypy", "--no-incremental")
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"
