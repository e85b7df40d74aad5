"""A study grid with the local executor and with Ray, side by side; Ray's scheduling overhead per run; and the share
of the local study's time outside forward / backward passes at full scale.

    python benchmarks/study.py --data-dir ../shared/data            # the issue's benchmark (CB, ~1 h on 2 cores)
    python benchmarks/study.py --seeds 1 --methods lp,ft --epochs 1 --train-subset 48 --eval-subset 16 \\
        --skip-full-scale --data-dir ../shared/data                 # a smoke run (minutes)

1. **Local**: the grid (default CB, 5 methods x 2 seeds, 2 epochs, train subset 96) in this process with 2 torch
   threads (``LocalExecutor``), from scratch (fresh run folder and cache).
2. **Ray**: the same grid from scratch ``--rounds`` times on a local Ray instance with 2 CPUs (``RayExecutor``: 2
   long-lived actors of 1 CPU and 1 thread each, jobs pulled from the dependency graph), fresh folders, cache and
   actors each round; Ray's start-up is timed apart. Overhead per run, two ways: (a) all slot time, (2 x wall - the
   runs' own time inside ``lpft.runs.train``, from metrics.json) / runs, which includes slots idle while the last
   runs finish; (b) beyond the ideal schedule, 2 x (wall - the makespan of the same run times on 2 slots over the
   same dependency graph - the actors' start) / runs: what Ray adds per run (dispatch, result transfer, waits); the
   actors' start (a process per slot importing torch and lpft, once per study) is reported apart. Then the
   study again on Ray and locally with every run reused: the difference per run is the dispatch cost alone.
3. **Full scale**: the same grid on the full training set (no subset) with the local executor, timed by the
   forward / backward / optimiser timers of ``benchmarks/compare.py``: the share of wall time outside forward and
   backward passes (goal <= 10%).

5. **Overhead of one run** (``--overhead-only``): FT on the whole task (default CB, 10 epochs) with the resume
   checkpoint policy of lpft 0.2 (``--checkpoint-every 0``: weights + AdamW state after every epoch, ~270 MB) and
   today's default (every 300 s and on SIGINT / SIGTERM; best weights in memory), alternating over
   ``--overhead-rounds``,
   side by side from each run's ``timing.json`` (lpft.timing: phases adding up to the wall time). "Outside forward /
   backward" = wall - (training forward / backward + validation / test forward passes, the ``eval`` phase) (goal
   <= 5%).

    python benchmarks/study.py --overhead-only --epochs 10 --data-dir ../shared/data

Only training is timed: the report's analysis does not depend on the executor.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import PASS_BUCKETS, Timers, targets  # noqa: E402  (benchmarks/compare.py: the timers)


def grid(args, work: Path, train_subset):
    from lpft.methods.config import RunConfig
    from lpft.study import StudySpec, TaskSpec, Workspace

    base = RunConfig(task=args.task, epochs=args.epochs, train_subset=train_subset, eval_subset=args.eval_subset,
                     max_length=args.max_length)
    spec = StudySpec(tasks=(TaskSpec(args.task, base),), methods=tuple(args.methods.split(",")),
                     seeds=tuple(int(s) for s in args.seeds.split(",")), report=work / "report")
    return spec, Workspace(out=work / "runs", data_dir=args.data_dir, cache_dir=str(work / "cache"), device="cpu")


def run_seconds(folders) -> float:
    from lpft.io import read_json

    return sum(read_json(Path(f) / "metrics.json")["seconds"] for f in folders)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cb")
    parser.add_argument("--methods", default="lp,ft,lp-ft,lora,lp-lora")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=96)
    parser.add_argument("--eval-subset", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (1 CPU, 1 thread each) = local threads")
    parser.add_argument("--rounds", type=int, default=3, help="Ray rounds from scratch (part 2)")
    parser.add_argument("--skip-full-scale", action="store_true", help="skip part 3")
    parser.add_argument("--ray-only", action="store_true",
                        help="part 2 only: the Ray rounds, without the local study and the all-reused rerun")
    parser.add_argument("--keep-models", choices=("on", "off", "both"), default="on",
                        help="part 2: actors keep each model's weights / tokenizer in memory across runs (on, the "
                             "default), read them per run (off, before issue 16), or both, alternating in each round")
    parser.add_argument("--data-dir", default=os.environ.get("LPFT_DATA_DIR", "../shared/data"))
    parser.add_argument("--price-only", metavar="STUDY.toml", nargs="?", const="results/study.toml",
                        help="only part 4: the cost model against a finished study's recorded times "
                             "(default results/study.toml)")
    parser.add_argument("--cache-dir", default=None, help="part 4: where the measured rates are cached")
    parser.add_argument("--overhead-only", action="store_true",
                        help="part 5 only: one FT run's time outside forward / backward, checkpoint every epoch "
                             "against every 300 s")
    parser.add_argument("--overhead-rounds", type=int, default=1, help="part 5: rounds of the two policies")
    parser.add_argument("--ft-train-subset", type=int, default=None,
                        help="part 5: train on the first N examples only (unset: the whole split, the issue's scale)")
    args = parser.parse_args(argv)
    if args.overhead_only:
        return overhead(args)
    if args.price_only:
        price_check(args.price_only, args.data_dir, args.cache_dir)
        return 0

    from lpft.quiet import quiet_libraries
    from lpft.study import LocalExecutor, run_study

    quiet_libraries()
    root = Path(tempfile.mkdtemp(prefix="lpft-bench-study-"))
    ray_overhead(args, root)

    if not args.skip_full_scale and not args.ray_only:
        spec, ws = grid(args, root / "full", None)
        timers = Timers()
        with timers.installed(targets()):
            t0 = time.perf_counter()
            run_study(spec, ws, LocalExecutor(), layout="none")
            total = time.perf_counter() - t0
        passes = sum(timers.seconds[b] for b in PASS_BUCKETS)
        print(f"full {args.task} (no subset), local: {total:8.1f} s; outside forward / backward "
              f"{total - passes:.1f} s = {100 * (total - passes) / total:.1f}%   goal <= 10%")
        for bucket, seconds in sorted(timers.seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {bucket:45s} {seconds:8.1f} s  {100 * seconds / total:5.1f}%")
    return 0


def ray_overhead(args, root: Path) -> None:
    """Parts 1 and 2: the grid locally once, then on Ray ``--rounds`` times from scratch (fresh folders, cache and
    actors; one Ray instance, its start-up timed apart; with ``--keep-models both`` each round runs the actors
    without and with models kept in memory, alternating which goes first), then once more on Ray with every run
    reused. ``--ray-only``: the Ray rounds alone."""
    import statistics

    from lpft.io import read_json
    from lpft.study import LocalExecutor, RayExecutor, import_ray, run_study
    from lpft.study.cost import makespan

    ray = import_ray()
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.keep_models]
    print(f"grid: {args.task}, methods {args.methods}, seeds {args.seeds}, {args.epochs} epoch(s), train subset "
          f"{args.train_subset}; {args.workers} Ray workers x 1 thread against 1 process x {args.workers} threads; "
          f"cpus {os.cpu_count()}; {args.rounds} Ray round(s), models kept in memory: {args.keep_models}; work "
          f"folder {root}; load {os.getloadavg()}", flush=True)
    torch.set_num_threads(args.workers)
    if not args.ray_only:
        spec, ws = grid(args, root / "local", args.train_subset)
        t0 = time.perf_counter()
        local = run_study(spec, ws, LocalExecutor(), layout="none")
        local_wall = time.perf_counter() - t0
        local_inside = run_seconds(local.folders.values())

    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    rounds: dict[bool, list[dict]] = {keep: [] for keep in modes}
    n = 0
    for r in range(args.rounds):
        for keep in (modes if r % 2 == 0 else modes[::-1]):
            spec, ws = grid(args, root / f"ray{r}-{'kept' if keep else 'read'}", args.train_subset)
            t0 = time.perf_counter()
            executor = RayExecutor(cpus_per_run=1, keep_models=keep)
            remote = run_study(spec, ws, executor, layout="none")
            wall = time.perf_counter() - t0
            actors = executor.startup_seconds  # once per study: the slots' processes start, import torch / lpft
            jobs, deps = remote.plan.graph()
            folders = [remote.folders[j.key] for j in jobs]
            n = len(jobs)
            seconds = [run_seconds([f]) for f in folders]
            ideal = makespan(seconds, deps, args.workers)  # the same runs on 2 slots with nothing but their own time
            phases = [read_json(Path(f) / "timing.json")["phases"] for f in folders]
            rounds[keep].append({
                "wall": wall, "inside": sum(seconds), "ideal": ideal, "actors": actors,
                "overhead": (args.workers * wall - sum(seconds)) / n,
                "added": args.workers * (wall - actors - ideal) / n,
                # the actor's time per job outside lpft.runs.train's own clock (job set-up, result), and the
                # reading of the model / tokenizer inside it (timing.json's "model" phase, part of "tokenise")
                "actor_outside": (sum(executor.job_seconds) - sum(seconds)) / n,
                "model": statistics.mean(p["model"] for p in phases),
                "tokenise": statistics.mean(p["tokenise"] for p in phases),
                "load": os.getloadavg()[0]})
            print(f"round {r + 1}, models kept {'on' if keep else 'off'}: ray {wall:.1f} s (actor start "
                  f"{actors:.1f} s), runs' own time {sum(seconds):.1f} s, ideal 2-slot schedule {ideal:.1f} s, "
                  f"load {rounds[keep][-1]['load']:.1f}", flush=True)
    if not args.ray_only:
        t0 = time.perf_counter()  # every run reused: what remains is dispatch + the reuse check, per run
        run_study(spec, ws, RayExecutor(cpus_per_run=1), layout="none")
        ray_rerun = time.perf_counter() - t0
    ray.shutdown()

    def spread(rows: list[dict], key: str, fmt: str = "{:.2f}") -> str:
        values = [r[key] for r in rows]
        return (fmt.format(statistics.mean(values)) + " (" + fmt.format(min(values)) + "-" + fmt.format(max(values))
                + ")")

    print(f"\n=== study benchmark: {n} runs; Ray mean (min-max) over {args.rounds} round(s) ===")
    if not args.ray_only:
        print(f"local, 1 process x {args.workers} threads   {local_wall:8.1f} s  (runs' own time "
              f"{local_inside:.1f} s; outside runs {(local_wall - local_inside) / n:.2f} s per run)")
    for keep, rows in rounds.items():
        mean_run = statistics.mean(r["inside"] for r in rows) / n
        print(f"--- models kept in memory: {'on' if keep else 'off'}")
        print(f"ray, {args.workers} workers x 1 thread      {spread(rows, 'wall', '{:.1f}')} s  (+ {ray_start:.1f} s "
              f"Ray start-up; runs' own time {spread(rows, 'inside', '{:.1f}')} s; mean run {mean_run:.1f} s)")
        print(f"ray overhead per run, all slot time   {spread(rows, 'overhead')} s  = "
              f"{100 * statistics.mean(r['overhead'] for r in rows) / mean_run:.1f}% of a run (includes slots idle "
              f"while the last runs finish)")
        print(f"ray actor start, once per study    {spread(rows, 'actors')} s  (2 processes importing torch and "
              f"lpft, in parallel; a local study pays it once too, when the process starts)")
        print(f"ray overhead per run, beyond the ideal schedule and the actor start   {spread(rows, 'added')} s  = "
              f"{100 * statistics.mean(r['added'] for r in rows) / mean_run:.1f}% of a run   goal <= 0.5 s and "
              f"<= 5%")
        print(f"  per run: model / tokenizer read (timing.json 'model') {spread(rows, 'model')} s, tokenise phase "
              f"{spread(rows, 'tokenise')} s, actor time outside the run's clock {spread(rows, 'actor_outside')} s")
    if not args.ray_only:
        spec, ws = grid(args, root / "local", args.train_subset)
        t0 = time.perf_counter()
        run_study(spec, ws, LocalExecutor(), layout="none")
        local_rerun = time.perf_counter() - t0
        print(f"  of which per-job dispatch      {(ray_rerun - local_rerun) / n:8.2f} s  (all runs reused: Ray "
              f"{ray_rerun:.1f} s against local {local_rerun:.1f} s for {n} runs)")


def price_check(study_file: str, data_dir: str | None, cache_dir: str | None, threads: int = 1) -> None:
    """Part 4: ``lpft study --dry-run``'s cost model against a finished study's recorded run times, read from its
    committed report (``<report>/<task>/runs.csv``: the run folders need not be here). Two predictions: from the
    rates measured on this machine now (``threads`` torch threads: the committed study ran on Ray, 2 workers x 1
    thread), and recalibrated on the smallest task alone (CB's runs: recorded / predicted), which tests the
    model's shape (tokens, batch sizes, epochs, methods) on the six other tasks."""
    import csv
    from collections import defaultdict

    from lpft.study import load_study, plan
    from lpft.study.cost import cpu_rates, job_seconds
    from lpft.study.jobs import TrainJob

    spec, ws = load_study(study_file, data_dir=data_dir, cache_dir=cache_dir)
    jobs, _ = plan(spec, ws.data_dir).graph()
    jobs = [j for j in jobs if isinstance(j, TrainJob)]
    rates = cpu_rates(jobs[0].config.model, Path(cache_dir) if cache_dir else None, "cpu", threads)
    predicted = job_seconds(jobs, [False] * len(jobs), ws, rates, {})
    recorded = {}
    for task in spec.tasks:
        with open(Path(spec.report) / task.name / "runs.csv") as f:
            for row in csv.DictReader(f):
                recorded[Path(row["folder"]).name] = float(row["seconds"])
    by_task = defaultdict(lambda: [0.0, 0.0, 0])
    for job, seconds in zip(jobs, predicted):
        actual = recorded.get(job.folder(ws).name)
        if actual is not None:
            cell = by_task[job.config.task]
            cell[0], cell[1], cell[2] = cell[0] + seconds, cell[1] + actual, cell[2] + 1
    first = spec.tasks[0].config.task
    factor = by_task[first][1] / by_task[first][0]
    print(f"\n=== price: {study_file}, {sum(c[2] for c in by_task.values())} of {len(jobs)} training runs with a "
          f"recorded time (eNTK jobs record none in the report) ===")
    print(f"rates: {rates.source}, {threads} thread(s): step {rates.ft[0]:.3f} s + {1e3 * rates.ft[1]:.3f} ms/token "
          f"(FT), forward {1e3 * rates.forward:.3f} ms/token; recalibrated on {first}: x{factor:.2f}")
    print(f"{'task':10s} {'runs':>4s} {'recorded':>10s} {'predicted':>10s} {'ratio':>6s} "
          f"{'calibrated':>10s} {'ratio':>6s}")
    total = [0.0, 0.0]
    for task, (p, a, n) in by_task.items():
        print(f"{task:10s} {n:4d} {a:9.0f}s {p:9.0f}s {p / a:6.2f} {p * factor:9.0f}s {p * factor / a:6.2f}")
        if task != first:
            total = [total[0] + p, total[1] + a]
    p, a = total
    print(f"{'others':10s} {'':4s} {a:9.0f}s {p:9.0f}s {p / a:6.2f} {p * factor:9.0f}s {p * factor / a:6.2f}"
          f"   goal: calibrated ratio within 0.75-1.25")


def overhead(args) -> int:
    """Part 5: one FT run's phases (timing.json) under the two checkpoint policies, rounds alternating."""
    from lpft.io import read_json
    from lpft.methods.config import RunConfig
    from lpft.quiet import quiet_libraries
    from lpft.runs import train
    from lpft.timing import PHASES

    quiet_libraries()
    torch.set_num_threads(args.workers)
    root = Path(tempfile.mkdtemp(prefix="lpft-bench-overhead-"))
    policies = {"every epoch (0.2)": 0.0, "every 300 s": 300.0}
    timings = {name: [] for name in policies}
    print(f"FT on {args.task} (train subset {args.ft_train_subset or 'none: whole split'}), {args.epochs} epochs, "
          f"{args.workers} threads, load "
          f"{os.getloadavg()[0]:.1f}; work folder {root}", flush=True)
    for r in range(args.overhead_rounds):
        order = list(policies) if r % 2 == 0 else list(policies)[::-1]
        for name in order:
            cfg = RunConfig(task=args.task, method="ft", epochs=args.epochs, eval_subset=args.eval_subset,
                            train_subset=args.ft_train_subset, max_length=args.max_length,
                            checkpoint_every=policies[name])
            folder = train(cfg, out=root / f"r{r}-{policies[name]:g}", data_dir=args.data_dir, cache_dir=None,
                           device="cpu")
            timings[name].append(read_json(folder / "timing.json"))
    print(f"\n=== one FT run, {args.overhead_rounds} round(s), load now {os.getloadavg()[0]:.1f} ===")
    print(f"{'phase':18s}" + "".join(f"{name:>26s}" for name in policies))
    for ph in (*PHASES, "other"):
        cells = []
        for name in policies:
            secs = [t["phases"][ph] for t in timings[name]]
            walls = [t["wall_seconds"] for t in timings[name]]
            cells.append(f"{sum(secs) / len(secs):9.1f} s {100 * sum(secs) / sum(walls):5.1f}%")
        print(f"{ph:18s}" + "".join(f"{c:>26s}" for c in cells))
    for label, inside in (("outside forward / backward", ("forward_backward", "eval")),
                          ("outside training steps + eval", ("forward_backward", "optimizer", "eval"))):
        cells = []
        for name in policies:
            shares = [100 * (t["wall_seconds"] - sum(t["phases"][p] for p in inside)) / t["wall_seconds"]
                      for t in timings[name]]
            cells.append(f"{min(shares):.1f}-{max(shares):.1f}%" if len(shares) > 1 else f"{shares[0]:.1f}%")
        print(f"{label:30s}" + "".join(f"{c:>20s}" for c in cells))
    walls = {name: [t["wall_seconds"] for t in timings[name]] for name in policies}
    print("wall per run                  " + "".join(f"{', '.join(f'{w:.1f}' for w in walls[n]) + ' s':>20s}"
                                                     for n in policies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
