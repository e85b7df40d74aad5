"""Checked reading of a run folder's files: a truncated or edited file is a one-line error naming it.

``RunRecord`` (lpft.runs) reads every file through these functions, so ``evaluate``, ``calibrate``, a reusing
``train`` and the analyses never compute on a damaged run: JSON is parsed strictly (no NaN), objects must have
their keys with the right types, the method must be known, and arrays / tensors must have the shapes the run's
labels imply (logits (N, C) with N the recorded split size, heads (C, h), labels in 0..C-1).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import numpy as np

from .config import ConfigError, _base_type
from .data.base import SPLITS
from .errors import FIX as FIX  # re-exported (defined in lpft.errors)
from .errors import RunFolderError as RunFolderError
from .io import load_array, load_tensors, read_json
from .methods.config import LEGACY_PROTOCOL, RunConfig


def _type_name(value) -> str:
    return "null" if value is None else {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
                                          int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def read_run_json(path: Path, kind: type):
    """Strict JSON whose top level is ``kind`` (dict or list)."""
    if not path.is_file():
        raise RunFolderError(path, "the file is missing")
    try:
        obj = read_json(path, strict=True)
    except UnicodeDecodeError:
        raise RunFolderError(path, "not a text file") from None
    except ValueError as err:  # json.JSONDecodeError is a ValueError; so is a NaN / Infinity token
        raise RunFolderError(path, f"not valid JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(obj, kind):
        raise RunFolderError(path, f"expected {_type_name(kind())} at the top level, got {_type_name(obj)}")
    return obj


def _require(path: Path, obj: dict, key: str, check, expected: str, where: str = ""):
    if key not in obj:
        raise RunFolderError(path, f"{where}{key!r} is missing")
    if not check(obj[key]):
        raise RunFolderError(path, f"{where}{key!r} should be {expected}, got {obj[key]!r:.60}")
    return obj[key]


def check_config(path: Path) -> tuple[RunConfig, dict]:
    """config.json -> (RunConfig, data info)."""
    saved = read_run_json(path, dict)
    fields = _require(path, saved, "config", lambda v: isinstance(v, dict), "an object")
    data = _require(path, saved, "data", lambda v: isinstance(v, dict), "an object")
    hints = typing.get_type_hints(RunConfig)
    known = {f.name for f in dataclasses.fields(RunConfig)}
    for name, value in fields.items():
        if name not in known:
            raise RunFolderError(path, f"config has an unknown option {name!r}")
        kind = _base_type(hints[name])
        optional = type(None) in typing.get_args(hints[name])
        ok = ((value is None and optional) or (kind is bool and isinstance(value, bool))
              or (kind is int and _is_int(value)) or (kind is float and _is_number(value))
              or (kind is str and isinstance(value, str)))
        if not ok:
            raise RunFolderError(path, f"config option {name!r} should be {kind.__name__}"
                                       f"{' or null' if optional else ''}, got {value!r:.60}")
    try:
        config = RunConfig(**{**LEGACY_PROTOCOL, **fields})  # runs made before those options: what they did
        resolved = config.resolved()
        config = resolved if resolved == config else config  # (as saved: later checks need not resolve it again)
    except ConfigError as err:
        raise RunFolderError(path, str(err)) from None
    _require(path, data, "labels", lambda v: isinstance(v, list) and len(v) >= 2
                      and all(isinstance(x, str) for x in v), "a list of at least two label names", "data ")
    _require(path, data, "metrics", lambda v: isinstance(v, list) and v and all(isinstance(x, str) for x in v),
             "a list of metric names", "data ")
    splits = _require(path, data, "splits", lambda v: isinstance(v, dict), "an object", "data ")
    for split in SPLITS:
        info = _require(path, splits, split, lambda v: isinstance(v, dict), "an object", "data splits ")
        _require(path, info, "size", lambda v: _is_int(v) and v > 0, "a positive integer", f"data {split} ")
        _require(path, info, "fingerprint", lambda v: isinstance(v, str), "a string", f"data {split} ")
    return config, data


def check_metrics(path: Path, config: RunConfig, data: dict) -> dict:
    metrics = read_run_json(path, dict)
    for split in ("val", "test"):
        scores = _require(path, metrics, split, lambda v: isinstance(v, dict), "an object")
        for name in data["metrics"]:
            _require(path, scores, name, _is_number, "a finite number", f"{split} ")
    epochs = config.resolved().epochs or 0  # LP has no epochs (seed- and schedule-free): best_epoch 0
    _require(path, metrics, "best_epoch", lambda v: _is_int(v) and 0 <= v <= epochs, f"an integer in 0..{epochs}")
    _require(path, metrics, "seconds", lambda v: _is_number(v) and v >= 0, "a number of seconds")
    return metrics


def check_history(path: Path, config: RunConfig, best_epoch: int) -> list:
    history = read_run_json(path, list)
    for i, row in enumerate(history):
        if not isinstance(row, dict):
            raise RunFolderError(path, f"row {i} should be an object, got {_type_name(row)}")
        _require(path, row, "epoch", lambda v, i=i: v == i + 1, f"{i + 1}", f"row {i} ")
        _require(path, row, "train_loss", _is_number, "a finite number", f"row {i} ")
        _require(path, row, "validation", lambda v: isinstance(v, dict), "an object", f"row {i} ")
    if config.method != "lp" and not 1 <= best_epoch <= len(history):
        raise RunFolderError(path, f"has {len(history)} epochs but metrics.json names epoch {best_epoch} as best")
    return history


def check_steps(path: Path) -> list:
    steps = read_run_json(path, list)
    for i, row in enumerate(steps):
        if not isinstance(row, dict):
            raise RunFolderError(path, f"row {i} should be an object, got {_type_name(row)}")
        _require(path, row, "step", lambda v: _is_int(v) and v > 0, "a positive integer", f"row {i} ")
        _require(path, row, "loss", _is_number, "a finite number", f"row {i} ")
    return steps


def load_checked_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise RunFolderError(path, "the file is missing")
    try:
        return load_array(path)
    except (ValueError, OSError, EOFError) as err:
        raise RunFolderError(path, f"not a readable NumPy array ({str(err).splitlines()[0]})") from None


def check_logits(folder: Path, split: str, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """logits/<split>.npy (N, C) finite floats and logits/<split>_labels.npy (N,) integers in 0..C-1."""
    C, n = len(data["labels"]), data["splits"][split]["size"]
    logits_path, labels_path = folder / "logits" / f"{split}.npy", folder / "logits" / f"{split}_labels.npy"
    logits, labels = load_checked_array(logits_path), load_checked_array(labels_path)
    if logits.dtype.kind != "f" or logits.shape != (n, C):
        raise RunFolderError(logits_path, f"expected float logits of shape ({n}, {C}) (the {split} size and the "
                                          f"labels of config.json), got {logits.dtype} {logits.shape}")
    if not np.isfinite(logits).all():
        raise RunFolderError(logits_path, "holds NaN or infinite logits")
    if labels.dtype.kind not in "iu" or labels.shape != (n,) or (n and not 0 <= labels.min() <= labels.max() < C):
        raise RunFolderError(labels_path, f"expected {n} integer labels in 0..{C - 1}, got {labels.dtype} "
                                          f"{labels.shape}")
    return logits, labels


def load_checked_tensors(path: Path) -> dict:
    if not path.is_file():
        raise RunFolderError(path, "the file is missing")
    try:
        return load_tensors(path)
    except Exception as err:  # safetensors raises its own SafetensorError (and others) on a damaged header or body
        raise RunFolderError(path, f"not a readable safetensors file ({str(err).splitlines()[0]:.120})") from None


def check_head(path: Path, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """heads/<stage>.safetensors: weight (C, h) and bias (C,), finite."""
    tensors = load_checked_tensors(path)
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None or bias is None or weight.ndim != 2 or weight.shape[0] != num_labels \
            or tuple(bias.shape) != (num_labels,):
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        raise RunFolderError(path, f"expected weight ({num_labels}, h) and bias ({num_labels},), got {shapes}")
    if not (weight.isfinite().all() and bias.isfinite().all()):
        raise RunFolderError(path, "holds NaN or infinite values")
    return weight.numpy(), bias.numpy()


def check_model_header(path: Path, num_labels: int) -> None:
    """model.safetensors without reading its tensors: a complete file (safetensors checks that the header covers the
    file exactly, so truncation shows) holding a head of the right shape."""
    from safetensors import safe_open

    if not path.is_file():
        raise RunFolderError(path, "the file is missing")
    try:
        with safe_open(str(path), "pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except Exception as err:  # SafetensorError and friends
        raise RunFolderError(path, f"not a readable safetensors file ({str(err).splitlines()[0]:.120})") from None
    weight, bias = shapes.get("head.weight"), shapes.get("head.bias")
    if weight is None or len(weight) != 2 or weight[0] != num_labels or bias != (num_labels,):
        raise RunFolderError(path, f"expected head.weight ({num_labels}, h) and head.bias ({num_labels},), got "
                                   f"{weight} and {bias}")


def check_one_head(folder: Path, stage: str, weight: np.ndarray, bias: np.ndarray) -> None:
    """The run's final head is stored twice, ``heads/<stage>.safetensors`` (what ``predict`` and the analyses read)
    and inside ``model.safetensors`` (what ``export`` and the model read): they must be the same tensor (float32),
    or the two commands would silently disagree."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "np") as fh:
        stored = {k: fh.get_tensor(k) for k in ("head.weight", "head.bias")}
    for name, mine in (("weight", weight), ("bias", bias)):
        other = stored[f"head.{name}"]
        if not np.array_equal(other, np.asarray(mine).astype(other.dtype)):
            gap = float(np.max(np.abs(other.astype(np.float64) - np.asarray(mine, dtype=np.float64))))
            raise RunFolderError(folder / "heads" / f"{stage}.safetensors",
                                 f"its {name} differs from head.{name} in model.safetensors (max difference "
                                 f"{gap:.3g}): one of the two was changed")


def check_model_state(path: Path, params: dict) -> dict:
    """model.safetensors: every tensor names a parameter of the rebuilt model, with its shape, and is finite."""
    state = load_checked_tensors(path)
    for name, value in state.items():
        if name not in params:
            raise RunFolderError(path, f"tensor {name!r} is not a parameter of the run's model")
        if value.shape != params[name].shape:
            raise RunFolderError(path, f"tensor {name!r} has shape {tuple(value.shape)}, the model's is "
                                       f"{tuple(params[name].shape)}")
        if value.is_floating_point() and not value.isfinite().all():
            raise RunFolderError(path, f"tensor {name!r} holds NaN or infinite values")
    if "head.weight" not in state:
        raise RunFolderError(path, "the head ('head.weight') is missing")
    return state
