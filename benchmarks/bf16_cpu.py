"""bf16 autocast against fp32 on this CPU: a fine-tuning step and feature extraction, side by side in one process.

    python benchmarks/bf16_cpu.py --data-dir ../shared/data             # CB, MiniLM, 5 rounds (a few minutes)

The model is the embedded all-MiniLM-L6-v2 with lpft's head, the data the task's training split tokenised as
``lpft train`` does (max length 128). Per round and precision (the order alternates each round, to spread a noisy
machine's drift): ``--steps`` FT steps exactly as ``lpft.methods.finetune`` takes them (forward under
``lpft.model.autocast``, fp32 cross-entropy, backward, clipping at 1.0, fused AdamW; weights and optimiser state
stay fp32), on batches of 16 in length order, then feature extraction of the whole split with ``lpft.model.extract``.
Printed: each round's fp32 / bf16 time ratio (> 1: bf16 faster), min / median / max over rounds, the CPU's bf16
flags (``avx512_bf16``: bf16 dot products in hardware; ``amx_bf16``: matrix tiles; neither: bf16 is emulated and
slower), and the largest difference between the fp32 and bf16 features (relative to the largest fp32 value).
An untimed warm-up of each precision precedes the rounds. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        return "unknown (no /proc/cpuinfo)"
    found = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return ", ".join(found) if found else "none of avx512f / avx512_bf16 / amx"


def train_steps(clf, enc, batches, precision: str) -> float:
    from lpft.data.batching import iterate
    from lpft.model import autocast

    params = [p for p in clf.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    clf.train()
    start = time.perf_counter()
    for _, batch in iterate(enc, batches):
        labels = batch.pop("labels")
        with autocast("cpu", precision):
            logits = clf(**batch)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        loss.item()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cb")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="FT steps per round and precision (batch 16)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get("LPFT_DATA_DIR", "../shared/data"))
    args = parser.parse_args(argv)

    from lpft.data.batching import train_batches
    from lpft.methods.config import RunConfig
    from lpft.model import Classifier, extract
    from lpft.quiet import quiet_libraries
    from lpft.runs import prepare

    quiet_libraries()
    torch.set_num_threads(args.threads)
    prep = prepare(RunConfig(task=args.task, method="ft").resolved(), args.data_dir)
    enc = prep.splits["train"]
    batches = train_batches(enc, 16, seed=0, epoch=0, order="length")[:args.steps]
    tokens = sum(len(enc.input_ids[i]) for b in batches for i in b)
    print(f"{args.task}: {len(enc.labels)} train examples; {args.steps} FT steps of batch 16 ({tokens} tokens) and "
          f"feature extraction of the split per round; {args.threads} threads; CPU bf16 flags: {cpu_flags()}; "
          f"torch {torch.__version__}; load {os.getloadavg()[0]:.1f}", flush=True)

    def fresh():
        torch.manual_seed(0)
        return Classifier.from_pretrained("all-MiniLM-L6-v2", prep.task.num_labels)

    for precision in ("fp32", "bf16"):  # warm-up: oneDNN kernels, allocator
        train_steps(fresh(), enc, batches[:1], precision)
        extract(fresh(), enc, 64, precision=precision)

    times = {kind: {p: [] for p in ("fp32", "bf16")} for kind in ("train", "features")}
    feats = {}
    for r in range(args.rounds):
        for precision in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            times["train"][precision].append(train_steps(fresh(), enc, batches, precision))
            clf = fresh()
            start = time.perf_counter()
            feats[precision] = extract(clf, enc, 64, precision=precision)
            times["features"][precision].append(time.perf_counter() - start)
        print(f"round {r + 1}: train fp32 {times['train']['fp32'][-1]:.2f} s, bf16 {times['train']['bf16'][-1]:.2f} s; "
              f"features fp32 {times['features']['fp32'][-1]:.2f} s, bf16 {times['features']['bf16'][-1]:.2f} s; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)

    print(f"\n=== fp32 / bf16 time ratio over {args.rounds} rounds (> 1: bf16 faster) ===")
    for kind, unit in (("train", "per FT step (batch 16)"), ("features", "per example extracted")):
        ratios = [a / b for a, b in zip(times[kind]["fp32"], times[kind]["bf16"])]
        per = args.steps if kind == "train" else len(enc.labels)
        med = {p: statistics.median(times[kind][p]) / per for p in ("fp32", "bf16")}
        print(f"{kind:9s} ratio min {min(ratios):.2f}  median {statistics.median(ratios):.2f}  max {max(ratios):.2f}   "
              f"median {unit}: fp32 {1000 * med['fp32']:.1f} ms, bf16 {1000 * med['bf16']:.1f} ms")
    scale = float(np.abs(feats["fp32"]).max())
    print(f"features: max |bf16 - fp32| = {float(np.abs(feats['bf16'] - feats['fp32']).max()) / scale:.2e} of the "
          f"largest fp32 value; load now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
