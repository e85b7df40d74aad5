"""BOSS sentiment and PubMed 20k RCT on small files written in the releases' own formats."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from lpft.data import DataError, Example, get_task
from lpft.data.boss import LABELS as BOSS_LABELS
from lpft.data.boss import PANDAS_NA, read_boss_file
from lpft.data.pubmed import LABELS as PUBMED_LABELS

BOSS = Path("BOSS") / "SentimentAnalysis"


@pytest.fixture(autouse=True)
def no_local_folder(monkeypatch):
    monkeypatch.delenv("LPFT_DATA_DIR", raising=False)


def write_boss(path: Path, rows) -> Path:
    """Exactly how the BOSS release was written (OOD_NLP ``save_data``): pandas, tab-separated, Text / Label."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["Text", "Label"]).to_csv(path, sep="\t", index=False, header=["Text", "Label"])
    return path


def authors_examples(path: Path) -> list[Example]:
    """The authors' / BOSS loader (lp-ft_ntk tasks/ood/dataset.py ``get_examples``), as the oracle."""
    out = []
    for text, label in pd.read_csv(path, sep="\t", header=0).values:
        if isinstance(text, str):
            out.append(Example(text, int(label)))
    return out


def sentiment_rows(n: int, start: int = 0) -> list[tuple[str, int]]:
    return [(f"review {i} is {['bad', 'good', 'fine'][i % 3]}", i % 3) for i in range(start, start + n)]


# --- BOSS format -------------------------------------------------------------------------------------------------

def test_boss_reader_keeps_exactly_the_rows_the_authors_loader_keeps(tmp_path):
    tricky = [('He said "no"\tthen left', 0), ("two\nlines", 1), ("", 2), ("   ", 0), ("5", 1), ("x" * 200_000, 2),
              ('"quoted from the start"', 0), ("tab\tand \"quote\" and\nnewline", 1)]
    # pandas reads these texts as NaN (and the loader drops the row); the look-alikes after them stay text
    missing = ["#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
               "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
    tricky += [(token, i % 3) for i, token in enumerate(missing + ["N.A.", "none", "NONE", "Nan", " NA", "nan "])]
    path = write_boss(tmp_path / "test.tsv", sentiment_rows(4) + tricky + sentiment_rows(3, start=10))
    got = read_boss_file(path)
    assert got.examples == authors_examples(path)
    assert got.skipped == 1 + len(missing)  # the empty text and every missing-value word
    assert Example(" NA", 1) in got.examples
    assert Example('He said "no"\tthen left', 0) in got.examples and Example("x" * 200_000, 2) in got.examples


def test_pandas_missing_value_words_are_pandas_own():
    parsers = pytest.importorskip("pandas._libs.parsers")
    assert PANDAS_NA == set(parsers.STR_NA_VALUES)


def test_boss_raw_bytes(tmp_path):
    # the bytes pandas writes: quotes doubled inside a quoted field, a quoted field may hold tabs and newlines
    path = tmp_path / "BOSS" / "SentimentAnalysis" / "sst5" / "test.tsv"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'Text\tLabel\n"He said ""no""\tthen left"\t0\nplain text\t1\n"two\nlines"\t2\n\nlast\t0\n')
    assert get_task("BOSS-SST-5", tmp_path).load("test") == [
        Example('He said "no"\tthen left', 0), Example("plain text", 1), Example("two\nlines", 2), Example("last", 0)]


@pytest.fixture
def boss_dir(tmp_path) -> Path:
    write_boss(tmp_path / BOSS / "amazon" / "train.tsv", sentiment_rows(4500))
    write_boss(tmp_path / BOSS / "amazon" / "test.tsv", sentiment_rows(1200, start=10_000))
    write_boss(tmp_path / BOSS / "dynasent" / "test.tsv", sentiment_rows(1500, start=20_000))
    write_boss(tmp_path / BOSS / "semeval" / "test.tsv", sentiment_rows(1001, start=30_000))
    write_boss(tmp_path / BOSS / "sst5" / "test.tsv", sentiment_rows(600, start=40_000))
    return tmp_path


