"""eNTK speed and memory: ``lpft.ntk.compute_kernels`` against the authors' method, the torch.func reference and
a compute floor, on the embedded all-MiniLM-L6-v2 backbone and CB (C = 3), train x train kernels.

What is measured (each in a fresh subprocess, so the peak memory — ``ru_maxrss``, the process's peak resident set,
model included; tracemalloc cannot see PyTorch's allocations — belongs to that computation alone; model loading
and tokenisation are outside every timing):

* **ours**: ``compute_kernels`` (P and F, exact over all 22.7M backbone parameters incl. word embeddings, float32
  gradients, float64 accumulation) for N = 64 and N = 250.
* **(a) authors**: per sample, h = 384 backward passes (one per feature unit of phi) through the whole model, each
  dense gradient projected on the fly by V0 into the C logit-gradient rows, then the Gram matrix. It runs on a few
  samples; the time for N is extrapolated *linearly* from the per-sample time (the N^2 Gram is left out, which
  only flatters (a)).
* **(b) torch.func reference**: ``jacrev`` of the logits w.r.t. all parameters per sample, dense Jacobians
  (N * C * 22.7M floats, 272 MB per sample), explicit contraction. It runs on a subset that fits in memory and
  is compared with ours on the same subset.
* **floor**: N*C plain backward passes (batched like ours, forward included) plus one dense (N*C) x P by
  P x (N*C) matmul over the P dense parameters (all but the word embeddings), at the rate this machine reaches on
  that very shape ((N*C) x 2^19 slab, best of 3).

Agreement: ours vs (a) and ours vs (b) on the samples both ran, relative Frobenius and max-entry error.
The machine is shared (2 cores, other jobs): every row shows wall and CPU seconds (user + system of that
subprocess), and the ratios use CPU seconds, which other jobs inflate far less than wall time.

    python benchmarks/ntk.py                     # N = 64 and 250, (a) on 2 samples, (b) on 8: ~8 min
    python benchmarks/ntk.py --sizes 64 --authors-samples 1 --reference-samples 4     # quick look
    python benchmarks/ntk.py --sketch-only --sketch 16384 --sketch-sizes 250 1000 2000   # the sketched F's cost
    python benchmarks/ntk.py --sketch-only --no-exact --sketch-sizes 2000 --rounds 2 --memory-budget 1.5GiB  # goal
    python benchmarks/ntk.py --sizes 250 --floor-rounds 2     # ours / floor alone, its spread over rounds (~5 min)

* **sketch rows** (``--sketch-only``): ``compute_kernels(..., sketch=K)`` (F estimated from K-dimensional sign
  projections, ``lpft.ntk.sketch``) at N = 250, 1000, 2000 CB-length inputs (CB's 306 train + validation examples,
  cycled past 306), beside ours exact where N <= 250, with the sketch's relative Frobenius error there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lpft.commands._options import byte_size

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LPFT_DATA_DIR", REPO.parent / "shared" / "data"))
C = 3


# ----------------------------------------------------------------------------------------------------------------
# workers (run in subprocesses)


def _model_and_rows(n: int):
    import torch
    import transformers

    from lpft.model import DEFAULT_MODEL, Classifier, init_head, load_tokenizer

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    clf = Classifier.from_pretrained(DEFAULT_MODEL, C).eval()
    init_head(clf.head, seed=0)
    tok = load_tokenizer(DEFAULT_MODEL)
    try:  # the official CB train file: the paper's train split, then its validation split (250 examples)
        from lpft.data import get_task

        task = get_task("cb", DATA)
        examples = task.load("train") + task.load("validation")
        pairs = [(e.text, e.text_pair) for e in examples]
    except ImportError:
        lines = (DATA / "CB" / "train.jsonl").read_text().splitlines()
        pairs = [(r["premise"], r["hypothesis"]) for r in map(json.loads, lines)]
    pairs = [pairs[i % len(pairs)] for i in range(n)]  # past CB's 306 examples (sketch rows): CB-length, cycled
    enc = tok([p for p, _ in pairs], [h for _, h in pairs], truncation=True, max_length=128)
    rows = [{k: torch.tensor(enc[k][i]) for k in ("input_ids", "attention_mask", "token_type_ids")}
            for i in range(len(pairs))]
    return clf, rows


def _usage():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), ru.ru_utime + ru.ru_stime


def _finish(start, out: dict) -> dict:
    wall, cpu = _usage()
    out.update(wall=wall - start[0], cpu=cpu - start[1],
               peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return out


def worker_ours(n: int, save: str, budget: int | None = None) -> dict:
    from lpft.ntk import compute_kernels

    clf, rows = _model_and_rows(n)
    start = _usage()
    k = compute_kernels(clf, rows, **({"memory_budget": budget} if budget else {}))
    out = _finish(start, {"n": len(rows)})
    np.save(save, k.F_train)
    return out


def worker_sketch(n: int, save: str, dim: int, budget: int | None = None) -> dict:
    from lpft.ntk import compute_kernels

    clf, rows = _model_and_rows(n)
    start = _usage()
    k = compute_kernels(clf, rows, sketch=dim, sketch_seed=0, **({"memory_budget": budget} if budget else {}))
    out = _finish(start, {"n": len(rows), "sketch": dim})
    if n <= 250:
        np.save(save, k.F_train)
    return out


def worker_authors(k: int, save: str) -> dict:
    import torch

    from lpft.ntk.reference import authors_logit_gradients

    clf, rows = _model_and_rows(k)
    start = _usage()
    grads = [authors_logit_gradients(clf, row) for row in rows]
    out = _finish(start, {"n": len(rows)})
    K = 0
    for name in grads[0]:
        J = torch.cat([g[name] for g in grads]).double()
        K = K + J @ J.T
    np.save(save, K.numpy())
    return out


def worker_reference(n: int, save: str) -> dict:
    from lpft.ntk.reference import jacobian_entk

    clf, rows = _model_and_rows(n)
    start = _usage()
    K = jacobian_entk(clf, rows)["backbone"]
    out = _finish(start, {"n": len(rows)})
    np.save(save, K)
    return out


def worker_floor(n: int, save: str) -> dict:
    """N*C batched backward passes (forward included), and this machine's rate for the dense Gram matmul."""
    import torch

    from lpft.ntk.gradients import pad_rows

    clf, rows = _model_and_rows(n)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"]))
    batches, cur = [], []
    for i in order:  # the same batching rule as the engine: padded size <= 2048 tokens
        if cur and (len(cur) + 1) * len(rows[cur[0]]["input_ids"]) > 2048:
            batches.append(cur)
            cur = []
        cur.append(i)
    batches.append(cur)
    start = _usage()
    for idx in batches:
        logits = clf(**pad_rows([rows[i] for i in idx]))
        for c in range(C):
            clf.zero_grad(set_to_none=True)
            logits[:, c].sum().backward(retain_graph=c < C - 1)
    backward = _finish(start, {})
    # the Gram's own shape, (N*C x 2^19) @ (2^19 x N*C); best of 3 runs after a warm-up
    G = torch.randn(len(rows) * C, 2**19)
    flops = 2 * G.shape[0] ** 2 * G.shape[1]
    G @ G.T
    best_wall = best_cpu = 0.0
    for _ in range(3):
        t = _usage()
        G @ G.T
        wall, cpu = _usage()
        best_wall, best_cpu = max(best_wall, flops / (wall - t[0])), max(best_cpu, flops / (cpu - t[1]))
    word = clf.backbone.get_input_embeddings().weight.numel()
    dense = sum(p.numel() for p in clf.backbone.parameters()) - word
    gram = 2 * (len(rows) * C) ** 2 * dense
    return {"n": len(rows), "backward": backward["wall"], "backward_cpu": backward["cpu"],
            "gflops": best_wall / 1e9, "gram": gram / best_wall, "gram_cpu": gram / best_cpu,
            "wall": backward["wall"] + gram / best_wall, "cpu": backward["cpu"] + gram / best_cpu,
            "dense_params": dense, "word_params": word}


