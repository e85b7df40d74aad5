"""The ``lpft claims`` report: find what a study left under a folder, test the seven claims, write one folder.

What is read (nothing is trained; see ``docs/claims.md`` for the rules):

- finished run folders (``metrics.json``): test metrics, head norms by stage, calibration (claims 1, 3, 6);
  runs made with ``--head-norm`` / ``--head-scale`` are norm-sweep points and only count for claim 5;
- per-run feature statistics from compare reports (``runs.csv``), their OOD metrics (``ood_runs.csv``) and
  ``lpft evaluate`` folders (``RUN/evaluation/evaluation.csv``, which also holds OOD metrics) (claims 1 OOD, 2);
- norm-sweep reports (``sweep.csv`` + ``settings.json``) (claim 5, AdamW);
- eNTK folders of ``lpft ntk`` (``stats.json``, ``F_train.npy``, ``P_train.npy``) (claims 4, 5 SGD, 7).

Runs are grouped by task and *setting* (the config without method, seed, batch size, learning rate and head
rescaling): methods are paired only within a setting. A task with several settings gets one label per setting,
e.g. ``cb (epochs=3)``. The report folder holds ``claims.md``, ``claims.csv`` (one row per statistic, incl. the
"no data" ones), ``runs.csv`` (the per-run rows used), ``lp_norm_path.csv`` / ``.png`` (claim 3),
``monotonicity.csv`` and ``norm_curves.png`` (claim 5), ``kernel_pairs.csv`` (claim 7).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..analysis import claims as C
from ..methods.config import FT_ONLY_FIELDS
from ..runs import RunRecord
from . import paper
from .output import report_folder
from .tables import DASH, fmt_number, markdown_table, write_csv

# config fields that may differ between the methods of one comparison (Table 6 sets them per method)
PER_RUN_FIELDS = ("method", "seed", "batch_size", "lr", "head_norm", "head_scale")

CLAIMS = {
    1: "LP-FT matches or beats FT in-distribution and out-of-distribution",
    2: "Features change less under LP-FT (LP-LoRA) than under FT (LoRA): lower Diff(F), higher CS(F)",
    3: "The head norm grows far more during LP than during FT",
    4: "The FT-effective part weighs more in LP-FT's kernel than in FT's (FT ratio), with higher rank than P",
    5: "A larger head norm at the start of FT gives a smaller feature change, almost monotonically",
    6: "Temperature scaling improves calibration most for LP-FT (largest MCE gain)",
    7: "LoRA's FT-effective kernel is close to a scalar multiple of FT's",
}

#: the command that produces each claim's data (``TASK`` replaced by the task)
COMMANDS = {
    1: "lpft compare --task TASK --methods ft,lp-ft --seeds 1,2,3 (OOD: lpft evaluate RUN --ood SET)",
    2: "lpft compare --task TASK --methods ft,lp-ft,lora,lp-lora --seeds 1,2,3 (or lpft evaluate RUN)",
    3: "lpft compare --task TASK --methods ft,lp-ft --seeds 1,2,3",
    4: "lpft ntk --task TASK --method M --seed S for M in ft, lp-ft, lora, lp-lora and S in 1, 2, 3",
    "5-adamw": "lpft norm-sweep --task TASK --methods ft,lp-ft --seeds 1,2,3",
    "5-sgd": "lpft ntk --task TASK --method ft --seed S --predict-optimizer sgd --head-norm X for X in 0.1,1,10,100",
    6: "lpft compare --task TASK --methods ft,lp-ft,lora,lp-lora --seeds 1,2,3",
    7: "lpft ntk --task TASK --method M --seed S for M in ft, lora and S in 1, 2, 3",
}


# ------------------------------------------------------------------------------------------------ discovery
def _setting(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in PER_RUN_FIELDS}


class Labeller:
    """Task labels: the task name, plus the fields that differ where a task was run with several settings."""

    def __init__(self):
        self.settings: dict[str, list[dict]] = {}

    def add(self, config: dict) -> None:
        if config["method"] == "lp":  # seed- and schedule-free: it serves the settings it matches (label)
            return
        group = self.settings.setdefault(config["task"], [])
        if _setting(config) not in group:
            group.append(_setting(config))

    def label(self, config: dict) -> str:
        task, group = config["task"], self.settings.get(config["task"], [])
        mine = _setting(config)
        if config["method"] == "lp":
            # its fine-tuning-only fields were reset (RunConfig.resolved): label it as the one setting it serves
            served = [g for g in group if all(g.get(k) == v for k, v in mine.items() if k not in FT_ONLY_FIELDS)]
            mine = served[0] if len(served) == 1 else mine
        if len(group) <= 1:
            return task
        differ = [k for k in mine if any(g.get(k) != mine[k] for g in group)]
        return f"{task} ({', '.join(f'{k}={mine[k]}' for k in differ)})"


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def find_runs(out: Path) -> list[RunRecord]:
    """Every finished run folder under ``out`` (a folder with ``metrics.json`` and a run's ``config.json``)."""
    found = []
    for p in sorted(out.rglob("metrics.json")):
        config = p.parent / "config.json"
        try:
            if config.is_file() and "config" in json.loads(config.read_text()):
                found.append(RunRecord(p.parent))
        except (TypeError, ValueError, KeyError, OSError) as err:  # e.g. written by another lpft version
            tqdm.write(f"lpft claims: skipped {p.parent}: {type(err).__name__}: {err}")
    return found


def _config(record: RunRecord) -> dict:
    return dataclasses.asdict(record.config)


def feature_rows(out: Path) -> dict[str, dict]:
    """resolved run folder -> {diff, cs, ood: {set: metric fraction}} from compare reports and evaluate folders."""
    found: dict[str, dict] = {}
    for path in sorted(out.rglob("runs.csv")):
        if (path.parent / "claims.md").exists():  # an earlier claims report: our own output, not a source
            continue
        for row in _read_csv(path):
            if row.get("folder") and row.get("diff") not in (None, ""):
                entry = found.setdefault(str(Path(row["folder"]).resolve()), {})
                entry.update({"diff": _float(row["diff"]), "cs": _float(row.get("cs"))})
    for path in sorted(out.rglob("ood_runs.csv")):  # compare / study reports with OOD sets
        for row in _read_csv(path):
            if row.get("folder") and row.get("role") == "OOD":
                found.setdefault(str(Path(row["folder"]).resolve()), {}).setdefault("ood_rows", []).append(row)
    for path in sorted(out.rglob("evaluation/evaluation.csv")):
        entry = found.setdefault(str(path.parent.parent.resolve()), {})
        for row in _read_csv(path):
            if row.get("role") == "ID":
                entry.update({"diff": _float(row.get("diff")), "cs": _float(row.get("cs"))})
            elif row.get("role") == "OOD":
                entry.setdefault("ood_rows", []).append(row)
    return found


def run_rows(records: list[RunRecord], labeller: Labeller, features: dict[str, dict]) -> list[dict]:
    """One row per non-sweep run in the units of :mod:`lpft.analysis.claims` (metrics in points)."""
    from ..analysis.calibration import calibration_report
    from ..analysis.run_features import final_head

    rows = []
    for record in tqdm(records, desc="claims: runs", unit="run", disable=len(records) < 10):
        cfg = _config(record)
        if cfg.get("head_norm") is not None or cfg.get("head_scale") is not None:
            continue
        primary = record.data["metrics"][0]
        row = {"task": labeller.label(cfg), "method": cfg["method"], "seed": cfg["seed"],
               "test_metric": 100 * record.metrics["test"][primary], "folder": str(record.path)}
        for stage in ("init", "lp", "start"):
            if (record.path / "heads" / f"{stage}.safetensors").is_file():
                row[f"norm_{stage}"] = float(np.linalg.norm(record.head(stage)[0]))
        row["norm_end"] = float(np.linalg.norm(final_head(record)[0]))
        if (record.path / "logits").is_dir() and cfg["method"] != "lp":
            cal = calibration_report(*record.logits("validation"), *record.logits("test"))
            row["mce_before"], row["mce_after"] = 100 * cal["mce_before"], 100 * cal["mce_after"]
        extra = features.get(str(record.path.resolve()), {})
        row["diff"], row["cs"] = extra.get("diff"), extra.get("cs")
        ood = {r["set"]: _float(r.get(primary)) for r in extra.get("ood_rows", [])}
        row["ood"] = {k: 100 * v for k, v in ood.items() if v is not None}
        rows.append(row)
    return rows


def sweep_rows(out: Path) -> list[dict]:
    """Claim-5 AdamW points from norm-sweep reports: task, method, seed, start_norm, change = Diff(F)."""
    rows, seen = [], set()
    for path in sorted(out.rglob("sweep.csv")):
        settings_path = path.parent / "settings.json"
        if not settings_path.is_file():
            continue
        config = json.loads(settings_path.read_text()).get("config", {})
        for r in _read_csv(path):
            key = str(Path(r.get("folder", "")).resolve())
            if key in seen:  # the same run in two sweep reports
                continue
            seen.add(key)
            rows.append({"task": config.get("task", "?"), "method": r["method"], "seed": int(r["seed"]),
                         "start_norm": float(r["start_norm"]), "change": float(r["diff"])})
    return rows


def ntk_folders(out: Path) -> list[tuple[Path, dict]]:
    """(folder, stats) of every finished ``lpft ntk`` folder under ``out``."""
    found = []
    for path in sorted(out.rglob("stats.json")):
        stats = json.loads(path.read_text())
        if "ft_ratio" in stats and "kernels" in stats:
            found.append((path.parent, stats))
    return found


def _rescaled(stats: dict) -> bool:
    return stats.get("head_norm") is not None or stats.get("head_scale") is not None


def _ntk_key(stats: dict) -> tuple:
    """Folders comparable with each other: same model, task and samples."""
    return (stats["task"], stats["model"], tuple(stats.get("train_indices", ())), stats.get("embedding_fraction"),
            stats.get("sketch"))


def ntk_rows(folders) -> list[dict]:
    return [{"task": s["task"], "method": s["method"], "seed": s["seed"], "ft_ratio": s["ft_ratio"],
             "rank_P": s["kernels"]["P"]["rank"], "rank_F": s["kernels"]["F"]["rank"], "folder": str(f)}
            for f, s in folders if not _rescaled(s)]


def sgd_rows(folders) -> list[dict]:
    """Claim-5 SGD points: eNTK folders whose real epoch ran plain SGD and that recorded the start head norm."""
    rows = []
    for _, s in folders:
        p = s.get("predict") or {}
        if p.get("optimizer") == "sgd" and "start_head_norm" in s and "features_test" in p:
            rows.append({"task": s["task"], "method": s["method"], "seed": s["seed"],
                         "start_norm": s["start_head_norm"], "change": p["features_test"]["actual_norm"],
                         "predicted": p["features_test"]["predicted_norm"]})
    return rows


def kernel_pairs(folders) -> list[dict]:
    """Claim-7 rows: for each (task, model, samples, seed) with unscaled LoRA and FT folders (and LP-LoRA / LP-FT)."""
    by = {}
    for f, s in folders:
        if not _rescaled(s):
            by[(_ntk_key(s), s["seed"], s["method"])] = f
    rows = []
    for (key, seed, method), f_ft in sorted(by.items(), key=lambda kv: str(kv[0])):
        for a, b in (("lora", "ft"), ("lp-lora", "lp-ft")):
            if method != b or (key, seed, a) not in by:
                continue
            f_lora = by[(key, seed, a)]
            F_b = np.load(f_ft / "F_train.npy")
            P_b = np.load(f_ft / "P_train.npy")
            F_a = np.load(f_lora / "F_train.npy")
            row = C.kernel_pair_row(key[0], seed, F_a, F_b, P_b)
            rows.append({**row, "pair": f"{a} vs {b}", "folder_a": str(f_lora), "folder_b": str(f_ft)})
    return rows


def lp_paths(records: list[RunRecord], labeller: Labeller, data_dir, cache_dir, gd_steps: int) -> tuple[list, dict]:
    """Claim-3 extras for the first run with an LP stage of each task label: (csv rows, label -> result)."""
    from ..analysis.run_features import run_features, run_split

    done, rows, results = set(), [], {}
    for record in records:
        cfg = _config(record)
        label = labeller.label(cfg)
        if label in done or cfg["method"] not in ("lp", "lp-ft", "lp-lora") or cfg.get("head_norm") is not None \
                or cfg.get("head_scale") is not None:
            continue
        done.add(label)
        train = run_split(record, "train", data_dir)
        X = run_features(record, train, "pretrained", cache_dir)
        w, b = record.head("lp")
        res = C.lp_norm_path(X, train.labels, w.shape[0], cs=record.config.lp_cs, max_iter=record.config.lp_max_iter,
                             chosen_weight=w, chosen_bias=b, gd_steps=gd_steps)
        res.update({"seed": cfg["seed"], "folder": str(record.path),
                    "norm_init": float(np.linalg.norm(record.head("init")[0]))})
        results[label] = res
        rows += [{"task": label, "seed": cfg["seed"], "kind": "L2 probe", "C": p["C"], "norm": p["norm"],
                  "chosen": p["C"] == res["chosen_C"]} for p in res["path"]]
        gd = res["gd"]
        rows.append({"task": label, "seed": cfg["seed"], "kind": f"GD, C={gd['C']:g}, {gd['steps']} steps",
                     "C": gd["C"], "norm": gd["norm"], "chosen": False})
    return rows, results


# ------------------------------------------------------------------------------------------------ report
def _no_data(claim, task: str, name: str, command_key) -> dict:
    return {"claim": claim, "task": task, "statistic": name, "n": 0, "mean": None, "ci_low": None, "ci_high": None,
            "rule": "", "verdict": C.NO_DATA, "paper": "",
            "seeds": "", "note": f"run: {COMMANDS[command_key].replace('TASK', task.split(' ')[0])}"}


def compute(out: Path | list[Path], tasks: list[str] | None = None, data_dir=None, cache_dir=None,
            lp_path: bool = True, gd_steps: int = 2000) -> dict:
    """Everything the report shows, as plain rows (see the module docstring). ``out``: one folder or several (a
    study passes its own run folders, eNTK folders and report folder, so nothing else under its --out mixes in)."""
    roots = [Path(out)] if isinstance(out, (str, Path)) else [Path(p) for p in out]
    records = list({str(r.path.resolve()): r for root in roots for r in find_runs(root)}.values())
    if tasks:
        records = [r for r in records if _config(r)["task"] in tasks]
    labeller = Labeller()
    for r in records:
        if _config(r).get("head_norm") is None and _config(r).get("head_scale") is None:
            labeller.add(_config(r))
    features: dict[str, dict] = {}
    for root in roots:
        for folder, entry in feature_rows(root).items():
            merged = features.setdefault(folder, {})
            merged.update({k: v for k, v in entry.items() if k != "ood_rows"})
            merged.setdefault("ood_rows", []).extend(entry.get("ood_rows", []))
    runs = run_rows(records, labeller, features)
    found = {str(f.resolve()): (f, s) for root in roots for f, s in ntk_folders(root)}
    folders = [(f, s) for f, s in found.values() if not tasks or s["task"] in tasks]
    points = {(r["task"], r["method"], r["seed"], r["start_norm"]): r for root in roots for r in sweep_rows(root)}
    sweeps = [r for r in points.values() if not tasks or r["task"] in tasks]
    sgd = sgd_rows(folders)
    ntk = ntk_rows(folders)
    pairs = kernel_pairs(folders)
    path_rows, path_results = lp_paths(records, labeller, data_dir, cache_dir, gd_steps) if lp_path else ([], {})

    stats: list[dict] = []
    all_tasks = list(dict.fromkeys([r["task"] for r in runs] + [r["task"] for r in ntk] + [r["task"] for r in sweeps]
                                   + [r["task"] for r in sgd] + list(tasks or [])))

    def add(claim, results: list, names_if_empty: list[tuple[str, object]]):
        """The claim's statistics (those without data name their command); a task with none gets placeholders."""
        have = {s.task for s in results if s.interval.n > 0}
        for s in results:
            if s.task in have:
                stats.append(s.row() if s.interval.n > 0 else
                             {**_no_data(claim, s.task, s.name, names_if_empty[0][1]), "paper": s.paper})
        for task in all_tasks:
            if task not in have:
                stats.extend(_no_data(claim, task, name, key) for name, key in names_if_empty)

    add(1, C.claim1(runs, paper.TABLE8), [("LP-FT − FT test metric (points), ID", 1)])
    add(2, C.claim2(runs, paper.TABLE1), [("Diff(F) / CS(F) of FT, LP-FT, LoRA, LP-LoRA", 2)])
    add(3, C.claim3(runs, paper.TABLE1), [("log2 Norm(C) growth, LP − FT", 3)])
    add(4, C.claim4(ntk, getattr(paper, "TABLE2", {})), [("FT ratio and ranks from the eNTK", 4)])
    adamw, curves_adamw = C.claim5(sweeps, "AdamW")
    sgd_stats, curves_sgd = C.claim5(sgd, "SGD")
    add(5, adamw, [("Spearman rho under AdamW (norm sweep)", "5-adamw")])
    add(5, sgd_stats, [("Spearman rho under SGD (eNTK real SGD epoch)", "5-sgd")])
    add(6, C.claim6(runs, paper.TABLE3), [("MCE gain LP-FT − best other", 6)])
    lora_pairs = [p for p in pairs if p["pair"] == "lora vs ft"]
    add(7, C.claim7(lora_pairs), [("scalar-fit residual and spectrum gap, F_LoRA vs F_FT", 7)])
    return {"stats": stats, "runs": runs, "ntk": ntk, "sweeps": sweeps, "sgd": sgd,
            "curves": curves_adamw + curves_sgd, "pairs": pairs, "lp_path_rows": path_rows,
            "lp_paths": path_results, "tasks": all_tasks}


def claim_verdicts(stats: list[dict]) -> dict[tuple[int, str], str]:
    """(claim, task) -> the claim's verdict on that task (``analysis.claims.combine`` of its statistics)."""
    out: dict[tuple[int, str], list[str]] = {}
    for s in stats:
        out.setdefault((s["claim"], s["task"]), []).append(s["verdict"])
    return {k: C.combine(v) for k, v in out.items()}


def verdict_table(result: dict) -> str:
    """Markdown: one row per claim, one column per task, the combined verdict in each cell."""
    verdicts = claim_verdicts(result["stats"])
    return markdown_table(["claim"] + result["tasks"],
                          [[f"{c}. {text}"] + [verdicts.get((c, t), C.NO_DATA) for t in result["tasks"]]
                           for c, text in CLAIMS.items()])


def _ci(s: dict) -> str:
    if s["ci_low"] is None:
        return DASH if s["mean"] is None else "no interval (n = 1)"
    return f"[{fmt_number(s['ci_low'])}, {fmt_number(s['ci_high'])}]"


def write_report(final: str | Path, result: dict, out: Path | str) -> Path:
    """``out``: where the data was read from, as the report states it."""
    stats = result["stats"]
    with report_folder(final) as folder:
        write_csv(folder / "claims.csv", stats)
        if result["runs"]:
            write_csv(folder / "runs.csv", [{**{k: v for k, v in r.items() if k != "ood"},
                                             **{f"ood_{k}": v for k, v in r["ood"].items()}} for r in result["runs"]])
        md = ["# The paper's seven claims", "",
              f"Read from `{out}`: {len(result['runs'])} runs, {len(result['sweeps'])} norm-sweep points, "
              f"{len(result['ntk']) + len(result['sgd'])} eNTK folders. Each statistic: mean over seeds of the "
              "per-seed paired difference with its 95 % Student-t interval; verdict rules fixed in advance in "
              "`docs/claims.md`. The paper's numbers (RoBERTa-base, 15 seeds) are context, not part of the rule.", "",
              "## Verdicts", "", verdict_table(result), ""]
        for c, text in CLAIMS.items():
            rows = [s for s in stats if s["claim"] == c]
            md += [f"## Claim {c}: {text}", "", markdown_table(
                ["task", "statistic", "n", "mean", "95% CI", "rule", "paper (RoBERTa-base)", "verdict", "note"],
                [[s["task"], s["statistic"], str(s["n"]), fmt_number(s["mean"]), _ci(s), s["rule"] or DASH,
                  s["paper"] or DASH, s["verdict"], s["note"] or ""] for s in rows]), ""]
            if c == 3 and result["lp_paths"]:
                write_csv(folder / "lp_norm_path.csv", result["lp_path_rows"])
                plot_lp_path(result["lp_paths"], folder / "lp_norm_path.png")
                table = []
                for task, r in result["lp_paths"].items():
                    table.append([task, str(r["seed"]), fmt_number(r["norm_init"]),
                                  " ".join(f"{p['norm']:.3g}" for p in r["path"]),
                                  f"{fmt_number(r['chosen_C'])} → {fmt_number(r['chosen_norm'])}",
                                  f"{fmt_number(r['gd']['norm'])} ({r['gd']['steps']} steps)",
                                  f"{r['pretrained_cs']:.3f}"])
                md += ["Why the head grows or not, measured: the probe's head norm for each C of its grid "
                       "(C = 1e-4 … 1e4, log-spaced), the C it chose by cross-validation, an almost unregularised "
                       "LP by gradient descent (C = 1e6, from the zero head), and the pre-trained features' CS "
                       "(paper, RoBERTa: 0.997).", "",
                       markdown_table(["task", "seed", "‖V‖ at init", "‖V‖ over the C grid", "chosen C → ‖V‖",
                                       "GD LP ‖V‖", "pre-trained CS"], table), "",
                       "![LP head norm against C](lp_norm_path.png)", ""]
            if c == 5 and result["curves"]:
                write_csv(folder / "monotonicity.csv", result["curves"])
                plot_norm_curves(result["sweeps"], result["sgd"], folder / "norm_curves.png")
                md += ["Per seed: " + "; ".join(
                    f"{r['task']} {r['method'].upper()} seed {r['seed']} {r['optimizer']}: rho {r['rho']:.3f}, "
                    f"{100 * r['decreasing_steps']:.0f}% decreasing steps ({r['points']} norms)"
                    for r in result["curves"]) + ".", "",
                       "AdamW: Diff(F) of `lpft norm-sweep` runs. SGD: ‖Φ_SGD − Φ0‖_F of one real plain-SGD epoch "
                       "measured by `lpft ntk --predict-optimizer sgd` (another scale; rho ignores it).", "",
                       "![feature change against start head norm](norm_curves.png)", ""]
            if c == 7 and result["pairs"]:
                write_csv(folder / "kernel_pairs.csv", result["pairs"])
                md += [markdown_table(["task", "seed", "pair", "residual", "spectrum gap", "baseline residual "
                                       "(F_FT vs P)", "baseline gap"],
                                      [[p["task"], str(p["seed"]), p["pair"], fmt_number(p["residual"]),
                                        fmt_number(p["gap"]), fmt_number(p["baseline_residual"]),
                                        fmt_number(p["baseline_gap"])] for p in result["pairs"]]), ""]
        (folder / "claims.md").write_text("\n".join(md))
    return Path(final)


def summary_rows(result: dict) -> list[list[str]]:
    """(claim, task, verdict) rows for the terminal."""
    verdicts = claim_verdicts(result["stats"])
    return [[str(c), t, verdicts.get((c, t), C.NO_DATA)] for c in CLAIMS for t in result["tasks"]]



# ------------------------------------------------------------------------------------------------ figures
def plot_lp_path(results: dict, path: Path) -> Path:
    """Claim 3: the probe's head norm against C (log-log), the chosen C marked, the GD LP and init as lines."""
    from ..analysis._figures import new_figure, save_png

    fig = new_figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    for i, (task, r) in enumerate(results.items()):
        color = f"C{i}"
        ax.plot([p["C"] for p in r["path"]], [p["norm"] for p in r["path"]], marker="o", color=color,
                label=f"{task}: L2 probe (CS {r['pretrained_cs']:.2f})")
        if r["chosen_C"] is not None:
            ax.plot([r["chosen_C"]], [r["chosen_norm"]], marker="*", markersize=14, color=color, linestyle="none",
                    label=f"{task}: chosen C")
        ax.axhline(r["gd"]["norm"], color=color, linestyle="--", linewidth=1,
                   label=f"{task}: GD LP, {r['gd']['steps']} steps")
        ax.axhline(r["norm_init"], color=color, linestyle=":", linewidth=1, label=f"{task}: head at init")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="C (inverse L2 strength)", ylabel="head norm ||V||_F", title="LP head norm against L2 strength")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_png(fig, path)


