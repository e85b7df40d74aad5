"""Executors run jobs (training runs, eNTKs) and return their folders; they never change what a job computes.

- ``LocalExecutor``: one job after another in this process (the default).
- ``RayExecutor``: one long-lived Ray actor per slot (``cpus_per_run`` / ``gpus_per_run`` resources each), on a local
  Ray instance or a running cluster (``address="auto"``). Each actor imports torch and lpft once and pulls jobs from
  the driver's queue; a job starts as soon as a slot is free and the jobs it depends on (its linear probe) are done,
  so nothing waits for a wave. An actor whose process dies mid-run is restarted by Ray and its job retried
  (``max_retries``); the run resumes from its last finished epoch (``lpft.runs.train``), so a study ends with the
  same numbers as an uninterrupted local one. Errors in a job (bad data, bad options) are not retried.

Run folders and caches are written under the workspace's ``out`` / ``cache_dir``: on a cluster every worker must see
them (a shared mount); nothing is copied between machines.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol, Sequence

from tqdm.auto import tqdm

from ..config import ConfigError
from ..options import EXECUTORS  # noqa: F401  (re-exported)
from .spec import Workspace

RAY_MISSING = "--executor ray needs Ray: pip install -e '.[ray]'"


class Executor(Protocol):
    def run(self, jobs: Sequence, ws: Workspace, deps: Sequence[tuple[int, ...]] | None = None) -> list[Path]:
        """Run every job (a finished one is reused) after the jobs it depends on (``deps[i]``: indices into
        ``jobs``, which lists a job after its dependencies); the folders in the jobs' order."""


def _line(i: int, total: int, job, folder: Path, reused: bool, seconds: float) -> str:
    """One progress line with the job's own time."""
    return (f"[{i}/{total}] {job.label}: {job.summary(folder)} "
            f"({'reused' if reused else 'done'}, {seconds:.0f} s)")


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class LocalExecutor:
    """One job after another in this process, in the given order (dependencies come first)."""

    def run(self, jobs: Sequence, ws: Workspace, deps: Sequence[tuple[int, ...]] | None = None) -> list[Path]:
        folders = []
        bar = tqdm(jobs, desc="study", unit="run", disable=not jobs)
        for i, job in enumerate(bar, 1):
            bar.set_postfix_str(job.label)
            reused, t0 = job.done(ws), time.perf_counter()
            folders.append(Path(job.execute(ws)))
            tqdm.write(_line(i, len(jobs), job, folders[-1], reused, time.perf_counter() - t0))
        return folders


