"""The compare report of one task, rendered from its :class:`~lpft.analysis.compare.TaskAnalysis`.

What gets trained is decided by the study layer (:mod:`lpft.study`), what the report shows is computed by
:func:`lpft.analysis.compare.analyse_task`; this module only writes Markdown, CSV and figures from that object (it
imports no torch and reads no run folder). The report folder holds::

    report.md          tables shaped like the paper's Tables 8, 1 and 3 (mean ± std over seeds), the paper's
                       RoBERTa-base numbers beside ours where the task matches, and the figures
    runs.csv           one row per run: every number the tables aggregate, with its run folder
    metrics.csv, features.csv, head_norms.csv, calibration.csv, ood.csv     the tables, as mean / std / n
    ood_runs.csv       one row per run and OOD set (with the run folder)
    dynamics.csv/.png  head norms, logit norm and loss against step (paper Figure 1), incl. LP by gradient descent
    lp_gd.csv          the gradient-descent LP against scikit-learn's probe, per seed
    tsne.csv/.png      t-SNE of features and head rows: pre-trained, and after each fine-tuning method (Figs. 5-6)
    reliability.csv, reliability-<method>.png      reliability diagrams before / after temperature scaling
    study.json         the study's settings, run folders and timings

The folder is assembled under a temporary name and swapped in at the end (``report/output.py``), so an interrupted
study leaves the previous report (or none), never a half-written one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..io import write_json
from . import paper
from .output import report_folder
from .plots import plot_dynamics, plot_tsne, reliability_diagram
from .tables import fmt_fixed3, fmt_mean_std, fmt_number, fmt_percent, markdown_table, mean_std, write_csv

if TYPE_CHECKING:  # the analysis imports torch; rendering only reads the object it is handed
    from ..analysis.compare import TaskAnalysis

LABEL = {"lp": "LP", "ft": "FT", "lp-ft": "LP-FT", "lora": "LoRA", "lp-lora": "LP-LoRA"}


def write_compare_report(final: str | Path, analysis: TaskAnalysis, seconds: dict | None = None) -> Path:
    """Write one task's report folder (replaced whole when finished) from its analysis.

    Args:
        final: the report folder.
        analysis: :func:`lpft.analysis.compare.analyse_task`'s result.
        seconds: timings recorded in study.json.

    Returns:
        ``final`` as a Path.
    """
    with report_folder(final) as tmp:
        write_task_files(tmp, analysis)
        write_json(tmp / "study.json", analysis.info(seconds))
    return Path(final)


def _by_method(rows: list[dict], methods: list[str]) -> dict[str, list[dict]]:
    return {m: [r for r in rows if r["method"] == m] for m in methods}


def _summary(groups: dict[str, list[dict]], keys: list[str]) -> list[dict]:
    out = []
    for method, group in groups.items():
        entry: dict[str, str | float | int | None] = {"method": method}
        for key in keys:
            mean, std, n = mean_std(r.get(key) for r in group)
            entry.update({f"{key}_mean": mean, f"{key}_std": std, f"{key}_n": n})
        out.append(entry)
    return out


def write_task_files(folder: Path, analysis: TaskAnalysis, title: str = "lpft compare") -> None:
    """Write a task's report files (report.md, the CSV files, the figures) into ``folder``, which exists."""
    rows, gd, ood_rows, settings = analysis.rows, analysis.gd, analysis.ood_rows, analysis.settings
    methods, seeds = analysis.methods, analysis.seeds
    cfg = analysis.config  # the grid's fine-tuning schedule (LP's config carries none)
    task = analysis.task
    groups = _by_method(rows, methods)
    metric_names = analysis.metric_names
    primary = metric_names[0]
    write_csv(folder / "runs.csv", rows)
    splits = analysis.splits
    sizes = ", ".join(f"{split} {info['size']}" + (" (subset)" if cfg.split_limit(split) else "")
                      for split, info in splits.items()) or "examples: not recorded"
    lp_note = " LP does not depend on the seed: one LP run serves every seed." if "lp" in methods else ""
    md = [f"# {title}: {task}", "",
          f"Model `{cfg.model}`; methods {', '.join(LABEL[m] for m in methods)}; seeds {', '.join(map(str, seeds))}; "
          f"{cfg.epochs or '–'} epoch(s); max length {cfg.max_length}; {sizes}. Mean ± sample std over seeds. "
          f"{sum(r['reused'] for r in rows)} of {len(rows)} runs reused.{lp_note} Definitions: `docs/analysis.md`.", ""]

    # --- paper Table 8: test metrics
    metric_keys = [f"{s}_{m}" for s in ("test", "validation") for m in metric_names]
    write_csv(folder / "metrics.csv", _summary(groups, metric_keys))
    table = [[f"{s} {m} (%)"] + [fmt_mean_std((r[f"{s}_{m}"] for r in groups[x]), fmt_percent) for x in methods]
             for s in ("test", "validation") for m in metric_names]
    if cfg.task in paper.TABLE8:
        table.append([f"paper test {primary} (%), {paper.MODEL}"]
                     + [f"{paper.TABLE8[cfg.task][m]:.2f}" for m in methods])
    md += ["## Test metrics (paper Table 8)", "", markdown_table([""] + [LABEL[m] for m in methods], table), ""]

    # --- paper Table 1: feature statistics
    stat_keys = ["cs", "diff", "fdr", "norm_weight", "norm_bias"]
    first_per_seed = list({r["seed"]: r for r in reversed(rows)}.values())
    pre = {k: [r[f"pretrained_{k}"] for r in first_per_seed] for k in ("cs", "fdr", "norm_weight", "norm_bias")}
    features_rows = [{"method": "pretrained", **{f"{k}_mean": mean_std(v)[0] for k, v in pre.items()}}]
    features_rows += _summary(groups, stat_keys)
    write_csv(folder / "features.csv", features_rows)
    paper1 = paper.TABLE1.get(cfg.task)
    header = ["", "CS(F)", "Diff(F)", "FDR(F)", "Norm(C)", "‖b‖"]
    if paper1:
        header += [f"paper {h} ({paper.MODEL})" for h in ("CS(F)", "Diff(F)", "FDR(F)", "Norm(C)")]

    def paper_cells(key):
        return [fmt_number(v) for v in paper1[key]] if paper1 else []

    # CS sits near 1 for pre-trained features: fixed decimals keep 0.997 from rounding to "1"
    fmts = {"cs": fmt_fixed3}
    table = [["Pre-trained", fmt_mean_std(pre["cs"], fmt_fixed3), "–", fmt_mean_std(pre["fdr"]),
              fmt_mean_std(pre["norm_weight"]), fmt_mean_std(pre["norm_bias"])] + paper_cells("pretrained")]
    for m in methods:
        table.append([LABEL[m]] + [fmt_mean_std((r[k] for r in groups[m]), fmts.get(k, fmt_number))
                                   for k in stat_keys] + paper_cells(m))
    md += [f"## Feature statistics on the {settings.split} split (paper Table 1)", "",
           markdown_table(header, table), "",
           "Pre-trained: phi0 with the runs' initial (random) heads. LP leaves the backbone unchanged, so its Diff(F) "
           "is 0. FDR uses a ridge on S_W; its magnitude depends on h and N, compare it between methods only.", ""]

    # --- head norms at each stage (paper Table 13)
    norm_keys = ["norm_init", "norm_lp", "norm_start", "norm_end"]
    write_csv(folder / "head_norms.csv", _summary(groups, norm_keys))
    table = [[LABEL[m]] + [fmt_mean_std(r.get(k) for r in groups[m]) for k in norm_keys] for m in methods]
    md += ["## Head weight norm ‖V‖_F by stage", "",
           markdown_table(["", "initial", "after LP", "start of FT", "end (best epoch)"], table), ""]

    # --- paper Table 3: calibration
    cal_keys = ["temperature", "ece_before", "ece_after", "mce_before", "mce_after", "nll_before", "nll_after"]
    write_csv(folder / "calibration.csv", _summary(groups, cal_keys))
    paper3 = paper.TABLE3.get(cfg.task, {})
    table = []
    for m in methods:
        cells = [fmt_mean_std(r["temperature"] for r in groups[m])]
        cells += [fmt_mean_std((r[k] for r in groups[m]), fmt_percent) for k in cal_keys[1:5]]
        if paper3:
            p = paper3.get(m)
            cells += [f"{p['ece'][0]:.2f} → {p['ece'][1]:.2f}", f"{p['mce'][0]:.2f} → {p['mce'][1]:.2f}"] if p \
                else ["–", "–"]
        table.append([LABEL[m]] + cells)
    header = ["", "T", "ECE w/o TS (%)", "ECE w/ TS (%)", "MCE w/o TS (%)", "MCE w/ TS (%)"]
    header += [f"paper ECE ({paper.MODEL})", f"paper MCE ({paper.MODEL})"] if paper3 else []
    md += ["## Calibration on test, T fitted on validation NLL (paper Table 3)", "", markdown_table(header, table), ""]
    md += _reliability(folder, analysis)

    md += _dynamics(folder, analysis.steps, gd, cfg.task)
    md += _tsne(folder, analysis)
    if ood_rows:
        md += _ood(folder, ood_rows, methods, primary)

    md += ["## Runs", "", markdown_table(
        ["method", "seed", f"test {primary}", "best epoch", "seconds", "reused", "folder"],
        [[LABEL[r["method"]], str(r["seed"]), f"{r[f'test_{primary}']:.4f}", str(r["best_epoch"]),
          f"{r['seconds']:.0f}" if r.get("seconds") is not None else "–", "yes" if r["reused"] else "no",
          f"`{r['folder']}`"] for r in rows]), ""]
    (folder / "report.md").write_text("\n".join(md))


