"""The whole training pipeline on a tiny model and a tiny user-file task: records, determinism, resume, reuse."""

import json

import numpy as np
import pytest
import torch

import lpft.methods.finetune as finetune_module
from lpft.methods.config import RunConfig
from lpft.runs import RunRecord, train
from tiny_models import umask_modes

WORDS = {"sport": "goal match team score", "tech": "chip software code phone", "food": "bread cheese soup salt"}


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    """A small learnable 3-class CSV task (class words + shared filler), train and test files."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("toy")
    for name, n in (("train.csv", 60), ("test.csv", 18)):
        lines = ["text,label"]
        for i in range(n):
            label = list(WORDS)[i % 3]
            words = WORDS[label].split() + ["the", "a", "today", "news"]
            lines.append(" ".join(rng.choice(words, size=6)) + f",{label}")
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def config(toy_files, model_dir, method="ft", **kw):
    base = dict(task="files", train_file=str(toy_files / "train.csv"), test_file=str(toy_files / "test.csv"),
                model=str(model_dir), method=method, epochs=2, batch_size=8, lr=1e-3, max_length=16, log_every=2)
    base.update(kw)
    return RunConfig(**base)


def run(cfg, out, **kw):
    return train(cfg, out=out, cache_dir=None, device="cpu", **kw)


@pytest.mark.parametrize("method", ["lp", "ft", "lp-ft", "lora", "lp-lora"])
def test_each_method_writes_a_complete_record(method, toy_files, tiny_model_dir, tmp_path):
    folder = run(config(toy_files, tiny_model_dir, method), tmp_path)
    rec = RunRecord(folder)
    assert set(rec.metrics) >= {"val", "test", "best_epoch"} and "accuracy" in rec.metrics["test"]
    assert json.loads((folder / "environment.json").read_text())["packages"]["torch"].startswith("2.13")
    logits, labels = rec.logits("test")
    assert logits.shape == (18, 3) and labels.shape == (18,)
    assert rec.config.method == method and not (folder / "state").exists()
    # every second of the run in one phase: the phases add up to the wall time metrics.json reports
    timing = json.loads((folder / "timing.json").read_text())
    assert timing["wall_seconds"] == rec.metrics["seconds"] and timing["resumed"] is False
    assert sum(timing["phases"].values()) == pytest.approx(timing["wall_seconds"], rel=1e-9)
    assert min(timing["phases"].values()) >= 0
    busy = {p for p, seconds in timing["phases"].items() if seconds > 0}
    assert {"tokenise", "model", "eval", "write"} <= busy
    assert (("features" in busy and "probe" in busy) == rec.config.uses_lp
            and ("forward_backward" in busy and "optimizer" in busy) == (method != "lp"))
    if method == "lp":
        assert rec.history == [] and rec.metrics["best_epoch"] == 0
    else:
        assert [h["epoch"] for h in rec.history] == [1, 2]
        assert {"train_loss", "validation", "head_weight_norm", "head_bias_norm", "mean_logit_norm"} <= set(
            rec.history[0])
        assert rec.steps and rec.steps[0]["step"] == 1
        # the saved model reproduces the saved test logits
        from lpft.data.batching import encode
        from lpft.model import extract, load_tokenizer
        from lpft.runs import load_task

        task = load_task(rec.config)
        enc = encode(load_tokenizer(rec.config.model), task.load("test"), rec.config.max_length)
        _, again = extract(rec.classifier(), enc, logits=True)
        np.testing.assert_allclose(again, logits, atol=1e-5)


def test_lp_ft_fine_tuning_starts_from_the_lp_head(toy_files, tiny_bert_dir, tmp_path):
    rec = RunRecord(run(config(toy_files, tiny_bert_dir, "lp-ft"), tmp_path))
    for lp, start in zip(rec.head("lp"), rec.head("start")):
        np.testing.assert_array_equal(lp.astype(np.float32), start)  # LP head is kept in float64
    assert not np.allclose(rec.head("init")[0], rec.head("lp")[0])
    ft = RunRecord(run(config(toy_files, tiny_bert_dir, "ft"), tmp_path))
    np.testing.assert_array_equal(ft.head("init")[0], ft.head("start")[0])  # FT starts from the seeded random head


def test_head_norm_rescaling(toy_files, tiny_bert_dir, tmp_path):
    rec = RunRecord(run(config(toy_files, tiny_bert_dir, "lp-ft", head_norm=5.0, epochs=1), tmp_path))
    assert np.linalg.norm(rec.head("start")[0]) == pytest.approx(5.0, rel=1e-5)


def test_same_seed_same_numbers(toy_files, tiny_bert_dir, tmp_path):
    a = RunRecord(run(config(toy_files, tiny_bert_dir, "lp-lora"), tmp_path / "a"))
    b = RunRecord(run(config(toy_files, tiny_bert_dir, "lp-lora"), tmp_path / "b"))
    np.testing.assert_array_equal(a.logits("test")[0], b.logits("test")[0])
    assert [s["loss"] for s in a.steps] == [s["loss"] for s in b.steps]
    c = RunRecord(run(config(toy_files, tiny_bert_dir, "lp-lora", seed=1), tmp_path / "c"))
    assert not np.array_equal(a.logits("test")[0], c.logits("test")[0])


def test_resume_equals_uninterrupted(toy_files, tiny_bert_dir, tmp_path, monkeypatch):
    cfg = config(toy_files, tiny_bert_dir, "ft", epochs=3, checkpoint_every=0)  # a checkpoint every epoch
    whole = RunRecord(run(cfg, tmp_path / "whole"))

    real_save = finetune_module._save_checkpoint

    def crash_after_epoch_2(clf, optimizer, scheduler, state_dir, result, epoch, *args):
        real_save(clf, optimizer, scheduler, state_dir, result, epoch, *args)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "_save_checkpoint", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "killed")
    monkeypatch.setattr(finetune_module, "_save_checkpoint", real_save)
    resumed = RunRecord(run(cfg, tmp_path / "killed"))

    np.testing.assert_array_equal(whole.logits("test")[0], resumed.logits("test")[0])
    strip = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert strip(whole.history) == strip(resumed.history)
    assert whole.steps == resumed.steps
    assert whole.metrics["test"] == resumed.metrics["test"]


def test_finished_run_is_reused_not_recomputed(toy_files, tiny_bert_dir, tmp_path, monkeypatch):
    cfg = config(toy_files, tiny_bert_dir, "ft", epochs=1)
    first = run(cfg, tmp_path)
    monkeypatch.setattr("lpft.runs.finetune", lambda *a, **k: pytest.fail("finished run was recomputed"))
    assert run(cfg, tmp_path) == first


def test_lora_at_initialisation_leaves_logits_unchanged(tiny_model_dir):
    from lpft.methods.lora import apply_lora
    from lpft.model import Classifier

    clf = Classifier.from_pretrained(str(tiny_model_dir), 3).eval()
    ids = torch.randint(5, 1000, (4, 9))
    before = clf(input_ids=ids, attention_mask=torch.ones_like(ids))
    apply_lora(clf, r=8, alpha=8, seed=0)
    after = clf(input_ids=ids, attention_mask=torch.ones_like(ids))
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    trainable = [n for n, p in clf.named_parameters() if p.requires_grad]
    assert all("lora_" in n for n in trainable if n.startswith("backbone."))
    assert {"head.weight", "head.bias"} <= set(trainable)
    assert any(".query." in n for n in trainable) and any(".value." in n for n in trainable)


def test_finished_run_with_changed_data_is_refused(toy_files, tiny_bert_dir, tmp_path):
    import shutil

    from lpft.config import ConfigError

    data = tmp_path / "data"
    shutil.copytree(toy_files, data)
    cfg = config(data, tiny_bert_dir, "lp")
    run(cfg, tmp_path / "runs")
    (data / "test.csv").write_text((data / "test.csv").read_text().replace("sport", "tech", 1))
    with pytest.raises(ConfigError, match="different test data"):
        run(cfg, tmp_path / "runs")


def test_written_files_follow_the_umask(toy_files, tiny_bert_dir, tmp_path):
    """Every file of a run folder, .safetensors included (safetensors' writer recreates the file 0600)."""
    folder = run(config(toy_files, tiny_bert_dir, "lp-ft", epochs=1), tmp_path)
    assert (folder / "metrics.json").stat().st_mode & 0o044 == 0o044
    assert list(folder.rglob("*.safetensors"))
    assert umask_modes(folder) == {}


def test_validation_subset_cuts_validation_only(toy_files, tiny_bert_dir, tmp_path):
    rec = RunRecord(run(config(toy_files, tiny_bert_dir, "ft", epochs=1, validation_subset=3, eval_subset=9),
                        tmp_path))
    assert {s: info["size"] for s, info in rec.data["splits"].items()} == {"train": 54, "validation": 3, "test": 9}
    assert rec.logits("validation")[0].shape[0] == 3 and rec.logits("test")[0].shape[0] == 9
    assert rec.config.split_limit("train") is None and rec.config.split_limit("test") == 9


def test_new_options_at_their_defaults_keep_old_run_keys():
    # the README quick start's folder (0.1 / 0.2): an option added later must not move finished runs
    assert RunConfig().resolved().run_key() == "15eeded438"
    assert RunConfig(validation_subset=5).resolved().run_key() != "15eeded438"


def test_last_epoch_test_features_are_saved(toy_files, tiny_bert_dir, tmp_path):
    from lpft.analysis.run_features import run_features, run_split
    from lpft.runs import LAST_EPOCH_FEATURES

    rec = RunRecord(run(config(toy_files, tiny_bert_dir, "lp-ft", epochs=1), tmp_path))
    last = np.load(rec.path / LAST_EPOCH_FEATURES)
    # one epoch: the last epoch is the best, so the file equals the trained model's test features
    trained = run_features(rec, run_split(rec, "test"), "trained")
    assert last.shape == trained.shape == (18, 32)
    np.testing.assert_allclose(last, trained, atol=1e-5)
    lp = RunRecord(run(config(toy_files, tiny_bert_dir, "lp"), tmp_path))
    assert not (lp.path / LAST_EPOCH_FEATURES).exists()
