"""Linear probing: scikit-learn's LogisticRegressionCV on frozen features, copied into the head.

Settings follow the paper: L2, ``Cs=10``, 5-fold, lbfgs, ``max_iter=5000``. Features of the pre-trained backbone
are cached on disk per (model, tokenised split) and the fitted probe per (features, LP settings), so LP, LP-FT and
LP-LoRA with the same data share one feature pass and one fit.

Binary tasks: scikit-learn keeps one coefficient row ``w`` with ``P(y=1) = sigmoid(w.x + b)``. We write the head
as the pair of rows ``(-w/2, w/2)`` (biases ``(-b/2, b/2)``): ``softmax`` of that pair is exactly
``(1 - sigmoid(z), sigmoid(z))``, and of all pairs that do so it has the smallest norm — the same
"rows sum to zero" form that the multinomial L2 solution takes for C > 2, so Norm(C) is comparable across tasks.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from tqdm.auto import tqdm

from .. import keys
from ..config import ConfigError
from ..data.batching import Encoded
from ..io import load_array, load_tensors, save_array, save_tensors
from ..locks import compute_once
from ..model import Classifier, extract, model_fingerprint
from ..workspace import default_cache_dir as default_cache_dir  # re-exported (defined in lpft.workspace)


def encoded_fingerprint(enc: Encoded) -> str:
    h = hashlib.sha256()
    for row in enc.input_ids:
        h.update(np.asarray(row, dtype=np.int32).tobytes() + b"|")
    if enc.token_type_ids is not None:
        for row in enc.token_type_ids:
            h.update(np.asarray(row, dtype=np.int8).tobytes() + b"|")
    return h.hexdigest()[:16]


def pretrained_features_key(clf: Classifier, model_name: str, enc: Encoded, precision: str = "fp32") -> str:
    """Cache key of pre-trained features (:func:`lpft.keys.features_key`): model files, tokenised split, pooling and
    precision."""
    return keys.features_key(model_fingerprint(model_name), encoded_fingerprint(enc), getattr(clf, "pooling", "first"),
                        precision)


def pretrained_features(clf: Classifier, model_name: str, enc: Encoded, cache_dir: Path | None,
                        batch_size: int = 64, desc: str = "features", precision: str = "fp32") -> np.ndarray:
    """phi0 for every example, from the cache if present. ``clf`` must hold the pre-trained backbone.

    Concurrent processes that need the same entry compute it once (the others wait for it, ``lpft.locks``).
    bf16 features are cached under their own name: they differ from fp32 ones in the low bits.
    """
    def compute() -> np.ndarray:
        return extract(clf, enc, batch_size, desc=desc, precision=precision)

    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / "features" / f"{pretrained_features_key(clf, model_name, enc, precision)}.npy"
    return compute_once(path, compute, load_array, save_array, what="pre-trained features")


# The paper's probe is pure L2 scored by accuracy (scikit-learn's old defaults). Newer scikit-learn changes those
# defaults with warnings, so pin them explicitly where the version knows the option; we read only coef_/intercept_.
_PAPER_SETTINGS = {"l1_ratios": (0.0,), "scoring": "accuracy", "use_legacy_attributes": False}
_LP_KWARGS = {k: v for k, v in _PAPER_SETTINGS.items() if k in inspect.signature(LogisticRegressionCV).parameters}


@contextmanager
def probe_progress(folds: int, cs: int, desc: str = "LP probe"):
    """A progress bar over the cross-validated fit: ``folds x cs`` fits, then the refit at the best C.

    scikit-learn has no progress callback, and on a few thousand examples the fit can take minutes. Its
    ``LogisticRegressionCV.fit`` calls the private ``sklearn.linear_model._logistic._logistic_regression_path``
    once per fold (over all Cs) and once for the refit, in this process when ``n_jobs`` is None (ours), so we wrap
    that function while the fit runs and count its Cs. Guarded: if a scikit-learn version lacks it, the fit runs
    unchanged and the bar just completes at the end. The wrapper is module-global for the duration of the fit, so
    a fit in another thread of this process would also count (lpft runs probes one at a time per process).
    """
    from sklearn.linear_model import _logistic

    bar = tqdm(total=folds * cs + 1, desc=f"{desc} ({folds} folds x {cs} Cs)", unit="fit", leave=False)
    original = getattr(_logistic, "_logistic_regression_path", None)

    def counted(*args, **kwargs):
        result = original(*args, **kwargs)
        grid = kwargs.get("Cs", 1)
        bar.update(min(grid if isinstance(grid, int) else len(grid), bar.total - bar.n))
        return result

    if callable(original):
        _logistic._logistic_regression_path = counted
    try:
        yield bar
        bar.update(bar.total - bar.n)
    finally:
        if callable(original):
            _logistic._logistic_regression_path = original
        bar.close()


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, num_labels: int, cs: int = 10, folds: int = 5,
                     max_iter: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Fit LogisticRegressionCV; return the head ``(W (C, h), b (C,))`` in float64 (see module docstring)."""
    from sklearn.exceptions import ConvergenceWarning

    present = np.unique(labels)
    if len(present) != num_labels:
        missing = sorted(set(range(num_labels)) - set(present.tolist()))
        raise ConfigError(f"linear probe needs training examples of every class; label id(s) {missing} have none "
                          "(use a larger --train-subset)")
    # stratified CV needs every class in every fold: fewer folds on tiny training sets (recorded in the config)
    folds = max(2, min(folds, int(np.bincount(labels).min())))
    probe = LogisticRegressionCV(Cs=cs, cv=folds, solver="lbfgs", max_iter=max_iter, **_LP_KWARGS)
    with warnings.catch_warnings(), probe_progress(folds, cs):
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(np.asarray(features, dtype=np.float64), labels)
    coef, intercept = probe.coef_.astype(np.float64), probe.intercept_.astype(np.float64)
    if coef.shape[0] == 1:  # binary: one row for class 1
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    return coef, intercept


def linear_probe(features: np.ndarray, labels: np.ndarray, num_labels: int, cs: int, folds: int, max_iter: int,
                 cache_dir: Path | None, features_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``fit_linear_probe`` with an on-disk cache keyed by the features (``features_key``: model and token ids),
    the labels and the class count (relabelled data with the same texts gets its own probe) and the LP settings
    (computed once across concurrent processes)."""
    def fit():
        return fit_linear_probe(features, labels, num_labels, cs, folds, max_iter)

    if cache_dir is None:
        return fit()
    targets = hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes() + f"|{num_labels}".encode())
    name = keys.probe_cache_name(features_key, targets.hexdigest()[:12], cs, folds, max_iter)
    path = Path(cache_dir) / "probes" / name

    def load(p):
        saved = load_tensors(p)
        return saved["weight"].numpy(), saved["bias"].numpy()

    def save(p, head):
        save_tensors(p, {"weight": torch.from_numpy(head[0]), "bias": torch.from_numpy(head[1])})

    return compute_once(path, fit, load, save, what="the linear probe")


def set_head(clf: Classifier, weight: np.ndarray, bias: np.ndarray) -> None:
    """Copy a (C, h) weight and (C,) bias into ``clf.head`` (in the head's dtype)."""
    with torch.no_grad():
        clf.head.weight.copy_(torch.as_tensor(weight, dtype=clf.head.weight.dtype))
        clf.head.bias.copy_(torch.as_tensor(bias, dtype=clf.head.bias.dtype))
