"""t-SNE figure: a small synthetic call writes a PNG; the embedding places head rows beside the features."""

from __future__ import annotations

import numpy as np

from lpft.analysis.tsne import TsnePanel, embed_with_head
from lpft.report.plots import plot_tsne


def clusters(seed, n=30, h=8, n_classes=3):
    rng = np.random.default_rng(seed)
    centers = 5.0 * rng.normal(size=(n_classes, h))
    y = np.arange(n) % n_classes
    return centers[y] + rng.normal(size=(n, h)), y, centers


def test_embed_with_head_shapes_and_determinism():
    F, _, centers = clusters(0)
    head = 0.01 * centers  # a tiny head: rescaled to the feature norm before embedding
    pts, heads = embed_with_head(F, head)
    assert pts.shape == (30, 2) and heads.shape == (3, 2)
    assert np.all(np.isfinite(pts)) and np.all(np.isfinite(heads))
    pts2, heads2 = embed_with_head(F, head)
    np.testing.assert_allclose(pts, pts2)
    np.testing.assert_allclose(heads, heads2)
    alone, none = embed_with_head(F, None)
    assert alone.shape == (30, 2) and none.shape == (0, 2)


def test_tsne_figure_writes_png(tmp_path):
    F, y, centers = clusters(1)
    F2, y2, _ = clusters(2, n=20, h=8, n_classes=2)
    panels = [
        ("pre-trained", F, y, centers, ["a", "b", "c"]),
        ("no head", F2, y2, None, ["neg", "pos"]),
    ]
    embedded = [TsnePanel(*embed_with_head(f, head), y_, names) for _, f, y_, head, names in panels]
    out = plot_tsne([p[0] for p in panels], embedded, tmp_path / "tsne.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["tsne.png"]
