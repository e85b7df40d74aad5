"""``lpft ntk``: the eNTK at the start of fine-tuning (paper Table 2) and the Eq. 1 / Eq. 2 prediction checks.

Writes ``<out>/<task>/ntk/<method>-seed<seed>-n<N>x<M>-<key>/``: the kernels (resumable; ``meta.json``, ``*.npy``),
``stats.json``, ``summary.md``, ``spectrum.png`` and ``pair_norms.png``. See ``docs/ntk.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..config import ConfigError, add_config_arguments, config_from_args
from ..methods.config import RunConfig
from ..ntk.sampling import SAMPLINGS
from ..ntk.stats import KERNEL_SCALINGS
from .train import add_run_location_arguments, cache_arg, format_table


DESCRIPTION = ("Writes <out>/<task>/ntk/<method>-seed<seed>-n<N>x<M>-<key>/ (default out: runs): the kernels "
               "(meta.json, *.npy; an interrupted computation resumes, a finished one is reused), stats.json, "
               "summary.md, spectrum.png and pair_norms.png. <key> hashes the run options and the kernel options "
               "below, so every distinct computation gets its own folder.")

# training options the eNTK does not use: it is taken at the start of FT, and the Eq. 1 check runs one epoch
IGNORED_RUN_OPTIONS = ("epochs", "log_every")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, RunConfig, skip=IGNORED_RUN_OPTIONS)
    add_run_location_arguments(parser)
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
    parser.add_argument("--memory-budget", type=int, default=None,
                        help="bytes for gradient blocks (unset: 3 GiB)")
    parser.add_argument("--embedding-fraction", type=float, default=None,
                        help="keep this fraction of the word-embedding parameters (entries, drawn with --seed), "
                             "rescaled: the paper's subsampling with 0.1; default exact")
    parser.add_argument("--predict", action=argparse.BooleanOptionalAction, default=True,
                        help="also predict the logit change of one real fine-tuning epoch from the kernel (Eq. 1) "
                             "and its feature change (Eq. 2)")
    parser.add_argument("--predict-optimizer", default="adamw", choices=("adamw", "sgd"),
                        help="adamw: the real training loop; sgd: same batches and schedule with plain SGD")
    parser.add_argument("--predict-dropout", action=argparse.BooleanOptionalAction, default=True,
                        help="dropout during the predicted fine-tuning as in training (off: Eq. 1 exact as lr -> 0)")


def ntk_folder(out: str | Path, cfg: RunConfig, n_train: int, n_test: int, memory_budget: int,
               embedding_fraction: float | None, sample: str = "random") -> Path:
    """The folder of one kernel computation: keyed on the run options (``run_key``) and on every option that
    changes the kernels, so a small trial and the full computation never collide. The Eq. 1 / Eq. 2 options only
    change ``stats.json`` and ``summary.md``, which every command rewrites (and which record them)."""
    import hashlib
    import json

    options = {"run": cfg.run_key(), "n_train": n_train, "n_test": n_test, "memory_budget": memory_budget,
               "embedding_fraction": embedding_fraction, "sample": sample}
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
    return Path(out) / cfg.task / "ntk" / f"{cfg.method}-seed{cfg.seed}-n{n_train}x{n_test}-{key}"


class KernelProgress:
    """A progress bar over the kernel's parameter groups (stderr), opened at the first finished group."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int, name: str) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:  # a resumed computation starts past 0
            self.bar = tqdm(total=total, initial=done - 1, desc="eNTK parameter groups", unit="group")
        self.bar.set_postfix_str(name, refresh=False)
        self.bar.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from ..io import check_writable_folder, write_json
    from ..ntk import compute_kernels_to_dir, frobenius_norm, ft_ratio, kernel_regression, numerical_rank, residuals
    from ..ntk.gradients import DEFAULT_MEMORY_BUDGET
    from ..ntk.report import PAPER_CB, make_plots, summary_markdown
    from ..ntk.sampling import missing_classes, sample_indices
    from ..ntk.stats import RANK_EPS
    from ..model import extract
    from ..runs import prepare, resolve_cache, start_of_fine_tuning

    started = time.perf_counter()
    cfg = config_from_args(RunConfig, args).resolved()
    if cfg.method == "lp":
        raise ConfigError("--method lp has no fine-tuning stage, so no FT eNTK: use ft, lp-ft, lora or lp-lora")
    for name, least in (("n_train", 2), ("n_test", 1)):  # kernel regression cross-validates over >= 2 samples
        if getattr(args, name) < least:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(args, name)}")
    if args.embedding_fraction is not None and not 0 < args.embedding_fraction <= 1:
        raise ConfigError(f"--embedding-fraction must be in (0, 1], got {args.embedding_fraction}")
    if args.memory_budget is not None and args.memory_budget <= 0:
        raise ConfigError(f"--memory-budget must be > 0, got {args.memory_budget}")

    check_writable_folder(args.out, "--out")
    if cache_arg(args.cache_dir) not in (None, "default"):
        check_writable_folder(args.cache_dir, "--cache-dir")
    prep = prepare(cfg, args.data_dir)
    train_idx = sample_indices(len(prep.splits["train"]), args.n_train, cfg.seed, args.sample, stream=0)
    test_idx = sample_indices(len(prep.splits["test"]), args.n_test, cfg.seed, args.sample, stream=1)
    train, test = prep.splits["train"].subset(train_idx), prep.splits["test"].subset(test_idx)
    C = prep.task.num_labels
    labels = list(prep.task.labels)
    notes = []
    for split, enc in (("train", train), ("test", test)):
        missing = missing_classes(enc.labels, C)
        if missing:
            notes.append(f"the {split} sample ({len(enc)} examples, --sample {args.sample}) has no example of "
                         f"class(es) {', '.join(labels[i] for i in missing)}"
                         + ("; kernel regression sees fewer classes than the task has" if split == "train" else ""))
            print(f"warning: {notes[-1]}", file=sys.stderr)
    clf, _ = start_of_fine_tuning(cfg, prep, resolve_cache(cache_arg(args.cache_dir)), args.device)

    memory_budget = args.memory_budget or DEFAULT_MEMORY_BUDGET
    folder = ntk_folder(args.out, cfg, len(train_idx), len(test_idx), memory_budget, args.embedding_fraction,
                        args.sample)
    print(f"eNTK of {cfg.method.upper()} on {cfg.task} at the start of FT: {len(train_idx)} train x "
          f"{len(test_idx)} test samples, {C} classes -> {folder}")
    with KernelProgress() as progress:
        try:
            k = compute_kernels_to_dir(
                clf, train, test, folder, train_indices=train_idx, test_indices=test_idx,
                memory_budget=memory_budget, embedding_fraction=args.embedding_fraction, seed=cfg.seed,
                progress=progress, lock_root=args.out)
        except ValueError as err:  # another model / sample set / options in that folder
            raise ConfigError(f"{err} (or pass another --out)") from None

    train_logits = extract(clf, train, cfg.eval_batch_size, logits=True)[1].astype(np.float64)
    delta = residuals(train_logits, train.labels)
    kernels = {"P": (k.P_train, k.P_test), "F": (k.F_train, k.F_test), "P+F": (k.full_train, k.full_test)}
    stats = {"task": cfg.task, "method": cfg.method, "model": cfg.model, "seed": cfg.seed, "num_labels": C,
             "labels": labels, "n_train": len(train_idx), "n_test": len(test_idx),
             "sample": args.sample, "train_indices": train_idx, "test_indices": test_idx, "warnings": notes,
             "kernel_scaling": args.kernel_scaling,
             "embedding_fraction": args.embedding_fraction,
             # the head FT starts from (claim 5's SGD side: `lpft claims` pairs it with the measured change)
             "start_head_norm": float(clf.head.weight.detach().norm()), "head_norm": cfg.head_norm,
             "head_scale": cfg.head_scale,
             "rank_tolerance": f"singular values > sigma_max * max(shape) * {RANK_EPS:.3g} (float32 eps)",
             "kernel_regression_note": "entry_*: authors' binary classifier over (sample, class) entries, chance "
                                       "1 - 1/C; argmax_*: per-sample argmax against the label",
             "ft_ratio": ft_ratio(k.P_train, k.F_train, delta, C),
             "ft_ratio_note": "mean over train x of ||sum_i F(x,x_i) delta_i|| / ||sum_i (P+F)(x,x_i) delta_i||, "
                              "delta from the start-of-FT logits",
             "kernels": {}}
    for name, (Ktr, Kte) in kernels.items():
        kr = kernel_regression(Ktr, train.labels, Kte, test.labels, num_labels=C, scaling=args.kernel_scaling)
        stats["kernels"][name] = {"rank": numerical_rank(Ktr), "size": int(Ktr.shape[0]),
                                  "frobenius": frobenius_norm(Ktr),
                                  "entry_train": kr.entry_train, "entry_test": kr.entry_test,
                                  "argmax_train": kr.argmax_train, "argmax_test": kr.argmax_test,
                                  "entry_chance": kr.entry_chance}
    if args.predict:
        from ..ntk.predict import predict_and_compare

        print("  predicting one fine-tuning epoch from the kernel (Eq. 1) and running it", flush=True)
        stats["predict"] = predict_and_compare(k, clf, train, test, train_logits, batch_size=cfg.batch_size,
                                               lr=cfg.lr, seed=cfg.seed, weight_decay=cfg.weight_decay, epochs=1,
                                               optimizer=args.predict_optimizer,
                                               eval_batch_size=cfg.eval_batch_size, dropout=args.predict_dropout,
                                               max_grad_norm=cfg.max_grad_norm, data_order=cfg.data_order)
    stats["seconds"] = time.perf_counter() - started
    write_json(folder / "stats.json", stats)
    make_plots(k, train.labels, C, folder, labels, title=f"{cfg.method.upper()} on {cfg.task}")
    (folder / "summary.md").write_text(summary_markdown(stats, paper=PAPER_CB if cfg.task == "cb" else None))

    rows = [["kernel", "rank", "FN", "entry tr/te", "argmax tr/te"]]
    for name, s in stats["kernels"].items():
        rows.append([name, f"{s['rank']}/{s['size']}", f"{s['frobenius']:.4g}",
                     f"{s['entry_train']:.4f}/{s['entry_test']:.4f}",
                     f"{s['argmax_train']:.4f}/{s['argmax_test']:.4f}"])
    print()
    print(format_table(rows))
    print(f"FT ratio: {stats['ft_ratio']:.4f}")
    if "predict" in stats:
        p = stats["predict"]["test"]
        print(f"Eq. 1 prediction of one {args.predict_optimizer} epoch (test logits): cosine {p['cosine']:.4f}, "
              f"rel. error {p['rel_error_sgd_scale']:.4f} at the SGD scale, {p['rel_error_fitted']:.4f} after "
              f"fitting the scale (x{p['fitted_scale']:.4g})")
        f = stats["predict"].get("features_test")
        if f:
            print(f"Eq. 2 prediction (test features): cosine {f['cosine']:.4f}, rel. error "
                  f"{f['rel_error_sgd_scale']:.4f} at the SGD scale, {f['rel_error_fitted']:.4f} after fitting the "
                  f"scale (x{f['fitted_scale']:.4g})")
    print(f"ntk folder: {folder}")
    return 0
