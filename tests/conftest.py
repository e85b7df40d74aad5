"""Shared fixtures: tiny BERT / RoBERTa models built from a config (fast, offline) and the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never reach the Hugging Face hub (it is unreachable on CI); hub code paths are tested with fakes.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LPFT_DATA_DIR", REPO.parent / "shared" / "data"))

from tiny_models import ARCHS, save_tiny_model, tiny_config  # noqa: E402,F401


@pytest.fixture(scope="session", params=ARCHS)
def tiny_model_dir(request, tmp_path_factory) -> Path:
    """A saved tiny model folder, once per architecture."""
    return save_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark files. Under CI=true a missing folder fails; elsewhere it skips."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real data folder {SHARED_DATA} is missing (CI=true requires it)")
        pytest.skip(f"real data folder {SHARED_DATA} is missing")
    return SHARED_DATA


@pytest.fixture(scope="module")
def polarity_csv(tmp_path_factory) -> Path:
    """A 40-row two-class CSV (pos / neg by word choice): the smallest learnable user-file task."""
    folder = tmp_path_factory.mktemp("polarity")
    rows = ["text,label"] + [f"{'good great fine' if i % 2 else 'bad awful poor'} item {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(40)]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    return folder / "train.csv"
