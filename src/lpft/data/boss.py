"""BOSS sentiment (Yuan et al., NeurIPS 2023): Amazon reviews in-distribution, DynaSent, SemEval and SST-5 out of it.

Local layout (the BOSS release, ``datasets/process/`` of lifan-yuan/OOD_NLP, unchanged)::

    <data_dir>/BOSS/SentimentAnalysis/amazon/train.tsv, test.tsv
    <data_dir>/BOSS/SentimentAnalysis/dynasent/test.tsv      (also semeval/, sst5/; their train.tsv is not used)

Format: what ``pandas.DataFrame.to_csv(sep="\\t", index=False)`` writes — a header line ``Text<TAB>Label``, then
one row per example, UTF-8. Fields are quoted only when needed (a field holding a quote, a tab or a newline is
wrapped in ``"`` and its quotes doubled), so a quoted review may span lines. ``Label`` is an integer.

Fixed label ids (BOSS's own ``label_mapping``, also the authors' ``label2id``): negative=0, positive=1, neutral=2.

Rows the BOSS loading code drops are dropped here too, so the examples are the ones the authors trained on: their
loader reads the file with ``pandas.read_csv`` and skips a row whose text is not a string, i.e. an empty text or
one of pandas' missing-value words (``NA``, ``null``, ``nan``, ...: :data:`PANDAS_NA`). Once loaded, the task
description says how many rows were skipped. A label other than 0, 1 or 2 is an error naming the file and line.

Splits: ``boss-amazon`` trains on Amazon: ``train.tsv`` is cut 9:1 in file order into train / validation (the
paper's rule) and ``test.tsv`` is the test split. ``boss-dynasent``, ``boss-semeval`` and ``boss-sst5`` are test
sets only (their ``test.tsv``), for ``--ood``; their train and validation splits are an error.

Sizes: the paper (its Table 7) used 3,000 / 1,000 / 1,000 Amazon examples and 1,000 from each OOD test set, while
the authors' code reads the files whole and the release is larger (per the BOSS paper, Amazon 30,000 train /
38,905 test). How they cut them is not in their code, so these tasks draw a seeded sample of each split at the
paper's size, after the 9:1 cut: :func:`lpft.data.readers.subsample` (label-stratified, ``random_state=0``, file
order kept). A split no larger than its size is used whole. The ``-full`` variants (``boss-amazon-full``, ...)
use the whole release.

The Hugging Face hub has no loadable copy of these files, so a local folder is required. Metric: accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import DataError, Example, Task, split_train_validation
from .readers import column_index, read_delimited, require_file, short, subsample, task_folder

LABELS = ("negative", "positive", "neutral")
FOLDER = "BOSS/SentimentAnalysis"
HEADER = ("Text", "Label")
#: pandas' default missing-value strings (``pandas.read_csv(na_values=None)``): a text equal to one of them is read
#: as NaN by the BOSS / authors' loader and the row skipped. Checked against pandas in the tests.
PANDAS_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
#: The paper's sizes (Table 7) per split; a split not listed does not exist for that task.
PAPER_SIZES = {"amazon": {"train": 3000, "validation": 1000, "test": 1000},
               "dynasent": {"test": 1000}, "semeval": {"test": 1000}, "sst5": {"test": 1000}}
TITLES = {"amazon": "Amazon reviews", "dynasent": "DynaSent", "semeval": "SemEval-2016 Twitter", "sst5": "SST-5"}
TASKS = tuple(f"boss-{name}{suffix}" for suffix in ("", "-full") for name in PAPER_SIZES)


@dataclass
class BossFile:
    examples: list[Example]
    skipped: int  # rows the BOSS loader drops (empty / missing-value text)


def read_boss_file(path: Path) -> BossFile:
    """All examples of one BOSS ``.tsv`` file, skipping the rows the BOSS loader skips."""
    header, rows = read_delimited(path, "\t")
    if len(header) != 2:
        raise DataError(f"{path}, line 1: expected the 2 tab-separated columns {', '.join(HEADER)}, "
                        f"got {len(header)}: {', '.join(header)}")
    text_at, label_at = (column_index(path, [h.strip().lower() for h in header], c.lower()) for c in HEADER)
    examples, skipped = [], 0
    for number, fields in rows:
        raw = fields[label_at].strip()
        if raw not in ("0", "1", "2"):
            raise DataError(f"{path}, line {number}: unknown label {short(raw)} in column 'Label'; expected "
                            f"0 (negative), 1 (positive) or 2 (neutral)")
        text = fields[text_at]
        if text in PANDAS_NA:
            skipped += 1
            continue
        examples.append(Example(text, int(raw)))
    if not examples:
        raise DataError(f"{path}: every row has an empty or missing-value text; expected at least one example")
    return BossFile(examples, skipped)


def boss_task(name: str, data_dir: Path | None) -> Task:
    """The BOSS task ``name`` (one of :data:`TASKS`) read from ``data_dir/BOSS/SentimentAnalysis``."""
    full = name.endswith("-full")
    dataset = name.removeprefix("boss-").removesuffix("-full")
    sizes = PAPER_SIZES[dataset]
    if data_dir is None:
        raise DataError(f"task {name!r}: no local data folder given (--data-dir or LPFT_DATA_DIR); BOSS is not on "
                        f"the Hugging Face hub in loadable form: download it from lifan-yuan/OOD_NLP and put "
                        f"SentimentAnalysis/ under <data_dir>/BOSS/ (see docs/tasks.md)")
    folder = task_folder(data_dir, FOLDER) / dataset
    loaded: dict[str, list[Example]] = {}
    skipped: dict[str, int] = {}

    def read(file: str) -> list[Example]:
        result = read_boss_file(require_file(folder / file, name, f"{file.removesuffix('.tsv')} file"))
        skipped[file] = result.skipped
        return result.examples

    def load(split: str) -> list[Example]:
        if split not in sizes:
            raise DataError(f"task {name!r} is a test set only ({TITLES[dataset]}, for --ood): it has no {split} "
                            f"split; train on boss-amazon{'-full' if full else ''}")
        if not loaded:
            if "train" in sizes:
                loaded["train"], loaded["validation"] = split_train_validation(read("train.tsv"))
            loaded["test"] = read("test.tsv")
            if not full:
                loaded.update({s: subsample(loaded[s], sizes[s]) for s in sizes})
            dropped = sum(skipped.values())
            if dropped:
                task.description += f"; {dropped} row(s) with an empty or missing-value text skipped, as BOSS does"
        return loaded[split]

    how = "whole release" if full else "paper's sizes " + " / ".join(f"{n:,}" for n in sizes.values())
    task = Task(name, LABELS, ("accuracy",), load, f"BOSS {TITLES[dataset]} ({how}) from {folder}")
    return task
