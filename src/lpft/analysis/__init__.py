"""Analysis of trained classifiers on NumPy arrays: feature statistics, calibration and t-SNE figures."""

from lpft.analysis.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    nll,
    reliability_bins,
    reliability_diagram,
)
from lpft.analysis.features import (
    cosine_similarity_mean,
    feature_difference,
    feature_statistics,
    fisher_discriminant_ratio,
    head_norms,
)
from lpft.analysis.tsne import embed_with_head, tsne_figure

__all__ = [
    "calibration_report", "cosine_similarity_mean", "embed_with_head", "expected_calibration_error",
    "feature_difference", "feature_statistics", "fisher_discriminant_ratio", "fit_temperature", "head_norms",
    "maximum_calibration_error", "nll", "reliability_bins", "reliability_diagram", "tsne_figure",
]
