"""Figures read as intended: nothing overlaps, every bar shows its count, every log axis labels its data range."""

import numpy as np
import pytest
from scipy.special import softmax

from lpft.analysis.calibration import reliability_bins
from lpft.ntk.plots import class_ticks, plot_pair_norms
from lpft.report.figures import new_figure
from lpft.report.plots import log_axis, log_ticks, reliability_figure


def drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def visible_tick_labels(axis, renderer):
    return [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]


NAMES = ["entailment", "contradiction", "neutral"]
PAIR_CASES = [  # (case, labels): CB-like with a rare class, an empty class, a one-sample class
    ("cb", [0] * 12 + [1] * 10 + [2] * 3),
    ("empty class", [0] * 12 + [1] * 10),
    ("one sample", [0] * 20 + [1] * 1 + [2] * 1),
]


@pytest.mark.parametrize("case,labels", PAIR_CASES, ids=[c for c, _ in PAIR_CASES])
def test_pair_norms_labels_do_not_collide(case, labels):
    rng = np.random.default_rng(0)
    N, C = len(labels), 3
    A = rng.normal(size=(N * C, 10))
    fig = plot_pair_norms({"P": np.eye(N * C), "F": A @ A.T}, labels, C, label_names=NAMES)
    renderer = drawn(fig)
    left, right, left_bar, right_bar = fig.axes
    present = [NAMES[c] for c in range(C) if c in labels]
    for ax in (left, right):
        xlabels = visible_tick_labels(ax.xaxis, renderer)
        assert [t.get_text().rsplit(" (", 1)[0] for t in xlabels] == present  # an empty class gets no tick
        boxes = [t.get_window_extent(renderer) for t in xlabels]
        assert not any(boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert [t.get_text() for t in visible_tick_labels(left.yaxis, renderer)] == [
        t.get_text() for t in visible_tick_labels(left.xaxis, renderer)]
    assert not visible_tick_labels(right.yaxis, renderer)  # same order as the left panel: no repeated labels
    # the left colorbar (with its tick labels) stays clear of the right panel (with its tick labels)
    assert not boxes_overlap(left_bar.get_tightbbox(renderer), right.get_tightbbox(renderer))
    texts = " ".join(t.get_text() for t in fig.texts)
    assert ("no samples of: neutral" in texts) == (case == "empty class")


def test_class_ticks_counts_and_skips_empty_classes():
    assert class_ticks([1, 1, 0, 1], 3) == ([0.5], [0.0, 2.0], ["0 (1)", "1 (3)"], ["2"])


def calibration_case(n, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 3
    y = rng.integers(0, 3, n)
    return softmax(z, axis=1), softmax(z / 2.5, axis=1), y


@pytest.mark.parametrize("n", [2, 56, 600])
def test_reliability_bars_show_counts_and_the_legend_covers_none(n):
    before, after, y = calibration_case(n, n)
    fig = reliability_figure(before, after, y, title="t")
    renderer = drawn(fig)
    ax = fig.axes[0]
    expected = [str(int(c)) for probs in (before, after) for c in reliability_bins(probs, y)[0] if c > 0]
    count_texts = [t.get_text() for t in ax.texts]
    assert count_texts == expected and sum(map(int, count_texts)) == 2 * n
    legend = fig.legends[0].get_window_extent(renderer)
    assert not boxes_overlap(legend, ax.get_window_extent(renderer))
    assert sum("MCE" in t.get_text() for t in fig.legends[0].get_texts()) == 2


LOG_CASES = [(0.33, 1.8), (0.33, 1.02), (0.2, 41.0), (0.951, 24.8), (1.0, 1.0), (0.3, 0.35), (2e-3, 7e3)]


@pytest.mark.parametrize("lo,hi", LOG_CASES, ids=[f"{lo:g}-{hi:g}" for lo, hi in LOG_CASES])
def test_log_axis_labels_a_tick_beyond_each_end_of_the_data(lo, hi):
    ticks = log_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and ticks[0] < ticks[-1] and len(ticks) <= 11
    assert all(np.isclose(t / 10 ** np.floor(np.log10(t)), (1, 2, 5)).any() for t in ticks)
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([1, 2, 3], [lo, (lo * hi) ** 0.5, hi])
    log_axis(ax, [lo, hi])
    renderer = drawn(fig)
    shown = [float(t.get_text()) for t in visible_tick_labels(ax.yaxis, renderer)]
    assert min(shown) <= lo and max(shown) >= hi
    boxes = [t.get_window_extent(renderer) for t in visible_tick_labels(ax.yaxis, renderer)]
    assert not any(boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
