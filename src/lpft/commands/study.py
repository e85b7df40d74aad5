"""``lpft study STUDY.toml``: a multi-task study from one versioned file — tasks, methods, seeds, per-task run
options, OOD sets, norm sweeps and eNTKs — run by the local or the Ray executor into one report folder."""

from __future__ import annotations

import argparse

from ._options import add_executor_arguments, executor_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="STUDY.toml", help="the study file (format: docs/study.md)")
    parser.add_argument("--out", default=None, help="folder for run records (overrides the file's 'out'; "
                                                    "default runs)")
    parser.add_argument("--data-dir", default=None, help="benchmark files folder (overrides the file's 'data_dir')")
    parser.add_argument("--cache-dir", default=None,
                        help="feature / probe cache (overrides the file's 'cache_dir'; 'none' disables)")
    parser.add_argument("--report", default=None,
                        help="report folder (overrides the file's 'report'; default <out>/study/<file name>)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the file and list the runs and eNTKs it needs, then stop")
    add_executor_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..study import load_study, plan, run_study

    spec, ws = load_study(args.file, out=args.out, data_dir=args.data_dir, cache_dir=args.cache_dir,
                          device=args.device, report=args.report)
    p = plan(spec, ws.data_dir)
    waves = p.phases()
    jobs = [j for wave in waves for j in wave]
    todo = [j for j in jobs if not j.done(ws)]
    print(f"study {args.file}: {len(spec.tasks)} task(s), {len(jobs)} job(s) ({len(jobs) - len(todo)} finished "
          f"already) -> {spec.report}")
    if args.dry_run:
        for job in jobs:
            print(f"  {'done ' if job.done(ws) else 'to do'}  {job.label}  {job.folder(ws)}")
        return 0
    result = run_study(spec, ws, executor_from_args(args), layout="study")
    print(f"report: {result.report / 'report.md'}")
    return 0
