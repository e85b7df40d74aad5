"""The seven claims of the paper as statistics, intervals and verdicts (rules v2: ``docs/claims.md``).

Pure functions over per-run / per-seed rows (plain dicts), so every rule can be tested on constructed rows:

- run rows: ``task, method, seed`` and any of ``test_metric`` (percentage points), ``majority`` (the metric of
  predicting the majority class, points), ``one_class`` (test predictions all one class), ``ood`` ({set: points}),
  ``diff``, ``cs``, ``diff_last``, ``cs_last`` (last epoch), ``pretrained_cs``, ``norm_init``, ``norm_lp``,
  ``norm_start``, ``norm_end``, ``phi_norm_pre``, ``phi_norm_end`` (mean ||phi|| on test), ``mce_before``,
  ``mce_after``, ``ece_before``, ``ece_after`` (points), ``mce_bin_before``, ``mce_bin_after`` (examples in the
  bin the MCE comes from), ``n_validation`` and ``validation_available`` (examples T was fitted on / the split has);
- eNTK rows: ``task, method, seed, ft_ratio, rank_P, rank_F`` and optionally ``num_labels``, ``n_train``,
  ``train_available``;
- sweep rows: ``task, method, seed, start_norm, change``;
- kernel-pair rows (claim 7): :func:`kernel_pair_row`.

Each claim function returns :class:`Statistic` objects; :func:`apply_gate` marks those resting on an
uninformative task x method (:func:`gate`); :func:`combine` turns a claim's deciding statistics into its verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TypedDict

import numpy as np
from scipy import stats as sps

HOLDS, FAILS, INCONCLUSIVE, NO_DATA = "holds", "fails", "inconclusive", "no data"
UNINFORMATIVE = "uninformative"  # rules v2: the statistic rests on a degenerate task x method
SHOWN = "shown, no verdict"  # rules v2: reported beside the deciding statistics, never combined
LEVEL = 0.95
GATE_MARGIN = 1.0  # points: a metric this close to the majority rate on every seed is uninformative


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
    if interval.lo is None or interval.hi is None:
        return INCONCLUSIVE
    above, below = interval.lo > margin, interval.hi < margin
    if larger:
        return HOLDS if above else FAILS if below else INCONCLUSIVE
    return HOLDS if below else FAILS if above else INCONCLUSIVE


def combine(verdicts) -> str:
    """A claim's verdict from its statistics' (ignoring "no data", "uninformative" and shown ones): fails if any
    fails, holds if all hold; uninformative when every statistic with data is uninformative."""
    verdicts = [v for v in verdicts if v is not None and v not in (NO_DATA, SHOWN)]
    vs = [v for v in verdicts if v != UNINFORMATIVE]
    if not vs:
        return UNINFORMATIVE if verdicts else NO_DATA
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
    decides: bool = True  # False: shown beside the deciding statistics, verdict SHOWN
    methods: tuple = ()  # the task's methods the statistic uses (the gate of rules v2)

    def __post_init__(self):
        self.verdict = verdict(self.interval, self.margin, self.larger) if self.decides else SHOWN

    def add_note(self, text: str) -> None:
        """Append ``text`` to the statistic's note (``;``-separated)."""
        self.note = f"{self.note}; {text}" if self.note else text

    def row(self) -> dict:
        """claims.csv's row of this statistic (its interval flattened, seeds space-separated)."""
        i = asdict(self.interval)
        return {"claim": self.claim, "task": self.task, "statistic": self.name, "n": i["n"], "mean": i["mean"],
                "ci_low": i["lo"], "ci_high": i["hi"], "rule": self.rule, "verdict": self.verdict,
                "paper": self.paper, "seeds": " ".join(map(str, self.seeds)), "note": self.note,
                "decides": self.decides}

    @property
    def rule(self) -> str:
        """The verdict rule in words ("holds if CI > m, fails if CI < m"), or that it is only shown."""
        if not self.decides:
            return "shown beside the verdict"
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


def _paired(claim, task, name, a, b, margin, larger=True, paper="", note="", decides=True, methods=()) -> Statistic:
    d, seeds = paired_differences(a, b)
    return Statistic(claim, task, name, margin, larger, t_interval(d), paper, note, seeds=seeds, decides=decides,
                     methods=tuple(methods))


