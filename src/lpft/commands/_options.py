"""Option helpers shared by the analysis subcommands: comma-separated lists and the study's run options."""

from __future__ import annotations

import argparse
from typing import Callable

from ..config import ConfigError, add_config_arguments, config_from_args, field_docs
from ..methods.config import RunConfig

# run options a study sets itself, per run (a sweep also sets the head norm)
STUDY_SKIPS = ("method", "seed", "head_norm", "head_scale")


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


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``lpft train`` option except those the study varies per run; ``--task`` is required, because a study
    trains many runs and should not fall back on ``lpft train``'s demonstration task without being asked."""
    parser.add_argument("--task", required=True, help=field_docs(RunConfig)["task"])
    add_config_arguments(parser, RunConfig, skip=STUDY_SKIPS + ("task",))


def base_config(args: argparse.Namespace) -> RunConfig:
    return config_from_args(RunConfig, args)


def open_run(path: str):
    """The finished run at ``path``, or a ConfigError naming the folder."""
    from pathlib import Path

    from ..runs import RunRecord

    if not (Path(path) / "metrics.json").is_file():
        raise ConfigError(f"run folder {path!r} is not a finished run (no metrics.json): expected a folder "
                          "printed by `lpft train` or listed in a compare report")
    return RunRecord(path)
