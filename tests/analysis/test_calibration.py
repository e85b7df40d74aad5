"""Temperature scaling against a brute-force NLL grid; ECE and MCE by hand and against torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from lpft.analysis.calibration import (
    LOG_T_BOUNDS,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    nll,
    reliability_bins,
)
from lpft.report.plots import reliability_diagram


def synthetic_logits(seed, n, n_classes, miscalibration):
    """Labels drawn from softmax(z); the returned logits are z * miscalibration (> 1 overconfident, < 1 under)."""
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.normal(size=(n, n_classes))
    p = softmax(z, axis=1)
    y = (p.cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return z * miscalibration, y


def brute_force_log_t(logits, labels):
    """argmin of NLL over log T: a 1e-2 grid over the whole range, then a 1e-5 grid around the best point.

    NLL is unimodal in log T, so the coarse argmin lies within one coarse step of the true one.
    """
    rows = np.arange(len(labels))

    def nlls(ts):
        scaled = logits[None] * np.exp(-ts)[:, None, None]  # (grid, N, C), all grid points at once
        return -log_softmax(scaled, axis=2)[:, rows, labels].mean(axis=1)

    coarse = np.arange(LOG_T_BOUNDS[0], LOG_T_BOUNDS[1] + 1e-9, 1e-2)
    t0 = coarse[np.argmin(nlls(coarse))]
    fine = np.arange(t0 - 1e-2, t0 + 1e-2, 1e-5)
    return fine[np.argmin(nlls(fine))]


@pytest.mark.parametrize("seed,n,n_classes,miscalibration", [
    (0, 300, 2, 4.0),    # strongly overconfident
    (1, 300, 3, 1.7),
    (2, 300, 5, 1.0),    # calibrated: T near 1
    (3, 300, 4, 0.3),    # underconfident
    (4, 40, 10, 2.5),    # few samples, many classes
])
def test_fit_temperature_matches_brute_force(seed, n, n_classes, miscalibration):
    z, y = synthetic_logits(seed, n, n_classes, miscalibration)
    T = fit_temperature(z, y)
    assert T > 0
    assert np.log(T) == pytest.approx(brute_force_log_t(z, y), abs=1e-3)
    assert nll(z, y, T) <= nll(z, y, T * 1.01) and nll(z, y, T) <= nll(z, y, T / 1.01)


def test_fit_temperature_recovers_known_optimum():
    # 3 of 4 right with margin 4: the optimum has confidence sigmoid(4 / T) = accuracy 3/4, so T = 4 / ln 3
    z = np.array([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    assert fit_temperature(z, [0, 0, 1, 1]) == pytest.approx(4 / np.log(3), rel=1e-7)


def test_fit_temperature_degenerate_inputs_stay_positive_and_bounded():
    t_min, t_max = np.exp(LOG_T_BOUNDS[0]), np.exp(LOG_T_BOUNDS[1])
    huge = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0], [-5e3, 0.0, 2e4]])
    # all correct with huge logits: NLL keeps falling as T -> 0, so the lower bound is returned
    assert fit_temperature(huge, [0, 1, 2]) == pytest.approx(t_min)
    # all wrong with huge logits: T -> infinity (uniform predictions) is optimal, so the upper bound
    assert fit_temperature(huge, [1, 2, 0]) == pytest.approx(t_max)
    # all-equal logits: NLL does not depend on T; any T in range is fine
    assert t_min <= fit_temperature(np.zeros((5, 3)), [0, 1, 2, 0, 1]) <= t_max
    assert t_min <= fit_temperature([[3.0, -1.0]], [1]) <= t_max


def test_fit_temperature_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((2, 3)), [0, 3])


# --- ECE / MCE ----------------------------------------------------------------------------------------------------

def test_ece_mce_four_samples_by_hand():
    probs = np.array([
        [0.95, 0.05, 0.00, 0.00],  # right, conf 0.95 -> bin 14 (14/15, 1]
        [0.02, 0.03, 0.00, 0.95],  # wrong, conf 0.95 -> bin 14
        [0.20, 0.55, 0.15, 0.10],  # right, conf 0.55 -> bin 8 (8/15, 9/15]
        [0.30, 0.25, 0.25, 0.20],  # wrong, conf 0.30 -> bin 4 (4/15, 5/15]
    ])
    y = [0, 2, 1, 3]
    # bin 14: acc 1/2, conf 0.95; bin 8: acc 1, conf 0.55; bin 4: acc 0, conf 0.3
    assert expected_calibration_error(probs, y) == pytest.approx(2 / 4 * 0.45 + 1 / 4 * 0.45 + 1 / 4 * 0.30)
    assert maximum_calibration_error(probs, y) == pytest.approx(0.45)
    counts, _, _ = reliability_bins(probs, y)
    assert counts.sum() == 4 and counts[14] == 2 and counts[8] == 1 and counts[4] == 1


def test_saturated_confidence_is_counted_in_last_bin():
    z = np.array([[1000.0, 0.0], [0.0, 2000.0], [800.0, 0.0], [0.0, 0.0]])
    probs = softmax(z, axis=1)
    assert (probs.max(axis=1)[:3] == 1.0).all()  # exactly 1.0 in float64
    y = [0, 1, 1, 0]
    counts, acc, conf = reliability_bins(probs, y)
    assert counts[14] == 3 and acc[14] == pytest.approx(2 / 3) and conf[14] == 1.0
    assert counts[7] == 1  # confidence exactly 0.5 = 7.5/15 falls in (7/15, 8/15]
    assert expected_calibration_error(probs, y) == pytest.approx(3 / 4 * (1 / 3) + 1 / 4 * 0.5)


def test_bin_edges_are_right_closed_and_zero_is_kept():
    # a confidence exactly on an edge b/15 belongs to the bin ending there; confidence 0 joins the first bin
    probs = np.array([[9 / 15, 6 / 15], [1 / 15, 0.0], [0.0, 0.0]])
    counts, _, _ = reliability_bins(probs, [0, 0, 0])
    assert counts[8] == 1 and counts[0] == 2 and counts.sum() == 3


@pytest.mark.parametrize("seed,n_classes", [(0, 2), (1, 3), (2, 7), (3, 10)])
def test_ece_mce_match_torchmetrics(seed, n_classes):
    torch = pytest.importorskip("torch")
    calibration_error = pytest.importorskip("torchmetrics.functional.classification").multiclass_calibration_error
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(scale=3.0, size=(500, n_classes)), axis=1)
    y = rng.integers(0, n_classes, size=500)
    # bias accuracy upward so that bins differ in accuracy
    y[:250] = probs[:250].argmax(axis=1)
    p_t, y_t = torch.from_numpy(probs), torch.from_numpy(y)
    ece = calibration_error(p_t, y_t, num_classes=n_classes, n_bins=15, norm="l1").item()
    mce = calibration_error(p_t, y_t, num_classes=n_classes, n_bins=15, norm="max").item()
    # torchmetrics casts confidences to float32; its bins are [lo, hi), which differs from ours only on exact edges
    assert expected_calibration_error(probs, y) == pytest.approx(ece, abs=1e-6)
    assert maximum_calibration_error(probs, y) == pytest.approx(mce, abs=1e-6)


# --- report and diagram -------------------------------------------------------------------------------------------

def test_calibration_report():
    z_val, y_val = synthetic_logits(5, 400, 3, 3.0)
    z_test, y_test = synthetic_logits(6, 300, 3, 3.0)
    rep = calibration_report(z_val, y_val, z_test, y_test)
    assert set(rep) == {"temperature"} | {f"{m}_{s}" for m in ("ece", "mce", "nll", "accuracy")
                                          for s in ("before", "after")}
    assert rep["temperature"] == pytest.approx(fit_temperature(z_val, y_val))
    assert rep["temperature"] > 1.5  # the logits were made 3x overconfident
    assert rep["accuracy_before"] == rep["accuracy_after"]
    assert rep["nll_after"] < rep["nll_before"] and rep["ece_after"] < rep["ece_before"]
    assert rep["ece_before"] == pytest.approx(expected_calibration_error(softmax(z_test, axis=1), y_test))


def test_calibration_report_stable_for_huge_logits():
    z = np.array([[5e4, 0.0], [0.0, 5e4], [5e4, 0.0]])
    rep = calibration_report(z, [0, 1, 1], z, [0, 1, 1])
    assert all(np.isfinite(v) for v in rep.values())


def test_reliability_diagram_writes_png(tmp_path):
    z, y = synthetic_logits(7, 200, 3, 3.0)
    T = fit_temperature(z, y)
    out = reliability_diagram(softmax(z, axis=1), softmax(z / T, axis=1), y, tmp_path / "sub" / "rel.png", "test")
    assert out == tmp_path / "sub" / "rel.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["rel.png"]  # no temp file left behind
