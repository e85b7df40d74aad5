"""Rules v2 of the claims (``docs/claims.md``, 2026-12-06) on constructed rows: one test per changed rule, and one
per v1 artifact v2 must not repeat (the majority class, the rank cap, the SGD variant, the shared Kronecker form)."""

import numpy as np
import pytest

from lpft.claims import rules as C


def rows(task, method, metrics, **extra):
    return [{"task": task, "method": method, "seed": s, "test_metric": m, **extra} for s, m in enumerate(metrics)]


# ------------------------------------------------------------------ the gate ("uninformative")
def test_v1_artifact_majority_class_is_uninformative_not_holds():
    # WSC in the v1 study: FT and LP-FT at the majority rate 63.46 on every seed; v1 said "holds" (CI [0, 0] > -1)
    runs = rows("wsc", "ft", [63.46] * 3, majority=63.46) + rows("wsc", "lp-ft", [63.46] * 3, majority=63.46)
    stat = C.claim1(runs)[0]
    assert stat.verdict == C.HOLDS  # what v1 concluded from the definition alone
    gates = C.gate(runs)
    assert set(gates) == {("wsc", "ft"), ("wsc", "lp-ft")} and "majority rate 63.46" in gates[("wsc", "ft")]
    C.apply_gate([stat], gates)
    assert stat.verdict == C.UNINFORMATIVE and "uninformative: FT within 1 point" in stat.note
    assert C.combine([stat.verdict]) == C.UNINFORMATIVE


def test_one_class_predictions_are_uninformative_and_one_seed_off_the_majority_is_not():
    runs = (rows("rte", "lp-ft", [47.29] * 3, majority=52.71, one_class=True)
            + rows("rte", "ft", [52.0, 55.5, 53.0], majority=52.71, one_class=False)
            + rows("rte", "lora", [52.71, 52.71, 60.0], majority=52.71))
    gates = C.gate(runs)
    assert gates == {("rte", "lp-ft"): "LP-FT predicts one class on every seed (3)"}
    # the margin is one point: 53.7 is within it, 53.8 is not
    assert ("t", "ft") in C.gate(rows("t", "ft", [53.7, 51.8], majority=52.71))
    assert C.gate(rows("t", "ft", [53.8, 51.8], majority=52.71)) == {}


def test_combine_ignores_uninformative_and_shown_statistics():
    assert C.combine([C.UNINFORMATIVE, C.HOLDS, C.SHOWN]) == C.HOLDS
    assert C.combine([C.UNINFORMATIVE, C.FAILS]) == C.FAILS
    assert C.combine([C.UNINFORMATIVE, C.NO_DATA]) == C.UNINFORMATIVE
    assert C.combine([C.SHOWN, C.SHOWN]) == C.NO_DATA


def test_the_gate_touches_only_statistics_using_the_degenerate_method():
    runs = rows("cb", "lora", [50.0] * 3, majority=50.0) + rows("cb", "ft", [70, 72, 71]) + rows("cb", "lp-ft",
                                                                                                   [74, 75, 73])
    stats = C.apply_gate(C.claim1(runs), C.gate(runs))
    assert stats[0].verdict == C.HOLDS and "uninformative" not in stats[0].note


# ------------------------------------------------------------------ claim 2
def test_claim2_decides_on_diff_at_the_best_and_the_last_epoch():
    runs = []
    for s in range(3):
        runs.append({"task": "cb", "method": "ft", "seed": s, "diff": 5.0 + s, "diff_last": 4.0 + 0.1 * s,
                     "cs": 0.7, "cs_last": 0.7, "pretrained_cs": 0.72})
        runs.append({"task": "cb", "method": "lp-ft", "seed": s, "diff": 1.0 + s, "diff_last": 6.0 + 0.2 * s,
                     "cs": 0.9 + 0.01 * s, "cs_last": 0.6, "pretrained_cs": 0.72})
    stats = {s.name: s for s in C.claim2(runs)}
    assert stats["Diff(F) FT − LP-FT, best epoch"].verdict == C.HOLDS
    assert stats["Diff(F) FT − LP-FT, last epoch"].verdict == C.FAILS  # at a fixed epoch LP-FT moved more
    assert stats["CS(F) LP-FT − FT, last epoch"].verdict == C.SHOWN
    assert stats["CS(F) LP-FT − FT, best epoch"].note == "pre-trained CS 0.720"
    assert C.combine(s.verdict for s in stats.values()) == C.FAILS