# ---------------------------------------------------------------- the gate (rules v2)
def gate(runs: list[dict], margin: float = GATE_MARGIN) -> dict[tuple[str, str], str]:
    """(task, method) -> why it is uninformative, for every task x method whose test predictions are one class on
    every seed, or whose metric is within ``margin`` points of the majority rate on every seed."""
    out = {}
    for task, method in dict.fromkeys((r["task"], r["method"]) for r in runs):
        rows = [r for r in runs if r["task"] == task and r["method"] == method]
        if rows and all(r.get("one_class") for r in rows):
            out[(task, method)] = f"{method.upper()} predicts one class on every seed ({len(rows)})"
            continue
        near = [r for r in rows if r.get("majority") is not None and r.get("test_metric") is not None]
        if near and len(near) == len(rows) and all(abs(r["test_metric"] - r["majority"]) <= margin for r in near):
            metric = ", ".join(f"{r['test_metric']:.2f}" for r in near)
            out[(task, method)] = (f"{method.upper()} within {margin:g} point of the majority rate "
                                   f"{near[0]['majority']:.2f} on every seed ({metric})")
    return out


def apply_gate(statistics: list[Statistic], gates: dict[tuple[str, str], str]) -> list[Statistic]:
    """Mark (in place) each deciding statistic that uses an uninformative task x method as UNINFORMATIVE, with the
    reason in its note; returns the list."""
    for s in statistics:
        reasons = [gates[(s.task, m)] for m in s.methods if (s.task, m) in gates]
        if reasons and s.interval.n > 0:
            s.add_note("uninformative: " + "; ".join(reasons))
            if s.decides:
                s.verdict = UNINFORMATIVE
    return statistics


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
                           CLAIM1_MARGIN, paper=paper, methods=("ft", "lp-ft")))
        sets = dict.fromkeys(s for r in runs if r["task"] == task for s in (r.get("ood") or {}))
        for s in sets:
            out.append(_paired(1, task, f"LP-FT − FT test metric (points), OOD {s}",
                               _by_seed(runs, task, "lp-ft", lambda r, s=s: (r.get("ood") or {}).get(s)),
                               _by_seed(runs, task, "ft", lambda r, s=s: (r.get("ood") or {}).get(s)), CLAIM1_MARGIN,
                               methods=("ft", "lp-ft")))
    return out


# ---------------------------------------------------------------- claim 2
def claim2(runs: list[dict], paper_table1: dict | None = None) -> list[Statistic]:
    """Diff(FT) − Diff(LP-FT) > 0 at the best and at the last epoch decides (and LoRA / LP-LoRA); CS(LP-FT) − CS(FT)
    is shown beside it with the pre-trained CS (rules v2: CS measures collapse only where the pre-trained CS ≈ 1)."""
    out = []
    for task in _tasks(runs):
        p = (paper_table1 or {}).get(task)
        pre = _by_seed(runs, task, "lp-ft", "pretrained_cs") or _by_seed(runs, task, "ft", "pretrained_cs")
        pre_note = f"pre-trained CS {np.mean(list(pre.values())):.3f}" if pre else ""
        for base, lp in (("ft", "lp-ft"), ("lora", "lp-lora")):
            B, L = base.upper().replace("LORA", "LoRA"), lp.upper().replace("LORA", "LoRA")
            paper_diff = f"{p[base][1] - p[lp][1]:+.2f} ({p[base][1]} vs {p[lp][1]})" if p else ""
            paper_cs = f"{p[lp][0] - p[base][0]:+.3f} ({p[lp][0]} vs {p[base][0]})" if p else ""
            for suffix, epoch in (("", "best epoch"), ("_last", "last epoch")):
                out.append(_paired(2, task, f"Diff(F) {B} − {L}, {epoch}", _by_seed(runs, task, base, "diff" + suffix),
                                   _by_seed(runs, task, lp, "diff" + suffix), 0.0,
                                   paper=paper_diff if not suffix else "", methods=(base, lp)))
                out.append(_paired(2, task, f"CS(F) {L} − {B}, {epoch}", _by_seed(runs, task, lp, "cs" + suffix),
                                   _by_seed(runs, task, base, "cs" + suffix), 0.0,
                                   paper=paper_cs if not suffix else "", note=pre_note, decides=False,
                                   methods=(base, lp)))
    return out


