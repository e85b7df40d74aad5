"""LP by gradient descent: same objective as scikit-learn, lands on its solution, logs like steps.json."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lpft.analysis.dynamics import (
    compare_to_probe,
    gd_linear_probe,
    lp_dynamics,
    lp_objective,
    probe_regularisation,
    snap_to_grid,
    verdict,
)
from lpft.config import ConfigError

STEP_KEYS = {"step", "loss", "head_weight_norm", "head_bias_norm", "mean_logit_norm"}


def blobs(n_classes: int, n: int = 90, h: int = 6, seed: int = 0):
    """Overlapping Gaussian classes (not separable, so the regularised optimum is finite and well defined)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    return rng.normal(size=(n_classes, h))[y] + rng.normal(size=(n, h)) + 1.0, y


def sklearn_head(X, y, C):
    """scikit-learn's exact solution, in lpft's head form (binary: the pair (-w/2, w/2), as methods/lp.py does)."""
    m = LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(X, y)
    W, b = m.coef_, m.intercept_
    if W.shape[0] == 1:
        W, b = np.concatenate([-W / 2, W / 2]), np.concatenate([-b / 2, b / 2])
    return W, b


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("C", [0.01, 1.0])
def test_stationarity_recovers_sklearns_C(n_classes, C):
    X, y = blobs(n_classes)
    W, b = sklearn_head(X, y, C)
    recovered, residual = probe_regularisation(X, y, W, b)
    assert recovered == pytest.approx(C, rel=1e-4) and residual < 1e-4
    # a head that is not an optimum for any C shows a large residual
    assert probe_regularisation(X, y, W + 0.3, b)[1] > 1e-2


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("accelerated", [True, False])
def test_gradient_descent_lands_on_the_sklearn_solution(n_classes, accelerated):
    X, y = blobs(n_classes)
    C = 0.1
    W, b = sklearn_head(X, y, C)
    rng = np.random.default_rng(1)
    gd = gd_linear_probe(X, y, n_classes, C, rng.uniform(-0.4, 0.4, W.shape), rng.uniform(-0.4, 0.4, n_classes),
                         tol=1e-8, accelerated=accelerated)
    assert gd.converged
    check = compare_to_probe(X, y, gd.weight, gd.bias, W, b, C)
    assert check["near"] and check["agreement"] == 1.0
    assert check["rel_weight_diff"] < 1e-4 and abs(check["objective_gap"]) < 1e-9
    # the same objective: scikit-learn's head is (numerically) its minimum
    assert lp_objective(X, y, W, b, C)[0] <= lp_objective(X, y, W * 1.01, b, C)[0]


def test_plain_descent_decreases_the_objective_every_logged_step():
    X, y = blobs(3)
    gd = gd_linear_probe(X, y, 3, 0.5, log_every=1, max_steps=300, accelerated=False)
    objectives = [s["objective"] for s in gd.steps]
    assert all(a >= b - 1e-12 for a, b in zip(objectives, objectives[1:]))
    assert not gd.converged and gd.n_steps == 300


def test_logging_every_k_steps_like_steps_json():
    X, y = blobs(3)
    gd = gd_linear_probe(X, y, 3, 0.5, log_every=25, max_steps=200)
    steps = [s["step"] for s in gd.steps]
    assert steps == [0, 1, 25, 50, 75, 100, 125, 150, 175, 200]
    assert STEP_KEYS <= set(gd.steps[0])
    first = gd.steps[0]  # from the zero head: all logits 0, loss log(3)
    assert first["head_weight_norm"] == 0 and first["loss"] == pytest.approx(np.log(3))
    # the head norm grows as cross-entropy fits (the paper's point about LP)
    assert gd.steps[-1]["head_weight_norm"] > 0.1


def test_bad_inputs_raise():
    X, y = blobs(3)
    with pytest.raises(ValueError, match="C must be > 0"):
        gd_linear_probe(X, y, 3, 0.0)
    with pytest.raises(ValueError, match="initial head"):
        gd_linear_probe(X, y, 3, 1.0, init_weight=np.zeros((2, 6)))
    with pytest.raises(ValueError, match="labels must lie"):
        gd_linear_probe(X, y + 1, 3, 1.0)


def test_snap_to_grid_and_verdict():
    grid = np.logspace(-4, 4, 10)
    assert snap_to_grid(grid[3] * 1.3, 10) == grid[3] and snap_to_grid(grid[3] / 1.3, 10) == grid[3]
    assert snap_to_grid(1e9, 10) == 1e4
    near = {"near": True, "objective_gap": 0.0}
    assert verdict(near, True) == "near"
    assert verdict({"near": False, "objective_gap": -1e-3}, True).startswith("scikit-learn stopped short")
    assert verdict({"near": False, "objective_gap": 1e-3}, False).startswith("GD not converged")


def test_lp_dynamics_of_a_run(toy_runs):
    # the tiny random BERT's features are nearly parallel (CS ~ 1 - 1e-5), so its probe is badly conditioned and
    # takes ~4e4 steps; the structure is checked here, convergence on synthetic data above and on CB (integration)
    result = lp_dynamics(toy_runs["lp-ft"], max_steps=500, log_every=100)
    assert result["C"] in np.logspace(-4, 4, toy_runs["lp-ft"].config.lp_cs)
    assert STEP_KEYS <= set(result["steps"][0]) and result["steps"][0]["step"] == 0
    # starts at the run's initial head
    assert result["steps"][0]["head_weight_norm"] == pytest.approx(np.linalg.norm(toy_runs["lp-ft"].head("init")[0]))
    assert [s["step"] for s in result["steps"]] == [0, 1, 100, 200, 300, 400, 500] and result["n_steps"] == 500
    assert result["steps"][-1]["objective"] < result["steps"][0]["objective"]
    assert set(result["check"]) >= {"near", "max_prob_diff", "rel_weight_diff", "objective_gap"}
    with pytest.raises(ConfigError, match="has no LP stage"):
        lp_dynamics(toy_runs["ft"])