def _reliability(folder: Path, analysis: TaskAnalysis) -> list[str]:
    """Bins of every run in reliability.csv; a diagram for each method's first seed."""
    bins, md, drawn = [], ["### Reliability diagrams (first seed)", ""], set()
    for cal in analysis.calibrations.values():
        bins += cal.bins()
        if cal.method not in drawn:
            drawn.add(cal.method)
            name = f"reliability-{cal.method}.png"
            reliability_diagram(cal.probs_before, cal.probs_after, cal.labels, folder / name,
                                title=f"{LABEL[cal.method]} seed {cal.seed} (T = {cal.temperature:.3g})")
            md.append(f"![{LABEL[cal.method]}]({name})")
    write_csv(folder / "reliability.csv", bins)
    return md + [""]


def _dynamics(folder: Path, run_steps: list[tuple[str, int, list[dict]]], gd: list[dict], task: str) -> list[str]:
    """Head-norm curves: LP by gradient descent and each run's steps.json (dynamics.csv / .png, lp_gd.csv)."""
    curves, csv_rows = [], []
    for g in gd:
        curves.append(("lp", "LP (gradient descent)", g["steps"]))
        csv_rows += [{"method": "lp", "seed": g["seed"], "source": "gradient descent", **s} for s in g["steps"]]
    for m, seed, steps in run_steps:
        curves.append((m, LABEL[m], steps))
        csv_rows += [{"method": m, "seed": seed, "source": "steps.json", **s} for s in steps]
    md = ["## Head-norm dynamics (paper Figure 1)", ""]
    if not curves:
        return md + ["No method with optimisation steps was run.", ""]
    write_csv(folder / "dynamics.csv", csv_rows)
    plot_dynamics(curves, folder / "dynamics.png", title=f"{task}: head norms during training")
    md += ["![dynamics](dynamics.png)", "",
           "FT-stage curves come from each run's steps.json (mini-batch statistics every log_every steps); LP is "
           "solved again by full-batch (Nesterov) gradient descent on the cached pre-trained train features with "
           "scikit-learn's loss and chosen C, starting from the run's initial head.", ""]
    if gd:
        check_rows = [{"seed": g["seed"], "C": g["C"], "C_recovered": g["C_recovered"],
                       "stationarity_residual": g["stationarity_residual"], "steps": g["n_steps"],
                       "converged": g["converged"], **g["check"], "verdict": g["verdict"]} for g in gd]
        write_csv(folder / "lp_gd.csv", check_rows)
        md += [markdown_table(
            ["seed", "C", "sklearn stationarity residual", "GD steps", "‖V‖ GD", "‖V‖ sklearn", "max |Δp|",
             "rel. ‖ΔV‖", "J(GD) − J(sklearn)", "verdict"],
            [[str(r["seed"]), fmt_number(r["C"]), fmt_number(r["stationarity_residual"]), str(r["steps"]),
              fmt_number(r["gd_weight_norm"]), fmt_number(r["probe_weight_norm"]), fmt_number(r["max_prob_diff"]),
              fmt_number(r["rel_weight_diff"]), fmt_number(r["objective_gap"]), r["verdict"]] for r in check_rows]),
               "", "C: scikit-learn's chosen inverse regularisation, recovered from the probe's stationarity "
               "condition and snapped to its grid (see `docs/analysis.md`). \"near\": max |Δp| ≤ 0.01 and "
               "rel. ‖ΔV‖ ≤ 0.02.", ""]
    return md