# ---------------------------------------------------------------- claim 3
CLAIM3_MARGIN = 1.0  # log2: at least twice the growth


def _log2_ratio(num, den):
    if num is None or den is None or num <= 0 or den <= 0:
        return None
    return math.log2(num / den)


def _logit_scale(norm, phi_norm):
    return None if norm is None or phi_norm is None else norm * phi_norm


def claim3(runs: list[dict], paper_table1: dict | None = None,
           edge_C: dict[str, float] | None = None) -> list[Statistic]:
    """log2 growth of ‖V‖ during LP minus log2 growth during FT, per seed; holds if the CI lies above 1. Shown
    beside it: the same for the logit scale ‖V‖·mean‖φ‖. ``edge_C``: task -> the probe's chosen C where it lies at
    an edge of its grid (flagged in the note)."""
    out = []
    for task in _tasks(runs):
        lp_growth = {}
        for method in ("lp", "lp-lora", "lp-ft"):  # the LP-FT run last: it wins where a seed has several
            lp_growth.update(_by_seed(runs, task, method, lambda r: _log2_ratio(r.get("norm_lp"), r.get("norm_init"))))
        ft_growth = _by_seed(runs, task, "ft", lambda r: _log2_ratio(r.get("norm_end"), r.get("norm_start")))
        # the logit scale: phi does not move during LP, so LP's logit-scale growth equals its Norm(C) growth
        ft_scale = _by_seed(runs, task, "ft",
                            lambda r: _log2_ratio(_logit_scale(r.get("norm_end"), r.get("phi_norm_end")),
                                                  _logit_scale(r.get("norm_start"), r.get("phi_norm_pre"))))
        note = ""
        if not ft_growth:
            ft_growth = {s: 0.0 for s in lp_growth}
            note = "no FT run: FT growth taken as 0"
        p = (paper_table1 or {}).get(task)
        paper = (f"{math.log2(p['lp'][3] / p['pretrained'][3]) - math.log2(p['ft'][3] / p['pretrained'][3]):.2f} "
                 f"(LP {p['pretrained'][3]} → {p['lp'][3]}, FT → {p['ft'][3]})") if p else ""
        stat = _paired(3, task, "log2 Norm(C) growth, LP − FT", lp_growth, ft_growth, CLAIM3_MARGIN,
                       paper=paper, note=note, methods=("lp", "ft"))
        if edge_C and task in edge_C:
            stat.add_note(f"flag: the probe's C = {edge_C[task]:g} is at the edge of its grid (its norm is set by the "
                          "grid, not the data)")
        out.append(stat)
        scale = _paired(3, task, "log2 logit-scale growth ‖V‖·mean‖φ‖, LP − FT", lp_growth, ft_scale, CLAIM3_MARGIN,
                        decides=False, methods=("lp", "ft"))
        out.append(scale)
    return out


class LpNormPath(TypedDict, total=False):
    """:func:`lp_norm_path`'s result (``seed``, ``folder`` and ``norm_init`` are added by the collector)."""

    path: list[dict]  # {"C", "norm"} per C of the probe's grid
    chosen_C: float | None
    chosen_norm: float | None
    gd: dict  # {"C", "steps", "norm", "converged"}
    pretrained_cs: float
    seed: int
    folder: str
    norm_init: float


