"""Executors run jobs (training runs, eNTKs) and return their folders; they never change what a job computes.

- ``LocalExecutor``: one job after another in this process (the default).
- ``RayExecutor``: one long-lived Ray actor per slot (``cpus_per_run`` / ``gpus_per_run`` resources each), on a local
  Ray instance or a running cluster (``address="auto"``). Each actor imports torch and lpft and reads the study's
  pretrained models once, as it starts, then pulls jobs from the driver's queue; a job starts as soon as a slot is
  free and the jobs it depends on (its linear probe) are done, so nothing waits for a wave. An actor whose process
  dies mid-run is restarted by Ray and its job retried (``max_retries``); the run resumes from its last finished
  epoch (``lpft.runs.train``), so a study ends with the same numbers as an uninterrupted local one. Errors in a job
  (bad data, bad options) are not retried.

Both keep each pretrained model's weights and tokenizer in memory across jobs (``lpft.model.memory``: read from
disk once per process, every run built from a pristine copy; ``keep_models=False`` reads them per run as before).

Both run every job with the same number of torch threads (:func:`run_threads`): CPU kernels sum in an order that
depends on the thread count, so only then are local and Ray results bit-identical.

Run folders and caches are written under the workspace's ``out`` / ``cache_dir``: on a cluster every worker must see
them (a shared mount); nothing is copied between machines.
"""

from __future__ import annotations

import math
import os
import socket
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Protocol, Sequence

from tqdm.auto import tqdm

from ..config import ConfigError
from ..errors import LpftError, reworded
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


def run_threads(threads: int | None = None, cpus_per_run: float | None = None) -> int:
    """The torch threads every job uses, under either executor: ``threads`` if given, else ``cpus_per_run``
    (rounded down, at least 1), else torch's default in this process (the machine's cores)."""
    import torch

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"--threads-per-run must be an integer >= 1, got {threads!r}")
        return threads
    if cpus_per_run is not None:
        _check_resource(cpus_per_run, "--cpus-per-run", positive=True)
        return max(1, int(cpus_per_run))
    return torch.get_num_threads()


