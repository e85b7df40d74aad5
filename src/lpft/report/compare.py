"""The compare report of one task: analyse its finished run folders, write one report folder.

What gets trained is decided by the study layer (:mod:`lpft.study`); this module only reads run folders and
renders. Each cell of the methods × seeds grid is a :class:`RunSlot` (LP's seed-free run fills the LP cell of
every seed). The report folder holds::

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

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax
from tqdm.auto import tqdm

from ..analysis.calibration import calibration_report, reliability_bins, reliability_diagram
from ..analysis.dynamics import lp_dynamics
from ..analysis.ood import evaluate_ood
from ..analysis.run_features import final_head, run_features, run_split, table1_statistics
from ..analysis.tsne import embed_with_head, tsne_figure
from ..io import shown_path, write_json
from ..runs import HEAD_STAGES, RunRecord
from . import paper
from .output import report_folder
from .plots import plot_dynamics
from .tables import fmt_fixed3, fmt_mean_std, fmt_number, fmt_percent, markdown_table, mean_std, write_csv

LABEL = {"lp": "LP", "ft": "FT", "lp-ft": "LP-FT", "lora": "LoRA", "lp-lora": "LP-LoRA"}


@dataclass
class RunSlot:
    """One cell of a task's methods × seeds grid with the finished run that fills it. LP's run is seed-free, so one
    LP run fills the LP cell of every seed."""

    method: str
    seed: int
    record: RunRecord
    reused: bool = False


@dataclass
class CompareSettings:
    """How the report analyses the runs (none of it changes a run)."""

    split: str = "test"
    ood: tuple[str, ...] = ()
    tsne_samples: int = 500
    gd_max_steps: int = 100_000
    data_dir: str | None = None
    cache: Path | None = None
    device: str | None = None


def _collect(record: RunRecord, settings: CompareSettings) -> dict:
    """Every per-run number of the report, read from the run folder (features computed once and cached there)."""
    cfg = record.config
    row = {"method": cfg.method, "seed": cfg.seed, "best_epoch": record.metrics["best_epoch"],
           "seconds": record.metrics.get("seconds")}
    for split, key in (("validation", "val"), ("test", "test")):
        row.update({f"{split}_{m}": v for m, v in record.metrics[key].items()})
    row.update(table1_statistics(record, run_split(record, settings.split, settings.data_dir), settings.cache,
                                 settings.device))
    for stage in HEAD_STAGES:
        if (record.path / "heads" / f"{stage}.safetensors").exists():
            row[f"norm_{stage}"] = float(np.linalg.norm(record.head(stage)[0]))
    row["norm_end"] = float(np.linalg.norm(final_head(record)[0]))
    row.update(calibration_report(*record.logits("validation"), *record.logits("test")))
    row["folder"] = shown_path(record.path)  # relative to the repository: committed reports carry no machine paths
    return row


@dataclass
class TaskAnalysis:
    """Everything a task's report shows, computed from its run folders."""

    task: str
    slots: list[RunSlot]
    records: list[RunRecord]  # distinct runs, in grid order
    rows: list[dict]  # one per slot
    gd: list[dict]
    ood_rows: list[dict]


def analyse_task(task: str, slots: list[RunSlot], settings: CompareSettings) -> TaskAnalysis:
    """Per-slot rows (each distinct run analysed once), LP by gradient descent, OOD evaluation."""
    records = list({str(s.record.path): s.record for s in slots}.values())
    per_run = {str(r.path): _collect(r, settings) for r in tqdm(records, desc=f"analyse {task} runs", unit="run")}
    rows = [{**per_run[str(s.record.path)], "method": s.method, "seed": s.seed, "reused": s.reused} for s in slots]
    gd = _lp_gradient_descent(records, settings)
    ood_rows = []
    for record in (tqdm(records, desc="OOD evaluation", unit="run") if settings.ood else ()):
        for r in evaluate_ood(record, list(settings.ood), settings.data_dir, settings.cache, device=settings.device):
            for slot in (s for s in slots if s.record.path == record.path):
                ood_rows.append({"method": slot.method, "seed": slot.seed, "folder": shown_path(record.path), **r})
    return TaskAnalysis(task, slots, records, rows, gd, ood_rows)