def lp_norm_path(features, labels, num_labels: int, cs: int = 10, max_iter: int = 5000, chosen_weight=None,
                 chosen_bias=None, gd_steps: int = 2000) -> LpNormPath:
    """Head norm ‖V‖_F of the L2 probe at every C of its grid ``np.logspace(-4, 4, cs)``, the C the probe chose
    (recovered from its head, snapped to the grid) and an (almost) unregularised LP by gradient descent.

    Returns ``{"path": [{"C", "norm"}], "chosen_C", "chosen_norm", "gd": {"C", "steps", "norm", "converged"},
    "pretrained_cs"}``. Binary heads are written ``(-w/2, w/2)`` as the probe does (``methods/lp.py``).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from ..analysis.dynamics import gd_linear_probe, probe_regularisation, snap_to_grid
    from ..analysis.features import cosine_similarity_mean

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
    out: LpNormPath = {"path": path, "chosen_C": None, "chosen_norm": None}
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
NTK_MAX_TRAIN = 250  # the paper's rule: the whole train split when it has at most this many examples


def rank_cap(num_labels: int, n_train: int) -> int:
    """The largest rank F can have after an LP with zero-sum head rows (1ᵀV = 0): (C − 1)·N."""
    return (num_labels - 1) * n_train


def claim4(ntk_rows: list[dict], paper_table2: dict | None = None) -> list[Statistic]:
    """FT ratio of LP-FT − FT (and LP-LoRA − LoRA) > 0 decides; rank(F) − rank(P) of LP-FT's (LP-LoRA's) kernel is
    shown with its (C − 1)·N cap (rules v2)."""
    out = []
    for task in _tasks(ntk_rows):
        p = (paper_table2 or {}).get(task)
        rows = [r for r in ntk_rows if r["task"] == task]
        short = sorted({(r["n_train"], min(r["train_available"], NTK_MAX_TRAIN)) for r in rows
                        if r.get("n_train") and r.get("train_available")
                        and r["n_train"] < min(r["train_available"], NTK_MAX_TRAIN)})
        sample_note = "; ".join(f"eNTK on {n} train examples where the rule asks for {want}: LP's stationarity does "
                                "not hold on a subset" for n, want in short)
        for base, lp in (("ft", "lp-ft"), ("lora", "lp-lora")):
            L = lp.upper().replace("LORA", "LoRA")
            paper = f"{p[lp]['ft_ratio'] - p[base]['ft_ratio']:+.4f}" if p else ""
            out.append(_paired(4, task, f"FT ratio {L} − {base.upper().replace('LORA', 'LoRA')}",
                               _by_seed(ntk_rows, task, lp, "ft_ratio"), _by_seed(ntk_rows, task, base, "ft_ratio"),
                               0.0, paper=paper, note=sample_note, methods=(base, lp)))
        for lp in ("lp-ft", "lp-lora"):
            paper = f"{p[lp]['rank_F'] - p['pretrained']['rank']:+d} ({p[lp]['rank_F']} vs {p['pretrained']['rank']})" \
                if p else ""
            # a sketched F has no rank (rank_F None): nothing to compare with the cap
            mine = [r for r in rows if r["method"] == lp and r.get("num_labels") and r.get("n_train")
                    and r.get("rank_F") is not None]
            caps = [(r["rank_F"], rank_cap(r["num_labels"], r["n_train"])) for r in mine]
            note = ""
            if caps:
                at = sum(rf >= cap for rf, cap in caps)
                note = (f"cap: rank(F) ≤ (C − 1)·N = {caps[0][1]} after LP (zero-sum head rows); at the cap on "
                        f"{at} of {len(caps)} seeds")
            out.append(_paired(4, task, f"rank(F) − rank(P), {lp.upper().replace('LORA', 'LoRA')}",
                               _by_seed(ntk_rows, task, lp, "rank_F"), _by_seed(ntk_rows, task, lp, "rank_P"),
                               0.0, paper=paper, note=note, decides=False, methods=(lp,)))
    return out


# ---------------------------------------------------------------- claim 5
CLAIM5_MARGIN = -0.8


class Monotonicity(TypedDict):
    """:func:`monotonicity`'s result."""

    rho: float  # Spearman's rho of change against norm (nan under 3 points or a constant)
    decreasing_steps: float  # fraction of consecutive steps (by norm) along which the change falls
    points: int


def monotonicity(norms, changes) -> Monotonicity:
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


CLAIM5_MIN_NORMS = 5  # with 3 norms Spearman's rho can only be ±1 or ±0.5
CLAIM5_MIN_SEEDS = 3


