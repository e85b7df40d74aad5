"""Oracle tests for linear probing: the head copied into the model reproduces scikit-learn's probabilities."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegressionCV

from lpft.config import ConfigError
from lpft.methods.lp import fit_linear_probe, set_head
from lpft.model import Classifier
from tiny_models import tiny_config


def _blobs(num_classes, n=120, h=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    centers = rng.normal(size=(num_classes, h)) * 1.5
    return centers[labels] + rng.normal(size=(n, h)), labels


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_copied_head_reproduces_sklearn_predict_proba(num_classes):
    feats, labels = _blobs(num_classes)
    weight, bias = fit_linear_probe(feats, labels, num_classes)
    oracle = LogisticRegressionCV(Cs=10, cv=5, solver="lbfgs", max_iter=5000).fit(feats, labels)
    clf = Classifier.from_config(tiny_config("bert"), num_classes).double().eval()
    set_head(clf, weight, bias)
    with torch.no_grad():
        probs = torch.softmax(clf.head(torch.from_numpy(feats)), dim=1).numpy()
    np.testing.assert_allclose(probs, oracle.predict_proba(feats), atol=1e-6, rtol=0)
    # and in float32, as the model trains
    clf.float()
    set_head(clf, weight, bias)
    with torch.no_grad():
        probs32 = torch.softmax(clf.head(torch.from_numpy(feats).float()), dim=1).double().numpy()
    np.testing.assert_allclose(probs32, oracle.predict_proba(feats), atol=1e-5, rtol=0)


def test_binary_head_is_the_minimum_norm_pair():
    feats, labels = _blobs(2)
    weight, bias = fit_linear_probe(feats, labels, 2)
    np.testing.assert_allclose(weight[0], -weight[1])
    np.testing.assert_allclose(bias[0], -bias[1])


def test_missing_class_is_a_clear_error():
    feats, labels = _blobs(3)
    with pytest.raises(ConfigError, match=r"label id\(s\) \[2\]"):
        fit_linear_probe(feats[labels < 2], labels[labels < 2], 3)


def test_probe_cache_is_keyed_by_labels_and_class_count(tmp_path):
    """Same texts (same features key), other labels or another class count: a fresh fit, never the cached head."""
    from lpft.methods.lp import linear_probe

    feats, labels = _blobs(3)
    first = linear_probe(feats, labels, 3, 10, 5, 5000, tmp_path, "same-texts")
    relabelled = (labels + 1) % 3
    again = linear_probe(feats, relabelled, 3, 10, 5, 5000, tmp_path, "same-texts")
    expected = fit_linear_probe(feats, relabelled, 3)
    np.testing.assert_allclose(again[0], expected[0])
    assert not np.allclose(again[0], first[0])
    binary = labels % 2
    two = linear_probe(feats, binary, 2, 10, 5, 5000, tmp_path, "same-texts")
    assert two[0].shape == (2, feats.shape[1])
    # and the cache does serve the original labels
    np.testing.assert_array_equal(linear_probe(feats, labels, 3, 10, 5, 5000, tmp_path, "same-texts")[0], first[0])
    assert len(list((tmp_path / "probes").glob("*.safetensors"))) == 3