# ------------------------------------------------------------------ claim 3
def test_claim3_flags_a_probe_at_the_edge_of_its_grid_and_shows_the_logit_scale():
    runs = []
    for s in range(3):
        runs.append({"task": "rte", "method": "lp-ft", "seed": s, "norm_init": 0.7, "norm_lp": 0.003})
        runs.append({"task": "rte", "method": "ft", "seed": s, "norm_start": 0.7, "norm_end": 0.7 * 1.05,
                     "phi_norm_pre": 8.0, "phi_norm_end": 8.0 * (2.0 + 0.1 * s)})
    norm, scale = C.claim3(runs, edge_C={"rte": 1e-4})
    assert norm.verdict == C.FAILS and "flag: the probe's C = 0.0001 is at the edge" in norm.note
    assert scale.verdict == C.SHOWN
    # FT's logit scale grows by 1.05 x (2.0 .. 2.2): log2 about 1.07-1.21 more than its Norm(C) growth
    lp = np.log2(0.003 / 0.7)
    expected = [lp - np.log2(1.05 * (2.0 + 0.1 * s)) for s in range(3)]
    assert scale.interval.mean == pytest.approx(np.mean(expected))


# ------------------------------------------------------------------ claim 4
def test_v1_artifact_rank_cap_does_not_decide_claim4():
    # CB in the v1 study: rank(F) of LP-FT = (C-1) N = 200 < rank(P) = 300 by construction; the FT ratio is higher
    ntk = []
    for s in range(3):
        ntk.append({"task": "cb", "method": "ft", "seed": s, "ft_ratio": 0.36 + 0.005 * s, "rank_P": 300,
                    "rank_F": 300, "num_labels": 3, "n_train": 100, "train_available": 225})
        ntk.append({"task": "cb", "method": "lp-ft", "seed": s, "ft_ratio": 0.6 + 0.05 * s, "rank_P": 300,
                    "rank_F": 200, "num_labels": 3, "n_train": 100, "train_available": 225})
    stats = {s.name: s for s in C.claim4(ntk)}
    rank = stats["rank(F) − rank(P), LP-FT"]
    assert rank.interval.hi < 0 and rank.verdict == C.SHOWN  # v1: "fails"
    assert "(C − 1)·N = 200" in rank.note and "at the cap on 3 of 3 seeds" in rank.note
    assert C.rank_cap(3, 150) == 300
    ratio = stats["FT ratio LP-FT − FT"]
    assert ratio.verdict == C.HOLDS
    assert "eNTK on 100 train examples where the rule asks for 225" in ratio.note
    assert C.combine(s.verdict for s in stats.values()) == C.HOLDS


def test_claim4_sketched_kernels_have_no_rank_to_cap():
    # a sketched F (lpft ntk --sketch) stores rank_F None: the FT ratio still decides, the rank row has no seeds
    ntk = [{"task": "sst2", "method": m, "seed": s, "ft_ratio": r + 0.01 * s, "rank_P": 456, "rank_F": None,
            "num_labels": 2, "n_train": 900, "train_available": 900}
           for s in range(3) for m, r in (("ft", 0.38), ("lp-ft", 0.99))]
    stats = {s.name: s for s in C.claim4(ntk)}
    assert stats["FT ratio LP-FT − FT"].verdict == C.HOLDS
    rank = stats["rank(F) − rank(P), LP-FT"]
    assert rank.interval.n == 0 and "cap" not in rank.note


# ------------------------------------------------------------------ claim 5
def sweep(method, seeds, norms, change, task="sst2"):
    return [{"task": task, "method": method, "seed": s, "start_norm": v, "change": change(v, s)}
            for s in seeds for v in norms]


def test_v1_artifact_sgd_variant_is_a_diagnostic_without_verdict():
    # one plain-SGD epoch: the change grows linearly with the head norm (Eq. 2), rho = +1 on every seed
    sgd = sweep("lp-ft", range(3), [0.5, 5, 50], lambda v, s: 0.1 * v + s)
    stats, per_seed = C.claim5(sgd, "SGD", decides=False)
    assert stats[0].interval.mean == pytest.approx(1.0) and stats[0].verdict == C.SHOWN
    assert "rho = +1 is what the theory predicts" in stats[0].note
    assert C.combine(s.verdict for s in stats) == C.NO_DATA


