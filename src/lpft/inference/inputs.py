"""Inputs for prediction: a user file (CSV / TSV / JSONL, labelled or not) or one of the run's own splits.

Files are read by the same readers as ``--task files`` (same formats, same one-line errors naming file and line).
Text columns default to the run's own for a files task, and to the column names of the task's release files for a
built-in task (:data:`TASK_COLUMNS`). WiC and WSC format their input from several fields (``"{word}: {sentence1}"``;
a question built from two spans), so for them the columns must be named and hold the formatted text.

A label column is optional. Labels may be the run's label names; case-insensitively when that is unambiguous
(``true`` for BoolQ's ``True``); and, for built-in tasks, their integer ids (GLUE's files write 0 / 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..data import DataError, Example
from ..data.files import read_rows
from ..runs import RunRecord

#: Built-in task -> (text columns of its release files, label column), the defaults of ``lpft predict FILE``.
TASK_COLUMNS = {
    "cb": (("premise", "hypothesis"), "label"),
    "rte": (("premise", "hypothesis"), "label"),
    "boolq": (("question", "passage"), "label"),
    "cola": (("sentence",), "label"),
    "cola-id": (("sentence",), "label"),
    "cola-ood": (("sentence",), "label"),
    "sst2": (("sentence",), "label"),
    "mrpc": (("#1 String", "#2 String"), "Quality"),
    "bbc-news": (("text",), "label"),
    "pubmed-rct": (("text",), "label"),  # the release is not a table: give CSV / TSV / JSONL with these columns
    **{f"boss-{name}{full}": (("Text",), "Label") for name in ("amazon", "dynasent", "semeval", "sst5")
       for full in ("", "-full")},
}
#: Tasks whose input is built from several fields (see docs/tasks.md): no default text columns.
FORMATTED_TASKS = ("wic", "wsc")


def default_text_columns(record: RunRecord) -> tuple[str, ...]:
    """The text column(s) of the run's files: its own for a files task, the release files' for a built-in task."""
    cfg = record.config
    if cfg.task == "files":
        return tuple(c.strip() for c in cfg.text_columns.split(","))
    if cfg.task in FORMATTED_TASKS or cfg.task not in TASK_COLUMNS:
        raise ConfigError(f"task {cfg.task!r} builds its input from several fields; pass --text-columns naming the "
                          "column(s) that hold the formatted text (see docs/tasks.md)")
    return TASK_COLUMNS[cfg.task][0]


def is_pair_task(record: RunRecord) -> bool:
    """Whether the run's examples are (text, text_pair) sentence pairs."""
    cfg = record.config
    if cfg.task == "files":
        return "," in cfg.text_columns
    return cfg.task in FORMATTED_TASKS or len(TASK_COLUMNS.get(cfg.task, ((),))[0]) == 2


def default_label_column(record: RunRecord) -> str:
    cfg = record.config
    return cfg.label_column if cfg.task == "files" else TASK_COLUMNS.get(cfg.task, ((), "label"))[1]


def label_lookup(record: RunRecord) -> dict[str, int]:
    """Accepted spellings of each label -> id: names, unambiguous lower-case names, and ids for built-in tasks."""
    names = list(record.data["labels"])
    ids = {name: i for i, name in enumerate(names)}
    lowered = [n.lower() for n in names]
    for i, low in enumerate(lowered):
        if lowered.count(low) == 1:
            ids.setdefault(low, i)
    if record.config.task != "files":
        for i in range(len(names)):
            ids.setdefault(str(i), i)
    return ids


def file_inputs(record: RunRecord, path: str | Path, text_columns: tuple[str, ...] | None = None,
                label_column: str | None = None) -> tuple[list[Example], np.ndarray | None]:
    """The examples of a prediction file and their label ids (None when the file has no label column)."""
    columns = tuple(text_columns) if text_columns else default_text_columns(record)
    label_column = label_column or default_label_column(record)
    if not 1 <= len(columns) <= 2:
        raise ConfigError(f"--text-columns: expected one column (single texts) or two (sentence pairs), "
                          f"got {len(columns)}: {', '.join(columns)}")
    rows = read_rows(Path(path), tuple(columns), label_column, label_optional=True)
    labelled = rows[0][2] is not None
    ids = label_lookup(record)
    examples, labels = [], []
    for where, texts, name in rows:
        if labelled:
            key = name if name in ids else name.lower()
            if key not in ids:
                raise DataError(f"{where}: unknown label {name!r} in column {label_column!r}; the run was trained "
                                f"on labels {', '.join(record.data['labels'])}")
            labels.append(ids[key])
        examples.append(Example(texts[0], labels[-1] if labelled else 0, texts[1] if len(texts) > 1 else None))
    return examples, (np.array(labels, dtype=np.int64) if labelled else None)

