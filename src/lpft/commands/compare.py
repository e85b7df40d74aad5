"""``lpft compare``: the paper's study on one task (or several with --tasks) — train what is missing, then write
the report folder."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..methods.config import METHODS
from ..workspace import Workspace, add_workspace_arguments
from ._options import (
    add_executor_arguments,
    add_study_arguments,
    base_config,
    executor_from_args,
    parse_list,
)
from .train import format_table

DESCRIPTION = ("Trains the runs that are missing under <out>/<task>/ (finished runs are reused) and writes "
               "report.md, CSV files and figures to --report (unset: <out>/<task>/report; with --tasks: "
               "<out>/study/<task>+<task>..., a section per task and a cross-task table).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods to compare")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; tables give mean ± std over them")
    parser.add_argument("--report", default=None,
                        help="report folder, replaced whole when finished; unset: <out>/<task>/report "
                             "(with --tasks: <out>/study/<task>+<task>...)")
    parser.add_argument("--split", default="test",
                        help="split for feature statistics and t-SNE (train, validation or test)")
    parser.add_argument("--ood", nargs="+", default=[], metavar="SET",
                        help="extra test sets: task names (e.g. cola-ood) or CSV / TSV / JSONL files with the "
                             "task's label names")
    parser.add_argument("--tsne-samples", type=int, default=500, help="t-SNE uses the first N examples of --split")
    parser.add_argument("--gd-max-steps", type=int, default=100_000,
                        help="cap on full-batch gradient-descent steps of the LP curve")
    add_study_arguments(parser, multi_task=True)
    add_workspace_arguments(parser)
    add_executor_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..report.compare import LABEL
    from ..report.tables import fmt_mean_std, fmt_percent, read_csv
    from ..study import StudySpec, TaskSpec, run_study

    base = (base_config(args) if args.task
            else base_config(args, task=parse_list(args.tasks, "--tasks", what="a task name")[0]))
    tasks = [t.lower() for t in parse_list(args.tasks, "--tasks", what="a task name")] if args.tasks else \
        [base.task.lower()]
    if len(set(tasks)) != len(tasks):
        raise ConfigError("--tasks: a task is named twice")
    multi = args.tasks is not None
    if multi and args.ood:
        raise ConfigError("--ood applies to one task: give --task, or name OOD sets per task in a study file "
                          "(lpft study)")
    ood = tuple(parse_list(args.ood, "--ood", what="a task name or file")) if args.ood else ()
    report = Path(args.report) if args.report else (
        Path(args.out) / "study" / "+".join(tasks) if multi else Path(args.out) / tasks[0] / "report")
    spec = StudySpec(tasks=tuple(TaskSpec(t, dataclasses.replace(base, task=t), ood) for t in tasks),
                     methods=tuple(parse_list(args.methods, "--methods", what="a method")),
                     seeds=tuple(parse_list(args.seeds, "--seeds", int, "an integer seed")), split=args.split,
                     tsne_samples=args.tsne_samples, gd_max_steps=args.gd_max_steps, report=report,
                     source="lpft compare --tasks " + ",".join(tasks) if multi else "lpft compare")
    ws = Workspace.from_args(args)
    from ..study import plan

    planned = plan(spec, ws.data_dir)  # every option, task and OOD set checked before an executor (or Ray) starts
    folder = run_study(planned, ws, executor_from_args(args), layout="study" if multi else "compare").report

    if multi:
        rows = read_csv(folder / "table8.csv")
        methods = list(dict.fromkeys(r["method"] for r in rows))
        table = [["task", "metric"] + [LABEL[m] for m in methods]]
        for task in dict.fromkeys(r["task"] for r in rows):
            cells = {r["method"]: r for r in rows if r["task"] == task}
            table.append([task, next(iter(cells.values()))["metric"]] + [
                fmt_percent(float(cells[m]["mean"])) + (f" ± {fmt_percent(float(cells[m]['std']))}"
                                                        if cells[m]["std"] else "") if m in cells else "–"
                for m in methods])
    else:
        rows = read_csv(folder / "runs.csv")
        primary = next(k for k in rows[0] if k.startswith("test_"))
        table = [["method", f"{primary} (%)", "Diff(F)", "Norm(C)", "ECE w/o → w/ TS (%)"]]
        for method in dict.fromkeys(r["method"] for r in rows):
            group = [r for r in rows if r["method"] == method]
            col = lambda key, group=group: [float(r[key]) for r in group]  # noqa: E731
            ece = [fmt_mean_std(col(key), fmt_percent) for key in ("ece_before", "ece_after")]
            table.append([LABEL[method], fmt_mean_std(col(primary), fmt_percent), fmt_mean_std(col("diff")),
                          fmt_mean_std(col("norm_weight")), f"{ece[0]} → {ece[1]}"])
    print()
    print(format_table(table))
    print(f"report: {folder / 'report.md'}")
    return 0
