"""The claims statistics (``lpft/claims/rules.py``): intervals against scipy, every verdict rule on constructed rows,
the claim-7 kernel metrics, claim 3's LP norm path and claim 5's monotonicity."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from lpft.claims import rules as C


# ------------------------------------------------------------------ intervals
def test_t_interval_matches_scipy_ttest():
    d = [1.2, 0.4, 2.1, -0.3, 0.9, 1.7]
    ci = sps.ttest_1samp(d, 0.0).confidence_interval(0.95)
    got = C.t_interval(d)
    assert got.n == 6 and got.mean == pytest.approx(np.mean(d))
    assert (got.lo, got.hi) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # the textbook formula
    half = sps.t.ppf(0.975, 5) * np.std(d, ddof=1) / math.sqrt(6)
    assert (got.lo, got.hi) == pytest.approx((np.mean(d) - half, np.mean(d) + half))


def test_paired_interval_pairs_by_seed_and_ignores_unpaired_seeds():
    a = {0: 80.0, 1: 82.0, 2: 79.0, 7: 10.0}
    b = {0: 78.0, 1: 81.0, 2: 79.5, 9: 99.0}
    got = C.paired_interval(a, b)
    ref = sps.ttest_rel([80.0, 82.0, 79.0], [78.0, 81.0, 79.5]).confidence_interval(0.95)
    assert got.n == 3 and (got.lo, got.hi) == pytest.approx((ref.low, ref.high))


def test_interval_edge_cases():
    assert C.t_interval([]).n == 0
    one = C.t_interval([2.5])
    assert (one.mean, one.lo, one.hi, one.n) == (2.5, None, None, 1)
    same = C.t_interval([1.0, 1.0, 1.0])
    assert (same.lo, same.hi) == (1.0, 1.0)
    assert C.t_interval([1.0, None, float("nan"), 3.0]).n == 2


def test_verdict_and_combine():
    Iv = C.Interval
    assert C.verdict(Iv(1, 0.5, 2, 3), 0) == C.HOLDS
    assert C.verdict(Iv(-1, -2, -0.5, 3), 0) == C.FAILS
    assert C.verdict(Iv(0, -1, 1, 3), 0) == C.INCONCLUSIVE
    assert C.verdict(Iv(5, None, None, 1), 0) == C.INCONCLUSIVE  # one seed: never a verdict
    assert C.verdict(Iv(None, None, None, 0), 0) == C.NO_DATA
    assert C.verdict(Iv(-0.9, -0.95, -0.85, 3), -0.8, larger=False) == C.HOLDS
    assert C.verdict(Iv(-0.5, -0.7, -0.3, 3), -0.8, larger=False) == C.FAILS
    assert C.combine([C.HOLDS, C.HOLDS, C.NO_DATA]) == C.HOLDS
    assert C.combine([C.HOLDS, C.INCONCLUSIVE]) == C.INCONCLUSIVE
    assert C.combine([C.HOLDS, C.FAILS, C.INCONCLUSIVE]) == C.FAILS
    assert C.combine([C.NO_DATA]) == C.NO_DATA


# ------------------------------------------------------------------ rules on constructed rows
def runs_from(values: dict, key: str, task: str = "cb") -> list[dict]:
    """values: method -> list of per-seed values (seed = index)."""
    return [{"task": task, "method": m, "seed": s, key: v} for m, vs in values.items() for s, v in enumerate(vs)]


@pytest.mark.parametrize("lpft, expected", [
    ([82.0, 83.5, 81.0, 82.5], C.HOLDS),        # +1 to +2 points: CI above -1
    ([77.0, 78.5, 76.0, 77.0], C.FAILS),        # about -4 points: CI below -1
    ([80.0, 84.0, 78.0, 81.0], C.INCONCLUSIVE),  # spread across -1
])
def test_claim1_rule(lpft, expected):
    runs = runs_from({"ft": [81.0, 82.0, 80.0, 81.0], "lp-ft": lpft}, "test_metric")
    (stat,) = C.claim1(runs, {"cb": {"ft": 81.43, "lp-ft": 84.64}})
    assert stat.verdict == expected and stat.interval.n == 4
    assert stat.paper.startswith("+3.21")


def test_claim1_ood_sets_are_separate_statistics():
    runs = [{"task": "t", "method": m, "seed": s, "test_metric": 80.0 + s, "ood": {"shift": (70.0 if m == "ft" else
                                                                                         60.0) + s}}
            for m in ("ft", "lp-ft") for s in range(3)]
    stats = {s.name: s.verdict for s in C.claim1(runs)}
    # ID: the same metric every seed, difference 0 with sd 0: CI [0, 0] lies above -1; OOD: 10 points worse
    assert stats == {"LP-FT − FT test metric (points), ID": C.HOLDS,
                     "LP-FT − FT test metric (points), OOD shift": C.FAILS}


def test_claim2_rule_diff_decides_cs_is_shown():
    rows = runs_from({"ft": [5.0, 6.0, 5.5], "lp-ft": [1.0, 1.5, 1.2]}, "diff")
    cs = {("ft", 0): 0.7, ("ft", 1): 0.72, ("ft", 2): 0.69, ("lp-ft", 0): 0.6, ("lp-ft", 1): 0.62, ("lp-ft", 2): 0.6}
    for r in rows:
        r["cs"] = cs[(r["method"], r["seed"])]
    stats = {s.name: s for s in C.claim2(rows)}
    assert stats["Diff(F) FT − LP-FT, best epoch"].verdict == C.HOLDS
    # rules v2: CS is shown beside Diff, without a verdict (v1 failed the claim on CS alone)
    assert stats["CS(F) LP-FT − FT, best epoch"].verdict == C.SHOWN
    assert stats["CS(F) LP-FT − FT, best epoch"].interval.hi < 0
    assert stats["Diff(F) LoRA − LP-LoRA, best epoch"].verdict == C.NO_DATA
    assert stats["Diff(F) FT − LP-FT, last epoch"].verdict == C.NO_DATA
    assert C.combine(s.verdict for s in stats.values()) == C.HOLDS


@pytest.mark.parametrize("lp_norm, expected", [(20.0, C.HOLDS), (1.1, C.FAILS), (None, C.NO_DATA)])
def test_claim3_rule(lp_norm, expected):
    rows = []
    for s, jitter in enumerate((0.9, 1.0, 1.1)):
        rows.append({"task": "cb", "method": "ft", "seed": s, "norm_start": 1.0, "norm_end": 1.02})
        rows.append({"task": "cb", "method": "lp-ft", "seed": s, "norm_init": 1.0,
                     "norm_lp": None if lp_norm is None else lp_norm * jitter})
    stat = C.claim3(rows)[0]
    assert stat.verdict == expected


def test_claim3_paper_number():
    from lpft.report.paper import TABLE1

    stat = C.claim3([{"task": "cb", "method": "lp-ft", "seed": 0, "norm_init": 1.0, "norm_lp": 2.0}], TABLE1)[0]
    assert stat.note == "no FT run: FT growth taken as 0"
    assert stat.paper.startswith(f"{math.log2(24.8 / 0.951) - math.log2(0.960 / 0.951):.2f}")


def test_claim4_rules():
    rows = []
    for s in range(3):
        rows.append({"task": "cb", "method": "ft", "seed": s, "ft_ratio": 0.2 + 0.01 * s, "rank_P": 6, "rank_F": 40})
        rows.append({"task": "cb", "method": "lp-ft", "seed": s, "ft_ratio": 0.9 + 0.02 * s, "rank_P": 6,
                     "rank_F": 4 + s % 2})
    from lpft.report.paper import TABLE2

    stats = {s.name: s for s in C.claim4(rows, TABLE2)}
    assert stats["FT ratio LP-FT − FT"].verdict == C.HOLDS
    assert stats["FT ratio LP-FT − FT"].paper == "+0.8013"
    assert stats["rank(F) − rank(P), LP-FT"].verdict == C.SHOWN  # rules v2: shown with its cap
    assert stats["FT ratio LP-LoRA − LoRA"].verdict == C.NO_DATA


def sweep(task, method, seeds, norms, change):
    return [{"task": task, "method": method, "seed": s, "start_norm": v, "change": change(v, s)}
            for s in seeds for v in norms]


def test_claim5_rule_holds_fails_inconclusive():
    norms = [0.1, 0.5, 1, 2, 5, 10, 50, 100]
    rng = np.random.default_rng(0)
    rows = (sweep("cb", "ft", range(3), norms, lambda v, s: 10 / (1 + v) + 0.001 * s)  # strictly decreasing
            + sweep("cb", "lp-ft", range(3), norms, lambda v, s: math.log(v) + s)      # increasing
            + sweep("cb", "lora", range(3), norms, lambda v, s: rng.normal()))          # noise
    stats, per_seed = C.claim5(rows, "AdamW")
    verdicts = {s.name.split(", ")[-2]: s.verdict for s in stats}
    assert verdicts["FT"] == C.HOLDS and verdicts["LP-FT"] == C.FAILS
    noise = next(s for s in stats if "LORA" in s.name)
    assert noise.verdict in (C.INCONCLUSIVE, C.FAILS) and noise.interval.n == 3
    ft = [r for r in per_seed if r["method"] == "ft"]
    assert all(r["rho"] == pytest.approx(-1.0) and r["decreasing_steps"] == 1.0 for r in ft)


def test_monotonicity_against_scipy_and_one_swap():
    norms = [0.1, 0.5, 1, 2, 5, 10, 50, 100]
    change = [8, 7, 5, 6, 4, 3, 2, 1]  # one swapped neighbour pair
    m = C.monotonicity(norms[::-1], change[::-1])  # order of the points does not matter
    assert m["rho"] == pytest.approx(sps.spearmanr(norms, change).statistic) == pytest.approx(-(1 - 6 * 2 / (8 * 63)))
    assert m["decreasing_steps"] == pytest.approx(6 / 7)
    assert math.isnan(C.monotonicity([1, 2], [2, 1])["rho"])


@pytest.mark.parametrize("lpft_gain, expected", [(40.0, C.HOLDS), (5.0, C.FAILS), (21.0, C.INCONCLUSIVE)])
def test_claim6_rule_against_the_best_other_method(lpft_gain, expected):
    rows = []
    jitter = (-3.0, 0.0, 3.0)
    for s in range(3):
        for m, gain in (("ft", 20.0), ("lora", 10.0), ("lp-lora", 15.0), ("lp-ft", lpft_gain + jitter[s])):
            rows.append({"task": "rte", "method": m, "seed": s, "mce_before": 50.0, "mce_after": 50.0 - gain})
    assert C.mce_gain_gap(rows, "rte") == pytest.approx({0: lpft_gain - 23.0, 1: lpft_gain - 20.0,
                                                          2: lpft_gain - 17.0})
    from lpft.report.paper import TABLE3

    stat = C.claim6(rows, TABLE3)[0]
    assert stat.verdict == expected
    assert stat.paper == f"{50.01 - 27.24:+.2f}"


# ------------------------------------------------------------------ claim 7 metrics
def psd(n, rank, seed):
    A = np.random.default_rng(seed).normal(size=(n, rank))
    return A @ A.T


def test_scalar_fit_residual_and_spectrum_gap():
    F = psd(12, 5, 0)
    assert C.scalar_fit_residual(F, 3 * F) == pytest.approx(0.0, abs=1e-12)
    assert C.scalar_fit_residual(3 * F, F) == pytest.approx(0.0, abs=1e-12)
    assert C.spectrum_gap(F, 3 * F) == pytest.approx(0.0, abs=1e-12)
    other = psd(12, 12, 1)
    r = C.scalar_fit_residual(F, other)
    assert 0.05 < r <= 1.0
    # the residual is that of the least-squares scalar: no other c does better
    c_best = np.sum(F * other) / np.sum(other * other)
    for c in (0.5 * c_best, 2 * c_best, 0.0):
        assert np.linalg.norm(F - c * other) / np.linalg.norm(F) >= r - 1e-12
    assert C.spectrum_gap(F, other) > 0.05
    # a sample-shuffled copy has the same spectrum (why it is not the baseline) but a large residual
    perm = np.random.default_rng(2).permutation(12)
    assert C.spectrum_gap(F, F[perm][:, perm]) == pytest.approx(0.0, abs=1e-10)
    assert C.scalar_fit_residual(F, F[perm][:, perm]) > 0.1
    with pytest.raises(ValueError, match="shapes"):
        C.scalar_fit_residual(F, F[:3, :3])


def test_claim7_rule():
    rows = []
    for s in range(5):
        F_ft, P = psd(10, 4, s), psd(10, 10, 100 + s)
        close = 2.5 * F_ft + 1e-3 * psd(10, 10, 200 + s)
        rows.append(C.kernel_pair_row("cb", s, close, F_ft, P))
    stats = C.claim7(rows)
    assert [s.verdict for s in stats] == [C.HOLDS, C.SHOWN, C.SHOWN]
    bad = [dict(r, residual=r["permuted_residual"] + 0.3 + 0.01 * i) for i, r in enumerate(rows)]
    assert C.claim7(bad)[0].verdict == C.FAILS


# ------------------------------------------------------------------ claim 3 extras
def test_lp_norm_path_grows_with_C_and_matches_the_probe():
    from lpft.methods.lp import fit_linear_probe

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    X = rng.normal(size=(60, 8)) + 1.5 * np.eye(8)[y] + 3.0  # a shared offset: high CS like pre-trained features
    w, b = fit_linear_probe(X, y, 3, cs=6, folds=3)
    res = C.lp_norm_path(X, y, 3, cs=6, chosen_weight=w, chosen_bias=b, gd_steps=300)
    norms = [p["norm"] for p in res["path"]]
    assert [p["C"] for p in res["path"]] == pytest.approx(list(np.logspace(-4, 4, 6)))
    assert all(b_ >= a - 1e-6 * max(a, 1) for a, b_ in zip(norms, norms[1:]))  # weaker L2, larger head
    assert res["chosen_C"] in [p["C"] for p in res["path"]]
    chosen = next(p for p in res["path"] if p["C"] == res["chosen_C"])
    assert res["chosen_norm"] == pytest.approx(np.linalg.norm(w)) == pytest.approx(chosen["norm"], rel=1e-2)
    assert res["gd"]["steps"] <= 300 and res["gd"]["norm"] > norms[0]
    assert 0.5 < res["pretrained_cs"] < 1


def test_the_seed_free_lp_run_is_labelled_with_the_setting_it_serves():
    import dataclasses

    from lpft.claims.collect import Labeller
    from lpft.methods.config import RunConfig

    ft = dataclasses.asdict(RunConfig(task="cb", method="ft", seed=1, epochs=10).resolved())
    lp = dataclasses.asdict(RunConfig(task="cb", method="lp", epochs=10).resolved())  # epochs reset to None
    labeller = Labeller()
    for cfg in (lp, ft):
        labeller.add(cfg)
    assert labeller.label(lp) == labeller.label(ft) == "cb"
    other = dataclasses.asdict(RunConfig(task="cb", method="ft", seed=1, epochs=3).resolved())
    labeller.add(other)
    assert labeller.label(ft) == "cb (epochs=10)" and labeller.label(other) == "cb (epochs=3)"
