"""Head-norm dynamics (paper Figure 1): the LP curve by full-batch gradient descent, and the FT / LoRA curves.

FT, LoRA, LP-FT and LP-LoRA runs log, every ``log_every`` optimiser steps, the training loss, ``||V||_F``, ``||b||``
and the mean logit norm of the batch into ``steps.json``. LP through scikit-learn (lbfgs) has no such steps, so
:func:`gd_linear_probe` solves the *same* problem by plain full-batch gradient descent on the cached pre-trained
features and logs the same quantities; :func:`compare_to_probe` checks that it lands on scikit-learn's solution.

The objective. scikit-learn minimises ``0.5 ||W||^2 + C sum_i CE_i`` (intercept not penalised), with one
coefficient row per class for C > 2 classes and a single row ``w`` for binary tasks. lpft stores a binary probe as
the softmax pair ``V = (-w/2, w/2)`` (``methods/lp.py``), where ``||V||_F^2 = ||w||^2 / 2``. Dividing by ``C N``,
both cases are one objective in lpft's head parametrisation::

    J(V, b) = (1/N) sum_i CE(softmax(V phi_i + b), y_i) + kappa / (2 C N) ||V||_F^2,   kappa = 2 if binary else 1

J is strictly convex in V with a unique minimiser, whose binary rows automatically sum to zero (the penalty removes
any common component the loss cannot see), so gradient descent from any head converges to scikit-learn's solution.

The chosen C. The probe cache stores the head only, not LogisticRegressionCV's ``C_``; but at the optimum
``grad J = 0`` gives ``V = (C / kappa) A`` with ``A = sum_i (e_{y_i} - p_i) phi_i^T``, which determines C
uniquely: ``C = kappa <V, A> / ||A||^2`` (:func:`probe_regularisation`). Its residual
``||V - (C / kappa) A|| / ||V||`` measures how well lbfgs converged. ``C_`` is always one of the grid values
``np.logspace(-4, 4, Cs)`` (what scikit-learn tries for an integer ``Cs``), so :func:`lp_dynamics` snaps the
recovered value to the nearest grid point in log scale: exact even when lbfgs stopped short of the optimum (it stops
at a gradient tolerance of 1e-4, which with weak regularisation can leave the recovered C off by tens of percent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_softmax, softmax

# compare_to_probe: the GD solution is "near" scikit-learn's when both hold
MAX_PROB_DIFF = 1e-2
MAX_REL_WEIGHT_DIFF = 2e-2


def _kappa(num_labels: int) -> float:
    return 2.0 if num_labels == 2 else 1.0


def _as_inputs(features, labels, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if X.ndim != 2 or y.shape != (X.shape[0],) or len(y) == 0:
        raise ValueError(f"expected features (N, h) and labels (N,), got {X.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= num_labels:
        raise ValueError(f"labels must lie in [0, {num_labels})")
    return X, y


def probe_regularisation(features, labels, weight, bias) -> tuple[float, float]:
    """(C, residual): the inverse regularisation strength at which (weight, bias) is stationary (module docstring).

    A residual near 0 means the head is the exact optimum for that C; a large one means it is not an L2-regularised
    logistic-regression optimum at all (then the returned C is only a least-squares fit).
    """
    V = np.asarray(weight, dtype=np.float64)
    X, y = _as_inputs(features, labels, V.shape[0])
    P = softmax(X @ V.T + np.asarray(bias, dtype=np.float64), axis=1)
    A = (np.eye(V.shape[0])[y] - P).T @ X
    denom = float(np.sum(A * A))
    if denom == 0.0:
        raise ValueError("the head fits every sample exactly (zero gradient): C is unbounded")
    kappa = _kappa(V.shape[0])
    C = kappa * float(np.sum(V * A)) / denom
    residual = float(np.linalg.norm(V - (C / kappa) * A) / max(np.linalg.norm(V), 1e-300))
    return C, residual


def snap_to_grid(C: float, cs: int) -> float:
    """The value of scikit-learn's default grid ``np.logspace(-4, 4, cs)`` nearest to C in log scale."""
    grid = np.logspace(-4, 4, cs)
    return float(grid[np.argmin(np.abs(np.log(grid) - np.log(C)))])


def lp_objective(features, labels, weight, bias, C: float) -> tuple[float, float]:
    """(J, mean cross-entropy) of the head (weight, bias) under the LP objective with inverse strength C."""
    V = np.asarray(weight, dtype=np.float64)
    X, y = _as_inputs(features, labels, V.shape[0])
    ce = float(-log_softmax(X @ V.T + np.asarray(bias, dtype=np.float64), axis=1)[np.arange(len(y)), y].mean())
    return ce + _kappa(V.shape[0]) / (2 * C * len(y)) * float(np.sum(V * V)), ce