def plot_norm_curves(adamw: list[dict], sgd: list[dict], path: Path) -> Path:
    """Claim 5: feature change against the start head norm, one line per (task, method, seed); AdamW | SGD."""
    from matplotlib.ticker import NullFormatter

    from ..analysis._figures import new_figure, save_png
    from .plots import METHOD_COLORS

    fig = new_figure(figsize=(11, 4.5))
    for k, (name, rows, ylabel) in enumerate((("AdamW (norm sweep)", adamw, "Diff(F)"),
                                              ("plain SGD (eNTK real epoch)", sgd, "||Phi_SGD - Phi0||_F"))):
        ax = fig.add_subplot(1, 2, k + 1)
        curves: dict[tuple, list[dict]] = {}
        for r in rows:
            curves.setdefault((r["task"], r["method"], r["seed"]), []).append(r)
        labelled = set()
        for (task, method, seed), pts in curves.items():
            pts = sorted(pts, key=lambda p: p["start_norm"])
            label = f"{task} {method.upper()}"
            ax.plot([p["start_norm"] for p in pts], [p["change"] for p in pts], marker="o",
                    color=METHOD_COLORS.get(method, "C7"), alpha=0.8, label=None if label in labelled else label)
            labelled.add(label)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on a short log range
        ax.set(xlabel="head norm ||V||_F at the start of FT", ylabel=ylabel, title=name)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize="small")
    return save_png(fig, path)
