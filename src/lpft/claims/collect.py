"""Collecting what the claims are tested on: rows from the folders a study left, or from a study's own objects.

From folders (``lpft claims --out``; nothing is trained, see ``docs/claims.md`` for the rules):

- finished run folders (``metrics.json``): test metrics, head norms by stage, calibration (claims 1, 3, 6);
  runs made with ``--head-norm`` / ``--head-scale`` are norm-sweep points and only count for claim 5;
- per-run feature statistics from compare reports (``runs.csv``), their OOD metrics (``ood_runs.csv``) and
  ``lpft evaluate`` folders (``RUN/evaluation/evaluation.csv``, which also holds OOD metrics) (claims 1 OOD, 2);
- norm-sweep reports (``sweep.csv`` + ``settings.json``) (claim 5, AdamW);
- eNTK folders of ``lpft ntk`` (``stats.json``, ``F_train.npy``, ``P_train.npy``) (claims 4, 5 SGD, 7).

A study hands its :class:`~lpft.analysis.compare.TaskAnalysis` objects and norm sweeps instead of the report files
it wrote (:func:`analysis_features`, :func:`analysis_calibrations`, :func:`study_sweep_rows`); its run and eNTK
folders are still read here.

Runs are grouped by task and *setting* (the config without method, seed, batch size, learning rate and head
rescaling): methods are paired only within a setting. A task with several settings gets one label per setting,
e.g. ``cb (epochs=3)``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np
from tqdm.auto import tqdm

from ..data.base import DataError
from ..io import resolve_shown, shown_path
from ..methods.config import FT_ONLY_FIELDS
from ..runs import LAST_EPOCH_FEATURES, RunRecord
from . import rules as C

if TYPE_CHECKING:
    from ..analysis.calibration import CalibrationReport
    from ..analysis.compare import TaskAnalysis

# config fields that may differ between the methods of one comparison (Table 6 sets them per method)
PER_RUN_FIELDS = ("method", "seed", "batch_size", "lr", "head_norm", "head_scale")


def _setting(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in PER_RUN_FIELDS}


class Labeller:
    """Task labels: the task name, plus the fields that differ where a task was run with several settings."""

    def __init__(self):
        self.settings: dict[str, list[dict]] = {}

    def add(self, config: dict) -> None:
        """Record a run's setting (LP runs serve the settings they match and add none)."""
        if config["method"] == "lp":  # seed- and schedule-free: it serves the settings it matches (label)
            return
        group = self.settings.setdefault(config["task"], [])
        if _setting(config) not in group:
            group.append(_setting(config))

    def label(self, config: dict) -> str:
        """The run's task label: the task, plus ``(field=value, ...)`` where its task was run with several settings."""
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


class RunFeatures(TypedDict, total=False):
    """What reports and evaluate folders say about one run's features: Diff(F), CS(F), the pre-trained CS(F), and
    its OOD rows (one per OOD set, with the primary metric)."""

    diff: float | None
    cs: float | None
    pretrained_cs: float | None
    ood_rows: list[dict]


def feature_rows(out: Path) -> dict[str, RunFeatures]:
    """resolved run folder -> {diff, cs, ood: {set: metric fraction}} from compare reports and evaluate folders."""
    found: dict[str, RunFeatures] = {}
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


def run_rows(records: list[RunRecord], labeller: Labeller, features: dict[str, RunFeatures], data_dir=None,
             cache_dir=None, feature_extras: bool = True, calibrations: dict[str, CalibrationReport] | None = None
             ) -> list[dict]:
    """One row per non-sweep run in the units of :mod:`lpft.claims.rules` (metrics in points).

    ``features``: resolved run folder -> feature statistics and OOD rows (:func:`feature_rows`,
    :func:`analysis_features`); ``calibrations``: resolved run folder -> its calibration when already fitted (a
    study's :class:`~lpft.analysis.compare.TaskAnalysis`), so that T is fitted once per run.
    """
    from ..analysis.calibration import calibration_report
    from ..analysis.run_features import final_head

    rows: list[dict] = []
    sizes: dict[tuple, int | None] = {}
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
                cal = (calibrations or {}).get(str(record.path.resolve())) or calibration_report(
                    val_logits, val_labels, test_logits, test_labels)
                row["mce_before"], row["mce_after"] = 100 * cal["mce_before"], 100 * cal["mce_after"]
                row["ece_before"], row["ece_after"] = 100 * cal["ece_before"], 100 * cal["ece_after"]
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


def study_sweep_rows(sweeps: dict[str, dict]) -> list[dict]:
    """Claim-5 AdamW points from a study's norm sweeps as it holds them (task -> {"rows", "settings", ...}: what it
    writes to ``<task>/norm-sweep/``), in the order :func:`sweep_rows` reads those folders back (by task name)."""
    rows, seen = [], set()
    for task in sorted(sweeps):
        sw = sweeps[task]
        config = sw["settings"].get("config", {})
        for r in sw["rows"]:
            if r.get("folder", "") in seen:  # the same run in two sweeps (folders are named one way per machine)
                continue
            seen.add(r.get("folder", ""))
            rows.append({"task": config.get("task", "?"), "method": r["method"], "seed": int(r["seed"]),
                         "start_norm": float(r["start_norm"]), "change": float(r["diff"])})
    return rows


def analysis_features(analyses: Sequence[TaskAnalysis]) -> dict[str, RunFeatures]:
    """resolved run folder -> {diff, cs, pretrained_cs, ood_rows} from a study's task analyses: what
    :func:`feature_rows` reads back from their ``runs.csv`` and ``ood_runs.csv``, without the files."""
    found: dict[str, RunFeatures] = {}
    for a in analyses:
        for slot, row in zip(a.slots, a.rows):
            if row.get("diff") is not None:
                found.setdefault(str(slot.record.path.resolve()), {}).update(
                    {"diff": _float(row["diff"]), "cs": _float(row.get("cs")),
                     "pretrained_cs": _float(row.get("pretrained_cs"))})
    for a in analyses:
        folders = {shown_path(s.record.path): str(s.record.path.resolve()) for s in a.slots}
        for row in a.ood_rows:
            if row.get("role") == "OOD":
                found.setdefault(folders[row["folder"]], {}).setdefault("ood_rows", []).append(row)
    return found


def analysis_calibrations(analyses: Sequence[TaskAnalysis]) -> dict[str, CalibrationReport]:
    """resolved run folder -> the calibration its task analysis fitted."""
    return {str(Path(folder).resolve()): cal.report for a in analyses for folder, cal in a.calibrations.items()}


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
    """Claim-4 rows of the unscaled eNTK folders: FT ratio, ranks of P and F, and what caps the ranks."""
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


def lp_paths(records: list[RunRecord], labeller: Labeller, data_dir, cache_dir, gd_steps: int
             ) -> tuple[list[dict], dict[str, C.LpNormPath]]:
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