def import_ray():
    """Ray, or the one-line ConfigError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def _worker_env() -> dict[str, str]:
    """What a worker needs to import this lpft and behave like the driver: our sources first on PYTHONPATH (a
    shared path on a cluster), the offline / cache / test-hook settings."""
    import lpft

    src = str(Path(lpft.__file__).resolve().parents[1])
    path = [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    env = {"PYTHONPATH": os.pathsep.join(path), "TOKENIZERS_PARALLELISM": "false"}
    for key, value in os.environ.items():
        if key.startswith(("LPFT_", "HF_")):
            env[key] = value
    return env


class _Worker:
    """A Ray actor: one slot's process, alive across jobs, so torch, transformers and lpft are imported once. It runs
    in the caller's directory where this machine has it: files a run config names relatively (--train-file, OOD
    files) are part of its run key, so they are resolved there, not rewritten."""

    def __init__(self, threads: int, cwd: str | None = None):
        import torch

        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        from ..cli import _quiet_libraries

        _quiet_libraries()
        torch.set_num_threads(threads)

    def ready(self) -> bool:
        return True

    def execute(self, job, ws: Workspace) -> tuple[str, float]:
        started = time.perf_counter()
        return str(job.execute(ws)), time.perf_counter() - started


class RayExecutor:
    """One actor per slot pulling jobs in dependency order; progress (done / running / failed) in the terminal as
    with the local executor."""

    def __init__(self, address: str | None = None, cpus_per_run: float = 1, gpus_per_run: float = 0,
                 max_retries: int = 3, num_cpus: int | None = None):
        if cpus_per_run <= 0:
            raise ConfigError(f"--cpus-per-run must be > 0, got {cpus_per_run}")
        if gpus_per_run < 0:
            raise ConfigError(f"--gpus-per-run must be >= 0, got {gpus_per_run}")
        if max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0, got {max_retries}")
        self.ray = import_ray()
        self.address, self.cpus, self.gpus, self.max_retries = address, cpus_per_run, gpus_per_run, max_retries
        self.num_cpus = num_cpus
        self.startup_seconds = 0.0  # the last run's actor start (process, imports), once per slot before any job

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:  # a local instance for this study, as many CPUs as the machine has unless told
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
        total = ray.cluster_resources()
        if total.get("CPU", 0) < self.cpus or total.get("GPU", 0) < self.gpus:
            raise ConfigError(f"the Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs: "
                              f"fewer than one run needs (--cpus-per-run {self.cpus:g}, --gpus-per-run {self.gpus:g})")

    def slots(self) -> int:
        """How many runs the cluster holds at once: its CPUs (and GPUs) divided by what one run reserves."""
        total = self.ray.cluster_resources()
        slots = int(total.get("CPU", 1) // self.cpus)
        if self.gpus:
            slots = min(slots, int(total.get("GPU", 0) // self.gpus))
        return max(1, slots)

    def run(self, jobs: Sequence, ws: Workspace, deps: Sequence[tuple[int, ...]] | None = None) -> list[Path]:
        if not jobs:
            return []
        deps = list(deps or [()] * len(jobs))
        self._connect()
        ray = self.ray
        worker = ray.remote(_Worker).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=self.max_retries,
            max_task_retries=self.max_retries, runtime_env={"env_vars": _worker_env()})
        ws = ws.absolute()  # Ray workers start in their own directory: relative paths would miss the files
        reused = [job.done(ws) for job in jobs]
        folders: list[Path | None] = [None] * len(jobs)
        failures: list[tuple[int, BaseException]] = []
        finished = 0
        bar = tqdm(total=len(jobs), desc="study (ray)", unit="run")

        def report(i: int, error: BaseException | None = None, seconds: float = 0.0) -> None:
            nonlocal finished
            finished += 1
            if error is None:
                tqdm.write(_line(finished, len(jobs), jobs[i], folders[i], reused[i], seconds))
            else:
                failures.append((i, error))
                tqdm.write(f"[{finished}/{len(jobs)}] {jobs[i].label}: FAILED: {_first_line(error)}")
            bar.update(1)

        for i in [i for i, done in enumerate(reused) if done]:  # finished: reused here, no worker needed
            folders[i] = Path(jobs[i].execute(ws))
            report(i)
        queue = [i for i, done in enumerate(reused) if not done]  # in order: dependencies come first
        running: dict = {}  # object ref -> (job index, actor)
        started = time.perf_counter()
        idle = [worker.remote(max(1, int(self.cpus)), os.getcwd()) for _ in range(min(self.slots(), len(queue)))]
        try:
            ray.get([actor.ready.remote() for actor in idle])
            self.startup_seconds = time.perf_counter() - started
            while queue or running:
                for i in [i for i in queue if any(j in dict(failures) for j in deps[i])]:
                    queue.remove(i)  # its probe failed: it cannot start
                    failed = next(j for j in deps[i] if j in dict(failures))
                    report(i, ConfigError(f"not run: {jobs[failed].label}, which it starts from, failed"))
                while idle:
                    ready = next((i for i in queue if all(folders[j] is not None for j in deps[i])), None)
                    if ready is None:
                        break
                    queue.remove(ready)
                    actor = idle.pop()
                    running[actor.execute.remote(jobs[ready], ws)] = (ready, actor)
                bar.set_postfix_str(f"done {finished - len(failures)}, running {len(running)}, "
                                    f"failed {len(failures)}")
                if not running:
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in done:
                    i, actor = running.pop(ref)
                    idle.append(actor)
                    try:
                        folder, seconds = ray.get(ref)
                        folders[i] = Path(folder)
                        report(i, seconds=seconds)
                    except Exception as err:  # noqa: BLE001 - reported together below
                        report(i, getattr(err, "cause", None) or err)
        finally:
            bar.close()
            for actor in idle + [a for _, a in running.values()]:
                ray.kill(actor)
        if failures:
            i, cause = failures[0]
            message = f"{len(failures)} of {len(jobs)} runs failed; first, {jobs[i].label}: {_first_line(cause)}"
            from ..data.base import DataError
            from ..model import ModelError

            for kind in (ConfigError, DataError, ModelError):
                if isinstance(cause, kind):
                    raise kind(message)
            raise RuntimeError(message) from cause
        return folders  # type: ignore[return-value]


def make_executor(name: str = "local", **options) -> Executor:
    """``local`` or ``ray`` (options: address, cpus_per_run, gpus_per_run, max_retries, num_cpus)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(**options)
    raise ConfigError(f"--executor {name!r} is unknown: expected one of {', '.join(EXECUTORS)}")
