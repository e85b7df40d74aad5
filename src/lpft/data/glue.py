"""GLUE tasks: CoLA (plus ``cola-id`` and ``cola-ood``), SST-2, MRPC.

Local layout (the original release files, tab-separated, no quoting, UTF-8 with or without a BOM)::

    <data_dir>/SST-2/train.tsv, dev.tsv       header "sentence<TAB>label", label 0 | 1
    <data_dir>/MRPC/train.tsv, dev.tsv        header "Quality, #1 ID, #2 ID, #1 String, #2 String", Quality 0 | 1
    <data_dir>/CoLA/cola_public/raw/in_domain_train.tsv, in_domain_dev.tsv, out_of_domain_dev.tsv
                                              no header; source, label 0 | 1, original mark, sentence

Without a local folder the tasks come from the hub (``glue`` / ``nyu-mll/glue``).

Fixed label ids::

    cola, cola-id, cola-ood   unacceptable=0, acceptable=1
    sst2                      negative=0, positive=1
    mrpc                      not_paraphrase=0, paraphrase=1

Splits follow the paper: the official validation (dev) set is the test split and the train file is cut 9:1 (in
file order) into train / validation. GLUE's CoLA validation set is the in-domain dev file (527 rows) followed by the
out-of-domain dev file (516 rows), so ``cola`` tests on both, concatenated in that order (1043 rows). Two extra
variants have the same train / validation and test on one part only, so in-domain and out-of-distribution results
can be compared on the same model: ``cola-id`` (in-domain dev) and ``cola-ood`` (out-of-domain dev). On the hub,
GLUE's CoLA validation split (1043 rows) is used whole for ``cola`` and cut after its first 527 rows for the others.
Formatting: SST-2 and CoLA single sentences; MRPC (#1 String, #2 String). Metrics: CoLA ("mcc", "accuracy"),
MRPC ("accuracy", "f1"), SST-2 ("accuracy",).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import DataError, Example, Task
from .hub import hub_reader
from .readers import column_index, paper_loader, read_tsv, require_file, short, task_folder, text_field

COLA_RAW = "cola_public/raw"
COLA_COLUMNS = ("source", "label", "original mark", "sentence")
# GLUE's CoLA validation = in_domain_dev (527 rows) + out_of_domain_dev (516 rows), in that order
COLA_IN_DOMAIN_DEV, COLA_OUT_OF_DOMAIN_DEV = 527, 516


@dataclass(frozen=True)
class _Spec:
    folder: str
    train: str  # file paths relative to the task folder
    test: tuple[str, ...]  # concatenated in this order
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    columns: tuple[str, ...]  # header names of the text columns (CoLA: positions in COLA_COLUMNS)
    label_column: str
    hub_config: str
    hub_fields: tuple[str, ...]
    title: str


SPECS = {
    "cola": _Spec("CoLA", f"{COLA_RAW}/in_domain_train.tsv",
                  (f"{COLA_RAW}/in_domain_dev.tsv", f"{COLA_RAW}/out_of_domain_dev.tsv"),
                  ("unacceptable", "acceptable"), ("mcc", "accuracy"), ("sentence",), "label",
                  "cola", ("sentence",), "GLUE CoLA (in-domain + out-of-domain test)"),
    "cola-id": _Spec("CoLA", f"{COLA_RAW}/in_domain_train.tsv", (f"{COLA_RAW}/in_domain_dev.tsv",),
                     ("unacceptable", "acceptable"), ("mcc", "accuracy"), ("sentence",), "label",
                     "cola", ("sentence",), "GLUE CoLA (in-domain test)"),
    "cola-ood": _Spec("CoLA", f"{COLA_RAW}/in_domain_train.tsv", (f"{COLA_RAW}/out_of_domain_dev.tsv",),
                      ("unacceptable", "acceptable"), ("mcc", "accuracy"), ("sentence",), "label",
                      "cola", ("sentence",), "GLUE CoLA (out-of-domain test)"),
    "sst2": _Spec("SST-2", "train.tsv", ("dev.tsv",), ("negative", "positive"), ("accuracy",),
                  ("sentence",), "label", "sst2", ("sentence",), "GLUE SST-2"),
    "mrpc": _Spec("MRPC", "train.tsv", ("dev.tsv",), ("not_paraphrase", "paraphrase"), ("accuracy", "f1"),
                  ("#1 String", "#2 String"), "Quality", "mrpc", ("sentence1", "sentence2"), "GLUE MRPC"),
}


def read_file(spec: _Spec, path: Path) -> list[Example]:
    """All examples of one GLUE TSV file (labels are the digits 0 / 1 in every GLUE file used here)."""
    is_cola = spec.folder == "CoLA"
    columns, rows = read_tsv(path, header=not is_cola)
    if is_cola:
        columns = list(COLA_COLUMNS)
    text_at = [column_index(path, columns, c) for c in spec.columns]
    label_at = column_index(path, columns, spec.label_column)
    examples = []
    for number, fields in rows:
        if len(fields) != len(columns):  # header files are checked by read_tsv; this catches CoLA
            raise DataError(f"{path}, line {number}: expected {len(columns)} tab-separated fields "
                            f"({', '.join(columns)}), got {len(fields)}")
        raw = fields[label_at].strip()
        if raw not in ("0", "1"):
            raise DataError(f"{path}, line {number}: unknown label {short(raw)} in column {spec.label_column!r}; "
                            f"expected 0 ({spec.labels[0]}) or 1 ({spec.labels[1]})")
        texts = [fields[i] for i in text_at]
        examples.append(Example(texts[0], int(raw), texts[1] if len(texts) > 1 else None))
    return examples


def _hub_pair(spec: _Spec):
    def pair(row: dict, where: str) -> tuple[str, str | None]:
        texts = [text_field(row, f, where) for f in spec.hub_fields]
        return texts[0], texts[1] if len(texts) > 1 else None
    return pair


def _hub_test(name: str, read) -> list[Example]:
    """The hub validation split; for ``cola-id`` / ``cola-ood`` only its in-domain / out-of-domain part."""
    rows = read("validation")
    if not name.startswith("cola"):
        return rows
    expected = COLA_IN_DOMAIN_DEV + COLA_OUT_OF_DOMAIN_DEV
    if len(rows) != expected:
        raise DataError(f"task {name!r}: hub CoLA validation has {len(rows)} rows, expected {expected} "
                        f"({COLA_IN_DOMAIN_DEV} in-domain then {COLA_OUT_OF_DOMAIN_DEV} out-of-domain)")
    return {"cola": rows, "cola-id": rows[:COLA_IN_DOMAIN_DEV], "cola-ood": rows[COLA_IN_DOMAIN_DEV:]}[name]


def _read_test(spec: _Spec, folder: Path, name: str) -> list[Example]:
    """The test split from local files: every dev file of ``spec.test``, in order (all are checked to exist first)."""
    paths = [require_file(folder / f, name, "dev file (the test split)") for f in spec.test]
    return [ex for path in paths for ex in read_file(spec, path)]


def glue_task(name: str, data_dir: Path | None) -> Task:
    """The GLUE task ``name`` (a key of :data:`SPECS`) from ``data_dir``, or from the hub when it is None."""
    spec = SPECS[name]
    if data_dir is None:
        read = hub_reader(name, [("glue", spec.hub_config), ("nyu-mll/glue", spec.hub_config)],
                          spec.labels, _hub_pair(spec))
        loader = paper_loader(lambda: read("train"), lambda: _hub_test(name, read))
        where = f"the Hugging Face hub (glue/{spec.hub_config})"
    else:
        folder = task_folder(data_dir, spec.folder)
        loader = paper_loader(
            lambda: read_file(spec, require_file(folder / spec.train, name, "train file")),
            lambda: _read_test(spec, folder, name))
        where = str(folder)
    return Task(name, spec.labels, spec.metrics, loader, f"{spec.title} from {where}")