def claim5(sweep_rows: list[dict], optimizer: str, decides: bool = True) -> tuple[list[Statistic], list[dict]]:
    """Per (task, method): t interval over seeds of Spearman's rho (start norm vs change); holds if < −0.8.

    Also returns one row per (task, method, seed) curve with rho and the decreasing-step fraction. A curve counts
    only with at least 5 distinct norms; with fewer than 3 counted seeds the statistic is inconclusive (rules v2).
    ``decides=False`` (the plain-SGD diagnostic): shown without a verdict.
    """
    curves: dict[tuple, list[dict]] = {}
    for r in sweep_rows:
        curves.setdefault((r["task"], r["method"], r["seed"]), []).append(r)
    per_seed = []
    for (task, method, seed), pts in curves.items():
        m = monotonicity([p["start_norm"] for p in pts], [p["change"] for p in pts])
        per_seed.append({"task": task, "method": method, "seed": seed, "optimizer": optimizer, **m,
                         "distinct_norms": len({round(float(p["start_norm"]), 12) for p in pts})})
    out = []
    for task, method in dict.fromkeys((r["task"], r["method"]) for r in per_seed):
        mine = [r for r in per_seed if r["task"] == task and r["method"] == method]
        short = [r for r in mine if r["distinct_norms"] < CLAIM5_MIN_NORMS]
        rhos = [(r["seed"], r["rho"]) for r in mine if math.isfinite(r["rho"])
                and (not decides or r["distinct_norms"] >= CLAIM5_MIN_NORMS)]
        name = f"Spearman rho(start norm, feature change), {method.upper()}, {optimizer}"
        stat = Statistic(5, task, name + ("" if decides else " (diagnostic)"), CLAIM5_MARGIN, False,
                         t_interval([v for _, v in rhos]), paper="≈ −1 (Figure 3: monotone decrease)",
                         seeds=sorted(s for s, _ in rhos), decides=decides, methods=(method,))
        if decides and short:
            stat.add_note(f"{len(short)} curve(s) with fewer than {CLAIM5_MIN_NORMS} norms left out")
        if decides and 0 < stat.interval.n < CLAIM5_MIN_SEEDS and stat.verdict != INCONCLUSIVE:
            stat.verdict = INCONCLUSIVE
            stat.add_note(f"fewer than {CLAIM5_MIN_SEEDS} seeds: no verdict")
        if not decides:
            stat.add_note("one plain-SGD epoch: Eq. 2 makes the change linear in the head norm, so rho = +1 is "
                          "what the theory predicts; it cannot test the claim")
        out.append(stat)
    return out, per_seed


# ---------------------------------------------------------------- claim 6

CLAIM6_MIN_VALIDATION = 100
SMALL_BIN = 5  # an MCE from a bin with fewer test examples moves by >= 20 points per example


def gain_gap(runs: list[dict], task: str, what: str = "mce") -> dict:
    """seed -> ``what`` (mce / ece) gain of LP-FT minus the largest gain of the other methods of that seed."""
    before, after = f"{what}_before", f"{what}_after"
    gains = {m: _by_seed(runs, task, m, lambda r: None if r.get(before) is None or r.get(after) is None
                         else r[before] - r[after]) for m in ("ft", "lp-ft", "lora", "lp-lora")}
    out = {}
    for seed, g in gains["lp-ft"].items():
        others = [gains[m][seed] for m in ("ft", "lora", "lp-lora") if seed in gains[m]]
        if others:
            out[seed] = g - max(others)
    return out


def mce_gain_gap(runs: list[dict], task: str) -> dict:
    """seed -> MCE gain of LP-FT minus the largest gain of the other fine-tuning methods of that seed."""
    return gain_gap(runs, task, "mce")


