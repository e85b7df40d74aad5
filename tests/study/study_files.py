"""Tiny polarity CSVs and study files for the study tests (imported by conftest.py and the tests)."""

from __future__ import annotations


def write_polarity(path, n: int, offset: int) -> None:
    words = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}
    rows = ["text,label"]
    for i in range(n):
        label = "pos" if (i + offset) % 2 else "neg"
        w = words[label]
        rows.append(f"{w[i % 4]} {w[(i + offset) % 4]} item {i},{label}")
    path.write_text("\n".join(rows) + "\n")


def study_toml(two_tasks, model, *, methods=("ft", "lp-ft"), seeds=(1, 2), epochs=2, extra: str = "") -> str:
    lines = ["version = 1", f"tasks = {list(two_tasks)}".replace("'", '"'),
             f"methods = {list(methods)}".replace("'", '"'), f"seeds = {list(seeds)}", "tsne_samples = 8",
             "gd_max_steps = 200", "", "[run]", f'model = "{model}"', f"epochs = {epochs}", "batch_size = 8",
             "lr = 1e-4", "max_length = 16", "lp_cs = 2", "lp_folds = 2", "log_every = 2"]
    for name, csv in two_tasks.items():
        lines += ["", f"[task.{name}]", 'task = "files"', f'train_file = "{csv}"']
    return "\n".join(lines) + "\n" + extra
