"""Option helpers shared by the analysis subcommands: comma-separated lists and the study's run options."""

from __future__ import annotations

import argparse
from typing import Callable

from ..config import ConfigError, add_config_arguments, config_from_args, field_docs, parse_size
from ..methods.config import RunConfig
from ..study.spec import STUDY_SKIPS  # run options a study sets itself, per run (a sweep also sets the head norm)


def parse_list(value: str | list[str], option: str, kind: Callable = str, what: str = "a value") -> list:
    """Split comma-separated (and/or repeated, via nargs) values; a bad item is a ConfigError naming the option."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in (x.strip() for chunk in items for x in str(chunk).split(",")):
        if not item:
            continue
        try:
            out.append(kind(item))
        except ValueError:
            raise ConfigError(f"{option}: {item!r} is not {what}") from None
    if not out:
        raise ConfigError(f"{option}: expected a comma-separated list of {what}s")
    return out


def byte_size(value: str) -> int:
    """argparse ``type`` of size options (``--memory-budget 1.5GiB``): :func:`lpft.config.parse_size`, its message
    kept whole (argparse replaces a ValueError's message with its own "invalid value")."""
    try:
        return parse_size(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_study_arguments(parser: argparse.ArgumentParser, multi_task: bool = False) -> None:
    """Every ``lpft train`` option except those the study varies per run; ``--task`` is required, because a study
    trains many runs and should not fall back on ``lpft train``'s demonstration task without being asked.
    ``multi_task``: ``--tasks`` may replace ``--task`` (one of the two is required)."""
    if multi_task:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--task", help=field_docs(RunConfig)["task"])
        group.add_argument("--tasks", default=None,
                           help="comma-separated tasks for a multi-task study: one report with a section per task "
                                "and a cross-task table shaped like the paper's Table 8")
    else:
        parser.add_argument("--task", required=True, help=field_docs(RunConfig)["task"])
    add_config_arguments(parser, RunConfig, skip=STUDY_SKIPS + ("task",))


def base_config(args: argparse.Namespace, **overrides) -> RunConfig:
    return config_from_args(RunConfig, args, **overrides)


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the study's runs execute (none of it changes the numbers)."""
    group = parser.add_argument_group("executor")
    group.add_argument("--executor", default="local", choices=("local", "ray"),
                       help="local: one run after another in this process; ray: runs and eNTKs on long-lived Ray "
                            "actors, one per slot, each job as soon as its probe is done (needs pip install -e "
                            "'.[ray]'; --out and --cache-dir must be on a filesystem every worker sees)")
    group.add_argument("--ray-address", default=None,
                       help="with --executor ray: 'auto' joins a running cluster; unset starts a local Ray instance")
    group.add_argument("--cpus-per-run", type=float, default=None,
                       help="with --executor ray: CPUs each run reserves (unset: its torch threads, "
                            "--threads-per-run)")
    group.add_argument("--threads-per-run", type=int, default=None,
                       help="torch threads of each run, under either executor, so local and Ray results are "
                            "bit-identical (unset: --cpus-per-run rounded down if given, else this machine's "
                            "torch default, its cores)")
    group.add_argument("--gpus-per-run", type=float, default=0, help="with --executor ray: GPUs each run reserves")
    group.add_argument("--max-retries", type=int, default=3,
                       help="with --executor ray: times a run is restarted after its worker died (it resumes from "
                            "its last finished epoch)")


def executor_from_args(args: argparse.Namespace):
    from ..study import make_executor

    if args.executor == "local":
        return make_executor("local", threads_per_run=args.threads_per_run, cpus_per_run=args.cpus_per_run)
    return make_executor("ray", address=args.ray_address, cpus_per_run=args.cpus_per_run,
                         gpus_per_run=args.gpus_per_run, max_retries=args.max_retries,
                         threads_per_run=args.threads_per_run)


def open_run(path: str):
    """The finished run at ``path``, or a ConfigError naming the folder."""
    from pathlib import Path

    from ..runs import RunRecord

    if not (Path(path) / "metrics.json").is_file():
        raise ConfigError(f"run folder {path!r} is not a finished run (no metrics.json): expected a folder "
                          "printed by `lpft train` or listed in a compare report")
    return RunRecord(path)


def add_input_column_arguments(parser: argparse.ArgumentParser) -> None:
    """--text-columns / --label-column: how `lpft predict` and `lpft evaluate --ood` read a user's file (one reader,
    lpft.inference.inputs.read_inputs, so one set of options)."""
    parser.add_argument("--text-columns", default=None,
                        help="one text column, or two comma-separated for sentence pairs (the same option in lpft "
                             "predict and lpft evaluate). Unset: the run's task release format (cb, rte "
                             "'premise,hypothesis'; boolq "
                             "'question,passage'; wic, wsc their JSONL fields, formatted as in training; mrpc '#1 "
                             "String,#2 String'; cola, sst2 'sentence'; boss-* 'Text'), the run's own columns for a "
                             "files task, else 'text' ('text,text_pair' for pairs)")
    parser.add_argument("--label-column", default=None,
                        help="the label column, used if the file has it (unset: the release's or the run's own, "
                             "else 'label'); labels are the run's label names or ids")


def input_columns(args: argparse.Namespace) -> tuple[str, ...] | None:
    """--text-columns as a tuple of column names; None when unset (the reader then detects the format)."""
    return tuple(parse_list(args.text_columns, "--text-columns", what="a column")) if args.text_columns else None
