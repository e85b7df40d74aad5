"""``lpft norm-sweep``: rescale the head at the start of FT, fine-tune, plot feature change against the norm."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ._options import add_study_arguments, base_config, parse_list
from .train import add_run_location_arguments, cache_arg, format_table

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
    add_run_location_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..analysis.sweep import run_sweep, summarise_sweep, sweep_configs
    from ..config import ConfigError
    from ..data import SPLITS
    from ..report.norm_sweep import write_sweep_report
    from ..report.tables import fmt_number

    if args.split not in SPLITS:
        raise ConfigError(f"--split {args.split!r} is unknown: expected one of {', '.join(SPLITS)}")
    mode = "scale" if args.multipliers else "norm"
    base = base_config(args)
    methods = [m.lower() for m in parse_list(args.methods, "--methods", what="a method")]
    values = parse_list(args.norms, "--norms", float, "a number")
    seeds = parse_list(args.seeds, "--seeds", int, "an integer seed")
    configs = sweep_configs(base, methods, values, seeds, mode)
    rows = run_sweep(configs, out=args.out, data_dir=args.data_dir, cache_dir=cache_arg(args.cache_dir),
                     device=args.device, split=args.split)
    summary = summarise_sweep(rows)
    report = Path(args.report or Path(args.out) / configs[0].task / "norm-sweep")
    settings = {"mode": mode, "methods": methods, "values": values, "seeds": seeds, "split": args.split,
                "config": {k: v for k, v in dataclasses.asdict(configs[0]).items()
                           if k not in ("method", "seed", "head_norm", "head_scale")}}
    write_sweep_report(report, rows, summary, mode, configs[0].task, args.split, settings)

    table = [["method", "norm" if mode == "norm" else "multiplier", "start ||V||", "Diff(F) mean", "std", "seeds"]]
    table += [[r["method"], f"{r['value']:g}", fmt_number(r["start_norm_mean"]), fmt_number(r["diff_mean"]),
               fmt_number(r["diff_std"]), str(r["n"])] for r in summary]
    print()
    print(format_table(table))
    print(f"report: {report / 'report.md'}")
    return 0
