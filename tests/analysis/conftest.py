"""Fixtures for the run-folder analyses: a toy 3-class CSV task and one finished run per method on a tiny BERT.

The runs are trained once per session (about 10 s on 2 cores) and shared; tests that need their own runs (the norm
sweep, data-mismatch checks) train into their own folders.
"""

from __future__ import annotations

import pytest
from toy_runs import toy_config, write_toy_csv

from lpft.methods.config import METHODS
from lpft.runs import RunRecord, train


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy-analysis")
    write_toy_csv(folder / "train.csv", 60, 0)
    write_toy_csv(folder / "test.csv", 18, 1)
    write_toy_csv(folder / "shifted.csv", 12, 2)  # same labels, other samples: an "OOD" set
    return folder


@pytest.fixture(scope="session")
def toy_out(tmp_path_factory):
    return tmp_path_factory.mktemp("toy-runs")


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("toy-cache")


@pytest.fixture(scope="session")
def toy_runs(toy_files, tiny_bert_dir, toy_out, toy_cache) -> dict[str, RunRecord]:
    """method -> finished run (seed 0) of every method."""
    return {m: RunRecord(train(toy_config(toy_files, tiny_bert_dir, m), out=toy_out, cache_dir=toy_cache,
                               device="cpu")) for m in METHODS}
