"""Two tiny user-file tasks and a study file over them, shared by the study tests."""

from __future__ import annotations

import pytest
import torch


def write_polarity(path, n: int, offset: int) -> None:
    words = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}
    rows = ["text,label"]
    for i in range(n):
        label = "pos" if (i + offset) % 2 else "neg"
        w = words[label]
        rows.append(f"{w[i % 4]} {w[(i + offset) % 4]} item {i},{label}")
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="session")
def two_tasks(tmp_path_factory):
    """task name -> training CSV (40 rows each, different samples)."""
    folder = tmp_path_factory.mktemp("study-tasks")
    out = {}
    for name, offset in (("alpha", 0), ("beta", 1)):
        write_polarity(folder / f"{name}.csv", 40, offset)
        out[name] = folder / f"{name}.csv"
    return out


def study_toml(two_tasks, model, *, methods=("ft", "lp-ft"), seeds=(1, 2), epochs=2, extra: str = "") -> str:
    lines = ["version = 1", f"tasks = {list(two_tasks)}".replace("'", '"'),
             f"methods = {list(methods)}".replace("'", '"'), f"seeds = {list(seeds)}", "tsne_samples = 8",
             "gd_max_steps = 200", "", "[run]", f'model = "{model}"', f"epochs = {epochs}", "batch_size = 8",
             "lr = 1e-4", "max_length = 16", "lp_cs = 2", "lp_folds = 2", "log_every = 2"]
    for name, csv in two_tasks.items():
        lines += ["", f"[task.{name}]", 'task = "files"', f'train_file = "{csv}"']
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def one_thread():
    """Executors must not change the numbers: compare them at the same thread count as a Ray worker's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