WORKERS = {"ours": worker_ours, "authors": worker_authors, "reference": worker_reference, "floor": worker_floor,
           "sketch": worker_sketch}


def run_worker(kind: str, n: int, folder: str, sketch: int | None = None, budget: int | None = None) -> dict:
    save = os.path.join(folder, f"{kind}_{n}.npy")
    cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n), "--save", save]
    if sketch is not None:
        cmd += ["--sketch", str(sketch)]
    if budget is not None:
        cmd += ["--memory-budget", str(budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} N={n} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["save"] = save
    print(f"  done: {kind:9s} N={n:<4d} {out['wall']:8.1f} s wall {out['cpu']:8.1f} s CPU "
          f"{out.get('peak_gb', float('nan')):.2f} GB peak RSS, load average {os.getloadavg()[0]:.1f}", flush=True)
    return out


# ----------------------------------------------------------------------------------------------------------------
# report


def errors(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    return (float(np.linalg.norm(ours - ref) / np.linalg.norm(ref)),
            float(np.abs(ours - ref).max() / np.abs(ref).max()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 250])
    ap.add_argument("--authors-samples", type=int, default=2)
    ap.add_argument("--reference-samples", type=int, default=8)
    ap.add_argument("--sketch", type=int, default=2**14, help="K of the sketch rows")
    ap.add_argument("--sketch-sizes", type=int, nargs="*", default=[250, 1000, 2000],
                    help="N of the sketch rows (CB examples cycled past 306: CB-length inputs)")
    ap.add_argument("--sketch-only", action="store_true", help="only the sketch rows (and ours, exact, at N <= 250)")
    ap.add_argument("--floor-rounds", type=int, default=0,
                    help="only ours against the floor at --sizes, this many rounds (order alternating): the spread "
                         "of ours / floor (each round ~2.5 min at N = 250 on 2 idle cores)")
    ap.add_argument("--no-exact", action="store_true", help="--sketch-only without ours exact (one row per run)")
    ap.add_argument("--memory-budget", type=byte_size, default=None,
                    help="compute_kernels' memory_budget for ours and the sketch rows, bytes or e.g. 1.5GiB (default: "
                         "lpft's, 3 GiB)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="--sketch-only: measure each sketch size this many times (the spread: min / median / max)")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_budget is not None and args.memory_budget <= 0:
        ap.error(f"--memory-budget: expected a positive number of bytes, got {args.memory_budget}")
    if args.worker:
        extra = {"sketch": (args.sketch, args.memory_budget), "ours": (args.memory_budget,)}.get(args.worker, ())
        print(json.dumps(WORKERS[args.worker](args.n, args.save, *extra)))
        return
    if args.sketch_only:
        sketch_rows(args)
        return
    if args.floor_rounds:
        floor_rounds(args)
        return

    load0 = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as folder:
        print("running (each line is one subprocess)...", flush=True)
        ours = {n: run_worker("ours", n, folder, budget=args.memory_budget)
                for n in sorted(set(args.sizes + [args.reference_samples]))}
        floor = {n: run_worker("floor", n, folder) for n in args.sizes}
        authors = run_worker("authors", args.authors_samples, folder)
        ref = run_worker("reference", args.reference_samples, folder)
        K = {n: np.load(o["save"]) for n, o in ours.items()}
        Ka, Kb = np.load(authors["save"]), np.load(ref["save"])

    ka, kb = authors["n"], ref["n"]
    big = max(args.sizes)
    a_err = errors(K[big][: ka * C, : ka * C], Ka)
    b_err = errors(K[kb], Kb)
    a_wall, a_cpu = authors["wall"] / ka, authors["cpu"] / ka
    print()
    print("eNTK train x train, all-MiniLM-L6-v2 (22.7M backbone params), CB, C = 3, 2 torch threads; load average "
          f"{load0} at start, {os.getloadavg()[0]:.1f} at end")
    print()
    print("| method | N | wall s | CPU s | peak RSS GB | note |")
    print("|---|---|---|---|---|---|")
    for n in sorted(ours):
        o = ours[n]
        print(f"| ours (lpft.ntk) | {n} | {o['wall']:.1f} | {o['cpu']:.1f} | {o['peak_gb']:.2f} | exact, P and F |")
    print(f"| (a) authors | {ka} | {authors['wall']:.1f} | {authors['cpu']:.1f} | {authors['peak_gb']:.2f} | "
          f"measured |")
    for n in args.sizes:
        print(f"| (a) authors | {n} | {a_wall * n:.0f} | {a_cpu * n:.0f} | - | extrapolated linearly from {ka} "
              "samples (Gram left out) |")
    print(f"| (b) torch.func jacrev | {kb} | {ref['wall']:.1f} | {ref['cpu']:.1f} | {ref['peak_gb']:.2f} | "
          f"measured on a subset: dense N x C x 22.7M Jacobian |")
    for n in args.sizes:
        f = floor[n]
        print(f"| floor | {n} | {f['wall']:.1f} | {f['cpu']:.1f} | - | {n * C} backward passes {f['backward']:.1f} s"
              f" + dense Gram over {f['dense_params'] / 1e6:.1f}M params {f['gram']:.1f} s at {f['gflops']:.0f} "
              "GFLOP/s |")
    print()
    print("Ratios in CPU seconds (the machine is shared; wall-time ratio in brackets):")
    print()
    print("| ratio | value | goal |")
    print("|---|---|---|")
    for n in args.sizes:
        o, f = ours[n], floor[n]
        print(f"| (a) / ours, N={n} (a extrapolated) | {a_cpu * n / o['cpu']:.0f}x "
              f"({a_wall * n / o['wall']:.0f}x) | >= 50x |")
        print(f"| ours / floor, N={n} | {o['cpu'] / f['cpu']:.2f} ({o['wall'] / f['wall']:.2f}) | <= 2 |")
    print(f"| (b) / ours, same {kb} samples | {ref['cpu'] / ours[kb]['cpu']:.1f}x "
          f"({ref['wall'] / ours[kb]['wall']:.1f}x) | >= 2x |")
    print(f"| peak RSS ours, N={big} | {ours[big]['peak_gb']:.2f} GB | <= 4 GB |")
    print()
    print(f"agreement ours vs (a) on {ka} samples: rel. Frobenius {a_err[0]:.1e}, rel. max entry {a_err[1]:.1e}")
    print(f"agreement ours vs (b) on {kb} samples: rel. Frobenius {b_err[0]:.1e}, rel. max entry {b_err[1]:.1e}"
          " (goal <= 1e-6; float32 gradients on all sides)")


def floor_rounds(args) -> None:
    """``--floor-rounds R``: ours and the floor at each of ``--sizes``, R rounds, the order alternating each round
    (a drifting machine load falls on both); per round and as min / median / max, ours / floor in CPU seconds."""
    import statistics

    ratios: dict[int, list[float]] = {n: [] for n in args.sizes}
    print(f"ours against the floor, N = {args.sizes}, {args.floor_rounds} round(s); load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.floor_rounds):
            for n in args.sizes:
                order = ("ours", "floor") if r % 2 == 0 else ("floor", "ours")
                got = {name: run_worker(name, n, folder) for name in order}
                o, f = got["ours"], got["floor"]
                ratios[n].append(o["cpu"] / f["cpu"])
                print(f"round {r + 1}, N = {n}: ours {o['wall']:.1f} s wall / {o['cpu']:.1f} CPU s "
                      f"({o['peak_gb']:.2f} GB), floor {f['wall']:.1f} / {f['cpu']:.1f} (backward {f['backward']:.1f} "
                      f"s + Gram {f['gram']:.1f} s at {f['gflops']:.0f} GFLOP/s); ours / floor {ratios[n][-1]:.2f} "
                      f"CPU ({o['wall'] / f['wall']:.2f} wall); load {os.getloadavg()[0]:.1f}", flush=True)
    for n, values in ratios.items():
        print(f"ours / floor, N = {n}, CPU seconds: min {min(values):.2f}, median {statistics.median(values):.2f}, "
              f"max {max(values):.2f} over {len(values)} round(s)   goal <= 2")


def sketch_rows(args) -> None:
    """``--sketch-only``: the sketched F (train x train) at each size, against ours exact where N <= 250;
    ``--rounds R`` measures each sketch size R times, sizes interleaved (round 1 of every size, then round 2, ...)
    so that a slow spell of the machine does not fall on one size only."""
    import statistics

    load0 = f"{os.getloadavg()[0]:.1f}"
    budget = args.memory_budget or "default (3 GiB)"
    with tempfile.TemporaryDirectory() as folder:
        print("running (each line is one subprocess)...", flush=True)
        exact = {n: run_worker("ours", n, folder, budget=args.memory_budget)
                 for n in args.sketch_sizes if n <= 250 and not args.no_exact}
        rounds: dict[int, list[dict]] = {n: [] for n in args.sketch_sizes}
        for _ in range(args.rounds):
            for n in args.sketch_sizes:
                rounds[n].append(run_worker("sketch", n, folder, args.sketch, args.memory_budget))
        err = {n: float(np.linalg.norm(np.load(rounds[n][0]["save"]) - np.load(e["save"]))
                        / np.linalg.norm(np.load(e["save"]))) for n, e in exact.items()}
    print()
    print(f"eNTK train x train, MiniLM, CB-length inputs, C = 3, sketch K = {args.sketch}, memory budget {budget}; "
          f"load average {load0} at start, {os.getloadavg()[0]:.1f} at end")
    print()

    def spread(values: list[float], digits: int) -> str:
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return (f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]")

    print(f"| method | N | wall s | CPU s | peak RSS GiB | note |  (median [min, max] over {args.rounds} round(s))")
    print("|---|---|---|---|---|---|")
    for n in sorted(set(rounds) | set(exact)):
        if n in exact:
            e = exact[n]
            print(f"| ours exact | {n} | {e['wall']:.1f} | {e['cpu']:.1f} | {e['peak_gb']:.2f} | P and F |")
        rs = rounds[n]
        note = f"rel. Frobenius error of F {err[n]:.3f}" if n in err else "exact not run"
        print(f"| ours sketch K={args.sketch} | {n} | {spread([r['wall'] for r in rs], 1)} | "
              f"{spread([r['cpu'] for r in rs], 1)} | {spread([r['peak_gb'] for r in rs], 2)} | {note} |")


if __name__ == "__main__":
    main()
