"""The single ``lpft`` command. Each subcommand lives in its own module exposing ``add_arguments`` and ``run``.

Errors from bad input (unknown task/method/model, malformed data, invalid options, damaged run folders) print one
line ``lpft: error: ...`` and exit with status 2, before anything is written. A run stopped by a full disk or by
diverging training exits the same way (one line, status 2); a full disk leaves the run resumable.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .quiet import quiet_libraries

# subcommand -> module (imported lazily so `lpft --help` is instant)
COMMANDS = {
    "train": ("lpft.commands.train", "train one method on one task and write a run folder"),
    "compare": ("lpft.commands.compare", "run the paper's study on one task and write a report folder"),
    "study": ("lpft.commands.study", "a multi-task study from a TOML file (tasks, methods, seeds, sweeps, eNTKs)"),
    "norm-sweep": ("lpft.commands.norm_sweep", "feature change against the head norm at the start of FT"),
    "evaluate": ("lpft.commands.evaluate", "evaluate a run on its test split and on out-of-distribution sets"),
    "calibrate": ("lpft.commands.calibrate", "temperature scaling, ECE / MCE and a reliability diagram for a run"),
    "ntk": ("lpft.commands.ntk", "eNTK at the start of fine-tuning: Table 2 statistics and the Eq. 1 (logits) and "
                                 "Eq. 2 (features) prediction checks"),
    "predict": ("lpft.commands.predict", "a finished run's predictions on a file or split (metrics if labelled)"),
    "export": ("lpft.commands.export", "a finished run as a Hugging Face model folder usable without lpft"),
    "claims": ("lpft.commands.claims", "test the paper's seven claims on the runs under a folder (docs/claims.md)"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where the help text does not already explain the default.

    Options whose default is ``None`` (unset) describe what unset means in their own words, and hand-written
    "default ..." phrases are kept as written, so no help line states its default twice.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text.lower() or "unset" in text.lower():
            return text
        return super()._get_help_string(action)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("lpft")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpft", description="Linear probing then fine-tuning, with NTK analysis.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        # a module's DESCRIPTION (what it writes, where) extends the one-line summary in `lpft <command> --help`
        description = help_text + (". " + mod.DESCRIPTION if getattr(mod, "DESCRIPTION", None) else "")
        p = sub.add_parser(name, help=help_text, description=description, formatter_class=HelpFormatter)
        p.set_defaults(_module=module)
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    quiet_libraries()
    from .errors import DiskFullError, LpftError
    from .io import is_disk_full
    from .model.device import resolve_device

    try:
        if hasattr(args, "device"):  # one device rule for every command, checked before any work
            args.device = resolve_device(args.device)
        return int(importlib.import_module(args._module).run(args) or 0)
    except LpftError as err:  # every user error (bad option, data, model, run folder, full disk, divergence)
        print(f"lpft: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if not is_disk_full(err):
            raise
        # a full disk outside lpft.io's atomic writers (e.g. a report's text file): the same one line
        print(f"lpft: error: {DiskFullError(err.filename or 'the output')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lpft: interrupted — rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