def index(examples) -> list[int]:
    return [int(ex.text.split()[1]) for ex in examples]


def test_boss_amazon_paper_sizes_after_the_9_to_1_cut(boss_dir):
    task = get_task("boss-amazon", boss_dir)
    assert task.labels == BOSS_LABELS == ("negative", "positive", "neutral") and task.metrics == ("accuracy",)
    train, validation, test = (task.load(s) for s in ("train", "validation", "test"))
    # train.tsv (4,500) is cut 9:1 in file order (4,050 / 450); then 3,000 of the 4,050 are drawn, the 450
    # validation rows are fewer than the paper's 1,000 and used whole, and 1,000 of the 1,200 test rows are drawn
    assert (len(train), len(validation), len(test)) == (3000, 450, 1000)
    assert set(index(train)) < set(range(4050)) and index(validation) == list(range(4050, 4500))
    assert set(index(test)) < set(range(10_000, 11_200))
    for split in (train, test):
        assert index(split) == sorted(index(split))  # file order kept
        assert index(split) != list(range(index(split)[0], index(split)[0] + len(split)))  # not just the head
    assert Counter(ex.label for ex in train) == {0: 1000, 1: 1000, 2: 1000}  # stratified
    again = get_task("boss-amazon", boss_dir)
    assert all(again.load(s) == task.load(s) for s in ("train", "validation", "test"))  # seeded


def test_boss_full_release_and_ood_sets(boss_dir):
    full = get_task("boss-amazon-full", boss_dir)
    assert [len(full.load(s)) for s in ("train", "validation", "test")] == [4050, 450, 1200]
    assert set(index(get_task("boss-amazon", boss_dir).load("train"))) <= set(index(full.load("train")))
    sizes = {name: len(get_task(name, boss_dir).load("test")) for name in
             ("boss-dynasent", "boss-semeval", "boss-sst5", "boss-dynasent-full", "boss-semeval-full")}
    assert sizes == {"boss-dynasent": 1000, "boss-semeval": 1000, "boss-sst5": 600,  # smaller than 1,000: whole
                     "boss-dynasent-full": 1500, "boss-semeval-full": 1001}
    dynasent = get_task("boss-dynasent", boss_dir)
    assert dynasent.labels == full.labels
    with pytest.raises(DataError, match=r"task 'boss-dynasent' is a test set only \(DynaSent, for --ood\): it has "
                                        r"no train split; train on boss-amazon$"):
        dynasent.load("train")


@pytest.mark.parametrize("content, message", [
    (b"Text\tLabel\na\t0\nb\t3\n", r"amazon/test\.tsv, line 3: unknown label '3' in column 'Label'; expected 0"),
    (b"Text\tLabel\na\t0\nb\tpositive\n", r"line 3: unknown label 'positive'"),
    (b'Text\tLabel\na\t0\n"opens here\t1\nc\t2\nd\t0\n',
     r"amazon/test\.tsv, line 3: unterminated quoted field \(a quote opens in the record starting on this line"),
    (b'Text\tLabel\na\t0\n"x" y\t1\n', r"line 3: malformed tab-separated record"),
    (b"Text\tLabel\na\t0\nb\t1\textra\n", r"line 3: expected 2 tab-separated fields \(Text, Label\), got 3"),
    (b"Text\tLabel\tId\na\t0\t1\n", r"line 1: expected the 2 tab-separated columns Text, Label, got 3"),
    (b"Sentence\tLabel\na\t0\n", r"line 1: missing column 'text' \(header has: sentence, label\)"),
    (b"Text\tLabel\na\t0\n" * 1 + b"b\xff\t1\n", r"amazon/test\.tsv, line 3: not valid UTF-8"),
    (b"Text\tLabel\n\tx\n", r"line 2: unknown label 'x'"),
    (b"Text\tLabel\n\t0\nNA\t1\n", r"every row has an empty or missing-value text"),
    (b"", r"amazon/test\.tsv: empty file"),
])
def test_bad_boss_files_are_one_line(tmp_path, content, message):
    write_boss(tmp_path / BOSS / "amazon" / "train.tsv", sentiment_rows(20))
    (tmp_path / BOSS / "amazon" / "test.tsv").write_bytes(content)
    task = get_task("boss-amazon", tmp_path)
    with pytest.raises(DataError, match=message) as err:
        task.load("test")
    assert "\n" not in str(err.value)


