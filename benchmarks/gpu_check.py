"""GPU check: the CB compare at full scale, the eNTK at N = 250 and the training / extraction throughput, timed.

    python benchmarks/gpu_check.py                          # full scale
    python benchmarks/gpu_check.py --quick                  # a reduced scale, to check a machine
    python benchmarks/gpu_check.py --only ntk,throughput    # a subset of the steps
    python benchmarks/gpu_check.py --dry-run                # print the plan (works without a GPU)

Needs a CUDA GPU (it refuses with exit status 2 on a machine without one: CPU figures come from the other
benchmarks), the project installed (``pip install -e .``) and the benchmark files (``--data-dir``, default
``$LPFT_DATA_DIR``, else ``../shared/data`` beside the repository). Everything runs on ``cuda`` with the embedded
all-MiniLM-L6-v2 in a fresh temporary folder (nothing reused from earlier runs), through the shipped code:

1. **CB compare, full scale**: ``lpft compare --task cb`` with all five methods, seeds 1,2,3 and 10 epochs (the
   paper's protocol; ``--precision`` picks fp32 or bf16 for it) — training, Table 1 statistics, calibration,
   t-SNE and the report.
2. **eNTK, N = 250**: ``lpft ntk --task cb --method lp-ft --n-train 250 --n-test 250`` (CB has 225 training and
   56 test examples, so 225 x 56) with the Eq. 1 / Eq. 2 prediction check; always fp32 / fp64.
3. **Throughput**: one FT epoch (``lpft.methods.finetune.finetune``) and one feature-extraction pass
   (``lpft.model.extract``) over the first ``--throughput-examples`` MRPC training examples, fp32 and bf16, after
   an untimed warm-up; examples per second.

Each step reports its wall time and peak GPU memory (``torch.cuda.max_memory_allocated``); a failing step is
reported and the others still run. The table is printed and written, with the logs, to ``--out`` (default: a
temporary folder) as ``gpu_check.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = "lp,ft,lp-ft,lora,lp-lora"


def plan(args: argparse.Namespace, work: Path) -> list[dict]:
    """The steps to run: name, what, and for CLI steps the ``lpft`` argument list."""
    data = ["--data-dir", str(args.data_dir)]
    cache = ["--cache-dir", str(work / "cache"), "--device", args.device]
    methods, seeds, epochs = ("lp,lp-ft", "1", 2) if args.quick else (METHODS, "1,2,3", 10)
    n = 64 if args.quick else 250
    steps = [
        {"name": "CB compare" + (" (quick)" if args.quick else " (full scale)"), "group": "compare",
         "setting": f"{methods.count(',') + 1} methods x {seeds.count(',') + 1} seeds x {epochs} epochs, "
                    f"{args.precision}",
         "lpft": ["compare", "--task", "cb", "--methods", methods, "--seeds", seeds, "--epochs", str(epochs),
                  "--precision", args.precision, "--out", str(work / "runs"), "--report", str(work / "report"),
                  *data, *cache]},
        {"name": f"eNTK N = {n}", "group": "ntk", "setting": f"cb, lp-ft, {n} train x {n} test (capped by the split), "
                                                                      "fp32/fp64",
         "lpft": ["ntk", "--task", "cb", "--method", "lp-ft", "--n-train", str(n), "--n-test", str(n),
                  "--out", str(work / "ntk"), *data, *cache]},
    ]
    count = 128 if args.quick else args.throughput_examples
    for precision in ("fp32", "bf16"):
        steps.append({"name": f"FT throughput {precision}", "group": "throughput", "kind": "finetune",
                      "precision": precision,
                      "setting": f"mrpc, {count} examples, batch {args.batch_size}, max length 128",
                      "examples": count})
        steps.append({"name": f"extraction throughput {precision}", "group": "throughput", "kind": "extract",
                      "precision": precision,
                      "setting": f"mrpc, {count} examples, batch 64, max length 128", "examples": count})
    only = set(args.only.split(",")) if args.only else None
    return [step for step in steps if only is None or step["group"] in only]


def _cli_step(step: dict, log: Path) -> dict:
    from lpft.cli import main as lpft_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lpft_main(step["lpft"])
    log.write_text(out.getvalue())
    if code != 0:
        raise RuntimeError(f"lpft {step['lpft'][0]} exited with status {code} (log: {log})")
    tail = [line for line in out.getvalue().splitlines() if line.strip()]
    return {"output_tail": tail[-12:]}


def _throughput_step(step: dict, args: argparse.Namespace, cache: dict) -> dict:
    import numpy as np
    import torch

    from lpft.data import get_task
    from lpft.data.batching import encode
    from lpft.methods.finetune import finetune
    from lpft.model import DEFAULT_MODEL, Classifier, extract, init_head, load_tokenizer

    if "enc" not in cache:
        task = get_task("mrpc", args.data_dir)
        tok = load_tokenizer(DEFAULT_MODEL)
        train = task.load("train")[:step["examples"]]
        cache["enc"] = encode(tok, train, 128)
        cache["val"] = encode(tok, task.load("validation")[:16], 128)
        cache["num_labels"] = task.num_labels
    enc, val = cache["enc"], cache["val"]

    def fresh():
        clf = Classifier.from_pretrained(DEFAULT_MODEL, cache["num_labels"])
        init_head(clf.head, 0)
        return clf.to(args.device)

    def accuracy(logits, labels):
        acc = float((np.asarray(logits).argmax(1) == labels).mean())
        return acc, {"accuracy": acc}

    precision = step["precision"]
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    clf = fresh()
    if step["kind"] == "extract":
        extract(clf, enc.subset(list(range(min(64, len(enc))))), 64, precision=precision)  # warm-up
        sync()
        started = time.perf_counter()
        extract(clf, enc, 64, precision=precision)
        sync()
        seconds = time.perf_counter() - started
    else:
        with tempfile.TemporaryDirectory(prefix="lpft-gpu-") as tmp:
            warm = enc.subset(list(range(min(args.batch_size, len(enc)))))
            finetune(clf, warm, val, epochs=1, batch_size=args.batch_size, lr=1e-5, seed=0, evaluate=accuracy,
                     state_dir=Path(tmp) / "warm", precision=precision)
            clf = fresh()
            sync()
            result = finetune(clf, enc, val, epochs=1, batch_size=args.batch_size, lr=1e-5, seed=0,
                              evaluate=accuracy, state_dir=Path(tmp) / "state", precision=precision)
            sync()
            seconds = result.history[0]["seconds"]  # the epoch (incl. the 16-example validation pass)
    return {"loop_seconds": seconds, "examples_per_second": len(enc) / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (and benchmarks/README.md) for details.")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("LPFT_DATA_DIR", REPO.parent / "shared" / "data")),
                        help="benchmark files (CB, MRPC); default $LPFT_DATA_DIR, else ../shared/data")
    parser.add_argument("--quick", action="store_true",
                        help="reduced scale: compare lp,lp-ft x seed 1 x 2 epochs, eNTK N = 64, 128 examples")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="precision of the compare")
    parser.add_argument("--throughput-examples", type=int, default=1024, help="MRPC examples for throughput")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size for throughput")
    parser.add_argument("--out", type=Path, default=None, help="folder for logs and gpu_check.json (default: temp)")
    parser.add_argument("--only", default=None, help="comma-separated subset of compare, ntk, throughput")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit (no GPU needed)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu only to check the script itself (slow; the figures are not GPU figures)")
    args = parser.parse_args(argv)
    if args.only and not set(args.only.split(",")) <= {"compare", "ntk", "throughput"}:
        parser.error(f"--only {args.only!r}: expected a comma-separated subset of compare, ntk, throughput")

    if args.dry_run:
        # the real run works in a fresh mkdtemp folder (below); the plan names it generically
        for step in plan(args, args.out or Path(tempfile.gettempdir()) / "lpft-gpu-check-<random>"):
            what = ("lpft " + " ".join(step["lpft"])) if "lpft" in step else step["kind"] + ", " + step["setting"]
            print(f"{step['name']}: {what}")
        return 0

    import torch

    on_gpu = args.device == "cuda"
    if on_gpu and not torch.cuda.is_available():
        why = ("a CPU-only build" if torch.version.cuda is None
               else f"built for CUDA {torch.version.cuda}, with no GPU visible")
        print(f"gpu_check.py: error: needs a CUDA GPU; torch {torch.__version__} here is {why}. Run it on a GPU "
              "machine (CPU figures: benchmarks/compare.py, ntk.py, train_throughput.py).", file=sys.stderr)
        return 2
    if not (args.data_dir / "CB").is_dir() or not (args.data_dir / "MRPC").is_dir():
        print(f"gpu_check.py: error: --data-dir {args.data_dir} has no CB and MRPC folders", file=sys.stderr)
        return 2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lpft.quiet import quiet_libraries

    quiet_libraries()
    work = args.out or Path(tempfile.mkdtemp(prefix="lpft-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    steps = plan(args, work)
    gpu = torch.cuda.get_device_name(0) if on_gpu else "cpu (script check only)"
    print(f"{gpu}, torch {torch.__version__} (CUDA {torch.version.cuda}); work folder {work}", flush=True)
    rows, cache = [], {}
    for i, step in enumerate(steps):
        if on_gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        print(f"[{i + 1}/{len(steps)}] {step['name']}: {step['setting']}", flush=True)
        started = time.perf_counter()
        row = {"check": step["name"], "setting": step["setting"]}
        try:
            if "lpft" in step:
                row.update(_cli_step(step, work / f"step{i + 1}.log"))
            else:
                row.update(_throughput_step(step, args, cache))
            row["status"] = "ok"
        except Exception as err:  # report and go on: one broken step should not hide the others' figures
            row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            (work / f"step{i + 1}.error.txt").write_text(traceback.format_exc())
        row["seconds"] = time.perf_counter() - started
        row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30 if on_gpu else 0.0
        rows.append(row)
        print(f"    {row['status']}, {row['seconds']:.1f} s", flush=True)

    (work / "gpu_check.json").write_text(json.dumps(
        {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "quick": args.quick,
         "precision": args.precision, "rows": rows}, indent=1) + "\n")
    header = ["check", "setting", "seconds", "ex/s", "peak GPU GiB", "status"]
    table = [header] + [[r["check"], r["setting"], f"{r['seconds']:.1f}",
                         f"{r['examples_per_second']:.0f}" if "examples_per_second" in r else "",
                         f"{r['peak_gpu_gib']:.2f}" if on_gpu else "-", r["status"]] for r in rows]
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    print()
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("output_tail"):
            print(f"\n{r['check']}, last lines:\n  " + "\n  ".join(r["output_tail"]))
    print(f"\nresults: {work / 'gpu_check.json'}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
