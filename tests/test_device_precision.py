"""One device rule (``lpft.model.resolve_device``, ``--device`` checked up front) and ``--precision fp32|bf16``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lpft.cli import main
from lpft.config import ConfigError
from lpft.data.batching import encode
from lpft.methods.config import RunConfig
from lpft.model import Classifier, autocast, extract, load_tokenizer, resolve_device
from lpft.runs import RunRecord, train
from tiny_models import tiny_config

CPU_ONLY = not torch.cuda.is_available()


def test_unset_device_follows_the_rule():
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu" and resolve_device(" cpu ") == "cpu"


@pytest.mark.parametrize("device,message", [
    ("foo", "--device 'foo' is not a torch device: expected cpu, cuda, cuda:N or mps"),
    ("meta", "--device 'meta': lpft runs on cpu, cuda, cuda:N or mps, not meta"),
    ("cuda:x", "--device 'cuda:x' is not a torch device"),
])
def test_bad_device_names_are_config_errors(device, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_device(device)


@pytest.mark.skipif(not CPU_ONLY, reason="checks the CPU-only build's message")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_on_a_cpu_only_build_is_a_config_error(device):
    with pytest.raises(ConfigError, match="CPU-only build"):
        resolve_device(device)


COMMANDS = {
    "train": ["train", "--task", "cb"],
    "compare": ["compare", "--task", "cb"],
    "norm-sweep": ["norm-sweep", "--task", "cb"],
    "ntk": ["ntk", "--task", "cb"],
    "evaluate": ["evaluate", "no-such-run", "--ood", "cola-ood"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("device", ["foo"] + (["cuda"] if CPU_ONLY else []))
def test_every_command_checks_device_before_any_work(command, device, tmp_path, capsys):
    args = COMMANDS[command] + ["--device", device]
    args += ["--out", str(tmp_path / "runs")] if command != "evaluate" else ["--report", str(tmp_path / "runs")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lpft: error: --device '{device}'"), err
    assert not (tmp_path / "runs").exists()


def test_precision_option_is_checked_and_keyed():
    with pytest.raises(ConfigError, match="--precision 'fp16' is unknown: expected one of fp32, bf16"):
        RunConfig(precision="fp16").resolved()
    fp32, bf16 = RunConfig().resolved(), RunConfig(precision="BF16").resolved()
    assert bf16.precision == "bf16" and bf16.run_key() != fp32.run_key()
    # fp32 runs keep the keys they had before the option existed (as do default pooling / LoRA targets)
    from lpft.methods.config import LEGACY_PROTOCOL  # (these leave the key at their legacy values)

    fields = {k: v for k, v in json.loads(json.dumps(fp32.__dict__)).items()
              if k not in ("log_every", "eval_batch_size", "checkpoint_every", "precision", "pooling", "lora_targets",
                           "validation_subset", "subset_order")
              and not (k in LEGACY_PROTOCOL and v == LEGACY_PROTOCOL[k])}
    import hashlib

    assert fp32.run_key() == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


@pytest.fixture(scope="module")
def tiny_classifier():
    torch.manual_seed(0)
    return Classifier.from_config(tiny_config("bert"), num_labels=3).eval()


def test_bf16_extraction_is_close_to_fp32_and_returns_float32(tiny_classifier):
    tok = load_tokenizer("all-MiniLM-L6-v2")
    from lpft.data.base import Example

    enc = encode(tok, [Example(f"sample number {i} with words", i % 3) for i in range(12)], 16)
    f32, z32 = extract(tiny_classifier, enc, 4, logits=True)
    f16, z16 = extract(tiny_classifier, enc, 4, logits=True, precision="bf16")
    assert f16.dtype == np.float32 and z16.dtype == np.float32
    assert not np.array_equal(z16, z32)  # autocast really ran in bfloat16
    scale = np.abs(z32).max()
    assert np.abs(z16 - z32).max() < 0.05 * scale + 1e-2
    assert np.abs(f16 - f32).max() < 0.05 * np.abs(f32).max()
    assert all(p.dtype == torch.float32 for p in tiny_classifier.parameters())  # weights stay fp32


def test_autocast_rejects_unknown_precision():
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        autocast("cpu", "fp8")


def test_bf16_run_end_to_end_on_cpu(polarity_csv, tiny_bert_dir, tmp_path):
    base = dict(task="files", train_file=str(polarity_csv), model=str(tiny_bert_dir), method="lp-ft", epochs=1,
                batch_size=8, lr=1e-4, max_length=16, lp_cs=2, lp_folds=2)
    cache = tmp_path / "cache"
    runs = {p: RunRecord(train(RunConfig(**base, precision=p), out=tmp_path / "runs", cache_dir=cache,
                               device="cpu")) for p in ("fp32", "bf16")}
    assert runs["fp32"].path != runs["bf16"].path and runs["bf16"].config.precision == "bf16"
    z32, y = runs["fp32"].logits("test")
    z16, _ = runs["bf16"].logits("test")
    assert z16.dtype == np.float32 and np.isfinite(z16).all()
    assert np.abs(z16 - z32).max() < 0.1 * np.abs(z32).max() + 0.05
    features = sorted(p.name for p in (cache / "features").glob("*.npy"))
    assert len(features) == 2 and sum(name.endswith("-bf16.npy") for name in features) == 1
    assert len(list((cache / "probes").glob("*-bf16-*.safetensors"))) == 1
    assert not list(cache.rglob("*.tmp"))


def test_entk_ignores_precision(polarity_csv, tiny_bert_dir, tmp_path, capsys):
    kernels = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["ntk", "--task", "files", "--train-file", str(polarity_csv), "--test-file", str(polarity_csv),
                     "--model", str(tiny_bert_dir), "--method", "ft", "--max-length", "16", "--n-train", "6",
                     "--n-test", "4", "--no-predict", "--precision", precision, "--out", str(out),
                     "--cache-dir", "none", "--device", "cpu"]) == 0
        (folder,) = (out / "files" / "ntk").iterdir()
        kernels[precision] = {name: np.load(folder / f"{name}.npy") for name in ("P_train", "F_train", "F_test")}
    capsys.readouterr()
    for name, value in kernels["fp32"].items():
        assert value.dtype in (np.float32, np.float64)
        assert np.array_equal(value, kernels["bf16"][name]), name
