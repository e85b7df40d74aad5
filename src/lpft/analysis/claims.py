"""The seven claims of the paper as statistics, intervals and verdicts (rules: ``docs/claims.md``).

Pure functions over per-run / per-seed rows (plain dicts), so every rule can be tested on constructed rows:

- run rows: ``task, method, seed`` and any of ``test_metric`` (percentage points), ``ood`` ({set: points}),
  ``diff``, ``cs``, ``norm_init``, ``norm_lp``, ``norm_start``, ``norm_end``, ``mce_before``, ``mce_after`` (points);
- eNTK rows: ``task, method, seed, ft_ratio, rank_P, rank_F``;
- sweep rows: ``task, method, seed, start_norm, change``;
- kernel-pair rows (claim 7): ``task, seed, residual, gap, baseline_residual, baseline_gap``.

Each claim function returns :class:`Statistic` objects; :func:`combine` turns several into the claim's verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats as sps

HOLDS, FAILS, INCONCLUSIVE, NO_DATA = "holds", "fails", "inconclusive", "no data"
LEVEL = 0.95


@dataclass
class Interval:
    """Mean of the paired differences with its Student-t interval (``lo = hi = None`` for n < 2)."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: int


def t_interval(differences, level: float = LEVEL) -> Interval:
    """``mean ± t_{(1+level)/2, n-1} sd / sqrt(n)`` (sample sd); no interval for n < 2, the point for sd = 0."""
    d = np.asarray([x for x in differences if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(d) == 0:
        return Interval(None, None, None, 0)
    mean = float(d.mean())
    if len(d) < 2:
        return Interval(mean, None, None, 1)
    sem = float(d.std(ddof=1)) / math.sqrt(len(d))
    if sem == 0.0:
        return Interval(mean, mean, mean, len(d))
    lo, hi = sps.t.interval(level, len(d) - 1, loc=mean, scale=sem)
    return Interval(mean, float(lo), float(hi), len(d))


def paired_differences(a: dict, b: dict) -> tuple[list[float], list]:
    """``a[s] - b[s]`` over the seeds both have (sorted), and those seeds."""
    seeds = sorted(set(a) & set(b))
    return [a[s] - b[s] for s in seeds], seeds


def paired_interval(a: dict, b: dict, level: float = LEVEL) -> Interval:
    """t interval of the per-seed paired difference ``a - b``; ``a``, ``b`` map seed -> value."""
    return t_interval(paired_differences(a, b)[0], level)


def verdict(interval: Interval, margin: float, larger: bool = True) -> str:
    """holds / fails / inconclusive: for ``larger`` the claim is "the statistic exceeds ``margin``" — holds if
    the interval lies above it, fails if it lies below, else inconclusive; reversed for ``larger=False``."""
    if interval.n == 0:
        return NO_DATA
    if interval.lo is None:
        return INCONCLUSIVE
    above, below = interval.lo > margin, interval.hi < margin
    if larger:
        return HOLDS if above else FAILS if below else INCONCLUSIVE
    return HOLDS if below else FAILS if above else INCONCLUSIVE


def combine(verdicts) -> str:
    """A claim's verdict from its statistics' (ignoring "no data" ones): fails if any fails, holds if all hold."""
    vs = [v for v in verdicts if v is not None and v != NO_DATA]
    if not vs:
        return NO_DATA
    if FAILS in vs:
        return FAILS
    return HOLDS if all(v == HOLDS for v in vs) else INCONCLUSIVE


@dataclass
class Statistic:
    """One tested statistic of one claim on one task."""

    claim: int
    task: str
    name: str
    margin: float
    larger: bool
    interval: Interval
    paper: str = ""
    note: str = ""
    verdict: str = field(init=False)
    seeds: list = field(default_factory=list)

    def __post_init__(self):
        self.verdict = verdict(self.interval, self.margin, self.larger)

    def row(self) -> dict:
        i = asdict(self.interval)
        return {"claim": self.claim, "task": self.task, "statistic": self.name, "n": i["n"], "mean": i["mean"],
                "ci_low": i["lo"], "ci_high": i["hi"], "rule": self.rule, "verdict": self.verdict,
                "paper": self.paper, "seeds": " ".join(map(str, self.seeds)), "note": self.note}

    @property
    def rule(self) -> str:
        return (f"holds if CI > {self.margin:g}, fails if CI < {self.margin:g}" if self.larger
                else f"holds if CI < {self.margin:g}, fails if CI > {self.margin:g}")


def _by_seed(rows, task: str, method: str, key) -> dict:
    """seed -> value for one task and method (``key`` a field name or a function of the row; None skipped)."""
    get = key if callable(key) else (lambda r: r.get(key))
    out = {}
    for r in rows:
        if r["task"] == task and r["method"] == method:
            v = get(r)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                out[r["seed"]] = float(v)
    return out


def _tasks(rows) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in rows))


