"""Features of run folders: they are what the head reads, are cached in the run folder, and match the run's data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from toy_runs import toy_config, write_toy_csv

import lpft.analysis.run_features as rf
from lpft.analysis.features import feature_difference
from lpft.analysis.run_features import head_logits, run_features, run_split, table1_statistics
from lpft.data import DataError
from lpft.model import Classifier, extract
from lpft.runs import RunRecord, train


@pytest.mark.parametrize("method", ["ft", "lora", "lp-ft"])
def test_trained_features_reproduce_the_saved_test_logits(method, toy_runs):
    record = toy_runs[method]
    test = run_split(record, "test")
    logits, labels = record.logits("test")
    np.testing.assert_array_equal(test.labels, labels)
    np.testing.assert_allclose(head_logits(record, run_features(record, test)), logits, atol=1e-4)


def test_pretrained_features_are_the_pretrained_backbones(toy_runs, tiny_bert_dir):
    record = toy_runs["ft"]
    test = run_split(record, "test")
    fresh = extract(Classifier.from_pretrained(str(tiny_bert_dir), 3), test.encoded)
    np.testing.assert_allclose(run_features(record, test, "pretrained"), fresh, atol=1e-6)
    assert feature_difference(run_features(record, test), fresh) > 0  # fine-tuning moved them


def test_features_are_cached_in_the_run_folder(toy_runs, monkeypatch):
    record = toy_runs["lora"]
    test = run_split(record, "test")
    first = run_features(record, test)
    assert len(list((record.path / "features").glob("trained-test-*.npy"))) == 1
    monkeypatch.setattr(rf, "extract", lambda *a, **k: pytest.fail("cached features were recomputed"))
    np.testing.assert_array_equal(run_features(record, test), first)


def test_lp_features_are_the_pretrained_ones_and_table1(toy_runs):
    lp, ft = toy_runs["lp"], toy_runs["ft"]
    test = run_split(lp, "test")
    np.testing.assert_array_equal(run_features(lp, test), run_features(lp, test, "pretrained"))
    stats_lp = table1_statistics(lp, test)
    assert stats_lp["diff"] == 0.0 and stats_lp["cs"] == stats_lp["pretrained_cs"]
    assert stats_lp["norm_weight"] == pytest.approx(np.linalg.norm(lp.head("lp")[0]))
    stats_ft = table1_statistics(ft, run_split(ft, "test"))
    assert stats_ft["diff"] > 0
    assert stats_ft["norm_weight"] == pytest.approx(np.linalg.norm(ft.head("ft")[0]))
    assert stats_ft["norm_bias"] == pytest.approx(np.linalg.norm(ft.head("ft")[1]))
    assert stats_ft["pretrained_norm_weight"] == pytest.approx(np.linalg.norm(ft.head("init")[0]))
    assert stats_ft["pretrained_fdr"] == pytest.approx(stats_lp["pretrained_fdr"])  # same phi0, same split


def test_changed_data_is_refused(toy_files, tiny_bert_dir, tmp_path):
    for name in ("train.csv", "test.csv"):
        shutil.copy(toy_files / name, tmp_path / name)
    cfg = toy_config(tmp_path, tiny_bert_dir, "lp")
    record = RunRecord(train(cfg, out=tmp_path / "runs", cache_dir=None, device="cpu"))
    assert len(run_split(record, "test").labels) == 18
    write_toy_csv(tmp_path / "test.csv", 18, seed=99)  # same size, other texts
    with pytest.raises(DataError, match="differs from what run"):
        run_split(record, "test")


def test_unknown_stage_is_an_error(toy_runs):
    with pytest.raises(ValueError, match="unknown feature stage"):
        run_features(toy_runs["ft"], run_split(toy_runs["ft"], "test"), "finetuned")


def test_replaced_checkpoint_is_never_served_stale_features(toy_runs, tmp_path):
    """The feature cache is keyed by the weights: a changed model.safetensors gives the new model's features."""
    from lpft.io import load_tensors, save_tensors

    folder = tmp_path / "run"
    shutil.copytree(toy_runs["ft"].path, folder)
    record = RunRecord(folder)
    test = run_split(record, "test")
    before = run_features(record, test)
    stats_before = table1_statistics(record, test)
    state = load_tensors(folder / "model.safetensors")
    save_tensors(folder / "model.safetensors", {k: v * 1.5 if "layer.1." in k else v for k, v in state.items()})
    after = run_features(record, test)
    np.testing.assert_allclose(after, extract(record.classifier(), test.encoded), atol=1e-6)
    assert not np.allclose(after, before, atol=1e-3)
    assert table1_statistics(record, test)["diff"] != pytest.approx(stats_before["diff"])
    assert len(list((folder / "features").glob("trained-test-*.npy"))) == 2
