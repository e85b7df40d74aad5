"""The norm-sweep report folder: per-run rows, the mean ± std summary, the Figure-3 plot and a Markdown page."""

from __future__ import annotations

from pathlib import Path

from ..io import write_json
from .output import report_folder
from .plots import plot_norm_sweep
from .tables import DASH, fmt_number, markdown_table, write_csv


def write_sweep_report(final: str | Path, rows: list[dict], summary: list[dict], mode: str, task: str,
                       split: str, settings: dict) -> Path:
    """Write ``sweep.csv`` (one row per run), ``summary.csv`` (the figure's data), ``sweep.png`` and
    ``report.md`` into ``final`` (replaced whole)."""
    with report_folder(final) as folder:
        write_sweep_files(folder, rows, summary, mode, task, split, settings)
    return Path(final)


def write_sweep_files(folder: Path, rows: list[dict], summary: list[dict], mode: str, task: str, split: str,
                      settings: dict) -> None:
    """The sweep report's files, written into ``folder`` (created if missing)."""
    what = "head norm" if mode == "norm" else "head multiplier"
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "sweep.csv", rows)
    write_csv(folder / "summary.csv", summary)
    plot_norm_sweep(summary, folder / "sweep.png", mode, title=f"{task}: feature change vs {what} ({split})")
    write_json(folder / "settings.json", settings)
    methods = list(dict.fromkeys(r["method"] for r in summary))
    values = sorted(dict.fromkeys(r["value"] for r in summary))
    cell = {(r["method"], r["value"]): r for r in summary}

    def fmt(m, v):
        r = cell.get((m, v))
        if r is None:
            return DASH
        return fmt_number(r["diff_mean"]) + (f" ± {fmt_number(r['diff_std'])}" if r["n"] > 1 else "")

    table = [[f"{v:g}"] + [fmt(m, v) for m in methods] for v in values]
    unscaled = [f"{m.upper()}: {fmt_number(next(r for r in summary if r['method'] == m)['unscaled_norm_mean'])}"
                for m in methods]
    md = [f"# lpft norm-sweep: {task}", "",
          f"Feature change Diff(F) = mean ||phi(x) - phi0(x)|| on the {split} split after fine-tuning from a head "
          f"rescaled to each {what} (weight and bias scaled together); mean ± sample std over seeds "
          f"{', '.join(str(s) for s in settings['seeds'])}. Paper Figure 3.", "",
          markdown_table([what] + [m.upper() for m in methods], table), "",
          f"Unscaled start norm ||V||_F (no rescaling): {'; '.join(unscaled)}.", "", "![sweep](sweep.png)", ""]
    (folder / "report.md").write_text("\n".join(md))
