"""The sketched eNTK (``lpft.ntk.sketch``) against the exact one: its error, measured, for a range of K.

On CB (its whole train split, N = 250, and up to 250 test examples as ``lpft ntk`` draws them), at the start of
fine-tuning of each method (FT: the pretrained MiniLM with the seeded random head; LP-FT: with the LP head), one pass
of the exact engine feeds the exact Gram and every sketch (each K, each estimator seed) at once, then for each:

* relative Frobenius error of F (train x train),
* the FT ratio (train), sketch against exact,
* the normalised spectrum of F (eigenvalues / the largest): the largest relative error over the top 20,
* kernel-regression accuracy of P + F, test (the authors' entry definition and the per-sample argmax), for the
  first estimator seed of each K.

Writes ``results/ntk-sketch/error.json`` and ``error.md`` and the figure ``docs/ntk-sketch.png``; the table is
copied into docs/ntk.md by hand. Methods not run this time keep their rows from an existing ``error.json`` (so FT
and LP-FT can be measured in two runs); each method's rows record the load average around its measurement.

    python benchmarks/ntk_sketch.py                       # FT and LP-FT, K = 2^12 .. 2^18, 3 seeds up to 2^16
    python benchmarks/ntk_sketch.py --methods ft --ks 12 14 --seeds 2      # quick look
    python benchmarks/ntk_sketch.py --methods lp-ft --ks 12 14 16 18 --seeds 2   # LP-FT's rows beside FT's
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LPFT_DATA_DIR", REPO.parent / "shared" / "data"))
TOP = 20


def measure(method: str, ks: list[int], seeds: int, big_seeds: int, n: int, seed: int) -> dict:
    import torch

    from lpft.methods.config import RunConfig
    from lpft.model import extract
    from lpft.ntk import ft_ratio, kernel_regression, pretrain_kernel, residuals
    from lpft.ntk.gradients import LogitGradients, sample_rows
    from lpft.ntk.sampling import sample_indices
    from lpft.ntk.sketch import Sketch
    from lpft.runs import prepare, start_of_fine_tuning
    from lpft.workspace import Workspace

    cfg = RunConfig(task="cb", method=method, seed=seed).resolved()
    prep = prepare(cfg, str(DATA))
    tr = sample_indices(len(prep.splits["train"]), n, cfg.seed, "random", stream=0)
    te = sample_indices(len(prep.splits["test"]), n, cfg.seed, "random", stream=1)
    train, test = prep.splits["train"].subset(tr), prep.splits["test"].subset(te)
    clf, _ = start_of_fine_tuning(cfg, prep, Workspace().cache, None)
    C = prep.task.num_labels
    rows = sample_rows(train) + sample_rows(test)
    started = time.perf_counter()
    engine = LogitGradients(clf, rows, split=len(tr))
    R, m = engine.num_samples * C, len(tr) * C
    exact = torch.zeros(R, m, dtype=torch.float64)
    sketches = [Sketch(2 ** k, s, R) for k in ks for s in range(seeds if 2 ** k <= 2 ** 16 else big_seeds)]
    for block in engine.blocks():
        exact += block.gram(len(tr))
        for sk in sketches:
            sk.add(block)
        del block
    seconds = time.perf_counter() - started
    phi = engine.features
    P_tr, P_te = pretrain_kernel(phi[:len(tr)], phi[:len(tr)], C), pretrain_kernel(phi[len(tr):], phi[:len(tr)], C)
    delta = residuals(extract(clf, train, 64, logits=True)[1].astype(np.float64), train.labels)

    def stats(F_all, regression: bool) -> dict:
        F = engine.to_sample_order(F_all, len(tr))
        F_tr, F_te = F[:m], F[m:]
        ev = np.sort(np.linalg.eigvalsh(F_tr))[::-1]
        out = {"F_train": F_tr, "ft_ratio": ft_ratio(P_tr, F_tr, delta, C), "spectrum": ev / ev[0]}
        if regression:
            kr = kernel_regression(P_tr + F_tr, train.labels, P_te + F_te, test.labels, num_labels=C)
            out.update(entry_test=kr.entry_test, argmax_test=kr.argmax_test)
        return out

    ref = stats(exact.numpy(), True)
    rows_out = []
    for i, sk in enumerate(sketches):
        first = i == 0 or sketches[i - 1].dim != sk.dim
        st = stats(sk.gram(len(tr), C).numpy(), first)
        spec_err = np.abs(st["spectrum"][:TOP] - ref["spectrum"][:TOP]) / ref["spectrum"][:TOP]
        rows_out.append({"K": sk.dim, "seed": sk.seed,
                         "rel_frobenius": float(np.linalg.norm(st["F_train"] - ref["F_train"])
                                                / np.linalg.norm(ref["F_train"])),
                         "ft_ratio": st["ft_ratio"], "ft_ratio_rel_error": abs(st["ft_ratio"] / ref["ft_ratio"] - 1),
                         "spectrum_top20_max_rel_error": float(spec_err.max()),
                         "spectrum": st["spectrum"][:60].tolist(),
                         "entry_test": st.get("entry_test"), "argmax_test": st.get("argmax_test")})
    return {"method": method, "n_train": len(tr), "n_test": len(te), "num_labels": C,
            "exact": {"ft_ratio": ref["ft_ratio"], "entry_test": ref["entry_test"],
                      "argmax_test": ref["argmax_test"], "spectrum": ref["spectrum"][:60].tolist()},
            "sketches": rows_out, "engine_seconds_all_sketches": seconds,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def table(results: list[dict]) -> str:
    lines = ["| method | K | seeds | rel. Frobenius error of F | FT ratio (exact) | FT ratio rel. error | "
             "top-20 normalised spectrum, max rel. error | kernel regr. P+F test entry / argmax (exact) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ex = r["exact"]
        for K in sorted({s["K"] for s in r["sketches"]}):
            ss = [s for s in r["sketches"] if s["K"] == K]

            def ms(key, fmt="{:.3f}", ss=ss):
                v = np.array([s[key] for s in ss])
                return fmt.format(v.mean()) + (f" ± {fmt.format(v.std(ddof=1))}" if len(v) > 1 else "")
            k0 = ss[0]
            lines.append(f"| {r['method'].upper()} | 2^{int(np.log2(K))} | {len(ss)} | {ms('rel_frobenius')} | "
                         f"{ms('ft_ratio', '{:.4f}')} ({ex['ft_ratio']:.4f}) | "
                         f"{ms('ft_ratio_rel_error', '{:.4f}')} | {ms('spectrum_top20_max_rel_error')} | "
                         f"{100 * k0['entry_test']:.2f} / {100 * k0['argmax_test']:.2f} "
                         f"({100 * ex['entry_test']:.2f} / {100 * ex['argmax_test']:.2f}) |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for r, marker in zip(results, "os"):
        Ks = sorted({s["K"] for s in r["sketches"]})
        for ax, key in zip(axes[:2], ("rel_frobenius", "ft_ratio_rel_error")):
            mean = [np.mean([s[key] for s in r["sketches"] if s["K"] == K]) for K in Ks]
            ax.loglog(Ks, mean, marker=marker, label=r["method"].upper())
        ax = axes[2]
        ax.semilogy(r["exact"]["spectrum"], "k-", lw=1, label=f"{r['method'].upper()} exact")
        for K in (Ks[0], Ks[-1]):
            s = next(s for s in r["sketches"] if s["K"] == K)
            ax.semilogy(s["spectrum"], ls="--", lw=1, label=f"{r['method'].upper()} K=2^{int(np.log2(K))}")
    Ks = sorted({s["K"] for s in results[0]["sketches"]})
    ref = [results[0]["sketches"][0]["rel_frobenius"] * (Ks[0] / K) ** 0.5 for K in Ks]
    axes[0].loglog(Ks, ref, "k:", lw=1, label="1/sqrt(K)")
    axes[0].set(xlabel="K", ylabel="rel. Frobenius error of F", title="F, train x train")
    axes[1].axhline(0.01, color="k", lw=0.8, ls=":")
    axes[1].set(xlabel="K", ylabel="|FT ratio / exact - 1|", title="FT ratio (goal <= 1 %)")
    axes[2].set(xlabel="eigenvalue index", ylabel="eigenvalue / largest", title="normalised spectrum of F")
    for ax in axes:
        ax.legend(fontsize=6)
    fig.suptitle(f"Sketched eNTK vs exact: CB, N = {results[0]['n_train']} (whole train split), MiniLM, start of "
                 "fine-tuning", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["ft", "lp-ft"])
    ap.add_argument("--ks", type=int, nargs="+", default=list(range(12, 19)), help="log2 K")
    ap.add_argument("--seeds", type=int, default=3, help="estimator seeds for K <= 2^16")
    ap.add_argument("--big-seeds", type=int, default=1, help="estimator seeds for K > 2^16")
    ap.add_argument("--n", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0, help="the run's seed (sample, head)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "ntk-sketch")
    ap.add_argument("--figure", type=Path, default=REPO / "docs" / "ntk-sketch.png")
    args = ap.parse_args()
    import torch

    from lpft.io import write_json
    load0 = os.getloadavg()[0]
    order = ["ft", "lp-ft", "lora", "lp-lora"]
    previous = args.out / "error.json"
    results = [r for r in json.loads(previous.read_text())["results"] if r["method"] not in args.methods] \
        if previous.exists() else []
    for method in args.methods:  # written after each method, so a long run leaves what it finished
        start = os.getloadavg()[0]
        results.append(measure(method, args.ks, args.seeds, args.big_seeds, args.n, args.seed))
        results[-1]["load_average"] = [start, os.getloadavg()[0]]
        results.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
        info = {"load_average_start": load0, "load_average_end": os.getloadavg()[0],
                "torch_threads": torch.get_num_threads(), "results": results}
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "error.json", info)
        md = table(results)
        (args.out / "error.md").write_text(md + f"\n\nload average {load0:.1f} -> {os.getloadavg()[0]:.1f}\n")
        plot(results, args.figure)
        print(md, flush=True)
    print(f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}; "
          + "; ".join(f"{r['method']}: one engine pass feeding exact + {len(r['sketches'])} sketches "
                      f"{r['engine_seconds_all_sketches']:.0f} s, peak RSS {r['peak_rss_gb']:.1f} GB"
                      for r in results))


if __name__ == "__main__":
    main()
