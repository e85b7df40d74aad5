"""files_task: the user's own CSV / TSV / JSONL files."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from lpft.data import DataError, Example, files_task


def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows, raw_lines=()) -> Path:
    path.write_text("\n".join([json.dumps(r) for r in rows] + list(raw_lines)) + "\n", encoding="utf-8")
    return path


def test_csv_with_all_files(tmp_path):
    header = ["id", "text", "label"]
    train = write_csv(tmp_path / "train.csv", header, [[i, f'he said "hi", {i}', "pos" if i % 3 else "neg"]
                                                       for i in range(12)])
    val = write_csv(tmp_path / "val.csv", header, [[0, "multi\nline", "neg"]])
    test = write_csv(tmp_path / "test.csv", header, [[0, "x", "pos"], [1, "y", "neg"]])
    task = files_task(train, val, test, name="mine")
    assert task.name == "mine" and task.labels == ("neg", "pos") and task.metrics == ("accuracy",)
    assert len(task.load("train")) == 12  # all rows: validation and test files were given
    assert task.load("train")[1] == Example('he said "hi", 1', 1)
    assert task.load("validation") == [Example("multi\nline", 0)]
    assert [ex.label for ex in task.load("test")] == [1, 0]


def test_tsv_pairs_with_given_labels(tmp_path):
    lines = ["a\tb\ty"] + [f'"q{i}\tp{i}\t{"yes" if i % 2 else "no"}' for i in range(10)]
    train = tmp_path / "train.tsv"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    test = tmp_path / "test.tsv"
    test.write_text("a\tb\ty\nQ\tP\tyes\n", encoding="utf-8")
    task = files_task(train, test_file=test, text_columns=("a", "b"), label_column="y", labels=["yes", "no"],
                      split_order="first")
    assert task.labels == ("yes", "no")
    train_rows, validation = task.load("train"), task.load("validation")
    assert (len(train_rows), len(validation)) == (9, 1)  # missing validation: 9:1 in file order (split_order first)
    assert train_rows[0] == Example('"q0', 1, "p0")  # TSV has no quoting
    assert validation == [Example('"q9', 0, "p9")]
    assert task.load("test") == [Example("Q", 0, "P")]


def test_jsonl_inferred_numeric_labels_and_carved_test(tmp_path):
    rows = [{"text": f"t{i}", "label": [2, 10, 1][i % 3]} for i in range(60)]
    task = files_task(write_jsonl(tmp_path / "data.jsonl", rows), text_columns="text")
    assert task.labels == ("1", "2", "10")  # integers sort numerically
    assert task.name == "data"
    splits = {s: task.load(s) for s in ("train", "validation", "test")}
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [49, 5, 6]
    # the held-out test is stratified and every row lands in exactly one split
    assert Counter(ex.label for ex in splits["test"]) == {0: 2, 1: 2, 2: 2}
    assert sorted(ex.text for s in splits.values() for ex in s) == sorted(r["text"] for r in rows)
    # deterministic, and each part keeps file order
    again = files_task(tmp_path / "data.jsonl")
    assert all(again.load(s) == splits[s] for s in splits)
    idx = [int(ex.text[1:]) for ex in splits["train"]]
    assert idx == sorted(idx)


def test_jsonl_boolean_labels(tmp_path):
    rows = [{"text": "a", "label": True}, {"text": "b", "label": False}]
    task = files_task(write_jsonl(tmp_path / "t.jsonl", rows * 5), validation_file=None,
                      test_file=write_jsonl(tmp_path / "e.jsonl", rows))
    assert task.labels == ("False", "True") and [ex.label for ex in task.load("test")] == [1, 0]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nope.csv", r"nope\.csv: file not found"),
    (lambda d: d / "x.parquet",
     r"x\.parquet: unsupported file type '\.parquet'; expected one of \.csv, \.tsv, \.jsonl"),
    (lambda d: write_csv(d / "t.csv", ["body", "label"], [["a", "x"], ["b", "y"]]),
     r"t\.csv, line 1: missing column 'text' \(header has: body, label\)"),
    (lambda d: write_csv(d / "t.csv", ["text", "label"], [["a", "x"], ["b", "y", "z"]]),
     r"t\.csv, line 3: expected 2 comma-separated fields \(text, label\), got 3"),
    (lambda d: write_csv(d / "t.csv", ["text", "label"], [["a", "x"], ["b", ""]]),
     r"t\.csv, line 3: label '' in column 'label' is not a label"),
    (lambda d: write_csv(d / "t.csv", ["text", "label"], []), r"t\.csv: no rows"),
    (lambda d: write_csv(d / "t.csv", ["text", "label"], [["a", "x"], ["b", "x"]]),
     r"t\.csv: only one label \(x\) in the train file"),
    (lambda d: write_jsonl(d / "t.jsonl", [{"text": "a", "label": "x"}], ['{"text": "b" "label": 1}']),
     r"t\.jsonl, line 2: malformed JSON"),
    (lambda d: write_jsonl(d / "t.jsonl", [{"text": "a", "label": "x"}, {"label": "y"}]),
     r"t\.jsonl, line 2: missing field 'text' \(expected fields text, label\)"),
    (lambda d: write_jsonl(d / "t.jsonl", [{"text": "a", "label": "x"}, {"text": None, "label": "y"}]),
     r"t\.jsonl, line 2: field 'text' is NoneType, expected a string"),
    (lambda d: write_jsonl(d / "t.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": 1.5}]),
     r"t\.jsonl, line 2: label 1\.5 in column 'label' is not a label"),
])
def test_bad_train_file(tmp_path, make, message):
    with pytest.raises(DataError, match=message) as err:
        files_task(make(tmp_path))
    assert "\n" not in str(err.value)


def test_unknown_label_in_test_file(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], [["a", "x"], ["b", "y"]] * 5)
    test = write_csv(tmp_path / "test.csv", ["text", "label"], [["a", "x"], ["b", "z"]])
    with pytest.raises(DataError, match=r"test\.csv, line 3: unknown label 'z' in column 'label'; "
                                        r"expected one of x, y"):
        files_task(train, test_file=test)
    with pytest.raises(DataError, match=r"train\.csv, line 3: unknown label 'y'.*expected one of x, w"):
        files_task(train, test_file=test, labels=["x", "w"])


def test_bad_options_and_tiny_files(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], [["a", "x"], ["b", "y"]])
    with pytest.raises(DataError, match="text_columns: expected one column name .* got 3"):
        files_task(train, text_columns=("a", "b", "c"))
    with pytest.raises(DataError, match="labels: expected at least two distinct label names, got x, x"):
        files_task(train, labels=["x", "x"])
    with pytest.raises(DataError, match=r"train\.csv: cannot hold out a stratified 10% test split"):
        files_task(train)
    with pytest.raises(DataError, match=r"one\.csv: 1 train rows are too few to cut 9:1"):
        files_task(write_csv(tmp_path / "one.csv", ["text", "label"], [["a", "x"]]), test_file=train,
                   labels=["x", "y"])


# --- input hardening: each bad user file is one line naming the file and line, before any work ------------------

def _lines_file(name: str, lines: list[str], encoding: str = "utf-8"):
    def make(d: Path) -> Path:
        path = d / name
        path.write_bytes("\n".join(lines).encode(encoding) + b"\n")
        return path
    return make


def _latin1_at_line_402(d: Path) -> Path:
    rows = [f"row {i} ok,{'x' if i % 2 else 'y'}" for i in range(400)]
    raw = ("text,label\n" + "\n".join(rows[:400]) + "\n").encode() + "caf\xe9 au lait,x\n".encode("latin-1")
    path = d / "t.csv"
    path.write_bytes(raw + b"more,y\n" * 3000)  # far more than one decode chunk after the bad byte
    return path


@pytest.mark.parametrize("make, message", [
    (_lines_file("t.csv", ["text,text,label", "a,b,x", "c,d,y"]),
     r"t\.csv, line 1: duplicate column name 'text' \(header: text, text, label\); expected distinct column names"),
    (_lines_file("t.tsv", ["text\tlabel\tlabel", "a\tx\ty"]), r"t\.tsv, line 1: duplicate column name 'label'"),
    (_latin1_at_line_402, r"t\.csv, line 402: not valid UTF-8 \(invalid continuation byte: byte 0xe9 at byte 4 of "
                          r"the line\); expected UTF-8 text$"),
    (_lines_file("t.tsv", ["text\tlabel", "a\tx", "caf\xe9\ty"], "latin-1"), r"t\.tsv, line 3: not valid UTF-8"),
    (_lines_file("t.csv", ["text,label", "a,x", '"this quote opens here,y', "c,x", "d,y"]),
     r"t\.csv, line 3: unterminated quoted field \(a quote opens in the record starting on this line and never "
     r"closes\)"),
    (_lines_file("t.csv", ["text,label", "a,x", '"spans', 'two lines",y,extra', "d,y"]),
     r"t\.csv, lines 3-4: expected 2 comma-separated fields \(text, label\), got 3; a quoted field spans these"),
    (_lines_file("t.csv", ["text,label", "a,x", ",y"]),
     r"t\.csv, line 3: empty text in column 'text'; expected a non-empty text \(remove the row or fill it in\)"),
    (_lines_file("t.csv", ["text,label", "a,x", '"  ",y']), r"t\.csv, line 3: empty text in column 'text'"),
    (_lines_file("t.tsv", ["a\tb\tlabel", "q\tp\tx", "q\t\ty"]), r"t\.tsv, line 3: empty text in column 'b'"),
    (lambda d: write_jsonl(d / "t.jsonl", [{"text": "a", "label": "x"}, {"text": " \n", "label": "y"}]),
     r"t\.jsonl, line 2: empty text in column 'text'"),
])
def test_hardened_user_files(tmp_path, make, message):
    path = make(tmp_path)
    columns = ("a", "b") if path.name == "t.tsv" and path.read_bytes().startswith(b"a\t") else ("text",)
    with pytest.raises(DataError, match=message) as err:
        files_task(path, text_columns=columns)
    assert "\n" not in str(err.value)


def test_long_csv_field_is_accepted_like_tsv_and_jsonl(tmp_path):
    long_text = "word " * 40_000  # 200,000 characters: over the csv module's default 131,072 field limit
    for name in ("t.csv", "t.tsv", "t.jsonl"):
        if name.endswith(".jsonl"):
            path = write_jsonl(tmp_path / name, [{"text": long_text, "label": "x"}, {"text": "b", "label": "y"}] * 10)
        elif name.endswith(".csv"):
            path = write_csv(tmp_path / name, ["text", "label"], [[long_text, "x"], ["b", "y"]] * 10)
        else:
            path = tmp_path / name
            path.write_text("text\tlabel\n" + f"{long_text}\tx\nb\ty\n" * 10, encoding="utf-8")
        task = files_task(path, test_file=path)
        assert task.load("test")[0] == Example(long_text, 0), name
    import csv as csv_module
    assert csv_module.field_size_limit() == 131_072  # the limit is lifted only while reading


def test_file_options_with_another_task_are_refused(tmp_path, capsys):
    from lpft.cli import main
    from lpft.config import ConfigError
    from lpft.methods.config import RunConfig

    with pytest.raises(ConfigError, match=r"--train-file is only read with --task files, not --task cb: drop "
                                          r"--train-file or use --task files"):
        RunConfig(task="cb", train_file="mine.csv").resolved()
    with pytest.raises(ConfigError, match=r"--test-file is only read with --task files, not --task sst2"):
        RunConfig(task="sst2", test_file="mine.csv").resolved()
    code = main(["train", "--task", "cb", "--train-file", str(tmp_path / "mine.csv"), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--train-file is only read with --task files" in err[0]
    assert not (tmp_path / "runs").exists()