def test_claim5_needs_five_norms_per_curve_and_three_seeds():
    decreasing = lambda v, s: 10 / (1 + v) + 0.01 * s  # noqa: E731
    three = sweep("ft", range(3), [0.5, 5, 50], decreasing)
    (stat,), _ = C.claim5(three, "AdamW")
    assert stat.interval.n == 0 and stat.verdict == C.NO_DATA and "3 curve(s) with fewer than 5 norms" in stat.note
    five = sweep("ft", range(2), [0.1, 0.5, 1, 5, 50], decreasing)
    (stat,), _ = C.claim5(five, "AdamW")
    assert stat.interval.n == 2 and stat.verdict == C.INCONCLUSIVE and "fewer than 3 seeds" in stat.note
    (stat,), _ = C.claim5(sweep("ft", range(3), [0.1, 0.5, 1, 5, 50], decreasing), "AdamW")
    assert stat.verdict == C.HOLDS


# ------------------------------------------------------------------ claim 6
def calib(task, n_val, available, lpft_gain=40.0, bins=(10, 10)):
    out = []
    for s in range(3):
        for m, gain in (("ft", 20.0), ("lp-ft", lpft_gain + s)):
            out.append({"task": task, "method": m, "seed": s, "mce_before": 50.0, "mce_after": 50.0 - gain,
                        "ece_before": 20.0, "ece_after": 20.0 - gain / 4, "n_validation": n_val,
                        "validation_available": available, "mce_bin_before": bins[0], "mce_bin_after": bins[1]})
    return out


def test_claim6_temperature_needs_100_validation_examples_where_the_split_has_them():
    mce, ece = C.claim6(calib("rte", 25, 249))
    assert mce.verdict == C.UNINFORMATIVE and "fewer than 100 although the split has 249" in mce.note
    assert ece.verdict == C.SHOWN and ece.interval.mean == pytest.approx((41.0 - 20.0) / 4)
    mce, _ = C.claim6(calib("cb", 25, 25, bins=(3, 10)))
    assert mce.verdict == C.HOLDS and "the split has fewer than 100" in mce.note
    assert "6 of 12 MCEs from a bin of < 5 examples" in mce.note
    mce, _ = C.claim6(calib("cb", 25, None))  # the split could not be read: no claim about its size
    assert "the split's size is unknown" in mce.note and "the split has fewer" not in mce.note
    mce, _ = C.claim6(calib("rte", 100, 249))
    assert mce.verdict == C.HOLDS and "T fitted on 100 validation examples" in mce.note


# ------------------------------------------------------------------ claim 7
def test_centre_and_permute_against_explicit_matrices():
    rng = np.random.default_rng(0)
    n, c = 6, 3
    A = rng.normal(size=(n * c, 10))
    K = A @ A.T
    H = np.kron(np.eye(n) - np.ones((n, n)) / n, np.eye(c))
    assert C.centre_kernel(K, c) == pytest.approx(H @ K @ H, abs=1e-12)
    Kp = C.permute_samples(K, c, seed=1)
    perm = np.random.default_rng(1).permutation(n)
    Pm = np.kron(np.eye(n)[perm], np.eye(c))  # moves sample perm[i] to position i, classes kept together
    assert Kp == pytest.approx(Pm @ K @ Pm.T, abs=1e-12)
    assert C.spectrum_gap(K, Kp) == pytest.approx(0.0, abs=1e-10)


def kron_kernel(G, c, common):
    n = G.shape[0]
    return np.kron(G + common * np.ones((n, n)), np.eye(c))


def psd(n, rank, seed):
    A = np.random.default_rng(seed).normal(size=(n, rank))
    return A @ A.T / rank


