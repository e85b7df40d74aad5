"""Kernel statistics (rank, norms, FT ratio, kernel regression) and figures on matrices with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lpft.ntk import frobenius_norm, ft_ratio, kernel_regression, numerical_rank, pretrain_kernel, residuals
from lpft.ntk.plots import normalized_spectrum, pair_trace_norms, plot_pair_norms, plot_spectra
from lpft.ntk.stats import RANK_EPS


def test_numerical_rank_of_known_low_rank_matrix():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 5))
    K = A @ A.T
    assert numerical_rank(K) == 5
    assert numerical_rank(K + 1e-4 * np.eye(30) * np.abs(K).max()) == 30  # above 30 * float32 eps
    assert numerical_rank(K + 1e-9 * np.eye(30) * np.abs(K).max()) == 5  # float32 rounding level: ignored
    assert numerical_rank(np.zeros((4, 4))) == 0
    s = np.linalg.svd(K, compute_uv=False)
    assert numerical_rank(K, rtol=s[2] / s[0] * 0.999) == 3
    assert RANK_EPS == np.finfo(np.float32).eps


def test_frobenius_norm():
    assert frobenius_norm(np.array([[3.0, 0], [0, 4.0]])) == pytest.approx(5.0)


def test_residuals_are_onehot_minus_softmax():
    logits = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, -10.0]])
    d = residuals(logits, np.array([1, 0])).reshape(2, 3)
    assert np.allclose(d[0], [-1 / 3, 2 / 3, -1 / 3])
    assert np.allclose(d.sum(1), 0)
    assert d[1, 0] == pytest.approx(1 - 1 / (1 + np.exp(-10) + np.exp(-20)))


def test_ft_ratio_limits_and_value():
    rng = np.random.default_rng(1)
    N, C = 5, 3
    A = rng.normal(size=(N * C, N * C))
    F = A @ A.T
    P = pretrain_kernel(rng.normal(size=(N, 4)), rng.normal(size=(N, 4)), C)
    delta = residuals(rng.normal(size=(N, C)), rng.integers(0, C, N))
    assert ft_ratio(np.zeros_like(F), F, delta, C) == pytest.approx(1.0)
    assert ft_ratio(P, np.zeros_like(F), delta, C) == 0.0
    fd, kd = (F @ delta).reshape(N, C), ((P + F) @ delta).reshape(N, C)
    want = np.mean(np.linalg.norm(fd, axis=1) / np.linalg.norm(kd, axis=1))
    assert ft_ratio(P, F, delta, C) == pytest.approx(want)


def test_pretrain_kernel_is_sample_major_kron():
    phi = np.array([[1.0, 0.0], [0.5, 2.0]])
    P = pretrain_kernel(phi, phi, 3)
    assert P.shape == (6, 6)
    assert P[1 * 3 + 2, 0 * 3 + 2] == pytest.approx(phi[1] @ phi[0] + 1)  # row i*C + c
    assert P[1 * 3 + 2, 0 * 3 + 1] == 0.0


def _separable_kernel(labels_rows, labels_cols, C):
    """A pretrain-style kernel with one-hot class features: each entry's row reveals whether y_i == c."""
    f_rows, f_cols = 10 * np.eye(C)[labels_rows], 10 * np.eye(C)[labels_cols]
    return pretrain_kernel(f_rows, f_cols, C)


def test_kernel_regression_on_trivially_separable_kernel():
    C = 3
    y_train = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    y_test = np.array([2, 1, 0, 0])
    res = kernel_regression(_separable_kernel(y_train, y_train, C), y_train,
                            _separable_kernel(y_test, y_train, C), y_test, num_labels=C, cv=3)
    assert res.entry_chance == pytest.approx(2 / 3)
    assert res.entry_train == 1.0 and res.entry_test == 1.0
    assert res.argmax_train == 1.0 and res.argmax_test == 1.0


def test_kernel_regression_on_uninformative_kernel_is_at_entry_chance():
    C = 3
    y = np.array([0, 1, 2] * 4)
    K = pretrain_kernel(np.ones((12, 2)), np.ones((12, 2)), C)  # identical samples
    res = kernel_regression(K, y, num_labels=C, cv=3)
    assert res.entry_train == pytest.approx(2 / 3)  # predicts "no" for every entry
    assert res.entry_test is None and res.argmax_test is None


