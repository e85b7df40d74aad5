"""The multi-task study report: a cross-task table shaped like the paper's Table 8 and a section per task.

Layout of the report folder (replaced whole when finished)::

    report.md            the cross-task table (rows: tasks, columns: methods, test metric mean ± std over seeds),
                         the paper's RoBERTa-base numbers where the task matches, then one section per task
    table8.csv           the cross-task table: task, metric, method, mean, std, n
    <task>/              that task's full compare report (report.md, CSV files, figures; see report/compare.py)
    <task>/norm-sweep/   its norm sweep, when the study has one (report/norm_sweep.py)
    ntk.csv              one row per eNTK: task, method, seed, ranks, Frobenius norms, FT ratio, folder
    study.json           the study's settings, run folders and timings
"""

from __future__ import annotations

from pathlib import Path

from ..io import read_json, write_json
from . import paper
from .compare import LABEL, CompareSettings, TaskAnalysis, _write_report, study_info
from .norm_sweep import write_sweep_files
from .output import report_folder
from .tables import DASH, fmt_mean_std, fmt_number, fmt_percent, markdown_table, mean_std, write_csv


def table8_rows(analyses: list[TaskAnalysis]) -> list[dict]:
    """task, metric, method, mean, std, n of the test primary metric, for every task and method."""
    out = []
    for a in analyses:
        primary = a.records[0].data["metrics"][0]
        for method in dict.fromkeys(s.method for s in a.slots):
            mean, std, n = mean_std(r[f"test_{primary}"] for r in a.rows if r["method"] == method)
            out.append({"task": a.task, "metric": primary, "method": method, "mean": mean, "std": std, "n": n})
    return out


def write_study_report(final: str | Path, analyses: list[TaskAnalysis], settings: CompareSettings, info: dict,
                       sweeps: dict[str, dict] | None = None, ntk: dict[str, list[Path]] | None = None) -> Path:
    """``sweeps``: task -> {"rows", "summary", "mode", "split", "settings"}; ``ntk``: task -> eNTK folders."""
    sweeps, ntk = sweeps or {}, ntk or {}
    with report_folder(final) as folder:
        md = [f"# lpft study: {info.get('source', '')}", ""]
        methods = list(dict.fromkeys(s.method for a in analyses for s in a.slots))
        if analyses:
            rows = table8_rows(analyses)
            write_csv(folder / "table8.csv", rows)
            cell = {(r["task"], r["method"]): r for r in rows}
            seeds = list(dict.fromkeys(s.seed for a in analyses for s in a.slots))

            def fmt(task, m):
                r = cell.get((task, m))
                if r is None or r["mean"] is None:
                    return DASH
                return fmt_percent(r["mean"]) + (f" ± {fmt_percent(r['std'])}" if r["std"] is not None else "")

            table = [[a.task, a.records[0].data["metrics"][0]] + [fmt(a.task, m) for m in methods] for a in analyses]
            md += ["## Test metrics across tasks (paper Table 8)", "",
                   f"Mean ± sample std over seeds {', '.join(map(str, seeds))} (%); CoLA-style tasks report their "
                   "first metric (Matthews correlation). LP is one seed-free run per task (std 0).", "",
                   markdown_table(["task", "metric"] + [LABEL[m] for m in methods], table), ""]
            registered = {a.task: a.slots[0].record.config.task for a in analyses}  # report name -> task
            in_paper = [name for name, task in registered.items() if task in paper.TABLE8]
            if in_paper:
                md += [f"The paper ({paper.MODEL}, 15 seeds, 10 epochs):", "", markdown_table(
                    ["task"] + [LABEL[m] for m in methods],
                    [[name] + [f"{paper.TABLE8[registered[name]][m]:.2f}" for m in methods] for name in in_paper]),
                       ""]
        for a in analyses:
            (folder / a.task).mkdir()
            _write_report(folder / a.task, a, settings, title="lpft study")
            write_json(folder / a.task / "study.json", study_info(a, settings))
        tasks = list(dict.fromkeys([a.task for a in analyses] + list(sweeps) + list(ntk)))
        ntk_rows = []
        for task in tasks:
            md += [f"## {task}", ""]
            a = next((a for a in analyses if a.task == task), None)
            if a is not None:
                primary = a.records[0].data["metrics"][0]
                md += [markdown_table([""] + [LABEL[m] for m in dict.fromkeys(s.method for s in a.slots)], [
                    [f"{split} {name} (%)"] + [fmt_mean_std((r[f"{split}_{name}"] for r in a.rows if r["method"] == m),
                                                            fmt_percent) for m in dict.fromkeys(s.method for s in a.slots)]
                    for split in ("test", "validation") for name in a.records[0].data["metrics"]]), "",
                    f"Full report (feature statistics, head norms, calibration, dynamics, t-SNE): "
                    f"[{task}/report.md]({task}/report.md). {sum(r['reused'] for r in a.rows)} of {len(a.rows)} runs "
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
                ntk_rows.append({"task": task, "method": stats["method"], "seed": stats["seed"],
                                 **{f"rank_{n}": k[n]["rank"] for n in k}, **{f"fn_{n}": k[n]["frobenius"] for n in k},
                                 "ft_ratio": stats["ft_ratio"], "folder": str(path)})
            if task in ntk:
                mine = [r for r in ntk_rows if r["task"] == task]
                md += ["eNTK at the start of fine-tuning (paper Table 2):", "", markdown_table(
                    ["method", "seed", "rank P / F / P+F", "FN P+F", "FT ratio", "folder"],
                    [[LABEL[r["method"]], str(r["seed"]), f"{r['rank_P']} / {r['rank_F']} / {r['rank_P+F']}",
                      fmt_number(r["fn_P+F"]), f"{r['ft_ratio']:.4f}", f"`{r['folder']}`"] for r in mine]), ""]
        if ntk_rows:
            write_csv(folder / "ntk.csv", ntk_rows)
        (folder / "report.md").write_text("\n".join(md))
        write_json(folder / "study.json", info)
    return Path(final)
