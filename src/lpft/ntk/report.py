"""Markdown summary and figures for ``lpft ntk`` (one method on one task), with the paper's CB numbers beside ours.

Example::

    >>> md = summary_markdown({"task": "cb", "method": "ft", "model": "m", "seed": 0, "num_labels": 3,
    ...     "n_train": 2, "n_test": 1, "rank_tolerance": "t", "ft_ratio": 0.5,
    ...     "kernels": {"P": {"rank": 1, "size": 6, "frobenius": 1.0, "entry_train": 1.0, "entry_test": 1.0,
    ...                       "argmax_train": 1.0, "argmax_test": 1.0, "entry_chance": 0.667}}}, paper=PAPER_CB)
    >>> "RoBERTa-base" in md
    True
"""

from __future__ import annotations

from pathlib import Path

#: Paper Table 2 (CB, RoBERTa-base, 250 train / 250 test, word-embedding gradients subsampled to 10 %).
#: FN in absolute units (the paper prints x1e3); accuracies in % and in the authors' entry-level definition.
_P = {"rank": 18, "frobenius": 51.0e3, "entry_train": 87.11, "entry_test": 79.17}
PAPER_CB = {
    "ft": {"P": _P, "F": {"rank": 608, "frobenius": 13.9e3},
           "P+F": {"rank": 210, "frobenius": 64.9e3, "entry_train": 84.74, "entry_test": 79.76}, "ft_ratio": 0.1987},
    "lora": {"P": _P, "F": {"rank": 500, "frobenius": 0.0226e3}, "P+F": {"rank": 20, "frobenius": 51.0e3},
             "ft_ratio": 0.0004},
    "lp-ft": {"P": _P, "F": {"rank": 344, "frobenius": 7250e3},
              "P+F": {"rank": 344, "frobenius": 7280e3, "entry_train": 100.00, "entry_test": 86.31},
              "ft_ratio": 1.0000},
    "lp-lora": {"P": _P, "F": {"rank": 307, "frobenius": 15.1e3}, "P+F": {"rank": 188, "frobenius": 62.6e3},
                "ft_ratio": 1.0137},
}
NAMES = {"P": "P (pre-train-effective)", "F": "F (FT-effective)", "P+F": "P + F (eNTK)"}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _rank(rank) -> str:
    return "n/a (sketch)" if rank is None else str(rank)


