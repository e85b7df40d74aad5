"""Input files for built-in tasks: default columns from the release formats, label names / ids, one-line errors.
(Issue 20's one-reader cases, with real runs and every command: test_one_reader.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lpft.data import DataError
from lpft.inference.inputs import is_pair_task, read_inputs
from lpft.methods.config import RunConfig


def record(task, labels, **config):
    return SimpleNamespace(config=RunConfig(task=task, **config), data={"labels": list(labels)})


def test_cb_jsonl_in_its_release_format(tmp_path):
    path = tmp_path / "cb.jsonl"
    path.write_text('{"premise": "It rains.", "hypothesis": "It is wet.", "label": "entailment", "idx": 0}\n'
                    '{"premise": "P", "hypothesis": "H", "label": "Neutral"}\n'
                    '{"premise": "P2", "hypothesis": "H2", "label": "1"}\n')
    cb = record("cb", ("entailment", "contradiction", "neutral"))
    examples, labels = read_inputs(cb, path)
    assert [(e.text, e.text_pair) for e in examples] == [("It rains.", "It is wet."), ("P", "H"), ("P2", "H2")]
    assert labels.tolist() == [0, 2, 1] and is_pair_task(cb)


def test_mrpc_tsv_and_boolq_csv_labels(tmp_path):
    (tmp_path / "mrpc.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA b.\tA b!\n")
    examples, labels = read_inputs(record("mrpc", ("not_paraphrase", "paraphrase")), tmp_path / "mrpc.tsv")
    assert (examples[0].text, examples[0].text_pair, labels.tolist()) == ("A b.", "A b!", [1])
    (tmp_path / "boolq.csv").write_text("question,passage,label\nis it?,yes it is,true\nno?,passage,False\n")
    assert read_inputs(record("boolq", ("False", "True")), tmp_path / "boolq.csv").labels.tolist() == [1, 0]
    (tmp_path / "boss.tsv").write_text("Text\tLabel\ngreat\t1\nmeh\tneutral\n")
    examples, labels = read_inputs(record("boss-sst5", ("negative", "positive", "neutral")), tmp_path / "boss.tsv")
    assert [e.text for e in examples] == ["great", "meh"] and labels.tolist() == [1, 2]


def test_unlabelled_and_explicit_columns(tmp_path):
    (tmp_path / "x.csv").write_text("body,kind\nhello there,a\n")
    sst2 = record("sst2", ("negative", "positive"))
    examples, labels = read_inputs(sst2, tmp_path / "x.csv", ("body",))
    assert examples[0].text == "hello there" and examples[0].text_pair is None and labels is None
    with pytest.raises(DataError, match=r"x\.csv, line 2: unknown label 'a' in column 'kind'"):
        read_inputs(sst2, tmp_path / "x.csv", ("body",), "kind")
    with pytest.raises(DataError, match=r"x\.csv, line 1: has columns body, kind; expected text column\(s\) "
                                        r"wic's release fields word, sentence1, sentence2 \(a \.jsonl\) "
                                        r"or 'text,text_pair'"):
        read_inputs(record("wic", ("False", "True")), tmp_path / "x.csv")


def test_files_task_labels_are_names_or_ids(tmp_path):
    (tmp_path / "x.csv").write_text("text,label\ngood,pos\nbad,0\n")
    run = record("files", ("neg", "pos"), train_file="train.csv")
    assert read_inputs(run, tmp_path / "x.csv").labels.tolist() == [1, 0]
    # integer label names are names only: "0" is not id 0 when the labels are 1 and 2
    (tmp_path / "y.csv").write_text("text,label\ngood,2\nbad,0\n")
    with pytest.raises(DataError, match=r"y\.csv, line 3: unknown label '0'.*trained on labels 1, 2"):
        read_inputs(record("files", ("1", "2"), train_file="train.csv"), tmp_path / "y.csv")
