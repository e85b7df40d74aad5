"""Task metrics, computed with scikit-learn from integer labels and predictions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

METRICS = {
    "accuracy": lambda y, p: float(accuracy_score(y, p)),
    "mcc": lambda y, p: float(matthews_corrcoef(y, p)),
    # binary F1 of the positive class (id 1), as GLUE reports for MRPC
    "f1": lambda y, p: float(f1_score(y, p, average="binary", zero_division=0)),
    "macro_f1": lambda y, p: float(f1_score(y, p, average="macro", zero_division=0)),
}


def compute_metrics(names, labels, logits_or_preds) -> dict[str, float]:
    """Compute each metric in ``names``. ``logits_or_preds`` is (N, C) logits or (N,) integer predictions.

    >>> compute_metrics(["accuracy"], [0, 1, 1], [[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    {'accuracy': 0.6666666666666666}
    """
    y = np.asarray(labels)
    p = np.asarray(logits_or_preds)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}: expected one of {', '.join(METRICS)}")
    return {n: METRICS[n](y, p) for n in names}