def summary_markdown(stats: dict, paper: dict | None = None) -> str:
    """The Table-2-shaped Markdown summary of a ``stats.json`` dict; ``paper``: e.g. :data:`PAPER_CB`."""
    s = stats
    lines = [f"# eNTK at the start of FT: {s['method'].upper()} on {s['task']}", "",
             f"Model `{s['model']}`, seed {s['seed']}, {s['n_train']} train x {s['n_test']} test samples, "
             f"{s['num_labels']} classes; kernels are (N*C) x (N*C).", "",
             "| kernel | rank | FN | entry acc train / test (%) | argmax acc train / test (%) |",
             "|---|---|---|---|---|"]
    for name, k in s["kernels"].items():
        lines.append(f"| {NAMES.get(name, name)} | {_rank(k['rank'])} / {k['size']} | {k['frobenius']:.4g} | "
                     f"{_pct(k['entry_train'])} / {_pct(k['entry_test'])} | "
                     f"{_pct(k['argmax_train'])} / {_pct(k['argmax_test'])} |")
    chance = next(iter(s["kernels"].values()))["entry_chance"]
    if s.get("sketch_note"):
        lines += ["", f"**Sketched**: {s['sketch_note']}."]
    lines += ["", f"**FT ratio**: {s['ft_ratio']:.4f}", "",
              f"- Rank tolerance: {s['rank_tolerance']}.",
              f"- Entry accuracy: the authors' definition, a binary classifier over (sample, class) entries; "
              f"chance (always 'no') = {100 * chance:.2f} %. Argmax accuracy: per sample, chance about "
              f"{100 / s['num_labels']:.1f} %.",
              "- FT ratio: mean over train x of ||sum_i F(x,x_i) delta_i|| / ||sum_i (P+F)(x,x_i) delta_i||, "
              "delta_i = e_y - softmax(f0(x_i)) at the start of FT."]
    ref = paper.get(s["method"]) if paper else None
    if ref:
        lines += ["", "## Paper (Table 2, CB, RoBERTa-base; 10 % of word-embedding gradients) beside ours", "",
                  "| kernel | rank paper / ours | FN paper / ours | entry acc train paper / ours | "
                  "entry acc test paper / ours |", "|---|---|---|---|---|"]
        for name in ("P", "F", "P+F"):
            p, o = ref.get(name, {}), s["kernels"].get(name)
            if o is None:
                continue

            def acc(key, p=p):
                return f"{p[key]:.2f}" if key in p else "-"
            lines.append(f"| {NAMES[name]} | {p.get('rank', '-')} / {_rank(o['rank'])} | "
                         f"{p['frobenius']:.4g} / {o['frobenius']:.4g} | {acc('entry_train')} / "
                         f"{_pct(o['entry_train'])} | {acc('entry_test')} / {_pct(o['entry_test'])} |")
        lines += [f"| FT ratio | {ref['ft_ratio']:.4f} / {s['ft_ratio']:.4f} | | | |", "",
                  "Our model may differ from RoBERTa-base (default: all-MiniLM-L6-v2), so absolute ranks and norms "
                  "are not comparable; the ordering across methods is what the paper's claims are about."]
    pred = s.get("predict")
    if pred:
        t, tr = pred["test"], pred["train"]
        lines += ["", f"## Beyond the paper: Eq. 1 prediction of one real fine-tuning epoch ({pred['optimizer']})",
                  "",
                  f"lr {pred['lr']:g}, batch size {pred['batch_size']}, 1 epoch over the same train samples, dropout "
                  "as in training. Predicted change of logits: sum_i w_i Theta(x, x_i) delta_i with the first-order "
                  f"SGD scale w_i = lr_s / |B_s| under the linear decay (mean w {pred['mean_sgd_weight']:.3g}).", "",
                  "| samples | cosine | rel. error (SGD scale) | fitted scale (x SGD) | rel. error (fitted) | "
                  "‖actual‖ |", "|---|---|---|---|---|---|"]
        for name, c in (("test", t), ("train", tr)):
            lines.append(f"| {name} | {c['cosine']:.4f} | {c['rel_error_sgd_scale']:.4g} | {c['fitted_scale']:.4g} | "
                         f"{c['rel_error_fitted']:.4f} | {c['actual_norm']:.4g} |")
        ft = pred.get("features_test")
        if ft:
            lines.append(f"| test features (Eq. 2) | {ft['cosine']:.4f} | {ft['rel_error_sgd_scale']:.4g} | "
                         f"{ft['fitted_scale']:.4g} | {ft['rel_error_fitted']:.4f} | {ft['actual_norm']:.4g} |")
            lines += ["", "Eq. 2 row: the change of the features phi(x) (not the logits), predicted as "
                          "sum_i w_i J(x) J(x_i)^T V0^T delta_i with J = d phi0 / d theta over the trainable backbone "
                          "parameters, the same w_i."]
        lines += ["", f"Cosine on test of the P-only part: {pred['test_cosine_P_only']:.4f}; F-only part: "
                      f"{pred['test_cosine_F_only']:.4f}.",
                  "AdamW rescales gradients per coordinate, so its scale differs from SGD's; the cosine is "
                  "scale-free. `--predict-optimizer sgd` checks the kernel with plain SGD."]
    return "\n".join(lines) + "\n"


def make_plots(k, labels, num_labels: int, folder: Path, label_names=None, title: str | None = None) -> None:
    """``spectrum.png`` (normalised singular values of F and P+F) and ``pair_norms.png`` (P and F pair norms)."""
    from .plots import plot_pair_norms, plot_spectra

    folder = Path(folder)
    plot_spectra({"F (FT-effective)": k.F_train, "P + F": k.full_train}, path=str(folder / "spectrum.png"),
                 title=title)
    plot_pair_norms({"P": k.P_train, "F": k.F_train}, labels, num_labels, path=str(folder / "pair_norms.png"),
                    label_names=label_names)
