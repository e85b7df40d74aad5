"""A task from the user's own labelled files: CSV, TSV or JSON Lines, chosen by the file extension.

- ``.csv``: comma-separated with a header row and standard CSV quoting (as written by pandas or a spreadsheet);
  a quoted field may span lines, and fields have no length limit.
- ``.tsv``: tab-separated with a header row, one row per line and no quoting (the GLUE convention: a quote is text).
- ``.jsonl``: one JSON object per line; text fields must be strings, labels strings, integers or booleans
  (a JSON boolean becomes the label name "False" / "True").

All files are UTF-8 (a BOM is allowed). ``text_columns`` names one column (single texts) or two (sentence pairs,
passed to the tokenizer as ``(text, text_pair)``); ``label_column`` holds the label names. Header names must be
distinct, and every text must be non-empty (an empty or all-whitespace text is an error naming its line: drop the
row or fill it in).

Label ids: ``labels`` fixes the order (id = position); without it the distinct labels of the train file are sorted
(numerically when every label is an integer, else as strings). A label outside that list in any file is an error.

Splits: ``train_file`` is required. Without ``test_file``, a stratified 10% of the train file becomes the test split
(scikit-learn ``train_test_split``, ``random_state=0``; each part keeps file order). Without ``validation_file``, the
remaining train rows are cut 9:1: label-stratified with a fixed seed by default (``split_order="stratified"``; a file
sorted by label would otherwise put its last classes into validation only), or in file order (``"first"``: first 90%
train, last 10% validation, the paper's rule): :func:`lpft.data.subsets.cut_train_validation`.
Every file is read and checked when :func:`files_task` is called, so a bad file fails before any training.
Metric: accuracy.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import DataError, Example, Task
from .readers import check_header, column_index, read_delimited, read_jsonl, read_tsv, short
from .subsets import SUBSET_ORDERS, cut_train_validation

SEED = 0
TEST_FRACTION = 0.1
FORMATS = (".csv", ".tsv", ".jsonl")

Row = tuple[str, tuple[str, ...], str | None]  # (where: "file, line N", texts, label name or None)


def _label_name(raw: object, where: str, column: str) -> str:
    if isinstance(raw, bool):
        return str(raw)
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip()):
        return str(raw).strip()
    raise DataError(f"{where}: label {short(raw)} in column {column!r} is not a label; "
                    f"expected a non-empty string, an integer or a boolean")


def read_rows(path: Path, text_columns: tuple[str, ...], label_column: str, label_optional: bool = False
              ) -> list[Row]:
    """``(where, texts, label name)`` for every row of one file.

    With ``label_optional`` a file without the label column (no such CSV / TSV header, or no JSONL object with
    the field) is read as unlabelled: every label is ``None``. A file that has it needs it on every row.
    """
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    out: list[Row] = []
    if suffix == ".jsonl":
        records = read_jsonl(path)
        labelled = not (label_optional and all(label_column not in r for _, r in records))
        wanted = (*text_columns, label_column) if labelled else text_columns
        for number, record in records:
            where = f"{path}, line {number}"
            for key in wanted:
                if key not in record:
                    raise DataError(f"{where}: missing field {key!r} (expected fields {', '.join(wanted)})")
            texts = tuple(record[c] for c in text_columns)
            for column, text in zip(text_columns, texts):
                if not isinstance(text, str):
                    raise DataError(f"{where}: field {column!r} is {type(text).__name__}, expected a string")
            _check_texts(texts, text_columns, where)
            label = _label_name(record[label_column], where, label_column) if labelled else None
            out.append((where, texts, label))
        return out
    header, rows = read_delimited(path, ",") if suffix == ".csv" else read_tsv(path, header=True)
    check_header(path, header)
    labelled = not (label_optional and label_column not in header)
    wanted = (*text_columns, label_column) if labelled else text_columns
    at = [column_index(path, header, c) for c in wanted]
    for number, fields in rows:
        where = f"{path}, line {number}"
        texts = tuple(fields[i] for i in at[:len(text_columns)])
        _check_texts(texts, text_columns, where)
        label = _label_name(fields[at[-1]], where, label_column) if labelled else None
        out.append((where, texts, label))
    return out


def _check_texts(texts: tuple[str, ...], columns: tuple[str, ...], where: str) -> None:
    for column, text in zip(columns, texts):
        if not text.strip():
            raise DataError(f"{where}: empty text in column {column!r}; expected a non-empty text "
                            f"(remove the row or fill it in)")


def _infer_labels(rows: list[Row], path: Path) -> tuple[str, ...]:
    names = {label for _, _, label in rows}
    if len(names) < 2:
        raise DataError(f"{path}: only one label ({', '.join(names)}) in the train file; expected at least two "
                        f"(or pass the label names)")
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def _carve_test(train: list[Example], path: Path) -> tuple[list[Example], list[Example]]:
    """A stratified ``TEST_FRACTION`` of the train file as the test split; both parts keep file order."""
    from sklearn.model_selection import train_test_split

    labels = np.array([ex.label for ex in train])
    try:
        keep, test = train_test_split(np.arange(len(train)), test_size=TEST_FRACTION, stratify=labels,
                                      random_state=SEED)
    except ValueError as e:
        raise DataError(f"{path}: cannot hold out a stratified {TEST_FRACTION:.0%} test split ({e}); "
                        f"expected more rows per label, or pass test_file") from None
    return [train[i] for i in sorted(keep)], [train[i] for i in sorted(test)]


def files_task(train_file: str | os.PathLike, validation_file: str | os.PathLike | None = None,
               test_file: str | os.PathLike | None = None, text_columns: Sequence[str] | str = ("text",),
               label_column: str = "label", labels: Sequence[str] | None = None, name: str | None = None,
               split_order: str = "stratified") -> Task:
    """A :class:`Task` over the user's files (see the module docstring for formats and the split rule)."""
    if split_order not in SUBSET_ORDERS:
        raise DataError(f"split_order {split_order!r}: expected one of {', '.join(SUBSET_ORDERS)}")
    columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if not 1 <= len(columns) <= 2:
        raise DataError(f"text_columns: expected one column name (single texts) or two (sentence pairs), "
                        f"got {len(columns)}: {', '.join(columns)}")
    train_path = Path(train_file)
    train_rows = read_rows(train_path, columns, label_column)
    if labels is None:
        names = _infer_labels(train_rows, train_path)
    else:
        names = tuple(str(label) for label in labels)
        if len(names) < 2 or len(set(names)) != len(names):
            raise DataError(f"labels: expected at least two distinct label names, got {', '.join(names) or '(none)'}")
    ids = {label: i for i, label in enumerate(names)}

    def examples(rows: list[Row]) -> list[Example]:
        out = []
        for where, texts, label in rows:
            if label not in ids:
                raise DataError(f"{where}: unknown label {label!r} in column {label_column!r}; "
                                f"expected one of {', '.join(names)}")
            out.append(Example(texts[0], ids[label], texts[1] if len(texts) > 1 else None))
        return out

    train = examples(train_rows)
    test = examples(read_rows(Path(test_file), columns, label_column)) if test_file else None
    validation = examples(read_rows(Path(validation_file), columns, label_column)) if validation_file else None
    if test is None:
        train, test = _carve_test(train, train_path)
    if validation is None:
        train, validation = cut_train_validation(train, split_order)
        if not train or not validation:
            raise DataError(f"{train_path}: {len(train) + len(validation)} train rows are too few to cut 9:1 into "
                            f"train and validation; expected at least 2, or pass validation_file")
    splits = {"train": train, "validation": validation, "test": test}
    files = ", ".join(str(p) for p in (train_file, validation_file, test_file) if p)
    return Task(name or train_path.stem, names, ("accuracy",), splits.__getitem__, f"files {files}")
