"""Tiny saved decoders (GPT-2, Llama, Qwen2) with a word-level tokenizer that has no pad token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_models import save_tiny_decoder


@pytest.fixture(scope="session")
def decoder_dirs(tmp_path_factory) -> dict[str, Path]:
    """arch -> a saved tiny decoder folder, made on first use."""
    made: dict[str, Path] = {}

    class Lazy(dict):
        def __missing__(self, arch):
            made[arch] = save_tiny_decoder(tmp_path_factory.mktemp(f"tiny-{arch}"), arch)
            self[arch] = made[arch]
            return made[arch]

    return Lazy()
