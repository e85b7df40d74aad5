"""PubMed 20k RCT (Dernoncourt & Lee, 2017): the role of each sentence of a randomised-controlled-trial abstract.

Local layout (the release, github.com/Franck-Dernoncourt/pubmed-rct, folder and file names unchanged)::

    <data_dir>/PubMed_20k_RCT/train.txt, dev.txt, test.txt

Format (UTF-8): each abstract is a line ``###<abstract id>`` followed by one line per sentence,
``LABEL<TAB>sentence``; a blank line separates abstracts (any number of blank lines is accepted). Every sentence
is one example; the abstract it comes from is not part of the input.

Fixed label ids, in the order of an abstract: BACKGROUND=0, OBJECTIVE=1, METHODS=2, RESULTS=3, CONCLUSIONS=4.
(The authors' code numbers them alphabetically; ids only name classes, so results do not depend on the order.)

Splits: the official ones, as the paper used them: ``train.txt`` is train, ``dev.txt`` validation, ``test.txt``
test. The paper's sizes (its Table 7: 15,000 / 2,500 / 2,500) count *abstracts*: they are the whole release, and
the authors' code trains on every sentence of those abstracts (180,040 / 30,212 / 30,135), so nothing is sampled.

The hub copies are not the release (``armanc/pubmed-rct20k`` is Jin & Szolovits' cleaned version with 176,642 /
29,672 / 29,578 sentences), so a local folder is required. Metric: accuracy.
"""

from __future__ import annotations

from pathlib import Path

from .base import DataError, Example, Task
from .readers import _lines, require_file, short, task_folder

LABELS = ("BACKGROUND", "OBJECTIVE", "METHODS", "RESULTS", "CONCLUSIONS")
FOLDER = "PubMed_20k_RCT"
FILES = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}


def read_pubmed_file(path: Path) -> list[Example]:
    """Every sentence of every abstract in one release file, in file order."""
    ids = {label: i for i, label in enumerate(LABELS)}
    examples: list[Example] = []
    header: tuple[int, str] | None = None  # (line, "###id") of the current abstract
    count = 0  # its sentences so far

    def check_not_empty() -> None:
        if header is not None and count == 0:
            raise DataError(f"{path}, line {header[0]}: abstract {header[1]} has no sentences; expected "
                            f"LABEL<TAB>sentence lines after each ###<abstract id> line")

    for number, line in _lines(path):
        if line.startswith("###"):
            check_not_empty()
            if not line[3:].strip():
                raise DataError(f"{path}, line {number}: '###' without an abstract id; expected ###<abstract id>")
            header, count = (number, line.strip()), 0
            continue
        if header is None:
            raise DataError(f"{path}, line {number}: sentence before the first abstract; expected a "
                            f"###<abstract id> line first")
        label, tab, text = line.partition("\t")
        if not tab:
            raise DataError(f"{path}, line {number}: no tab in {short(line)}; expected LABEL<TAB>sentence")
        if label not in ids:
            raise DataError(f"{path}, line {number}: unknown label {short(label)}; expected one of "
                            f"{', '.join(LABELS)}")
        if not text.strip():
            raise DataError(f"{path}, line {number}: empty sentence after label {label}; expected LABEL<TAB>sentence")
        examples.append(Example(text, ids[label]))
        count += 1
    if header is None:
        raise DataError(f"{path}: no abstracts; expected ###<abstract id> lines each followed by LABEL<TAB>sentence "
                        f"lines")
    check_not_empty()
    return examples


def pubmed_task(data_dir: Path | None) -> Task:
    """The ``pubmed-rct`` task from ``data_dir/PubMed_20k_RCT``."""
    if data_dir is None:
        raise DataError("task 'pubmed-rct': no local data folder given (--data-dir or LPFT_DATA_DIR); no faithful copy "
                        "of PubMed 20k RCT is on the Hugging Face hub: put the release's PubMed_20k_RCT/ folder "
                        "(train.txt, dev.txt, test.txt) in the data folder (see docs/tasks.md)")
    folder = task_folder(data_dir, FOLDER)

    def load(split: str) -> list[Example]:
        what = {"train": "train file", "validation": "dev file (the validation split)", "test": "test file"}[split]
        return read_pubmed_file(require_file(folder / FILES[split], "pubmed-rct", what))

    return Task("pubmed-rct", LABELS, ("accuracy",), load, f"PubMed 20k RCT (sentences, official splits) from {folder}")
