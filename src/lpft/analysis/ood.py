"""Out-of-distribution evaluation of a finished run: its own test split (ID) beside extra test sets (OOD).

An extra set is either a registered task name (its test split; e.g. ``cola-ood`` for a CoLA run) or a CSV / TSV /
JSONL file read by :func:`lpft.inference.inputs.read_inputs` (the one reader of ``lpft predict``: the run's task
release format, its own columns or ``text`` / ``label``; labels as names or ids). Either way its labels must be the
run's, so that label id k means the same class: a task with another label set, or a file row with an unknown label,
is a DataError naming it.
For every set: the run's task metrics, and Table 1's feature statistics of the trained model against the
pre-trained one on that set (CS, Diff, FDR), so one can see whether features moved less where accuracy held.

A set may lack some of the run's classes (a negative / positive file for a 3-class sentiment model): every
prediction of an absent class is then wrong, so beside the full accuracy each row has ``accuracy_present``, the
accuracy of the argmax over the classes present in the set, and ``missing_classes`` names the absent ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import DataError, compute_metrics, get_task
from ..data.files import FORMATS
from ..data.subsets import take
from ..runs import RunRecord
from .features import feature_statistics
from .run_features import EvalSet, encode_examples, head_logits, run_features, run_split


def is_file_spec(spec: str) -> bool:
    return Path(spec).suffix.lower() in FORMATS


def resolve_eval_set(record: RunRecord, spec: str, data_dir: str | None = None,
                     text_columns: tuple[str, ...] | None = None, label_column: str | None = None,
                     limit: int | None = None) -> EvalSet:
    """An extra evaluation set from a task name or a file path (``limit`` examples if given: a label-stratified
    sample in file order with the fixed subset seed, as ``--eval-subset`` draws, so a file sorted by label keeps
    its classes)."""
    if is_file_spec(spec):
        from ..inference.inputs import read_inputs

        inputs = read_inputs(record, spec, text_columns, label_column)
        if inputs.labels is None:
            raise DataError(f"{spec}: no label column (read as {inputs.read_as}); an evaluation set needs labels: "
                            "pass --label-column")
        name, examples = Path(spec).stem, inputs.examples
    else:
        task = get_task(spec, data_dir)
        if list(task.labels) != list(record.data["labels"]):
            raise DataError(f"task {task.name!r} has labels {', '.join(task.labels)} but run {record.path} was "
                            f"trained on {', '.join(record.data['labels'])}: expected the same label set")
        name, examples = task.name, task.load("test")
    return encode_examples(record, name, take(examples, limit, "stratified"))


def evaluate_set(record: RunRecord, eval_set: EvalSet, role: str, cache_dir=None, device: str | None = None) -> dict:
    """Metrics and feature statistics of the run on one set; ``role`` is "ID", "OOD" or "ID+OOD"."""
    phi = run_features(record, eval_set, "trained", cache_dir, device=device)
    phi0 = run_features(record, eval_set, "pretrained", cache_dir, device=device)
    logits = head_logits(record, phi)
    metrics = compute_metrics(record.data["metrics"], eval_set.labels, logits)
    stats = feature_statistics(phi, eval_set.labels, F0=phi0)
    before = feature_statistics(phi0, eval_set.labels)
    return {"set": eval_set.name, "role": role, "n": len(eval_set.labels), **metrics,
            **present_class_accuracy(logits, eval_set.labels, record.data["labels"]),
            "cs": stats["cs"], "diff": stats["diff"], "fdr": stats["fdr"],
            "cs_pretrained": before["cs"], "fdr_pretrained": before["fdr"]}


def present_class_accuracy(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """``accuracy_present``: accuracy of the argmax over the classes that occur in ``labels`` (the full accuracy when
    all do); ``missing_classes``: the absent classes' names joined by ``;`` (empty when none).

    >>> logits = np.array([[0.0, 1.0, 5.0], [1.0, 0.0, 5.0]])   # "neutral" wins both, but the set has no neutral
    >>> present_class_accuracy(logits, np.array([1, 0]), ["negative", "positive", "neutral"])
    {'accuracy_present': 1.0, 'missing_classes': 'neutral'}
    """
    present = np.unique(labels)
    predicted = present[np.asarray(logits)[:, present].argmax(axis=1)]
    missing = [name for i, name in enumerate(names) if i not in set(present.tolist())]
    return {"accuracy_present": float(np.mean(predicted == labels)), "missing_classes": ";".join(missing)}


def evaluate_ood(record: RunRecord, specs: list[str], data_dir: str | None = None, cache_dir=None,
                 text_columns: tuple[str, ...] | None = None, label_column: str | None = None,
                 limit: int | None = None, device: str | None = None) -> list[dict]:
    """One row for the run's own test split and one per extra set, in that order, each with its role
    (:func:`set_role`).

    Every set is resolved (files read, labels checked) before any features are computed, so a bad set fails fast.
    """
    extra = [resolve_eval_set(record, spec, data_dir, text_columns, label_column, limit) for spec in specs]
    rows = [evaluate_set(record, run_split(record, "test", data_dir), set_role(record.config.task, record.config.task),
                         cache_dir, device)]
    rows += [evaluate_set(record, s, set_role(record.config.task, spec if not is_file_spec(spec) else None),
                          cache_dir, device) for spec, s in zip(specs, extra)]
    return rows


# Registered test sets whose domain relative to their family's training data is known: (family, role). CoLA trains on
# in-domain sentences; its test split is the in-domain dev set followed by the out-of-domain one, and cola-id /
# cola-ood are the two parts. BOSS trains on Amazon reviews: Amazon test sets are in-distribution, the others not.
DOMAIN = {"cola": ("cola", "ID+OOD"), "cola-id": ("cola", "ID"), "cola-ood": ("cola", "OOD"),
          **{f"boss-{name}{full}": ("boss", "ID" if name == "amazon" else "OOD")
             for name in ("amazon", "dynasent", "semeval", "sst5") for full in ("", "-full")}}


def set_role(run_task: str, task: str | None) -> str:
    """"ID", "OOD" or "ID+OOD" for the test split of registered ``task`` (``None``: a user file) next to a run
    trained on ``run_task``. A run's own task is in-distribution (CoLA's mixed test split: ID+OOD); a set of the same
    family (``DOMAIN``) has its known role (``cola-id`` next to a CoLA run, ``boss-amazon-full`` next to a
    ``boss-amazon`` run: ID); any other set, and every file, is what ``--ood`` says it is: OOD.

    >>> [set_role("cola", t) for t in ("cola", "cola-id", "cola-ood", "sst2", None)]
    ['ID+OOD', 'ID', 'OOD', 'OOD', 'OOD']
    >>> set_role("bbc-news", "bbc-news"), set_role("cola-ood", "cola-id"), set_role("boss-amazon", "boss-sst5")
    ('ID', 'ID', 'OOD')
    """
    if task is None:
        return "OOD"
    task, run_task = task.lower(), run_task.lower()
    family, role = DOMAIN.get(task, (None, "ID"))
    if task == run_task:
        return "ID+OOD" if role == "ID+OOD" else "ID"
    return role if family is not None and DOMAIN.get(run_task, (None,))[0] == family else "OOD"

