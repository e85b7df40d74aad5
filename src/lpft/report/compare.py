"""The ``lpft compare`` study: train what is missing, analyse the run folders, write one report folder.

For every (seed, method) the study calls :func:`lpft.runs.train`, which reuses finished runs and resumes killed
ones; LP is shared by LP, LP-FT and LP-LoRA through the feature / probe cache of ``methods/lp.py``. Everything in
the report is then computed from the run folders alone. The report folder holds::

    report.md          tables shaped like the paper's Tables 8, 1 and 3 (mean ± std over seeds), the paper's
                       RoBERTa-base numbers beside ours where the task matches, and the figures
    runs.csv           one row per run: every number the tables aggregate, with its run folder
    metrics.csv, features.csv, head_norms.csv, calibration.csv, ood.csv     the tables, as mean / std / n
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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax
from tqdm.auto import tqdm

from ..analysis.calibration import calibration_report, reliability_bins, reliability_diagram
from ..analysis.dynamics import lp_dynamics
from ..analysis.ood import evaluate_ood, is_file_spec
from ..analysis.run_features import final_head, run_features, run_split, table1_statistics
from ..analysis.tsne import embed_with_head, tsne_figure
from ..config import ConfigError
from ..data import SPLITS, DataError, get_task
from ..io import write_json
from ..methods.config import METHODS, RunConfig
from ..methods.lp import default_cache_dir
from ..runs import HEAD_STAGES, RunRecord, load_task, run_folder, train
from . import paper
from .output import report_folder
from .plots import plot_dynamics
from .tables import fmt_fixed3, fmt_mean_std, fmt_number, fmt_percent, markdown_table, mean_std, write_csv

LABEL = {"lp": "LP", "ft": "FT", "lp-ft": "LP-FT", "lora": "LoRA", "lp-lora": "LP-LoRA"}


@dataclass
class Study:
    """What ``lpft compare`` runs; ``base`` supplies every run option except method and seed."""

    base: RunConfig
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    report: Path
    out: Path = Path("runs")
    data_dir: str | None = None
    cache_dir: str | Path | None = "default"
    device: str | None = None
    split: str = "test"
    ood: tuple[str, ...] = ()
    tsne_samples: int = 500
    gd_max_steps: int = 100_000


def study_configs(base: RunConfig, methods, seeds) -> list[RunConfig]:
    """Resolved configs, seed-major (one seed's LP-based runs share the probe right away); all validated first."""
    methods = list(dict.fromkeys(m.strip().lower() for m in methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"--methods: {unknown[0] if unknown else '(none)'!r} is not a method: expected a "
                          f"comma-separated list of {', '.join(METHODS)}")
    if not seeds:
        raise ConfigError("--seeds: expected at least one seed")
    return [dataclasses.replace(base, method=m, seed=s).resolved() for s in dict.fromkeys(seeds) for m in methods]


def _collect(record: RunRecord, study: Study, cache) -> dict:
    """Every per-run number of the report, read from the run folder (features computed once and cached there)."""
    cfg = record.config
    row = {"method": cfg.method, "seed": cfg.seed, "best_epoch": record.metrics["best_epoch"],
           "seconds": record.metrics.get("seconds")}
    for split, key in (("validation", "val"), ("test", "test")):
        row.update({f"{split}_{m}": v for m, v in record.metrics[key].items()})
    row.update(table1_statistics(record, run_split(record, study.split, study.data_dir), cache, study.device))
    for stage in HEAD_STAGES:
        if (record.path / "heads" / f"{stage}.safetensors").exists():
            row[f"norm_{stage}"] = float(np.linalg.norm(record.head(stage)[0]))
    row["norm_end"] = float(np.linalg.norm(final_head(record)[0]))
    row.update(calibration_report(*record.logits("validation"), *record.logits("test")))
    row["folder"] = str(record.path)
    return row


def run_study(study: Study) -> Path:
    """Run the study and write its report folder; returns the folder."""
    if study.split not in SPLITS:
        raise ConfigError(f"--split {study.split!r} is unknown: expected one of {', '.join(SPLITS)}")
    if study.tsne_samples < 4:
        raise ConfigError(f"--tsne-samples must be >= 4, got {study.tsne_samples}")
    if study.gd_max_steps < 1:
        raise ConfigError(f"--gd-max-steps must be >= 1, got {study.gd_max_steps}")
    configs = study_configs(study.base, study.methods, study.seeds)
    _check_ood_sets(study, configs[0])
    cache = default_cache_dir() if study.cache_dir == "default" else (
        Path(study.cache_dir) if study.cache_dir else None)
    started = time.perf_counter()

    records, reused = [], []
    bar = tqdm(configs, desc="compare", unit="run")
    for i, cfg in enumerate(bar):
        bar.set_postfix_str(f"{cfg.method} seed {cfg.seed}")
        reused.append((run_folder(cfg, study.out) / "metrics.json").exists())
        t0 = time.perf_counter()
        record = RunRecord(train(cfg, out=study.out, data_dir=study.data_dir, cache_dir=cache, device=study.device))
        records.append(record)
        primary = record.data["metrics"][0]
        tqdm.write(f"[{i + 1}/{len(configs)}] {LABEL[cfg.method]} seed {cfg.seed}: test {primary} "
                   f"{record.metrics['test'][primary]:.4f} ({'reused' if reused[-1] else 'trained'}, "
                   f"{time.perf_counter() - t0:.0f} s)")
    train_seconds = time.perf_counter() - started

    rows = []
    for record, was_reused in zip(tqdm(records, desc="analyse runs", unit="run"), reused):
        rows.append({**_collect(record, study, cache), "reused": was_reused})
    gd = _lp_gradient_descent(records, study, cache)
    ood_rows = []
    for record in (tqdm(records, desc="OOD evaluation", unit="run") if study.ood else ()):
        for r in evaluate_ood(record, list(study.ood), study.data_dir, cache, device=study.device):
            ood_rows.append({"method": record.config.method, "seed": record.config.seed, **r})

    with report_folder(study.report) as tmp:
        _write_report(tmp, study, configs, records, rows, gd, ood_rows, cache)
        write_json(tmp / "study.json", {
            "task": configs[0].task, "methods": list(dict.fromkeys(c.method for c in configs)),
            "seeds": list(dict.fromkeys(c.seed for c in configs)), "split": study.split, "ood": list(study.ood),
            "config": {k: v for k, v in dataclasses.asdict(configs[0]).items() if k not in ("method", "seed")},
            "runs": [{"method": r["method"], "seed": r["seed"], "folder": r["folder"], "reused": r["reused"]}
                     for r in rows],
            "seconds": {"training": train_seconds, "total": time.perf_counter() - started}})
    return Path(study.report)


def _check_ood_sets(study: Study, cfg: RunConfig) -> None:
    """Fail before any training on an OOD set that cannot be used: a missing file, an unknown task, other labels."""
    if not study.ood:
        return
    labels = list(load_task(cfg, study.data_dir).labels)
    for spec in study.ood:
        if is_file_spec(spec):
            if not Path(spec).is_file():
                raise DataError(f"--ood: {spec}: file not found")
        elif list(get_task(spec, study.data_dir).labels) != labels:
            raise DataError(f"--ood: task {spec!r} has labels {', '.join(get_task(spec, study.data_dir).labels)}, "
                            f"expected the labels of task {cfg.task!r}: {', '.join(labels)}")


def _lp_gradient_descent(records: list[RunRecord], study: Study, cache) -> list[dict]:
    """LP by gradient descent once per seed, from that seed's first run with an LP stage."""
    out, done = [], set()
    for record in records:
        seed = record.config.seed
        if record.config.uses_lp and seed not in done:
            done.add(seed)
            result = lp_dynamics(record, study.data_dir, cache, max_steps=study.gd_max_steps)
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


def _write_report(folder: Path, study: Study, configs, records, rows, gd, ood_rows, cache) -> None:
    cfg = configs[0]
    methods = list(dict.fromkeys(c.method for c in configs))
    seeds = list(dict.fromkeys(c.seed for c in configs))
    groups = _by_method(rows, methods)
    metric_names = records[0].data["metrics"]
    primary = metric_names[0]
    write_csv(folder / "runs.csv", rows)
    md = [f"# lpft compare: {cfg.task}", "",
          f"Model `{cfg.model}`; methods {', '.join(LABEL[m] for m in methods)}; seeds {', '.join(map(str, seeds))}; "
          f"{cfg.epochs} epoch(s); max length {cfg.max_length}; train subset {cfg.train_subset or 'all'}, "
          f"eval subset {cfg.eval_subset or 'all'}. Mean ± sample std over seeds. "
          f"{sum(r['reused'] for r in rows)} of {len(rows)} runs reused. Definitions: `docs/analysis.md`.", ""]

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
    md += [f"## Feature statistics on the {study.split} split (paper Table 1)", "", markdown_table(header, table), "",
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
    md += _tsne(folder, study, records, methods, seeds[0], cache)
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


def _tsne(folder: Path, study: Study, records: list[RunRecord], methods: list[str], seed: int, cache) -> list[str]:
    """Pre-trained features (with the LP head when LP ran, else the initial head) and each fine-tuned model's
    features with its final head, on the first ``tsne_samples`` examples of the split, for the first seed."""
    runs = {r.config.method: r for r in records if r.config.seed == seed}
    any_run = next(iter(runs.values()))
    eval_set = run_split(any_run, study.split, study.data_dir)
    keep = slice(0, study.tsne_samples)
    labels, names = eval_set.labels[keep], any_run.data["labels"]
    lp_run = next((r for r in runs.values() if r.config.uses_lp), None)
    pre_head = lp_run.head("lp")[0] if lp_run else any_run.head("init")[0]
    panels = [(f"pre-trained ({'LP' if lp_run else 'initial'} head)",
               run_features(any_run, eval_set, "pretrained", cache, device=study.device)[keep], labels, pre_head,
               names)]
    for m in methods:
        if m != "lp" and m in runs:
            phi = run_features(runs[m], eval_set, "trained", cache, device=study.device)[keep]
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
            f"{len(labels)} {study.split} examples, seed {seed}; stars are the head's rows, rescaled to the mean "
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
    header = ["set", "role"] + [f"{LABEL[m]} {primary} (%)" for m in methods] + [f"{LABEL[m]} Diff(F)"
                                                                              for m in methods]
    table = []
    for name, role in sets:
        groups = {m: [r for r in ood_rows if r["set"] == name and r["method"] == m] for m in methods}
        table.append([name, role] + [fmt_mean_std((r[primary] for r in groups[m]), fmt_percent) for m in methods]
                     + [fmt_mean_std(r["diff"] for r in groups[m]) for m in methods])
    return ["## In- and out-of-distribution test sets", "", markdown_table(header, table), ""]
