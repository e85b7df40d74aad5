"""Why LP-FT's whole-train FT ratio is 0.999 on SST-2 and BBC News but 0.85 on CB: LP's stationarity, measured.

At the linear probe's optimum (scikit-learn: 0.5 ||W||^2 + C sum_i CE_i, intercept unpenalised) the head gradient
vanishes, so over the LP train set ``sum_i delta_i phi_i^T = (kappa / C) V`` and ``sum_i delta_i = 0``
(``lpft.analysis.dynamics``; kappa = 2 for lpft's binary softmax pair, else 1). P's part of the FT-ratio
denominator is then exactly the probe's logits over its regularisation::

    (P delta)(x) = sum_i (phi(x) . phi_i + 1) delta_i = (kappa / C) V phi(x)

It does not vanish: it is small against F delta only when the head is large enough (F = V K_h V^T grows as
||V||^2) for the C cross-validation chose. This script measures, for each task's LP-FT eNTK (seed 1; LP is
seed-free), the probe's C recovered from the head (``probe_regularisation``, snapped to scikit-learn's grid), its
stationarity residual, ||V||, mean ||P delta|| computed from the features against (kappa / C) mean ||V phi||, and
beside them the kernels' norms and FT ratio from the eNTK folders. P's Frobenius norm recomputed here from the
features is checked against the folder's (so the features are the kernel's).

    python results/ntk-whole-train/stationarity.py runs/ntk-whole-train --write results/ntk-whole-train

Reads the data and the embedded model and runs one forward pass over each train set (about 3 min on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lpft.analysis.dynamics import probe_regularisation, snap_to_grid
from lpft.io import atomic_path, environment_info, git_revision, read_json, shown_path, write_json
from lpft.methods.config import RunConfig
from lpft.model import extract
from lpft.ntk.stats import residuals
from lpft.runs import prepare, start_of_fine_tuning
from lpft.workspace import Workspace

TASKS = ("bbc-news", "sst2", "cb")


def folder_of(out: Path, task: str, method: str, seed: int = 1) -> Path | None:
    found = sorted(out.glob(f"{task}/ntk/{method}-seed{seed}-n*/stats.json"))
    return found[0].parent if found else None


def measure(out: Path, task: str, data_dir: str) -> dict | None:
    lp_ft, ft = folder_of(out, task, "lp-ft"), folder_of(out, task, "ft")
    if lp_ft is None or ft is None:
        return None
    stats, ft_stats = read_json(lp_ft / "stats.json"), read_json(ft / "stats.json")
    # folders made before stats.json recorded the run config (the SST-2 ones): their task, model, seed and train
    # split size rebuild it (run.sh's options); the ||P||_F check below catches a mismatch
    options = stats.get("config") or {"task": task, "method": "lp-ft", "model": stats["model"], "seed": stats["seed"],
                                      "train_subset": stats["train_split_size"]}
    cfg = RunConfig(**options).resolved()
    ws = Workspace(data_dir=data_dir)
    prep = prepare(cfg, ws.data_dir)
    train = prep.splits["train"].subset(stats["train_indices"])
    clf, _ = start_of_fine_tuning(cfg, prep, ws.cache, ws.device)
    phi, logits = (a.astype(np.float64) for a in extract(clf, train, cfg.eval_batch_size, logits=True))
    V = clf.head.weight.detach().double().numpy()
    b = clf.head.bias.detach().double().numpy()
    n_classes = V.shape[0]
    kappa = 2.0 if n_classes == 2 else 1.0
    c_fit, residual = probe_regularisation(phi, train.labels, V, b)
    c_grid = snap_to_grid(c_fit, cfg.lp_cs)
    delta = residuals(logits, train.labels).reshape(-1, n_classes)
    gram = phi @ phi.T + 1.0                       # P = (phi phi^T + 1) (x) I_C: the head's gradients
    p_delta = np.linalg.norm(gram @ delta, axis=1).mean()
    logit_norm = float(np.linalg.norm(logits - b, axis=1).mean())  # mean ||V phi||
    predicted = kappa / c_fit * logit_norm
    fn_p = float(np.sqrt(n_classes) * np.linalg.norm(gram))
    fn_p_folder = stats["kernels"]["P"]["frobenius"]
    if abs(fn_p - fn_p_folder) > 1e-3 * fn_p_folder:
        sys.exit(f"error: {shown_path(lp_ft)}: ||P||_F from the features {fn_p:.6g} != the folder's "
                 f"{fn_p_folder:.6g}: the features are not the kernel's (another model, data or config?)")
    return {"task": task, "n_train": len(train), "classes": n_classes, "probe_C": c_grid, "probe_C_fit": c_fit,
            "stationarity_residual": residual, "head_norm_lp": float(np.linalg.norm(V)),
            "head_norm_ft": ft_stats["start_head_norm"], "mean_logit_norm": logit_norm,
            "mean_P_delta": float(p_delta), "mean_P_delta_predicted": float(predicted),
            "fn_P": fn_p_folder, "fn_F_lp_ft": stats["kernels"]["F"]["frobenius"],
            "fn_F_ft": ft_stats["kernels"]["F"]["frobenius"], "ft_ratio_lp_ft": stats["ft_ratio"],
            "ft_ratio_ft": ft_stats["ft_ratio"], "folder": shown_path(lp_ft)}


def markdown(rows: list[dict]) -> str:
    lines = ["| task | N | probe C (grid) | stationarity residual | ‖V‖ LP | ‖V₀‖ FT (seed 1) | mean ‖Vφ‖ | "
             "mean ‖Pδ‖ | (κ/C) mean ‖Vφ‖ | ‖F‖/‖P‖ LP-FT | ‖F‖/‖P‖ FT | FT ratio LP-FT | FT ratio FT |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['n_train']} | {r['probe_C']:.3g} | {r['stationarity_residual']:.1e} | "
                     f"{r['head_norm_lp']:.3g} | {r['head_norm_ft']:.3g} | {r['mean_logit_norm']:.3g} | "
                     f"{r['mean_P_delta']:.4g} | {r['mean_P_delta_predicted']:.4g} | "
                     f"{r['fn_F_lp_ft'] / r['fn_P']:.3g} | {r['fn_F_ft'] / r['fn_P']:.3g} | "
                     f"{r['ft_ratio_lp_ft']:.3f} | {r['ft_ratio_ft']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the eNTK folders' root (run.sh's OUT, default runs/ntk-whole-train)")
    ap.add_argument("--data-dir", default="../shared/data", help="the benchmark files (default: ../shared/data)")
    ap.add_argument("--write", type=Path, help="write stationarity.md / stationarity.json into this folder")
    args = ap.parse_args(argv)
    rows = [r for r in (measure(args.out, t, args.data_dir) for t in TASKS) if r is not None]
    if not rows:
        sys.exit(f"error: {args.out}: no task has both an FT and an LP-FT seed-1 eNTK folder (run run.sh first)")
    text = markdown(rows)
    print(text, end="")
    if args.write:
        with atomic_path(args.write / "stationarity.md") as tmp:
            tmp.write_text(text)
        write_json(args.write / "stationarity.json",
                   {"rows": rows, "git_revision": git_revision(), "environment": environment_info()})


if __name__ == "__main__":
    main()
