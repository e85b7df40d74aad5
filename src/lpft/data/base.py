"""The task interface every data source implements.

A :class:`Task` turns a benchmark (or the user's own files) into three lists of :class:`Example` — ``train``,
``validation`` and ``test`` — using the paper's split rule, plus the label names and the metrics to report.
Everything downstream (model, methods, analysis) sees only ``Example`` objects and integer label ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import DataError as DataError  # re-exported (defined in lpft.errors)

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One classification example, already formatted for the tokenizer.

    ``text_pair`` is the second segment for sentence-pair tasks (passed to the tokenizer as a pair), else ``None``.
    ``label`` is the task's integer label id (see ``Task.labels``).
    """

    text: str
    label: int
    text_pair: str | None = None


@dataclass
class Task:
    """A classification task: label names, metrics, and a loader giving the paper's three splits.

    ``load(split)`` returns a list of :class:`Example` for ``"train"``, ``"validation"`` or ``"test"``.
    ``metrics`` lists metric names understood by :func:`lpft.data.metrics.compute_metrics`; the first one is the
    *primary* metric used to select the best epoch.
    """

    name: str
    labels: tuple[str, ...]
    metrics: tuple[str, ...] = ("accuracy",)
    loader: Callable[[str], list[Example]] | None = field(default=None, repr=False)
    description: str = ""
    # cache of loaded splits, so a task object loads its files once
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    def load(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        if split not in self._cache:
            if self.loader is None:
                raise DataError(f"task {self.name!r} has no loader")
            examples = self.loader(split)
            if not examples:
                raise DataError(f"task {self.name!r}: split {split!r} is empty")
            for i, ex in enumerate(examples):
                if not 0 <= ex.label < self.num_labels:
                    raise DataError(f"task {self.name!r}: {split} row {i} has label id {ex.label}, "
                                    f"expected 0..{self.num_labels - 1}")
            self._cache[split] = examples
        return self._cache[split]


def fingerprint(examples: Sequence[Example]) -> str:
    """A short content hash of a list of examples (used to key feature caches and run records)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.text, ex.text_pair, ex.label]).encode())
    return h.hexdigest()[:16]


def split_train_validation(examples: list[Example], fraction: float = 0.9) -> tuple[list[Example], list[Example]]:
    """The paper's rule: the first ``fraction`` of the official train file is train, the rest validation (no
    shuffle)."""
    cut = int(round(len(examples) * fraction))
    return examples[:cut], examples[cut:]