def _paired(claim, task, name, a, b, margin, larger=True, paper="", note="") -> Statistic:
    d, seeds = paired_differences(a, b)
    return Statistic(claim, task, name, margin, larger, t_interval(d), paper, note, seeds=seeds)


# ---------------------------------------------------------------- claim 1
CLAIM1_MARGIN = -1.0


def claim1(runs: list[dict], paper_table8: dict | None = None) -> list[Statistic]:
    """LP-FT − FT test metric (points), ID and per OOD set; holds if the CI lies above −1 point."""
    out = []
    for task in _tasks(runs):
        p = (paper_table8 or {}).get(task)
        paper = f"{p['lp-ft'] - p['ft']:+.2f} ({p['lp-ft']:.2f} vs {p['ft']:.2f})" if p else ""
        out.append(_paired(1, task, "LP-FT − FT test metric (points), ID",
                           _by_seed(runs, task, "lp-ft", "test_metric"), _by_seed(runs, task, "ft", "test_metric"),
                           CLAIM1_MARGIN, paper=paper))
        sets = dict.fromkeys(s for r in runs if r["task"] == task for s in (r.get("ood") or {}))
        for s in sets:
            out.append(_paired(1, task, f"LP-FT − FT test metric (points), OOD {s}",
                               _by_seed(runs, task, "lp-ft", lambda r: (r.get("ood") or {}).get(s)),
                               _by_seed(runs, task, "ft", lambda r: (r.get("ood") or {}).get(s)), CLAIM1_MARGIN))
    return out


# ---------------------------------------------------------------- claim 2
def claim2(runs: list[dict], paper_table1: dict | None = None) -> list[Statistic]:
    """Diff(FT) − Diff(LP-FT) > 0 and CS(LP-FT) − CS(FT) > 0, and the same for LoRA / LP-LoRA."""
    out = []
    for task in _tasks(runs):
        p = (paper_table1 or {}).get(task)
        for base, lp in (("ft", "lp-ft"), ("lora", "lp-lora")):
            B, L = base.upper().replace("LORA", "LoRA"), lp.upper().replace("LORA", "LoRA")
            paper_diff = f"{p[base][1] - p[lp][1]:+.2f} ({p[base][1]} vs {p[lp][1]})" if p else ""
            paper_cs = f"{p[lp][0] - p[base][0]:+.3f} ({p[lp][0]} vs {p[base][0]})" if p else ""
            out.append(_paired(2, task, f"Diff(F) {B} − {L}", _by_seed(runs, task, base, "diff"),
                               _by_seed(runs, task, lp, "diff"), 0.0, paper=paper_diff))
            out.append(_paired(2, task, f"CS(F) {L} − {B}", _by_seed(runs, task, lp, "cs"),
                               _by_seed(runs, task, base, "cs"), 0.0, paper=paper_cs))
    return out


# ---------------------------------------------------------------- claim 3
CLAIM3_MARGIN = 1.0  # log2: at least twice the growth


