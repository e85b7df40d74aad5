"""Feature statistics of the paper's Table 1: CS(F), Diff(F), FDR(F) and the head norms.

The paper names these statistics but gives no formulas; the definitions below are our reading of its Table 1
(see ``docs/analysis.md``). ``F`` is an (N, h) matrix whose row i is the feature phi_i = phi(x_i) of sample i.
All arithmetic is float64 whatever the input dtype; torch tensors are accepted (detached, moved to the CPU).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

DEFAULT_RIDGE = 1e-3


def as_float64(x, name: str = "array") -> np.ndarray:
    """``x`` (NumPy array, list or torch tensor) as a float64 NumPy array."""
    if hasattr(x, "detach"):  # torch tensor: drop autograd, leave the device
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _features(F, name: str = "F") -> np.ndarray:
    F = as_float64(F, name)
    if F.ndim != 2:
        raise ValueError(f"{name} must be (N, h), got shape {F.shape}")
    return F


def cosine_similarity_mean(F) -> float:
    """CS(F): the mean cosine similarity over all pairs of distinct samples.

        CS(F) = 2 / (N (N - 1)) * sum_{i<j} cos(phi_i, phi_j),   cos(a, b) = <a, b> / (||a|| ||b||)

    With u_i = phi_i / ||phi_i|| the sum over all ordered pairs is ||sum_i u_i||^2, and the diagonal adds N, so

        CS(F) = (||sum_i u_i||^2 - N) / (N (N - 1))

    which is exact and O(N h): no N x N Gram matrix is ever formed, so no chunking is needed for large N.
    Invariant to a positive rescaling of each sample. Needs N >= 2 and no all-zero row (its cosine is undefined).

    >>> round(cosine_similarity_mean([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]), 6)  # (0 + 1/sqrt2 + 1/sqrt2) / 3
    0.471405
    """
    F = _features(F)
    n = F.shape[0]
    if n < 2:
        raise ValueError("CS needs at least two samples")
    norms = np.linalg.norm(F, axis=1)
    if np.any(norms == 0):
        raise ValueError("CS is undefined for an all-zero feature vector")
    s = (F / norms[:, None]).sum(axis=0)
    return float((s @ s - n) / (n * (n - 1)))


def feature_difference(F, F0) -> float:
    """Diff(F): the mean Euclidean distance between each sample's feature and its pre-trained feature.

        Diff(F) = (1/N) sum_i ||phi_i - phi0_i||_2

    Rows of ``F`` and ``F0`` must be the same samples in the same order.

    >>> feature_difference([[3.0, 4.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]])  # (5 + 0) / 2
    2.5
    """
    F, F0 = _features(F), _features(F0, "F0")
    if F.shape != F0.shape:
        raise ValueError(f"F and F0 must have the same shape, got {F.shape} and {F0.shape}")
    return float(np.linalg.norm(F - F0, axis=1).mean())


def fisher_discriminant_ratio(F, labels, ridge: float = DEFAULT_RIDGE) -> float:
    """FDR(F) = trace(S_W^-1 S_B), with a ridge on S_W so it stays finite when h >= N.

    With N_c samples in class c, class mean mu_c, overall mean mu = (1/N) sum_i phi_i (all class-size weighted):

        S_W = (1/N) sum_c sum_{i: y_i = c} (phi_i - mu_c)(phi_i - mu_c)^T     within-class scatter  (h x h)
        S_B = sum_c (N_c / N) (mu_c - mu)(mu_c - mu)^T                         between-class scatter (h x h)
        lambda = ridge * trace(S_W) / h                                        a fraction of S_W's mean eigenvalue
        FDR(F) = trace((S_W + lambda I)^-1 S_B)

    Both scatters carry the same 1/N, so FDR does not depend on N through normalisation. Because lambda scales with
    S_W, FDR is invariant to rescaling all features by one factor (and to any rotation or shift of feature space).

    Why a ridge: with h > N - C (e.g. h = 768 features, a few hundred samples) S_W is singular and the plain ratio is
    infinite or dominated by rounding. Shrinking toward the mean eigenvalue bounds the condition number by about
    h / ridge + 1 (7.7e5 for h = 768 at the default 1e-3), well inside float64. A direction whose within-class variance
    is at least 10% of the mean eigenvalue loses at most 1% of its contribution, so for a well-conditioned S_W the
    default changes FDR by under 1%. In the singular case the value depends on the ridge: compare FDRs only at the same
    ridge. ``ridge=0`` gives the plain ratio and fails loudly if S_W is singular. If S_W = 0 (every sample equals
    its class mean) the ratio is +inf when the classes differ and 0 when they do not.

    Computation: S_B = M^T M with row c of M (C x h) equal to sqrt(N_c/N)(mu_c - mu), so
    FDR = trace(M (S_W + lambda I)^-1 M^T) needs only C right-hand sides. With X the (N, h) class-centred features
    (S_W = X^T X / N), an h x h Cholesky solve is used when h <= N, and otherwise Woodbury's identity
    (S_W + lambda I)^-1 = (I - X^T (N lambda I + X X^T)^-1 X) / lambda, an N x N solve.

    >>> F = [[0.0], [2.0], [10.0], [12.0]]        # class means 1 and 11, overall mean 6
    >>> round(fisher_discriminant_ratio(F, [0, 0, 1, 1], ridge=0), 12)  # S_B = 25, S_W = 1  ->  25
    25.0
    """
    F = _features(F)
    y = np.asarray(labels)
    if y.shape != (F.shape[0],):
        raise ValueError(f"labels must have shape ({F.shape[0]},), got {y.shape}")
    if ridge < 0:
        raise ValueError("ridge must be >= 0")
    n, h = F.shape
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    # centre on the overall mean first (mu = 0 afterwards): it leaves both scatters unchanged and avoids cancellation
    # for features with a large common offset (pre-trained features have pairwise cosines near 1)
    F = F - F.mean(axis=0)
    means = np.zeros((len(classes), h))
    np.add.at(means, inverse, F)
    means /= counts[:, None]
    X = F - means[inverse]
    M = np.sqrt(counts / n)[:, None] * means
    if len(classes) < 2 or not np.any(M):  # no between-class scatter (checked exactly: centring leaves ~1e-16)
        return 0.0
    trace_sw = np.einsum("ij,ij->", X, X) / n
    if trace_sw == 0.0:
        return float("inf")
    lam = ridge * trace_sw / h
    if h <= n or lam == 0.0:
        S = X.T @ X / n + lam * np.eye(h)
        try:
            with warnings.catch_warnings():  # an ill-conditioned S only warns; its solution would be noise
                warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
                Z = scipy.linalg.solve(S, M.T, assume_a="pos")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgWarning) as e:
            raise ValueError("within-class scatter is singular; use ridge > 0") from e
    else:
        K = X @ X.T + n * lam * np.eye(n)
        Z = (M.T - X.T @ scipy.linalg.solve(K, X @ M.T, assume_a="pos")) / lam
    return float(np.einsum("ch,hc->", M, Z))


def head_norms(weight, bias=None) -> tuple[float, float | None]:
    """Norms of the linear head f(x) = V phi(x) + b: (||V||_F, ||b||_2); the bias norm is None without a bias.

    >>> head_norms([[3.0, 0.0], [0.0, 4.0]], [1.0, 0.0])
    (5.0, 1.0)
    """
    V = as_float64(weight, "head weight")
    norm_b = None if bias is None else float(np.linalg.norm(as_float64(bias, "head bias").ravel()))
    return float(np.linalg.norm(V.ravel())), norm_b


def feature_statistics(F, labels, F0=None, head_weight=None, head_bias=None,
                       ridge: float = DEFAULT_RIDGE) -> dict[str, float | None]:
    """All Table 1 statistics in one dict: cs, diff, fdr, norm_weight, norm_bias.

    ``diff`` is None without pre-trained features ``F0``; the norms are None without a head.

    >>> s = feature_statistics([[1.0, 0.0], [1.0, 1.0]], [0, 1], F0=[[1.0, 0.0], [1.0, 0.0]], head_weight=[[2.0, 0.0]])
    >>> s["diff"], s["norm_weight"], s["norm_bias"]
    (0.5, 2.0, None)
    """
    norm_weight, norm_bias = (None, None) if head_weight is None else head_norms(head_weight, head_bias)
    return {
        "cs": cosine_similarity_mean(F),
        "diff": None if F0 is None else feature_difference(F, F0),
        "fdr": fisher_discriminant_ratio(F, labels, ridge=ridge),
        "norm_weight": norm_weight,
        "norm_bias": norm_bias,
    }