def claim6(runs: list[dict], paper_table3: dict | None = None) -> list[Statistic]:
    """MCE gain (points) of LP-FT minus the best other method's, per seed; holds if the CI lies above 0. Shown
    beside it: the same for ECE. Rules v2: T fitted on fewer than 100 validation examples although the split has
    more is uninformative; a split with fewer is noted; MCEs from bins of fewer than 5 examples are counted."""
    out = []
    for task in _tasks(runs):
        mine = [r for r in runs if r["task"] == task and r["method"] in ("ft", "lp-ft", "lora", "lp-lora")
                and r.get("mce_before") is not None]
        methods = tuple(dict.fromkeys(r["method"] for r in mine))
        gaps = gain_gap(runs, task, "mce")
        p = (paper_table3 or {}).get(task)
        paper = ""
        if p:
            g = {m: v["mce"][0] - v["mce"][1] for m, v in p.items()}
            paper = f"{g['lp-ft'] - max(v for m, v in g.items() if m != 'lp-ft'):+.2f}"
        stat = Statistic(6, task, "MCE gain (points) LP-FT − best other", 0.0, True,
                         t_interval(gaps[s] for s in sorted(gaps)), paper=paper, seeds=sorted(gaps), methods=methods)
        n_val = sorted({r["n_validation"] for r in mine if r.get("n_validation") is not None})
        avail = sorted({r["validation_available"] for r in mine if r.get("validation_available") is not None})
        if n_val:
            stat.add_note(f"T fitted on {'/'.join(map(str, n_val))} validation examples")
            if min(n_val) < CLAIM6_MIN_VALIDATION:
                if avail and max(avail) > min(n_val):
                    stat.add_note(f"uninformative: fewer than {CLAIM6_MIN_VALIDATION} although the split has "
                                  f"{max(avail)}")
                    if stat.interval.n > 0:
                        stat.verdict = UNINFORMATIVE
                elif avail:
                    stat.add_note(f"the split has fewer than {CLAIM6_MIN_VALIDATION}")
                else:  # the split could not be read (no --data-dir): say so rather than guess
                    stat.add_note(f"fewer than {CLAIM6_MIN_VALIDATION}; the split's size is unknown (pass --data-dir)")
        bins = [b for r in mine for k in ("mce_bin_before", "mce_bin_after") if (b := r.get(k)) is not None]
        if bins:
            stat.add_note(f"{sum(b < SMALL_BIN for b in bins)} of {len(bins)} MCEs from a bin of < {SMALL_BIN} "
                          "examples")
        out.append(stat)
        ece = gain_gap(runs, task, "ece")
        out.append(Statistic(6, task, "ECE gain (points) LP-FT − best other", 0.0, True,
                             t_interval(ece[s] for s in sorted(ece)), seeds=sorted(ece), decides=False,
                             methods=methods))
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
    from ..ntk.stats import singular_values  # (here, not at the top: lpft.ntk imports torch)

    s = singular_values(K)
    if s[0] == 0:
        raise ValueError("zero kernel: no normalised spectrum")
    return s / s[0]


def spectrum_gap(A, B) -> float:
    """``max_i |s_i(A)/s_1(A) - s_i(B)/s_1(B)|`` (0 for a positive multiple)."""
    a, b = normalised_spectrum(A), normalised_spectrum(B)
    if a.shape != b.shape:
        raise ValueError(f"kernels of different sizes: {len(a)} and {len(b)} singular values")
    return float(np.max(np.abs(a - b)))


def centre_kernel(K, num_labels: int) -> np.ndarray:
    """``H K H`` with ``H = (I_N − 11ᵀ/N) ⊗ I_C`` for a kernel whose rows and columns are ``sample * C + class``:
    the mean over samples is removed per class pair (the common mode every sample shares).

    >>> centre_kernel(np.ones((4, 4)), 1)
    array([[0., 0., 0., 0.],
           [0., 0., 0., 0.],
           [0., 0., 0., 0.],
           [0., 0., 0., 0.]])
    """
    K = np.asarray(K, dtype=np.float64)
    C = int(num_labels)
    n = K.shape[0] // C
    if K.shape != (n * C, n * C):
        raise ValueError(f"expected a square kernel of N x C = {C}-class rows, got {K.shape}")
    k = K.reshape(n, C, n, C)
    k = k - k.mean(axis=0, keepdims=True)
    k = k - k.mean(axis=2, keepdims=True)
    return k.reshape(n * C, n * C)


def permute_samples(K, num_labels: int, seed: int = 0) -> np.ndarray:
    """The kernel with rows and columns permuted by one random sample permutation (classes kept together): the
    same spectrum, but the pairing of samples with the other kernel is lost."""
    K = np.asarray(K, dtype=np.float64)
    C = int(num_labels)
    n = K.shape[0] // C
    perm = np.random.default_rng(seed).permutation(n)
    idx = (perm[:, None] * C + np.arange(C)).reshape(-1)
    return K[np.ix_(idx, idx)]


