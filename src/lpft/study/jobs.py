"""The units of work an executor runs: one training run (``TrainJob``) or one eNTK (``NtkJob``).

A job is a small picklable description; ``execute(workspace)`` does the work in whatever process runs it and
returns the folder it wrote. Jobs are idempotent: a finished folder is reused, an interrupted one resumed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import keys
from ..keys import QUERY_VALUE_METHODS, KernelOptions
from ..keys import ntk_folder as ntk_folder  # re-exported (defined in lpft.keys)
from ..keys import ntk_prefix as ntk_prefix  # re-exported (defined in lpft.keys)
from ..methods.config import RunConfig
from ..options import DEFAULT_MEMORY_BUDGET
from .spec import NtkSpec, Workspace

LABEL = {"lp": "LP", "ft": "FT", "lp-ft": "LP-FT", "lora": "LoRA", "lp-lora": "LP-LoRA"}


def task_label(cfg: RunConfig) -> str:
    """The task's name in progress lines; a user-file task is named by its training file."""
    return Path(cfg.train_file).stem if cfg.task == "files" and cfg.train_file else cfg.task


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


def head_label(c: RunConfig) -> str:
    """" head norm 2" / " head x0.5" for a rescaled start (norm sweep), else ""."""
    value = c.head_norm if c.head_norm is not None else c.head_scale
    return f" head {'norm ' if c.head_norm is not None else 'x'}{value:g}" if value is not None else ""


@dataclass(frozen=True)
class TrainJob:
    config: RunConfig  # resolved

    @property
    def label(self) -> str:
        c = self.config
        seed = "" if c.method == "lp" else f" seed {c.seed}"
        return f"{task_label(c)} {LABEL[c.method]}{seed}{head_label(c)}"

    @property
    def key(self) -> str:
        """The job's identity in a study (:func:`lpft.keys.job_key`)."""
        return keys.job_key("TrainJob", self.config)

    def folder(self, ws: Workspace) -> Path:
        return keys.run_folder(self.config, ws.out)

    def done(self, ws: Workspace) -> bool:
        return (self.folder(ws) / "metrics.json").exists()

    def execute(self, ws: Workspace) -> Path:
        from ..runs import train

        return train(self.config, out=ws.out, data_dir=ws.data_dir, cache_dir=ws.cache_dir, device=ws.device)

    def summary(self, folder: Path) -> str:
        from ..io import read_json

        metrics = read_json(folder / "metrics.json")
        name, value = next(iter(metrics["test"].items()))
        return f"test {name} {value:.4f}"


@dataclass(frozen=True)
class NtkJob:
    """The eNTK of ``config``'s start of fine-tuning on ``n_train`` / ``n_test`` examples (``settings.sample``)."""

    config: RunConfig  # resolved, method with an FT stage
    settings: NtkSpec

    @property
    def label(self) -> str:
        c = self.config
        return f"{task_label(c)} eNTK {LABEL[c.method]} seed {c.seed}{head_label(c)}"

    @property
    def kernel_options(self) -> KernelOptions:
        """The settings its kernels (and so its folder's name) depend on."""
        s = self.settings
        return KernelOptions(s.memory_budget or DEFAULT_MEMORY_BUDGET, s.embedding_fraction, s.sample, s.sketch,
                             s.sketch_seed, s.query_value)

    @property
    def key(self) -> str:
        """The job's identity in a study, named without reading the data (:func:`lpft.keys.job_key`)."""
        return keys.job_key("NtkJob", self.config, (self.settings.n_train, self.settings.n_test,
                                                    self.kernel_options))

    def folder(self, ws: Workspace) -> Path:
        """Its folder: the finished one if any (no data read), else named from the data (which caps the sample
        sizes its name holds)."""
        return self.finished(ws) or self.folder_for(*self.sizes(ws), ws)

    def folder_for(self, n_train: int, n_test: int, ws: Workspace) -> Path:
        """Its folder when the data gives ``n_train`` x ``n_test`` samples."""
        return ntk_folder(ws.out, self.config, n_train, n_test, **dataclasses.asdict(self.kernel_options))

    def finished(self, ws: Workspace) -> Path | None:
        """Its folder if it has finished with these settings, found without reading the data (the folder's
        ``stats.json`` records the settings, requested sample sizes included)."""
        from ..io import read_json

        def same_settings(folder: Path) -> bool:
            stats = folder / "stats.json"
            return stats.exists() and read_json(stats).get("settings") == kernel_settings(self.settings)

        return keys.find_ntk_folder(ws.out, self.config, self.settings.n_train, self.settings.n_test,
                                    self.kernel_options, same_settings)

    def sizes(self, ws: Workspace) -> tuple[int, int]:
        """The numbers of train / test samples used: n_train / n_test, as far as the splits reach (reads the data)."""
        from ..runs import load_task

        task = load_task(self.config, ws.data_dir)
        return keys.ntk_sizes(self.config, self.settings.n_train, self.settings.n_test, len(task.load("train")),
                              len(task.load("test")))

    def pattern(self, ws: Workspace) -> Path:
        """Where its folder will be, without reading the data (its name holds the sample sizes the data caps)."""
        return Path(ws.out) / self.config.task / "ntk" / f"{ntk_prefix(self.config)}*"

    def done(self, ws: Workspace) -> bool:
        """Finished with these settings (the kernels alone are reused whatever the statistics settings); reads no
        data: planning and ``--dry-run`` of a study whose data is on the hub download nothing."""
        return self.finished(ws) is not None

    def execute(self, ws: Workspace) -> Path:
        return self.finished(ws) or compute_ntk(self.config, self.settings, ws)

    def summary(self, folder: Path) -> str:
        from ..io import read_json

        return f"FT ratio {read_json(folder / 'stats.json')['ft_ratio']:.4f}"


