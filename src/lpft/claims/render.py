"""The claims report folder, written from a :class:`~lpft.claims.verdicts.ClaimsResult`: ``claims.md``,
``claims.csv`` (one row per statistic, incl. the "no data" ones), ``runs.csv`` (the per-run rows used),
``lp_norm_path.csv`` / ``.png`` (claim 3), ``monotonicity.csv`` and ``norm_curves.png`` (claim 5),
``kernel_pairs.csv`` (claim 7).

Rendering only: nothing here reads a run folder or imports torch.
"""

from __future__ import annotations

from pathlib import Path

from ..io import shown_path
from ..report.output import report_folder
from ..report.tables import DASH, fmt_number, markdown_table, write_csv
from . import rules as C
from .verdicts import CLAIMS, ClaimsResult, claim_verdicts


def verdict_table(result: ClaimsResult) -> str:
    """Markdown: one row per claim, one column per task, the combined verdict in each cell."""
    verdicts = claim_verdicts(result["stats"])
    return markdown_table(["claim"] + result["tasks"],
                          [[f"{c}. {text}"] + [verdicts.get((c, t), C.NO_DATA) for t in result["tasks"]]
                           for c, text in CLAIMS.items()])


def _ci(s: dict) -> str:
    if s["ci_low"] is None:
        return DASH if s["mean"] is None else "no interval (n = 1)"
    return f"[{fmt_number(s['ci_low'])}, {fmt_number(s['ci_high'])}]"


def write_report(final: str | Path, result: ClaimsResult, out: Path | str | list | tuple) -> Path:
    """Write the claims report folder ``final`` (replaced whole); ``out``: where the data was read from, as the
    report states it. Returns ``final`` as a Path."""
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


def summary_rows(result: ClaimsResult) -> list[list[str]]:
    """(claim, task, verdict) rows for the terminal."""
    verdicts = claim_verdicts(result["stats"])
    return [[str(c), t, verdicts.get((c, t), C.NO_DATA)] for c in CLAIMS for t in result["tasks"]]



def plot_lp_path(results: dict, path: Path) -> Path:
    """Claim 3: the probe's head norm against C (log-log), the chosen C marked, the GD LP and init as lines."""
    from ..report.figures import new_figure, save_png

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

    from ..report.figures import new_figure, save_png
    from ..report.plots import METHOD_COLORS

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


def study_section(folder: Path, result: ClaimsResult) -> list[str]:
    """Write ``folder / "claims"`` and return the study report's section: the verdict table and a link to it."""
    write_report(folder / "claims", result, "this study's run, eNTK and report folders")
    return ["## The seven claims", "",
            "Verdicts by the rules fixed in `docs/claims.md` (95 % t interval over seeds of per-seed paired "
            "differences); statistics, intervals and the paper's numbers in [claims/claims.md](claims/claims.md).",
            "", verdict_table(result), ""]
