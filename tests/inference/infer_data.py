"""Toy data and run configs for the inference tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import numpy as np

from lpft.methods.config import RunConfig

WORDS = {"sport": "goal match team score", "tech": "chip software code phone", "food": "bread cheese soup salt"}
METHODS = ("ft", "lora", "lp")


def write_csv(path, n: int, seed: int, pairs: bool = False) -> None:
    """n rows of class words mixed with filler (labels cycling sport / tech / food); ``pairs`` adds a 2nd column."""
    rng = np.random.default_rng(seed)
    lines = ["text,other,label" if pairs else "text,label"]
    for i in range(n):
        label = list(WORDS)[i % 3]
        words = WORDS[label].split() + ["the", "a", "today", "news"]
        text = " ".join(rng.choice(words, size=int(rng.integers(2, 9))))
        lines.append(f"{text},{' '.join(rng.choice(words, size=3))},{label}" if pairs else f"{text},{label}")
    path.write_text("\n".join(lines) + "\n")


def run_config(files, model_dir, method: str, **overrides) -> RunConfig:
    base = dict(task="files", train_file=str(files / "train.csv"), test_file=str(files / "test.csv"),
                model=str(model_dir), method=method, epochs=1, batch_size=8, lr=1e-3, max_length=16, log_every=2)
    return RunConfig(**{**base, **overrides})
