"""Every name lpft gives a computation, in one torch-free module.

A name is a promise: the same name means the same numbers, so a finished computation under it is reused and an
interrupted one resumed. Five kinds of names:

- **run**: ``<out>/<task>/<method>/<model>-seed<seed>-<run key>/`` (:func:`run_folder`, :func:`run_key`);
- **probe**: the runs that start from one linear probe (:func:`probe_key`);
- **feature cache**: pre-trained features and fitted probes under the cache folder (:func:`features_key`,
  :func:`probe_cache_name`), a run's analysis features in its folder (:func:`run_features_name`);
- **eNTK**: ``<out>/<task>/ntk/<method>-seed<seed>-n<N>x<M>-<key>/`` (:func:`ntk_folder`), N and M the samples
  actually drawn (the requested sizes as far as the splits reach);
- **study job**: a job's identity within a study, independent of where the runs go and of the data
  (:func:`job_key`).

Which options enter the run key is one table, :data:`NEUTRAL`: an option at its neutral value is left out of the
hash. Options added to lpft after runs existed have as neutral value what those runs did, so the runs keep their
keys; options that change no number are neutral at every value. Changing this module renames runs: the keys of
committed runs are pinned by ``tests/test_keys.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .methods.config import RunConfig


class _Any:
    """Neutral at every value: the option changes no number."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


def _architecture_pooling(cfg: RunConfig) -> tuple:
    """Unset, or the architecture's own pooling (first token for encoders, last for decoders)."""
    from .methods.config import _default_pooling

    return (None, _default_pooling(cfg.model))


def _subset_order(cfg: RunConfig) -> tuple:
    """``first`` (runs made before the option), or any order when no subset and no 9:1 cut is drawn."""
    return ("first",) if cfg.subset_order_matters else (ANY,)


#: Each option's neutral value(s): at it, the option is left out of the run key. A callable gives the neutral values
#: of a configuration. Options not listed always enter the key.
NEUTRAL: dict[str, Any] = {
    # change no number: logging, evaluation batching, how often resume state is written
    "log_every": ANY,
    "eval_batch_size": ANY,
    "checkpoint_every": ANY,
    # added after runs existed: at what those runs did, they keep their keys (the new defaults normal head and
    # gradient clipping are other computations and get other keys)
    "precision": "fp32",
    "validation_subset": None,
    "lora_targets": None,
    "pooling": _architecture_pooling,
    "head_init": "uniform",
    "max_grad_norm": 0.0,
    "data_order": "length",
    "subset_order": _subset_order,
}


def _neutral_values(cfg: RunConfig, option: str) -> tuple:
    neutral = NEUTRAL[option]
    return tuple(neutral(cfg)) if callable(neutral) else (neutral,)


def _hash(fields: dict, length: int = 10) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:length]


def key_fields(cfg: RunConfig) -> dict:
    """The options that enter ``cfg``'s run key, with their values (those at a neutral value left out)."""
    fields = dataclasses.asdict(cfg)
    for option in NEUTRAL:
        neutral = _neutral_values(cfg, option)
        if ANY in neutral or fields[option] in neutral:
            fields.pop(option)
    return fields


def run_key(cfg: RunConfig) -> str:
    """Hash of every option that changes a run's numbers (:func:`key_fields`), 10 hex digits.

    >>> from lpft.methods.config import RunConfig
    >>> run_key(RunConfig().resolved())
    '15eeded438'
    """
    return _hash(key_fields(cfg))


