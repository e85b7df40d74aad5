"""t-SNE of features together with the classifier head's class vectors (the paper's feature visualisations)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lpft.analysis._figures import new_figure, save_png
from lpft.analysis.features import as_float64

RANDOM_STATE = 0


def embed_with_head(features, head_weight=None, random_state: int = RANDOM_STATE) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE of the N features and the C head rows together: returns (feature points (N, 2), head points (C, 2)).

    Head rows live on a different scale from features (in the paper's Table 1 an LP head's norm is 25-40x a fresh
    one's), so each row v_k is rescaled to the mean feature norm, v_k * mean_i ||phi_i|| / ||v_k||, before embedding:
    only its direction is shown. Perplexity is min(30, (n - 1) / 3) for n embedded points (sklearn needs
    perplexity < n); the layout is fixed by ``random_state`` and PCA initialisation.
    """
    F = as_float64(features, "features")
    points = [F]
    if head_weight is not None:
        V = as_float64(head_weight, "head weight")
        if V.ndim != 2 or V.shape[1] != F.shape[1]:
            raise ValueError(f"head weight must be (C, {F.shape[1]}), got {V.shape}")
        row_norms = np.linalg.norm(V, axis=1, keepdims=True)
        points.append(V * np.linalg.norm(F, axis=1).mean() / np.where(row_norms > 0, row_norms, 1.0))
    X = np.concatenate(points)
    if len(X) < 4:
        raise ValueError("t-SNE needs at least 4 points")
    # imported here, not at the top: sklearn adds ~2 s to importing lpft.analysis
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(n_components=2, perplexity=min(30.0, (len(X) - 1) / 3), init="pca", random_state=random_state)
    # one OpenMP thread: TSNE's spin-waiting threads collapse when the cores are shared (measured on 2 busy cores:
    # 33 points 13 s -> 0.2 s, 1500 x 768 features 52 s -> 13 s); figure-sized inputs need no more
    with threadpool_limits(limits=1, user_api="openmp"):
        Y = tsne.fit_transform(X)
    return Y[: len(F)], Y[len(F):]


@dataclass
class TsnePanel:
    """One t-SNE panel, embedded: sample points (N, 2) and head-row points (C, 2) from :func:`embed_with_head`.

    ``method`` is the fine-tuning method whose features these are (``None``: the pre-trained features); ``head``
    says whose head rows are shown (``"LP"``, ``"initial"`` or ``"final"``).
    """

    points: np.ndarray
    head_points: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    method: str | None = None
    head: str = "final"


def tsne_figure(panels: Sequence[tuple], path, random_state: int = RANDOM_STATE):
    """Embed and draw: a PNG with one t-SNE subplot per panel; returns the path.

    Each panel is (title, features (N, h), labels (N,), head_weight (C, h) or None, label_names). Each panel is
    embedded on its own (t-SNE coordinates are not comparable across panels); see :func:`draw_tsne`.
    """
    if not panels:
        raise ValueError("no panels")
    embedded = []
    for _, features, labels, head_weight, label_names in panels:
        pts, heads = embed_with_head(features, head_weight, random_state)
        embedded.append(TsnePanel(pts, heads, np.asarray(labels), list(label_names)))
    return draw_tsne([p[0] for p in panels], embedded, path)


def draw_tsne(titles: Sequence[str], panels: Sequence[TsnePanel], path):
    """Write a PNG with one subplot per embedded panel (atomically); returns the path.

    Points are coloured by class; head rows are star markers in their class's colour (row k is class k).
    """
    if not panels:
        raise ValueError("no panels")
    fig = new_figure(figsize=(4.5 * len(panels), 4.5))
    colors = [f"C{i % 10}" for i in range(max(len(p.label_names) for p in panels))]
    for i, (title, panel) in enumerate(zip(titles, panels)):
        ax = fig.add_subplot(1, len(panels), i + 1)
        pts, heads, y = panel.points, panel.head_points, np.asarray(panel.labels)
        for c, name in enumerate(panel.label_names):  # points above the stars: a head row can sit on its own cluster
            ax.scatter(*pts[y == c].T, s=8, color=colors[c], alpha=0.7, label=str(name), zorder=3)
        for c, (hx, hy) in enumerate(heads):
            ax.scatter(hx, hy, s=250, marker="*", color=colors[c], edgecolor="black", linewidth=1, alpha=0.6,
                       label="head rows" if c == 0 else None, zorder=2)
        ax.set(title=title, xticks=[], yticks=[])
        ax.legend(fontsize="small", markerscale=0.8)
    return save_png(fig, path)
