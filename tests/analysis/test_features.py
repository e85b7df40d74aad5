"""Feature statistics against hand-computed values, explicit dense formulas and their invariances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lpft.analysis.features import (
    cosine_similarity_mean,
    feature_difference,
    feature_statistics,
    fisher_discriminant_ratio,
    head_norms,
)


def dense_fdr(F, y, ridge):
    """FDR straight from the docstring's formulas: explicit h x h scatters and a dense solve."""
    F, y = np.asarray(F, dtype=np.float64), np.asarray(y)
    n, h = F.shape
    mu = F.mean(axis=0)
    S_W, S_B = np.zeros((h, h)), np.zeros((h, h))
    for c in np.unique(y):
        Fc = F[y == c]
        d = Fc - Fc.mean(axis=0)
        S_W += d.T @ d / n
        m = Fc.mean(axis=0) - mu
        S_B += len(Fc) / n * np.outer(m, m)
    lam = ridge * np.trace(S_W) / h
    return np.trace(np.linalg.solve(S_W + lam * np.eye(h), S_B))


def random_classes(rng, n, h, n_classes, shift=3.0):
    y = np.arange(n) % n_classes
    F = rng.normal(size=(n, h)) + shift * rng.normal(size=(n_classes, h))[y]
    return F, y


# --- CS -----------------------------------------------------------------------------------------------------------

def test_cs_known_angles():
    # angles 0, 90 and 45 degrees: pairwise cosines 0, 1/sqrt2, 1/sqrt2
    F = [[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]]
    assert cosine_similarity_mean(F) == pytest.approx(2 / np.sqrt(2) / 3, abs=1e-15)


def test_cs_extremes():
    assert cosine_similarity_mean([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]]) == pytest.approx(1.0)
    assert cosine_similarity_mean([[1.0, 2.0], [-3.0, -6.0]]) == pytest.approx(-1.0)


def test_cs_matches_pairwise_loop():
    F = np.random.default_rng(0).normal(size=(25, 7)) + 0.5
    pairs = [F[i] @ F[j] / np.linalg.norm(F[i]) / np.linalg.norm(F[j])
             for i, j in itertools.combinations(range(len(F)), 2)]
    assert cosine_similarity_mean(F) == pytest.approx(np.mean(pairs), abs=1e-13)


def test_cs_invariant_to_per_sample_scaling():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(30, 5))
    scale = rng.uniform(0.01, 100.0, size=(30, 1))
    assert cosine_similarity_mean(F * scale) == pytest.approx(cosine_similarity_mean(F), abs=1e-13)


def test_cs_near_one_is_precise():
    # pre-trained features: a large shared component, cosines around 0.997 as in the paper's Table 1
    rng = np.random.default_rng(2)
    F = 100.0 + rng.normal(size=(200, 16)) * 8.0
    U = F / np.linalg.norm(F, axis=1, keepdims=True)
    G = U @ U.T
    expected = (G.sum() - np.trace(G)) / (200 * 199)
    assert cosine_similarity_mean(F) == pytest.approx(expected, abs=1e-13)


def test_cs_rejects_degenerate_input():
    with pytest.raises(ValueError, match="two samples"):
        cosine_similarity_mean([[1.0, 0.0]])
    with pytest.raises(ValueError, match="all-zero"):
        cosine_similarity_mean([[1.0, 0.0], [0.0, 0.0]])


# --- Diff ---------------------------------------------------------------------------------------------------------

