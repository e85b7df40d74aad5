"""The run configuration: one dataclass whose fields (and docstrings) are the ``lpft train`` options.

Hyperparameters left unset (``None``) resolve to the paper's Table 6 values for the task and method
(RoBERTa-base settings); ``RunConfig.resolved()`` fills them in and validates everything before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass

from ..config import ConfigError

# torch-free: `lpft --help` builds its parsers from this module (lpft.model is imported only to resolve a pooling)
from ..options import DATA_ORDERS, DEFAULT_MODEL, HEAD_INITS, METHODS, POOLINGS, PRECISIONS, SUBSET_ORDERS

#: seeds are 0 <= seed < 2**32 (numpy's SeedSequence words; torch derives per-epoch seeds from them)
SEED_LIMIT = 2 ** 32

# Paper Table 6 (RoBERTa-base): (batch size, learning rate) per task and method.
_TABLE6_TASKS = ("cb", "rte", "boolq", "wic", "wsc", "cola", "sst2", "mrpc")
_TABLE6 = {
    "ft": ([16, 16, 32, 32, 16, 32, 32, 16], [5e-5, 1e-5, 1e-5, 1e-5, 1e-3, 5e-5, 1e-5, 1e-5]),
    "lora": ([16, 16, 32, 16, 16, 16, 32, 32], [1e-3, 1e-3, 5e-4, 1e-3, 1e-4, 1e-3, 5e-4, 5e-4]),
    "lp-ft": ([8] * 8, [5e-6, 1e-5, 1e-5, 1e-5, 1e-3, 1e-5, 1e-5, 1e-5]),
    "lp-lora": ([8] * 8, [1e-4, 5e-4, 5e-4, 1e-3, 1e-4, 1e-3, 1e-3, 1e-3]),
}
HYPERPARAMETERS = {
    (task, method): (bs[i], lr[i]) for method, (bs, lr) in _TABLE6.items() for i, task in enumerate(_TABLE6_TASKS)
}
for _method, _bs_lr in {"ft": (16, 2e-5), "lora": (16, 5e-4), "lp-ft": (8, 1e-5), "lp-lora": (8, 5e-4)}.items():
    # our choice for tasks the paper did not tune (bbc-news, user files): mid-range values of Table 6
    HYPERPARAMETERS[("*", _method)] = _bs_lr
# CoLA's in-domain / out-of-domain test variants train exactly like CoLA
HYPERPARAMETERS.update({(v, m): HYPERPARAMETERS[("cola", m)] for v in ("cola-id", "cola-ood") for m in _TABLE6})
# bbc-news (not in the paper): batch 16 for every method, so the default one-epoch LP-FT takes ~110 optimiser steps
HYPERPARAMETERS.update({("bbc-news", m): (16, HYPERPARAMETERS[("*", m)][1]) for m in _TABLE6})
# Table 6's Amazon (BOSS) and PubMed 20k RCT columns; the -full variants train exactly like their base task
_TABLE6_MORE = {"boss-amazon": {"ft": (16, 1e-5), "lora": (16, 1e-3), "lp-ft": (8, 1e-6), "lp-lora": (8, 5e-4)},
                "pubmed-rct": {"ft": (8, 5e-6), "lora": (8, 5e-4), "lp-ft": (8, 5e-6), "lp-lora": (8, 1e-3)}}
HYPERPARAMETERS.update({(t, m): v for t, row in _TABLE6_MORE.items() for m, v in row.items()})
HYPERPARAMETERS.update({("boss-amazon-full", m): v for m, v in _TABLE6_MORE["boss-amazon"].items()})

# Options that only shape the fine-tuning stage. LP is a deterministic probe on frozen features, so for method lp
# these are reset to their defaults (epochs, batch size and lr to unset): one LP run per (model, task, data), shared
# by every seed and schedule of a study, instead of a new LP folder for each --seed or --epochs.
FT_ONLY_FIELDS = ("seed", "epochs", "batch_size", "lr", "weight_decay", "dropout", "lora_r", "lora_alpha",
                  "head_norm", "head_scale", "log_every", "lora_targets", "head_init", "max_grad_norm", "data_order")

# What runs made before head_init / max_grad_norm / data_order existed did (RunRecord fills these in for them; at
# these values the options are left out of the run key: lpft.keys.NEUTRAL).
LEGACY_PROTOCOL = {"head_init": "uniform", "max_grad_norm": 0.0, "data_order": "length", "subset_order": "first"}

# Tasks whose default schedule is shortened so the default `lpft train` finishes in minutes on 2 CPU cores.
QUICK_DEFAULTS = {"bbc-news": {"epochs": 1, "max_length": 64}}


@dataclass
class RunConfig:
    task: str = "bbc-news"
    """task name (cb, rte, boolq, wic, wsc, cola, sst2, mrpc, boss-amazon, pubmed-rct, bbc-news) or 'files'"""
    method: str = "lp-ft"
    """lp, ft, lp-ft, lora or lp-lora"""
    model: str = DEFAULT_MODEL
    """Hugging Face encoder or decoder (GPT-2, Llama, Qwen2, ...): hub name or local folder (default: the embedded
    all-MiniLM-L6-v2)"""
    seed: int = 0
    """seed for data order, head initialisation, dropout and LoRA initialisation. LP is seed-free (a deterministic
    probe on frozen features): its one run, folder seed0, serves every seed, and --seed is ignored for it"""
    epochs: int | None = None
    """fine-tuning epochs (default 10; 1 for bbc-news); the epoch with the best validation metric is kept"""
    batch_size: int | None = None
    """training batch size (default: paper Table 6 for the task and method)"""
    lr: float | None = None
    """peak learning rate of AdamW with linear decay and no warmup (default: paper Table 6)"""
    weight_decay: float = 0.0
    """AdamW weight decay (paper: 0)"""
    head_init: str = "normal"
    """head initialisation: normal = weights N(0, initializer_range^2), bias 0 (Hugging Face Trainer's models, the
    authors' setup); uniform = PyTorch's Linear default U(+-1/sqrt(h)) for weight and bias (deviation)"""
    max_grad_norm: float = 1.0
    """clip the gradient to this global L2 norm before each optimiser step (Trainer's default 1.0, the authors'
    setup); 0 disables clipping (deviation)"""
    data_order: str = "length"
    """training batch order: length = random batches of similar length (less padding, faster; kept as the default
    because on CB it matched random order within seed noise, see the README); random = a fresh random permutation
    every epoch (Trainer's RandomSampler, the authors' setup)"""
    max_length: int | None = None
    """maximum tokens per example (default 128; 64 for bbc-news)"""
    dropout: float | None = None
    """dropout before the head; Llama / Qwen2 name none, so 0 for them (default: the backbone's hidden dropout)"""
    pooling: str | None = None
    """features fed to the head: first, last or mean (non-padding) token (default: first for encoders, last for
    decoder-only models)"""
    lora_r: int = 8
    """LoRA rank"""
    lora_alpha: int = 8
    """LoRA scaling alpha"""
    lora_targets: str | None = None
    """comma-separated module names LoRA adapts (default: PEFT's choice for the architecture: query,value for
    BERT / RoBERTa, c_attn for GPT-2, q_proj,v_proj for Llama / Qwen2)"""
    lp_cs: int = 10
    """LP: number of inverse-regularisation strengths tried by LogisticRegressionCV"""
    lp_folds: int = 5
    """LP: cross-validation folds"""
    lp_max_iter: int = 5000
    """LP: lbfgs iterations"""
    head_norm: float | None = None
    """rescale the head to this Frobenius norm before fine-tuning (norm sweep)"""
    head_scale: float | None = None
    """multiply the head by this factor before fine-tuning (norm sweep)"""
    train_subset: int | None = None
    """use only N training examples (quick runs; which ones: --subset-order)"""
    eval_subset: int | None = None
    """use only N validation and N test examples (quick runs; which ones: --subset-order)"""
    validation_subset: int | None = None
    """use only N validation examples, the split that picks the best epoch (overrides --eval-subset there; the test
    split stays whole): evaluating every epoch on a large validation split can cost as much as the training itself"""
    subset_order: str = "stratified"
    """how the subsets above (and, for --task files without --validation-file, the 9:1 train / validation cut) pick
    examples: stratified = a label-stratified sample in file order, drawn with a fixed seed (0, not --seed: every seed
    and method sees the same examples); first = the first N rows and a file-order cut (the authors' protocol, and
    runs made before this option). Either way a warning when a split's labels are unlike the file's (docs/tasks.md)"""
    eval_batch_size: int = 64
    """batch size for feature extraction and evaluation"""
    log_every: int = 10
    """log head norms, logit norm and loss every N optimisation steps"""
    checkpoint_every: float = 300.0
    """seconds between resume checkpoints of fine-tuning (weights and optimiser state: ~270 MB for MiniLM FT),
    checked at the end of each epoch; 0: after every epoch (lpft 0.2). SIGINT / SIGTERM always write one before
    stopping, after the current step. Not part of the run key: it changes no number (default: 300)"""
    train_file: str | None = None
    """with --task files: the training file (CSV, TSV or JSONL)"""
    validation_file: str | None = None
    """with --task files: validation file (unset: the last 10% of the training rows left after the test split, in
    file order)"""
    test_file: str | None = None
    """with --task files: test file (unset: a stratified 10% of the training file, fixed seed, becomes the test
    set)"""
    text_columns: str = "text"
    """with --task files: one text column, or two comma-separated for sentence pairs"""
    label_column: str = "label"
    """with --task files: the label column"""

    # numerical precision (changes the numbers, so it is part of the run key)
    precision: str = "fp32"
    """fp32, or bf16: bfloat16 autocast for training and feature extraction (weights and optimizer stay fp32;
    the eNTK is always fp32/fp64)"""

    def resolved(self) -> "RunConfig":
        """A copy with every default filled in; raises ConfigError naming a bad option.

        Resolving is done once: a config that ``resolved()`` returned, unchanged since, comes back as a copy at
        once (resolution may read the model's config from disk, and one ``lpft train`` passes its config through
        several functions that each need it resolved)."""
        if _RESOLVED.get(id(self)) == dataclasses.astuple(self):
            return _mark_resolved(dataclasses.replace(self))
        cfg = dataclasses.replace(self)
        _check_types(cfg)
        cfg.task = cfg.task.lower()
        cfg.method = cfg.method.lower()
        if cfg.method not in METHODS:
            raise ConfigError(f"--method {self.method!r} is unknown: expected one of {', '.join(METHODS)}")
        for name in ("lr", "weight_decay", "dropout", "head_norm", "head_scale"):
            value = getattr(cfg, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if not 0 <= cfg.seed < SEED_LIMIT:
            # numpy's generators refuse negative seeds, torch's overflow above 2**64; one range for both
            raise ConfigError(f"--seed must be in 0..{SEED_LIMIT - 1}, got {cfg.seed}")
        quick = QUICK_DEFAULTS.get(cfg.task, {})
        if cfg.epochs is None:
            cfg.epochs = quick.get("epochs", 10)
        if cfg.max_length is None:
            cfg.max_length = quick.get("max_length", 128)
        if cfg.method != "lp":
            key = (cfg.task, cfg.method) if (cfg.task, cfg.method) in HYPERPARAMETERS else ("*", cfg.method)
            bs, lr = HYPERPARAMETERS[key]
            cfg.batch_size = bs if cfg.batch_size is None else cfg.batch_size
            cfg.lr = lr if cfg.lr is None else cfg.lr
        _check_positive(cfg, "epochs", "batch_size", "lr", "max_length", "lora_r", "lora_alpha", "lp_cs",
                        "lp_folds", "lp_max_iter", "head_norm", "head_scale", "train_subset", "eval_subset",
                        "validation_subset", "eval_batch_size", "log_every")
        if not (math.isfinite(cfg.checkpoint_every) and cfg.checkpoint_every >= 0):
            raise ConfigError(f"--checkpoint-every must be a number of seconds >= 0 (0: after every epoch), got "
                              f"{cfg.checkpoint_every}")
        if cfg.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {cfg.weight_decay}")
        if cfg.head_init not in HEAD_INITS:
            raise ConfigError(f"--head-init {cfg.head_init!r} is unknown: expected one of {', '.join(HEAD_INITS)}")
        cfg.subset_order = cfg.subset_order.lower()
        if cfg.subset_order not in SUBSET_ORDERS:
            raise ConfigError(f"--subset-order {self.subset_order!r} is unknown: expected one of "
                              f"{', '.join(SUBSET_ORDERS)}")
        if cfg.data_order not in DATA_ORDERS:
            raise ConfigError(f"--data-order {cfg.data_order!r} is unknown: expected one of {', '.join(DATA_ORDERS)}")
        if not cfg.max_grad_norm >= 0:
            raise ConfigError(f"--max-grad-norm must be >= 0 (0: no clipping), got {cfg.max_grad_norm}")
        if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {cfg.dropout}")
        if cfg.head_norm is not None and cfg.head_scale is not None:
            raise ConfigError("--head-norm and --head-scale are exclusive: give one")
        if cfg.max_length > 512:
            raise ConfigError(f"--max-length must be <= 512, got {cfg.max_length}")
        cfg.precision = cfg.precision.lower()
        if cfg.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r} is unknown: expected one of {', '.join(PRECISIONS)}")
        if cfg.task == "files" and not cfg.train_file:
            raise ConfigError("--task files needs --train-file")
        file_options = [n for n in ("train_file", "validation_file", "test_file") if getattr(cfg, n)]
        if cfg.task != "files" and file_options:
            option = "--" + file_options[0].replace("_", "-")
            raise ConfigError(f"{option} is only read with --task files, not --task {self.task}: "
                              f"drop {option} or use --task files")
        if cfg.pooling is not None:
            cfg.pooling = cfg.pooling.lower()
            if cfg.pooling not in POOLINGS:
                raise ConfigError(f"--pooling {self.pooling!r} is unknown: expected one of {', '.join(POOLINGS)}")
        else:
            cfg.pooling = _default_pooling(cfg.model)
        if cfg.lora_targets is not None:
            names = [t.strip() for t in cfg.lora_targets.split(",")]
            if not all(names):
                raise ConfigError(f"--lora-targets {self.lora_targets!r}: expected comma-separated module names")
            cfg.lora_targets = ",".join(names)
        if cfg.method == "lp":  # validated above like any run; then the options LP ignores are normalised away
            defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
            for name in FT_ONLY_FIELDS:
                setattr(cfg, name, None if name in ("epochs", "batch_size", "lr") else defaults[name])
        return _mark_resolved(cfg)

    def run_key(self) -> str:
        """Hash of everything that changes the numbers (:func:`lpft.keys.run_key`: not logging or batch size for
        evaluation, nor options at their neutral value)."""
        from ..keys import run_key

        return run_key(self)

    def split_limit(self, split: str) -> int | None:
        """How many examples of ``split`` the run uses (None: all)."""
        if split == "train":
            return self.train_subset
        if split == "validation" and self.validation_subset is not None:
            return self.validation_subset
        return self.eval_subset

    def pick(self, split: str, examples: list) -> list:
        """The examples of ``split`` the run uses: its subset (``split_limit``) in ``subset_order``."""
        from ..data.subsets import take

        return take(examples, self.split_limit(split), self.subset_order)

    @property
    def subset_order_matters(self) -> bool:
        """Whether ``subset_order`` changes the data: a subset is asked for, or a user's train file is cut 9:1."""
        return (any(v is not None for v in (self.train_subset, self.eval_subset, self.validation_subset))
                or (self.task == "files" and not self.validation_file))

    @property
    def uses_lp(self) -> bool:
        return self.method in ("lp", "lp-ft", "lp-lora")

    @property
    def uses_lora(self) -> bool:
        return self.method in ("lora", "lp-lora")


#: id -> the field values of each live config that ``resolved()`` returned (kept outside the instances, so that
#: ``__dict__``, ``asdict``, ``==`` and the run key see the fields only); an entry goes when its config does
_RESOLVED: dict[int, tuple] = {}


def _mark_resolved(cfg: RunConfig) -> RunConfig:
    """Remember the field values ``cfg`` was resolved with: a later change of a field makes the next ``resolved()``
    resolve again."""
    _RESOLVED[id(cfg)] = dataclasses.astuple(cfg)
    weakref.finalize(cfg, _RESOLVED.pop, id(cfg), None)
    return cfg


def _default_pooling(model: str) -> str | None:
    """The architecture's pooling, from the model's config (the embedded default model is an encoder); ``None``
    when that config cannot be read now (a hub model offline): then loading the model reports why, in one line,
    and ``Classifier.from_pretrained`` resolves the pooling once it can."""
    if model == DEFAULT_MODEL:
        return "first"
    from ..errors import ModelError
    from ..model.classifier import default_pooling
    from ..model.hub import load_config

    try:
        return default_pooling(load_config(model))
    except ModelError:
        return None


def _check_types(cfg: RunConfig) -> None:
    """Values given from Python (``lpft.train(epochs=1.5)``) have the fields' types, as the CLI's parser ensures:
    an int for an int (not a bool), a number for a float (ints become floats), a string for a string."""
    import typing

    for name, hint in typing.get_type_hints(RunConfig).items():
        value = getattr(cfg, name)
        kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if value is None and type(None) in typing.get_args(hint):
            continue
        kind = kinds[0]
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(cfg, name, float(value))
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = {int: "an integer", float: "a number", str: "a string"}.get(kind, kind.__name__)
            raise ConfigError(f"--{name.replace('_', '-')} must be {expected}, got {value!r}")


def _check_positive(cfg: RunConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value}")
