"""The report's figures: head-norm dynamics (paper Figure 1) and the norm sweep (paper Figure 3).

t-SNE panels and reliability diagrams come from :mod:`lpft.analysis.tsne` and :mod:`lpft.analysis.calibration`.
Every figure is drawn on an Agg canvas (no pyplot state) and written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.ticker import FormatStrFormatter

from ..analysis._figures import new_figure, save_png

DYNAMICS_PANELS = (("head_weight_norm", "head weight norm ||V||_F"), ("head_bias_norm", "head bias norm ||b||"),
                   ("mean_logit_norm", "mean logit norm"), ("loss", "training loss"))
# log scale where LP-initialised heads sit orders of magnitude above fresh ones
LOG_Y = ("head_weight_norm", "mean_logit_norm")
# one colour per method, the same in every figure
METHOD_COLORS = {"lp": "C0", "ft": "C1", "lp-ft": "C2", "lora": "C3", "lp-lora": "C4"}


def plot_dynamics(curves: Sequence[tuple[str, str, list[dict]]], path: str | Path, title: str = "") -> Path:
    """Norms and loss against optimisation step, one line per (method, label, steps) curve.

    Curves of the same method (its seeds) share a colour and one legend entry. The step axis is symmetric-log:
    LP by gradient descent runs thousands of full-batch steps, fine-tuning a few hundred mini-batch steps, and both
    start at step 0 or 1. Weight and logit norms are on a log axis: an LP head can be 100x a fresh one.
    """
    fig = new_figure(figsize=(11, 7.5))
    axes = [fig.add_subplot(2, 2, i + 1) for i in range(4)]
    labelled = set()
    for method, label, steps in curves:
        if not steps:
            continue
        x = np.array([s["step"] for s in steps])
        color = METHOD_COLORS.get(method, "C7")
        for ax, (key, _) in zip(axes, DYNAMICS_PANELS):
            ax.plot(x, [s[key] for s in steps], color=color, linewidth=1.2, alpha=0.8,
                    label=None if label in labelled else label)
        labelled.add(label)
    for ax, (key, name) in zip(axes, DYNAMICS_PANELS):
        ax.set_xscale("symlog", linthresh=1)
        if key in LOG_Y:
            values = [s[key] for _, _, steps in curves for s in steps]
            log_axis(ax, values)
        ax.set(xlabel="optimisation step", ylabel=name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def log_ticks(lo: float, hi: float, max_ticks: int = 9) -> list[float]:
    """Ticks of a log axis that covers ``[lo, hi]``: the 1-2-5 values from the largest at or below ``lo`` to the
    smallest at or above ``hi`` (so both ends of the data have a labelled tick beyond them); only the powers of ten
    and the two ends when that would make more than ``max_ticks``.

    >>> log_ticks(0.33, 1.8)
    [0.2, 0.5, 1.0, 2.0]
    >>> log_ticks(0.02, 41.0)
    [0.02, 0.1, 1.0, 10.0, 50.0]
    >>> log_ticks(1.0, 1.0)  # a constant curve still gets a range around it
    [0.5, 1.0, 2.0]
    """
    k_lo, k_hi = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    nice = [round(m * 10.0 ** k, 12) for k in range(k_lo - 1, k_hi + 2) for m in (1, 2, 5)]
    bottom = max(v for v in nice if v <= lo * (1 + 1e-9))
    top = min(v for v in nice if v >= hi * (1 - 1e-9))
    if bottom == top:
        bottom, top = nice[nice.index(bottom) - 1], nice[nice.index(top) + 1]
    ticks = [v for v in nice if bottom <= v <= top]
    if len(ticks) > max_ticks:
        ticks = sorted({bottom, top} | {v for v in ticks if np.isclose(np.log10(v), round(np.log10(v)))})
    return ticks


def log_axis(ax, values) -> None:
    """Log y axis with plain-number tick labels at :func:`log_ticks`, limits snapped to the outer ticks."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    positive = [v for v in values if v > 0 and np.isfinite(v)]
    ax.set_yscale("log")
    if not positive:
        return
    ticks = log_ticks(min(positive), max(positive))
    ax.set_ylim(ticks[0], ticks[-1])
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.5, not 5 x 10^-1
    ax.yaxis.set_minor_formatter(NullFormatter())  # minor ticks stay as marks, unlabelled: no crowding


def plot_norm_sweep(summary: Sequence[dict], path: str | Path, mode: str = "norm", title: str = "") -> Path:
    """Feature change Diff(F) against the head norm (or multiplier) at the start of FT, mean ± std over seeds.

    Each method's unscaled norm (what FT starts from without rescaling) is a dashed vertical line in its colour; in
    multiplier mode it is the multiplier 1.
    """
    fig = new_figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    methods = list(dict.fromkeys(r["method"] for r in summary))
    for method in methods:
        rows = sorted((r for r in summary if r["method"] == method), key=lambda r: r["value"])
        color = METHOD_COLORS.get(method, "C7")
        ax.errorbar([r["value"] for r in rows], [r["diff_mean"] for r in rows], yerr=[r["diff_std"] for r in rows],
                    marker="o", capsize=3, color=color, label=method.upper())
        unscaled = rows[0]["unscaled_norm_mean"] if mode == "norm" else 1.0
        ax.axvline(unscaled, color=color, linestyle="--", linewidth=1,
                   label=f"{method.upper()} unscaled ({unscaled:.3g})")
    ax.set_xscale("log")
    ax.set(xlabel="head norm ||V||_F at the start of FT" if mode == "norm" else "head multiplier at the start of FT",
           ylabel="feature change Diff(F)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_png(fig, path)