#: a unit of work of a study
Job = TrainJob | NtkJob


def kernel_settings(s: NtkSpec) -> dict:
    """The settings one eNTK's files depend on, as they read back from JSON (lists, not tuples)."""
    settings = {k: v for k, v in dataclasses.asdict(s).items() if k not in ("tasks", "methods", "seeds")}
    if s.sketch is None:  # exact: the settings as recorded before sketches existed (finished eNTKs stay done)
        del settings["sketch"], settings["sketch_seed"]
    for added_later, default in (("query_value", False), ("regression", True)):  # folders made before it keep
        if settings[added_later] == default:  # their settings (and stay done)
            settings.pop(added_later)
    return json.loads(json.dumps(settings))


def compute_ntk(cfg: RunConfig, s: NtkSpec, ws: Workspace, log=print) -> Path:
    """Kernels (resumable), Table-2 statistics, the optional Eq. 1 / 2 prediction check, plots and summary; returns
    the folder, named from the sample sizes the data gives (the data is read once, here)."""
    import sys

    import numpy as np

    from ..config import ConfigError
    from ..io import environment_info, write_json
    from ..model import extract
    from ..ntk import compute_kernels_to_dir, frobenius_norm, ft_ratio, kernel_regression, numerical_rank, residuals
    from ..ntk.report import PAPER_CB, make_plots, summary_markdown
    from ..ntk.sampling import missing_classes, sample_indices
    from ..ntk.stats import RANK_EPS
    from ..runs import prepare, start_of_fine_tuning

    started = time.perf_counter()
    sketch_seed = cfg.seed if s.sketch_seed is None else s.sketch_seed
    prep = prepare(cfg, ws.data_dir)
    job = NtkJob(cfg, s)
    folder = job.folder_for(min(s.n_train, len(prep.splits["train"])), min(s.n_test, len(prep.splits["test"])), ws)
    train_idx = sample_indices(len(prep.splits["train"]), s.n_train, cfg.seed, s.sample, stream=0)
    test_idx = sample_indices(len(prep.splits["test"]), s.n_test, cfg.seed, s.sample, stream=1)
    train, test = prep.splits["train"].subset(train_idx), prep.splits["test"].subset(test_idx)
    C = prep.task.num_labels
    labels = list(prep.task.labels)
    notes = []
    for split, enc in (("train", train), ("test", test)):
        missing = missing_classes(enc.labels, C)
        if missing:
            notes.append(f"the {split} sample ({len(enc)} examples, --sample {s.sample}) has no example of "
                         f"class(es) {', '.join(labels[i] for i in missing)}"
                         + ("; kernel regression sees fewer classes than the task has" if split == "train" else ""))
            print(f"warning: {notes[-1]}", file=sys.stderr)
    clf, _ = start_of_fine_tuning(cfg, prep, ws.cache, ws.device)
    part: tuple[str, ...] = ()
    if s.query_value and cfg.method in QUERY_VALUE_METHODS:
        from ..methods.lora import lora_target_modules

        part = tuple(lora_target_modules(clf.backbone, cfg.lora_targets))
    log(f"eNTK of {cfg.method.upper()} on {cfg.task} at the start of FT: {len(train_idx)} train x "
        f"{len(test_idx)} test samples, {C} classes -> {folder}")
    with KernelProgress() as progress:
        try:
            k = compute_kernels_to_dir(
                clf, train, test, folder, train_indices=train_idx, test_indices=test_idx,
                memory_budget=s.memory_budget or DEFAULT_MEMORY_BUDGET, embedding_fraction=s.embedding_fraction,
                seed=cfg.seed, progress=progress, lock_root=ws.out, sketch=s.sketch, sketch_seed=sketch_seed,
                part_modules=part)
        except ValueError as err:  # another model / sample set / options in that folder
            raise ConfigError(f"{err} (or pass another --out)") from None

    train_logits = extract(clf, train, cfg.eval_batch_size, logits=True)[1].astype(np.float64)
    delta = residuals(train_logits, train.labels)
    kernels = {"P": (k.P_train, k.P_test), "F": (k.F_train, k.F_test), "P+F": (k.full_train, k.full_test)}
    stats: dict[str, Any] = {
             "task": cfg.task, "method": cfg.method, "model": cfg.model, "seed": cfg.seed, "num_labels": C,
             "labels": labels, "n_train": len(train_idx), "n_test": len(test_idx),
             "train_split_size": len(prep.splits["train"]), "query_value_modules": list(part),
             "sample": s.sample, "train_indices": train_idx, "test_indices": test_idx, "warnings": notes,
             "kernel_scaling": s.kernel_scaling, "embedding_fraction": s.embedding_fraction,
             "sketch": s.sketch, "sketch_seed": sketch_seed if s.sketch is not None else None,
             # the head FT starts from (claim 5's SGD side: `lpft claims` pairs it with the measured change)
             "start_head_norm": float(clf.head.weight.detach().norm()), "head_norm": cfg.head_norm,
             "head_scale": cfg.head_scale,
             "rank_tolerance": f"singular values > sigma_max * max(shape) * {RANK_EPS:.3g} (float32 eps)",
             "kernel_regression_note": "entry_*: authors' binary classifier over (sample, class) entries, chance "
                                       "1 - 1/C; argmax_*: per-sample argmax against the label",
             "ft_ratio": ft_ratio(k.P_train, k.F_train, delta, C),
             **({"sketch_note": f"F estimated from {s.sketch}-dimensional sign projections of the gradients "
                                f"(lpft.ntk.sketch, seed {sketch_seed}); ranks of F and P+F are not estimable "
                                "from a sketch"} if s.sketch is not None else {}),
             "ft_ratio_note": "mean over train x of ||sum_i F(x,x_i) delta_i|| / ||sum_i (P+F)(x,x_i) delta_i||, "
                              "delta from the start-of-FT logits",
             "kernels": {}}
    if not s.regression:
        stats["kernel_regression_note"] = ("not fitted (regression = false): its cross-validated logistic regression "
                                           "on (N*C)-column kernel rows dominates a whole-train-set eNTK")
    for name, (Ktr, Kte) in kernels.items():
        accuracies: dict[str, float | None] = dict.fromkeys(("entry_train", "entry_test", "argmax_train",
                                                             "argmax_test"))
        accuracies["entry_chance"] = 1 - 1 / C
        if s.regression:
            kr = kernel_regression(Ktr, train.labels, Kte, test.labels, num_labels=C, scaling=s.kernel_scaling)
            accuracies = dataclasses.asdict(kr)
        # a sketch's Gram has rank <= K and noise in its tail: no rank is estimable from it (P stays exact)
        rank = numerical_rank(Ktr) if s.sketch is None or name == "P" else None
        stats["kernels"][name] = {"rank": rank, "size": int(Ktr.shape[0]),
                                  "frobenius": frobenius_norm(Ktr), **accuracies}
    if s.predict:
        from ..ntk.predict import predict_and_compare

        assert cfg.batch_size is not None and cfg.lr is not None  # resolved, and a method with an FT stage

        log("  predicting one fine-tuning epoch from the kernel (Eq. 1) and running it")
        stats["predict"] = predict_and_compare(k, clf, train, test, train_logits, batch_size=cfg.batch_size,
                                               lr=cfg.lr, seed=cfg.seed, weight_decay=cfg.weight_decay, epochs=1,
                                               optimizer=s.predict_optimizer,
                                               eval_batch_size=cfg.eval_batch_size, dropout=s.predict_dropout,
                                               max_grad_norm=cfg.max_grad_norm, data_order=cfg.data_order)
    stats["settings"] = kernel_settings(s)
    stats["config"] = dataclasses.asdict(cfg)  # the whole run config of the start (lr, batch size, max length...)
    stats["seconds"] = time.perf_counter() - started
    write_json(folder / "environment.json", environment_info())  # package versions, git revision, command line
    make_plots(k, train.labels, C, folder, labels, title=f"{cfg.method.upper()} on {cfg.task}")
    (folder / "summary.md").write_text(summary_markdown(stats, paper=PAPER_CB if cfg.task == "cb" else None))
    write_json(folder / "stats.json", stats)  # last: its presence marks a finished eNTK
    return folder
