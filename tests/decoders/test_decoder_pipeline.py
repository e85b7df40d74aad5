"""LP, FT, LP-FT, LoRA and LP-LoRA through ``runs.train`` on tiny saved GPT-2 and Llama models, the LP head against
scikit-learn, and the ``lpft ntk`` command (P / F split, Eq. 1 / Eq. 2 predictions) on a decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.linear_model import LogisticRegressionCV

from lpft.cli import main
from lpft.data.batching import encode
from lpft.methods.config import RunConfig
from lpft.methods.lp import _LP_KWARGS
from lpft.model import extract, load_tokenizer
from lpft.runs import RunRecord, load_task, train


def config(csv, model_dir, method, **kw):
    base = dict(task="files", train_file=str(csv), test_file=str(csv), model=str(model_dir), method=method,
                epochs=1, batch_size=8, lr=1e-3, max_length=16, log_every=2, lp_cs=3, lp_folds=2)
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["lp", "ft", "lp-ft", "lora", "lp-lora"])
def test_each_method_on_a_decoder(arch, method, polarity_csv, decoder_dirs, tmp_path):
    folder = train(config(polarity_csv, decoder_dirs[arch], method), out=tmp_path, cache_dir=None, device="cpu")
    rec = RunRecord(folder)
    assert rec.config.pooling == "last" and "accuracy" in rec.metrics["test"]
    logits, labels = rec.logits("test")
    assert logits.shape == (40, 2) and np.isfinite(logits).all()
    task = load_task(rec.config)
    enc = encode(load_tokenizer(rec.config.model), task.load("test"), rec.config.max_length)
    # the saved model reproduces the saved test logits (batches of mixed lengths: pooling skips the padding)
    _, again = extract(rec.classifier(), enc, batch_size=7, logits=True)
    np.testing.assert_allclose(again, logits, atol=1e-5)
    if rec.config.uses_lora:
        saved = json.loads((folder / "config.json").read_text())["config"]
        assert saved["lora_targets"] is None  # PEFT's mapping for the architecture
        names = list(rec.classifier().state_dict())
        target = "c_attn" if arch == "gpt2" else "q_proj"
        assert any(f"{target}.lora_A" in n for n in names)
    if method == "lp":
        # the LP head is scikit-learn's probe: softmax of the run's logits = predict_proba on the same features
        train_enc = encode(load_tokenizer(rec.config.model), task.load("train"), rec.config.max_length)
        phi_train = extract(rec.pretrained(), train_enc).astype(np.float64)
        phi_test = extract(rec.pretrained(), enc).astype(np.float64)
        probe = LogisticRegressionCV(Cs=3, cv=2, solver="lbfgs", max_iter=rec.config.lp_max_iter, **_LP_KWARGS)
        probe.fit(phi_train, train_enc.labels)
        np.testing.assert_allclose(softmax(logits, axis=1), probe.predict_proba(phi_test), atol=1e-6)


def test_mean_pooling_and_lora_targets_reach_the_run(polarity_csv, decoder_dirs, tmp_path):
    cfg = config(polarity_csv, decoder_dirs["llama"], "lora", pooling="mean", lora_targets="k_proj,o_proj")
    rec = RunRecord(train(cfg, out=tmp_path, cache_dir=None, device="cpu"))
    assert rec.config.pooling == "mean" and rec.classifier().pooling == "mean"
    names = [n for n in rec.classifier().state_dict() if "lora_A" in n]
    assert names and all(".k_proj." in n or ".o_proj." in n for n in names)


def test_ntk_command_on_a_decoder(polarity_csv, decoder_dirs, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["ntk", "--task", "files", "--train-file", str(polarity_csv), "--test-file", str(polarity_csv),
            "--model", str(decoder_dirs["llama"]), "--method", "lp-lora", "--lp-cs", "2", "--lp-folds", "2",
            "--max-length", "16", "--n-train", "8", "--n-test", "6", "--out", str(out), "--cache-dir", "none"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "FT ratio" in printed and "Eq. 1 prediction" in printed and "Eq. 2 prediction" in printed
    (folder,) = list((out / "files" / "ntk").iterdir())
    stats = json.loads((folder / "stats.json").read_text())
    assert set(stats["kernels"]) == {"P", "F", "P+F"} and stats["kernels"]["F"]["frobenius"] > 0
    assert 0 <= stats["ft_ratio"] <= 1 + 1e-6
    assert np.isfinite(stats["predict"]["test"]["cosine"]) and np.isfinite(stats["predict"]["features_test"]["cosine"])


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_export_loader_reproduces_a_decoder_run(padding_side, polarity_csv, decoder_dirs, tmp_path):
    """The exported README loader (plain transformers) gives lpft's probabilities for a decoder, whichever side its
    tokenizer pads: it must count positions over real tokens only, as lpft does."""
    import lpft

    # GPT-2: absolute position embeddings, so a left-padded batch with naive positions would give other features
    folder = train(config(polarity_csv, decoder_dirs["gpt2"], "ft"), out=tmp_path, cache_dir=None, device="cpu")
    assert main(["export", str(folder), str(tmp_path / "export")]) == 0
    code = (tmp_path / "export" / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert json.loads((tmp_path / "export" / "classifier.json").read_text())["decoder"] is True
    ns["tokenizer"].padding_side = padding_side
    texts = ["good", "bad awful poor item 3 bad awful poor item 5 bad", "great fine item 12"]
    expected = lpft.load_run(folder).predict_proba(texts)
    np.testing.assert_allclose(ns["predict_proba"](texts).numpy(), expected, atol=1e-5)
