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
    from lpft.model import max_input_tokens
    from tiny_models import save_tiny_model

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

    def full_disk(fh, array, **kwargs):  # the last epoch's test features are the first array written (epoch end)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    code, lines, _ = cli(capsys, *args)
    line = assert_one_error(code, lines, "no space left on device while writing ",
                            "last-epoch-test.npy: free space and rerun to resume", progress=True)
    folder = next((tmp_path / "runs").glob("files/ft/*"))
    assert str(folder) in line
    assert (folder / "state" / "progress.json").is_file() and not (folder / "metrics.json").exists()
    assert not [p for p in folder.rglob("*.tmp")]  # no half-written files left behind

    monkeypatch.setattr(np, "save", real_save)
    monkeypatch.setattr(finetune_module.torch.optim.AdamW, "step",
                        lambda *a, **k: pytest.fail("the finished epoch was trained again"))
    code, lines, _ = cli(capsys, *args)
    assert code == 0 and (folder / "metrics.json").is_file() and not (folder / "state").exists()
    # the last epoch's test features, cut off by the full disk, are written on resume, as an uninterrupted run has them
    monkeypatch.undo()
    args[args.index("--out") + 1] = tmp_path / "uninterrupted"
    assert cli(capsys, *args)[0] == 0
    other = next((tmp_path / "uninterrupted").glob("files/ft/*"))
    np.testing.assert_array_equal(np.load(folder / "features" / "last-epoch-test.npy"),
                                  np.load(other / "features" / "last-epoch-test.npy"))


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
    # one head per run: predict reads heads/, export the model; a difference between the two is damage (issue 19)
    ("ft.safetensors", _save_head("ft", lambda t: {"weight": t["weight"] * 1.001, "bias": t["bias"]}),
     "its weight differs from head.weight in model.safetensors"),
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


# ---------------------------------------------------------------- issue 19: nothing a user owns is ever replaced


def _snapshot(folder):
    """Every path under ``folder`` with its bytes (files) — to prove nothing was touched."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def runs_copy(finished_run, tmp_path):
    """A private copy of the finished run's --out folder: (out, run folder)."""
    out, _, folder = finished_run
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    return copy, copy / folder.relative_to(out)


def test_a_report_never_replaces_the_folders_it_reads(runs_copy, tmp_path, capsys, no_model_loading):
    out, run = runs_copy
    before = _snapshot(tmp_path)
    for args, fragment in [
        (["claims", "--out", out, "--report", out], "which this command reads"),
        (["calibrate", run, "--report", run], "which this command reads"),
        (["calibrate", run, "--report", run.parent], "which this command reads"),  # the folder holding the run
        (["calibrate", run, "--report", out / "files"], "which this command reads"),
    ]:
        code, lines, _ = cli(capsys, *args)
        assert_one_error(code, lines, "--report", fragment)
        assert _snapshot(tmp_path) == before, args


def test_a_study_report_never_replaces_the_study_folder(tmp_path, capsys, no_model_loading):
    (tmp_path / "notes.txt").write_text("my notes\n")
    study = tmp_path / "study.toml"
    study.write_text('version = 1\ntasks = ["cb"]\nreport = "."\n')
    before = _snapshot(tmp_path)
    code, lines, _ = cli(capsys, "study", study, "--out", tmp_path / "runs")
    assert_one_error(code, lines, "study.toml: report", "which this command reads")
    assert _snapshot(tmp_path) == before


def test_export_replaces_only_its_own_export(runs_copy, tmp_path, capsys):
    out, run = runs_copy
    project = tmp_path / "proj"
    (project / "data").mkdir(parents=True)
    (project / "train.py").write_text("print('mine')\n")
    (project / "classifier.json").write_text('{"labels": ["a"], "pooling": "first"}\n')
    before = _snapshot(project)
    code, lines, _ = cli(capsys, "export", run, project)
    assert_one_error(code, lines, "DIR", "is not an lpft export folder")
    assert _snapshot(project) == before
    # a previous export is replaced; once the user adds a file to it, it is theirs
    code, _, _ = cli(capsys, "export", run, tmp_path / "exp")
    assert code == 0 and (tmp_path / "exp" / ".lpft-folder.json").is_file()
    code, _, _ = cli(capsys, "export", run, tmp_path / "exp")
    assert code == 0
    (tmp_path / "exp" / "notes.md").write_text("mine\n")
    code, lines, _ = cli(capsys, "export", run, tmp_path / "exp")
    assert_one_error(code, lines, "'notes.md', which lpft did not write there")
    assert (tmp_path / "exp" / "notes.md").read_text() == "mine\n"


