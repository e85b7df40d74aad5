"""``lpft study STUDY.toml``: a multi-task study from one versioned file — tasks, methods, seeds, per-task run
options, OOD sets, norm sweeps and eNTKs — run by the local or the Ray executor into one report folder.
``--dry-run`` prints the plan and its price per executor (``lpft.study.cost``) and stops."""

from __future__ import annotations

import argparse
import os

from ..config import ConfigError
from ..workspace import add_workspace_arguments
from ._options import add_executor_arguments, executor_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="STUDY.toml", help="the study file (format: docs/study.md)")
    add_workspace_arguments(parser, defaults={"out": None, "cache_dir": None}, help={
        "out": "folder for run records (overrides the file's 'out'; default runs)",
        "data_dir": "benchmark files folder (overrides the file's 'data_dir')",
        "cache_dir": "feature / probe cache (overrides the file's 'cache_dir'; 'none' disables)"})
    parser.add_argument("--report", default=None,
                        help="report folder (overrides the file's 'report'; default <out>/study/<file name>)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the file, list the runs and eNTKs it needs (finished ones marked) and "
                             "estimate its time per executor, then stop (the first estimate on a machine times the "
                             "model for ~10 s and caches the rates)")
    parser.add_argument("--remeasure", action="store_true",
                        help="with --dry-run: time the model on this machine again and replace the cached rates "
                             "(after they were measured on a busy machine: the estimate says so)")
    parser.add_argument("--gpus", type=int, default=8,
                        help="with --dry-run: the GPUs the GPU estimate spreads the runs over (default 8)")
    parser.add_argument("--gpu-flops", type=float, default=None,
                        help="with --dry-run: effective FLOP/s of one GPU (default 2e13: docs/study.md)")
    add_executor_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..study import NtkJob, load_study, plan, run_study
    from ..study.run import check_outputs
    from ..study.spec import in_study_file

    if args.remeasure and not args.dry_run:
        raise ConfigError("--remeasure times the model for --dry-run's estimate: add --dry-run")
    spec, ws = load_study(args.file, out=args.out, data_dir=args.data_dir, cache_dir=args.cache_dir,
                          device=args.device, report=args.report)
    ws = check_outputs(spec, ws, report_option="--report" if args.report else None,  # an option or the file's key
                       name=lambda field: ("--" + field.replace("_", "-") if getattr(args, field) is not None
                                           else f"{args.file}: {field}"))
    executor = executor_from_args(args)  # a bad executor option (an unreachable --ray-address) fails now
    try:
        planned = plan(spec, ws.data_dir)
    except ConfigError as err:
        raise in_study_file(err, args.file) from None
    jobs, deps = planned.graph()
    done = [job.done(ws) for job in jobs]
    print(f"study {args.file}: {len(spec.tasks)} task(s), {len(jobs)} job(s) ({sum(done)} finished "
          f"already) -> {spec.report}")
    if args.dry_run:
        for job, finished, after in zip(jobs, done, deps):
            # an unfinished eNTK's folder name needs its data (the sample sizes): its pattern, downloading nothing
            folder = job.folder(ws) if finished or not isinstance(job, NtkJob) else job.pattern(ws)
            wait = f"  (after {jobs[after[0]].label})" if after else ""
            print(f"  {'done ' if finished else 'to do'}  {job.label}  {folder}{wait}")
        print_estimate(args, jobs, deps, done, ws)
        return 0
    result = run_study(planned, ws, executor, layout="study")
    print(f"report: {result.report / 'report.md'}")
    return 0


def print_estimate(args, jobs, deps, done, ws) -> None:
    """Time per executor: local (this process's threads), Ray (slots of --cpus-per-run on this machine) and GPUs."""
    from ..study.cost import GPU_FLOPS, cpu_rates, duration, estimate, gpu_rates
    from ..study.executors import run_threads

    todo = [j for j, d in zip(jobs, done) if not d]
    if not todo:
        print("estimate: nothing left to run")
        return
    models = {j.config.model for j in jobs}
    if len(models) > 1:
        print(f"estimate: priced with {sorted(models)[0]}'s rates for every model of the study")
    model = sorted(models)[0]
    cache, device = ws.cache, "cpu"
    profiles: dict = {}
    threads = run_threads(args.threads_per_run, args.cpus_per_run)  # both executors' torch threads per run
    cpus = max(1, int(args.cpus_per_run)) if args.cpus_per_run is not None else threads
    rows = []
    rates = cpu_rates(model, cache, device, threads, remeasure=args.remeasure)  # one thread count for both
    local = estimate(jobs, deps, done, ws, rates, 1, profiles)
    rows.append((f"local, 1 process x {threads} threads", local))
    slots = max(1, (os.cpu_count() or 1) // cpus)
    ray = estimate(jobs, deps, done, ws, rates, slots, profiles)
    rows.append((f"ray, {slots} workers x {cpus} CPU{'s' if cpus > 1 else ''}, {threads} thread"
                 f"{'s' if threads > 1 else ''} each (this machine)", ray))
    gpu = estimate(jobs, deps, done, ws, gpu_rates(model, args.gpu_flops or GPU_FLOPS), args.gpus, profiles)
    rows.append((f"GPU, {args.gpus} GPUs x 1 per run", gpu))
    print(f"estimate for {len(todo)} job(s) left (cost model: docs/study.md, 'The price of a study'):")
    for name, e in rows:
        extra = f"{sum(e.seconds) / 3600:.1f} GPU-hours; " if e.rates.device == "gpu" else ""
        calibrated = f", x{e.factor:.2f} from {e.calibrated_on} finished run(s)" if e.calibrated_on else ""
        print(f"  {name:45s} {duration(e.wall):>14s}  ({extra}rates {e.rates.source}{calibrated})")
    if rates.contention is not None and rates.contention.busy():
        print(f"  warning: the CPU rates were measured on a busy machine ({rates.contention.describe()}): the CPU "
              "estimates are too long by about the load; run again with --remeasure on a quiet machine")
    sources = sorted({p.source for p in profiles.values()})
    if "table" in sources:
        print("  token counts of tasks without local data: lpft.study.cost.TASK_PROFILES (measured on ../shared/data)")
