"""Toy data and run configs for the analysis tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import numpy as np

from lpft.methods.config import RunConfig

WORDS = {"sport": "goal match team score", "tech": "chip software code phone", "food": "bread cheese soup salt"}


def write_toy_csv(path, n: int, seed: int) -> None:
    """n rows of class words mixed with shared filler, labels cycling sport / tech / food."""
    rng = np.random.default_rng(seed)
    lines = ["text,label"]
    for i in range(n):
        label = list(WORDS)[i % 3]
        words = WORDS[label].split() + ["the", "a", "today", "news"]
        lines.append(" ".join(rng.choice(words, size=6)) + f",{label}")
    path.write_text("\n".join(lines) + "\n")


def toy_config(toy_files, model_dir, method: str = "ft", **overrides) -> RunConfig:
    base = dict(task="files", train_file=str(toy_files / "train.csv"), test_file=str(toy_files / "test.csv"),
                model=str(model_dir), method=method, epochs=1, batch_size=8, lr=1e-4, max_length=16, log_every=2)
    base.update(overrides)
    return RunConfig(**base)
