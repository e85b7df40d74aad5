"""``lpft calibrate``: temperature scaling of one finished run — T, ECE / MCE / NLL before and after, a diagram."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import open_run
from .train import format_table

DESCRIPTION = ("Fits the temperature on the run's validation logits and writes calibration.json, "
               "reliability.csv and reliability.png to --report (unset: <run>/calibration).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a finished run folder")
    parser.add_argument("--report", default=None,
                        help="folder for calibration.json, reliability.csv and reliability.png "
                             "(unset: <run>/calibration)")


def run(args: argparse.Namespace) -> int:
    from scipy.special import softmax

    from ..analysis.calibration import calibration_report, reliability_bins
    from ..io import write_json
    from ..outputs import check_output_folder, output_folder
    from ..report.plots import reliability_diagram
    from ..report.tables import write_csv

    record = open_run(args.run)
    report = check_output_folder(args.report or Path(args.run) / "calibration", "report", "--report",
                                 reads=[args.run])
    val, test = record.logits("validation"), record.logits("test")
    rep = calibration_report(*val, *test)
    z, y = test
    probs = {"before": softmax(z, axis=1), "after": softmax(z / rep["temperature"], axis=1)}
    cfg = record.config
    with output_folder(report, "report", "--report", reads=[args.run]) as folder:
        write_json(folder / "calibration.json", rep)
        write_csv(folder / "reliability.csv", [
            {"scaling": s, "bin": b, "count": int(n), "accuracy": a, "confidence": c}
            for s, p in probs.items() for b, (n, a, c) in enumerate(zip(*reliability_bins(p, y)))])
        reliability_diagram(probs["before"], probs["after"], y, folder / "reliability.png",
                            title=f"{cfg.method.upper()} on {cfg.task}, seed {cfg.seed} (T = {rep['temperature']:.3g})")
    rows = [["", "ECE (%)", "MCE (%)", "NLL", "accuracy"]]
    for when in ("before", "after"):
        rows.append([f"{when} TS", f"{100 * rep[f'ece_{when}']:.2f}", f"{100 * rep[f'mce_{when}']:.2f}",
                     f"{rep[f'nll_{when}']:.4f}", f"{rep[f'accuracy_{when}']:.4f}"])
    print(f"{cfg.method.upper()} on {cfg.task} (seed {cfg.seed}): temperature T = {rep['temperature']:.4f} "
          f"(fitted on {len(val[1])} validation examples, applied to {len(y)} test examples)")
    print(format_table(rows))
    print(f"reliability diagram: {report / 'reliability.png'}")
    return 0