def study_info(analysis: TaskAnalysis, settings: CompareSettings, seconds: dict | None = None) -> dict:
    slots = analysis.slots
    ft = next((s.record.config for s in slots if s.method != "lp"), slots[0].record.config)
    return {"task": analysis.task, "methods": list(dict.fromkeys(s.method for s in slots)),
            "seeds": list(dict.fromkeys(s.seed for s in slots)), "split": settings.split, "ood": list(settings.ood),
            "config": {k: v for k, v in dataclasses.asdict(ft).items() if k not in ("method", "seed")},
            "runs": [{"method": r["method"], "seed": r["seed"], "folder": r["folder"], "reused": r["reused"]}
                     for r in analysis.rows],
            "seconds": seconds or {}}


def write_compare_report(final: str | Path, task: str, slots: list[RunSlot], settings: CompareSettings,
                         seconds: dict | None = None) -> Path:
    """Analyse one task's runs and write its report folder (replaced whole when finished); returns the folder."""
    analysis = analyse_task(task, slots, settings)
    with report_folder(final) as tmp:
        _write_report(tmp, analysis, settings)
        write_json(tmp / "study.json", study_info(analysis, settings, seconds))
    return Path(final)


def _lp_gradient_descent(records: list[RunRecord], settings: CompareSettings) -> list[dict]:
    """LP by gradient descent once per seed, from that seed's first run with an LP stage."""
    out, done = [], set()
    for record in records:
        seed = record.config.seed
        if record.config.uses_lp and seed not in done:
            done.add(seed)
            result = lp_dynamics(record, settings.data_dir, settings.cache, max_steps=settings.gd_max_steps)
            out.append({"seed": seed, **result})
    return out


def _by_method(rows: list[dict], methods: list[str]) -> dict[str, list[dict]]:
    return {m: [r for r in rows if r["method"] == m] for m in methods}


def _summary(groups: dict[str, list[dict]], keys: list[str]) -> list[dict]:
    out = []
    for method, group in groups.items():
        entry = {"method": method}
        for key in keys:
            mean, std, n = mean_std(r.get(key) for r in group)
            entry.update({f"{key}_mean": mean, f"{key}_std": std, f"{key}_n": n})
        out.append(entry)
    return out


def _write_report(folder: Path, analysis: TaskAnalysis, settings: CompareSettings, title: str = "lpft compare"
                  ) -> None:
    records, rows, gd, ood_rows = analysis.records, analysis.rows, analysis.gd, analysis.ood_rows
    methods = list(dict.fromkeys(s.method for s in analysis.slots))
    seeds = list(dict.fromkeys(s.seed for s in analysis.slots))
    # the grid's fine-tuning schedule (LP's config carries none)
    cfg = next((s.record.config for s in analysis.slots if s.method != "lp"), analysis.slots[0].record.config)
    task = analysis.task
    groups = _by_method(rows, methods)
    metric_names = records[0].data["metrics"]
    primary = metric_names[0]
    write_csv(folder / "runs.csv", rows)
    splits = records[0].data.get("splits", {})
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
    md += _reliability(folder, records, methods)

    md += _dynamics(folder, records, gd, cfg.task)
    md += _tsne(folder, settings, records, methods, seeds[0])
    if ood_rows:
        md += _ood(folder, ood_rows, methods, primary)

    md += ["## Runs", "", markdown_table(
        ["method", "seed", f"test {primary}", "best epoch", "seconds", "reused", "folder"],
        [[LABEL[r["method"]], str(r["seed"]), f"{r[f'test_{primary}']:.4f}", str(r["best_epoch"]),
          f"{r['seconds']:.0f}" if r.get("seconds") is not None else "–", "yes" if r["reused"] else "no",
          f"`{r['folder']}`"] for r in rows]), ""]
    (folder / "report.md").write_text("\n".join(md))


