"""The multi-task study report: a cross-task table shaped like the paper's Table 8 and a section per task.

Layout of the report folder (replaced whole when finished)::

    report.md            the cross-task table (rows: tasks, columns: methods, test metric mean ± std over seeds),
                         the paper's RoBERTa-base numbers where the task matches, then one section per task
    table8.csv           the cross-task table: task, metric, method, mean, std, n
    <task>/              that task's full compare report (report.md, CSV files, figures; see report/compare.py)
    <task>/norm-sweep/   its norm sweep, when the study has one (report/norm_sweep.py)
    ntk.csv              one row per eNTK: task, method, seed, head norm, ranks, Frobenius norms, FT ratio, folder
    claims/              the seven claims tested on this study's runs (lpft.claims), when the study asks
    study.json           the study's settings, run folders and timings
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..io import read_json, shown_path, write_json
from . import paper
from .compare import LABEL, write_task_files
from .norm_sweep import write_sweep_files
from .output import report_folder
from .tables import DASH, fmt_mean_std, fmt_number, fmt_percent, markdown_table, mean_std, write_csv

if TYPE_CHECKING:  # the analysis imports torch; rendering only reads the objects it is handed
    from ..analysis.compare import TaskAnalysis


def table8_rows(analyses: list[TaskAnalysis]) -> list[dict]:
    """task, metric, method, mean, std, n of the test primary metric, for every task and method."""
    out = []
    for a in analyses:
        primary = a.metric_names[0]
        for method in a.methods:
            mean, std, n = mean_std(r[f"test_{primary}"] for r in a.rows if r["method"] == method)
            out.append({"task": a.task, "metric": primary, "method": method, "mean": mean, "std": std, "n": n})
    return out


def write_study_report(final: str | Path, analyses: list[TaskAnalysis], info: dict,
                       sweeps: dict[str, dict] | None = None, ntk: dict[str, list[Path]] | None = None,
                       claims: Callable[[Path], list[str]] | None = None) -> Path:
    """Write the study's report folder ``final`` (replaced whole) from its task analyses; returns it as a Path.

    Args:
        analyses: one :class:`~lpft.analysis.compare.TaskAnalysis` per compared task, in study order.
        info: the study's study.json.
        sweeps: task -> {"rows", "summary", "mode", "split", "settings"} of its norm sweep.
        ntk: task -> its eNTK folders (their stats.json are tabulated in ntk.csv).
        claims: writes the claims into the folder being assembled and returns the Markdown section that follows
            the cross-task table (:func:`lpft.claims.render.study_section`); the claims were computed before.
    """
    sweeps, ntk = sweeps or {}, ntk or {}
    with report_folder(final) as folder:
        md = [f"# lpft study: {info.get('source', '')}", ""]
        methods = list(dict.fromkeys(m for a in analyses for m in a.methods))
        if analyses:
            rows = table8_rows(analyses)
            write_csv(folder / "table8.csv", rows)
            cell = {(r["task"], r["method"]): r for r in rows}
            seeds = list(dict.fromkeys(s for a in analyses for s in a.seeds))

            def fmt(task, m):
                r = cell.get((task, m))
                if r is None or r["mean"] is None:
                    return DASH
                return fmt_percent(r["mean"]) + (f" ± {fmt_percent(r['std'])}" if r["std"] is not None else "")

            table = [[a.task, a.metric_names[0]] + [fmt(a.task, m) for m in methods] for a in analyses]
            md += ["## Test metrics across tasks (paper Table 8)", "",
                   f"Mean ± sample std over seeds {', '.join(map(str, seeds))} (%); CoLA-style tasks report their "
                   "first metric (Matthews correlation). LP is one seed-free run per task (std 0).", "",
                   markdown_table(["task", "metric"] + [LABEL[m] for m in methods], table), ""]
            registered = {a.task: a.config.task for a in analyses}  # report name -> task
            in_paper = [name for name, task in registered.items() if task in paper.TABLE8]
            if in_paper:
                md += [f"The paper ({paper.MODEL}, 15 seeds, 10 epochs):", "", markdown_table(
                    ["task"] + [LABEL[m] for m in methods],
                    [[name] + [f"{paper.TABLE8[registered[name]][m]:.2f}" for m in methods] for name in in_paper]),
                       ""]
        claims_at = len(md)
        for a in analyses:
            (folder / a.task).mkdir()
            write_task_files(folder / a.task, a, title="lpft study")
            write_json(folder / a.task / "study.json", a.info())
        tasks = list(dict.fromkeys([a.task for a in analyses] + list(sweeps) + list(ntk)))
        ntk_rows = []
        for task in tasks:
            md += [f"## {task}", ""]
            analysis = next((a for a in analyses if a.task == task), None)
            if analysis is not None:
                primary, task_methods, rows = analysis.metric_names[0], analysis.methods, analysis.rows
                md += [markdown_table([""] + [LABEL[m] for m in task_methods], [
                    [f"{split} {name} (%)"] + [fmt_mean_std((r[f"{split}_{name}"] for r in rows if r["method"] == m),
                                                            fmt_percent) for m in task_methods]
                    for split in ("test", "validation") for name in analysis.metric_names]), "",
                    f"Full report (feature statistics, head norms, calibration, dynamics, t-SNE): "
                    f"[{task}/report.md]({task}/report.md). {sum(r['reused'] for r in rows)} of {len(rows)} runs "
                    f"reused; primary metric {primary}.", ""]
            if task in sweeps:
                sw = sweeps[task]
                write_sweep_files(folder / task / "norm-sweep", sw["rows"], sw["summary"], sw["mode"], task,
                                  sw["split"], sw["settings"])
                md += [f"Norm sweep (paper Figure 3): [{task}/norm-sweep/report.md]({task}/norm-sweep/report.md)",
                       "", f"![sweep]({task}/norm-sweep/sweep.png)", ""]
            for path in ntk.get(task, []):
                stats = read_json(path / "stats.json")
                k = stats["kernels"]
                change = (stats.get("predict") or {}).get("features_test") or {}
                ntk_rows.append({"task": task, "method": stats["method"], "seed": stats["seed"],
                                 "start_head_norm": stats.get("start_head_norm"), "rescaled": stats.get("head_norm"),
                                 **{f"rank_{n}": k[n]["rank"] for n in k}, **{f"fn_{n}": k[n]["frobenius"] for n in k},
                                 "ft_ratio": stats["ft_ratio"], "feature_change": change.get("actual_norm"),
                                 "optimizer": (stats.get("predict") or {}).get("optimizer"),
                                 "folder": shown_path(path)})
            if task in ntk:
                md += _ntk_section([r for r in ntk_rows if r["task"] == task])
        if ntk_rows:
            write_csv(folder / "ntk.csv", ntk_rows)
        if claims is not None:
            md[claims_at:claims_at] = claims(folder)
        (folder / "report.md").write_text("\n".join(md))
        write_json(folder / "study.json", info)
    return Path(final)


def _ntk_section(rows: list[dict]) -> list[str]:
    def norm(r):
        if r["start_head_norm"] is None:
            return DASH
        return f"{r['start_head_norm']:.3g}" + (" (rescaled)" if r["rescaled"] is not None else "")

    def change(r):
        return DASH if r["feature_change"] is None else f"{fmt_number(r['feature_change'])} ({r['optimizer']})"

    table = [[LABEL[r["method"]], str(r["seed"]), norm(r),
              " / ".join(DASH if r[k] is None else str(r[k]) for k in ("rank_P", "rank_F", "rank_P+F")),
              fmt_number(r["fn_P+F"]), f"{r['ft_ratio']:.4f}", change(r), f"`{r['folder']}`"] for r in rows]
    return ["eNTK at the start of fine-tuning (paper Table 2). A rescaled head norm is a claim-5 start; the feature "
            "change is ‖Φ − Φ0‖_F on the test samples after one real epoch of the named optimiser, where measured.",
            "", markdown_table(["method", "seed", "head norm", "rank P / F / P+F", "FN P+F", "FT ratio",
                                "feature change", "folder"], table), ""]