def test_diff_by_hand():
    F = [[3.0, 4.0], [1.0, 1.0], [0.0, -2.0]]
    F0 = [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    assert feature_difference(F, F0) == pytest.approx((5 + 0 + 2) / 3)


def test_diff_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        feature_difference(np.zeros((3, 2)), np.zeros((2, 2)))


# --- FDR ----------------------------------------------------------------------------------------------------------

def test_fdr_two_separated_1d_classes_by_hand():
    # class 0 = {0, 2}, class 1 = {9, 10, 11}: N = 5, mu = 6.4, mu_0 = 1, mu_1 = 10
    # S_B = 2/5 (1 - 6.4)^2 + 3/5 (10 - 6.4)^2 = 11.664 + 7.776 = 19.44
    # S_W = (1/5) [(1 + 1) + (1 + 0 + 1)] = 0.8  ->  FDR = 24.3
    F = np.array([[0.0], [2.0], [9.0], [10.0], [11.0]])
    y = [0, 0, 1, 1, 1]
    assert fisher_discriminant_ratio(F, y, ridge=0) == pytest.approx(24.3, rel=1e-12)
    # default ridge: lambda = 1e-3 * trace(S_W) / h = 8e-4
    assert fisher_discriminant_ratio(F, y) == pytest.approx(19.44 / 0.8008, rel=1e-12)


def test_fdr_2d_diagonal_by_hand():
    # classes differ only along x; within-class spread along both axes
    F = np.array([[-1.0, -1.0], [1.0, 1.0], [3.0, 1.0], [5.0, -1.0]])
    y = [0, 0, 1, 1]
    # deviations (-1,-1), (1,1) and (-1,1), (1,-1): S_W = (1/4) 4 I = I
    # means (0,0), (4,0), mu = (2,0): S_B = diag(4, 0)
    assert fisher_discriminant_ratio(F, y, ridge=0) == pytest.approx(4.0, rel=1e-12)


@pytest.mark.parametrize("n,h,n_classes,ridge", [(60, 5, 3, 0.0), (60, 5, 3, 1e-3), (40, 10, 2, 0.1), (12, 30, 3, 1e-3),
                                                 (20, 200, 4, 1e-2)])
def test_fdr_matches_dense_formula(n, h, n_classes, ridge):
    F, y = random_classes(np.random.default_rng(n + h), n, h, n_classes)
    assert fisher_discriminant_ratio(F, y, ridge=ridge) == pytest.approx(dense_fdr(F, y, ridge), rel=1e-9)


def test_fdr_finite_when_features_outnumber_samples():
    F, y = random_classes(np.random.default_rng(3), 16, 768, 2)
    fdr = fisher_discriminant_ratio(F, y)
    assert np.isfinite(fdr) and fdr > 0
    with pytest.raises(ValueError, match="singular"):
        fisher_discriminant_ratio(F, y, ridge=0)


def test_fdr_separation_orders_values():
    rng = np.random.default_rng(4)
    y = np.arange(100) % 2
    noise = rng.normal(size=(100, 4))
    fdrs = [fisher_discriminant_ratio(noise + s * y[:, None], y) for s in (0.5, 2.0, 8.0)]
    assert fdrs[0] < fdrs[1] < fdrs[2]


@pytest.mark.parametrize("n,h", [(50, 6), (10, 40)])
def test_fdr_invariances(n, h):
    rng = np.random.default_rng(5)
    F, y = random_classes(rng, n, h, 3)
    base = fisher_discriminant_ratio(F, y)
    Q, _ = np.linalg.qr(rng.normal(size=(h, h)))
    assert fisher_discriminant_ratio(1e-3 * F, y) == pytest.approx(base, rel=1e-9)
    assert fisher_discriminant_ratio(250.0 * F, y) == pytest.approx(base, rel=1e-9)
    assert fisher_discriminant_ratio(F + 1e3, y) == pytest.approx(base, rel=1e-6)
    assert fisher_discriminant_ratio(F @ Q, y) == pytest.approx(base, rel=1e-9)
    assert fisher_discriminant_ratio(F, (y + 1) % 3) == pytest.approx(base, rel=1e-12)  # relabelled classes


def test_fdr_degenerate_cases():
    F = np.random.default_rng(6).normal(size=(10, 3))
    assert fisher_discriminant_ratio(F, np.zeros(10, dtype=int)) == 0.0  # one class: no between-class scatter
    assert fisher_discriminant_ratio([[0.0], [0.0], [1.0], [1.0]], [0, 0, 1, 1]) == float("inf")
    with pytest.raises(ValueError, match="labels"):
        fisher_discriminant_ratio(F, [0, 1])


# --- head norms and the bundle -------------------------------------------------------------------------------------

def test_head_norms_accepts_torch_parameters():
    head = torch.nn.Linear(4, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 4.0]]))
        head.bias.copy_(torch.tensor([3.0, -4.0]))
    assert head_norms(head.weight, head.bias) == pytest.approx((5.0, 5.0))
    assert head_norms(np.ones((2, 2))) == (2.0, None)


def test_feature_statistics_bundle():
    rng = np.random.default_rng(7)
    F0, y = random_classes(rng, 30, 6, 2)
    F = F0 + 0.1 * rng.normal(size=F0.shape)
    V, b = rng.normal(size=(2, 6)), rng.normal(size=2)
    stats = feature_statistics(F.astype(np.float32), y, F0=F0, head_weight=V, head_bias=b)
    assert set(stats) == {"cs", "diff", "fdr", "norm_weight", "norm_bias"}
    assert stats["cs"] == pytest.approx(cosine_similarity_mean(F), abs=1e-6)
    assert stats["diff"] == pytest.approx(feature_difference(F, F0), rel=1e-6)
    assert stats["fdr"] == pytest.approx(fisher_discriminant_ratio(F, y), rel=1e-5)
    assert (stats["norm_weight"], stats["norm_bias"]) == pytest.approx((np.linalg.norm(V), np.linalg.norm(b)))
    bare = feature_statistics(F, y)
    assert bare["diff"] is None and bare["norm_weight"] is None and bare["norm_bias"] is None
