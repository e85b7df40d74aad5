"""Features of a finished run, and of its pre-trained model, on any split — cached inside the run folder.

Analysis reads run records only: the trained model is rebuilt from ``model.safetensors`` (``RunRecord.classifier``)
and the pre-trained one from the run's own config (``RunRecord.pretrained``), so nothing depends on the training
process that wrote the folder. Features are phi(x), the first-token last-layer states the head reads, in eval mode.

Cache layout inside the run folder::

    features/pretrained-<name>-<inputs>-<weights>.npy    phi0(x), the pre-trained backbone
    features/trained-<name>-<inputs>-<weights>.npy       phi(x), the run's best model

``<name>`` is the split (``train``, ``validation``, ``test``) or an evaluation set's name; ``<inputs>`` hashes the
tokenised inputs and ``<weights>`` the weights the features come from (the content of ``model.safetensors`` for
``trained``, the pre-trained model's files for ``pretrained``), so neither a changed data file or tokenizer nor a
replaced checkpoint can be served stale features.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data import DataError, Example, fingerprint
from ..data.batching import Encoded, encode
from ..io import load_array, save_array
from ..keys import run_features_name
from ..methods.lp import encoded_fingerprint, pretrained_features
from ..model import extract, load_tokenizer, model_fingerprint, resolve_device
from ..runs import RunRecord, load_task
from .features import feature_statistics

STAGES = ("pretrained", "trained")


@dataclass
class EvalSet:
    """Tokenised examples of one evaluation set, with the name used in cache files and reports."""

    name: str
    encoded: Encoded

    @property
    def labels(self) -> np.ndarray:
        return self.encoded.labels


def encode_examples(record: RunRecord, name: str, examples: list[Example]) -> EvalSet:
    """Tokenise ``examples`` exactly as the run tokenised its own data (its model's tokenizer, its max length)."""
    if not examples:
        raise DataError(f"evaluation set {name!r} has no examples")
    max_length = record.config.max_length
    assert max_length is not None, "a run's recorded config is resolved (its max length set)"
    return EvalSet(name, encode(load_tokenizer(record.config.model), examples, max_length))


def run_split(record: RunRecord, split: str, data_dir: str | None = None) -> EvalSet:
    """The run's own ``split`` (train / validation / test), with the subset limits the run used, tokenised."""
    return encode_examples(record, split, split_examples(record, split, data_dir))


def split_examples(record: RunRecord, split: str, data_dir: str | None = None) -> list[Example]:
    """The examples of the run's own ``split``, with the subset limits the run used.

    The examples are checked against the fingerprint recorded at training time: analysing different data than the
    run saw would silently mix up samples, so a mismatch is a DataError.
    """
    cfg = record.config
    examples = cfg.pick(split, load_task(cfg, data_dir).load(split))
    recorded = record.data["splits"][split]["fingerprint"]
    if fingerprint(examples) != recorded:
        raise DataError(f"the {split} data of task {cfg.task!r} differs from what run {record.path} was trained on "
                        f"(fingerprint {fingerprint(examples)}, recorded {recorded}); check --data-dir")
    return examples


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """Content hash of a file, remembered per (path, size, mtime) so a study hashes each checkpoint once."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def weights_fingerprint(record: RunRecord, stage: str) -> str:
    """Identity of the weights behind ``stage``'s features: ``model.safetensors``' content (trained) or the
    pre-trained model's files (:func:`lpft.model.model_fingerprint`)."""
    if stage == "pretrained":
        return model_fingerprint(record.config.model)[:12]
    path = record.path / "model.safetensors"
    st = path.stat()
    return _file_digest(str(path), st.st_size, st.st_mtime_ns)


def _cache_path(record: RunRecord, stage: str, eval_set: EvalSet) -> Path:
    return record.path / "features" / run_features_name(stage, eval_set.name, encoded_fingerprint(eval_set.encoded),
                                                        weights_fingerprint(record, stage))


def run_features(record: RunRecord, eval_set: EvalSet, stage: str = "trained", cache_dir: Path | None = None,
                 batch_size: int | None = None, device: str | None = None) -> np.ndarray:
    """phi(x) (N, h) float32 for ``eval_set`` from the ``pretrained`` backbone or the ``trained`` best model.

    LP never changes the backbone, so an LP run's trained features are its pre-trained ones (no second pass).
    Pre-trained features also go through the shared LP feature cache (``cache_dir``), so the runs of one study
    compute phi0 of a split once.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown feature stage {stage!r}: expected one of {', '.join(STAGES)}")
    if stage == "trained" and record.config.method == "lp":
        stage = "pretrained"
    path = _cache_path(record, stage, eval_set)
    if path.exists():
        return load_array(path)
    batch_size = batch_size or record.config.eval_batch_size
    precision = record.config.precision  # the run's own: bf16 runs are analysed with bf16 features
    desc = f"{stage} features {eval_set.name}"
    device = resolve_device(device)
    if stage == "pretrained":
        feats = pretrained_features(record.pretrained().to(device), record.config.model, eval_set.encoded,
                                    cache_dir, batch_size, desc, precision)
    else:
        feats = extract(record.classifier().to(device), eval_set.encoded, batch_size, desc=desc, precision=precision)
    save_array(path, feats)  # atomic; no lock, so nothing but results ever lands in a run folder
    return feats


def final_head(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """The head the run ends with (best epoch): the LP head for LP, the fine-tuned head otherwise."""
    return record.head("lp" if record.config.method == "lp" else "ft")


def head_logits(record: RunRecord, features: np.ndarray) -> np.ndarray:
    """Logits of the run's final head on ``features`` (float64): f(x) = V phi(x) + b."""
    weight, bias = final_head(record)
    return features.astype(np.float64) @ weight.astype(np.float64).T + bias.astype(np.float64)


def table1_statistics(record: RunRecord, eval_set: EvalSet, cache_dir: Path | None = None,
                      device: str | None = None) -> dict:
    """Paper Table 1 for one run on one evaluation set: CS(F), Diff(F), FDR(F) of the trained features against the
    pre-trained ones, the final head's Norm(C) (weight) and bias norm, and the same CS / FDR of phi0 with the run's
    initial head (the table's "Pre-trained" row), keys prefixed ``pretrained_``."""
    phi0 = run_features(record, eval_set, "pretrained", cache_dir, device=device)
    phi = run_features(record, eval_set, "trained", cache_dir, device=device)
    weight, bias = final_head(record)
    stats = feature_statistics(phi, eval_set.labels, F0=phi0, head_weight=weight, head_bias=bias)
    init_w, init_b = record.head("init")
    before = feature_statistics(phi0, eval_set.labels, head_weight=init_w, head_bias=init_b)
    stats.update({f"pretrained_{k}": v for k, v in before.items() if k != "diff"})
    return stats
