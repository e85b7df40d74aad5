"""The report's figures: head-norm dynamics (paper Figure 1), the norm sweep (paper Figure 3), t-SNE panels
(Figures 5-6) and reliability diagrams (Table 3), each drawn from numbers the analysis computed.

Every figure is drawn on an Agg canvas (no pyplot state) and written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.ticker import FormatStrFormatter

from ..analysis.calibration import N_BINS, expected_calibration_error, maximum_calibration_error, reliability_bins
from ..analysis.tsne import TsnePanel
from .figures import new_figure, save_png

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


def plot_tsne(titles: Sequence[str], panels: Sequence[TsnePanel], path) -> Path:
    """Write a PNG with one subplot per embedded panel (:func:`lpft.analysis.tsne.embed_with_head`'s points),
    atomically; returns the path.

    Points are coloured by class; head rows are star markers in their class's colour (row k is class k). Each panel
    was embedded on its own: coordinates are not comparable across panels.
    """
    if not panels:
        raise ValueError("no panels")
    fig = new_figure(figsize=(4.5 * len(panels), 4.5))
    colors = [f"C{i % 10}" for i in range(max(len(p.label_names) for p in panels))]
    for i, (title, panel) in enumerate(zip(titles, panels)):
        ax = fig.add_subplot(1, len(panels), i + 1)
        pts, heads, y = panel.points, panel.head_points, np.asarray(panel.labels)
        for c, name in enumerate(panel.label_names):  # points above the stars: a head row can sit on its own cluster
            xs, ys = pts[y == c].T
            ax.scatter(xs, ys, s=8, color=colors[c], alpha=0.7, label=str(name), zorder=3)
        for c, (hx, hy) in enumerate(heads):
            ax.scatter(hx, hy, s=250, marker="*", color=colors[c], edgecolor="black", linewidth=1, alpha=0.6,
                       label="head rows" if c == 0 else None, zorder=2)
        ax.set(title=title, xticks=[], yticks=[])
        ax.legend(fontsize="small", markerscale=0.8)
    return save_png(fig, path)


def reliability_diagram(probs_before, probs_after, labels, path, title: str = "", n_bins: int = N_BINS) -> Path:
    """Write :func:`reliability_figure` as a PNG, atomically; returns the path."""
    return save_png(reliability_figure(probs_before, probs_after, labels, title, n_bins), path)


def reliability_figure(probs_before, probs_after, labels, title: str = "", n_bins: int = N_BINS):
    """A reliability diagram: per-bin accuracy against confidence before and after scaling.

    Bars sit side by side in each bin (empty bins draw nothing), each labelled with its number of examples, so that a
    large calibration error from a bin of two examples shows as such; the dashed diagonal is perfect calibration.
    The legend, under the axes where it covers no bar, gives each ECE and MCE in percent.
    """
    fig = new_figure(figsize=(5, 5.8), layout="constrained")
    ax = fig.add_subplot()
    width = 1.0 / n_bins
    left = np.arange(n_bins) * width
    for shift, probs, name, color in ((0.0, probs_before, "before TS", "tab:red"),
                                      (0.5, probs_after, "after TS", "tab:blue")):
        counts, acc, _ = reliability_bins(probs, labels, n_bins)
        ece = expected_calibration_error(probs, labels, n_bins)
        mce = maximum_calibration_error(probs, labels, n_bins)
        keep = counts > 0
        bars = ax.bar(left[keep] + shift * width, acc[keep], width=width / 2, align="edge", color=color, alpha=0.8,
                      edgecolor="black", linewidth=0.5, label=f"{name} (ECE {100 * ece:.2f}%, MCE {100 * mce:.2f}%)")
        ax.bar_label(bars, labels=[str(int(n)) for n in counts[keep]], padding=1, fontsize=6, color=color,
                     rotation=90 if counts.max() >= 100 else 0)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="confidence (numbers: examples per bar)", ylabel="accuracy",
           title=title)
    ax.set_yticks(np.linspace(0, 1, 6))
    fig.legend(loc="outside lower center", ncols=1, fontsize="small", frameon=False)
    return fig
