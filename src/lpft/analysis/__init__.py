"""Analysis of trained classifiers on NumPy arrays: feature statistics, calibration and t-SNE embeddings (their
figures are drawn by :mod:`lpft.report.plots`)."""

from lpft.analysis.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    nll,
    reliability_bins,
)
from lpft.analysis.features import (
    cosine_similarity_mean,
    feature_difference,
    feature_statistics,
    fisher_discriminant_ratio,
    head_norms,
)
from lpft.analysis.tsne import TsnePanel, embed_with_head

__all__ = [
    "calibration_report", "cosine_similarity_mean", "embed_with_head", "expected_calibration_error",
    "feature_difference", "feature_statistics", "fisher_discriminant_ratio", "fit_temperature", "head_norms",
    "maximum_calibration_error", "nll", "reliability_bins", "TsnePanel",
]