def kernel_pair_row(task: str, seed, F_lora, F_ft, P, num_labels: int = 1, F_ft_whole=None,
                    ft_part: str = "whole model") -> dict:
    """Claim-7 numbers for one seed on centred kernels (rules v2): F_LoRA against ``F_ft`` (the FT kernel over the
    parameters LoRA adapts when available, ``ft_part`` names it), against the same F_FT sample-permuted (the
    baseline of the verdict), and v1's baseline F_FT against P; ``F_ft_whole``: the whole-model F_FT, compared too
    when ``F_ft`` is a part of it."""
    A = centre_kernel(F_lora, num_labels)
    B = centre_kernel(F_ft, num_labels)
    Pc = centre_kernel(P, num_labels)
    row = {"task": task, "seed": seed, "ft_part": ft_part, "residual": scalar_fit_residual(A, B),
           "permuted_residual": scalar_fit_residual(A, permute_samples(B, num_labels)),
           "gap": spectrum_gap(A, B), "baseline_residual": scalar_fit_residual(B, Pc),
           "baseline_gap": spectrum_gap(B, Pc), "residual_whole": None}
    if F_ft_whole is not None:
        row["residual_whole"] = scalar_fit_residual(A, centre_kernel(F_ft_whole, num_labels))
    return row


def claim7(pair_rows: list[dict]) -> list[Statistic]:
    """Rules v2: the centred scalar-fit residual of F_LoRA against a sample-permuted F_FT minus that against F_FT,
    per seed, decides (holds if the CI lies above 0); v1's F_FT-vs-P baseline and the spectrum gap are shown. Rows
    of the pair LP-LoRA vs LP-FT (``pair``) get the same statistics without a verdict; a row without ``pair`` is
    LoRA vs FT. Each pair is its own statistic: mixing them would pair one seed's LoRA row with another pair's."""
    out = []
    for task in _tasks(pair_rows):
        for pair in ("lora vs ft", "lp-lora vs lp-ft"):
            rows = [r for r in pair_rows if r["task"] == task and r.get("pair", "lora vs ft") == pair]
            if rows:
                out.extend(_claim7_pair(task, rows, decides=pair == "lora vs ft",
                                        methods=("ft", "lora") if pair == "lora vs ft" else ("lp-ft", "lp-lora")))
    return out


def _claim7_pair(task: str, rows: list[dict], decides: bool, methods: tuple[str, str]) -> list[Statistic]:
    parts = ", ".join(sorted({r.get("ft_part", "whole model") for r in rows}))
    # the LP pair's names carry the pair; LoRA vs FT keeps the names its verdict has always had
    tag = "" if decides else " [LP-LoRA vs LP-FT, shown]"

    def seeds(key):
        return {r["seed"]: r[key] for r in rows if r.get(key) is not None}

    mean = {k: float(np.mean(list(seeds(k).values()))) if seeds(k) else float("nan")
            for k in ("residual", "permuted_residual", "baseline_residual", "gap", "baseline_gap", "residual_whole")}
    whole = (f"; against the whole-model F_FT {mean['residual_whole']:.4g}" if seeds("residual_whole") else "")
    return [
        _paired(7, task, "centred residual: permuted F_FT − F_FT (F_LoRA fitted by c·F_FT)" + tag,
                seeds("permuted_residual"), seeds("residual"), 0.0, paper="no number (Figure 4)" if decides else "",
                note=f"F_FT over {parts}; residual {mean['residual']:.4g} vs permuted "
                     f"{mean['permuted_residual']:.4g} (means){whole}; a sample-permuted kernel keeps the "
                     "spectrum but loses the pairing of samples, so it cannot be close by construction",
                decides=decides, methods=methods),
        _paired(7, task, "centred residual: v1 baseline (F_FT vs P) − (F_LoRA vs F_FT)" + tag,
                seeds("baseline_residual"), seeds("residual"), 0.0, decides=False,
                note="v1 baseline: F_FT shares P's Kronecker form (V0V0ᵀ ≈ 0.154·I), not an unrelated pair",
                methods=methods),
        _paired(7, task, "centred spectrum gap: v1 baseline (F_FT vs P) − (F_LoRA vs F_FT)" + tag,
                seeds("baseline_gap"), seeds("gap"), 0.0, decides=False,
                note=f"LoRA vs FT {mean['gap']:.4g}, F_FT vs P {mean['baseline_gap']:.4g} (means); a "
                     "permuted kernel has the same spectrum, so no permuted baseline exists for it",
                methods=methods),
    ]
