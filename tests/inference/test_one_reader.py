"""Issue 20, cases 2, 3 and 5: one reader for a run's inputs (predict, evaluate --ood, the Python API).

A tiny BERT is trained on a BOSS-layout folder (3 classes) and on a WiC folder (SuperGLUE JSONL, input built from
several fields), both written here. The same files then work in every command without options: the run's own
release format is read by the task's reader (oracle: predictions on the release file equal those on the run's own
test split), text / label files work with the same options everywhere, labels as names or ids; an OOD set with
fewer classes reports the accuracy over the classes present and names the missing one.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import lpft
from lpft.cli import main
from lpft.methods.config import RunConfig
from lpft.report.tables import read_csv
from lpft.runs import train

DATA: list[str] = []  # the release folder, for the commands that re-read the run's own test split
GOOD, BAD, MEH = "good great fine lovely", "bad awful poor broken", "okay average plain usual"


def review(rng, words):
    return " ".join(rng.choice(words.split() + ["the", "item", "was"], size=5))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A BOSS folder (amazon train / test, Text / Label ids, one quoted review with a tab, one 'NA' text that BOSS
    skips) and a WiC folder (word, sentence1, sentence2, label true / false)."""
    rng = np.random.default_rng(0)
    data = tmp_path_factory.mktemp("release")
    amazon = data / "BOSS" / "SentimentAnalysis" / "amazon"
    amazon.mkdir(parents=True)
    for name, n in (("train.tsv", 60), ("test.tsv", 15)):
        rows = ["Text\tLabel"] + [f"{review(rng, (BAD, GOOD, MEH)[i % 3])}\t{i % 3}" for i in range(n)]
        rows.insert(2, '"a quoted\treview, good"\t1')
        rows.insert(4, "NA\t0")
        (amazon / name).write_text("\n".join(rows) + "\n")
    wic = data / "WiC"
    wic.mkdir()
    for name, n in (("train.jsonl", 40), ("val.jsonl", 10)):
        lines = [json.dumps({"word": "bank", "sentence1": review(rng, GOOD),
                             "sentence2": review(rng, (BAD, GOOD)[i % 2]),
                             "start1": 0, "end1": 1, "start2": 0, "end2": 1, "label": bool(i % 2), "idx": i})
                 for i in range(n)]
        (wic / name).write_text("\n".join(lines) + "\n")
    DATA[:] = [str(data)]
    return data


@pytest.fixture(scope="module")
def runs(release, tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    common = dict(model=str(tiny_bert_dir), method="ft", epochs=1, batch_size=8, lr=1e-3, max_length=16)
    return {task: train(RunConfig(task=task, **common), out=out, data_dir=str(release), cache_dir=None, device="cpu")
            for task in ("boss-amazon", "wic")}


def predicted(argv, tmp_path, capsys):
    out = tmp_path / f"pred-{len(list(tmp_path.iterdir()))}.csv"
    assert main(["predict", *argv, "--out", str(out)]) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    return np.array([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in csv.DictReader(open(out))]), \
        stdout


def test_a_release_file_predicts_like_the_runs_own_split(runs, release, tmp_path, capsys):
    """Case 5 (WiC builds its input from word + sentence1) and the BOSS format (quoting, skipped rows)."""
    for task, file in (("wic", release / "WiC" / "val.jsonl"),
                       ("boss-amazon", release / "BOSS" / "SentimentAnalysis" / "amazon" / "test.tsv")):
        from_file, stdout = predicted([str(runs[task]), str(file)], tmp_path, capsys)
        from_split, _ = predicted([str(runs[task]), "--split", "test", "--data-dir", str(release)], tmp_path, capsys)
        np.testing.assert_allclose(from_file, from_split, atol=1e-6)
        assert "read as the " in stdout and "release format" in stdout
    assert "1 row(s) with an empty or missing-value text skipped" in stdout and len(from_file) == 16


def test_the_same_files_work_in_predict_evaluate_and_the_api(runs, release, tmp_path, capsys):
    """Case 2: the run's own format without options; text / label files without options or with the same options
    in every command; labels as names or ids."""
    run = str(runs["boss-amazon"])
    boss_file = release / "BOSS" / "SentimentAnalysis" / "amazon" / "test.tsv"
    plain = tmp_path / "plain.csv"  # text / label with label names
    plain.write_text("text,label\ngood great item,positive\nawful broken,negative\nplain usual,neutral\n")
    ids = tmp_path / "ids.tsv"  # other columns, label ids
    ids.write_text("review\tstars\ngood great item\t1\nawful broken\t0\nplain usual\t2\n")
    for argv in ([str(plain)], [str(ids), "--text-columns", "review", "--label-column", "stars"],
                 [str(boss_file), "--text-columns", "Text", "--label-column", "Label"]):
        assert main(["predict", run, argv[0], "--out", str(tmp_path / "p.csv"), *argv[1:]]) == 0
        assert main(["evaluate", run, "--ood", *argv, "--report", str(tmp_path / "ev"),
                     "--cache-dir", "none", "--data-dir", DATA[0]]) == 0
        assert "accuracy" in capsys.readouterr().out
    assert main(["evaluate", run, "--ood", str(boss_file), "--report", str(tmp_path / "ev"),
                 "--data-dir", DATA[0], "--cache-dir",
                 "none"]) == 0
    rows = read_csv(tmp_path / "ev" / "evaluation.csv")
    assert [r["n"] for r in rows] == ["16", "16"] and rows[0]["accuracy"] == rows[1]["accuracy"]
    predictor = lpft.load_run(run)
    examples, labels = predictor.read(plain)
    assert [ex.text for ex in examples] == ["good great item", "awful broken", "plain usual"]
    assert labels.tolist() == [1, 0, 2]
    assert predictor.read(ids, text_columns=["review"], label_column="stars").labels.tolist() == [1, 0, 2]
    assert len(predictor.read(boss_file).examples) == 16


def test_an_ood_set_with_fewer_classes_names_them_and_scores_the_present_ones(runs, tmp_path, capsys):
    """Case 3: a negative / positive file on a 3-class run."""
    run = str(runs["boss-amazon"])
    binary = tmp_path / "binary.csv"
    binary.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in
                                               [("good great", "positive"), ("awful poor", "negative"),
                                                ("fine lovely item", "positive"), ("bad broken", "negative"),
                                                ("the item was okay", "positive")]))
    assert main(["evaluate", run, "--ood", str(binary), "--report", str(tmp_path / "ev"),
                     "--cache-dir", "none", "--data-dir", DATA[0]]) == 0
    out = capsys.readouterr().out
    assert "acc (present)" in out and "note: binary has no example of neutral" in out
    rows = read_csv(tmp_path / "ev" / "evaluation.csv")
    assert [r["missing_classes"] for r in rows] == ["", "neutral"]
    assert rows[0]["accuracy_present"] == rows[0]["accuracy"]
    predictor = lpft.load_run(run)
    examples, labels = predictor.read(binary)
    logits = predictor.logits(examples)
    present = logits[:, :2].argmax(1)  # negative = 0, positive = 1 are the classes present
    assert float(rows[1]["accuracy_present"]) == pytest.approx(np.mean(present == labels))
    assert float(rows[1]["accuracy"]) == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert "neutral" in (tmp_path / "ev" / "report.md").read_text()
