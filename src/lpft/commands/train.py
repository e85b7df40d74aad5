"""``lpft train``: one method on one task; prints the final metrics table."""

from __future__ import annotations

import argparse
import sys
import time

from ..config import add_config_arguments, config_from_args
from ..methods.config import RunConfig
from ..workspace import Workspace, add_workspace_arguments

DESCRIPTION = ("Writes the run folder <out>/<task>/<method>/<model>-seed<seed>-<key>/ (default out: runs) and "
               "prints its path; a finished run with the same options is reused, an interrupted one resumes. "
               "LP is seed-free: one LP run (folder seed0) serves every --seed; --ood evaluates the finished run "
               "like lpft evaluate.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .evaluate import OOD_HELP

    add_config_arguments(parser, RunConfig)
    add_workspace_arguments(parser)
    parser.add_argument("--ood", nargs="+", default=None, metavar="SET",
                        help=OOD_HELP + "; evaluated once the run is finished, report in <run>/evaluation (as "
                                        "lpft evaluate RUN --ood SET ...)")


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_time(folder, metrics: dict, started: float) -> str:
    """The run's own training time; for a finished run reused from an earlier command, say so (this command took
    only the time to check and read it)."""
    from pathlib import Path

    seconds = metrics.get("seconds")
    trained = f"trained in {seconds:.0f} s" if seconds is not None else "training time not recorded"
    reused = (Path(folder) / "metrics.json").stat().st_mtime < started
    return f"{trained} (reused from an earlier command)" if reused else trained


def run(args: argparse.Namespace) -> int:
    from ..runs import RunRecord, train

    cfg = config_from_args(RunConfig, args).resolved()  # once: train() and what it calls keep it resolved
    given_seed = args.seed
    ood = None
    if args.ood:
        from ..study.planning import check_ood_sets
        from ._options import parse_list

        ood = parse_list(args.ood, "--ood", what="a task name or file")
        check_ood_sets(ood, cfg, args.data_dir)  # a missing file or other labels: before training
    if cfg.method == "lp" and given_seed != 0:
        print(f"LP is seed-free (a deterministic probe on frozen features): --seed {given_seed} trains the one LP run, "
              "folder seed0, that serves every seed", file=sys.stderr)
    started = time.time()
    ws = Workspace.from_args(args)
    folder = train(cfg, out=ws.out, data_dir=ws.data_dir, cache_dir=ws.cache_dir, device=ws.device)
    record = RunRecord(folder)
    c = record.config
    names = list(record.metrics["test"])
    rows = [["split"] + names]
    for split in ("val", "test"):
        rows.append([split] + [f"{record.metrics[split][n]:.4f}" for n in names])
    seed = "seed-free: serves every seed" if c.method == "lp" else f"seed {c.seed}"
    print(f"\n{c.method.upper()} on {c.task} ({c.model}, {seed}): best epoch {record.metrics['best_epoch']}, "
          f"{run_time(folder, record.metrics, started)}")
    print(format_table(rows))
    print(f"run folder: {folder}")
    if ood:
        from .evaluate import evaluate_and_report

        print()
        evaluate_and_report(record, ood, folder / "evaluation", ws.data_dir, ws.cache, device=ws.device)
    return 0
