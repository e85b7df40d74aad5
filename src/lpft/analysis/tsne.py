"""t-SNE of features together with the classifier head's class vectors (the paper's feature visualisations).

This module embeds; :func:`lpft.report.plots.plot_tsne` draws the embedded :class:`TsnePanel` objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
