"""The per-task analysis behind a compare report: every number, bin and coordinate it shows, computed once.

A task's runs fill a methods × seeds grid (:class:`RunSlot`; LP's seed-free run fills the LP cell of every seed).
:func:`analyse_task` reads each distinct run folder once and returns one :class:`TaskAnalysis`: the per-slot rows
(metrics, feature statistics, head norms, calibration), the calibration of each run fitted once (its temperature,
the table's ECE / MCE / NLL and the reliability bins all come from that one fit), LP by gradient descent, the OOD
rows, and the t-SNE coordinates. :mod:`lpft.report.compare` only renders this object; :mod:`lpft.claims` reuses
its rows and calibrations instead of reading back the CSV files the report wrote.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import softmax

from ..io import shown_path
from ..methods.config import RunConfig
from .calibration import CalibrationReport, calibration_report, reliability_bins
from .tsne import TsnePanel, embed_with_head

if TYPE_CHECKING:  # the classes below are plain data: building or rendering one needs no torch
    from ..runs import RunRecord


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


@dataclass
class RunCalibration:
    """One run's temperature scaling, fitted once on its validation logits.

    ``report`` is :func:`~lpft.analysis.calibration.calibration_report` (T and the test ECE / MCE / NLL before and
    after); ``probs_before`` / ``probs_after`` are the test probabilities at T = 1 and at the fitted T, from which
    the reliability bins and diagrams are drawn.
    """

    method: str
    seed: int
    report: CalibrationReport
    labels: np.ndarray
    probs_before: np.ndarray
    probs_after: np.ndarray

    @property
    def temperature(self) -> float:
        """The fitted T."""
        return self.report["temperature"]

    def bins(self) -> list[dict]:
        """reliability.csv rows: per scaling (before / after) and bin, the count, accuracy and mean confidence."""
        rows = []
        for scaling, p in (("before", self.probs_before), ("after", self.probs_after)):
            for b, (n, acc, conf) in enumerate(zip(*reliability_bins(p, self.labels))):
                rows.append({"method": self.method, "seed": self.seed, "scaling": scaling, "bin": b, "count": int(n),
                             "accuracy": acc, "confidence": conf})
        return rows


def run_calibration(record: RunRecord) -> RunCalibration:
    """Fit T on the run's validation logits once; test calibration before and after, and the test probabilities."""
    z_test, y_test = record.logits("test")
    report = calibration_report(*record.logits("validation"), z_test, y_test)
    T = report["temperature"]
    return RunCalibration(record.config.method, record.config.seed, report, y_test, softmax(z_test, axis=1),
                          softmax(z_test / T, axis=1))


@dataclass
class TaskAnalysis:
    """Everything a task's report shows, computed from its run folders (see the module docstring).

    Plain data: the report renders it without opening a run folder. ``rows``: one per grid slot (the report's
    runs.csv); ``calibrations``: run folder -> its :class:`RunCalibration`, in grid order; ``gd``: LP by gradient
    descent per seed (:func:`lpft.analysis.dynamics.lp_dynamics` plus the seed); ``ood_rows``: one per slot and OOD
    set; ``tsne``: the first seed's embedded panels; ``steps``: (method, seed, steps.json) of each run that logged
    optimisation steps; ``config``: the grid's fine-tuning configuration (LP's carries no schedule); ``splits``:
    split -> {"size": ...} as recorded by the first run. ``slots`` (with their runs) are kept for callers that go on
    to other analyses (the claims); rendering does not use them.
    """

    task: str
    settings: CompareSettings
    config: RunConfig
    methods: list[str]
    seeds: list[int]
    metric_names: list[str]  # the first is the primary metric
    splits: dict
    rows: list[dict]
    gd: list[dict] = field(default_factory=list)
    ood_rows: list[dict] = field(default_factory=list)
    calibrations: dict[str, RunCalibration] = field(default_factory=dict)
    tsne: list[TsnePanel] = field(default_factory=list)
    steps: list[tuple[str, int, list[dict]]] = field(default_factory=list)
    slots: list[RunSlot] = field(default_factory=list)

    def info(self, seconds: dict | None = None) -> dict:
        """The task's study.json: settings, the grid's configuration, run folders and timings."""
        return {"task": self.task, "methods": self.methods, "seeds": self.seeds, "split": self.settings.split,
                "ood": list(self.settings.ood),
                "config": {k: v for k, v in dataclasses.asdict(self.config).items() if k not in ("method", "seed")},
                "runs": [{"method": r["method"], "seed": r["seed"], "folder": r["folder"], "reused": r["reused"]}
                         for r in self.rows],
                "seconds": seconds or {}}


