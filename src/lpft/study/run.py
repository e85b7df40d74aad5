"""Run a study: plan it, hand its jobs to an executor, then have report/ render what the run folders hold."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..io import shown_path
from ..runs import RunRecord
from .executors import Executor, LocalExecutor
from .jobs import TrainJob
from .planning import Plan, plan
from .spec import StudySpec, Workspace


@dataclass
class StudyResult:
    plan: Plan
    report: Path | None = None
    folders: dict[str, Path] = field(default_factory=dict)  # job key -> folder
    reused: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    sweeps: dict[str, dict] = field(default_factory=dict)  # task -> rows, summary, mode, split, settings
    ntk: dict[str, list[Path]] = field(default_factory=dict)  # task -> eNTK folders


def execute(p: Plan, ws: Workspace, executor: Executor) -> tuple[dict[str, Path], dict[str, bool]]:
    """Run the plan's dependency graph; job key -> folder, and whether it was finished before."""
    jobs, deps = p.graph()
    reused = {job.key: job.done(ws) for job in jobs}
    folders = {job.key: Path(folder) for job, folder in zip(jobs, executor.run(jobs, ws, deps))}
    return folders, reused


def check_outputs(spec: StudySpec, ws: Workspace, layout: str = "study", report_option: str | None = None,
                  name: Callable[[str], str] | None = None) -> Workspace:
    """Before anything trains: the workspace checked (:meth:`Workspace.checked`: --out and the cache can be written,
    the data folder is one, the device known), and the report folder is new, empty or an lpft report, and neither
    is nor holds what the study reads or writes (its file, --out, the cache, the data). Returns the checked
    workspace. ``name``: how errors name a workspace field (default: the study file's key, or the option)."""
    from ..outputs import check_output_folder

    from_file = spec.source.lower().endswith(".toml")
    ws = ws.checked(name or (lambda field: f"{spec.source}: {field}" if from_file
                             else "--" + field.replace("_", "-")))
    if layout != "none" and spec.report is not None:
        reads = [ws.out] + ([spec.source] if from_file else []) + [p for p in (ws.data_dir,) if p] + \
            ([ws.cache_dir] if ws.cache_dir not in (None, "default") else [])
        option = report_option or (f"{spec.source}: report" if from_file else "--report")
        check_output_folder(spec.report, "report", option, reads)
    return ws


def run_study(study: StudySpec | Plan, ws: Workspace, executor: Executor | None = None, layout: str = "study"
              ) -> StudyResult:
    """Validate and plan everything (a :class:`Plan` is taken as given: it was planned already), run it, write the
    report.

    ``layout``: ``"study"`` (report folder with the cross-task table and a section per task), ``"compare"`` (one
    task's compare report, as `lpft compare --task`), ``"sweep"`` (one task's norm-sweep report), ``"none"``.
    """
    from ..analysis.compare import CompareSettings, RunSlot, analyse_task
    from ..analysis.sweep import summarise_sweep, sweep_rows
    from ..report.compare import write_compare_report
    from ..report.norm_sweep import write_sweep_report
    from ..report.study import write_study_report

    p = study if isinstance(study, Plan) else plan(study, ws.data_dir)
    spec = p.spec
    report = spec.report or Path(ws.out) / "study" / "report"
    if layout != "none":
        spec = dataclasses.replace(spec, report=report)
    ws = check_outputs(spec, ws, layout)
    started = time.perf_counter()
    folders, reused = execute(p, ws, executor or LocalExecutor())
    result = StudyResult(p, folders=folders, reused=reused)
    result.seconds["training"] = time.perf_counter() - started

    cache = ws.cache
    slots = {task: [RunSlot(s.method, s.seed, RunRecord(folders[TrainJob(s.config).key]),
                            reused[TrainJob(s.config).key]) for s in grid]
             for task, grid in p.compare.items()}
    s = spec.sweep
    if s is not None:  # (a plan has sweep runs only when its study has a sweep)
        for task, configs in p.sweep.items():
            records = [RunRecord(folders[TrainJob(c).key]) for c in configs]
            rows = sweep_rows(records, ws.data_dir, cache, ws.device, s.split)
            result.sweeps[task] = {
                "rows": rows, "summary": summarise_sweep(rows), "mode": s.mode, "split": s.split,
                "settings": {"mode": s.mode, "methods": [m.lower() for m in s.methods], "values": list(s.values),
                             "seeds": list(s.seeds or spec.seeds), "split": s.split,
                             "config": {k: v for k, v in dataclasses.asdict(configs[0]).items()
                                        if k not in ("method", "seed", "head_norm", "head_scale")}}}
    result.ntk = {task: [folders[j.key] for j in jobs] for task, jobs in p.ntk.items()}

    def settings(task: str) -> CompareSettings:
        return CompareSettings(split=spec.split, ood=spec.task(task).ood, tsne_samples=spec.tsne_samples,
                               gd_max_steps=spec.gd_max_steps, data_dir=ws.data_dir, cache=cache, device=ws.device)

    if layout == "compare":
        (task,) = slots
        result.seconds["total"] = time.perf_counter() - started  # before the analysis, as compare reports record it
        analysis = analyse_task(task, slots[task], settings(task))
        result.report = write_compare_report(report, analysis, result.seconds)
    elif layout == "sweep":
        (task,) = result.sweeps
        sw = result.sweeps[task]
        result.report = write_sweep_report(report, sw["rows"], sw["summary"], sw["mode"],
                                           spec.task(task).config.task, sw["split"], sw["settings"])
    elif layout == "study":
        analyses = [analyse_task(task, grid, settings(task)) for task, grid in slots.items()]
        result.seconds["total"] = time.perf_counter() - started
        info = {"source": spec.source, "tasks": [t.name for t in spec.tasks], "methods": list(spec.methods),
                "seeds": list(spec.seeds), "per_task": [a.info() for a in analyses],
                "norm_sweep": {t: sw["settings"] for t, sw in result.sweeps.items()},
                "ntk": {t: [shown_path(f) for f in fs] for t, fs in result.ntk.items()}, "seconds": result.seconds}
        claims = None
        if spec.claims:
            from ..claims import compute, study_section

            # only this study's folders, whatever else --out holds; its analyses and sweeps as objects, not as the
            # report files written from them
            verdicts = compute(list(folders.values()), data_dir=ws.data_dir, cache_dir=cache, analyses=analyses,
                               sweeps=result.sweeps)

            def claims(folder: Path) -> list[str]:
                return study_section(folder, verdicts)
        result.report = write_study_report(report, analyses, info, result.sweeps, result.ntk, claims)
    return result
