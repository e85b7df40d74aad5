"""The data layer: benchmark tasks and the user's own files as :class:`Task` objects with the paper's splits.

>>> from lpft.data import get_task
>>> task = get_task("cb", "/path/to/data")          # doctest: +SKIP
>>> task.labels, len(task.load("train"))            # doctest: +SKIP
(('entailment', 'contradiction', 'neutral'), 225)

See ``docs/tasks.md`` for the task table (label ids, metrics, sources, split sizes).
"""

from .base import SPLITS, DataError, Example, Task, fingerprint, split_train_validation
from .files import files_task
from .metrics import compute_metrics
from .registry import EXTRA_TASK_NAMES, TASK_NAMES, canonical_name, get_task

__all__ = ["Example", "Task", "DataError", "get_task", "files_task", "TASK_NAMES", "EXTRA_TASK_NAMES",
           "canonical_name", "compute_metrics", "fingerprint", "split_train_validation", "SPLITS"]
