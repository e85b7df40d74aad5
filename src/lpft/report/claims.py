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
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..analysis import claims as C
from ..data.base import DataError
from ..io import resolve_shown, shown_path
from ..methods.config import FT_ONLY_FIELDS
from ..runs import LAST_EPOCH_FEATURES, RunRecord
from . import paper
from .output import report_folder
from .tables import DASH, fmt_number, markdown_table, write_csv

# config fields that may differ between the methods of one comparison (Table 6 sets them per method)
PER_RUN_FIELDS = ("method", "seed", "batch_size", "lr", "head_norm", "head_scale")

CLAIMS = {
    1: "LP-FT matches or beats FT in-distribution and out-of-distribution",
    2: "Features change less under LP-FT (LP-LoRA) than under FT (LoRA): lower Diff(F) (CS(F) shown)",
    3: "The head norm grows far more during LP than during FT",
    4: "The FT-effective part weighs more in LP-FT's kernel than in FT's (FT ratio; ranks shown with their cap)",
    5: "A larger head norm at the start of FT gives a smaller feature change, almost monotonically",
    6: "Temperature scaling improves calibration most for LP-FT (largest MCE gain)",
    7: "LoRA's FT-effective kernel is close to a scalar multiple of FT's",
}

#: the command that produces each claim's data (``TASK`` replaced by the task)
COMMANDS = {
    1: "lpft compare --task TASK --methods ft,lp-ft --seeds 1,2,3 (OOD: lpft evaluate RUN --ood SET)",
    2: "lpft compare --task TASK --methods ft,lp-ft,lora,lp-lora --seeds 1,2,3 (or lpft evaluate RUN)",
    3: "lpft compare --task TASK --methods ft,lp-ft --seeds 1,2,3",
    4: "lpft ntk --task TASK --method M --seed S --n-train 250 for M in ft, lp-ft, lora, lp-lora and S in 1, 2, 3",
    "5-adamw": "lpft norm-sweep --task TASK --methods ft,lp-ft --seeds 1,2,3 --norms 0.1,1,5,10,100",
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


#: what a damaged or foreign file under --out raises when read: it is skipped with a note, never a traceback
#: (UnicodeDecodeError and json's errors are ValueErrors; RunFolderError a DataError)
DAMAGE = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, DataError)


def skipped(path: Path, err: BaseException) -> None:
    """One line on stderr naming a file or folder the claims could not use (stdout holds the results)."""
    text = str(err).splitlines()[0] if str(err) else ""
    tqdm.write(f"lpft claims: skipped {path}: {type(err).__name__}{': ' + text if text else ''}", file=sys.stderr)


def find_runs(out: Path) -> list[RunRecord]:
    """Every finished run folder under ``out`` (a folder with ``metrics.json`` and a run's ``config.json``)."""
    found = []
    for p in sorted(out.rglob("metrics.json")):
        config = p.parent / "config.json"
        try:
            if config.is_file() and "config" in json.loads(config.read_text()):
                record = RunRecord(p.parent)
                cfg = record.config
                heads = ["init"] + ["lp"] * cfg.uses_lp + ["start", "ft"] * (cfg.method != "lp")
                for stage in dict.fromkeys(heads + [p.stem for p in (record.path / "heads").glob("*.safetensors")]):
                    record.head(stage)  # the method's heads, and no other method's (config.json edited?)
                found.append(record)
        except DAMAGE as err:  # e.g. written by another lpft version, or edited
            skipped(p.parent, err)
    return found


def _config(record: RunRecord) -> dict:
    return dataclasses.asdict(record.config)


def _readable_csvs(out: Path, pattern: str):
    """(path, rows) of every CSV under ``out`` matching ``pattern``; a damaged one is skipped with its one-line note."""
    for path in sorted(out.rglob(pattern)):
        try:
            rows = _read_csv(path)
        except DAMAGE as err:
            skipped(path, err)
            continue
        yield path, rows


def feature_rows(out: Path) -> dict[str, dict]:
    """resolved run folder -> {diff, cs, ood: {set: metric fraction}} from compare reports and evaluate folders."""
    found: dict[str, dict] = {}
    for path, rows in _readable_csvs(out, "runs.csv"):
        if (path.parent / "claims.md").exists():  # an earlier claims report: our own output, not a source
            continue
        for row in rows:
            if row.get("folder") and row.get("diff") not in (None, ""):
                entry = found.setdefault(str(resolve_shown(row["folder"], path)), {})
                entry.update({"diff": _float(row["diff"]), "cs": _float(row.get("cs")),
                              "pretrained_cs": _float(row.get("pretrained_cs"))})
    for path, rows in _readable_csvs(out, "ood_runs.csv"):  # compare / study reports with OOD sets
        for row in rows:
            if row.get("folder") and row.get("role") == "OOD":
                found.setdefault(str(resolve_shown(row["folder"], path)), {}).setdefault("ood_rows", []).append(row)
    for path, rows in _readable_csvs(out, "evaluation/evaluation.csv"):
        entry = found.setdefault(str(path.parent.parent.resolve()), {})
        for row in rows:
            if row.get("role") == "ID":
                entry.update({"diff": _float(row.get("diff")), "cs": _float(row.get("cs"))})
            elif row.get("role") == "OOD":
                entry.setdefault("ood_rows", []).append(row)
    return found