def _tsne_title(panel) -> str:
    if panel.method is None:
        return f"pre-trained ({panel.head} head)"
    return f"after {LABEL[panel.method]}"


def _tsne(folder: Path, analysis: TaskAnalysis) -> list[str]:
    """tsne.csv and tsne.png from the analysis's embedded panels (features and head rows, first seed)."""
    csv_rows, titles = [], []
    for panel in analysis.tsne:
        title, names, y = _tsne_title(panel), panel.label_names, panel.labels
        titles.append(title)
        csv_rows += [{"panel": title, "kind": "sample", "index": i, "label": names[y[i]], "x": x, "y": yy}
                     for i, (x, yy) in enumerate(panel.points)]
        csv_rows += [{"panel": title, "kind": "head row", "index": k, "label": names[k], "x": x, "y": yy}
                     for k, (x, yy) in enumerate(panel.head_points)]
    write_csv(folder / "tsne.csv", csv_rows)
    plot_tsne(titles, analysis.tsne, folder / "tsne.png")
    n = len(analysis.tsne[0].labels)
    return ["## t-SNE of features and head rows (paper Figures 5-6)", "",
            f"{n} {analysis.settings.split} examples, seed {analysis.seeds[0]}; stars are the head's rows, rescaled "
            "to the mean feature norm (direction only).", "", "![t-SNE](tsne.png)", ""]


