"""``lpft evaluate``: a finished run on its own test split (ID) and on extra test sets (OOD), side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..workspace import Workspace, add_workspace_arguments
from ._options import add_input_column_arguments, input_columns, open_run, parse_list
from .train import format_table

DESCRIPTION = ("Writes evaluation.csv and report.md to --report (unset: <run>/evaluation). Each set's role: ID for "
               "the run's own test split and for sets of its distribution (cola-id next to a CoLA run, "
               "boss-amazon-full next to boss-amazon), ID+OOD for CoLA's mixed test split, OOD for every other set.")


OOD_HELP = ("extra test sets: registered task names (their test split, e.g. cola-ood) or CSV / TSV / JSONL files "
            "(the run's task release format, its own columns, or text / label) with the run's labels, as names or "
            "ids; a set lacking some classes also gets the accuracy over the classes present")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a finished run folder")
    parser.add_argument("--ood", nargs="+", required=True, metavar="SET", help=OOD_HELP)
    add_input_column_arguments(parser)
    parser.add_argument("--limit", type=int, default=None,
                        help="use only N examples of each extra set (a label-stratified sample in file order, fixed "
                             "seed); unset: all")
    parser.add_argument("--report", default=None,
                        help="folder for evaluation.csv and report.md; unset: <run>/evaluation")
    add_workspace_arguments(parser, ("data_dir", "cache_dir", "device"), help={
        "cache_dir": "feature cache: 'default' is $LPFT_CACHE_DIR or ~/.cache/lpft; 'none' disables",
        "device": "torch device for feature extraction: cpu, cuda, cuda:N or mps (default: cuda if available, "
                  "else cpu)"})


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..outputs import check_output_folder

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be > 0, got {args.limit}")
    record = open_run(args.run)
    check_output_folder(args.report or Path(args.run) / "evaluation", "report", "--report", reads=[args.run])
    ws = Workspace.from_args(args, out=Path(args.run)).checked(out=False)  # (the run is read, the report checked)
    evaluate_and_report(record, parse_list(args.ood, "--ood", what="a task name or file"),
                        args.report or Path(args.run) / "evaluation", ws.data_dir, ws.cache, input_columns(args),
                        args.label_column, args.limit, ws.device)
    return 0


def evaluate_and_report(record, specs: list[str], report: str | Path, data_dir: str | None = None, cache=None,
                        text_columns: tuple[str, ...] | None = None, label_column: str | None = None,
                        limit: int | None = None, device: str | None = None) -> list[dict]:
    """Evaluate a finished run on its test split and the sets ``specs``, write ``report``/evaluation.csv and
    report.md, and print the table (``lpft evaluate`` and ``lpft train --ood``)."""
    from ..analysis.ood import evaluate_ood
    from ..report.output import report_folder
    from ..report.tables import fmt_fixed3, fmt_number, markdown_table, write_csv

    rows = evaluate_ood(record, specs, data_dir, cache, text_columns, label_column, limit, device)
    metrics = record.data["metrics"]
    header = ["set", "role", "n"] + metrics + ["acc (present)", "CS(F)", "CS(F0)", "Diff(F)", "FDR(F)", "FDR(F0)"]
    table = [[r["set"], r["role"], str(r["n"])] + [f"{r[m]:.4f}" for m in metrics] + [f"{r['accuracy_present']:.4f}"]
             + [fmt_fixed3(r["cs"]), fmt_fixed3(r["cs_pretrained"])]
             + [fmt_number(r[k]) for k in ("diff", "fdr", "fdr_pretrained")] for r in rows]
    notes = [f"{r['set']} has no example of {r['missing_classes'].replace(';', ', ')}: every prediction of "
             f"{'that class' if ';' not in r['missing_classes'] else 'those classes'} counts as wrong in accuracy; "
             "acc (present) takes the argmax over the classes present" for r in rows if r["missing_classes"]]
    report = Path(report)
    cfg = record.config
    with report_folder(report) as folder:
        write_csv(folder / "evaluation.csv", rows)
        (folder / "report.md").write_text("\n".join([
            f"# {cfg.method.upper()} on {cfg.task}, seed {cfg.seed}: in- and out-of-distribution", "",
            f"Run `{record.path}`. F: features of the trained model, F0: of the pre-trained model, on each set. "
            "acc (present): accuracy of the argmax over the classes present in the set.", "",
            markdown_table(header, table), ""] + [f"- {note}" for note in notes] + ([""] if notes else [])))
    print(format_table([header] + table))
    for note in notes:
        print(f"note: {note}")
    print(f"report: {report / 'report.md'}")
    return rows
