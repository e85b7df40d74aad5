"""Each of the five methods end to end on real CB data with the embedded all-MiniLM-L6-v2 (short: 1 epoch, subset)."""

import numpy as np
import pytest

from lpft.methods.config import METHODS, RunConfig
from lpft.model import DEFAULT_MODEL
from lpft.runs import RunRecord, train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("cb-runs")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cb-cache")


@pytest.mark.parametrize("method", METHODS)
def test_method_on_cb(method, shared_data, out, cache):
    cfg = RunConfig(task="cb", method=method, model=DEFAULT_MODEL, epochs=1, train_subset=48, eval_subset=24,
                    seed=1)
    rec = RunRecord(train(cfg, out=out, data_dir=str(shared_data), cache_dir=cache, device="cpu"))
    assert rec.data["splits"]["train"]["size"] == 48 and rec.data["splits"]["test"]["size"] == 24
    assert rec.data["labels"] == ["entailment", "contradiction", "neutral"]
    logits, labels = rec.logits("test")
    assert logits.shape == (24, 3) and np.isfinite(logits).all()
    # the reported accuracy is the saved logits' accuracy (an oracle, not a range check)
    assert rec.metrics["test"]["accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == labels)))
    val_logits, val_labels = rec.logits("validation")
    assert rec.metrics["val"]["accuracy"] == pytest.approx(float(np.mean(val_logits.argmax(1) == val_labels)))
    resolved = cfg.resolved()
    assert (rec.config.batch_size, rec.config.lr) == (resolved.batch_size, resolved.lr)
    if method in ("lp-ft", "lp-lora"):  # the FT stage starts from the probe's head
        np.testing.assert_allclose(rec.head("start")[0], rec.head("lp")[0], rtol=1e-6)
    if method != "lp":
        assert len(rec.history) == 1


def test_lp_shared_across_lp_methods(shared_data, out, cache):
    """LP, LP-FT and LP-LoRA with the same data use the one cached probe: identical LP heads."""
    heads = []
    for method in ("lp", "lp-ft", "lp-lora"):
        cfg = RunConfig(task="cb", method=method, epochs=1, train_subset=48, eval_subset=24, seed=1)
        heads.append(RunRecord(train(cfg, out=out, data_dir=str(shared_data), cache_dir=cache)).head("lp")[0])
    np.testing.assert_array_equal(heads[0], heads[1])
    np.testing.assert_array_equal(heads[0], heads[2])
