"""Kernel statistics of the paper's Table 2: rank, Frobenius norm, FT ratio, kernel-regression accuracy.

All kernels are float64 sample-major matrices (row ``i * C + c``), as made by :mod:`lpft.ntk.kernels`.

Example::

    >>> import numpy as np
    >>> P, F = np.eye(6), np.zeros((6, 6))
    >>> delta = residuals(np.zeros((2, 3)), np.array([0, 2]))
    >>> ft_ratio(P, F, delta, num_labels=3)
    0.0
    >>> numerical_rank(np.kron(np.ones((2, 2)), np.eye(3)))
    3
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..options import KERNEL_SCALINGS  # noqa: F401  (re-exported; documented in lpft.options)

#: Relative tolerance factor for :func:`numerical_rank`: singular values above
#: ``sigma_max * max(shape) * RANK_EPS`` count. float32 machine epsilon, because the gradients behind the kernels
#: are float32 in the fast path — smaller singular values are rounding noise. It equals the default of
#: ``torch.linalg.matrix_rank`` on a float32 matrix (the paper's tolerance is unstated).
RANK_EPS = float(np.finfo(np.float32).eps)


def residuals(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``delta_i = e_{y_i} - softmax(f(x_i))`` flattened sample-major to (N*C,) — minus the CE-loss gradient."""
    logits = np.asarray(logits, np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(logits.shape[1])[np.asarray(labels)]
    return (onehot - p).reshape(-1)


def is_symmetric(K: np.ndarray, rtol: float = 1e-12, rows_per_step: int = 1024) -> bool:
    """Whether square ``K`` equals its transpose to ``rtol`` of its largest entry; checked in row blocks, so no
    temporary of K's size is made (a whole-train-set kernel is hundreds of MB)."""
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        return False
    tol = rtol * max(float(K.max()), -float(K.min())) if K.size else 0.0  # max |K| without an |K| temporary
    return all(np.abs(K[i:i + rows_per_step] - K[:, i:i + rows_per_step].T).max(initial=0.0) <= tol
               for i in range(0, K.shape[0], rows_per_step))


def singular_values(K: np.ndarray) -> np.ndarray:
    """Singular values of ``K`` in decreasing order (float64).

    A symmetric ``K`` — every train x train kernel — goes through ``eigvalsh``: its singular values are its
    eigenvalues' absolute values, and the symmetric solver is ~5x faster than an SVD (n = 3000 on 2 cores: 4.4 s
    against 20.8 s; at a whole-train-set n = 8900 the three spectra of an eNTK folder took ~25 min by SVD). Tested
    against ``np.linalg.svd`` (tests/ntk/test_ntk_stats.py). Any other matrix: the SVD.

    >>> singular_values(np.array([[2.0, 0.0], [0.0, -3.0]]))
    array([3., 2.])
    """
    K = np.asarray(K, np.float64)
    if K.size and is_symmetric(K):
        return np.sort(np.abs(np.linalg.eigvalsh(K)))[::-1]
    return np.linalg.svd(K, compute_uv=False)


def numerical_rank(K: np.ndarray, rtol: float | None = None) -> int:
    """Number of singular values above ``sigma_max * rtol``; default ``rtol = max(K.shape) * RANK_EPS``."""
    s = singular_values(K)
    if s.size == 0 or s[0] == 0:
        return 0
    rtol = max(K.shape) * RANK_EPS if rtol is None else rtol
    return int((s > s[0] * rtol).sum())


def frobenius_norm(K: np.ndarray) -> float:
    return float(np.linalg.norm(K))


def ft_ratio(P: np.ndarray, F: np.ndarray, delta: np.ndarray, num_labels: int) -> float:
    """Mean over the row samples x of ``||sum_i F(x, x_i) delta_i|| / ||sum_i (P + F)(x, x_i) delta_i||``.

    ``P``, ``F``: (M*C, N*C) kernels against the N train samples; ``delta``: (N*C,) from :func:`residuals`.
    1 when P contributes nothing, 0 when F is zero. Rows where the denominator is 0 are skipped.
    """
    fd = (F @ delta).reshape(-1, num_labels)
    kd = ((P + F) @ delta).reshape(-1, num_labels)
    num, den = np.linalg.norm(fd, axis=1), np.linalg.norm(kd, axis=1)
    ok = den > 0
    return float(np.mean(num[ok] / den[ok])) if ok.any() else float("nan")


@dataclass
class KernelRegression:
    """Kernel-regression accuracies (fractions).

    ``entry_*``: the authors' definition — a binary classifier over flattened (sample, class) entries, scored
    per entry; predicting "no" everywhere already scores ``entry_chance = 1 - 1/C``.
    ``argmax_*``: per sample, the class whose entry scores highest, against the label (chance about 1/C).
    """

    entry_train: float
    entry_test: float | None
    argmax_train: float
    argmax_test: float | None
    entry_chance: float


def kernel_regression(K_train: np.ndarray, y_train, K_test: np.ndarray | None = None, y_test=None, *,
                      num_labels: int, Cs: int = 10, cv: int = 5, max_iter: int = 10000,
                      scaling: str = "raw") -> KernelRegression:
    """Fit the authors' kernel-regression probe and score it both ways (see :class:`KernelRegression`).

    Features are kernel rows: (N*C, N*C) for train, (M*C, N*C) for test; targets are the one-hot label entries.
    The authors' solver (``utils/kernel_solvers.py``, ``LogisticKernelSolver``): scikit-learn 1.0's
    ``LogisticRegressionCV(max_iter=10000, random_state=0)`` with its defaults then — L2, lbfgs, ``Cs=10``, 5-fold
    stratified CV scored by accuracy — on the raw kernel (``kernel_regularization`` 0). ``scaling="max"`` divides
    the kernel by its largest absolute train entry first (see :data:`KERNEL_SCALINGS`).
    """
    import inspect

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegressionCV

    if scaling not in KERNEL_SCALINGS:
        raise ValueError(f"kernel scaling {scaling!r}: expected one of {', '.join(KERNEL_SCALINGS)}")
    C = num_labels
    scale = (float(np.abs(K_train).max()) or 1.0) if scaling == "max" else 1.0
    t_train = np.eye(C, dtype=int)[np.asarray(y_train)].reshape(-1)
    fewest = int(np.bincount(t_train, minlength=2).min())
    if fewest < 2:
        raise ValueError(f"kernel regression needs at least 2 train samples (got {len(t_train) // C})")
    cv = min(cv, fewest)  # stratified CV needs both targets in every fold: fewer folds on tiny samples
    # pure L2, scored by accuracy (scikit-learn's old defaults, which newer versions change with warnings)
    pinned = {"l1_ratios": (0.0,), "scoring": "accuracy", "use_legacy_attributes": False}
    known = inspect.signature(LogisticRegressionCV).parameters
    model = LogisticRegressionCV(Cs=Cs, cv=cv, solver="lbfgs", max_iter=max_iter, random_state=0,
                                 **{k: v for k, v in pinned.items() if k in known})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(K_train / scale, t_train)

    def score(K, y):
        t = np.eye(C, dtype=int)[np.asarray(y)].reshape(-1)
        entry = float(model.score(K / scale, t))
        argmax = float(np.mean(model.decision_function(K / scale).reshape(-1, C).argmax(1) == np.asarray(y)))
        return entry, argmax

    e_tr, a_tr = score(K_train, y_train)
    e_te, a_te = score(K_test, y_test) if K_test is not None else (None, None)
    return KernelRegression(e_tr, e_te, a_tr, a_te, 1 - 1 / C)
