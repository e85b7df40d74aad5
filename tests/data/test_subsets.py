"""Issue 20, case 1: subsets and the 9:1 cut of a label-sorted file represent the file (stratified by default, a fixed
seed shared by every run seed); first-N stays an option that keeps its old run keys; unrepresentative splits warn,
a train split without a class is an error."""

import json

import numpy as np
import pytest
from scipy.stats import chisquare

from lpft.cli import main
from lpft.data import DataError
from lpft.data.base import Example
from lpft.data.subsets import (
    P_THRESHOLD,
    SUBSET_SEED,
    TV_THRESHOLD,
    check_splits,
    cut_train_validation,
    distribution_shift,
    label_counts,
    take,
)
from lpft.methods.config import RunConfig
from lpft.run_files import check_config
from lpft.runs import prepare

LABELS = ("negative", "positive", "neutral")


@pytest.fixture(scope="module")
def sorted_file(tmp_path_factory):
    """A 3-class CSV ordered by label (60 rows each), like many public release files."""
    path = tmp_path_factory.mktemp("sorted") / "train.csv"
    rows = ["text,label"] + [f"review number {i} of {label},{label}" for label in LABELS for i in range(60)]
    path.write_text("\n".join(rows) + "\n")
    return path


def cfg(sorted_file, model, **kw):
    return RunConfig(task="files", train_file=str(sorted_file), model=str(model), method="ft", max_length=16, **kw)


def counts(prep, split):
    return prep.data_info["splits"][split]["label_counts"]


def test_stratified_subset_of_a_sorted_file_is_balanced(sorted_file, tiny_bert_dir, capsys):
    prep = prepare(cfg(sorted_file, tiny_bert_dir, train_subset=60))
    train, validation = counts(prep, "train"), counts(prep, "validation")
    assert train == [20, 20, 20] and sum(validation) == 16 and min(validation) >= 5
    assert prep.data_info["subset_order"] == "stratified"
    assert "warning" not in capsys.readouterr().err


def test_first_n_of_a_sorted_file_warns(sorted_file, tiny_bert_dir, capsys):
    """The file-order cut puts the last class into validation only; first 120 training rows hold 12 neutral."""
    prep = prepare(cfg(sorted_file, tiny_bert_dir, train_subset=120, subset_order="first"))
    # classes: negative, neutral, positive
    assert counts(prep, "train") == [54, 12, 54] and counts(prep, "validation") == [0, 16, 0]
    err = capsys.readouterr().err
    assert "warning: the train split of files (the first 120 of 146, --train-subset, --subset-order first" in err
    assert "warning: the validation split of files (a file-order 9:1 cut" in err
    assert "no example of negative, positive" in err
    assert err.count("--subset-order stratified keeps each class's share") == 2


def test_first_n_without_a_class_is_an_error(sorted_file, tiny_bert_dir, capsys, tmp_path):
    with pytest.raises(DataError, match=r"the train split \(the first 80 of 146.*has no example of class\(es\) "
                                        r"neutral .*use --subset-order stratified"):
        prepare(cfg(sorted_file, tiny_bert_dir, train_subset=80, subset_order="first"))
    argv = ["train", "--task", "files", "--train-file", str(sorted_file), "--model", str(tiny_bert_dir),
            "--train-subset", "80", "--subset-order", "first", "--out", str(tmp_path / "runs"), "--cache-dir", "none"]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("lpft: error: task 'files': the train split")
    assert not (tmp_path / "runs").exists()


def test_every_seed_sees_the_same_subset(sorted_file, tiny_bert_dir):
    """The sampling seed is SUBSET_SEED, not --seed: all seeds and methods share their data (and LP's probe)."""
    prints = {seed: prepare(cfg(sorted_file, tiny_bert_dir, train_subset=60, eval_subset=9, seed=seed)).data_info
              for seed in (1, 2)}
    assert prints[1]["splits"] == prints[2]["splits"]
    assert SUBSET_SEED == 0


