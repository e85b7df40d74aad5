"""The whole-train-set FT-ratio table (issue 18) from the eNTK folders that ``run.sh`` wrote: per task and method,
the FT ratio (mean and 95 % Student-t interval over seeds) and the Frobenius norms of P and F that make it, the
paired LP-FT - FT difference, and the sketch's measured error (results/ntk-sketch/error.json) beside it.

    python results/ntk-whole-train/table.py runs/ntk-whole-train --write results/ntk-whole-train

Descriptive: no verdict. Only finished kernels (``stats.json`` present) are read; a task x method with fewer seeds
than asked shows how many it has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lpft.claims.rules import paired_interval, t_interval
from lpft.io import atomic_path, environment_info, git_revision, read_json, shown_path, write_json

HERE = Path(__file__).resolve().parent
TASKS = ("bbc-news", "sst2", "cb")


def collect(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.glob("*/ntk/*/stats.json")):
        s = read_json(path)
        rows.append({"task": s["task"], "method": s["method"], "seed": s["seed"], "n_train": s["n_train"],
                     "n_test": s["n_test"], "train_split_size": s["train_split_size"], "sketch": s.get("sketch"),
                     "ft_ratio": s["ft_ratio"], "fn_P": s["kernels"]["P"]["frobenius"],
                     "fn_F": s["kernels"]["F"]["frobenius"], "folder": shown_path(path.parent)})
    return rows


def sketch_error() -> dict[str, float]:
    """Mean FT-ratio relative error of the K = 2^14 sketch against exact on CB (N = 225), per method."""
    path = HERE.parent / "ntk-sketch" / "error.json"
    if not path.exists():
        return {}
    out = {}
    for r in json.loads(path.read_text())["results"]:
        errs = [s["ft_ratio_rel_error"] for s in r["sketches"] if s["K"] == 2 ** 14]
        if errs:
            out[r["method"]] = sum(errs) / len(errs)
    return out


def fmt(iv, digits: int = 3) -> str:
    if iv.mean is None:
        return "-"
    if iv.lo is None:
        return f"{iv.mean:.{digits}f}"
    return f"{iv.mean:.{digits}f} [{iv.lo:.{digits}f}, {iv.hi:.{digits}f}]"


def table(rows: list[dict]) -> tuple[str, list[dict]]:
    err = sketch_error()
    lines = ["| task | method | N train (LP train set) | kernel | seeds | FT ratio, mean [95 % CI] | per seed | "
             "‖P‖_F | ‖F‖_F | sketch's FT-ratio error (CB, K = 2^14) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for task in TASKS:
        mine = [r for r in rows if r["task"] == task]
        by_method = {}
        for method in ("ft", "lp-ft"):
            rs = sorted((r for r in mine if r["method"] == method), key=lambda r: r["seed"])
            if not rs:
                continue
            by_method[method] = {r["seed"]: r["ft_ratio"] for r in rs}
            iv = t_interval([r["ft_ratio"] for r in rs])
            kernel = f"sketch K = {rs[0]['sketch']}" if rs[0]["sketch"] else "exact"
            e = f"{100 * err[method]:.2f} %" if rs[0]["sketch"] and method in err else "-"
            fn_P = sum(r["fn_P"] for r in rs) / len(rs)
            fn_F = sum(r["fn_F"] for r in rs) / len(rs)
            seeds = ", ".join(str(r["seed"]) for r in rs)
            per_seed = " / ".join(f"{r['ft_ratio']:.3f}" for r in rs)
            lines.append(f"| {task} | {method.upper()} | {rs[0]['n_train']} ({rs[0]['train_split_size']}) | "
                         f"{kernel} | {seeds} | {fmt(iv)} | {per_seed} | {fn_P:.4g} | {fn_F:.4g} | {e} |")
            summary.append({"task": task, "method": method, "kernel": kernel, "n_train": rs[0]["n_train"],
                            "seeds": [r["seed"] for r in rs], "ft_ratio": [r["ft_ratio"] for r in rs],
                            "mean": iv.mean, "ci95": [iv.lo, iv.hi], "fn_P_mean": fn_P, "fn_F_mean": fn_F,
                            "sketch_ft_ratio_rel_error_cb": err.get(method) if rs[0]["sketch"] else None})
        if len(by_method) == 2:
            d = paired_interval(by_method["lp-ft"], by_method["ft"])
            lines.append(f"| {task} | LP-FT − FT (paired) | | | {d.n} | {fmt(d)} | | | | |")
            summary.append({"task": task, "method": "lp-ft - ft", "n": d.n, "mean": d.mean, "ci95": [d.lo, d.hi]})
    return "\n".join(lines), summary


def figure(summary: list[dict], path: Path) -> None:
    """Each seed's FT ratio (a dot), FT and LP-FT side by side per task, the mean as a bar."""
    from lpft.report.figures import new_figure, save_png

    tasks = [t for t in TASKS if any(r["task"] == t and r["method"] == "ft" for r in summary)]
    fig = new_figure(figsize=(1.8 + 1.6 * len(tasks), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for k, (method, color) in enumerate((("ft", "C0"), ("lp-ft", "C1"))):
        for i, task in enumerate(tasks):
            row = next((r for r in summary if r["task"] == task and r["method"] == method), None)
            if row is None:
                continue
            x = i + (k - 0.5) * 0.36
            ax.bar(x, row["mean"], width=0.32, color=color, alpha=0.35, label=method.upper() if i == 0 else None)
            ax.scatter([x] * len(row["ft_ratio"]), row["ft_ratio"], color=color, s=14, zorder=3)
    ft = {r["task"]: r for r in summary if r["method"] == "ft"}  # the FT row names each task's N and kernel
    labels = [f"{t}\nN = {ft[t]['n_train']}{' (exact)' if ft[t]['kernel'] == 'exact' else ''}" for t in tasks]
    ax.set(xticks=range(len(tasks)), xticklabels=labels, ylim=(0, 1.05), ylabel="FT ratio",
           title="FT ratio at the start of fine-tuning, whole LP train set")
    ax.legend(loc="lower right", fontsize=8)
    save_png(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the --out of run.sh (default there: runs/ntk-whole-train)")
    ap.add_argument("--write", type=Path, help="write table.md and table.json into this folder")
    args = ap.parse_args()
    rows = collect(args.out)
    md, summary = table(rows)
    print(md)
    if args.write:  # each file written whole or not at all (lpft.io.atomic_path)
        with atomic_path(args.write / "table.md") as tmp:
            tmp.write_text(md + "\n")
        write_json(args.write / "table.json", {"rows": rows, "summary": summary,
                                               "note": "descriptive; FT ratio as in lpft.ntk.ft_ratio",
                                               "git_revision": git_revision(HERE), "environment": environment_info()})
        if summary:
            figure(summary, args.write / "ft_ratio.png")


if __name__ == "__main__":
    main()
