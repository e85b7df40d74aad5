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

ARCHS = ("bert", "roberta")


def tiny_config(arch: str = "bert", vocab_size: int = 30522):
    """A 2-layer encoder with hidden size 32. Vocab matches the embedded tokenizer so saved tiny models load with it."""
    from transformers import BertConfig, RobertaConfig

    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  vocab_size=vocab_size, max_position_embeddings=160)
    if arch == "bert":
        cfg = BertConfig(**common)
    elif arch == "roberta":
        # the embedded (BERT) tokenizer pads with id 0; RoBERTa's position ids depend on padding_idx
        cfg = RobertaConfig(**common, pad_token_id=0, type_vocab_size=1)
    else:
        raise ValueError(arch)
    cfg._attn_implementation = "eager"
    return cfg


def save_tiny_model(path: Path, arch: str = "bert", seed: int = 0) -> Path:
    """Save a tiny random encoder plus the embedded tokenizer to ``path`` so ``Classifier.from_pretrained`` works."""
    from transformers import AutoModel

    from lpft.model import DEFAULT_MODEL, load_tokenizer

    torch.manual_seed(seed)
    model = AutoModel.from_config(tiny_config(arch))
    model.save_pretrained(path)
    load_tokenizer(DEFAULT_MODEL).save_pretrained(path)
    return path


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
