"""``lpft claims``: test the paper's seven claims on the runs, norm sweeps and eNTK folders under ``--out``.

Nothing is trained: every claim with data gets its statistics, 95 % intervals over seeds and a verdict by the
rules of ``docs/claims.md``; a claim without data names the command that produces it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..workspace import Workspace, add_workspace_arguments
from ._options import parse_list
from .train import format_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=["runs"], nargs="+", metavar="FOLDER",
                        help="folder(s) searched (recursively) for run folders, compare, study and norm-sweep "
                             "reports, evaluate folders and eNTK folders")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated tasks to test (default: every task found); a task without data is "
                             "listed with the commands that produce it")
    parser.add_argument("--report", default=None, help="report folder, replaced whole; unset: <out>/claims")
    add_workspace_arguments(parser, ("data_dir", "cache_dir"), help={
        "data_dir": "benchmark files for claim 3's LP norm path (it re-reads the train split)",
        "cache_dir": "feature cache (default: $LPFT_CACHE_DIR or ~/.cache/lpft); 'none' disables"})
    parser.add_argument("--lp-path", action=argparse.BooleanOptionalAction, default=True,
                        help="claim 3: refit the probe at every C of its grid and run an unregularised GD LP "
                             "(needs the pre-trained train features: the cache, or the model and the data)")
    parser.add_argument("--gd-steps", type=int, default=2000,
                        help="step budget of claim 3's unregularised gradient-descent LP")


def run(args: argparse.Namespace) -> int:
    from ..claims import compute, summary_rows, write_report
    from ..config import ConfigError
    from ..data import canonical_name
    from ..outputs import check_output_folder

    roots = [Path(p) for p in args.out]
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--out {str(root)!r} is not a folder: expected the folder `lpft train` / `compare` / "
                              "`norm-sweep` / `ntk` / `study` wrote into")
    if args.gd_steps < 1:
        raise ConfigError(f"--gd-steps must be >= 1, got {args.gd_steps}")
    # a named task without data gets a "no data (run: ...)" row per claim, so a typo must not pass silently
    tasks = [t.lower() if t.lower() == "files" else canonical_name(t)
             for t in parse_list(args.tasks, "--tasks", what="a task")] if args.tasks else None
    report = check_output_folder(Path(args.report or roots[0] / "claims"), "report", "--report", reads=roots)
    ws = Workspace.from_args(args, out=roots[0]).checked(out=False)  # (--out is read here, not written)
    result = compute(roots, tasks, ws.data_dir, ws.cache, lp_path=args.lp_path, gd_steps=args.gd_steps)
    if not result["tasks"]:
        raise ConfigError(f"--out {' '.join(args.out)}: no finished run, norm sweep or eNTK folder found")
    report = write_report(report, result, ", ".join(args.out))
    print(format_table([["claim", "task", "verdict"]] + summary_rows(result)))
    print(f"report: {report / 'claims.md'}")
    return 0
