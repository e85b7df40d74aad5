"""The type gate: mypy (configured in pyproject.toml's ``[tool.mypy]``: the modules it covers) finds no errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_mypy_passes():
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mypy is not installed: pip install -e '.[test]' (the type gate must run in CI)")
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"