def _log2_ratio(num, den):
    if num is None or den is None or num <= 0 or den <= 0:
        return None
    return math.log2(num / den)


def claim3(runs: list[dict], paper_table1: dict | None = None) -> list[Statistic]:
    """log2 growth of ‖V‖ during LP minus log2 growth during FT, per seed; holds if the CI lies above 1."""
    out = []
    for task in _tasks(runs):
        lp_growth = {}
        for method in ("lp", "lp-lora", "lp-ft"):  # the LP-FT run last: it wins where a seed has several
            lp_growth.update(_by_seed(runs, task, method, lambda r: _log2_ratio(r.get("norm_lp"), r.get("norm_init"))))
        ft_growth = _by_seed(runs, task, "ft", lambda r: _log2_ratio(r.get("norm_end"), r.get("norm_start")))
        note = ""
        if not ft_growth:
            ft_growth = {s: 0.0 for s in lp_growth}
            note = "no FT run: FT growth taken as 0"
        p = (paper_table1 or {}).get(task)
        paper = (f"{math.log2(p['lp'][3] / p['pretrained'][3]) - math.log2(p['ft'][3] / p['pretrained'][3]):.2f} "
                 f"(LP {p['pretrained'][3]} → {p['lp'][3]}, FT → {p['ft'][3]})") if p else ""
        out.append(_paired(3, task, "log2 Norm(C) growth, LP − FT", lp_growth, ft_growth, CLAIM3_MARGIN,
                           paper=paper, note=note))
    return out


def lp_norm_path(features, labels, num_labels: int, cs: int = 10, max_iter: int = 5000, chosen_weight=None,
                 chosen_bias=None, gd_steps: int = 2000) -> dict:
    """Head norm ‖V‖_F of the L2 probe at every C of its grid ``np.logspace(-4, 4, cs)``, the C the probe chose
    (recovered from its head, snapped to the grid) and an (almost) unregularised LP by gradient descent.

    Returns ``{"path": [{"C", "norm"}], "chosen_C", "chosen_norm", "gd": {"C", "steps", "norm", "converged"},
    "pretrained_cs"}``. Binary heads are written ``(-w/2, w/2)`` as the probe does (``methods/lp.py``).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from .dynamics import gd_linear_probe, probe_regularisation, snap_to_grid
    from .features import cosine_similarity_mean

    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    path = []
    for C in np.logspace(-4, 4, cs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            coef = LogisticRegression(C=float(C), solver="lbfgs", max_iter=max_iter).fit(X, y).coef_
        if coef.shape[0] == 1:
            coef = np.concatenate([-coef / 2, coef / 2])
        path.append({"C": float(C), "norm": float(np.linalg.norm(coef))})
    out = {"path": path, "chosen_C": None, "chosen_norm": None}
    if chosen_weight is not None:
        C, _ = probe_regularisation(X, y, chosen_weight, chosen_bias)
        out["chosen_C"] = snap_to_grid(C, cs) if C > 0 else None
        out["chosen_norm"] = float(np.linalg.norm(chosen_weight))
    gd_C = 1e6  # negligible L2: the unregularised probe's norm is bounded only by the step budget
    gd = gd_linear_probe(X, y, num_labels, gd_C, max_steps=gd_steps, log_every=max(gd_steps, 1))
    out["gd"] = {"C": gd_C, "steps": gd.n_steps, "norm": float(np.linalg.norm(gd.weight)),
                 "converged": gd.converged}
    out["pretrained_cs"] = cosine_similarity_mean(X)
    return out


# ---------------------------------------------------------------- claim 4
def claim4(ntk_rows: list[dict], paper_table2: dict | None = None) -> list[Statistic]:
    """FT ratio of LP-FT − FT (and LP-LoRA − LoRA) > 0; rank(F) − rank(P) > 0 of LP-FT's (LP-LoRA's) kernel."""
    out = []
    for task in _tasks(ntk_rows):
        p = (paper_table2 or {}).get(task)
        for base, lp in (("ft", "lp-ft"), ("lora", "lp-lora")):
            L = lp.upper().replace("LORA", "LoRA")
            paper = f"{p[lp]['ft_ratio'] - p[base]['ft_ratio']:+.4f}" if p else ""
            out.append(_paired(4, task, f"FT ratio {L} − {base.upper().replace('LORA', 'LoRA')}",
                               _by_seed(ntk_rows, task, lp, "ft_ratio"), _by_seed(ntk_rows, task, base, "ft_ratio"),
                               0.0, paper=paper))
        for lp in ("lp-ft", "lp-lora"):
            paper = f"{p[lp]['rank_F'] - p['pretrained']['rank']:+d} ({p[lp]['rank_F']} vs {p['pretrained']['rank']})" \
                if p else ""
            out.append(_paired(4, task, f"rank(F) − rank(P), {lp.upper().replace('LORA', 'LoRA')}",
                               _by_seed(ntk_rows, task, lp, "rank_F"), _by_seed(ntk_rows, task, lp, "rank_P"),
                               0.0, paper=paper))
    return out


# ---------------------------------------------------------------- claim 5
CLAIM5_MARGIN = -0.8


def monotonicity(norms, changes) -> dict:
    """Spearman's rho of change against norm and the fraction of consecutive (by norm) steps that decrease."""
    order = np.argsort(np.asarray(norms, dtype=np.float64), kind="stable")
    x = np.asarray(norms, dtype=np.float64)[order]
    c = np.asarray(changes, dtype=np.float64)[order]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(c) == 0:
        rho = float("nan")
    else:
        rho = float(sps.spearmanr(x, c).statistic)
    steps = np.diff(c)
    return {"rho": rho, "decreasing_steps": float(np.mean(steps < 0)) if len(steps) else float("nan"),
            "points": len(x)}


