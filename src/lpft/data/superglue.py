"""SuperGLUE tasks: CB, RTE, BoolQ, WiC, WSC.

Local layout (the official SuperGLUE JSONL release, one JSON object per line)::

    <data_dir>/CB/train.jsonl, val.jsonl      premise, hypothesis, label "entailment" | "contradiction" | "neutral"
    <data_dir>/RTE/...                        premise, hypothesis, label "entailment" | "not_entailment"
    <data_dir>/BoolQ/...                      question, passage, label true | false
    <data_dir>/WiC/...                        word, sentence1, sentence2, start1, end1, start2, end2, label true | false
    <data_dir>/WSC/...                        text, target {span1_text, span2_text, ...}, label true | false

Without a local folder the tasks come from the hub (``super_glue`` / ``aps/super_glue``; WSC is ``wsc.fixed``).

Fixed label ids::

    cb      entailment=0, contradiction=1, neutral=2
    rte     entailment=0, not_entailment=1
    boolq   False=0, True=1
    wic     False=0, True=1
    wsc     False=0, True=1

Boolean labels may be JSON booleans or the strings "true"/"false" (any case). Formatting as (text, text_pair):
CB/RTE (premise, hypothesis); BoolQ (question, passage); WiC (f"{word}: {sentence1}", sentence2);
WSC (text, f'Does "{span2_text}" refer to "{span1_text}"?'). Splits follow the paper: ``val.jsonl`` is the test
split, ``train.jsonl`` is cut 9:1 (in file order) into train / validation. Metric: accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base import DataError, Example, Task
from .hub import hub_reader
from .readers import paper_loader, read_jsonl, require_file, short, task_folder, text_field

BOOL_LABELS = ("False", "True")


def _premise_hypothesis(row: dict, where: str) -> tuple[str, str]:
    return text_field(row, "premise", where), text_field(row, "hypothesis", where)


def _boolq(row: dict, where: str) -> tuple[str, str]:
    # the question leads, so truncation to the model's length limit cuts the passage, not the question
    return text_field(row, "question", where), text_field(row, "passage", where)


def _wic(row: dict, where: str) -> tuple[str, str]:
    word = text_field(row, "word", where)
    return f"{word}: {text_field(row, 'sentence1', where)}", text_field(row, "sentence2", where)


def _wsc(row: dict, where: str) -> tuple[str, str]:
    # the JSONL release nests the spans under "target"; hub rows have them at the top level
    spans, prefix = row, ""
    if "target" in row:
        spans, prefix = row["target"], "target."
        if not isinstance(spans, dict):
            raise DataError(f"{where}: field 'target' is {type(spans).__name__}, expected an object "
                            f"with span1_text and span2_text")
    span1 = text_field(spans, "span1_text", where, prefix + "span1_text")
    span2 = text_field(spans, "span2_text", where, prefix + "span2_text")
    return text_field(row, "text", where), f'Does "{span2}" refer to "{span1}"?'


@dataclass(frozen=True)
class _Spec:
    folder: str
    hub_config: str
    labels: tuple[str, ...]
    pair: Callable[[dict, str], tuple[str, str]]
    title: str


SPECS = {
    "cb": _Spec("CB", "cb", ("entailment", "contradiction", "neutral"), _premise_hypothesis, "SuperGLUE CB"),
    "rte": _Spec("RTE", "rte", ("entailment", "not_entailment"), _premise_hypothesis, "SuperGLUE RTE"),
    "boolq": _Spec("BoolQ", "boolq", BOOL_LABELS, _boolq, "SuperGLUE BoolQ"),
    "wic": _Spec("WiC", "wic", BOOL_LABELS, _wic, "SuperGLUE WiC"),
    "wsc": _Spec("WSC", "wsc.fixed", BOOL_LABELS, _wsc, "SuperGLUE WSC"),
}


def label_id(labels: tuple[str, ...], raw: object, where: str) -> int:
    """The fixed id of a raw label value from a JSONL row."""
    if labels == BOOL_LABELS:
        if isinstance(raw, bool):
            return int(raw)
        if isinstance(raw, str) and raw.lower() in ("false", "true"):
            return int(raw.lower() == "true")
        expected = "true or false"
    else:
        if isinstance(raw, str) and raw in labels:
            return labels.index(raw)
        expected = "one of " + ", ".join(labels)
    raise DataError(f"{where}: unknown label {short(raw)}; expected {expected}")


def read_file(spec: _Spec, path: Path) -> list[Example]:
    """All labelled examples of one SuperGLUE JSONL file."""
    examples = []
    for number, row in read_jsonl(path):
        where = f"{path}, line {number}"
        text, pair = spec.pair(row, where)
        if "label" not in row:
            raise DataError(f"{where}: missing field 'label' (unlabelled test files cannot be used)")
        examples.append(Example(text, label_id(spec.labels, row["label"], where), pair))
    return examples


def superglue_task(name: str, data_dir: Path | None) -> Task:
    """The SuperGLUE task ``name`` (a key of :data:`SPECS`) from ``data_dir``, or from the hub when it is None."""
    spec = SPECS[name]
    if data_dir is None:
        read = hub_reader(name, [("super_glue", spec.hub_config), ("aps/super_glue", spec.hub_config)],
                          spec.labels, spec.pair)
        loader = paper_loader(lambda: read("train"), lambda: read("validation"))
        where = f"the Hugging Face hub (super_glue/{spec.hub_config})"
    else:
        folder = task_folder(data_dir, spec.folder)
        loader = paper_loader(
            lambda: read_file(spec, require_file(folder / "train.jsonl", name, "train file")),
            lambda: read_file(spec, require_file(folder / "val.jsonl", name, "validation file (the test split)")))
        where = str(folder)
    return Task(name, spec.labels, ("accuracy",), loader, f"{spec.title} from {where}")