def model_slug(model: str) -> str:
    """A model's name as a folder name: the last path component, other characters than ``[A-Za-z0-9_.-]`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model.rstrip("/")).name)


def run_folder(cfg: RunConfig, out: str | Path = "runs") -> Path:
    """``<out>/<task>/<method>/<model>-seed<seed>-<run key>``: where the run of (resolved) ``cfg`` lives."""
    return Path(out) / cfg.task / cfg.method / f"{model_slug(cfg.model)}-seed{cfg.seed}-{run_key(cfg)}"


def probe_key(cfg: RunConfig) -> str:
    """Runs with the same probe key start from the same linear probe: that of the LP run of the same model, task
    and data (LP's configuration is seed- and schedule-free)."""
    return run_key(dataclasses.replace(cfg, method="lp").resolved()) + cfg.task


# ------------------------------------------------------------------------------------------------ feature cache

def features_key(model_fingerprint: str, tokens_fingerprint: str, pooling: str | None, precision: str) -> str:
    """Cache name of pre-trained features: the model's files, the tokenised split, the pooling when not the
    paper's first token, the precision when not fp32 (bf16 features differ from fp32 ones in the low bits)."""
    key = f"{model_fingerprint}-{tokens_fingerprint}"
    key += "" if pooling in (None, "first") else f"-{pooling}"
    return key + ("" if precision == "fp32" else f"-{precision}")


def probe_cache_name(features: str, targets: str, cs: int, folds: int, max_iter: int) -> str:
    """Cache file name of a fitted probe: its features (:func:`features_key`), a digest of the labels and class
    count (``targets``) and the LP settings."""
    return f"{features}-y{targets}-C{cs}-k{folds}-i{max_iter}.safetensors"


def run_features_name(stage: str, eval_set: str, tokens_fingerprint: str, weights_fingerprint: str) -> str:
    """File name of a run's cached features (``<run>/features/``, :mod:`lpft.analysis.run_features`): the stage
    (pretrained / trained), the evaluation set's name as a file name, its tokens and the weights behind them."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", eval_set)[:60]
    return f"{stage}-{slug}-{tokens_fingerprint}-{weights_fingerprint}.npy"


# ------------------------------------------------------------------------------------------------ eNTK

#: FT and LP-FT: F over LoRA's modules is a part of their F (``query_value``); other methods ignore the option
QUERY_VALUE_METHODS = ("ft", "lp-ft")


@dataclasses.dataclass(frozen=True)
class KernelOptions:
    """The options an eNTK's kernels depend on (the statistics options only change ``stats.json``)."""

    memory_budget: int
    embedding_fraction: float | None = None
    sample: str = "random"
    sketch: int | None = None
    sketch_seed: int | None = None
    query_value: bool = False


def ntk_prefix(cfg: RunConfig) -> str:
    """The start of every eNTK folder name of ``cfg``'s method and seed (the sample sizes and key follow)."""
    return f"{cfg.method}-seed{cfg.seed}-n"


def ntk_folder(out: str | Path, cfg: RunConfig, n_train: int, n_test: int, memory_budget: int,
               embedding_fraction: float | None, sample: str = "random", sketch: int | None = None,
               sketch_seed: int | None = None, query_value: bool = False) -> Path:
    """The folder of one kernel computation on ``n_train`` x ``n_test`` samples: keyed on the run options
    (:func:`run_key`) and on every option that changes the kernels, so a small trial and the full computation never
    collide. The Eq. 1 / Eq. 2 options only change ``stats.json`` and ``summary.md``, which every command rewrites
    (and which record them)."""
    options: dict[str, Any] = {"run": run_key(cfg), "n_train": n_train, "n_test": n_test,
                               "memory_budget": memory_budget, "embedding_fraction": embedding_fraction,
                               "sample": sample}
    if sketch is not None:  # (exact kernels keep the keys they had before sketches existed)
        options.update(sketch=sketch, sketch_seed=cfg.seed if sketch_seed is None else sketch_seed)
    if query_value and cfg.method in QUERY_VALUE_METHODS:  # only then: earlier folders keep their names
        options["query_value"] = True
    return Path(out) / cfg.task / "ntk" / f"{ntk_prefix(cfg)}{n_train}x{n_test}-{_hash(options)}"


def ntk_sizes(cfg: RunConfig, n_train: int, n_test: int, train_size: int, test_size: int) -> tuple[int, int]:
    """The samples an eNTK draws: the requested sizes, as far as the run's train / test splits (``train_size`` /
    ``test_size`` examples, before the run's subsets) reach."""
    train = min(train_size, cfg.train_subset or train_size)
    test = min(test_size, cfg.eval_subset or test_size)
    return min(n_train, train), min(n_test, test)


def find_ntk_folder(out: str | Path, cfg: RunConfig, n_train: int, n_test: int, options: KernelOptions,
                    accept: Callable[[Path], bool]) -> Path | None:
    """An existing folder of this eNTK, found without reading the data: among the folders of ``cfg``'s method and
    seed, one whose name is :func:`ntk_folder`'s for the sample sizes it names (at most the requested ones) and that
    ``accept`` takes (the caller checks what the folder records, e.g. the requested sizes: a smaller trial of the
    same run has a name of this form too); None if there is none."""
    parent = Path(out) / cfg.task / "ntk"
    prefix = ntk_prefix(cfg)
    if not parent.is_dir():
        return None
    for folder in sorted(parent.glob(f"{prefix}*")):
        found = re.fullmatch(r"(\d+)x(\d+)-[0-9a-f]{10}", folder.name[len(prefix):])
        if not found:
            continue
        a, b = int(found.group(1)), int(found.group(2))
        if a <= n_train and b <= n_test and folder == ntk_folder(out, cfg, a, b, **dataclasses.asdict(options)) \
                and accept(folder):
            return folder
    return None


# ------------------------------------------------------------------------------------------------ study jobs

def job_key(kind: str, cfg: RunConfig, kernel: tuple[int, int, KernelOptions] | None = None) -> str:
    """A study job's identity: ``TrainJob:<task>/<method>/<run folder>`` or ``NtkJob:<task>/ntk/<eNTK folder at
    the requested sizes>``; neither depends on where the runs go nor reads the data."""
    if kernel is None:
        return f"{kind}:{run_folder(cfg, '.')}"
    n_train, n_test, options = kernel
    return f"{kind}:{ntk_folder('.', cfg, n_train, n_test, **dataclasses.asdict(options))}"