@pytest.mark.parametrize("problem", ["a file", "under a file", "read-only"])
@pytest.mark.parametrize("command", ["claims", "calibrate", "export", "predict", "study"])
def test_output_paths_are_checked_before_any_work(command, problem, runs_copy, tmp_path, capsys, monkeypatch,
                                                  polarity_csv, no_model_loading):
    import os

    out, run = runs_copy
    if problem == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    place = tmp_path / "place"
    place.mkdir()
    target = {"a file": place / "taken", "under a file": place / "taken" / "x",
              "read-only": place / "new"}[problem]
    (place / "taken").write_text("the user's file\n")
    if problem == "read-only":
        place.chmod(0o555)
    if command == "predict":
        target = target.with_suffix(".csv") if problem != "a file" else target
        if problem == "a file":
            target = place
    study = tmp_path / "study.toml"
    study.write_text('version = 1\ntasks = ["cb"]\n')
    args = {"claims": ["claims", "--out", out, "--report", target],
            "calibrate": ["calibrate", run, "--report", target],
            "export": ["export", run, target],
            "predict": ["predict", run, polarity_csv, "--out", target],
            "study": ["study", study, "--out", tmp_path / "runs", "--report", target]}[command]
    monkeypatch.setattr("lpft.claims.compute", lambda *a, **k: pytest.fail("claims computed first"))
    monkeypatch.setattr("lpft.study.plan", lambda *a, **k: pytest.fail("the study was planned first"))
    try:
        code, lines, _ = cli(capsys, *args)
    finally:
        place.chmod(0o755)
    assert_one_error(code, lines)
    assert (place / "taken").read_text() == "the user's file\n"
    assert sorted(p.name for p in place.iterdir()) == ["taken"]


def test_predict_never_overwrites_its_input(runs_copy, tmp_path, polarity_csv, capsys, no_model_loading):
    _, run = runs_copy
    data = tmp_path / "x.csv"
    shutil.copy(polarity_csv, data)
    before = data.read_bytes()
    code, lines, _ = cli(capsys, "predict", run, data, "--out", data)
    assert_one_error(code, lines, "--out", "an input of this command")
    assert data.read_bytes() == before


def test_predict_does_not_follow_predictions_out_of_the_run(runs_copy, tmp_path, polarity_csv, capsys,
                                                           no_model_loading):
    _, run = runs_copy
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "predictions").symlink_to(elsewhere, target_is_directory=True)
    code, lines, _ = cli(capsys, "predict", run, polarity_csv)
    assert_one_error(code, lines, "leads outside")
    assert list(elsewhere.iterdir()) == []


def test_an_explicit_label_column_must_exist(runs_copy, tmp_path, polarity_csv, capsys, no_model_loading):
    _, run = runs_copy
    code, lines, _ = cli(capsys, "predict", run, polarity_csv, "--label-column", "nope", "--out", tmp_path / "p.csv")
    assert_one_error(code, lines, "train.csv, line 1: missing column 'nope'")
    assert not (tmp_path / "p.csv").exists()


def test_jsonl_labels_count_when_the_first_row_has_none(runs_copy, tmp_path, capsys, no_model_loading):
    _, run = runs_copy
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "good item"}\n{"text": "bad item", "label": "neg"}\n')
    code, lines, _ = cli(capsys, "predict", run, path, "--out", tmp_path / "p.csv")
    assert_one_error(code, lines, "x.jsonl, line 1", "missing field 'label'")


@pytest.mark.parametrize("table,fragment", [
    ('[run]\ntask = "rte"\n', "unknown key 'task' in [run]"),
    ('[task.cb]\ntask = "rte"\n', "task in [task.cb] must be \"files\""),
    ('[run]\nmax_length = 600\n', "study.toml: [run]: max_length must be <= 512"),
    ('[task.cb]\nepochs = 0\n', "study.toml: [task.cb]: epochs must be > 0"),
])
def test_study_files_keep_the_task_identity_and_name_their_keys(table, fragment, tmp_path, capsys,
                                                                  no_model_loading):
    study = tmp_path / "study.toml"
    study.write_text('version = 1\ntasks = ["cb", "wsc"]\n' + table)
    code, lines, _ = cli(capsys, "study", study, "--dry-run")
    line = assert_one_error(code, lines, fragment)
    assert "--" not in line.split("study.toml")[1]  # file keys, not CLI options