def test_v1_artifact_shared_kronecker_form_is_not_closeness():
    # F_FT and F_LoRA of the same Kronecker form G (x) I dominated by a common mode, with unrelated G: uncentred,
    # they look close (v1's residual); centred and against a sample-permuted F_FT, they are not
    n, c = 20, 3
    rows = []
    for s in range(5):
        F_ft = kron_kernel(psd(n, 5, s), c, 50.0)
        F_lora = kron_kernel(psd(n, 5, 100 + s), c, 50.0)
        P = kron_kernel(psd(n, 5, 200 + s), c, 1.0)
        assert C.scalar_fit_residual(F_lora, F_ft) < 0.1  # the common mode makes any such pair "close"
        rows.append(C.kernel_pair_row("cb", s, F_lora, F_ft, P, num_labels=c))
    decide = C.claim7(rows)[0]
    assert decide.decides and decide.verdict != C.HOLDS
    assert all(r["residual"] > 0.5 for r in rows)


def test_claim7_holds_for_a_scalar_multiple_on_the_query_value_part():
    n, c = 20, 2
    rows = []
    for s in range(4):
        F_qv = kron_kernel(psd(n, 6, s), c, 5.0) + 0.1 * np.kron(psd(n, 3, 50 + s), np.ones((c, c)))
        F_whole = F_qv + kron_kernel(psd(n, 6, 300 + s), c, 5.0)
        F_lora = 3.0 * F_qv + 1e-3 * kron_kernel(psd(n, n, 400 + s), c, 0.0)
        P = kron_kernel(psd(n, 5, 200 + s), c, 1.0)
        rows.append(C.kernel_pair_row("cb", s, F_lora, F_qv, P, num_labels=c, F_ft_whole=F_whole,
                                      ft_part="query,value"))
    stats = C.claim7(rows)
    assert stats[0].verdict == C.HOLDS and "F_FT over query,value" in stats[0].note
    assert [s.verdict for s in stats[1:]] == [C.SHOWN, C.SHOWN]
    assert all(r["residual"] < 0.01 < r["residual_whole"] for r in rows)
    assert "against the whole-model F_FT" in stats[0].note


def test_claim7_lp_pair_is_shown_apart_and_never_decides():
    # both pairs per seed, as lpft claims collects them from an eNTK study of FT, LP-FT, LoRA and LP-LoRA: LoRA is a
    # scalar multiple of FT, LP-LoRA unrelated to LP-FT. The verdict comes from LoRA vs FT on every seed.
    n, c = 20, 2
    rows = []
    for s in range(4):
        F_ft = kron_kernel(psd(n, 6, s), c, 5.0)
        P = kron_kernel(psd(n, 5, 200 + s), c, 1.0)
        rows.append({**C.kernel_pair_row("cb", s, 2.0 * F_ft, F_ft, P, num_labels=c), "pair": "lora vs ft"})
        F_lpft = kron_kernel(psd(n, 6, 500 + s), c, 5.0)
        unrelated = kron_kernel(psd(n, 6, 600 + s), c, 5.0)
        rows.append({**C.kernel_pair_row("cb", s, unrelated, F_lpft, P, num_labels=c), "pair": "lp-lora vs lp-ft"})
    stats = C.claim7(rows)
    deciding = [st for st in stats if st.decides]
    assert len(deciding) == 1 and deciding[0].verdict == C.HOLDS and deciding[0].interval.n == 4
    lp = [st for st in stats if "LP-LoRA vs LP-FT" in st.name]
    assert len(lp) == 3 and all(st.verdict == C.SHOWN and st.methods == ("lp-ft", "lp-lora") for st in lp)
    assert lp[0].interval.mean < deciding[0].interval.mean  # its own numbers, not LoRA vs FT's


# ------------------------------------------------------------------ shown paths
def test_reports_name_folders_relative_to_their_repository(tmp_path):
    from lpft.io import resolve_shown, shown_path

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    run = repo / "runs" / "study" / "cb" / "ft" / "x-seed1"
    run.mkdir(parents=True)
    assert shown_path(run) == "runs/study/cb/ft/x-seed1"
    report = repo / "results" / "report" / "cb" / "runs.csv"
    assert resolve_shown("runs/study/cb/ft/x-seed1", report) == run.resolve()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert shown_path(outside) == str(outside.resolve())
    assert resolve_shown(str(outside), report) == outside
    from lpft.io import _shown_arg  # results record the command line the same way

    assert _shown_arg(str(run)) == "runs/study/cb/ft/x-seed1" and _shown_arg(str(outside)) == str(outside.resolve())
    assert _shown_arg("--write") == "--write" and _shown_arg(str(repo / "missing")) == str(repo / "missing")
