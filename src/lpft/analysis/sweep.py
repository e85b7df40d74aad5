"""Norm-scaling sweep (paper Figure 3): rescale the head at the start of FT, fine-tune, measure the feature change.

Each point is an ordinary run with ``RunConfig.head_norm`` (target ``||V||_F``; weight and bias are scaled by one
factor) or ``RunConfig.head_scale`` (a multiplier), so sweep runs are cached, resumed and reused like any other.
The feature change is Diff(F) = mean ||phi(x) - phi0(x)|| on one split of the run's task (test by default).
The *unscaled* norm, the head norm FT would start from without rescaling, is read from the same runs: heads/init
for FT and LoRA, heads/lp for LP-FT and LP-LoRA.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..config import ConfigError
from ..methods.config import METHODS, RunConfig
from ..runs import RunRecord, train
from .run_features import run_split, table1_statistics

MODES = ("norm", "scale")
SWEEP_METHODS = tuple(m for m in METHODS if m != "lp")  # LP has no FT stage to start


def sweep_configs(base: RunConfig, methods, values, seeds, mode: str = "norm") -> list[RunConfig]:
    """One resolved config per (method, value, seed), validated before anything runs."""
    if mode not in MODES:
        raise ConfigError(f"sweep mode {mode!r} is unknown: expected one of {', '.join(MODES)}")
    bad = [m for m in methods if m not in SWEEP_METHODS]
    if bad:
        raise ConfigError(f"--methods: {bad[0]!r} cannot be swept (no FT stage to rescale): expected some of "
                          f"{', '.join(SWEEP_METHODS)}")
    if not methods or not values or not seeds:
        raise ConfigError("a sweep needs at least one method, one norm and one seed")
    if any(not v > 0 for v in values):
        raise ConfigError(f"--norms must all be > 0, got {', '.join(str(v) for v in values)}")
    def point(value: float) -> dict:
        return {"head_norm": value, "head_scale": None} if mode == "norm" else {"head_norm": None, "head_scale": value}

    return [dataclasses.replace(base, method=m, seed=s, **point(v)).resolved()
            for m in methods for v in values for s in seeds]


def unscaled_norm(record: RunRecord) -> float:
    """||V||_F that FT would start from without rescaling: the LP head for LP methods, else the initial head."""
    weight, _ = record.head("lp" if record.config.uses_lp else "init")
    return float(np.linalg.norm(weight))


def run_sweep(configs: list[RunConfig], out="runs", data_dir: str | None = None, cache_dir="default",
              device: str | None = None, split: str = "test") -> list[dict]:
    """Train (or reuse) every sweep run, then one row per run: method, seed, value, start / unscaled norms,
    Diff / CS / FDR of ``split``, the test primary metric and the run folder."""
    from ..methods.lp import default_cache_dir

    cache = default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)
    rows = []
    bar = tqdm(configs, desc="norm sweep", unit="run")
    for cfg in bar:
        value = cfg.head_norm if cfg.head_norm is not None else cfg.head_scale
        bar.set_postfix_str(f"{cfg.method} {value:g} seed {cfg.seed}")
        record = RunRecord(train(cfg, out=out, data_dir=data_dir, cache_dir=cache, device=device))
        stats = table1_statistics(record, run_split(record, split, data_dir), cache, device)
        primary = record.data["metrics"][0]
        rows.append({"method": cfg.method, "seed": cfg.seed, "mode": "norm" if cfg.head_norm is not None else "scale",
                     "value": value, "start_norm": float(np.linalg.norm(record.head("start")[0])),
                     "unscaled_norm": unscaled_norm(record), "diff": stats["diff"], "cs": stats["cs"],
                     "fdr": stats["fdr"], f"test_{primary}": record.metrics["test"][primary],
                     "folder": str(record.path)})
    return rows


def summarise_sweep(rows: list[dict]) -> list[dict]:
    """Mean and sample standard deviation (ddof 1; 0 for one seed) of Diff(F) per (method, value), plus the mean
    unscaled norm of the method, in the order the rows came."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["value"]), []).append(row)
    out = []
    for (method, value), group in groups.items():
        diffs = np.array([r["diff"] for r in group])
        out.append({"method": method, "value": value, "n": len(group), "diff_mean": float(diffs.mean()),
                    "diff_std": float(diffs.std(ddof=1)) if len(group) > 1 else 0.0,
                    "start_norm_mean": float(np.mean([r["start_norm"] for r in group])),
                    "unscaled_norm_mean": float(np.mean([r["unscaled_norm"] for r in group]))})
    return out
