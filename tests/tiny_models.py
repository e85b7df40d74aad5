"""Tiny BERT / RoBERTa encoders built from a config: fast, offline models for unit tests."""

from __future__ import annotations

from pathlib import Path

import torch

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
