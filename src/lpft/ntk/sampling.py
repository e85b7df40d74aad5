"""Which examples the eNTK is taken on: a seeded random sample, as the authors draw it, and a class-coverage check.

The authors (``training/kernel_trainer.py``) use the whole split when it has at most 250 examples and otherwise
``np.random.choice(len(split), 250, replace=False)`` under the run's seed; we draw the same way from
``np.random.default_rng([seed, stream])`` (stream 0 for train, 1 for test; their global NumPy state after the LP
stage cannot be reproduced) and sort the indices, so the kernels' rows follow the data order. ``first`` (the first N
examples) is kept as an option: on data sorted by label it can miss whole classes.

Example::

    >>> sample_indices(10, 4, seed=0, how="first")
    [0, 1, 2, 3]
    >>> len(sample_indices(10, 4, seed=0)), sample_indices(3, 250, seed=0)
    (4, [0, 1, 2])
    >>> missing_classes([0, 0, 2], 3)
    [1]
"""

from __future__ import annotations

import numpy as np

from ..options import SAMPLINGS  # noqa: F401  (re-exported)


def sample_indices(total: int, n: int, seed: int, how: str = "random", stream: int = 0) -> list[int]:
    """``min(n, total)`` sorted indices out of ``range(total)``: a seeded random sample or the first ``n``."""
    if how not in SAMPLINGS:
        raise ValueError(f"sampling {how!r}: expected one of {', '.join(SAMPLINGS)}")
    if n >= total or how == "first":
        return list(range(min(n, total)))
    return sorted(np.random.default_rng([seed, stream]).choice(total, n, replace=False).tolist())


def missing_classes(labels, num_labels: int) -> list[int]:
    """Label ids in ``range(num_labels)`` with no example in ``labels``."""
    return sorted(set(range(num_labels)) - set(np.asarray(labels).tolist()))
