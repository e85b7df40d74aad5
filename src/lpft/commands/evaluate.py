"""``lpft evaluate``: a finished run on its own test split (ID) and on extra test sets (OOD), side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import open_run, parse_list
from .train import cache_arg, format_table


DESCRIPTION = ("Writes evaluation.csv and report.md to --report (unset: <run>/evaluation). Each set's role: ID for "
               "the run's own test split and for sets of its distribution (cola-id next to a CoLA run, "
               "boss-amazon-full next to boss-amazon), ID+OOD for CoLA's mixed test split, OOD for every other set.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a finished run folder")
    parser.add_argument("--ood", nargs="+", required=True, metavar="SET",
                        help="extra test sets: registered task names (their test split, e.g. cola-ood) or CSV / TSV "
                             "/ JSONL files whose labels are the run's label names")
    parser.add_argument("--text-columns", default=None,
                        help="for files: one text column, or two comma-separated; unset: the run's own")
    parser.add_argument("--label-column", default=None, help="for files: the label column; unset: the run's own")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N examples of each extra set; unset: all")
    parser.add_argument("--report", default=None,
                        help="folder for evaluation.csv and report.md; unset: <run>/evaluation")
    parser.add_argument("--data-dir", default=None, help="benchmark data folder; unset: $LPFT_DATA_DIR, else the Hugging Face hub")
    parser.add_argument("--cache-dir", default="default",
                        help="feature cache: 'default' is $LPFT_CACHE_DIR or ~/.cache/lpft; 'none' disables")
    parser.add_argument("--device", default=None,
                        help="torch device for feature extraction: cpu, cuda, cuda:N or mps (default: cuda if "
                             "available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from ..analysis.ood import evaluate_ood
    from ..config import ConfigError
    from ..io import check_writable_folder
    from ..methods.lp import default_cache_dir
    from ..report.output import report_folder
    from ..report.tables import fmt_fixed3, fmt_number, markdown_table, write_csv

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be > 0, got {args.limit}")
    record = open_run(args.run)
    check_writable_folder(args.report or Path(args.run) / "evaluation", "--report")
    if cache_arg(args.cache_dir) not in (None, "default"):
        check_writable_folder(args.cache_dir, "--cache-dir")
    columns = tuple(parse_list(args.text_columns, "--text-columns", what="a column")) if args.text_columns else None
    cache = cache_arg(args.cache_dir)
    cache = default_cache_dir() if cache == "default" else cache
    rows = evaluate_ood(record, parse_list(args.ood, "--ood", what="a task name or file"), args.data_dir, cache,
                        columns, args.label_column, args.limit, args.device)

    metrics = record.data["metrics"]
    header = ["set", "role", "n"] + metrics + ["CS(F)", "CS(F0)", "Diff(F)", "FDR(F)", "FDR(F0)"]
    table = [[r["set"], r["role"], str(r["n"])] + [f"{r[m]:.4f}" for m in metrics]
             + [fmt_fixed3(r["cs"]), fmt_fixed3(r["cs_pretrained"])]
             + [fmt_number(r[k]) for k in ("diff", "fdr", "fdr_pretrained")] for r in rows]
    report = Path(args.report or Path(args.run) / "evaluation")
    with report_folder(report) as folder:
        write_csv(folder / "evaluation.csv", rows)
        cfg = record.config
        (folder / "report.md").write_text("\n".join([
            f"# {cfg.method.upper()} on {cfg.task}, seed {cfg.seed}: in- and out-of-distribution", "",
            f"Run `{record.path}`. F: features of the trained model, F0: of the pre-trained model, on each set.", "",
            markdown_table(header, table), ""]))
    print(format_table([header] + table))
    print(f"report: {report / 'report.md'}")
    return 0