def _reliability(folder: Path, records: list[RunRecord], methods: list[str]) -> list[str]:
    """Bins of every run in reliability.csv; a diagram for each method's first seed."""
    from ..analysis.calibration import fit_temperature

    bins, md, drawn = [], ["### Reliability diagrams (first seed)", ""], set()
    for record in records:
        m, seed = record.config.method, record.config.seed
        z_test, y_test = record.logits("test")
        T = fit_temperature(*record.logits("validation"))
        probs = {"before": softmax(z_test, axis=1), "after": softmax(z_test / T, axis=1)}
        for scaling, p in probs.items():
            for b, (n, acc, conf) in enumerate(zip(*reliability_bins(p, y_test))):
                bins.append({"method": m, "seed": seed, "scaling": scaling, "bin": b, "count": int(n),
                             "accuracy": acc, "confidence": conf})
        if m not in drawn:
            drawn.add(m)
            name = f"reliability-{m}.png"
            reliability_diagram(probs["before"], probs["after"], y_test, folder / name,
                                title=f"{LABEL[m]} seed {seed} (T = {T:.3g})")
            md.append(f"![{LABEL[m]}]({name})")
    write_csv(folder / "reliability.csv", bins)
    return md + [""]


def _dynamics(folder: Path, records: list[RunRecord], gd: list[dict], task: str) -> list[str]:
    curves, csv_rows = [], []
    for g in gd:
        curves.append(("lp", "LP (gradient descent)", g["steps"]))
        csv_rows += [{"method": "lp", "seed": g["seed"], "source": "gradient descent", **s} for s in g["steps"]]
    for record in records:
        if record.steps:
            m = record.config.method
            curves.append((m, LABEL[m], record.steps))
            csv_rows += [{"method": m, "seed": record.config.seed, "source": "steps.json", **s} for s in record.steps]
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


def _tsne(folder: Path, settings: CompareSettings, records: list[RunRecord], methods: list[str], seed: int
          ) -> list[str]:
    """Pre-trained features (with the LP head when LP ran, else the initial head) and each fine-tuned model's
    features with its final head, on the first ``tsne_samples`` examples of the split, for the first seed."""
    runs = {r.config.method: r for r in records if r.config.seed == seed or r.config.method == "lp"}
    any_run = next(iter(runs.values()))
    eval_set = run_split(any_run, settings.split, settings.data_dir)
    keep = slice(0, settings.tsne_samples)
    labels, names = eval_set.labels[keep], any_run.data["labels"]
    lp_run = next((r for r in runs.values() if r.config.uses_lp), None)
    pre_head = lp_run.head("lp")[0] if lp_run else any_run.head("init")[0]
    panels = [(f"pre-trained ({'LP' if lp_run else 'initial'} head)",
               run_features(any_run, eval_set, "pretrained", settings.cache, device=settings.device)[keep], labels,
               pre_head,
               names)]
    for m in methods:
        if m != "lp" and m in runs:
            phi = run_features(runs[m], eval_set, "trained", settings.cache, device=settings.device)[keep]
            panels.append((f"after {LABEL[m]}", phi, labels, final_head(runs[m])[0], names))
    csv_rows = []
    for title, feats, y, head, _ in panels:
        pts, heads = embed_with_head(feats, head)
        csv_rows += [{"panel": title, "kind": "sample", "index": i, "label": names[y[i]], "x": x, "y": yy}
                     for i, (x, yy) in enumerate(pts)]
        csv_rows += [{"panel": title, "kind": "head row", "index": k, "label": names[k], "x": x, "y": yy}
                     for k, (x, yy) in enumerate(heads)]
    write_csv(folder / "tsne.csv", csv_rows)
    tsne_figure(panels, folder / "tsne.png")
    return ["## t-SNE of features and head rows (paper Figures 5-6)", "",
            f"{len(labels)} {settings.split} examples, seed {seed}; stars are the head's rows, rescaled to the mean "
            "feature norm (direction only).", "", "![t-SNE](tsne.png)", ""]


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
