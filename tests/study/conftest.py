"""Two tiny user-file tasks and a study file over them, shared by the study tests."""

from __future__ import annotations

import pytest
from study_files import write_polarity


@pytest.fixture(scope="session")
def two_tasks(tmp_path_factory):
    """task name -> training CSV (40 rows each, different samples)."""
    folder = tmp_path_factory.mktemp("study-tasks")
    out = {}
    for name, offset in (("alpha", 0), ("beta", 1)):
        write_polarity(folder / f"{name}.csv", 40, offset)
        out[name] = folder / f"{name}.csv"
    return out
