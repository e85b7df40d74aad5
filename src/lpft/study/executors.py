"""Executors run jobs (training runs, eNTKs) and return their folders; they never change what a job computes.

- ``LocalExecutor``: one job after another in this process (the default).
- ``RayExecutor``: each job is a Ray task with ``cpus_per_run`` / ``gpus_per_run`` resources, on a local Ray
  instance or a running cluster (``address="auto"``). A worker that dies mid-run is retried by Ray
  (``max_retries``) and the run resumes from its last finished epoch (``lpft.runs.train``), so a study ends with the
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
    def run(self, jobs: Sequence, ws: Workspace, start: int = 0, total: int | None = None) -> list[Path]:
        """Run every job (a finished one is reused); the folders in the jobs' order. ``start`` / ``total`` number
        the progress lines when a study hands over its jobs in several waves."""


def _line(i: int, total: int, job, folder: Path, reused: bool, seconds: float, when: str = "") -> str:
    """One progress line; ``seconds`` is the job's own time (local) or the time since the wave started (Ray)."""
    return (f"[{i}/{total}] {job.label}: {job.summary(folder)} "
            f"({'reused' if reused else 'done'}, {when + ' ' if when else ''}{seconds:.0f} s)")


class LocalExecutor:
    """Today's loop: one job after another in this process."""

    def run(self, jobs: Sequence, ws: Workspace, start: int = 0, total: int | None = None) -> list[Path]:
        folders = []
        bar = tqdm(jobs, desc="study", unit="run", disable=not jobs)
        for i, job in enumerate(bar, start + 1):
            bar.set_postfix_str(job.label)
            reused, t0 = job.done(ws), time.perf_counter()
            folders.append(Path(job.execute(ws)))
            tqdm.write(_line(i, total or len(jobs), job, folders[-1], reused, time.perf_counter() - t0))
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


def _execute_in_worker(job, ws: Workspace, threads: int, cwd: str | None = None) -> str:
    """Runs inside a Ray worker process, in the caller's directory where this machine has it: files a run config
    names relatively (--train-file, OOD files) are part of its run key, so they are resolved there, not rewritten."""
    import os

    import torch

    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)

    from ..cli import _quiet_libraries

    _quiet_libraries()
    torch.set_num_threads(threads)
    return str(job.execute(ws))


class RayExecutor:
    """Each job is a Ray task; progress (done / running / failed) in the terminal as with the local executor."""

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

    def run(self, jobs: Sequence, ws: Workspace, start: int = 0, total: int | None = None) -> list[Path]:
        total = total or len(jobs)
        if not jobs:
            return []
        self._connect()
        ray = self.ray
        task = ray.remote(_execute_in_worker).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries, retry_exceptions=False,
            runtime_env={"env_vars": _worker_env()})
        threads = max(1, int(self.cpus))
        ws = ws.absolute()  # Ray workers start in their own directory: relative paths would miss the files
        reused = [job.done(ws) for job in jobs]
        started = time.perf_counter()
        pending = {task.remote(job, ws, threads, os.getcwd()): i for i, job in enumerate(jobs)}
        folders: list[Path | None] = [None] * len(jobs)
        failures: list[tuple[int, BaseException]] = []
        capacity = max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus))
        bar = tqdm(total=len(jobs), desc="study (ray)", unit="run")
        done = 0
        while pending:
            bar.set_postfix_str(f"done {done}, running {min(len(pending), capacity)}, failed {len(failures)}")
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    folders[i] = Path(ray.get(ref))
                    done += 1
                    tqdm.write(_line(start + done + len(failures), total, jobs[i], folders[i], reused[i],
                                     time.perf_counter() - started, "at"))
                except Exception as err:  # noqa: BLE001 - reported together below
                    cause = getattr(err, "cause", None) or err
                    failures.append((i, cause))
                    tqdm.write(f"[{start + done + len(failures)}/{total}] {jobs[i].label}: FAILED: "
                               f"{str(cause).splitlines()[0] if str(cause) else type(cause).__name__}")
                bar.update(1)
        bar.set_postfix_str(f"done {done}, running 0, failed {len(failures)}")
        bar.close()
        if failures:
            i, cause = failures[0]
            message = f"{len(failures)} of {len(jobs)} runs failed; first, {jobs[i].label}: " \
                      f"{str(cause).splitlines()[0] if str(cause) else type(cause).__name__}"
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