def _collect(record: RunRecord, calibration: RunCalibration, settings: CompareSettings) -> dict:
    """Every per-run number of the report, read from the run folder (features computed once and cached there)."""
    from ..runs import HEAD_STAGES
    from .run_features import final_head, run_split, table1_statistics

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
    row.update(calibration.report)
    row["folder"] = shown_path(record.path)  # relative to the repository: committed reports carry no machine paths
    return row


def analyse_task(task: str, slots: list[RunSlot], settings: CompareSettings) -> TaskAnalysis:
    """Analyse one task's grid: each distinct run once (rows, calibration), LP by gradient descent per seed, the OOD
    sets, and the t-SNE panels of the first seed.

    Args:
        task: the report's name for the task.
        slots: the grid's cells in order, each with its finished run.
        settings: which split, OOD sets, t-SNE size and GD step cap to use, and where data, cache and device are.

    Returns:
        The :class:`TaskAnalysis` that :func:`lpft.report.compare.write_task_files` renders.
    """
    from tqdm.auto import tqdm

    from .ood import evaluate_ood

    records = list({str(s.record.path): s.record for s in slots}.values())
    calibrations = {str(r.path): run_calibration(r) for r in records}
    per_run = {str(r.path): _collect(r, calibrations[str(r.path)], settings)
               for r in tqdm(records, desc=f"analyse {task} runs", unit="run")}
    rows = [{**per_run[str(s.record.path)], "method": s.method, "seed": s.seed, "reused": s.reused} for s in slots]
    gd = _lp_gradient_descent(records, settings)
    ood_rows = []
    for record in (tqdm(records, desc="OOD evaluation", unit="run") if settings.ood else ()):
        for r in evaluate_ood(record, list(settings.ood), settings.data_dir, settings.cache, device=settings.device):
            for slot in (s for s in slots if s.record.path == record.path):
                ood_rows.append({"method": slot.method, "seed": slot.seed, "folder": shown_path(record.path), **r})
    methods = list(dict.fromkeys(s.method for s in slots))
    seeds = list(dict.fromkeys(s.seed for s in slots))
    config = next((s.record.config for s in slots if s.method != "lp"), slots[0].record.config)
    return TaskAnalysis(task, settings, config, methods, seeds, list(records[0].data["metrics"]),
                        records[0].data.get("splits", {}), rows, gd, ood_rows, calibrations,
                        _tsne_panels(records, methods, seeds[0], settings),
                        [(r.config.method, r.config.seed, r.steps) for r in records if r.steps], slots)


def _lp_gradient_descent(records: list[RunRecord], settings: CompareSettings) -> list[dict]:
    """LP by gradient descent once per seed, from that seed's first run with an LP stage."""
    from .dynamics import lp_dynamics

    out, done = [], set()
    for record in records:
        seed = record.config.seed
        if record.config.uses_lp and seed not in done:
            done.add(seed)
            result = lp_dynamics(record, settings.data_dir, settings.cache, max_steps=settings.gd_max_steps)
            out.append({"seed": seed, **result})
    return out


def _tsne_panels(records: list[RunRecord], methods: list[str], seed: int, settings: CompareSettings
                 ) -> list[TsnePanel]:
    """Pre-trained features (with the LP head when LP ran, else the initial head) and each fine-tuned model's
    features with its final head, on the first ``tsne_samples`` examples of the split, for the first seed."""
    from .run_features import final_head, run_features, run_split

    runs = {r.config.method: r for r in records if r.config.seed == seed or r.config.method == "lp"}
    any_run = next(iter(runs.values()))
    eval_set = run_split(any_run, settings.split, settings.data_dir)
    keep = slice(0, settings.tsne_samples)
    labels, names = eval_set.labels[keep], any_run.data["labels"]
    lp_run = next((r for r in runs.values() if r.config.uses_lp), None)
    pre_head = lp_run.head("lp")[0] if lp_run else any_run.head("init")[0]
    inputs: list[tuple[str | None, str, np.ndarray, np.ndarray]] = [(None, "LP" if lp_run else "initial",
               run_features(any_run, eval_set, "pretrained", settings.cache, device=settings.device)[keep], pre_head)]
    for m in methods:
        if m != "lp" and m in runs:
            phi = run_features(runs[m], eval_set, "trained", settings.cache, device=settings.device)[keep]
            inputs.append((m, "final", phi, final_head(runs[m])[0]))
    panels = []
    for method, head_name, feats, head in inputs:
        points, head_points = embed_with_head(feats, head)
        panels.append(TsnePanel(points, head_points, np.asarray(labels), list(names), method, head_name))
    return panels