def _ood(folder: Path, ood_rows: list[dict], methods: list[str], primary: str) -> list[str]:
    sets = list(dict.fromkeys((r["set"], r["role"]) for r in ood_rows))
    summary = []
    for name, role in sets:
        for m in methods:
            group = [r for r in ood_rows if r["set"] == name and r["method"] == m]
            entry = {"set": name, "role": role, "method": m}
            for key in (primary, "cs", "diff", "fdr"):
                mean, std, n = mean_std(r[key] for r in group)
                entry.update({f"{key}_mean": mean, f"{key}_std": std, f"{key}_n": n})
            summary.append(entry)
    write_csv(folder / "ood.csv", summary)
    write_csv(folder / "ood_runs.csv", ood_rows)  # per run and set: what `lpft claims` tests claim 1 OOD on
    header = ["set", "role"] + [f"{LABEL[m]} {primary} (%)" for m in methods] + [f"{LABEL[m]} Diff(F)"
                                                                              for m in methods]
    table = []
    for name, role in sets:
        groups = {m: [r for r in ood_rows if r["set"] == name and r["method"] == m] for m in methods}
        table.append([name, role] + [fmt_mean_std((r[primary] for r in groups[m]), fmt_percent) for m in methods]
                     + [fmt_mean_std(r["diff"] for r in groups[m]) for m in methods])
    return ["## In- and out-of-distribution test sets", "", markdown_table(header, table), ""]