def _majority_rate(metrics: list[str], labels: np.ndarray, num_labels: int) -> float:
    """The primary metric (points) of predicting the majority class of ``labels`` for every example."""
    from ..data import compute_metrics

    counts = np.bincount(labels, minlength=num_labels)
    return 100 * compute_metrics(metrics[:1], labels, np.full(len(labels), int(counts.argmax())))[metrics[0]]


def _mce_bin(logits, labels, temperature: float = 1.0) -> int:
    """Test examples in the bin the MCE comes from (rules v2 marks MCEs from bins of fewer than 5)."""
    from scipy.special import softmax

    from ..analysis.calibration import reliability_bins

    counts, acc, conf = reliability_bins(softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1), labels)
    gaps = np.where(counts > 0, np.abs(acc - conf), -1.0)
    return int(counts[int(gaps.argmax())])


def _split_size(cfg, split: str, data_dir, sizes: dict) -> int | None:
    """The whole split's size (before any subset), once per task; None where the data cannot be read."""
    from ..data import DataError
    from ..runs import load_task

    key = (cfg.task, cfg.train_file, cfg.validation_file, cfg.test_file, split)
    if key not in sizes:
        try:
            sizes[key] = len(load_task(cfg, data_dir).load(split))
        except (DataError, OSError, ValueError):
            sizes[key] = None
    return sizes[key]


def _feature_extras(record: RunRecord, data_dir, cache_dir) -> dict:
    """Rules-v2 extras that need the test features: Diff / CS at the last epoch and mean ‖φ‖ before and after.
    Empty where the data cannot be read (``lpft claims`` without --data-dir on a machine without the data)."""
    from ..analysis.features import cosine_similarity_mean, feature_difference
    from ..analysis.run_features import run_features, run_split
    from ..data import DataError
    from ..errors import ModelError

    try:
        test = run_split(record, "test", data_dir)
        phi0 = run_features(record, test, "pretrained", cache_dir)
        phi = run_features(record, test, "trained", cache_dir)
    except (DataError, ModelError, OSError) as err:
        tqdm.write(f"lpft claims: no feature extras for {shown_path(record.path)}: {err}")
        return {}
    out = {"phi_norm_pre": float(np.linalg.norm(phi0, axis=1).mean()),
           "phi_norm_end": float(np.linalg.norm(phi, axis=1).mean())}
    last = record.path / LAST_EPOCH_FEATURES
    if last.is_file():
        from ..io import load_array

        phi_last = load_array(last)
        if phi_last.shape == phi0.shape:
            out.update({"diff_last": feature_difference(phi_last, phi0), "cs_last": cosine_similarity_mean(phi_last)})
    return out


