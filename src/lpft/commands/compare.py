"""``lpft compare``: the paper's study on one task — train what is missing, then write the report folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..methods.config import METHODS
from ._options import add_study_arguments, base_config, parse_list
from .train import add_run_location_arguments, cache_arg, format_table


DESCRIPTION = ("Trains the runs that are missing under <out>/<task>/ (finished runs are reused) and writes "
               "report.md, CSV files and figures to --report (unset: <out>/<task>/report).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods to compare")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; tables give mean ± std over them")
    parser.add_argument("--report", default=None,
                        help="report folder, replaced whole when finished; unset: <out>/<task>/report")
    parser.add_argument("--split", default="test",
                        help="split for feature statistics and t-SNE (train, validation or test)")
    parser.add_argument("--ood", nargs="+", default=[], metavar="SET",
                        help="extra test sets: task names (e.g. cola-ood) or CSV / TSV / JSONL files with the "
                             "task's label names")
    parser.add_argument("--tsne-samples", type=int, default=500, help="t-SNE uses the first N examples of --split")
    parser.add_argument("--gd-max-steps", type=int, default=100_000,
                        help="cap on full-batch gradient-descent steps of the LP curve")
    add_study_arguments(parser)
    add_run_location_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..report.compare import LABEL, Study, run_study
    from ..report.tables import fmt_mean_std, fmt_percent, read_csv

    base = base_config(args)
    study = Study(base=base, methods=tuple(parse_list(args.methods, "--methods", what="a method")),
                  seeds=tuple(parse_list(args.seeds, "--seeds", int, "an integer seed")),
                  report=Path(args.report or Path(args.out) / base.task.lower() / "report"), out=Path(args.out),
                  data_dir=args.data_dir, cache_dir=cache_arg(args.cache_dir), device=args.device, split=args.split,
                  ood=tuple(parse_list(args.ood, "--ood", what="a task name or file")) if args.ood else (),
                  tsne_samples=args.tsne_samples, gd_max_steps=args.gd_max_steps)
    folder = run_study(study)

    rows = read_csv(folder / "runs.csv")
    primary = next(k for k in rows[0] if k.startswith("test_"))
    table = [["method", f"{primary} (%)", "Diff(F)", "Norm(C)", "ECE w/o → w/ TS (%)"]]
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        col = lambda key: [float(r[key]) for r in group]  # noqa: E731
        ece = [fmt_mean_std(col(key), fmt_percent) for key in ("ece_before", "ece_after")]
        table.append([LABEL[method], fmt_mean_std(col(primary), fmt_percent), fmt_mean_std(col("diff")),
                      fmt_mean_std(col("norm_weight")), f"{ece[0]} → {ece[1]}"])
    print()
    print(format_table(table))
    print(f"report: {folder / 'report.md'}")
    return 0
