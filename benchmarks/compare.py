"""Time ``lpft compare`` end to end and the share of time spent outside forward / backward passes.

    python benchmarks/compare.py --data-dir ../shared/data                       # the issue's scale (slow on CPU)
    python benchmarks/compare.py --seeds 1 --epochs 2 --data-dir ../shared/data  # a reduced scale

Runs the study from scratch (fresh run folder and cache in a temporary directory, so nothing is reused) with the
embedded model, and prints the total wall time, the time inside model forward passes (training and feature
extraction) and backward passes, and named buckets of the remainder (optimiser steps, model loading, the
scikit-learn probe, ...).

Instrumentation lives here only: for the duration of the benchmark, ``Classifier.forward``, ``Classifier.features``,
``torch.Tensor.backward`` and a few other functions are wrapped by timers. The shipped training loop is unchanged.
A re-entrancy guard counts nested passes once (``forward`` calls ``features``). On CPU every op is synchronous,
so the wall time of a call is its compute time; on a GPU the timers synchronise first (which costs a little).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch


class Timers:
    """Seconds and calls per bucket; ``pass`` buckets nest-guarded so a forward inside a forward counts once."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self._depth = defaultdict(int)

    def wrap(self, owner, name: str, bucket: str, group: str | None = None):
        """Replace ``owner.name`` by a timed version; returns the undo function (which restores the raw attribute,
        classmethods included, or removes the override of an inherited one)."""
        original = getattr(owner, name)
        raw = owner.__dict__.get(name)
        group = group or bucket
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self._depth[group]:  # nested inside a call of the same group: already being timed
                return original(*args, **kwargs)
            self._depth[group] += 1
            sync()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                sync()
                self.seconds[bucket] += time.perf_counter() - start
                self.calls[bucket] += 1
                self._depth[group] -= 1

        setattr(owner, name, timed)
        return lambda: setattr(owner, name, raw) if raw is not None else delattr(owner, name)

    @contextmanager
    def installed(self, targets):
        undo = [self.wrap(*t) for t in targets]
        try:
            yield self
        finally:
            for u in reversed(undo):
                u()


def targets():
    """(owner, attribute, bucket, nesting group). Pass buckets share the group "pass"."""
    import sklearn.manifold

    import lpft.analysis.dynamics as dynamics
    import lpft.methods.lp as lp
    import lpft.runs as runs
    from lpft.model import Classifier

    return [
        (Classifier, "forward", "forward (training steps)", "pass"),
        (Classifier, "features", "forward (feature extraction)", "pass"),
        (torch.Tensor, "backward", "backward", "pass"),
        (torch.optim.AdamW, "step", "optimiser step", None),
        (runs, "prepare", "data loading and tokenisation", None),
        (Classifier, "from_pretrained", "model loading", None),
        (lp, "fit_linear_probe", "scikit-learn probe (LogisticRegressionCV)", None),
        (dynamics, "gd_linear_probe", "LP by gradient descent (analysis)", None),
        (sklearn.manifold.TSNE, "fit_transform", "t-SNE (analysis)", None),
    ]


PASS_BUCKETS = ("forward (training steps)", "forward (feature extraction)", "backward")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cb")
    parser.add_argument("--methods", default="lp,ft,lp-ft,lora,lp-lora")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--eval-subset", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("LPFT_DATA_DIR"))
    parser.add_argument("--keep", default=None, help="keep runs and report in this folder (default: a temp folder)")
    args = parser.parse_args(argv)

    from lpft.cli import main as lpft_main

    work = Path(args.keep or tempfile.mkdtemp(prefix="lpft-bench-"))
    cmd = ["compare", "--task", args.task, "--methods", args.methods, "--seeds", args.seeds,
           "--epochs", str(args.epochs), "--out", str(work / "runs"), "--cache-dir", str(work / "cache"),
           "--report", str(work / "report")]
    for flag, value in (("--train-subset", args.train_subset), ("--eval-subset", args.eval_subset),
                        ("--max-length", args.max_length), ("--data-dir", args.data_dir)):
        if value is not None:
            cmd += [flag, str(value)]
    print("lpft " + " ".join(cmd), flush=True)
    print(f"torch threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}, "
          f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}", flush=True)

    timers = Timers()
    with timers.installed(targets()):
        start = time.perf_counter()
        code = lpft_main(cmd)
        total = time.perf_counter() - start
    if code != 0:
        return code

    inside = sum(timers.seconds[b] for b in PASS_BUCKETS)
    study = __import__("json").loads((work / "report" / "study.json").read_text())
    print(f"\n=== benchmark: {args.task}, methods {args.methods}, seeds {args.seeds}, {args.epochs} epoch(s) ===")
    print(f"total wall time            {total:8.1f} s  (training {study['seconds']['training']:.1f} s, "
          f"analysis and report {total - study['seconds']['training']:.1f} s)")
    print(f"inside forward / backward  {inside:8.1f} s  ({100 * inside / total:.1f}%)")
    print(f"outside forward / backward {total - inside:8.1f} s  ({100 * (total - inside) / total:.1f}%)  goal <= 10%")
    print("\nbuckets (seconds, calls, share of total):")
    for bucket, seconds in sorted(timers.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {bucket:45s} {seconds:8.1f} s {timers.calls[bucket]:7d}  {100 * seconds / total:5.1f}%")
    other = total - sum(timers.seconds.values())
    print(f"  {'everything else':45s} {other:8.1f} s {'':7s}  {100 * other / total:5.1f}%")
    print(f"\nreport: {work / 'report' / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