def run_rows(records: list[RunRecord], labeller: Labeller, features: dict[str, dict], data_dir=None,
             cache_dir=None, feature_extras: bool = True) -> list[dict]:
    """One row per non-sweep run in the units of :mod:`lpft.analysis.claims` (metrics in points)."""
    from ..analysis.calibration import calibration_report
    from ..analysis.run_features import final_head

    rows, sizes = [], {}
    for record in tqdm(records, desc="claims: runs", unit="run", disable=len(records) < 10):
        cfg = _config(record)
        if cfg.get("head_norm") is not None or cfg.get("head_scale") is not None:
            continue
        metrics = record.data["metrics"]
        primary = metrics[0]
        row = {"task": labeller.label(cfg), "method": cfg["method"], "seed": cfg["seed"],
               "test_metric": 100 * record.metrics["test"][primary], "folder": str(record.path)}
        for stage in ("init", "lp", "start"):
            if (record.path / "heads" / f"{stage}.safetensors").is_file():
                row[f"norm_{stage}"] = float(np.linalg.norm(record.head(stage)[0]))
        row["norm_end"] = float(np.linalg.norm(final_head(record)[0]))
        if (record.path / "logits").is_dir():
            test_logits, test_labels = record.logits("test")
            row["one_class"] = len(np.unique(np.asarray(test_logits).argmax(axis=1))) == 1
            row["majority"] = _majority_rate(metrics, np.asarray(test_labels, dtype=np.int64),
                                             np.asarray(test_logits).shape[1])
            if cfg["method"] != "lp":
                val_logits, val_labels = record.logits("validation")
                cal = calibration_report(val_logits, val_labels, test_logits, test_labels)
                for k in ("mce", "ece"):
                    row[f"{k}_before"], row[f"{k}_after"] = 100 * cal[f"{k}_before"], 100 * cal[f"{k}_after"]
                row["mce_bin_before"] = _mce_bin(test_logits, test_labels)
                row["mce_bin_after"] = _mce_bin(test_logits, test_labels, cal["temperature"])
                row["n_validation"] = len(val_labels)
                row["validation_available"] = _split_size(record.config, "validation", data_dir, sizes)
        extra = features.get(str(record.path.resolve()), {})
        row["diff"], row["cs"] = extra.get("diff"), extra.get("cs")
        row["pretrained_cs"] = extra.get("pretrained_cs")
        if feature_extras and cfg["method"] != "lp":
            row.update(_feature_extras(record, data_dir, cache_dir))
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
        try:
            config = json.loads(settings_path.read_text()).get("config", {})
            mine = []
            for r in _read_csv(path):
                key = str(resolve_shown(r.get("folder", ""), path))
                mine.append((key, {"task": config.get("task", "?"), "method": r["method"], "seed": int(r["seed"]),
                                   "start_norm": float(r["start_norm"]), "change": float(r["diff"])}))
        except DAMAGE as err:
            skipped(path.parent, err)
            continue
        for key, row in mine:
            if key in seen:  # the same run in two sweep reports
                continue
            seen.add(key)
            rows.append(row)
    return rows


