"""Figure plumbing shared by every lpft figure: an Agg-only figure and an atomic PNG write."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import atomic_path


def new_figure(**kwargs) -> Figure:
    """A figure bound to the Agg canvas. Pyplot is never touched, so no global backend or window state is involved."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically: a temp file in the same folder, then ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves any previous file in place.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    return path
