"""The seven claims tested on collected rows: statistics, gates and one verdict per claim and task.

:func:`compute` collects rows (:mod:`lpft.claims.collect`), applies the rules of :mod:`lpft.claims.rules` (v2,
``docs/claims.md``) and returns everything the report shows as plain rows (:class:`ClaimsResult`); a claim without
data gets a "no data" statistic naming the command that would produce it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from ..report import paper
from . import rules as C
from .collect import (
    Labeller,
    RunFeatures,
    _config,
    analysis_calibrations,
    analysis_features,
    feature_rows,
    find_runs,
    kernel_pairs,
    lp_paths,
    ntk_folders,
    ntk_rows,
    run_rows,
    sgd_rows,
    study_sweep_rows,
    sweep_rows,
)

if TYPE_CHECKING:
    from ..analysis.compare import TaskAnalysis

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


class ClaimsResult(TypedDict):
    """:func:`compute`'s result: every table of the claims report as rows.

    ``stats``: one row per statistic (claims.csv); ``runs``: the per-run rows used; ``ntk`` / ``sgd`` / ``sweeps``:
    eNTK rows, claim-5 SGD and AdamW points; ``curves``: claim 5's per-seed monotonicity; ``pairs``: claim 7's
    kernel pairs; ``lp_path_rows`` / ``lp_paths``: claim 3's LP norm path (CSV rows, task label -> result);
    ``tasks``: the task labels in order; ``gates``: (task, method) -> why it is uninformative.
    """

    stats: list[dict]
    runs: list[dict]
    ntk: list[dict]
    sweeps: list[dict]
    sgd: list[dict]
    curves: list[dict]
    pairs: list[dict]
    lp_path_rows: list[dict]
    lp_paths: dict[str, C.LpNormPath]
    tasks: list[str]
    gates: dict[tuple[str, str], str]


def _no_data(claim, task: str, name: str, command_key) -> dict:
    return {"claim": claim, "task": task, "statistic": name, "n": 0, "mean": None, "ci_low": None, "ci_high": None,
            "rule": "", "verdict": C.NO_DATA, "paper": "",
            "seeds": "", "note": f"run: {COMMANDS[command_key].replace('TASK', task.split(' ')[0])}"}


def compute(out: Path | Sequence[Path], tasks: list[str] | None = None, data_dir=None, cache_dir=None,
            lp_path: bool = True, gd_steps: int = 2000, analyses: Sequence[TaskAnalysis] = (),
            sweeps: dict[str, dict] | None = None) -> ClaimsResult:
    """Test the seven claims on what is under ``out`` and on the objects a study hands over.

    Args:
        out: one folder or several to collect runs, eNTK folders and earlier reports from (a study passes its own
            run and eNTK folders, so nothing else under its --out mixes in).
        tasks: only these tasks (all when None).
        data_dir, cache_dir: where the runs' data and feature caches are (features for claims 2, 3 and 5).
        lp_path, gd_steps: compute claim 3's LP norm path, with this many gradient-descent steps.
        analyses: a study's task analyses: their feature statistics, OOD rows and calibrations are used as they
            are instead of reading back the report files written from them.
        sweeps: a study's norm sweeps (task -> {"rows", "settings", ...}), used instead of their sweep.csv.

    Returns:
        The :class:`ClaimsResult` that :func:`lpft.claims.render.write_report` renders.
    """
    roots = [Path(out)] if isinstance(out, (str, Path)) else [Path(p) for p in out]
    records = list({str(r.path.resolve()): r for root in roots for r in find_runs(root)}.values())
    if tasks:
        records = [r for r in records if _config(r)["task"] in tasks]
    labeller = Labeller()
    for r in records:
        if _config(r).get("head_norm") is None and _config(r).get("head_scale") is None:
            labeller.add(_config(r))
    features: dict[str, RunFeatures] = {}
    for source in [feature_rows(root) for root in roots] + [analysis_features(analyses)]:  # a study's analyses last
        for folder, entry in source.items():  # later statistics replace earlier ones; OOD rows accumulate
            merged = features.setdefault(folder, {})
            ood_rows = merged.get("ood_rows", []) + entry.get("ood_rows", [])
            merged.update(entry)
            merged["ood_rows"] = ood_rows
    runs = run_rows(records, labeller, features, data_dir, cache_dir, calibrations=analysis_calibrations(analyses))
    found = {str(f.resolve()): (f, s) for root in roots for f, s in ntk_folders(root)}
    folders = [(f, s) for f, s in found.values() if not tasks or s["task"] in tasks]
    points = {(r["task"], r["method"], r["seed"], r["start_norm"]): r
              for rows in [sweep_rows(root) for root in roots] + [study_sweep_rows(sweeps or {})] for r in rows}
    sweep_points = [r for r in points.values() if not tasks or r["task"] in tasks]
    sgd = sgd_rows(folders)
    ntk = ntk_rows(folders)
    pairs = kernel_pairs(folders)
    path_rows, path_results = lp_paths(records, labeller, data_dir, cache_dir, gd_steps) if lp_path else ([], {})

    stats: list[dict] = []
    all_tasks = list(dict.fromkeys([r["task"] for r in runs] + [r["task"] for r in ntk]
                                   + [r["task"] for r in sweep_points] + [r["task"] for r in sgd] + list(tasks or [])))

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

    edge = {t: c for t, r in path_results.items() if (c := r.get("chosen_C")) is not None
            and r.get("path") and c in (r["path"][0]["C"], r["path"][-1]["C"])}
    add(1, gated(C.claim1(runs, paper.TABLE8)), [("LP-FT − FT test metric (points), ID", 1)])
    add(2, gated(C.claim2(runs, paper.TABLE1)), [("Diff(F) / CS(F) of FT, LP-FT, LoRA, LP-LoRA", 2)])
    add(3, gated(C.claim3(runs, paper.TABLE1, edge)), [("log2 Norm(C) growth, LP − FT", 3)])
    add(4, gated(C.claim4(ntk, getattr(paper, "TABLE2", {}))), [("FT ratio and ranks from the eNTK", 4)])
    adamw, curves_adamw = C.claim5(sweep_points, "AdamW")
    sgd_stats, curves_sgd = C.claim5(sgd, "SGD", decides=False)  # rules v2: a diagnostic, never the verdict
    add(5, gated(adamw), [("Spearman rho under AdamW (norm sweep)", "5-adamw")])
    if sgd_stats:
        add(5, sgd_stats, [("Spearman rho under SGD (eNTK real SGD epoch)", "5-sgd")])
    add(6, gated(C.claim6(runs, paper.TABLE3)), [("MCE gain LP-FT − best other", 6)])
    # both pairs: LoRA vs FT decides, LP-LoRA vs LP-FT is shown beside it (rules.claim7 keeps them apart)
    add(7, gated(C.claim7(pairs)), [("centred scalar-fit residual, F_LoRA vs F_FT and a permuted F_FT", 7)])
    return {"stats": stats, "runs": runs, "ntk": ntk, "sweeps": sweep_points, "sgd": sgd,
            "curves": curves_adamw + curves_sgd, "pairs": pairs, "lp_path_rows": path_rows,
            "lp_paths": path_results, "tasks": all_tasks, "gates": gates}


def claim_verdicts(stats: list[dict]) -> dict[tuple[int, str], str]:
    """(claim, task) -> the claim's verdict on that task (``rules.combine`` of its statistics; shown
    statistics carry the verdict "shown, no verdict", which combine ignores)."""
    out: dict[tuple[int, str], list[str]] = {}
    for s in stats:
        out.setdefault((s["claim"], s["task"]), []).append(s["verdict"])
    return {k: C.combine(v) for k, v in out.items()}
