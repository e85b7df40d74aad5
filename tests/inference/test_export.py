"""`lpft export`: the README's loader, run in a process that never imports lpft, reproduces `lpft predict`'s
probabilities to 1e-5 (merged LoRA, FT, LP, sentence pairs, the PEFT adapter, and the embedded model)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from infer_data import run_config, write_csv

from lpft.cli import main
from tiny_models import umask_modes

# Runs each export's README loader in a fresh namespace, as a user would paste it; one process for all exports so
# torch and transformers are imported once. Prints the probabilities and which of lpft / peft got imported.
RUNNER = r'''
import json, sys
out = {}
for job in json.load(open(sys.argv[1])):
    code = open(job["readme"]).read().split("```python\n", 1)[1].split("```", 1)[0]
    ns = {}
    exec(compile(code, job["readme"], "exec"), ns)
    out[job["name"]] = [ns["predict_proba"](job["texts"], job["pairs"], calibrated=c).tolist() for c in (False, True)]
out["modules"] = sorted(m for m in ("lpft", "peft") if m in sys.modules)
print(json.dumps(out))
'''


def run_loaders(jobs: list[dict], tmp_path: Path) -> dict:
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "runner.py").write_text(RUNNER)
    result = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "jobs.json")],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def lpft_probs(run, file, tmp_path, *extra) -> list[np.ndarray]:
    """`lpft predict` probabilities on ``file``, uncalibrated and calibrated."""
    out = []
    for calibrated in (False, True):
        path = tmp_path / f"pred-{calibrated}.csv"
        assert main(["predict", str(run), str(file), "--out", str(path), *extra]
                    + (["--calibrated"] if calibrated else [])) == 0
        rows = list(csv.DictReader(open(path)))
        out.append(np.array([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows]))
    return out


def export(run, folder, *extra) -> Path:
    assert main(["export", str(run), str(folder), *extra]) == 0
    return Path(folder)


def job(name, folder, file, pairs=False):
    rows = list(csv.DictReader(open(file)))
    return {"name": name, "readme": str(folder / "README.md"), "texts": [r["text"] for r in rows],
            "pairs": [r["other"] for r in rows] if pairs else None}


def test_loader_reproduces_lpft_predict(infer_runs, infer_files, tmp_path):
    cases = {"ft": ("ft", [], "test.csv"), "lora": ("lora", [], "test.csv"), "lp": ("lp", [], "test.csv"),
             "pairs": ("pairs", [], "pairs-test.csv"), "adapter": ("lora", ["--adapter"], "test.csv")}
    jobs, expected = [], {}
    for name, (run, extra, file) in cases.items():
        folder = export(infer_runs[run], tmp_path / f"export-{name}", *extra)
        jobs.append(job(name, folder, infer_files / file, pairs=name == "pairs"))
        expected[name] = lpft_probs(infer_runs[run], infer_files / file, tmp_path)
    got = run_loaders(jobs, tmp_path)
    assert got.pop("modules") == ["peft"]  # never lpft; peft only because the adapter loader imports it
    for name, (plain, calibrated) in expected.items():
        np.testing.assert_allclose(got[name][0], plain, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(got[name][1], calibrated, atol=1e-5, err_msg=name)


def test_export_folder_contents(infer_runs, tmp_path):
    merged = export(infer_runs["lora"], tmp_path / "merged")
    adapter = export(infer_runs["lora"], tmp_path / "adapter", "--adapter")
    common = {"README.md", "classifier.json", "head.safetensors", "labels.json", "tokenizer.json"}
    assert common | {"config.json", "model.safetensors"} <= {p.name for p in merged.iterdir()}
    assert common | {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    assert not (adapter / "model.safetensors").exists()
    meta = json.loads((merged / "classifier.json").read_text())
    assert json.loads((merged / "labels.json").read_text()) == meta["labels"] == ["food", "sport", "tech"]
    assert meta["pooling"] == "first" and meta["max_length"] == 16 and meta["temperature"] > 0
    from safetensors import safe_open

    with safe_open(str(merged / "head.safetensors"), "pt") as f:
        assert f.metadata()["pooling"] == "first" and f.get_tensor("weight").shape == (3, 32)
    from transformers import AutoModel

    model = AutoModel.from_pretrained(merged)  # a standard HF folder, LoRA merged: no adapter modules left
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_refusals_leave_everything_as_it_was(infer_runs, tmp_path, capsys):
    assert main(["export", str(infer_runs["ft"]), str(tmp_path / "x"), "--adapter"]) == 2
    assert "--adapter needs a LoRA run" in capsys.readouterr().err and not (tmp_path / "x").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["export", str(infer_runs["ft"]), str(tmp_path / "mine")]) == 2
    assert "is not an lpft export" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    first = export(infer_runs["ft"], tmp_path / "again")
    export(infer_runs["lp"], first)  # a previous export is replaced whole
    assert json.loads((first / "classifier.json").read_text())["source"]["method"] == "lp"


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_loader_pooling(infer_runs, tmp_path, padding_side):
    """The loader's pooling on either padding side, checked with a fake backbone whose hidden state is the token id:
    "first" gives [CLS], "last" the final [SEP] (the last non-padding token), "mean" the mean id of each text."""
    folder = export(infer_runs["ft"], tmp_path / "export")
    ns = {}
    exec((folder / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0], ns)
    ns["model"] = lambda input_ids, **_: SimpleNamespace(last_hidden_state=input_ids[..., None].float())
    ns["head"] = {"weight": torch.tensor([[0.01], [0.0]]), "bias": torch.zeros(2)}  # logits (id / 100, 0)
    tok = ns["tokenizer"]
    tok.padding_side = padding_side
    texts = ["goal", "bread cheese soup salt today", "a chip"]
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    assert len(set(lengths)) == 3  # padding happens
    expected = {"first": [tok.cls_token_id] * 3, "last": [tok.sep_token_id] * 3,
                "mean": [float(np.mean(tok(t)["input_ids"])) for t in texts]}
    for pooling, ids in expected.items():
        ns["meta"]["pooling"] = pooling
        p = ns["predict_proba"](texts).double()
        np.testing.assert_allclose((100 * torch.log(p[:, 0] / p[:, 1])).numpy(), ids, atol=1e-3, err_msg=pooling)


@pytest.mark.integration
def test_embedded_model_export(tmp_path):
    """The embedded all-MiniLM-L6-v2 after a short LoRA run: merged and adapter exports against `lpft predict`."""
    write_csv(tmp_path / "train.csv", 30, 0)
    write_csv(tmp_path / "test.csv", 8, 1)
    from lpft.runs import train

    run = train(run_config(tmp_path, "all-MiniLM-L6-v2", "lora", lr=1e-3), out=tmp_path / "runs", cache_dir=None,
                device="cpu")
    merged = export(run, tmp_path / "merged")
    adapter = export(run, tmp_path / "adapter", "--adapter")
    expected = lpft_probs(run, tmp_path / "test.csv", tmp_path)
    got = run_loaders([job("merged", merged, tmp_path / "test.csv"), job("adapter", adapter, tmp_path / "test.csv")],
                      tmp_path)
    for name in ("merged", "adapter"):
        for k in range(2):
            np.testing.assert_allclose(got[name][k], expected[k], atol=1e-5, err_msg=name)


def test_export_files_follow_the_umask(infer_runs, tmp_path):
    """save_pretrained writes model.safetensors 0600; the export gets the umask's modes like everything else."""
    import os

    folder = export(infer_runs["ft"], tmp_path / "exported")
    assert (folder / "model.safetensors").is_file() and (folder / "head.safetensors").is_file()
    assert umask_modes(folder) == {}
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask

