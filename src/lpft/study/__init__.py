"""The study layer: the one place that decides what gets trained.

A study description (:class:`StudySpec`: CLI options or a TOML file, :func:`load_study`) becomes run configs and
eNTK jobs (:func:`plan`: validated up front, LP trained once per model / task / data), which an executor runs
(:class:`LocalExecutor` in this process, :class:`RayExecutor` across Ray workers); ``report/`` then renders what the
run folders hold. ``lpft compare``, ``lpft norm-sweep``, ``lpft ntk`` and ``lpft study`` all come through here.
"""

import importlib

# name -> submodule. Loaded on first use (PEP 562), so that the CLI's parsers can read lpft.study.spec without
# importing the executors, the planner and the training code behind them (torch, transformers, scikit-learn).
_EXPORTS = {
    **dict.fromkeys(["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "import_ray", "make_executor"],
                    "executors"),
    **dict.fromkeys(["NtkJob", "TrainJob"], "jobs"),
    # not "plan.py": importing a submodule binds its name on the package, which would shadow the function plan
    **dict.fromkeys(["Plan", "Slot", "plan", "probe_key", "study_configs", "sweep_configs"], "planning"),
    **dict.fromkeys(["StudyResult", "run_study"], "run"),
    **dict.fromkeys(["NtkSpec", "StudySpec", "SweepSpec", "TaskSpec", "Workspace", "load_study"], "spec"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
