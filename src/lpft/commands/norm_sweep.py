"""``lpft norm-sweep``: rescale the head at the start of FT, fine-tune, plot feature change against the norm."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..workspace import Workspace, add_workspace_arguments
from ._options import (
    add_executor_arguments,
    add_study_arguments,
    base_config,
    executor_from_args,
    parse_list,
)
from .train import format_table

DESCRIPTION = ("Trains one run per method, norm and seed under <out>/<task>/ (finished runs are reused) and "
               "writes report.md, sweep.csv and the figure to --report (unset: <out>/<task>/norm-sweep).")

PAPER_NORMS = "0.1,0.5,1,2,5,10,50,100"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", default="ft,lp-ft", help="comma-separated methods with an FT stage")
    parser.add_argument("--norms", default=PAPER_NORMS,
                        help="comma-separated target head norms ||V||_F at the start of FT (the paper's values)")
    parser.add_argument("--multipliers", action="store_true",
                        help="read --norms as multipliers of the head instead of target norms")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (mean ± std over them)")
    parser.add_argument("--split", default="test", help="split on which the feature change is measured")
    parser.add_argument("--report", default=None, help="report folder; unset: <out>/<task>/norm-sweep")
    add_study_arguments(parser)
    add_workspace_arguments(parser)
    add_executor_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..report.tables import fmt_number
    from ..study import StudySpec, SweepSpec, TaskSpec, plan, run_study

    base = base_config(args)
    seeds = tuple(parse_list(args.seeds, "--seeds", int, "an integer seed"))
    sweep = SweepSpec(methods=tuple(m.lower() for m in parse_list(args.methods, "--methods", what="a method")),
                      values=tuple(parse_list(args.norms, "--norms", float, "a number")),
                      mode="scale" if args.multipliers else "norm", seeds=seeds, split=args.split)
    task = base.task.lower()
    spec = StudySpec(tasks=(TaskSpec(task, base),), seeds=seeds, compare=False, sweep=sweep,
                     report=Path(args.report or Path(args.out) / task / "norm-sweep"), source="lpft norm-sweep")
    ws = Workspace.from_args(args)
    planned = plan(spec, ws.data_dir)  # checked before an executor (or Ray) starts
    result = run_study(planned, ws, executor_from_args(args), layout="sweep")

    summary = result.sweeps[task]["summary"]
    table = [["method", "norm" if sweep.mode == "norm" else "multiplier", "start ||V||", "Diff(F) mean", "std",
              "seeds"]]
    table += [[r["method"], f"{r['value']:g}", fmt_number(r["start_norm_mean"]), fmt_number(r["diff_mean"]),
               fmt_number(r["diff_std"]), str(r["n"])] for r in summary]
    print()
    print(format_table(table))
    print(f"report: {result.report / 'report.md'}")
    return 0