def claim5(sweep_rows: list[dict], optimizer: str) -> tuple[list[Statistic], list[dict]]:
    """Per (task, method): t interval over seeds of Spearman's rho (start norm vs change); holds if < −0.8.

    Also returns one row per (task, method, seed) curve with rho and the decreasing-step fraction. Curves with
    fewer than 3 distinct norms give no rho.
    """
    curves: dict[tuple, list[dict]] = {}
    for r in sweep_rows:
        curves.setdefault((r["task"], r["method"], r["seed"]), []).append(r)
    per_seed = []
    for (task, method, seed), pts in curves.items():
        m = monotonicity([p["start_norm"] for p in pts], [p["change"] for p in pts])
        per_seed.append({"task": task, "method": method, "seed": seed, "optimizer": optimizer, **m})
    out = []
    for task, method in dict.fromkeys((r["task"], r["method"]) for r in per_seed):
        rhos = [(r["seed"], r["rho"]) for r in per_seed if r["task"] == task and r["method"] == method
                and math.isfinite(r["rho"])]
        out.append(Statistic(5, task, f"Spearman rho(start norm, feature change), {method.upper()}, {optimizer}",
                             CLAIM5_MARGIN, False, t_interval([v for _, v in rhos]),
                             paper="≈ −1 (Figure 3: monotone decrease)", seeds=sorted(s for s, _ in rhos)))
    return out, per_seed


# ---------------------------------------------------------------- claim 6
def mce_gain_gap(runs: list[dict], task: str) -> dict:
    """seed -> MCE gain of LP-FT minus the largest gain of the other fine-tuning methods of that seed."""
    gains = {m: _by_seed(runs, task, m, lambda r: None if r.get("mce_before") is None or r.get("mce_after") is None
                         else r["mce_before"] - r["mce_after"]) for m in ("ft", "lp-ft", "lora", "lp-lora")}
    out = {}
    for seed, g in gains["lp-ft"].items():
        others = [gains[m][seed] for m in ("ft", "lora", "lp-lora") if seed in gains[m]]
        if others:
            out[seed] = g - max(others)
    return out


