"""Local-folder loaders on small files written here: WiC (absent from the shared data) and every bad-input path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpft.data import DataError, Example, get_task


def write_jsonl(path: Path, rows, raw_lines=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wic_row(i: int, label: bool) -> dict:
    # the official WiC JSONL fields; start/end are character offsets of the word in each sentence
    return {"word": "bank", "sentence1": f"He sat on the bank {i}.", "sentence2": f"She went to the bank {i}.",
            "idx": i, "start1": 14, "end1": 18, "start2": 16, "end2": 20, "version": 1.1, "label": label}


def cb_row(label="entailment", **extra) -> dict:
    return {"premise": "It rained.", "hypothesis": "The ground is wet.", "label": label, "idx": 0, **extra}


def test_wic_official_format(tmp_path):
    write_jsonl(tmp_path / "WiC" / "train.jsonl", [wic_row(i, i % 2 == 0) for i in range(20)])
    write_jsonl(tmp_path / "WiC" / "val.jsonl", [wic_row(100, True), wic_row(101, False)])
    task = get_task("WiC", tmp_path)
    assert task.labels == ("False", "True") and task.metrics == ("accuracy",)
    train, validation, test = (task.load(s) for s in ("train", "validation", "test"))
    assert (len(train), len(validation), len(test)) == (18, 2, 2)
    assert train[0] == Example("bank: He sat on the bank 0.", 1, "She went to the bank 0.")
    assert validation[-1].text == "bank: He sat on the bank 19." and validation[-1].label == 0
    assert [ex.label for ex in test] == [1, 0]


def test_string_boolean_labels_and_case_insensitive_folder(tmp_path):
    rows = [{"question": "is it?", "passage": "It is.", "label": lab} for lab in ("true", "False", "TRUE")]
    write_jsonl(tmp_path / "boolq" / "val.jsonl", rows)
    assert [ex.label for ex in get_task("boolq", tmp_path).load("test")] == [1, 0, 1]


@pytest.mark.parametrize("rows, raw, message", [
    ([cb_row()], ['{"premise": "x", '], r"CB/train\.jsonl, line 2: malformed JSON .*expected one JSON object"),
    ([cb_row(), {"premise": "x", "label": "neutral"}], [], r"CB/train\.jsonl, line 2: missing field 'hypothesis'"),
    ([cb_row(), cb_row(), cb_row("maybe")], [],
     r"CB/train\.jsonl, line 3: unknown label 'maybe'; expected one of entailment, contradiction, neutral"),
    ([cb_row(), {"premise": "x", "hypothesis": "y"}], [], r"line 2: missing field 'label'"),
    ([cb_row(), {"premise": 3, "hypothesis": "y", "label": "neutral"}], [],
     r"line 2: field 'premise' is int, expected a string"),
    ([cb_row()], ["[1, 2]"], r"line 2: expected a JSON object, got list"),
    ([], [], r"CB/train\.jsonl: no rows; expected at least one example"),
])
def test_bad_jsonl_rows(tmp_path, rows, raw, message):
    write_jsonl(tmp_path / "CB" / "train.jsonl", rows, raw)
    write_jsonl(tmp_path / "CB" / "val.jsonl", [cb_row()])
    task = get_task("cb", tmp_path)
    with pytest.raises(DataError, match=message) as err:
        task.load("train")
    assert "\n" not in str(err.value)
    assert task._cache == {}  # nothing half-loaded
    assert task.load("test") == [Example("It rained.", 0, "The ground is wet.")]


def test_bad_wsc_target(tmp_path):
    row = {"text": "A b.", "target": {"span1_text": "A"}, "label": True}
    write_jsonl(tmp_path / "WSC" / "val.jsonl", [row])
    with pytest.raises(DataError, match=r"WSC/val\.jsonl, line 1: missing field 'target\.span2_text'"):
        get_task("wsc", tmp_path).load("test")


def test_bad_boolean_label(tmp_path):
    write_jsonl(tmp_path / "WSC" / "val.jsonl",
                [{"text": "A b.", "target": {"span1_text": "A", "span2_text": "b"}, "label": "yes"}])
    with pytest.raises(DataError, match=r"line 1: unknown label 'yes'; expected true or false"):
        get_task("wsc", tmp_path).load("test")


def test_invalid_utf8_names_the_line(tmp_path):
    path = write_jsonl(tmp_path / "RTE" / "val.jsonl", [cb_row("entailment")])
    path.write_bytes(path.read_bytes() + b'{"premise": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"RTE/val\.jsonl, line 2: not valid UTF-8"):
        get_task("rte", tmp_path).load("test")


def write_tsv(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_glue_tsv_small(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\n" + "".join(f"s{i} \t{i % 2}\n" for i in range(10)))
    write_tsv(tmp_path / "SST-2" / "dev.tsv", 'sentence\tlabel\n"quoted start\t1\n', bom=True)
    task = get_task("sst-2", tmp_path)
    assert [len(task.load(s)) for s in ("train", "validation", "test")] == [9, 1, 1]
    assert task.load("test") == [Example('"quoted start', 1)]  # no CSV quoting in GLUE TSVs
    write_tsv(tmp_path / "MRPC" / "dev.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\tA.\tB.\n", bom=True)
    assert get_task("mrpc", tmp_path).load("test") == [Example("A.", 0, "B.")]


@pytest.mark.parametrize("folder, file, text, message", [
    ("SST-2", "dev.tsv", "sentence\tlabel\na\t0\nb\t2\n",
     r"SST-2/dev\.tsv, line 3: unknown label '2' in column 'label'; expected 0 \(negative\) or 1 \(positive\)"),
    ("SST-2", "dev.tsv", "sentence\tlabel\na\t0\nb\tc\t1\n",
     r"SST-2/dev\.tsv, line 3: expected 2 tab-separated fields \(sentence, label\), got 3"),
    ("SST-2", "dev.tsv", "text\tlabel\na\t0\n", r"SST-2/dev\.tsv, line 1: missing column 'sentence'"),
    ("SST-2", "dev.tsv", "sentence\tlabel\n", r"SST-2/dev\.tsv: no rows"),
    ("SST-2", "dev.tsv", "", r"SST-2/dev\.tsv: empty file"),
    ("MRPC", "dev.tsv", "Quality\t#1 String\n1\tA\n", r"MRPC/dev\.tsv, line 1: missing column '#2 String'"),
    ("CoLA", "cola_public/raw/in_domain_dev.tsv", "gj04\t1\t\tOk.\ngj04\t1\tBad row\n",
     r"in_domain_dev\.tsv, line 2: expected 4 tab-separated fields \(source, label, original mark, sentence\)"),
])
def test_bad_tsv(tmp_path, folder, file, text, message):
    write_tsv(tmp_path / folder / file, text)
    name = {"SST-2": "sst2", "MRPC": "mrpc", "CoLA": "cola-id"}[folder]  # cola-id: the in-domain dev file only
    task = get_task(name, tmp_path)
    with pytest.raises(DataError, match=message):
        task.load("test")
    assert task._cache == {}


def test_missing_test_file_is_named(tmp_path):
    (tmp_path / "CoLA").mkdir()
    message = r"task 'cola-ood': dev file \(the test split\) .*out_of_domain_dev\.tsv not found"
    with pytest.raises(DataError, match=message):
        get_task("cola-ood", tmp_path).load("test")
    # cola needs both dev files: with only the in-domain one present, the missing out-of-domain one is named
    write_tsv(tmp_path / "CoLA" / "cola_public/raw/in_domain_dev.tsv", "gj04\t1\t\tOk.\n")
    assert get_task("cola-id", tmp_path).load("test") == [Example("Ok.", 1)]
    message = r"task 'cola': dev file \(the test split\) .*out_of_domain_dev\.tsv not found"
    with pytest.raises(DataError, match=message):
        get_task("cola", tmp_path).load("test")


def test_cola_test_concatenates_dev_files(tmp_path):
    raw = tmp_path / "CoLA" / "cola_public" / "raw"
    write_tsv(raw / "in_domain_train.tsv", "".join(f"gj04\t{i % 2}\t\tTrain {i}.\n" for i in range(10)))
    write_tsv(raw / "in_domain_dev.tsv", "gj04\t1\t\tIn 1.\ngj04\t0\t*\tIn 2.\n")
    write_tsv(raw / "out_of_domain_dev.tsv", "clc95\t0\t*\tOut 1.\n")
    full, in_domain, ood = (get_task(n, tmp_path).load("test") for n in ("cola", "cola-id", "cola-ood"))
    assert in_domain == [Example("In 1.", 1), Example("In 2.", 0)] and ood == [Example("Out 1.", 0)]
    assert full == in_domain + ood
    assert [len(get_task("cola", tmp_path).load(s)) for s in ("train", "validation")] == [9, 1]
    # a bad row in the second file names that file
    write_tsv(raw / "out_of_domain_dev.tsv", "clc95\t0\t*\tOut 1.\nclc95\t2\t\tOut 2.\n")
    with pytest.raises(DataError, match=r"out_of_domain_dev\.tsv, line 2: unknown label '2' in column 'label'"):
        get_task("cola", tmp_path).load("test")
