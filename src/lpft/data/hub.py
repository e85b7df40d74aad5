"""Loading GLUE / SuperGLUE tasks from the Hugging Face hub when no local data folder is given.

The hub's integer label ids coincide with this package's fixed ids for every task (e.g. CB entailment=0,
contradiction=1, neutral=2; MRPC not_equivalent=0, equivalent=1), so hub labels are used as they are, after a
range check. ``datasets`` is imported only here and only when needed: it is slow to import.
"""

from __future__ import annotations

from typing import Callable

from .base import DataError, Example
from .readers import DATA_DIR_ENV, one_line


def hub_reader(task: str, candidates: list[tuple[str, str]], labels: tuple[str, ...],
               convert: Callable[[dict, str], tuple[str, str | None]]) -> Callable[[str], list[Example]]:
    """A function ``read(hub_split) -> list[Example]`` over the first dataset id in ``candidates`` that loads.

    ``candidates`` are ``(repo id, config)`` pairs tried in order (the canonical name first, then the namespaced
    repo the canonical name now points to). The dataset is fetched once, on the first read.
    ``convert(row, where)`` returns ``(text, text_pair)`` for one row.
    """
    fetched: dict = {}

    def dataset():
        if not fetched:
            fetched["source"], fetched["data"] = _load(task, candidates)
        return fetched["source"], fetched["data"]

    def read(split: str) -> list[Example]:
        source, data = dataset()
        if split not in data:
            raise DataError(f"task {task!r}: hub dataset {source} has no {split!r} split "
                            f"(has: {', '.join(data.keys())})")
        rows = data[split]
        feature = getattr(rows, "features", {}).get("label")
        names = getattr(feature, "names", None)
        if names is not None and len(names) != len(labels):
            raise DataError(f"task {task!r}: hub dataset {source} has {len(names)} label names {names}, "
                            f"expected {len(labels)} ({', '.join(labels)})")
        examples = []
        # to_list converts the Arrow table in one go; iterating a Dataset row by row is much slower
        for i, row in enumerate(rows.to_list() if hasattr(rows, "to_list") else rows):
            where = f"hub {source} {split} row {i + 1}"
            text, pair = convert(row, where)
            label = row.get("label")
            # unlabelled hub rows (the leaderboard test splits) carry -1
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(labels):
                raise DataError(f"{where}: label {label!r} is not a label id 0..{len(labels) - 1} "
                                f"({', '.join(labels)})")
            examples.append(Example(text, label, pair))
        if not examples:
            raise DataError(f"task {task!r}: hub dataset {source} split {split!r} is empty")
        return examples

    return read


def _load(task: str, candidates: list[tuple[str, str]]):
    """``(source name, DatasetDict)`` from the first candidate that loads; one-line DataError if none does."""
    reason = "no dataset id to try"
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a declared dependency
        reason = one_line(e)
    else:
        for repo, config in candidates:
            try:
                return f"{repo}/{config}", datasets.load_dataset(repo, config)
            except Exception as e:  # noqa: BLE001 - network, auth and format errors all mean "not available"
                reason = one_line(e)
                # an unreachable hub fails every id the same way, after the hub client's own retries (~25 s):
                # only a dataset-level error (e.g. a retired script-based id) is worth trying the next id for
                if _is_network_error(e):
                    break
    raise DataError(f"task {task!r}: no local data folder given (--data-dir or {DATA_DIR_ENV}) and the Hugging Face "
                    f"hub is unreachable: {reason}")


def _is_network_error(error: BaseException) -> bool:
    """True for connection / timeout errors (builtin ones and the HTTP clients' own classes, matched by name)."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return any("Connection" in cls.__name__ or "Timeout" in cls.__name__ for cls in type(error).__mro__)
