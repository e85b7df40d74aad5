"""Input hardening (issue 8): every bad input is one line ``lpft: error: ...``, exit 2, nothing written, found
before any expensive work; damaged run folders are named; divergence, a full disk and changed data stop cleanly.

The CLI runs in-process (``lpft.cli.main``) so the tables stay fast; model loading is patched to fail the test, which
proves the checks come before it.
"""

from __future__ import annotations

import errno
import json
import re
import shutil

import numpy as np
import pytest

import lpft.methods.finetune as finetune_module
from lpft.cli import main
from lpft.io import DiskFullError, is_disk_full, read_json, write_json


def cli(capsys, *args) -> tuple[int, list[str], str]:
    """Run ``lpft *args`` in-process: (exit code, non-empty stderr lines, stdout)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def assert_one_error(code: int, lines: list[str], *fragments: str, progress: bool = False) -> str:
    """Exit 2 and exactly one stderr line, ``lpft: error: ...`` (after training started, tqdm's progress lines may
    come first: ``progress=True`` allows them, but nothing else)."""
    assert code == 2, lines
    if progress:
        assert not any("Traceback" in line for line in lines), lines
        lines = [line for line in lines if not re.search(r"\d+%\|.*\| *\d+/\d+ \[", line)]  # tqdm bars
    assert len(lines) == 1 and lines[0].startswith("lpft: error:"), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def pairs_csv(polarity_csv):
    """Sentence pairs whose second text is ~600 tokens: over any tiny model's positions unless truncated."""
    path = polarity_csv.parent / "pairs.csv"
    rows = ["first,second,label"] + [f"{'good great' if i % 2 else 'bad awful'} {i},{'word ' * 600},"
                                     f"{'pos' if i % 2 else 'neg'}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture()
def no_model_loading(monkeypatch):
    from lpft.model import Classifier

    def refuse(*args, **kwargs):
        pytest.fail("a bad option was only noticed after loading the model")

    monkeypatch.setattr(Classifier, "from_pretrained", classmethod(refuse))


BAD_OPTIONS = [
    (["--seed=-1"], "--seed must be in 0..4294967295, got -1"),
    (["--seed", "99999999999999999999"], "--seed must be in 0..4294967295"),
    (["--seed", str(2 ** 32)], "--seed must be in 0..4294967295"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number, got nan"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--head-norm", "inf"], "--head-norm must be a finite number, got inf"),
    (["--head-scale=-inf"], "--head-scale must be a finite number"),
    (["--dropout", "nan"], "--dropout must be a finite number"),
    (["--max-length", "1"], "--max-length 1 is too short for single texts"),
    (["--max-length", "161"], "--max-length 161 is more than model"),  # the tiny models have 160 positions
    (["--max-length", "600"], "--max-length must be <= 512"),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_bad_option_is_one_line_exit_2_nothing_written(options, message, polarity_csv, tiny_bert_dir, tmp_path,
                                                        capsys, no_model_loading):
    out = tmp_path / "runs"
    code, lines, _ = cli(capsys, "train", "--task", "files", "--train-file", polarity_csv, "--model", tiny_bert_dir,
                         "--method", "ft", "--epochs", "1", "--out", out, "--cache-dir", "none", *options)
    assert_one_error(code, lines, message)
    assert not out.exists()


def test_max_length_applies_to_sentence_pairs(pairs_csv, tiny_bert_dir, tmp_path, capsys, no_model_loading):
    """--max-length 1 used to be ignored for pairs (the tokenizer cannot truncate below its special tokens), and
    the untruncated 600-token pairs then crashed in the position embeddings after writing state/."""
    out = tmp_path / "runs"
    code, lines, _ = cli(capsys, "train", "--task", "files", "--train-file", pairs_csv, "--text-columns",
                         "first,second", "--model", tiny_bert_dir, "--out", out, "--cache-dir", "none",
                         "--max-length", "1")
    assert_one_error(code, lines, "--max-length 1 is too short for sentence pairs", "at least 5")
    assert not out.exists()


def test_pairs_are_truncated_to_max_length(pairs_csv, tiny_bert_dir):
    from lpft.data import files_task
    from lpft.data.batching import encode
    from lpft.model import load_tokenizer

    examples = files_task(str(pairs_csv), text_columns=("first", "second")).load("train")
    for max_length in (5, 16):
        assert encode(load_tokenizer(str(tiny_bert_dir)), examples, max_length).lengths.max() == max_length


def test_max_input_tokens_counts_roberta_padding_offset(tmp_path):
    from tiny_models import save_tiny_model

    from lpft.model import max_input_tokens

    assert max_input_tokens(str(save_tiny_model(tmp_path / "bert", "bert"))) == 160
    assert max_input_tokens(str(save_tiny_model(tmp_path / "roberta", "roberta"))) == 159  # ids start at pad + 1


@pytest.mark.parametrize("option", ["--out", "--cache-dir"])
@pytest.mark.parametrize("problem", ["file", "below a file", "read-only"])
def test_unusable_output_folders(option, problem, polarity_csv, tiny_bert_dir, tmp_path, capsys, monkeypatch,
                                 no_model_loading):
    target = tmp_path / "target"
    if problem == "read-only":
        target.mkdir()
        real_access = __import__("os").access
        # root ignores permission bits, so a read-only folder is simulated where lpft asks about it
        monkeypatch.setattr("lpft.io.os.access", lambda p, mode: False if str(p) == str(target)
                            else real_access(p, mode))
        given, expected = target, "is not writable"
    else:
        target.write_text("not a folder\n")
        given = target if problem == "file" else target / "sub"
        expected = "is a file" if problem == "file" else "cannot be created"
    locations = {"--out": tmp_path / "runs", "--cache-dir": "none"}
    locations[option] = given
    code, lines, _ = cli(capsys, "train", "--task", "files", "--train-file", polarity_csv, "--model", tiny_bert_dir,
                         "--method", "ft", "--out", locations["--out"], "--cache-dir", locations["--cache-dir"])
    assert_one_error(code, lines, option, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


def test_divergence_stops_the_run_with_one_line(polarity_csv, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    code, lines, _ = cli(capsys, "train", "--task", "files", "--train-file", polarity_csv, "--model", tiny_bert_dir,
                         "--method", "ft", "--epochs", "2", "--lr", "1e6", "--max-length", "16", "--out", out,
                         "--cache-dir", "none")
    line = assert_one_error(code, lines, progress=True)
    assert re.fullmatch(r"lpft: error: training diverged at epoch 1, step \d+: loss (nan|inf) — lower --lr", line)
    assert not list(out.rglob("metrics.json"))
    for path in out.rglob("*.json"):  # whatever was written is strict JSON
        read_json(path, strict=True)


def test_divergence_in_the_last_update_is_caught_before_evaluation(polarity_csv, tiny_bert_dir, tmp_path, capsys,
                                                                  monkeypatch):
    """A finite loss whose update breaks the weights at the end of training: the validation logits show it."""
    import torch

    def poisoned_step(self, closure=None):
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.fill_(float("nan"))

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned_step)
    out = tmp_path / "runs"
    code, lines, _ = cli(capsys, "train", "--task", "files", "--train-file", polarity_csv, "--model", tiny_bert_dir,
                         "--method", "ft", "--epochs", "1", "--batch-size", "64", "--max-length", "16", "--out", out,
                         "--cache-dir", "none")
    line = assert_one_error(code, lines, progress=True)
    assert line == "lpft: error: training diverged at epoch 1, step 1: validation logit nan — lower --lr"
    assert not list(out.rglob("metrics.json"))


def test_json_is_strict(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.array([-np.inf, 2.0])})
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert read_json(path, strict=True) == {"a": None, "b": [None, 1.5], "c": [None, 2.0]}
    path.write_text('{"a": NaN}')
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        read_json(path, strict=True)


# ---------------------------------------------------------------- disk full


def test_disk_full_is_one_line_and_the_run_resumes(polarity_csv, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    args = ["train", "--task", "files", "--train-file", polarity_csv, "--model", tiny_bert_dir, "--method", "ft",
            "--epochs", "1", "--lr", "1e-4", "--max-length", "16", "--out", tmp_path / "runs", "--cache-dir", "none",
            "--checkpoint-every", "0"]  # a checkpoint after the epoch: the rerun resumes from it
    real_save = np.save

    def full_disk(fh, array, **kwargs):  # the logits are the first arrays written after training
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    code, lines, _ = cli(capsys, *args)
    line = assert_one_error(code, lines, "no space left on device while writing ",
                            "validation.npy: free space and rerun to resume", progress=True)
    folder = next((tmp_path / "runs").glob("files/ft/*"))
    assert str(folder) in line
    assert (folder / "state" / "progress.json").is_file() and not (folder / "metrics.json").exists()
    assert not [p for p in folder.rglob("*.tmp")]  # no half-written files left behind

    monkeypatch.setattr(np, "save", real_save)
    monkeypatch.setattr(finetune_module.torch.optim.AdamW, "step",
                        lambda *a, **k: pytest.fail("the finished epoch was trained again"))
    code, lines, _ = cli(capsys, *args)
    assert code == 0 and (folder / "metrics.json").is_file() and not (folder / "state").exists()


def test_disk_full_is_recognised_when_the_writer_hides_the_errno(tmp_path, monkeypatch):
    """torch.save and safetensors report a full disk without errno: an error while no space is left counts."""
    from lpft.io import save_tensors

    class NoSpace:
        f_bavail = 0

    monkeypatch.setattr("lpft.io.os.statvfs", lambda path: NoSpace())
    assert is_disk_full(RuntimeError("PytorchStreamWriter failed writing file"), tmp_path)
    assert not is_disk_full(KeyError("x"), tmp_path)

    def failing_save_file(tensors, filename, metadata=None):
        raise RuntimeError("Error while serializing: IoError")

    monkeypatch.setattr("safetensors.torch.save_file", failing_save_file)
    import torch

    with pytest.raises(DiskFullError, match=r"while writing .*x\.safetensors: free space"):
        save_tensors(tmp_path / "x.safetensors", {"w": torch.zeros(2)})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- damaged run folders


@pytest.fixture(scope="module")
def finished_run(polarity_csv, tiny_bert_dir, tmp_path_factory):
    """A finished 1-epoch LP-FT run on the tiny model: (out folder, its train arguments, the run folder)."""
    out = tmp_path_factory.mktemp("finished") / "runs"
    args = ["train", "--task", "files", "--train-file", str(polarity_csv), "--model", str(tiny_bert_dir),
            "--method", "lp-ft", "--epochs", "1", "--lr", "1e-4", "--max-length", "16", "--out", str(out),
            "--cache-dir", "none"]
    assert main(args) == 0
    return out, args, next(out.glob("files/lp-ft/*"))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_json(name, change):
    def edit(folder):
        path = folder / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return edit


def _set(obj, keys, value):
    target = obj
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return obj


def _save_array(name, change):
    def edit(folder):
        path = folder / "logits" / name
        array = change(np.load(path))
        with open(path, "wb") as fh:
            np.save(fh, array)
    return edit


def _save_head(stage, change):
    def edit(folder):
        from safetensors.torch import load_file, save_file

        path = folder / "heads" / f"{stage}.safetensors"
        save_file(change(load_file(str(path))), str(path))
    return edit


TAMPERED = [
    ("metrics.json", lambda f: _truncate(f / "metrics.json"), "not valid JSON"),
    ("metrics.json", lambda f: (f / "metrics.json").write_text("[1, 2, 3]"), "expected an object"),
    ("metrics.json", lambda f: (f / "metrics.json").write_text('{"val": {"accuracy": NaN}}'), "NaN"),
    ("metrics.json", _edit_json("metrics.json", lambda m: _set(m, ["test", "accuracy"], "high")), "finite number"),
    ("metrics.json", _edit_json("metrics.json", lambda m: _set(m, ["best_epoch"], 7)), "'best_epoch'"),
    ("config.json", lambda f: _truncate(f / "config.json"), "not valid JSON"),
    ("config.json", _edit_json("config.json", lambda c: _set(c, ["config", "method"], "bogus")), "'bogus'"),
    ("config.json", _edit_json("config.json", lambda c: _set(c, ["config", "lr"], "fast")), "'lr'"),
    ("config.json", _edit_json("config.json", lambda c: _set(c, ["data", "labels"], "pos")), "'labels'"),
    ("config.json", _edit_json("config.json", lambda c: {"config": c["config"]}), "'data' is missing"),
    ("history.json", lambda f: _truncate(f / "history.json"), "not valid JSON"),
    ("history.json", lambda f: (f / "history.json").write_text('{"epoch": 1}'), "expected a list"),
    ("history.json", _edit_json("history.json", lambda h: []), "names epoch 1 as best"),
    ("history.json", lambda f: (f / "history.json").unlink(), "missing"),
    ("steps.json", _edit_json("steps.json", lambda s: [{"step": "one"}]), "'step'"),
    ("test.npy", lambda f: _truncate(f / "logits" / "test.npy"), "not a readable NumPy array"),
    ("validation.npy", _save_array("validation.npy", lambda a: a[:, :1]), "expected float logits of shape"),
    ("test.npy", _save_array("test.npy", lambda a: a * np.nan), "NaN"),
    ("test_labels.npy", _save_array("test_labels.npy", lambda a: a + 5), "integer labels in 0..1"),
    ("model.safetensors", lambda f: _truncate(f / "model.safetensors"), "not a readable safetensors file"),
    ("ft.safetensors", lambda f: _truncate(f / "heads" / "ft.safetensors"), "not a readable safetensors file"),
    ("init.safetensors", _save_head("init", lambda t: {"weight": t["weight"][:1], "bias": t["bias"]}),
     "expected weight (2, h)"),
]


@pytest.mark.parametrize("command", ["evaluate", "calibrate", "train"])
@pytest.mark.parametrize("damaged,tamper,problem", TAMPERED,
                         ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(TAMPERED)])
def test_damaged_run_folder_is_named_in_one_line(command, damaged, tamper, problem, finished_run, tmp_path, capsys,
                                                 no_model_loading):
    out, train_args, folder = finished_run
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    run = copy / folder.relative_to(out)
    tamper(run)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    if command == "train":
        args = train_args[:train_args.index("--out") + 1] + [copy] + train_args[train_args.index("--out") + 2:]
    elif command == "evaluate":
        args = ["evaluate", run, "--ood", "sst2", "--cache-dir", "none"]
    else:
        args = ["calibrate", run]
    code, lines, _ = cli(capsys, *args)
    line = assert_one_error(code, lines, "is damaged", problem, "remove the run folder and train again")
    assert re.search(rf"run file \S*{re.escape(damaged)} is damaged", line), line
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before  # nothing written


def test_model_state_must_fit_the_rebuilt_model(finished_run, tmp_path):
    """Tensors the header check cannot judge (backbone shapes) are checked when the model is rebuilt."""
    from safetensors.torch import load_file, save_file

    from lpft.runs import RunFolderError, RunRecord

    out, _, folder = finished_run
    run = tmp_path / "run"
    shutil.copytree(folder, run)
    state = load_file(str(run / "model.safetensors"))
    name = next(k for k in state if k.startswith("backbone.") and state[k].ndim == 2)
    state[name] = state[name][:, :3].contiguous()
    save_file(state, str(run / "model.safetensors"))
    with pytest.raises(RunFolderError, match=rf"model.safetensors is damaged: tensor '{re.escape(name)}' has shape"):
        RunRecord(run).classifier()


def test_intact_run_folder_still_opens(finished_run, capsys):
    _, _, folder = finished_run
    code, _, out = cli(capsys, "calibrate", folder, "--report", folder.parent / "calibration-check")
    assert code == 0 and "temperature" in out


# ---------------------------------------------------------------- resuming on changed data


def test_resume_refuses_changed_training_data(polarity_csv, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    train_file = tmp_path / "train.csv"
    shutil.copy(polarity_csv, train_file)
    args = ["train", "--task", "files", "--train-file", train_file, "--model", tiny_bert_dir, "--method", "ft",
            "--epochs", "2", "--lr", "1e-4", "--max-length", "16", "--out", tmp_path / "runs", "--cache-dir", "none",
            "--checkpoint-every", "0"]
    real_save = finetune_module._save_checkpoint

    def killed_in_epoch_2(*args):
        real_save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "_save_checkpoint", killed_in_epoch_2)
    assert main([str(a) for a in args]) == 130
    capsys.readouterr()
    monkeypatch.setattr(finetune_module, "_save_checkpoint", real_save)

    lines = train_file.read_text().splitlines()
    train_file.write_text("\n".join([lines[0]] + [line.replace("pos", "tmp").replace("neg", "pos")
                                                  .replace("tmp", "neg") for line in lines[1:]]) + "\n")
    folder = next((tmp_path / "runs").glob("files/ft/*"))
    state = sorted(p.name for p in (folder / "state").iterdir())
    monkeypatch.setattr("lpft.runs.start_of_fine_tuning", lambda *a, **k: pytest.fail("checked too late"))
    code, lines, _ = cli(capsys, *args)
    assert_one_error(code, lines, "unfinished run (resume state)", "different train data")
    assert sorted(p.name for p in (folder / "state").iterdir()) == state and not (folder / "metrics.json").exists()
