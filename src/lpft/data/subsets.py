"""How a run picks its examples from a split, and how a user's train file is cut into train and validation.

Many public files are ordered by label (BBC News's train file is): the first N rows of such a file may hold one or
two classes, and a file-order 9:1 cut puts the last classes into validation only. So by default
(``subset_order="stratified"``) a subset (``--train-subset``, ``--validation-subset``, ``--eval-subset``) is a
label-stratified sample (:func:`lpft.data.readers.subsample`, scikit-learn's ``train_test_split``) kept in file
order, drawn with the fixed seed :data:`SUBSET_SEED` — not the run's ``--seed``, so every seed and method of a task
sees the same examples and the seed-free linear probe stays shared. For ``--task files`` without a validation file
the 9:1 train / validation cut is stratified the same way (same sizes as the file-order cut). ``"first"`` keeps the
first N rows and the file-order cut: the authors' protocol, and what runs made before this option did. The 9:1 cut
of the benchmark tasks (GLUE, SuperGLUE, BOSS: the paper's rule) is file order either way.

Whatever the order, :func:`check_splits` compares each split's label distribution with its source's — the train
file (train and validation before any subset) for train and validation, the whole test split for test — and warns
when the two differ by a total-variation distance above :data:`TV_THRESHOLD` (0.1) *and* a chi-square goodness-of-fit
test rejects the source's proportions at p < :data:`P_THRESHOLD` (0.01; the test keeps small validation splits from
warning on noise). A train split without an example of a class its source has is an error.

>>> from lpft.data.base import Example
>>> sorted_file = [Example(f"t{i}", i // 10) for i in range(30)]          # 10 of each of 3 labels, in label order
>>> label_counts(take(sorted_file, 9, "first"), 3), label_counts(take(sorted_file, 9, "stratified"), 3)
([9, 0, 0], [3, 3, 3])
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..options import SUBSET_ORDERS  # noqa: F401  (re-exported: the choices live in the torch-free lpft.options)
from .base import DataError, Example, split_train_validation
from .readers import subsample

#: the seed of every stratified subset and cut, fixed so that all seeds and methods of a task share their examples
SUBSET_SEED = 0
#: a split is reported as unrepresentative when TV distance > TV_THRESHOLD and the chi-square p-value < P_THRESHOLD
TV_THRESHOLD = 0.1
P_THRESHOLD = 0.01


def take(examples: list[Example], size: int | None, order: str) -> list[Example]:
    """``size`` examples of a split (all of them when ``size`` is None or not smaller): the first ``size``
    (``order="first"``) or a label-stratified sample in file order drawn with :data:`SUBSET_SEED`."""
    if size is None or len(examples) <= size:
        return examples
    return examples[:size] if order == "first" else subsample(examples, size, SUBSET_SEED)


def cut_train_validation(examples: list[Example], order: str, fraction: float = 0.9
                         ) -> tuple[list[Example], list[Example]]:
    """The 9:1 train / validation cut of a user's train file: in file order (``"first"``, the paper's rule) or
    label-stratified with :data:`SUBSET_SEED` (same sizes; both parts keep file order)."""
    if order == "first":
        return split_train_validation(examples, fraction)
    cut = int(round(len(examples) * fraction))
    if cut in (0, len(examples)):
        return examples[:cut], examples[cut:]
    train = subsample(examples, cut, SUBSET_SEED)
    kept = {id(ex) for ex in train}
    return train, [ex for ex in examples if id(ex) not in kept]


def label_counts(examples: Sequence[Example], num_labels: int) -> list[int]:
    """Examples per label id."""
    return np.bincount([ex.label for ex in examples], minlength=num_labels).astype(int).tolist()


def distribution_shift(counts: Sequence[int], source: Sequence[int]) -> tuple[float, float]:
    """(total-variation distance, chi-square goodness-of-fit p-value) of ``counts`` against ``source``'s
    proportions (the test runs over the classes the source has).

    >>> tv, p = distribution_shift([90, 10], [50, 50]); round(tv, 2), p < 1e-9
    (0.4, True)
    >>> distribution_shift([5, 5], [50, 50])
    (0.0, 1.0)
    """
    from scipy.stats import chisquare

    counts, source = np.asarray(counts, dtype=np.float64), np.asarray(source, dtype=np.float64)
    p, q = counts / counts.sum(), source / source.sum()
    tv = float(0.5 * np.abs(p - q).sum())
    present = q > 0
    if present.sum() < 2 or tv == 0.0:
        return tv, 1.0
    expected = q[present] * counts[present].sum()
    pvalue = float(chisquare(counts[present], expected).pvalue)
    return tv, pvalue if math.isfinite(pvalue) else 0.0


def check_splits(task: str, labels: Sequence[str], counts: dict[str, list[int]], sources: dict[str, list[int]],
                 how: dict[str, str]) -> list[str]:
    """Warnings for splits whose label distribution is unlike their source's; a DataError when the train split lacks
    a class its source has. ``counts`` / ``sources``: label counts per split and of its source; ``how``: per split,
    how it was picked (``"the first 1500 rows (--subset-order first)"``), named in the messages."""
    def shown(c: Sequence[int]) -> str:
        return " / ".join(f"{name} {n}" for name, n in zip(labels, c))

    warnings = []
    for split, c in counts.items():
        source = sources[split]
        missing = [labels[i] for i, (n, s) in enumerate(zip(c, source)) if n == 0 and s > 0]
        if split == "train" and missing:
            raise DataError(f"task {task!r}: the train split ({how[split]}) has no example of class(es) "
                            f"{', '.join(missing)} (counts {shown(c)}; the train file has {shown(source)}): expected "
                            "every class; use --subset-order stratified or a larger --train-subset")
        tv, p = distribution_shift(c, source)
        missing = missing if sum(c) >= len(labels) else []  # a split smaller than the class count lacks some
        if missing or (tv > TV_THRESHOLD and p < P_THRESHOLD):
            lacking = f", no example of {', '.join(missing)}" if missing else ""
            in_file_order = "first" in how[split] or "file-order" in how[split]
            hint = "; --subset-order stratified keeps each class's share" if in_file_order else ""
            warnings.append(f"the {split} split of {task} ({how[split]}) has labels {shown(c)}{lacking}, unlike its "
                            f"source's {shown(source)} (total variation {tv:.2f}, chi-square p = {p:.2g}): its "
                            f"metrics may mislead{hint}")
    return warnings