def test_boss_needs_a_local_folder(tmp_path):
    with pytest.raises(DataError, match=r"task 'boss-semeval': no local data folder given .*lifan-yuan/OOD_NLP"):
        get_task("boss-semeval")
    with pytest.raises(DataError, match=r"task 'boss-amazon': train file .*BOSS/SentimentAnalysis/amazon/train\.tsv "
                                        r"not found"):
        get_task("boss-amazon", tmp_path).load("train")


# --- PubMed 20k RCT ----------------------------------------------------------------------------------------------

PUBMED_TRAIN = """###24491034
BACKGROUND\tThe emergence of HIV as a chronic condition means that people living with HIV are required to take .
OBJECTIVE\tTo evaluate the effectiveness of an online intervention .
METHODS\tWe randomised @ participants .
RESULTS\tAdherence improved ( p = @ ) .
CONCLUSIONS\tThe intervention was effective .

###24854809
BACKGROUND\tAnother trial .
METHODS\tA second method sentence\twith a tab inside .


###25000001
RESULTS\tResults only .
"""


def write_pubmed(folder: Path, train: str = PUBMED_TRAIN, dev: str | None = None, test: str | None = None) -> Path:
    folder = folder / "PubMed_20k_RCT"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(train, encoding="utf-8")
    (folder / "dev.txt").write_text(dev or "###1\nMETHODS\tdev sentence .\n\n", encoding="utf-8")
    (folder / "test.txt").write_text(test or "###2\nRESULTS\ttest one .\nCONCLUSIONS\ttest two .\n\n",
                                     encoding="utf-8")
    return folder


def test_pubmed_release_format_and_official_splits(tmp_path):
    write_pubmed(tmp_path)
    task = get_task("PubMed RCT", tmp_path)
    assert task.name == "pubmed-rct" and task.labels == PUBMED_LABELS
    assert PUBMED_LABELS == ("BACKGROUND", "OBJECTIVE", "METHODS", "RESULTS", "CONCLUSIONS")
    train = task.load("train")
    assert [ex.label for ex in train] == [0, 1, 2, 3, 4, 0, 2, 3]  # every sentence, blank lines skipped
    assert train[2] == Example("We randomised @ participants .", 2)
    assert train[6].text == "A second method sentence\twith a tab inside ."
    assert task.load("validation") == [Example("dev sentence .", 2)]
    assert task.load("test") == [Example("test one .", 3), Example("test two .", 4)]


@pytest.mark.parametrize("content, message", [
    ("###1\nMETHODS  no tab here\n", r"train\.txt, line 2: no tab in 'METHODS  no tab here'; expected LABEL<TAB>"),
    ("###1\nMETHOD\tx\n", r"line 2: unknown label 'METHOD'; expected one of BACKGROUND, OBJECTIVE, METHODS, "),
    ("METHODS\tx\n###1\n", r"line 1: sentence before the first abstract"),
    ("###1\n\n###2\nMETHODS\tx\n", r"line 1: abstract ###1 has no sentences"),
    ("###1\nMETHODS\tx\n\n###2\n\n", r"line 4: abstract ###2 has no sentences"),
    ("###\nMETHODS\tx\n", r"line 1: '###' without an abstract id"),
    ("###1\nMETHODS\t  \n", r"line 2: empty sentence after label METHODS"),
    ("\n\n", r"train\.txt: no abstracts"),
    ("###1\nMETHODS\tcaf\xe9\n".encode("latin-1"), r"train\.txt, line 2: not valid UTF-8"),
])
def test_bad_pubmed_files_are_one_line(tmp_path, content, message):
    folder = write_pubmed(tmp_path)
    if isinstance(content, bytes):
        (folder / "train.txt").write_bytes(content)
    else:
        (folder / "train.txt").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        get_task("pubmed-rct", tmp_path).load("train")
    assert "\n" not in str(err.value)


