"""Fixtures for inference: a toy 3-class CSV task (single texts) and a 2-column one (sentence pairs), and finished
runs of a tiny BERT trained on them once per session (a few seconds each on 2 cores)."""

from __future__ import annotations

import pytest
from infer_data import METHODS, run_config, write_csv

from lpft.runs import train


@pytest.fixture(scope="session")
def infer_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("infer-data")
    write_csv(folder / "train.csv", 48, 0)
    write_csv(folder / "test.csv", 15, 1)
    write_csv(folder / "pairs-train.csv", 48, 2, pairs=True)
    write_csv(folder / "pairs-test.csv", 15, 3, pairs=True)
    return folder


@pytest.fixture(scope="session")
def infer_runs(infer_files, tiny_bert_dir, tmp_path_factory):
    """method -> finished run folder of a tiny BERT on the single-text task, plus "pairs": FT on the pair task."""
    out, cache = tmp_path_factory.mktemp("infer-runs"), tmp_path_factory.mktemp("infer-cache")
    runs = {m: train(run_config(infer_files, tiny_bert_dir, m), out=out, cache_dir=cache, device="cpu")
            for m in METHODS}
    runs["pairs"] = train(run_config(infer_files, tiny_bert_dir, "ft", train_file=str(infer_files / "pairs-train.csv"),
                                     test_file=str(infer_files / "pairs-test.csv"), text_columns="text,other"),
                          out=out, cache_dir=cache, device="cpu")
    return runs