def test_pair_trace_norms_and_spectrum():
    A = np.array([[2.0, -1.0], [-1.0, 3.0]])
    K = np.kron(A, np.eye(3))
    assert np.allclose(pair_trace_norms(K, 3), 3 * np.abs(A))
    s = normalized_spectrum(np.diag([4.0, 2.0, 1.0]))
    assert np.allclose(s, [1, 0.5, 0.25])


def test_plots_write_files(tmp_path):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(12, 12))
    labels = np.array([0, 1, 2, 0])
    plot_spectra({"FT": A @ A.T, "LoRA": np.eye(12)}, path=tmp_path / "spectra.png", title="CB")
    fig = plot_pair_norms({"P": np.eye(12), "F": A @ A.T}, labels, 3, path=tmp_path / "pairs.png",
                          label_names=["entailment", "contradiction", "neutral"])
    assert len(fig.axes) == 4  # two heatmaps + two colorbars
    assert (tmp_path / "spectra.png").stat().st_size > 0 and (tmp_path / "pairs.png").stat().st_size > 0


def test_ft_ratio_is_not_bounded_by_one():
    """F delta and P delta can point against each other at a sample (paper: 1.0137 for LP-LoRA)."""
    P = np.array([[1.0, 1.0], [1.0, 1.0]])  # PSD, C = 1
    F = np.array([[1.0, -1.0], [-1.0, 1.0]])  # PSD
    delta = np.array([1.0, 0.2])
    # rows: |F d| / |(P + F) d| = 0.8 / 2.0 and 0.8 / 0.4
    assert ft_ratio(P, F, delta, num_labels=1) == pytest.approx((0.4 + 2.0) / 2)


def test_kernel_regression_is_the_authors_solver_on_the_raw_kernel():
    """scaling="raw": LogisticRegressionCV(max_iter=10000, random_state=0), L2 / lbfgs / 10 Cs / 5 folds /
    accuracy, fitted on the kernel rows as they are (the authors' LogisticKernelSolver)."""
    from sklearn.linear_model import LogisticRegressionCV

    rng = np.random.default_rng(0)
    C, y = 3, np.arange(30) % 3
    feats = 3 * np.eye(C)[y] + rng.normal(size=(30, C))
    K = 40.0 * pretrain_kernel(feats, feats, C)  # entries far from 1, as eNTKs are
    res = kernel_regression(K, y, num_labels=C)
    targets = np.eye(C, dtype=int)[y].reshape(-1)
    oracle = LogisticRegressionCV(Cs=10, cv=5, solver="lbfgs", max_iter=10000, random_state=0,
                                  scoring="accuracy").fit(K, targets)
    assert res.entry_train == pytest.approx(oracle.score(K, targets))
    assert res.argmax_train == pytest.approx(np.mean(oracle.decision_function(K).reshape(-1, C).argmax(1) == y))
    # scaling="max" (a deviation, kept as an option) is invariant to the kernel's scale; raw is not required to be
    a, b = (kernel_regression(s * K, y, num_labels=C, scaling="max") for s in (1.0, 1e4))
    assert (a.entry_train, a.argmax_train) == (b.entry_train, b.argmax_train)
    with pytest.raises(ValueError, match="kernel scaling 'unit'"):
        kernel_regression(K, y, num_labels=C, scaling="unit")


@pytest.mark.parametrize("kind", ["psd", "symmetric indefinite", "rank deficient", "not symmetric", "rectangular"])
def test_singular_values_equal_the_svd(kind):
    """The fast path (eigvalsh of a symmetric kernel) against the obviously correct one (the SVD), float64."""
    from lpft.ntk.stats import is_symmetric, singular_values

    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 25))
    K = {"psd": A @ A.T, "symmetric indefinite": A[:, :20] @ A[:, :20].T - A[:, 20:] @ A[:, 20:].T,
         "rank deficient": np.kron(A[:8] @ A[:8].T, np.eye(3)), "not symmetric": A @ rng.standard_normal((25, 40)),
         "rectangular": A}[kind]
    assert is_symmetric(K, rows_per_step=7) == (kind not in ("not symmetric", "rectangular"))
    s = singular_values(K)
    np.testing.assert_allclose(s, np.linalg.svd(K, compute_uv=False), rtol=0, atol=1e-10 * s[0])
    assert np.all(np.diff(s) <= 0)
    assert numerical_rank(K) == np.linalg.matrix_rank(K, tol=np.linalg.svd(K, compute_uv=False)[0]
                                                          * max(K.shape) * RANK_EPS)