def claim6(runs: list[dict], paper_table3: dict | None = None) -> list[Statistic]:
    """MCE gain (points) of LP-FT minus the best other method's, per seed; holds if the CI lies above 0."""
    out = []
    for task in _tasks(runs):
        gaps = mce_gain_gap(runs, task)
        p = (paper_table3 or {}).get(task)
        paper = ""
        if p:
            g = {m: v["mce"][0] - v["mce"][1] for m, v in p.items()}
            paper = f"{g['lp-ft'] - max(v for m, v in g.items() if m != 'lp-ft'):+.2f}"
        out.append(Statistic(6, task, "MCE gain (points) LP-FT − best other", 0.0, True,
                             t_interval(gaps[s] for s in sorted(gaps)), paper=paper, seeds=sorted(gaps)))
    return out


# ---------------------------------------------------------------- claim 7
def scalar_fit_residual(A, B) -> float:
    """``min_c ||A - c B||_F / ||A||_F`` with the least-squares ``c = <A, B> / <B, B>`` (0 for A = c B).

    >>> scalar_fit_residual(np.eye(2), 3 * np.eye(2))
    0.0
    """
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if A.shape != B.shape:
        raise ValueError(f"kernels of different shapes: {A.shape} and {B.shape}")
    na, bb = float(np.linalg.norm(A)), float(np.sum(B * B))
    if na == 0:
        raise ValueError("the first kernel is zero: the relative residual is undefined")
    if bb == 0:
        return 1.0
    c = float(np.sum(A * B)) / bb
    return float(np.linalg.norm(A - c * B) / na)


def normalised_spectrum(K) -> np.ndarray:
    """Singular values in decreasing order divided by the largest."""
    s = np.linalg.svd(np.asarray(K, dtype=np.float64), compute_uv=False)
    if s[0] == 0:
        raise ValueError("zero kernel: no normalised spectrum")
    return s / s[0]


def spectrum_gap(A, B) -> float:
    """``max_i |s_i(A)/s_1(A) - s_i(B)/s_1(B)|`` (0 for a positive multiple)."""
    a, b = normalised_spectrum(A), normalised_spectrum(B)
    if a.shape != b.shape:
        raise ValueError(f"kernels of different sizes: {len(a)} and {len(b)} singular values")
    return float(np.max(np.abs(a - b)))


def kernel_pair_row(task: str, seed, F_lora, F_ft, P) -> dict:
    """Claim-7 numbers for one seed: LoRA vs FT and the baseline F(FT) vs P."""
    return {"task": task, "seed": seed, "residual": scalar_fit_residual(F_lora, F_ft),
            "gap": spectrum_gap(F_lora, F_ft), "baseline_residual": scalar_fit_residual(F_ft, P),
            "baseline_gap": spectrum_gap(F_ft, P)}


def claim7(pair_rows: list[dict]) -> list[Statistic]:
    """Baseline minus LoRA–FT residual and spectrum gap, per seed; holds if both CIs lie above 0."""
    out = []
    for task in _tasks(pair_rows):
        rows = [r for r in pair_rows if r["task"] == task]
        for what, key in (("scalar-fit residual", "residual"), ("spectrum gap", "gap")):
            a = {r["seed"]: r[f"baseline_{key}"] for r in rows}
            b = {r["seed"]: r[key] for r in rows}
            mean_lora = float(np.mean(list(b.values())))
            mean_base = float(np.mean(list(a.values())))
            out.append(_paired(7, task, f"{what}: baseline (F_FT vs P) − (F_LoRA vs F_FT)", a, b, 0.0,
                               paper="no number (Figure 4)",
                               note=f"LoRA vs FT {mean_lora:.4g}, baseline {mean_base:.4g} (means)"))
    return out