def _check_resource(value, option: str, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (value <= 0 if positive else value < 0):
        raise ConfigError(f"{option} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")


@contextmanager
def torch_threads(n: int):
    """Run the body with ``n`` torch threads, then restore the caller's setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalExecutor:
    """One job after another in this process, in the given order (dependencies come first), each with
    ``threads_per_run`` torch threads."""

    def __init__(self, threads_per_run: int | None = None, cpus_per_run: float | None = None,
                 keep_models: bool = True):
        self.threads = run_threads(threads_per_run, cpus_per_run)
        self.keep_models = keep_models

    def run(self, jobs: Sequence, ws: Workspace, deps: Sequence[tuple[int, ...]] | None = None) -> list[Path]:
        from ..model.memory import keep_pretrained

        folders = []
        bar = tqdm(jobs, desc="study", unit="run", disable=not jobs)
        with keep_pretrained() if self.keep_models else nullcontext():
            for i, job in enumerate(bar, 1):
                bar.set_postfix_str(job.label)
                reused, t0 = job.done(ws), time.perf_counter()
                with torch_threads(self.threads):
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
    """A Ray actor: one slot's process, alive across jobs, so torch, transformers and lpft are imported once, and the
    study's pretrained models (``models``) read once into memory, before its first job (``lpft.model.memory``;
    none: every run reads its model from disk). It runs
    in the caller's directory where this machine has it: files a run config names relatively (--train-file, OOD
    files) are part of its run key, so they are resolved there, not rewritten."""

    def __init__(self, threads: int, cwd: str | None = None, models: Sequence[str] = ()):
        import torch

        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        from .. import runs  # noqa: F401  (what every job imports: transformers, peft, scikit-learn; once per slot)
        from ..model.memory import keep_pretrained, preload
        from ..quiet import quiet_libraries

        quiet_libraries()
        torch.set_num_threads(threads)
        self._kept = keep_pretrained() if models else nullcontext()  # held: collecting it would close it
        self._kept.__enter__()  # for the actor's life: each model's weights and tokenizer are read once per slot,
        preload(models)  # here, while the other slots start too, not in the slot's first job

    def ready(self) -> bool:
        return True

    def execute(self, job, ws: Workspace) -> tuple[str, float]:
        started = time.perf_counter()
        return str(job.execute(ws)), time.perf_counter() - started


class RayExecutor:
    """One actor per slot pulling jobs in dependency order; progress (done / running / failed) in the terminal as
    with the local executor."""

    def __init__(self, address: str | None = None, cpus_per_run: float | None = None, gpus_per_run: float = 0,
                 max_retries: int = 3, num_cpus: int | None = None, threads_per_run: int | None = None,
                 keep_models: bool = True):
        self.threads = run_threads(threads_per_run, cpus_per_run)
        cpus_per_run = self.threads if cpus_per_run is None else cpus_per_run  # one CPU per thread unless told
        _check_resource(cpus_per_run, "--cpus-per-run", positive=True)
        _check_resource(gpus_per_run, "--gpus-per-run", positive=False)
        if max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0, got {max_retries}")
        self.ray = import_ray()
        if address:
            check_ray_address(address)  # seconds, not the minutes ray.init retries for
        self.address, self.cpus, self.gpus, self.max_retries = address, cpus_per_run, gpus_per_run, max_retries
        self.num_cpus, self.keep_models = num_cpus, keep_models
        self.startup_seconds = 0.0  # the last run's actor start (process, imports), once per slot before any job
        self.job_seconds: list[float] = []  # the last run's seconds per job inside its actor (0 for reused jobs)

    def _connect(self) -> None:
        import logging

        ray = self.ray
        if ray.is_initialized():
            return
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # Ray's INFO / WARNING lines stay off stderr
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:  # a local instance for this study, as many CPUs as the machine has unless told
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, **quiet)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"--ray-address {self.address or '(local instance)'}: cannot connect to Ray: "
                              f"{_first_line(err).strip()}") from None
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
        self.job_seconds = [0.0] * len(jobs)
        folders: list[Path | None] = [None] * len(jobs)
        failures: list[tuple[int, BaseException]] = []
        finished = 0
        bar = tqdm(total=len(jobs), desc="study (ray)", unit="run")

        def report(i: int, error: BaseException | None = None, seconds: float = 0.0) -> None:
            nonlocal finished
            finished += 1
            if error is None:  # (folders[i] was set just before: a job reports without an error once it returned it)
                tqdm.write(_line(finished, len(jobs), jobs[i], folders[i], reused[i], seconds))  # type: ignore[arg-type]
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
        models = [m for m in dict.fromkeys(getattr(jobs[i].config, "model", None) for i in queue) if m] \
            if self.keep_models else []
        idle = [worker.remote(self.threads, os.getcwd(), models) for _ in range(min(self.slots(), len(queue)))]
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
                        folders[i], self.job_seconds[i] = Path(folder), seconds
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
            if isinstance(cause, LpftError):  # a user error in a job: one line of the same kind, as a local run gives
                raise reworded(cause, message)
            raise RuntimeError(message) from cause
        return folders  # type: ignore[return-value]


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) that does not answer within ``timeout`` seconds is a ConfigError
    now: ``ray.init`` would retry for minutes. ``auto`` is left to Ray (it fails fast without a cluster)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected 'auto' or HOST:PORT of a running Ray cluster")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ConfigError(f"--ray-address {address}: nothing answers there ({err.strerror or err}); start the "
                          "cluster (ray start --head) or leave --ray-address unset for a local instance") from None


def make_executor(name: str = "local", **options) -> Executor:
    """``local`` (options: threads_per_run, cpus_per_run, keep_models) or ``ray`` (also address, gpus_per_run,
    max_retries, num_cpus)."""
    if name == "local":
        return LocalExecutor(options.get("threads_per_run"), options.get("cpus_per_run"),
                             options.get("keep_models", True))
    if name == "ray":
        return RayExecutor(**options)
    raise ConfigError(f"--executor {name!r} is unknown: expected one of {', '.join(EXECUTORS)}")
