"""Inference from finished run folders: :func:`load_run` → :class:`Predictor`, and :func:`export_run` to a plain
Hugging Face folder that works without lpft. Reads run folders only, like the analyses."""

from .export import export_run
from .predictor import Predictor, load_run

__all__ = ["Predictor", "load_run", "export_run"]
