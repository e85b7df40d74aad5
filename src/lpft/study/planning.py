"""A study description → the run configs and eNTK jobs it needs: validated up front, deduplicated, ordered.

- LP does not depend on the seed or the fine-tuning schedule (``RunConfig.resolved`` normalises those options for
  method lp), so one LP run per (model, task, data) serves every seed.
- LP-FT and LP-LoRA start from the same probe, computed once and shared through the feature / probe cache; the
  plan runs one probe per (model, task, data) first and makes every job that starts from it wait for it
  (``Plan.graph``), so parallel workers reuse it.
- Every option, OOD set and setting is checked before anything runs: bad input is one ConfigError / DataError.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError
from ..data import SPLITS, DataError, get_task
from ..keys import job_key
from ..keys import probe_key as probe_key  # re-exported (defined in lpft.keys)
from ..methods.config import METHODS, RunConfig
from ..ntk.sampling import SAMPLINGS
from ..ntk.stats import KERNEL_SCALINGS
from .jobs import Job, NtkJob, TrainJob
from .spec import StudySpec

SWEEP_MODES = ("norm", "scale")
SWEEP_METHODS = tuple(m for m in METHODS if m != "lp")  # LP has no FT stage to start
NTK_OPTIMIZERS = ("adamw", "sgd")


def study_configs(base: RunConfig, methods, seeds) -> list[RunConfig]:
    """Resolved configs, seed-major (one seed's LP-based runs share the probe right away); all validated first.
    LP appears once per seed here; its configs are equal (seed-free), so the plan trains it once."""
    methods = list(dict.fromkeys(m.strip().lower() for m in methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"--methods: {unknown[0] if unknown else '(none)'!r} is not a method: expected a "
                          f"comma-separated list of {', '.join(METHODS)}")
    if not seeds:
        raise ConfigError("--seeds: expected at least one seed")
    return [dataclasses.replace(base, method=m, seed=s).resolved() for s in dict.fromkeys(seeds) for m in methods]


def sweep_configs(base: RunConfig, methods, values, seeds, mode: str = "norm") -> list[RunConfig]:
    """One resolved config per (method, value, seed), validated before anything runs."""
    if mode not in SWEEP_MODES:
        raise ConfigError(f"sweep mode {mode!r} is unknown: expected one of {', '.join(SWEEP_MODES)}")
    bad = [m for m in methods if m not in SWEEP_METHODS]
    if bad:
        raise ConfigError(f"--methods: {bad[0]!r} cannot be swept (no FT stage to rescale): expected some of "
                          f"{', '.join(SWEEP_METHODS)}")
    if not methods or not values or not seeds:
        raise ConfigError("a sweep needs at least one method, one norm and one seed")
    if any(not v > 0 for v in values):
        raise ConfigError(f"--norms must all be > 0, got {', '.join(str(v) for v in values)}")

    def point(value: float) -> dict:
        return {"head_norm": value, "head_scale": None} if mode == "norm" else {"head_norm": None, "head_scale": value}

    return [dataclasses.replace(base, method=m, seed=s, **point(v)).resolved()
            for m in methods for v in values for s in seeds]


def ntk_configs(base: RunConfig, methods, seeds) -> list[RunConfig]:
    if "lp" in methods:
        raise ConfigError("--method lp has no fine-tuning stage, so no FT eNTK: use ft, lp-ft, lora or lp-lora")
    return study_configs(base, methods, seeds)


@dataclass
class Slot:
    """One cell of a task's methods × seeds grid and the run that fills it (LP: the same run for every seed)."""

    method: str
    seed: int
    config: RunConfig


@dataclass
class Plan:
    spec: StudySpec
    compare: dict[str, list[Slot]] = field(default_factory=dict)  # task name -> grid
    sweep: dict[str, list[RunConfig]] = field(default_factory=dict)  # task name -> sweep runs
    ntk: dict[str, list[NtkJob]] = field(default_factory=dict)  # task name -> eNTK jobs

    def train_configs(self) -> list[RunConfig]:
        """Every distinct run, in plan order."""
        configs = [s.config for slots in self.compare.values() for s in slots]
        configs += [c for runs in self.sweep.values() for c in runs]
        return list({job_key("TrainJob", c): c for c in configs}.values())

    def graph(self) -> tuple[list[Job], list[tuple[int, ...]]]:
        """Every job once, in the order to start them, and for each the indices of the jobs it waits for. A job
        that starts from a linear probe (LP-FT, LP-LoRA, their eNTKs) waits for the one job that computes its probe
        (an LP run where the grid has one: it computes the probe cheapest), then finds it in the cache; nothing else
        waits for anything. Probes come first, so they are ready early; then what needs no probe."""
        configs = self.train_configs()
        probes: dict[str, RunConfig] = {}
        for cfg in sorted(configs, key=lambda c: c.method != "lp"):
            if cfg.uses_lp:
                probes.setdefault(probe_key(cfg), cfg)
        ntk = [j for jobs in self.ntk.values() for j in jobs]
        first = list(probes.values())
        jobs: list[Job] = []
        jobs += [TrainJob(c) for c in probes.values()] + [TrainJob(c) for c in configs if not c.uses_lp]
        jobs += [j for j in ntk if not j.config.uses_lp]
        jobs += [TrainJob(c) for c in configs if c.uses_lp and c not in first] + [j for j in ntk if j.config.uses_lp]
        index = {key: i for i, key in enumerate(probes)}
        # an eNTK job with no training run in the plan (`lpft ntk` alone) computes its probe itself: nothing to wait for
        deps: list[tuple[int, ...]] = [(index[probe_key(j.config)],) if j.config.uses_lp and i >= len(probes)
                and probe_key(j.config) in index else () for i, j in enumerate(jobs)]
        return jobs, deps


def plan(spec: StudySpec, data_dir: str | None = None) -> Plan:
    """Validate the whole study and turn it into runs; raises before anything is written."""
    if spec.split not in SPLITS:
        raise ConfigError(f"--split {spec.split!r} is unknown: expected one of {', '.join(SPLITS)}")
    if spec.tsne_samples < 4:
        raise ConfigError(f"--tsne-samples must be >= 4, got {spec.tsne_samples}")
    if spec.gd_max_steps < 1:
        raise ConfigError(f"--gd-max-steps must be >= 1, got {spec.gd_max_steps}")
    if not spec.tasks:
        raise ConfigError("--tasks: expected at least one task")
    names = [t.name for t in spec.tasks]
    result = Plan(spec)
    for task in spec.tasks:
        check_data(task.config, data_dir)
        if spec.compare:
            methods = task.methods or spec.methods
            configs = study_configs(task.config, methods, spec.seeds)
            grid = itertools.product(dict.fromkeys(spec.seeds), dict.fromkeys(m.strip().lower() for m in methods))
            result.compare[task.name] = [Slot(m, s, c) for (s, m), c in zip(grid, configs)]
            check_ood_sets(task.ood, configs[0], data_dir)
        else:
            task.config.resolved()
    if spec.sweep is not None:
        s = spec.sweep
        if s.split not in SPLITS:
            raise ConfigError(f"--split {s.split!r} is unknown: expected one of {', '.join(SPLITS)}")
        for name in _subset(s.tasks, names, "norm_sweep"):
            result.sweep[name] = sweep_configs(spec.task(name).config, [m.lower() for m in s.methods], s.values,
                                               s.seeds or spec.seeds, s.mode)
    for n in spec.ntk:
        for key, least in (("n_train", 2), ("n_test", 1)):  # kernel regression cross-validates over >= 2 samples
            if getattr(n, key) < least:
                raise ConfigError(f"--{key.replace('_', '-')} must be >= {least}, got {getattr(n, key)}")
        if n.sample not in SAMPLINGS:
            raise ConfigError(f"--sample {n.sample!r} is unknown: expected one of {', '.join(SAMPLINGS)}")
        if n.kernel_scaling not in KERNEL_SCALINGS:
            raise ConfigError(f"--kernel-scaling {n.kernel_scaling!r} is unknown: expected one of "
                              f"{', '.join(KERNEL_SCALINGS)}")
        if n.embedding_fraction is not None and not 0 < n.embedding_fraction <= 1:
            raise ConfigError(f"--embedding-fraction must be in (0, 1], got {n.embedding_fraction}")
        if n.sketch is not None and n.sketch < 1:
            raise ConfigError(f"--sketch must be >= 1 (the projection's dimension K), got {n.sketch}")
        if n.memory_budget is not None and n.memory_budget < MIN_MEMORY_BUDGET:
            # below this the gradient blocks shrink to slivers and the plan runs for hours instead of failing
            raise ConfigError(f"--memory-budget must be >= {MIN_MEMORY_BUDGET} bytes (64 MiB), got "
                              f"{n.memory_budget}")
        if n.predict_optimizer not in NTK_OPTIMIZERS:
            raise ConfigError(f"--predict-optimizer {n.predict_optimizer!r} is unknown: expected one of "
                              f"{', '.join(NTK_OPTIMIZERS)}")
        bad = [v for v in n.head_norms if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ConfigError(f"ntk head_norms must be finite and > 0, got {bad[0]}")
        for name in _subset(n.tasks, names, "ntk"):
            configs = ntk_configs(spec.task(name).config, [m.lower() for m in n.methods], n.seeds or spec.seeds[:1])
            if n.head_norms:  # claim 5: the same starts with the head rescaled, as `lpft ntk --head-norm`
                configs = [dataclasses.replace(c, head_norm=v) for c in configs for v in n.head_norms]
            jobs = result.ntk.setdefault(name, [])
            jobs += [j for j in (NtkJob(c, n) for c in configs) if j not in jobs]
    return result


#: the smallest --memory-budget a command accepts (the library's LogitGradients takes any, for tests)
MIN_MEMORY_BUDGET = 64 * 2**20


def _subset(chosen, names: list[str], table: str) -> list[str]:
    if chosen is None:
        return names
    unknown = [t for t in chosen if t not in names]
    if unknown:
        raise ConfigError(f"[{table}] tasks: {unknown[0]!r} is not one of the study's tasks ({', '.join(names)})")
    return list(chosen)


def check_data(cfg: RunConfig, data_dir: str | None = None) -> None:
    """The task exists (an unknown name is a DataError now, not in every worker later); a user-file task's files
    are read and checked."""
    from ..data.registry import canonical_name
    from ..runs import load_task

    if cfg.task.lower() == "files":
        load_task(cfg.resolved(), data_dir).load("train")
    else:
        canonical_name(cfg.task)


def check_ood_sets(ood, cfg: RunConfig, data_dir: str | None = None) -> None:
    """Fail before any training on an OOD set that cannot be used: a missing file, an unknown task, other labels."""
    from ..analysis.ood import is_file_spec
    from ..runs import load_task

    if not ood:
        return
    labels = list(load_task(cfg, data_dir).labels)
    for spec in ood:
        if is_file_spec(spec):
            if not Path(spec).is_file():
                raise DataError(f"--ood: {spec}: file not found")
        elif list(get_task(spec, data_dir).labels) != labels:
            raise DataError(f"--ood: task {spec!r} has labels {', '.join(get_task(spec, data_dir).labels)}, "
                            f"expected the labels of task {cfg.task!r}: {', '.join(labels)}")