def test_study_task_names_differ_by_more_than_case(tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text('version = 1\ntasks = ["cb", "CB"]\n')
    assert_one_error(*cli(capsys, "study", study, "--dry-run")[:2], "'cb' twice", "ignoring case")


def test_study_dry_run_checks_the_data_dir(tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text('version = 1\ntasks = ["cb"]\ndata_dir = "missing"\n')
    assert_one_error(*cli(capsys, "study", study, "--dry-run")[:2], "study.toml: data_dir", "is not a folder")


@pytest.mark.parametrize("options,fragment", [
    ({"epochs": True}, "--epochs must be an integer, got True"),
    ({"epochs": 1.5}, "--epochs must be an integer, got 1.5"),
    ({"epochs": "three"}, "--epochs must be an integer, got 'three'"),
    ({"text_columns": ["a", "b"]}, "--text-columns must be a string"),
    ({"lr": "fast"}, "--lr must be a number"),
])
def test_python_api_rejects_wrong_types_before_writing(options, fragment, polarity_csv, tiny_bert_dir, tmp_path,
                                                       no_model_loading):
    import lpft
    from lpft.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(fragment)):
        lpft.train(out=str(tmp_path / "runs"), cache_dir=None, task="files", train_file=str(polarity_csv),
                   model=str(tiny_bert_dir), **options)
    assert not (tmp_path / "runs").exists()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_in_export_and_predict_is_one_line(runs_copy, tmp_path, polarity_csv, capsys, monkeypatch):
    _, run = runs_copy
    monkeypatch.setattr("lpft.inference.export.write_json", _enospc)
    code, lines, _ = cli(capsys, "export", run, tmp_path / "exp")
    assert_one_error(code, lines, "no space left on device while writing", "exp")
    assert not (tmp_path / "exp").exists() and not list(tmp_path.glob(".exp*"))

    class FullWriter:
        def __init__(self, *args, **kwargs):
            pass

        writerow = _enospc

    monkeypatch.setattr("csv.writer", FullWriter)
    code, lines, _ = cli(capsys, "predict", run, polarity_csv, "--out", tmp_path / "p.csv")
    assert_one_error(code, lines, "no space left on device while writing", "p.csv", progress=True)
    assert list(tmp_path.glob("*p.csv*")) == []


def test_disk_full_is_seen_before_the_temporary_file_is_deleted(tmp_path, monkeypatch):
    """The space a failed write took is freed when its temporary file goes: the check must come first."""
    import torch

    from lpft.io import save_tensors

    def statvfs(path):
        class Stat:
            f_bavail = 0 if list(tmp_path.glob("*.tmp")) else 1000
        return Stat()

    def fill_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"x" * 100)
        raise RuntimeError("Error while serializing: IoError")

    monkeypatch.setattr("lpft.io.os.statvfs", statvfs)
    monkeypatch.setattr("safetensors.torch.save_file", fill_then_fail)
    with pytest.raises(DiskFullError):
        save_tensors(tmp_path / "x.safetensors", {"w": torch.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def test_claims_skip_damaged_and_foreign_files_with_a_note(runs_copy, capsys):
    out, run = runs_copy
    edited = run.parent / "edited"
    shutil.copytree(run, edited)
    _edit_json("config.json", lambda c: {**c, "config": {**c["config"], "method": "ft"}})(edited)
    (out / "runs.csv").write_bytes(b"folder,diff\n\xff\xfe,1\n")  # not UTF-8
    (out / "sweep").mkdir()
    (out / "sweep" / "settings.json").write_text('{"config": {"task": "files"}}')
    (out / "sweep" / "sweep.csv").write_text("method,seed,start_norm,diff,folder\nft,1,abc,0.1,x\n")
    (out / "bad-sweep").mkdir()
    (out / "bad-sweep" / "settings.json").write_text("{")
    (out / "bad-sweep" / "sweep.csv").write_text("method,seed,start_norm,diff,folder\n")
    (out / "ntk").mkdir()
    (out / "ntk" / "stats.json").write_text('{"ft_ratio": 1, "kernels": {}}')
    code = main(["claims", "--out", str(out), "--no-lp-path", "--cache-dir", "none"])
    captured = capsys.readouterr()
    assert code == 0
    notes = [line for line in captured.err.splitlines() if line.startswith("lpft claims: skipped")]
    for name in (edited, out / "runs.csv", out / "sweep", out / "bad-sweep", out / "ntk" / "stats.json"):
        assert sum(f"skipped {name}:" in line for line in notes) == 1, (name, notes)
    assert "skipped" not in captured.out and "Traceback" not in captured.err


# ---------------------------------------------------------------- Ray: errors in seconds, one line


def test_unreachable_ray_address_fails_in_seconds(tmp_path, capsys):
    import time

    pytest.importorskip("ray", reason="the ray extra is not installed")
    study = tmp_path / "study.toml"
    study.write_text('version = 1\ntasks = ["cb"]\n')
    started = time.perf_counter()
    code, lines, _ = cli(capsys, "study", study, "--out", tmp_path / "runs", "--executor", "ray",
                         "--ray-address", "127.0.0.1:1")
    assert_one_error(code, lines, "--ray-address 127.0.0.1:1: nothing answers there")
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("option,value", [("--cpus-per-run", "nan"), ("--cpus-per-run", "inf"),
                                          ("--gpus-per-run", "nan"), ("--threads-per-run", "0")])
def test_non_finite_ray_resources_are_one_line(option, value, tmp_path, capsys):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    study = tmp_path / "study.toml"
    study.write_text('version = 1\ntasks = ["cb"]\n')
    code, lines, _ = cli(capsys, "study", study, "--out", tmp_path / "runs", "--executor", "ray", option, value)
    assert_one_error(code, lines, option)


def test_ray_without_a_cluster_is_one_line_and_ray_logs_stay_quiet(monkeypatch):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    import logging

    from lpft.config import ConfigError
    from lpft.study import RayExecutor

    seen = {}

    def no_cluster(**kwargs):
        seen.update(kwargs)
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(ConfigError, match=r"--ray-address auto: cannot connect to Ray: Could not find any running"):
        RayExecutor(address="auto")._connect()
    assert seen["log_to_driver"] is False and seen["logging_level"] == logging.ERROR


def test_both_executors_use_the_same_threads_per_run():
    import torch

    pytest.importorskip("ray", reason="the ray extra is not installed")
    from lpft.study import RayExecutor
    from lpft.study.executors import LocalExecutor

    assert LocalExecutor().threads == RayExecutor().threads == torch.get_num_threads()
    assert LocalExecutor(cpus_per_run=3).threads == RayExecutor(cpus_per_run=3).threads == 3
    assert RayExecutor(threads_per_run=2).cpus == 2


def test_a_model_folder_with_only_pickled_weights_is_refused(tiny_bert_dir, polarity_csv, tmp_path, capsys):
    import pickle

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    code, lines, _ = cli(capsys, "train", "--task", "files", "--train-file", polarity_csv, "--model", model,
                         "--method", "ft", "--epochs", "1", "--out", tmp_path / "runs", "--cache-dir", "none")
    assert_one_error(code, lines, "holds only pickled weights (pytorch_model.bin)", "safetensors")
    assert not list((tmp_path / "runs").rglob("metrics.json")) if (tmp_path / "runs").exists() else True


def test_ntk_memory_budget_has_a_floor(tmp_path, capsys, no_model_loading):
    code, lines, _ = cli(capsys, "ntk", "--task", "cb", "--method", "ft", "--memory-budget", "1",
                         "--out", tmp_path / "runs")
    assert_one_error(code, lines, "--memory-budget must be >= 67108864 bytes (64 MiB), got 1")


def test_ntk_memory_budget_takes_units(tmp_path, capsys, no_model_loading):
    """A size with a unit is bytes to the floor check (10 MiB is under it), and a unit it does not know is one line."""
    code, lines, _ = cli(capsys, "ntk", "--task", "cb", "--method", "ft", "--memory-budget", "10MiB",
                         "--out", tmp_path / "runs")
    assert_one_error(code, lines, "--memory-budget must be >= 67108864 bytes (64 MiB), got 10485760")
    with pytest.raises(SystemExit) as exit_:
        main(["ntk", "--task", "cb", "--memory-budget", "1.5 gigs"])
    assert exit_.value.code == 2
    assert "--memory-budget: '1.5 gigs' is not a size" in capsys.readouterr().err


@pytest.mark.parametrize("text, size", [("67108864", 2**26), ("1.5GiB", 3 * 2**29), ("4 GB", 4 * 10**9),
                                        ("512mib", 2**29), ("2kB", 2000)])
def test_sizes_read_decimal_and_binary_units(text, size):
    from lpft.commands._options import byte_size
    from lpft.config import parse_size

    assert byte_size(text) == parse_size(text) == size


def test_disk_full_in_a_report_or_study_folder_is_one_line(tmp_path):
    """Every folder writer (study, compare, claims, calibrate, export) goes through outputs.output_folder."""
    from lpft.outputs import output_folder

    (tmp_path / "report").mkdir()
    with pytest.raises(DiskFullError, match="report"):
        with output_folder(tmp_path / "report") as folder:
            (folder / "report.md").write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"] and not any((tmp_path / "report").iterdir())


def test_a_local_ray_instance_prints_nothing_on_stderr(tmp_path):
    """Ray's own INFO / WARNING lines ("Started a local Ray instance", the token notice) stay off the terminal."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ray", reason="the ray extra is not installed")
    import lpft

    code = ("from lpft.study import RayExecutor\n"
            "ex = RayExecutor(num_cpus=1, threads_per_run=1)\nex._connect()\nex.ray.shutdown()\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(lpft.__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
