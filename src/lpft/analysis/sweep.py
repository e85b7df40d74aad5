"""Norm-scaling sweep (paper Figure 3): rescale the head at the start of FT, fine-tune, measure the feature change.

Each point is an ordinary run (planned by :func:`lpft.study.sweep_configs`) with ``RunConfig.head_norm`` (target
``||V||_F``; weight and bias are scaled by one factor) or ``RunConfig.head_scale`` (a multiplier), so sweep runs are
cached, resumed and reused like any other.
The feature change is Diff(F) = mean ||phi(x) - phi0(x)|| on one split of the run's task (test by default).
The *unscaled* norm, the head norm FT would start from without rescaling, is read from the same runs: heads/init
for FT and LoRA, heads/lp for LP-FT and LP-LoRA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io import shown_path
from ..runs import RunRecord
from .run_features import run_split, table1_statistics


def unscaled_norm(record: RunRecord) -> float:
    """||V||_F that FT would start from without rescaling: the LP head for LP methods, else the initial head."""
    weight, _ = record.head("lp" if record.config.uses_lp else "init")
    return float(np.linalg.norm(weight))


def sweep_rows(records: list[RunRecord], data_dir: str | None = None, cache: Path | None = None,
               device: str | None = None, split: str = "test") -> list[dict]:
    """One row per finished sweep run: method, seed, value, start / unscaled norms, Diff / CS / FDR of ``split``,
    the test primary metric and the run folder."""
    rows = []
    for record in tqdm(records, desc="norm sweep analysis", unit="run"):
        cfg = record.config
        value = cfg.head_norm if cfg.head_norm is not None else cfg.head_scale
        stats = table1_statistics(record, run_split(record, split, data_dir), cache, device)
        primary = record.data["metrics"][0]
        rows.append({"method": cfg.method, "seed": cfg.seed, "mode": "norm" if cfg.head_norm is not None else "scale",
                     "value": value, "start_norm": float(np.linalg.norm(record.head("start")[0])),
                     "unscaled_norm": unscaled_norm(record), "diff": stats["diff"], "cs": stats["cs"],
                     "fdr": stats["fdr"], f"test_{primary}": record.metrics["test"][primary],
                     "folder": shown_path(record.path)})
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