def test_take_and_cut_keep_file_order_and_shares():
    examples = [Example(f"t{i}", i // 100) for i in range(300)]
    sample = take(examples, 30, "stratified")
    assert label_counts(sample, 3) == [10, 10, 10]
    assert [int(ex.text[1:]) for ex in sample] == sorted(int(ex.text[1:]) for ex in sample)
    assert take(examples, 30, "first") == examples[:30] and take(examples, 400, "stratified") is examples
    train, validation = cut_train_validation(examples, "stratified")
    assert (len(train), len(validation)) == (270, 30) and label_counts(validation, 3) == [10, 10, 10]
    assert {ex.text for ex in train} | {ex.text for ex in validation} == {ex.text for ex in examples}
    assert cut_train_validation(examples, "first") == (examples[:270], examples[270:])


@pytest.mark.parametrize("observed, source", [([90, 10], [50, 50]), ([30, 25, 5], [20, 20, 20]),
                                              ([3, 3, 4], [100, 100, 100]), ([0, 12, 8], [5, 10, 5])])
def test_distribution_shift_against_scipy_and_the_definition(observed, source):
    tv, p = distribution_shift(observed, source)
    q = np.array(source) / sum(source)
    assert tv == pytest.approx(0.5 * np.abs(np.array(observed) / sum(observed) - q).sum())
    assert p == pytest.approx(chisquare(observed, q * sum(observed)).pvalue)


def test_the_warning_needs_both_a_large_and_a_significant_shift():
    # 0.15 total variation on 20 examples: large but not significant (p = 0.18); on 2,000: both
    assert (TV_THRESHOLD, P_THRESHOLD) == (0.1, 0.01)
    assert distribution_shift([13, 7], [1, 1])[1] > P_THRESHOLD
    assert check_splits("t", ("a", "b"), {"validation": [13, 7]}, {"validation": [1, 1]}, {"validation": "x"}) == []
    [warning] = check_splits("t", ("a", "b"), {"validation": [1300, 700]}, {"validation": [1, 1]},
                             {"validation": "the first 2000 of 4000, --eval-subset, --subset-order first"})
    assert "total variation 0.15" in warning and "has labels a 1300 / b 700" in warning
    # a small shift on many examples (significant, not large): no warning either
    assert check_splits("t", ("a", "b"), {"test": [5300, 4700]}, {"test": [1, 1]}, {"test": "x"}) == []


def test_run_keys_config_and_old_runs(tmp_path, sorted_file):
    # first-N runs keep the keys they had before the option (computed by the code before it); the default quick
    # start (no subset) keeps its key; a stratified subset is another computation with another key
    first = RunConfig(task="cb", train_subset=48, eval_subset=24, subset_order="first").resolved()
    assert first.run_key() == "8cb072ed3e"
    assert RunConfig(task="cb", train_subset=48, eval_subset=24).resolved().run_key() != "8cb072ed3e"
    assert RunConfig().resolved().run_key() == RunConfig(subset_order="first").resolved().run_key() == "15eeded438"
    files = dict(task="files", train_file=str(sorted_file))
    assert RunConfig(**files, subset_order="first").resolved().run_key() != RunConfig(**files).resolved().run_key()
    with pytest.raises(Exception, match="--subset-order 'random' is unknown: expected one of stratified, first"):
        RunConfig(subset_order="random").resolved()
    # a run folder written before the option reads back as first-N (what it did)
    saved = {"config": {k: v for k, v in RunConfig(task="cb", train_subset=48).resolved().__dict__.items()
                        if k != "subset_order"},
             "data": {"labels": ["a", "b"], "metrics": ["accuracy"],
                      "splits": {s: {"size": 3, "fingerprint": "f"} for s in ("train", "validation", "test")}}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert check_config(tmp_path / "config.json")[0].subset_order == "first"


def test_evaluate_limit_samples_every_class_of_a_sorted_file(tmp_path, monkeypatch):
    """`lpft evaluate --limit N` on a label-sorted OOD file: a stratified sample, not the first N rows."""
    from types import SimpleNamespace

    from lpft.analysis import ood

    path = tmp_path / "sorted.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{('neg', 'pos')[i // 20]}\n" for i in range(40)))
    record = SimpleNamespace(config=RunConfig(task="files", train_file="x.csv"), data={"labels": ["neg", "pos"]})
    seen = {}
    monkeypatch.setattr(ood, "encode_examples", lambda record, name, examples: seen.setdefault("examples", examples))
    ood.resolve_eval_set(record, str(path), limit=10)
    assert label_counts(seen["examples"], 2) == [5, 5]
