"""``lpft ntk``: the eNTK at the start of fine-tuning (paper Table 2) and the Eq. 1 / Eq. 2 prediction checks.

Writes ``<out>/<task>/ntk/<method>-seed<seed>-n<N>x<M>-<key>/``: the kernels (resumable; ``meta.json``, ``*.npy``),
``stats.json``, ``summary.md``, ``spectrum.png`` and ``pair_norms.png``. See ``docs/ntk.md``.
"""

from __future__ import annotations

import argparse

from ..config import add_config_arguments, config_from_args
from ..keys import ntk_folder as ntk_folder  # where the study puts an eNTK; re-exported for callers
from ..methods.config import RunConfig
from ..options import KERNEL_SCALINGS, SAMPLINGS
from ..workspace import Workspace, add_workspace_arguments
from ._options import add_executor_arguments, byte_size, executor_from_args
from .train import format_table

DESCRIPTION = ("Writes <out>/<task>/ntk/<method>-seed<seed>-n<N>x<M>-<key>/ (default out: runs): the kernels "
               "(meta.json, *.npy; an interrupted computation resumes, a finished one is reused), stats.json, "
               "summary.md, spectrum.png and pair_norms.png. <key> hashes the run options and the kernel options "
               "below, so every distinct computation gets its own folder.")

# training options the eNTK does not use: it is taken at the start of FT, and the Eq. 1 check runs one epoch
IGNORED_RUN_OPTIONS = ("epochs", "log_every")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, RunConfig, skip=IGNORED_RUN_OPTIONS)
    add_workspace_arguments(parser)
    parser.add_argument("--n-train", type=int, default=250,
                        help="N train examples, all if the split is smaller (paper: at most 250)")
    parser.add_argument("--n-test", type=int, default=250,
                        help="M test examples, all if the split is smaller (paper: at most 250)")
    parser.add_argument("--sample", default="random", choices=SAMPLINGS,
                        help="random: a sample drawn with --seed, as the authors draw it; first: the first N / M "
                             "(deviation; can miss whole classes)")
    parser.add_argument("--kernel-scaling", default="raw", choices=KERNEL_SCALINGS,
                        help="kernel regression on the raw kernel (the authors') or on the kernel divided by its "
                             "largest train entry (max; deviation)")
    parser.add_argument("--memory-budget", type=byte_size, default=None, metavar="SIZE",
                        help="memory for gradient blocks (and a sketch's projections): bytes or e.g. 1.5GiB, at "
                             "least 64 MiB (unset: 3 GiB); the process peaks 1.4-1.8 GiB above it (model, PyTorch)")
    parser.add_argument("--embedding-fraction", type=float, default=None,
                        help="keep this fraction of the word-embedding parameters (entries, drawn with --seed), "
                             "rescaled: the paper's subsampling with 0.1; default exact")
    parser.add_argument("--sketch", type=int, default=None, metavar="K",
                        help="estimate F from K-dimensional random sign projections of the gradients (unbiased; "
                             "error table in docs/ntk.md; ranks of F and P+F are then not reported); default exact")
    parser.add_argument("--sketch-seed", type=int, default=None,
                        help="the sketch's seed (recorded in stats.json); default --seed")
    parser.add_argument("--regression", action=argparse.BooleanOptionalAction, default=True,
                        help="fit the authors' kernel-regression probe on P, F and P+F (its accuracies); its "
                             "cross-validated fit grows fast with N x C (over 40 min at SST-2 N = 900), so "
                             "--no-regression for whole-train-set FT ratios")
    parser.add_argument("--predict", action=argparse.BooleanOptionalAction, default=True,
                        help="also predict the logit change of one real fine-tuning epoch from the kernel (Eq. 1) "
                             "and its feature change (Eq. 2)")
    parser.add_argument("--predict-optimizer", default="adamw", choices=("adamw", "sgd"),
                        help="adamw: the real training loop; sgd: same batches and schedule with plain SGD")
    parser.add_argument("--predict-dropout", action=argparse.BooleanOptionalAction, default=True,
                        help="dropout during the predicted fine-tuning as in training (off: Eq. 1 exact as lr -> 0)")
    add_executor_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..io import read_json
    from ..study import NtkSpec, StudySpec, TaskSpec, plan, run_study

    cfg = config_from_args(RunConfig, args)
    settings = NtkSpec(methods=(cfg.method.lower(),), seeds=(cfg.seed,), n_train=args.n_train, n_test=args.n_test,
                       sample=args.sample, kernel_scaling=args.kernel_scaling,
                       memory_budget=args.memory_budget, embedding_fraction=args.embedding_fraction,
                       predict=args.predict, predict_optimizer=args.predict_optimizer,
                       predict_dropout=args.predict_dropout, sketch=args.sketch, sketch_seed=args.sketch_seed,
                       regression=args.regression)
    spec = StudySpec(tasks=(TaskSpec(cfg.task.lower(), cfg),), compare=False, ntk=(settings,), source="lpft ntk")
    ws = Workspace.from_args(args)
    planned = plan(spec, ws.data_dir)  # checked before an executor (or Ray) starts
    ws = ws.checked()
    (folder,) = next(iter(run_study(planned, ws, executor_from_args(args), layout="none").ntk.values()))
    stats = read_json(folder / "stats.json")
    rows = [["kernel", "rank", "FN", "entry tr/te", "argmax tr/te"]]
    for name, s in stats["kernels"].items():
        rank = "n/a (sketch)" if s["rank"] is None else s["rank"]
        rows.append([name, f"{rank}/{s['size']}", f"{s['frobenius']:.4g}",
                     f"{_fraction(s['entry_train'])}/{_fraction(s['entry_test'])}",
                     f"{_fraction(s['argmax_train'])}/{_fraction(s['argmax_test'])}"])
    print()
    print(format_table(rows))
    print(f"FT ratio: {stats['ft_ratio']:.4f}")
    if stats.get("sketch_note"):
        print(f"sketched: {stats['sketch_note']}")
    if "predict" in stats:
        p = stats["predict"]["test"]
        print(f"Eq. 1 prediction of one {settings.predict_optimizer} epoch (test logits): cosine {p['cosine']:.4f}, "
              f"rel. error {p['rel_error_sgd_scale']:.4f} at the SGD scale, {p['rel_error_fitted']:.4f} after "
              f"fitting the scale (x{p['fitted_scale']:.4g})")
        f = stats["predict"].get("features_test")
        if f:
            print(f"Eq. 2 prediction (test features): cosine {f['cosine']:.4f}, rel. error "
                  f"{f['rel_error_sgd_scale']:.4f} at the SGD scale, {f['rel_error_fitted']:.4f} after fitting the "
                  f"scale (x{f['fitted_scale']:.4g})")
    print(f"ntk folder: {folder}")
    return 0


def _fraction(x) -> str:
    """An accuracy as a fraction, or "-" where kernel regression was not fitted (--no-regression)."""
    return "-" if x is None else f"{x:.4f}"
