"""`lpft predict`: oracle = the logits the run saved at training time; metrics against the analysis functions;
bad input is one line naming file and line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.special import softmax

from lpft.analysis.calibration import calibration_report, expected_calibration_error, maximum_calibration_error
from lpft.cli import main
from lpft.data import compute_metrics
from lpft.runs import RunRecord


def predict(capsys, *args):
    code = main(["predict", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_probs(path):
    """(predictions, probabilities (N, C), column names) of a predictions file of any format."""
    if str(path).endswith(".jsonl"):
        rows = [json.loads(line) for line in open(path)]
    else:
        rows = list(csv.DictReader(open(path), delimiter="\t" if str(path).endswith(".tsv") else ","))
    columns = [k for k in rows[0] if k.startswith("prob_")]
    return [r["prediction"] for r in rows], np.array([[float(r[c]) for c in columns] for r in rows]), columns


@pytest.mark.parametrize("method", ["ft", "lora", "lp"])
def test_split_reproduces_saved_test_logits(infer_runs, method, tmp_path, capsys):
    record = RunRecord(infer_runs[method])
    z, y = record.logits("test")
    code, out, err = predict(capsys, record.path, "--split", "test", "--out", tmp_path / "p.csv", "--device", "cpu")
    assert code == 0, err
    preds, probs, columns = read_probs(tmp_path / "p.csv")
    assert columns == [f"prob_{name}" for name in record.data["labels"]]
    np.testing.assert_allclose(probs, softmax(z, axis=1), atol=1e-6)
    assert preds == [record.data["labels"][i] for i in z.argmax(1)]
    acc = compute_metrics(["accuracy"], y, z)["accuracy"]
    assert f"{acc:.4f}" in out and f"{expected_calibration_error(softmax(z, axis=1), y):.4f}" in out


def test_calibrated_uses_the_temperature_lpft_calibrate_reports(infer_runs, tmp_path, capsys):
    run = infer_runs["lp"]
    assert main(["calibrate", str(run), "--report", str(tmp_path / "cal")]) == 0
    temperature = json.loads((tmp_path / "cal" / "calibration.json").read_text())["temperature"]
    record = RunRecord(run)
    z, y = record.logits("test")
    assert temperature == calibration_report(*record.logits("validation"), z, y)["temperature"]
    code, out, _ = predict(capsys, run, "--split", "test", "--calibrated", "--out", tmp_path / "p.csv")
    assert code == 0 and f"T = {temperature:.4f}" in out
    probs = read_probs(tmp_path / "p.csv")[1]
    np.testing.assert_allclose(probs, softmax(z / temperature, axis=1), atol=1e-6)
    assert f"{maximum_calibration_error(probs, y):.4f}" in out


def test_file_with_labels_in_input_order_and_pairs(infer_runs, infer_files, tmp_path, capsys):
    """The pair run's own test file, read as a prediction file, gives the saved test logits: same columns, same
    tokenisation of (text, text_pair); shuffled rows come back in their new order."""
    record = RunRecord(infer_runs["pairs"])
    z, y = record.logits("test")
    lines = (infer_files / "pairs-test.csv").read_text().splitlines()
    order = np.random.default_rng(0).permutation(len(lines) - 1)
    (tmp_path / "shuffled.csv").write_text("\n".join([lines[0]] + [lines[1 + i] for i in order]) + "\n")
    code, out, err = predict(capsys, record.path, tmp_path / "shuffled.csv", "--out", tmp_path / "p.jsonl",
                             "--batch-size", "3")
    assert code == 0, err
    np.testing.assert_allclose(read_probs(tmp_path / "p.jsonl")[1], softmax(z[order], axis=1), atol=1e-6)
    assert f"{compute_metrics(['accuracy'], y, z)['accuracy']:.4f}" in out


def test_unlabelled_tsv_and_default_output_inside_the_run(infer_runs, infer_files, tmp_path, capsys):
    run = infer_runs["ft"]
    rows = list(csv.DictReader(open(infer_files / "test.csv")))
    (tmp_path / "new.tsv").write_text("id\ttext\n" + "".join(f"{i}\t{r['text']}\n" for i, r in enumerate(rows)))
    code, out, err = predict(capsys, run, tmp_path / "new.tsv")
    assert code == 0, err
    assert "accuracy" not in out and "ece" not in out
    written = run / "predictions" / "new.csv"
    assert f"predictions: {written}" in out
    np.testing.assert_allclose(read_probs(written)[1], softmax(RunRecord(run).logits("test")[0], axis=1), atol=1e-6)


def write(path, text):
    path.write_text(text)
    return path


BAD = [
    ("ragged.csv", "text,label\ngood goal,sport\nbread,food\nchip,tech,extra\n", ["ragged.csv, line 4", "fields"]),
    ("unknown.csv", "text,label\ngoal,sport\nsoup,drinks\n", ["unknown.csv, line 3", "unknown label 'drinks'"]),
    ("bad.jsonl", '{"text": "goal"}\n{"text": 3}\n', ["bad.jsonl, line 2", "field 'text' is int"]),
    ("nolabel.jsonl", '{"text": "goal", "label": "sport"}\n{"text": "soup"}\n', ["nolabel.jsonl, line 2", "'label'"]),
    ("columns.csv", "body,label\ngoal,sport\n",
     ["columns.csv, line 1", "has columns body, label; expected text column(s) 'text'"]),
    ("notes.txt", "goal\n", ["notes.txt", "unsupported file type '.txt'"]),
]


@pytest.mark.parametrize("name,content,message", BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_one_line_exit_2_nothing_written(infer_runs, tmp_path, capsys, name, content, message):
    code, out, err = predict(capsys, infer_runs["ft"], write(tmp_path / name, content), "--out", tmp_path / "o.csv")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("lpft: error:"), err
    assert all(m in lines[0] for m in message), lines[0]
    assert not (tmp_path / "o.csv").exists() and not list(tmp_path.glob(".o.csv*"))


@pytest.mark.parametrize("args,message", [
    ([], "give either a FILE to predict or --split, not neither"),
    (["x.csv", "--split", "test"], "not both"),
    (["--split", "test", "--out", "p.xlsx"], "--out 'p.xlsx': unsupported file type '.xlsx'"),
    (["--split", "test", "--batch-size", "0"], "--batch-size must be > 0"),
    (["--split", "test", "--device", "foo"], "--device 'foo' is not a torch device"),
])
def test_bad_options(infer_runs, capsys, args, message):
    code, _, err = predict(capsys, infer_runs["ft"], *args)
    assert code == 2 and message in err, err


def test_not_a_run_folder(tmp_path, capsys):
    code, _, err = predict(capsys, tmp_path, "--split", "test")
    assert code == 2 and "is not a finished run" in err
