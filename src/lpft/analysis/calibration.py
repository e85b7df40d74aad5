"""Calibration: temperature scaling, ECE, MCE and reliability bins (the paper's Table 3; the diagrams are drawn by
:func:`lpft.report.plots.reliability_diagram`).

Logits are (N, C) arrays, labels (N,) integer class ids, probabilities (N, C) rows summing to 1. Everything is
float64; softmax and log-softmax come from scipy.special, which subtract the row maximum and so stay exact for
logits of any size.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from lpft.analysis.features import as_float64

N_BINS = 15
LOG_T_BOUNDS = (-7.0, 7.0)  # T in [9.1e-4, 1097]: far beyond any useful temperature, but never 0 or infinite


def _logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = as_float64(logits, "logits")
    y = np.asarray(labels)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"expected logits (N, C) and labels (N,), got {z.shape} and {y.shape}")
    if z.shape[0] == 0:
        raise ValueError("no samples")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in [0, {z.shape[1]})")
    return z, y.astype(np.int64)


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / T).

        NLL(T) = -(1/N) sum_i log softmax(z_i / T)_{y_i}

    >>> round(nll([[0.0, 0.0]], [0]), 6)  # -log(1/2)
    0.693147
    """
    z, y = _logits_labels(logits, labels)
    return float(-log_softmax(z / temperature, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits, labels) -> float:
    """The temperature T > 0 that minimises the validation NLL of softmax(logits / T).

    We optimise t = log T, so T = exp(t) is positive by construction. NLL is convex in 1/T (a log-sum-exp of
    functions linear in 1/T, minus a linear term), hence unimodal in t: a coarse grid over t in [-7, 7] brackets the
    minimum and a bounded Brent search (scipy's ``minimize_scalar``) refines it to about 1e-8 in t, the limit for any
search on function values near a minimum (sqrt of float64's epsilon). When the NLL keeps
    falling toward a bound (e.g. every sample right with huge logits, where T -> 0 is optimal) the bound is returned,
    so T always lies in [exp(-7), exp(7)].

    The paper fits T with Adam (lr 1e-3, T0 = 1, up to 1e5 steps, early stopping with patience 10). That minimises the
    same objective by gradient steps and stops near its unique minimum, within its step size or earlier; ours returns
    that minimum directly, to float64 precision, with no learning rate or patience to tune.

    >>> z = np.array([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    >>> y = [0, 0, 1, 1]        # 3 of 4 right at confidence 0.98; optimum: sigmoid(4 / T) = 3/4, T = 4 / ln 3
    >>> round(fit_temperature(z, y), 6), round(4 / float(np.log(3)), 6)
    (3.640957, 3.640957)
    """
    z, y = _logits_labels(logits, labels)
    rows = np.arange(len(y))

    def objective(t: float) -> float:
        return float(-log_softmax(z * np.exp(-t), axis=1)[rows, y].mean())

    grid = np.linspace(*LOG_T_BOUNDS, 57)  # step 0.25 in log T
    values = np.array([objective(t) for t in grid])
    k = int(np.argmin(values))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    # Brent never evaluates the bracket's ends; keep the grid point if it is at least as good (minimum at a bound)
    t = res.x if res.fun < values[k] else grid[k]
    return float(np.exp(t))


def reliability_bins(probs, labels, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (count, accuracy, mean confidence) on top-label confidence, bins (b/n, (b+1)/n] for b = 0..n-1.

    The top label is the argmax (first index on ties). Confidence exactly 0 joins the first bin, exactly 1.0 the
    last. Empty bins have count 0 and accuracy and confidence 0.

    >>> counts, acc, conf = reliability_bins([[0.9, 0.1], [0.6, 0.4]], [0, 1], n_bins=2)
    >>> counts.tolist(), acc.tolist(), conf.round(6).tolist()
    ([0, 2], [0.0, 0.5], [0.0, 0.75])
    """
    p = as_float64(probs, "probs")
    y = np.asarray(labels)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"expected probs (N, C) and labels (N,), got {p.shape} and {y.shape}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # compare against the interior edges b/n (each correctly rounded, unlike linspace's b * (1/n)) rather than
    # computing ceil(conf * n) - 1, whose float product can land on the wrong side of an integer
    edges = np.arange(1, n_bins) / n_bins
    idx = np.searchsorted(edges, conf, side="left")  # number of edges strictly below conf: bin (lo, hi]
    counts = np.bincount(idx, minlength=n_bins)
    safe = np.maximum(counts, 1)
    acc = np.bincount(idx, weights=correct, minlength=n_bins) / safe
    mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / safe
    return counts, acc, mean_conf


def expected_calibration_error(probs, labels, n_bins: int = N_BINS) -> float:
    """ECE = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)| over equal-width top-label confidence bins.

    >>> expected_calibration_error([[0.9, 0.1], [0.6, 0.4]], [0, 1], n_bins=2)  # one bin: |0.5 - 0.75|
    0.25
    """
    counts, acc, conf = reliability_bins(probs, labels, n_bins)
    return float(np.sum(counts / counts.sum() * np.abs(acc - conf)))


def maximum_calibration_error(probs, labels, n_bins: int = N_BINS) -> float:
    """MCE = max over non-empty bins b of |acc(B_b) - conf(B_b)|.

    >>> maximum_calibration_error([[0.9, 0.1], [0.3, 0.7]], [0, 0], n_bins=4)  # bins: right at 0.9, wrong at 0.7
    0.7
    """
    counts, acc, conf = reliability_bins(probs, labels, n_bins)
    return float(np.max(np.abs(acc - conf)[counts > 0]))


def _test_metrics(z: np.ndarray, y: np.ndarray, temperature: float) -> dict[str, float]:
    p = softmax(z / temperature, axis=1)
    return {
        "ece": expected_calibration_error(p, y),
        "mce": maximum_calibration_error(p, y),
        "nll": nll(z, y, temperature),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
    }


class CalibrationReport(TypedDict):
    """:func:`calibration_report`'s result: T, and the test metrics at T = 1 (``_before``) and at T (``_after``)."""

    temperature: float
    ece_before: float
    mce_before: float
    nll_before: float
    accuracy_before: float
    ece_after: float
    mce_after: float
    nll_after: float
    accuracy_after: float


def calibration_report(val_logits, val_labels, test_logits, test_labels) -> CalibrationReport:
    """Fit T on validation, then ECE, MCE, NLL and accuracy on test before (T = 1) and after scaling.

    Keys: temperature, and ece/mce/nll/accuracy each with a _before and an _after suffix. Accuracy is the same
    both times (T > 0 keeps every argmax); it is reported twice so each half of the table is complete.

    >>> rep = calibration_report([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0]], [0, 1, 1], [[3.0, 0.0], [0.0, 3.0]], [0, 0])
    >>> rep["temperature"] > 1, rep["nll_after"] < rep["nll_before"], rep["accuracy_after"]
    (True, True, 0.5)
    """
    z_val, y_val = _logits_labels(val_logits, val_labels)
    z_test, y_test = _logits_labels(test_logits, test_labels)
    T = fit_temperature(z_val, y_val)
    report = {"temperature": T}
    for suffix, temp in (("before", 1.0), ("after", T)):
        report.update({f"{k}_{suffix}": v for k, v in _test_metrics(z_test, y_test, temp).items()})
    return CalibrationReport(**report)  # type: ignore[typeddict-item]  # the keys built above, in this order
