"""The single ``lpft`` command. Each subcommand lives in its own module exposing ``add_arguments`` and ``run``.

Errors from bad input (unknown task/method/model, malformed data, invalid options) print one line
``lpft: error: ...`` and exit with status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> module (imported lazily so `lpft --help` is instant)
COMMANDS = {
    "train": ("lpft.commands.train", "train one method on one task and write a run folder"),
    "compare": ("lpft.commands.compare", "run the paper's study on one task and write a report folder"),
    "norm-sweep": ("lpft.commands.norm_sweep", "feature change against the head norm at the start of FT"),
    "evaluate": ("lpft.commands.evaluate", "evaluate a run on its test split and on out-of-distribution sets"),
    "calibrate": ("lpft.commands.calibrate", "temperature scaling, ECE / MCE and a reliability diagram for a run"),
    "ntk": ("lpft.commands.ntk", "eNTK at the start of fine-tuning: Table 2 statistics and the Eq. 1 (logits) and "
                                 "Eq. 2 (features) prediction checks"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpft", description="Linear probing then fine-tuning, with NTK analysis.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", module="peft")
    # deprecation notices from inside transformers (e.g. when PEFT wraps a model) are not actionable for users
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _quiet_libraries()
    from .config import ConfigError
    from .data.base import DataError
    from .model import ModelError

    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ConfigError, DataError, ModelError) as err:
        print(f"lpft: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lpft: interrupted — rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
