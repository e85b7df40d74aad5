"""The Hugging Face hub path, with datasets.load_dataset replaced by small in-memory datasets."""

from __future__ import annotations

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from lpft.data import DataError, Example, get_task


@pytest.fixture(autouse=True)
def no_local_folder(monkeypatch):
    monkeypatch.delenv("LPFT_DATA_DIR", raising=False)


def dataset(columns: dict, label_names) -> Dataset:
    features = Features({**{k: Value("string") for k in columns if k != "label"},
                         "label": ClassLabel(names=list(label_names))})
    return Dataset.from_dict(columns, features=features)


def fake_hub(monkeypatch, data: DatasetDict, fail_first: bool = False) -> list:
    calls = []

    def load_dataset(repo, config=None, **kwargs):
        calls.append((repo, config))
        if fail_first and len(calls) == 1:
            raise FileNotFoundError("Dataset scripts are no longer supported\nsecond line")
        return data

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def cb_split(n: int, offset: int = 0) -> Dataset:
    return dataset({"premise": [f"p{i + offset}" for i in range(n)], "hypothesis": [f"h{i}" for i in range(n)],
                    "label": [i % 3 for i in range(n)]}, ["entailment", "contradiction", "neutral"])


def test_superglue_from_hub(monkeypatch):
    calls = fake_hub(monkeypatch, DatasetDict({"train": cb_split(20), "validation": cb_split(4, 100),
                                               "test": cb_split(3).map(lambda r: {"label": -1})}))
    task = get_task("cb")
    assert "Hugging Face hub" in task.description
    assert [len(task.load(s)) for s in ("train", "validation", "test")] == [18, 2, 4]
    assert task.load("train")[1] == Example("p1", 1, "h1")
    assert task.load("test")[0] == Example("p100", 0, "h0")
    assert calls == [("super_glue", "cb")]  # fetched once for all three splits


def test_falls_back_to_namespaced_repo(monkeypatch):
    wsc = dataset({"text": ["Mark lied. He ran."] * 10, "span1_text": ["Mark"] * 10, "span2_text": ["He"] * 10,
                   "label": [1, 0] * 5}, ["False", "True"])
    calls = fake_hub(monkeypatch, DatasetDict({"train": wsc, "validation": wsc}), fail_first=True)
    assert get_task("wsc").load("test")[0] == Example("Mark lied. He ran.", 1, 'Does "He" refer to "Mark"?')
    assert calls == [("super_glue", "wsc.fixed"), ("aps/super_glue", "wsc.fixed")]


def test_glue_from_hub_and_cola_domains(monkeypatch):
    n = 527 + 516
    cola = dataset({"sentence": [f"s{i}" for i in range(n)], "label": [i % 2 for i in range(n)]},
                   ["unacceptable", "acceptable"])
    calls = fake_hub(monkeypatch, DatasetDict({"train": cola.select(range(30)), "validation": cola}))
    full, in_domain, ood = (get_task(n).load("test") for n in ("cola", "cola-id", "cola-ood"))
    assert (len(full), len(in_domain), len(ood)) == (1043, 527, 516)
    assert in_domain[-1].text == "s526" and ood[0] == Example("s527", 1)
    assert full == in_domain + ood and full[0].text == "s0" and full[-1].text == "s1042"
    assert calls[0] == ("glue", "cola")

    mrpc = dataset({"sentence1": ["a", "b"] * 5, "sentence2": ["c", "d"] * 5, "label": [0, 1] * 5},
                   ["not_equivalent", "equivalent"])
    fake_hub(monkeypatch, DatasetDict({"train": mrpc, "validation": mrpc}))
    task = get_task("MRPC")
    assert task.load("test")[1] == Example("b", 1, "d") and task.metrics == ("accuracy", "f1")


def test_hub_cola_with_unexpected_size(monkeypatch):
    """The ID / OOD cut relies on GLUE's 527 + 516 row order: any other size is refused for every CoLA variant."""
    cola = dataset({"sentence": ["s"] * 10, "label": [0, 1] * 5}, ["unacceptable", "acceptable"])
    fake_hub(monkeypatch, DatasetDict({"train": cola, "validation": cola}))
    for name in ("cola", "cola-id", "cola-ood"):
        with pytest.raises(DataError, match=rf"task '{name}': hub CoLA validation has 10 rows, expected 1043"):
            get_task(name).load("test")


def test_hub_unreachable_is_one_line(monkeypatch):
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("Couldn't reach 'super_glue' on the Hub (LocalEntryNotFoundError)\ndetails")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    task = get_task("cb")  # lazy: the hub is contacted on the first load
    with pytest.raises(DataError) as err:
        task.load("train")
    message = str(err.value)
    assert message == ("task 'cb': no local data folder given (--data-dir or LPFT_DATA_DIR) and the Hugging Face "
                       "hub is unreachable: ConnectionError: Couldn't reach 'super_glue' on the Hub "
                       "(LocalEntryNotFoundError)")
    assert len(calls) == 1  # a network failure is not retried with the second repo id


def test_hub_bad_rows(monkeypatch):
    bad = dataset({"premise": ["p", "q"], "hypothesis": ["h", "i"], "label": [0, -1]},
                  ["entailment", "contradiction", "neutral"])
    fake_hub(monkeypatch, DatasetDict({"train": bad, "validation": bad}))
    with pytest.raises(DataError, match=r"hub super_glue/cb validation row 2: label -1 is not a label id 0\.\.2"):
        get_task("cb").load("test")

    two = dataset({"premise": ["p"], "hypothesis": ["h"], "label": [0]}, ["yes", "no"])
    fake_hub(monkeypatch, DatasetDict({"train": two, "validation": two}))
    with pytest.raises(DataError, match=r"hub dataset super_glue/cb has 2 label names"):
        get_task("cb").load("test")

    fake_hub(monkeypatch, DatasetDict({"train": two}))
    with pytest.raises(DataError, match=r"task 'rte': hub dataset super_glue/rte has no 'validation' split"):
        get_task("rte").load("test")
