"""Issue 20, cases 4 and 6: LP's seed does not pretend, `lpft train --ood` evaluates the finished run in the same
command (the same table and files as `lpft evaluate`), and the LP probe's cross-validated fit shows progress."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegressionCV

from lpft.cli import main
from lpft.methods.lp import _LP_KWARGS, probe_progress
from lpft.report.tables import read_csv

WORDS = {"sport": "goal match team score", "tech": "chip software code phone", "food": "bread cheese soup salt"}


def write_csv(path, n, seed, classes=tuple(WORDS)):
    rng = np.random.default_rng(seed)
    rows = ["text,label"]
    for i in range(n):
        label = classes[i % len(classes)]
        rows.append(" ".join(rng.choice(WORDS[label].split() + ["the", "news"], size=5)) + f",{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed-ood")
    return {"train": write_csv(folder / "train.csv", 45, 0), "test": write_csv(folder / "test.csv", 12, 1),
            "shifted": write_csv(folder / "shifted.csv", 8, 2, ("sport", "tech"))}


def train_argv(files, model, out, *extra):
    return ["train", "--task", "files", "--train-file", str(files["train"]), "--test-file", str(files["test"]),
            "--model", str(model), "--max-length", "16", "--epochs", "1", "--batch-size", "8", "--out", str(out),
            "--cache-dir", "none", *extra]


def test_lp_is_seed_free_and_says_so(files, tiny_bert_dir, tmp_path, capsys):
    assert main(train_argv(files, tiny_bert_dir, tmp_path, "--method", "lp", "--seed", "1")) == 0
    captured = capsys.readouterr()
    assert ("LP is seed-free (a deterministic probe on frozen features): --seed 1 trains the one LP run, folder "
            "seed0, that serves every seed") in captured.err
    assert "tiny-bert0, seed-free: serves every seed): best epoch 0" in captured.out
    assert "seed 1" not in captured.out and "-seed0-" in captured.out
    assert [p.name.split("-")[-2] for p in (tmp_path / "files" / "lp").iterdir()] == ["seed0"]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "LP is seed-free" in help_text and "serves every seed" in help_text


def test_train_ood_evaluates_the_finished_run_like_evaluate(files, tiny_bert_dir, tmp_path, capsys):
    assert main(train_argv(files, tiny_bert_dir, tmp_path, "--method", "ft", "--ood", str(files["shifted"]))) == 0
    out = capsys.readouterr().out
    folder = next((tmp_path / "files" / "ft").iterdir())
    assert "shifted  OOD" in out and "acc (present)" in out and "note: shifted has no example of food" in out
    from_train = read_csv(folder / "evaluation" / "evaluation.csv")
    assert main(["evaluate", str(folder), "--ood", str(files["shifted"]), "--report", str(tmp_path / "ev"),
                 "--cache-dir", "none"]) == 0
    assert read_csv(tmp_path / "ev" / "evaluation.csv") == from_train
    assert [r["role"] for r in from_train] == ["ID", "OOD"]


def test_train_ood_refuses_a_bad_set_before_training(files, tiny_bert_dir, tmp_path, capsys):
    assert main(train_argv(files, tiny_bert_dir, tmp_path, "--ood", str(tmp_path / "missing.csv"))) == 2
    assert capsys.readouterr().err.startswith("lpft: error: --ood: ")
    assert main(train_argv(files, tiny_bert_dir, tmp_path, "--ood", "cb")) == 2
    assert "has labels entailment" in capsys.readouterr().err
    assert not (tmp_path / "files").exists()


def test_the_probe_reports_folds_times_cs_fits(capsys):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.arange(60) % 3
    with probe_progress(folds=3, cs=4) as bar:
        LogisticRegressionCV(Cs=4, cv=3, max_iter=200, **_LP_KWARGS).fit(x, y)
        counted = bar.n  # counted by the hook, before the bar is completed on exit
    assert counted == bar.total == 3 * 4 + 1
    assert "LP probe (3 folds x 4 Cs)" in capsys.readouterr().err
