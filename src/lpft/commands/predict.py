"""``lpft predict``: a finished run's predictions on a file or one of its splits, with metrics when labels are known."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError
from ..workspace import add_workspace_arguments
from ._options import add_input_column_arguments, input_columns, open_run
from .train import format_table

OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl")
DESCRIPTION = ("Writes one row per input, in input order (the predicted label and a probability per class), to --out "
               "(unset: <run>/predictions/<name>.csv); prints the task's metrics, ECE, MCE and NLL when the input "
               "has labels.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a finished run folder")
    parser.add_argument("file", nargs="?", default=None,
                        help="a file in the run's task release format (BOSS .tsv, SuperGLUE .jsonl such as WiC's, "
                             "GLUE .tsv), or a CSV / TSV / JSONL file with the run's own text column(s) or text "
                             "(text_pair for pairs), and optionally labels (names or ids); or give --split")
    parser.add_argument("--split", default=None, choices=("train", "validation", "test"),
                        help="predict the run's own split instead of a file (with the subset the run used)")
    parser.add_argument("--out", default=None,
                        help="output file, .csv / .tsv / .jsonl: one row per input, in input order, with the "
                             "predicted label and a probability per class (unset: <run>/predictions/<name>.csv)")
    parser.add_argument("--calibrated", action="store_true",
                        help="temperature-scaled probabilities, with the T fitted on the run's validation split "
                             "(the T `lpft calibrate` reports)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="examples per forward pass (unset: the run's --eval-batch-size)")
    add_workspace_arguments(parser, ("device",))
    add_input_column_arguments(parser)
    add_workspace_arguments(parser, ("data_dir",), help={
        "data_dir": "with --split: the benchmark data folder (unset: $LPFT_DATA_DIR, else the hub)"})


def _output_path(args: argparse.Namespace) -> Path:
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() not in OUTPUT_FORMATS:
            raise ConfigError(f"--out {args.out!r}: unsupported file type {out.suffix or '(none)'!r}; expected one "
                              f"of {', '.join(OUTPUT_FORMATS)}")
        return out
    name = args.split if args.split else Path(args.file).stem
    return Path(args.run) / "predictions" / f"{name}{'-calibrated' if args.calibrated else ''}.csv"


def write_predictions(path: Path, labels: tuple[str, ...], probs) -> None:
    """One row per input: ``prediction`` and ``prob_<label>`` per class; written atomically."""
    import csv
    import json

    from ..io import atomic_path

    columns = ["prediction"] + [f"prob_{name}" for name in labels]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            for row in probs:
                record = dict(zip(columns, [labels[int(row.argmax())]] + [float(p) for p in row]))
                fh.write(json.dumps(record) + "\n")
            return
        writer = csv.writer(fh, delimiter="\t" if suffix == ".tsv" else ",", lineterminator="\n")
        writer.writerow(columns)
        for row in probs:
            writer.writerow([labels[int(row.argmax())]] + [repr(float(p)) for p in row])


def run(args: argparse.Namespace) -> int:
    from ..analysis.calibration import expected_calibration_error, maximum_calibration_error, nll
    from ..analysis.run_features import split_examples
    from ..data import compute_metrics
    from ..inference import load_run
    from ..inference.inputs import read_inputs
    from ..outputs import check_output_file

    if (args.file is None) == (args.split is None):
        raise ConfigError("give either a FILE to predict or --split, not " + ("both" if args.file else "neither"))
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be > 0, got {args.batch_size}")
    record = open_run(args.run)
    out = check_output_file(_output_path(args), "--out", reads=[args.file] if args.file else [],
                            inside=None if args.out else args.run)
    if args.split:
        examples = split_examples(record, args.split, args.data_dir)
        labels = [ex.label for ex in examples]
        source = f"{record.config.task} {args.split} split"
    else:
        inputs = read_inputs(record, args.file, input_columns(args), args.label_column)
        examples, labels = inputs
        skipped = (f"; {inputs.skipped} row(s) with an empty or missing-value text skipped, as the task does"
                   if inputs.skipped else "")
        source = f"{args.file} (read as {inputs.read_as}{skipped})"

    predictor = load_run(args.run, device=args.device, batch_size=args.batch_size, progress=True)
    logits = predictor.logits(examples)
    probs = predictor.probabilities(logits, args.calibrated)
    write_predictions(out, predictor.labels, probs)

    scaling = f"calibrated, T = {predictor.temperature:.4f}" if args.calibrated else "uncalibrated"
    print(f"{record.config.method.upper()} on {record.config.task}: {len(examples)} predictions for {source} "
          f"({scaling})")
    if labels is not None:
        names = list(record.data["metrics"])
        metrics = compute_metrics(names + ["accuracy"] * ("accuracy" not in names), labels, logits)
        metrics.update({"ece": expected_calibration_error(probs, labels),
                        "mce": maximum_calibration_error(probs, labels),
                        "nll": nll(logits, labels, predictor.temperature if args.calibrated else 1.0)})
        print(format_table([list(metrics), [f"{v:.4f}" for v in metrics.values()]]))
    print(f"predictions: {out}")
    return 0