def test_pubmed_missing_files_and_folder(tmp_path):
    folder = write_pubmed(tmp_path)
    (folder / "dev.txt").unlink()
    with pytest.raises(DataError, match=r"task 'pubmed-rct': dev file \(the validation split\) .*dev\.txt not found"):
        get_task("pubmed-rct", tmp_path).load("validation")
    with pytest.raises(DataError, match=r"task 'pubmed-rct': no local data folder given .*PubMed_20k_RCT/"):
        get_task("pubmed-rct")


@pytest.mark.integration
def test_hub_copy_of_pubmed_is_not_the_release():
    """Why pubmed-rct never reads the hub: the only 20k copy there is a cleaned version with fewer sentences."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        pytest.skip("the Hugging Face hub is off (HF_HUB_OFFLINE)")
    datasets = pytest.importorskip("datasets")
    try:
        hub = datasets.load_dataset("armanc/pubmed-rct20k")
    except Exception as e:  # noqa: BLE001 - unreachable hub
        pytest.skip(f"hub unreachable: {type(e).__name__}")
    assert {s: len(hub[s]) for s in hub} == {"train": 176_642, "validation": 29_672, "test": 29_578}
    assert (len(hub["train"]), len(hub["validation"]), len(hub["test"])) != (180_040, 30_212, 30_135)


def test_train_on_amazon_and_evaluate_on_the_ood_sets(tmp_path, tiny_bert_dir, capsys):
    """The paper's OOD protocol end to end on tiny files: lpft train --task boss-amazon, lpft evaluate --ood ..."""
    from lpft.cli import main

    write_boss(tmp_path / BOSS / "amazon" / "train.tsv", sentiment_rows(40))
    write_boss(tmp_path / BOSS / "amazon" / "test.tsv", sentiment_rows(12, start=100))
    for i, name in enumerate(("dynasent", "semeval", "sst5")):
        write_boss(tmp_path / BOSS / name / "test.tsv", sentiment_rows(9, start=1000 * (i + 1)))
    common = ["--data-dir", str(tmp_path), "--cache-dir", "none"]
    assert main(["train", "--task", "boss-amazon", "--method", "lp", "--model", str(tiny_bert_dir),
                 "--max-length", "16", "--lp-cs", "2", "--lp-folds", "2", "--out", str(tmp_path / "runs"),
                 *common]) == 0
    run = next((tmp_path / "runs" / "boss-amazon" / "lp").iterdir())
    code = main(["evaluate", str(run), "--ood", "boss-dynasent", "boss-semeval", "boss-sst5",
                 "--report", str(tmp_path / "ev"), *common])
    assert code == 0, capsys.readouterr().err
    from lpft.report.tables import read_csv
    rows = read_csv(tmp_path / "ev" / "evaluation.csv")
    assert [(r["set"], r["role"], r["n"]) for r in rows] == [
        ("test", "ID", "12"), ("boss-dynasent", "OOD", "9"), ("boss-semeval", "OOD", "9"), ("boss-sst5", "OOD", "9")]
    code = main(["evaluate", str(run), "--ood", "pubmed-rct", *common])
    assert code == 2 and "task 'pubmed-rct' has labels BACKGROUND, OBJECTIVE" in capsys.readouterr().err


def test_compare_checks_the_ood_sets_before_training(boss_dir, capsys):
    from lpft.cli import main

    code = main(["compare", "--task", "boss-amazon", "--methods", "lp", "--ood", "boss-dynasent", "boss-sst5",
                 "cola-ood", "--data-dir", str(boss_dir), "--out", str(boss_dir / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ood: task 'cola-ood' has labels unacceptable, acceptable" in err[0]
    assert not (boss_dir / "runs").exists()
