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
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 6, not 6 x 10^0
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set(xlabel="optimisation step", ylabel=name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


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
