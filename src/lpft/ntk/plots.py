"""Figures for eNTK analysis: normalised singular value spectra, and per-pair trace norms of P and F.

Uses ``matplotlib.figure.Figure`` directly (no pyplot state, no display needed); pass ``path`` to save.

Example::

    >>> import numpy as np
    >>> fig = plot_spectra({"FT": np.eye(6), "LoRA": np.diag([3.0, 2, 1, 1, 1, 1])})
    >>> fig = plot_pair_norms({"P": np.eye(6), "F": np.ones((6, 6))}, labels=[1, 0], num_labels=3)
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from .stats import singular_values


def normalized_spectrum(K: np.ndarray) -> np.ndarray:
    """Singular values divided by the largest (descending)."""
    s = singular_values(K)
    return s / s[0] if s.size and s[0] > 0 else s


def pair_trace_norms(K: np.ndarray, num_labels: int) -> np.ndarray:
    """(N_a, N_b) matrix of the trace (nuclear) norm of each C x C block ``K(x_i, x_j)``."""
    C = num_labels
    blocks = np.asarray(K, np.float64).reshape(K.shape[0] // C, C, K.shape[1] // C, C).transpose(0, 2, 1, 3)
    return np.linalg.svd(blocks, compute_uv=False).sum(-1)


def _save(fig, path):
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def plot_spectra(kernels: Mapping[str, np.ndarray], path: str | None = None, title: str | None = None):
    """All kernels' normalised singular value spectra on one log-scale plot (paper: FT vs LoRA FT-effective)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    for name, K in kernels.items():
        s = normalized_spectrum(K)
        ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, np.finfo(float).tiny), label=name)
    ax.set_xlabel("index")
    ax.set_ylabel("singular value / largest")
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def class_ticks(labels: Sequence[int] | np.ndarray, num_labels: int, label_names: Sequence[str] | None = None):
    """Where each class sits once samples are sorted by class: ``(boundaries, centres, tick labels, empty names)``.

    Classes without samples get no tick (they would all stack on one boundary); their names come back separately.

    >>> class_ticks([2, 0, 0, 2], 3, ["a", "b", "c"])
    ([1.5], [0.5, 2.5], ['a (2)', 'c (2)'], ['b'])
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_labels)
    names = list(label_names) if label_names is not None else [str(c) for c in range(num_labels)]
    ends = np.cumsum(counts)
    present = [c for c in range(num_labels) if counts[c] > 0]
    boundaries = [float(ends[c] - 0.5) for c in present[:-1]]
    centres = [float(ends[c] - counts[c] / 2 - 0.5) for c in present]
    return boundaries, centres, [f"{names[c]} ({counts[c]})" for c in present], [names[c] for c in range(num_labels)
                                                                              if counts[c] == 0]


def plot_pair_norms(kernels: Mapping[str, np.ndarray], labels: Sequence[int] | np.ndarray, num_labels: int,
                    path: str | None = None, label_names: Sequence[str] | None = None):
    """Heatmaps (one panel per kernel, e.g. P and F) of per-pair trace norms, samples grouped by class.

    Square train x train kernels; ``labels`` are the samples' classes. Lines mark class boundaries; tick labels give
    each class and its sample count (rotated, so that narrow classes do not run into each other), on the first
    panel's y axis only (every panel has the same order); classes without samples are named under the figure.
    """
    from matplotlib.figure import Figure

    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    bounds, centres, names, empty = class_ticks(labels, num_labels, label_names)
    # constrained layout keeps each colorbar clear of the next panel's tick labels
    fig = Figure(figsize=(4.6 * len(kernels), 4.4), layout="constrained")
    axes = fig.subplots(1, len(kernels), squeeze=False)[0]
    for i, (ax, (name, K)) in enumerate(zip(axes, kernels.items())):
        norms = pair_trace_norms(K, num_labels)[np.ix_(order, order)]
        im = ax.imshow(norms, cmap="viridis", interpolation="nearest")
        for b in bounds:
            ax.axhline(b, color="w", lw=0.6)
            ax.axvline(b, color="w", lw=0.6)
        ax.set_xticks(centres, names, rotation=90, fontsize="small")
        ax.set_yticks(centres, names if i == 0 else [], fontsize="small")
        ax.set_title(f"{name}: per-pair trace norm")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if empty:
        fig.supxlabel(f"no samples of: {', '.join(empty)}", fontsize="small")
    return _save(fig, path)
