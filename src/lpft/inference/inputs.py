"""A run's inputs from a file: the one reader behind ``lpft predict FILE``, ``lpft evaluate --ood FILE``,
``lpft train --ood FILE`` and :meth:`lpft.inference.Predictor.read`.

:func:`read_inputs` takes, without options:

- **the run's own task release format**: a file laid out like the task's release files is read by the task's own
  reader, so ``lpft predict RUN DATA/WiC/val.jsonl`` builds WiC's ``"{word}: {sentence1}"`` input exactly as
  training did. BOSS ``.tsv`` (``Text``, ``Label``; quoted fields, the rows BOSS skips are skipped and counted),
  SuperGLUE ``.jsonl`` (CB, RTE, BoolQ, WiC, WSC: their fields), GLUE ``.tsv`` (SST-2 ``sentence``, MRPC
  ``#1 String`` / ``#2 String``, CoLA's header-less raw files). Columns: :data:`TASK_COLUMNS`.
- **the run's own columns** (a ``--task files`` run's ``--text-columns`` / ``--label-column``);
- **``text`` / ``label`` files** (``text`` and ``text_pair`` for sentence-pair runs), any task.

``text_columns`` / ``label_column`` (``--text-columns`` / ``--label-column``, the same options in every command)
name other columns of a CSV / TSV / JSONL file (read like ``--task files``). A label column is optional for
prediction (OOD sets need it). Labels may be the run's label names, case-insensitively when that is unambiguous
(``true`` for BoolQ's ``True``), or the run's label ids (``0`` .. ``C-1``; GLUE and BOSS files write ids) unless a
label name is itself an integer.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..data import DataError, Example
from ..data.files import FORMATS, read_rows
from ..runs import RunRecord

#: Built-in task -> (text columns of its release files, label column): what a file in the task's format holds.
TASK_COLUMNS = {
    "cb": (("premise", "hypothesis"), "label"),
    "rte": (("premise", "hypothesis"), "label"),
    "boolq": (("question", "passage"), "label"),
    "wic": (("word", "sentence1", "sentence2"), "label"),  # formatted by the task's reader
    "wsc": (("text", "target"), "label"),  # formatted by the task's reader
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
#: Tasks whose input is built from several fields by the task's reader (see docs/tasks.md).
FORMATTED_TASKS = ("wic", "wsc")
#: The columns of a plain user file: single texts, and the second text of sentence pairs.
PLAIN_COLUMNS = ("text", "text_pair")


@dataclass
class Inputs:
    """A file's examples (label 0 where unlabelled), their label ids (None: no label column), how the file was read
    and the rows skipped (BOSS's missing-value texts). Unpacks as ``examples, labels = read_inputs(...)``."""

    examples: list[Example]
    labels: np.ndarray | None
    read_as: str
    skipped: int = 0

    def __iter__(self):
        return iter((self.examples, self.labels))


def is_pair_task(record: RunRecord) -> bool:
    """Whether the run's examples are (text, text_pair) sentence pairs."""
    cfg = record.config
    if cfg.task == "files":
        return "," in cfg.text_columns
    return cfg.task in FORMATTED_TASKS or len(TASK_COLUMNS.get(cfg.task, ((),))[0]) == 2


def label_lookup(record: RunRecord) -> dict[str, int]:
    """Accepted spellings of each label -> id: names, unambiguous lower-case names, and the ids ``"0"`` ..
    ``"C-1"`` unless some label name is an integer (then an integer is read as a name only)."""
    names = list(record.data["labels"])
    ids = {name: i for i, name in enumerate(names)}
    lowered = [n.lower() for n in names]
    for i, low in enumerate(lowered):
        if lowered.count(low) == 1:
            ids.setdefault(low, i)
    if not any(re.fullmatch(r"-?\d+", n) for n in names):
        for i in range(len(names)):
            ids.setdefault(str(i), i)
    return ids


def _label_ids(record: RunRecord, rows: list[tuple[str, object]], column: str) -> np.ndarray:
    """Label ids of ``(where, raw label)`` rows, or a DataError naming the row and the run's labels."""
    ids, out = label_lookup(record), []
    names = record.data["labels"]
    for where, raw in rows:
        name = str(raw).strip()
        key = name if name in ids else name.lower()
        if key not in ids:
            raise DataError(f"{where}: unknown label {name!r} in column {column!r}; the run was trained on labels "
                            f"{', '.join(names)} (ids 0-{len(names) - 1})")
        out.append(ids[key])
    return np.array(out, dtype=np.int64)


def file_columns(path: Path) -> list[str]:
    """The column names of a CSV / TSV file's header, or the fields of a JSONL file's first object."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        for line in fh:
            if not line.strip():
                continue
            if suffix == ".jsonl":
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return []  # the reader reports the malformed line
                return list(first) if isinstance(first, dict) else []
            return next(csv.reader([line.rstrip("\r\n")], delimiter="," if suffix == ".csv" else "\t"), [])
    return []


def _release_inputs(record: RunRecord, path: Path, columns: list[str]) -> Inputs | None:
    """The file read by the run's task's own reader, when it is laid out like the task's release files."""
    task, suffix = record.config.task, path.suffix.lower()
    if task.startswith("boss-") and suffix == ".tsv" and [c.strip() for c in columns] == ["Text", "Label"]:
        from ..data.boss import PANDAS_NA
        from ..data.readers import read_delimited

        _, rows = read_delimited(path, "\t")  # BOSS quotes fields (pandas' to_csv); GLUE-style .tsv does not
        kept = [(number, fields) for number, fields in rows if fields[0] not in PANDAS_NA]
        labels = _label_ids(record, [(f"{path}, line {number}", fields[1]) for number, fields in kept], "Label")
        examples = [Example(fields[0], int(y)) for (_, fields), y in zip(kept, labels)]
        return Inputs(examples, labels, "the BOSS release format (Text, Label)", len(rows) - len(kept))
    if task.startswith("cola") and suffix == ".tsv" and len(columns) == 4 and columns[1].strip() in ("0", "1"):
        from ..data.glue import SPECS, read_file

        examples = read_file(SPECS["cola"], path)
        return Inputs(examples, np.array([ex.label for ex in examples], dtype=np.int64),
                      "CoLA's raw release format (source, label, mark, sentence; no header)")
    if task in FORMATTED_TASKS and suffix == ".jsonl" and set(TASK_COLUMNS[task][0]) <= set(columns):
        from ..data.readers import read_jsonl
        from ..data.superglue import SPECS

        spec, records = SPECS[task], read_jsonl(path)
        labelled = "label" in records[0][1]
        examples, raw = [], []
        for number, row in records:
            where = f"{path}, line {number}"
            text, pair = spec.pair(row, where)
            if labelled:
                if "label" not in row:
                    raise DataError(f"{where}: missing field 'label' (the first row has one)")
                raw.append((where, row["label"]))
            examples.append(Example(text, 0, pair))
        labels = _label_ids(record, raw, "label") if labelled else None
        if labels is not None:
            examples = [Example(ex.text, int(y), ex.text_pair) for ex, y in zip(examples, labels)]
        return Inputs(examples, labels,
                      f"the SuperGLUE {spec.folder} release format ({', '.join(TASK_COLUMNS[task][0])})")
    return None


def _default_columns(record: RunRecord, path: Path, columns: list[str]) -> tuple[tuple[str, ...], str]:
    """The text columns (and label column) a file without options is read with, or a DataError saying why."""
    cfg, pair = record.config, is_pair_task(record)
    candidates = []
    if cfg.task == "files":
        candidates.append((tuple(c.strip() for c in cfg.text_columns.split(",")), cfg.label_column))
    elif cfg.task in TASK_COLUMNS and cfg.task not in FORMATTED_TASKS:
        candidates.append(TASK_COLUMNS[cfg.task])
    plain = (PLAIN_COLUMNS if pair else PLAIN_COLUMNS[:1], "label")
    if plain[0] not in [texts for texts, _ in candidates]:
        candidates.append(plain)
    for texts, label in candidates:
        if set(texts) <= set(columns):
            return texts, label
    expected = " or ".join("'" + ",".join(texts) + "'" for texts, _ in candidates)
    if cfg.task in FORMATTED_TASKS:
        expected = f"{cfg.task}'s release fields {', '.join(TASK_COLUMNS[cfg.task][0])} (a .jsonl) or {expected}"
    raise DataError(f"{path}, line 1: has columns {', '.join(columns) or '(none)'}; expected text column(s) "
                    f"{expected} for this run, or pass --text-columns naming them (docs/tasks.md)")


def read_inputs(record: RunRecord, path: str | Path, text_columns: tuple[str, ...] | None = None,
                label_column: str | None = None) -> Inputs:
    """The examples of ``path`` for the run ``record`` and their label ids (see the module docstring)."""
    path = Path(path)
    text_columns = tuple(text_columns) if text_columns else None
    columns = file_columns(path)
    own_texts, own_label = TASK_COLUMNS.get(record.config.task, (None, None))
    if text_columns in (None, own_texts) and label_column in (None, own_label):  # the release's columns, named or not
        release = _release_inputs(record, path, columns)
        if release is not None:
            return release
    if text_columns:
        texts = tuple(text_columns)
        label = label_column or _default_columns_label(record, columns)
        if not 1 <= len(texts) <= 2:
            raise ConfigError(f"--text-columns: expected one column (single texts) or two (sentence pairs), "
                              f"got {len(texts)}: {', '.join(texts)}")
    else:
        texts, label = _default_columns(record, path, columns)
        label = label_column or label
    rows = read_rows(path, texts, label, label_optional=label_column is None)
    labelled = rows[0][2] is not None
    labels = _label_ids(record, [(where, name) for where, _, name in rows], label) if labelled else None
    examples = [Example(t[0], int(labels[i]) if labelled else 0, t[1] if len(t) > 1 else None)
                for i, (_, t, _) in enumerate(rows)]
    read_as = f"columns {', '.join(texts)}" + (f", labels from {label}" if labelled else " (no labels)")
    return Inputs(examples, labels, read_as)


def _default_columns_label(record: RunRecord, columns: list[str]) -> str:
    """The label column when only the text columns are named: the run's (or its release's) if the file has it,
    else ``label``."""
    cfg = record.config
    own = cfg.label_column if cfg.task == "files" else TASK_COLUMNS.get(cfg.task, ((), "label"))[1]
    return own if own in columns else "label"