@dataclass
class GDResult:
    weight: np.ndarray
    bias: np.ndarray
    steps: list[dict] = field(default_factory=list)
    converged: bool = False
    n_steps: int = 0
    step_size: float = 0.0


def gd_linear_probe(features, labels, num_labels: int, C: float, init_weight=None, init_bias=None,
                    max_steps: int = 100_000, log_every: int = 10, tol: float = 1e-6,
                    accelerated: bool = True) -> GDResult:
    """Minimise the LP objective J by full-batch gradient descent from (init_weight, init_bias) (default 0).

    Step size 1/L with L an upper bound on J's curvature: the softmax cross-entropy's Hessian is at most 1/2 times
    the Gram matrix of [phi, 1], so L = sigma_max([X, 1])^2 / (2N) + kappa / (C N). Plain gradient descent
    (``accelerated=False``) then decreases J at every step, but it is slow here: pre-trained features share a large
    common component (their mean cosine is near 1), so the unpenalised bias and that direction of V are badly
    conditioned and plain descent needs 1e4-1e6 steps. By default Nesterov's accelerated gradient is used, with
    momentum (k - 1) / (k + 2) and gradient-based adaptive restart (O'Donoghue & Candes 2015: k resets to 0 when
    the step opposes the look-ahead gradient): full-batch first-order steps on the same J with the same step size,
    needing no estimate of the (unknown) strong-convexity constant. Its J need not fall monotonically.
    Stops when ||grad J|| <= tol * ||grad J at the start|| or after ``max_steps``. Every ``log_every`` steps (and at
    steps 0, 1 and the last) a row like ``steps.json``'s: step, loss (mean CE), objective, head_weight_norm,
    head_bias_norm, mean_logit_norm (over all N samples: the batch is the whole training set).
    """
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    X, y = _as_inputs(features, labels, num_labels)
    n, h = X.shape
    V = np.zeros((num_labels, h)) if init_weight is None else np.array(init_weight, dtype=np.float64)
    b = np.zeros(num_labels) if init_bias is None else np.array(init_bias, dtype=np.float64)
    if V.shape != (num_labels, h) or b.shape != (num_labels,):
        raise ValueError(f"initial head must be ({num_labels}, {h}) and ({num_labels},), got {V.shape} and {b.shape}")
    lam = _kappa(num_labels) / (C * n)
    Y = np.eye(num_labels)[y]
    sigma_max = np.linalg.norm(np.hstack([X, np.ones((n, 1))]), 2)
    step_size = 1.0 / (sigma_max ** 2 / (2 * n) + lam)
    result = GDResult(V, b, step_size=step_size)

    def log(step: int, Z: np.ndarray) -> None:  # reads the current V, b of the loop below
        ce = float(-log_softmax(Z, axis=1)[np.arange(n), y].mean())
        result.steps.append({"step": step, "loss": ce, "objective": ce + lam / 2 * float(np.sum(V * V)),
                             "head_weight_norm": float(np.linalg.norm(V)), "head_bias_norm": float(np.linalg.norm(b)),
                             "mean_logit_norm": float(np.linalg.norm(Z, axis=1).mean())})

    def gradient(V_: np.ndarray, b_: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Z_ = X @ V_.T + b_
        R = (softmax(Z_, axis=1) - Y) / n
        return R.T @ X + lam * V_, R.sum(axis=0), Z_

    V_prev, b_prev = V.copy(), b.copy()
    g0 = None
    step = momentum_k = 0
    while True:
        # convergence is judged (and the row logged) at the iterate itself, not at the look-ahead point
        gV, gb, Z = gradient(V, b)
        gnorm = float(np.sqrt(np.sum(gV * gV) + np.sum(gb * gb)))
        g0 = gnorm if g0 is None else g0
        done = gnorm <= tol * g0 or step >= max_steps
        if step <= 1 or step % log_every == 0 or done:
            log(step, Z)
        if done:
            result.converged = gnorm <= tol * g0
            break
        if accelerated:
            beta = (momentum_k - 1) / (momentum_k + 2) if momentum_k > 0 else 0.0
            look_V, look_b = V + beta * (V - V_prev), b + beta * (b - b_prev)
            gV, gb, _ = gradient(look_V, look_b)
            new_V, new_b = look_V - step_size * gV, look_b - step_size * gb
            # restart when the look-ahead gradient points along the step just taken (momentum overshoots)
            momentum_k = 0 if np.sum(gV * (new_V - V)) + np.sum(gb * (new_b - b)) > 0 else momentum_k + 1
            V_prev, b_prev, V, b = V, b, new_V, new_b
        else:
            V, b = V - step_size * gV, b - step_size * gb
        step += 1
    result.weight, result.bias, result.n_steps = V, b, step
    return result


def compare_to_probe(features, labels, gd_weight, gd_bias, probe_weight, probe_bias, C: float) -> dict:
    """How close the gradient-descent head is to scikit-learn's on the training features.

    ``max_prob_diff``: largest |p_gd - p_sklearn| over samples and classes; ``rel_weight_diff``:
    ||V_gd - V_sk||_F / ||V_sk||_F; ``objective_gap``: J(gd) - J(sklearn) (negative when lbfgs stopped short of the
    optimum); ``agreement``: share of samples with the same predicted class; ``near``: both difference thresholds
    (``MAX_PROB_DIFF``, ``MAX_REL_WEIGHT_DIFF``) met.
    """
    X = np.asarray(features, dtype=np.float64)
    z_gd = X @ np.asarray(gd_weight, dtype=np.float64).T + gd_bias
    z_sk = X @ np.asarray(probe_weight, dtype=np.float64).T + probe_bias
    p_gd, p_sk = softmax(z_gd, axis=1), softmax(z_sk, axis=1)
    rel = float(np.linalg.norm(np.asarray(gd_weight) - probe_weight) / np.linalg.norm(probe_weight))
    max_prob = float(np.abs(p_gd - p_sk).max())
    return {
        "max_prob_diff": max_prob,
        "rel_weight_diff": rel,
        "objective_gap": lp_objective(X, labels, gd_weight, gd_bias, C)[0]
        - lp_objective(X, labels, probe_weight, probe_bias, C)[0],
        "agreement": float(np.mean(z_gd.argmax(1) == z_sk.argmax(1))),
        "gd_weight_norm": float(np.linalg.norm(gd_weight)),
        "probe_weight_norm": float(np.linalg.norm(probe_weight)),
        "near": bool(max_prob <= MAX_PROB_DIFF and rel <= MAX_REL_WEIGHT_DIFF),
    }


def verdict(check: dict, converged: bool) -> str:
    """One phrase for a report: whether GD matched the probe, and if not, which side stopped short."""
    if check["near"]:
        return "near"
    if not converged:
        return "GD not converged (raise the step cap)"
    if check["objective_gap"] < 0:
        return "scikit-learn stopped short (GD objective lower)"
    return "far"


def lp_dynamics(record, data_dir: str | None = None, cache_dir=None, max_steps: int = 100_000,
                log_every: int | None = None, tol: float = 1e-6) -> dict:
    """The LP curve of a run that used LP (lp, lp-ft, lp-lora), from its cached pre-trained train features.

    Starts at the run's initial head (heads/init: the same seeded head FT starts from), so the curve shows the norm
    growing from a fresh head to the probe. Returns ``{"steps", "C" (snapped to the grid), "C_recovered",
    "stationarity_residual", "converged", "n_steps", "step_size", "check", "verdict"}`` with ``check`` from
    :func:`compare_to_probe`.
    """
    from ..config import ConfigError
    from .run_features import run_features, run_split

    if not record.config.uses_lp:
        raise ConfigError(f"run {record.path} ({record.config.method}) has no LP stage: expected lp, lp-ft or lp-lora")
    train = run_split(record, "train", data_dir)
    X = run_features(record, train, "pretrained", cache_dir)
    probe_w, probe_b = record.head("lp")
    recovered, residual = probe_regularisation(X, train.labels, probe_w, probe_b)
    C = snap_to_grid(recovered, record.config.lp_cs)
    init_w, init_b = record.head("init")
    gd = gd_linear_probe(X, train.labels, probe_w.shape[0], C, init_w, init_b, max_steps=max_steps,
                         log_every=log_every or record.config.log_every, tol=tol)
    check = compare_to_probe(X, train.labels, gd.weight, gd.bias, probe_w, probe_b, C)
    return {"steps": gd.steps, "C": C, "C_recovered": recovered, "stationarity_residual": residual,
            "converged": gd.converged, "n_steps": gd.n_steps, "step_size": gd.step_size, "check": check,
            "verdict": verdict(check, gd.converged)}
