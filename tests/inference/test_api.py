"""The Python API: lpft.load_run / lpft.train; oracle = the logits each run saved at training time."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from infer_data import run_config
from scipy.special import softmax

import lpft
from lpft.analysis.calibration import fit_temperature
from lpft.inference import predictor as predictor_module
from lpft.runs import RunRecord, train


def file_texts(files, name="test.csv", pairs=False):
    rows = list(csv.DictReader(open(files / name)))
    return [(r["text"], r["other"]) for r in rows] if pairs else [r["text"] for r in rows]


@pytest.mark.parametrize("method", ["ft", "lora", "lp"])
def test_load_run_reproduces_the_saved_test_predictions(infer_runs, infer_files, method):
    run = lpft.load_run(infer_runs[method], device="cpu")
    record = RunRecord(infer_runs[method])
    z, _ = record.logits("test")
    texts = file_texts(infer_files)
    np.testing.assert_allclose(run.predict_proba(texts), softmax(z, axis=1), atol=1e-6)
    temperature = fit_temperature(*record.logits("validation"))
    assert run.temperature == temperature
    np.testing.assert_allclose(run.predict_proba(texts, calibrated=True), softmax(z / temperature, axis=1), atol=1e-6)
    assert run.predict(texts) == [record.data["labels"][i] for i in z.argmax(1)]
    assert run.config == record.config and run.metrics == record.metrics and list(run.labels) == record.data["labels"]
    feats = run.features(texts)
    assert feats.shape == (len(texts), 32) and feats.dtype == np.float32
    weight, bias = record.head("lp" if method == "lp" else "ft")
    np.testing.assert_allclose(feats.astype(np.float64) @ weight.T + bias, z, atol=1e-5)


def test_pairs_and_small_chunks_keep_input_order(infer_runs, infer_files, monkeypatch):
    """Sentence pairs as tuples; chunks of 2 batches of 2 give the same numbers as one chunk, in input order."""
    z, _ = RunRecord(infer_runs["pairs"]).logits("test")
    texts = file_texts(infer_files, "pairs-test.csv", pairs=True)
    monkeypatch.setattr(predictor_module, "CHUNK_BATCHES", 2)
    run = lpft.load_run(infer_runs["pairs"], device="cpu", batch_size=2)
    order = np.random.default_rng(1).permutation(len(texts))
    np.testing.assert_allclose(run.logits([texts[i] for i in order]), z[order], atol=1e-5)
    assert run.predict_proba([]).shape == (0, 3)


def test_bad_inputs(infer_runs, tmp_path):
    run = lpft.load_run(infer_runs["ft"], device="cpu")
    with pytest.raises(TypeError, match="wrap it in a list"):
        run.predict("one text")
    with pytest.raises(TypeError, match="text 1"):
        run.predict(["fine", 3])
    with pytest.raises(FileNotFoundError, match="not a finished run folder"):
        lpft.load_run(tmp_path)


def test_train_returns_the_run_of_lpft_train(infer_files, tiny_bert_dir, tmp_path):
    options = dict(task="files", train_file=str(infer_files / "train.csv"), test_file=str(infer_files / "test.csv"),
                   model=str(tiny_bert_dir), method="lp", max_length=16)
    run = lpft.train(out=tmp_path / "runs", cache_dir=None, device="cpu", **options)
    assert run.path == train(run_config(infer_files, tiny_bert_dir, "lp", epochs=None, batch_size=None, lr=None,
                                        log_every=10), out=tmp_path / "runs", cache_dir=None)
    assert run.config.method == "lp" and run.metrics["test"]["accuracy"] >= 0
    with pytest.raises(TypeError, match="unknown option 'epoch'"):
        lpft.train(out=tmp_path / "runs", epoch=3, **options)
