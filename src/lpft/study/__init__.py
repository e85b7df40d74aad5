"""The study layer: the one place that decides what gets trained.

A study description (:class:`StudySpec`: CLI options or a TOML file, :func:`load_study`) becomes run configs and
eNTK jobs (:func:`plan`: validated up front, LP trained once per model / task / data), which an executor runs
(:class:`LocalExecutor` in this process, :class:`RayExecutor` across Ray workers); ``report/`` then renders what the
run folders hold. ``lpft compare``, ``lpft norm-sweep``, ``lpft ntk`` and ``lpft study`` all come through here.
"""

from .executors import EXECUTORS, Executor, LocalExecutor, RayExecutor, import_ray, make_executor
from .jobs import NtkJob, TrainJob
from .plan import Plan, Slot, plan, probe_key, study_configs, sweep_configs
from .run import StudyResult, run_study
from .spec import NtkSpec, StudySpec, SweepSpec, TaskSpec, Workspace, load_study

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "import_ray", "make_executor", "NtkJob",
           "TrainJob", "Plan", "Slot", "plan", "probe_key", "study_configs", "sweep_configs", "StudyResult",
           "run_study", "NtkSpec", "StudySpec", "SweepSpec", "TaskSpec", "Workspace", "load_study"]