def ntk_folders(out: Path) -> list[tuple[Path, dict]]:
    """(folder, stats) of every finished ``lpft ntk`` folder under ``out``."""
    found = []
    for path in sorted(out.rglob("stats.json")):
        try:
            stats = json.loads(path.read_text())
            if not (isinstance(stats, dict) and "ft_ratio" in stats and "kernels" in stats):
                continue
            ntk_rows([(path.parent, stats)]), sgd_rows([(path.parent, stats)]), _ntk_key(stats)  # readable?
        except DAMAGE as err:
            skipped(path, err)
            continue
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
             "rank_P": s["kernels"]["P"]["rank"], "rank_F": s["kernels"]["F"]["rank"], "folder": str(f),
             "num_labels": s.get("num_labels"), "n_train": s.get("n_train"),
             "train_available": s.get("train_split_size")}
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
            C_ = json.loads((f_ft / "stats.json").read_text())["num_labels"]
            qv = f_ft / "F_qv_train.npy"  # F_FT over the weights LoRA adapts (Prop. 4.4), where lpft ntk saved it
            if qv.is_file():
                row = C.kernel_pair_row(key[0], seed, F_a, np.load(qv), P_b, C_, F_ft_whole=F_b,
                                        ft_part="query,value")
            else:
                row = C.kernel_pair_row(key[0], seed, F_a, F_b, P_b, C_, ft_part="whole model (no F_qv_train.npy)")
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
        res.update({"seed": cfg["seed"], "folder": shown_path(record.path),
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
    runs = run_rows(records, labeller, features, data_dir, cache_dir)
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
                if s.interval.n > 0:
                    stats.append(s.row())
                    continue
                empty = _no_data(claim, s.task, s.name, names_if_empty[0][1])
                stats.append({**empty, "paper": s.paper, "decides": s.decides,
                              "note": f"{s.note}; {empty['note']}" if s.note else empty["note"]})
        for task in all_tasks:
            if task not in have:
                stats.extend(_no_data(claim, task, name, key) for name, key in names_if_empty)

    gates = C.gate(runs)  # rules v2: degenerate task x method -> why

    def gated(results):
        return C.apply_gate(results, gates)

    edge = {t: r["chosen_C"] for t, r in path_results.items() if r.get("chosen_C") is not None
            and r.get("path") and r["chosen_C"] in (r["path"][0]["C"], r["path"][-1]["C"])}
    add(1, gated(C.claim1(runs, paper.TABLE8)), [("LP-FT − FT test metric (points), ID", 1)])
    add(2, gated(C.claim2(runs, paper.TABLE1)), [("Diff(F) / CS(F) of FT, LP-FT, LoRA, LP-LoRA", 2)])
    add(3, gated(C.claim3(runs, paper.TABLE1, edge)), [("log2 Norm(C) growth, LP − FT", 3)])
    add(4, gated(C.claim4(ntk, getattr(paper, "TABLE2", {}))), [("FT ratio and ranks from the eNTK", 4)])
    adamw, curves_adamw = C.claim5(sweeps, "AdamW")
    sgd_stats, curves_sgd = C.claim5(sgd, "SGD", decides=False)  # rules v2: a diagnostic, never the verdict
    add(5, gated(adamw), [("Spearman rho under AdamW (norm sweep)", "5-adamw")])
    if sgd_stats:
        add(5, sgd_stats, [("Spearman rho under SGD (eNTK real SGD epoch)", "5-sgd")])
    add(6, gated(C.claim6(runs, paper.TABLE3)), [("MCE gain LP-FT − best other", 6)])
    lora_pairs = [p for p in pairs if p["pair"] == "lora vs ft"]
    add(7, gated(C.claim7(lora_pairs)), [("centred scalar-fit residual, F_LoRA vs F_FT and a permuted F_FT", 7)])
    return {"stats": stats, "runs": runs, "ntk": ntk, "sweeps": sweeps, "sgd": sgd,
            "curves": curves_adamw + curves_sgd, "pairs": pairs, "lp_path_rows": path_rows,
            "lp_paths": path_results, "tasks": all_tasks, "gates": gates}


def claim_verdicts(stats: list[dict]) -> dict[tuple[int, str], str]:
    """(claim, task) -> the claim's verdict on that task (``analysis.claims.combine`` of its statistics; shown
    statistics carry the verdict "shown, no verdict", which combine ignores)."""
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
    shown_out = ", ".join(shown_path(p) for p in out) if isinstance(out, (list, tuple)) else (
        shown_path(out) if isinstance(out, Path) or Path(str(out)).exists() else str(out))
    with report_folder(final) as folder:
        write_csv(folder / "claims.csv", stats)
        if result["runs"]:
            write_csv(folder / "runs.csv", [{**{k: v for k, v in r.items() if k != "ood"},
                                             "folder": shown_path(r["folder"]),
                                             **{f"ood_{k}": v for k, v in r["ood"].items()}} for r in result["runs"]])
        gates = result.get("gates") or {}
        md = ["# The paper's seven claims", "",
              f"Read from `{shown_out}`: {len(result['runs'])} runs, {len(result['sweeps'])} norm-sweep points, "
              f"{len(result['ntk']) + len(result['sgd'])} eNTK folders. Each statistic: mean over seeds of the "
              "per-seed paired difference with its 95 % Student-t interval; verdict rules v2 of `docs/claims.md` "
              "(2026-12-06, revised after the v1 results; v1 kept there): holds / fails / inconclusive, "
              "**uninformative** where a statistic rests on a degenerate task × method, and statistics "
              "**shown** beside the deciding ones without a verdict. The paper's numbers (RoBERTa-base, 15 seeds) "
              "are context, not part of the rule.", "",
              "## Verdicts", "", verdict_table(result), ""]
        if gates:
            md += ["## Uninformative task × method (rules v2)", "",
                   "Test predictions of one class on every seed, or a metric within 1 point of the majority rate "
                   "(the metric of predicting the majority class) on every seed: no statistic that uses them "
                   "decides a claim.", "",
                   markdown_table(["task", "method", "why"], [[t, m.upper(), why] for (t, m), why in gates.items()]),
                   ""]
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
                write_csv(folder / "kernel_pairs.csv", [{**p, "folder_a": shown_path(p["folder_a"]),
                                                         "folder_b": shown_path(p["folder_b"])}
                                                        for p in result["pairs"]])
                md += ["Centred kernels (the samples' common mode removed). F_FT is restricted to the weights LoRA "
                       "adapts (query, value; Prop. 4.4) where the eNTK folder has `F_qv_train.npy`, else the whole "
                       "model (the `F_FT over` column says which). Baseline of the verdict: F_FT with its samples "
                       "permuted (same spectrum, pairing lost, so it cannot be close by construction).", "",
                       markdown_table(["task", "seed", "pair", "F_FT over", "residual", "permuted residual",
                                       "residual vs whole F_FT", "spectrum gap", "v1 baseline residual (F_FT vs P)",
                                       "v1 baseline gap"],
                                      [[p["task"], str(p["seed"]), p["pair"], p.get("ft_part", ""),
                                        fmt_number(p["residual"]), fmt_number(p.get("permuted_residual")),
                                        fmt_number(p.get("residual_whole")), fmt_number(p["gap"]),
                                        fmt_number(p["baseline_residual"]), fmt_number(p["baseline_gap"])]
                                       for p in result["pairs"]]), ""]
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
        for (task, method, _seed), pts in curves.items():
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
