"""Training throughput of our FT stage against a plain Hugging Face ``transformers.Trainer``, in one process.

Same network, same data, same batch size, same max length, same optimiser, all on CPU:

* **ours**: ``lpft.methods.finetune.finetune`` itself (the shipped loop: length-bucketed batches padded per batch,
  AdamW, weight decay 0, linear decay, no warmup), one epoch over the first ``--n-examples`` training examples.
  ``finetune`` always scores a validation set after the epoch; it gets a tiny one (``--n-validation``, default 16
  examples = one evaluation batch), and that pass stays inside the timed loop (it counts against us).
* **Trainer**: the setup a user would write: a ``datasets.Dataset`` tokenised with the model's tokenizer,
  ``TrainingArguments(learning_rate=1e-5, warmup_steps=0, lr_scheduler_type="linear", weight_decay=0,
  report_to="none", save_strategy="no", eval_strategy="no", dataloader_num_workers=0, use_cpu=True)`` and the
  default optimiser (``adamw_torch_fused`` in recent ``transformers``), in two flavours:

  - ``Trainer, padding="max_length"``: ``tokenizer(..., padding="max_length")`` as in many tutorials, default collator;
  - ``Trainer, DataCollatorWithPadding``: no padding at tokenisation, dynamic per-batch padding (the fair baseline).

  Gradient clipping at max-norm 1.0 on both sides: the Trainer's default, and lpft's since it follows the authors'
  protocol, so both sides run the same algorithm with the settings a user gets.

The network is the same object type on both sides: our :class:`lpft.model.Classifier` (embedded all-MiniLM-L6-v2
backbone without pooler, dropout, ``Linear(h, C)`` on the first token, eager attention, the same seeded head) —
for the Trainer wrapped in a tiny ``nn.Module`` whose ``forward(input_ids, attention_mask, token_type_ids, labels)``
returns ``{"loss", "logits"}`` with the same cross-entropy. ``AutoModelForSequenceClassification`` is *not* used: for
BERT it puts the classifier on the pooler output (dense + tanh over ``[CLS]``) and loads with the default (sdpa)
attention, i.e. a different network from the paper's head on the raw first-token state; the comparison would then
measure the model, not the training loop.

Timing: tokenisation and model loading are outside every timing. ``loop`` is the training epoch (ours: the epoch's
``seconds`` from ``finetune``'s history, which includes the tiny validation pass; Trainer: ``on_train_begin`` to
``on_train_end``). ``call`` is the whole call a user waits for (ours: ``finetune(...)``, which also creates the
optimiser and copies the best weights in memory — a resume checkpoint is written only every ``checkpoint_every``
seconds, 300 by default, so none in this short epoch; Trainer: constructing the ``Trainer`` plus ``train()``).
Each round runs every variant once on a fresh model, in an order rotated each round to spread the drift of a noisy
machine. Reported: every round's speed-up of ours over each baseline (its variants
ran back to back) with the min / median / max over rounds, then the table of medians; a spread over 25% is flagged. An
untimed warm-up step precedes the
rounds. Padding share = pad tokens / all tokens of the batches fed to the model (counted by a forward pre-hook on the
Classifier, identically for all variants).

    python benchmarks/train_throughput.py                   # MRPC, 128 examples (8 steps), 3 rounds: 2-8 min
    python benchmarks/train_throughput.py --task rte --n-examples 160 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from lpft.data import get_task  # noqa: E402
from lpft.data.batching import collate, encode  # noqa: E402
from lpft.methods.finetune import finetune  # noqa: E402
from lpft.model import DEFAULT_MODEL, Classifier, init_head, load_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 0
OURS, TRAINER_DYNAMIC, TRAINER_MAX = "ours", "trainer-dynamic", "trainer-max-length"
LABELS = {OURS: "ours (lpft finetune, bucketed)", TRAINER_DYNAMIC: "Trainer, DataCollatorWithPadding",
          TRAINER_MAX: 'Trainer, padding="max_length"'}


class TokenCounter:
    """Forward pre-hook on the Classifier: counts real and padded tokens of every training batch fed to it."""

    def __init__(self, clf: Classifier):
        self.tokens = self.real = self.examples = 0
        self.handle = clf.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None and module.training:
            self.tokens += mask.numel()
            self.real += int(mask.sum())
            self.examples += mask.shape[0]

    @property
    def padding_share(self) -> float:
        return 1.0 - self.real / self.tokens if self.tokens else float("nan")


class TrainerModel(nn.Module):
    """Our Classifier behind the forward signature the Trainer expects; same network, same loss as ``finetune``."""

    def __init__(self, clf: Classifier):
        super().__init__()
        self.clf = clf

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        logits = self.clf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def fresh_model(model: str, num_labels: int) -> Classifier:
    clf = Classifier.from_pretrained(model, num_labels)
    init_head(clf.head, SEED)
    return clf


def run_ours(args, model, num_labels, train_enc, val_enc) -> dict:
    clf = fresh_model(model, num_labels)
    counter = TokenCounter(clf)

    def evaluate(logits, labels):
        acc = float((logits.argmax(1) == labels).mean())
        return acc, {"accuracy": acc}

    with tempfile.TemporaryDirectory(prefix="lpft-bench-") as tmp:
        started = time.perf_counter()
        result = finetune(clf, train_enc, val_enc, epochs=1, batch_size=args.batch_size, lr=args.lr, seed=SEED,
                          evaluate=evaluate, state_dir=Path(tmp) / "state", desc="ours",
                          data_order="length", max_grad_norm=1.0)  # the defaults; "random" pads like Trainer's
        call = time.perf_counter() - started
    counter.handle.remove()
    return {"loop": result.history[0]["seconds"], "call": call, "counter": counter}


def trainer_datasets(tokenizer, examples, max_length: int):
    """The two tokenised ``datasets.Dataset`` a user would build: padded to max_length, and unpadded."""
    from datasets import Dataset

    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair for ex in examples]
    raw = Dataset.from_dict({"text": texts, "text_pair": pairs, "labels": [ex.label for ex in examples]})
    has_pairs = pairs[0] is not None

    def tokenize(batch, padding):
        second = batch["text_pair"] if has_pairs else None
        return tokenizer(batch["text"], second, truncation=True, max_length=max_length, padding=padding)

    cols = ["text", "text_pair"]
    return {TRAINER_MAX: raw.map(tokenize, batched=True, fn_kwargs={"padding": "max_length"}, remove_columns=cols),
            TRAINER_DYNAMIC: raw.map(tokenize, batched=True, fn_kwargs={"padding": False}, remove_columns=cols)}


def run_trainer(args, model, num_labels, dataset, collator) -> dict:
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    clf = fresh_model(model, num_labels)
    counter = TokenCounter(clf)
    marks = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks["begin"] = time.perf_counter()

        def on_train_end(self, *a, **k):
            marks["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="lpft-bench-") as tmp:
        started = time.perf_counter()
        training_args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, num_train_epochs=1,
            learning_rate=args.lr, weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear", max_grad_norm=1.0,
            report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
            dataloader_num_workers=0, use_cpu=True, seed=SEED, disable_tqdm=True)
        trainer = Trainer(model=TrainerModel(clf), args=training_args, train_dataset=dataset, data_collator=collator,
                          callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # no end-of-training metrics dump between the table rows
        trainer.train()
        call = time.perf_counter() - started
    counter.handle.remove()
    return {"loop": marks["end"] - marks["begin"], "call": call, "counter": counter,
            "optimizer": type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                              else trainer.optimizer).__name__ + f" ({training_args.optim})"}


def warm_up(model, num_labels, train_enc, batch_size):
    """One untimed forward/backward at full width, so thread pools and the allocator are warm for every variant."""
    clf = fresh_model(model, num_labels)
    clf.train()
    batch = collate(train_enc, list(range(min(batch_size, len(train_enc)))))
    labels = batch.pop("labels")
    F.cross_entropy(clf(**batch), labels).backward()


def round_ratios(runs: dict[str, list[dict]], variant: str, key: str) -> list[float]:
    """Per round: our examples/s over ``variant``'s (= its time / ours), each round's pair measured back to back."""
    return [other[key] / ours[key] for ours, other in zip(runs[OURS], runs[variant])]


def spread(values: list[float]) -> str:
    """``min / median / max`` of per-round values."""
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def print_round_ratios(runs: dict[str, list[dict]], variants: list[str], rounds: int) -> None:
    """Our speed-up against each baseline round by round, and its min / median / max: a median alone hides a noisy
    machine (two rounds can disagree by 2x when other jobs share the cores)."""
    print("\nspeed-up of ours (our examples/s over the baseline's), per round:")
    print(f"{'baseline':<34} {'':>4} " + " ".join(f"{f'r{r + 1}':>5}" for r in range(rounds))
          + f"  {'min / median / max':>20}")
    noisy = False
    for v in variants:
        if v == OURS:
            continue
        for key in ("loop", "call"):
            ratios = round_ratios(runs, v, key)
            print(f"{LABELS[v]:<34} {key:>4} " + " ".join(f"{x:>5.2f}" for x in ratios) + f"  {spread(ratios):>20}")
            noisy |= max(ratios) > 1.25 * min(ratios)
    if noisy:
        print("rounds disagree by more than 25%: the machine was not quiet; quote the spread, or rerun on idle cores "
              "with more --rounds")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="mrpc", help="a task with a train split (default mrpc: sentence pairs of "
                                                   "very different lengths, so padding matters)")
    p.add_argument("--data-dir", default=os.environ.get("LPFT_DATA_DIR", str(REPO.parent / "shared" / "data")))
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--n-examples", type=int, default=128, help="training examples (the first N of the train split)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps; overrides --n-examples "
                                                             "(N = steps * batch size)")
    p.add_argument("--n-validation", type=int, default=16, help="validation examples for finetune's epoch-end pass")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--rounds", type=int, default=3,
                   help="each variant runs once per round, in an order rotated each round; per-round speed-ups, "
                        "their min / median / max, and medians are reported (default 3: every variant once in every "
                        "position)")
    p.add_argument("--variants", default=f"{OURS},{TRAINER_DYNAMIC},{TRAINER_MAX}",
                   help="comma-separated subset of: " + ", ".join(LABELS))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(LABELS))
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(LABELS)}")
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.steps * args.batch_size if args.steps else args.n_examples

    import transformers
    from transformers import DataCollatorWithPadding, default_data_collator

    transformers.logging.set_verbosity_error()  # no load report per fresh model (the unused pooler weights)

    task = get_task(args.task, args.data_dir)
    examples = task.load("train")[:n]
    validation = task.load("validation")[:args.n_validation]
    n = len(examples)
    tokenizer = load_tokenizer(args.model)
    train_enc = encode(tokenizer, examples, args.max_length)
    val_enc = encode(tokenizer, validation, args.max_length)
    datasets_ = trainer_datasets(tokenizer, examples, args.max_length)
    collators = {TRAINER_MAX: default_data_collator, TRAINER_DYNAMIC: DataCollatorWithPadding(tokenizer)}
    steps = -(-n // args.batch_size)
    lengths = train_enc.lengths
    print(f"task {task.name}: {n} training examples (token length mean {lengths.mean():.1f}, max {lengths.max()}), "
          f"{steps} steps of batch {args.batch_size}, max_length {args.max_length}, model {args.model}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
          f"{args.rounds} round(s)", flush=True)

    warm_up(args.model, task.num_labels, train_enc, args.batch_size)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            if v == OURS:
                out = run_ours(args, args.model, task.num_labels, train_enc, val_enc)
            else:
                out = run_trainer(args, args.model, task.num_labels, datasets_[v], collators[v])
            assert out["counter"].examples == n, (v, out["counter"].examples, n)
            runs[v].append(out)
            print(f"  round {r + 1}: {LABELS[v]:<34} loop {out['loop']:6.1f} s  call {out['call']:6.1f} s  "
                  f"padding {out['counter'].padding_share:6.1%}", flush=True)

    med = {v: {k: statistics.median(o[k] for o in runs[v]) for k in ("loop", "call")} for v in variants}
    if OURS in variants and len(variants) > 1:
        print_round_ratios(runs, variants, args.rounds)
    print()
    header = (f"{'variant':<34} {'padding':>8} {'loop s':>7} {'ex/s':>6} {'call s':>7} {'ex/s':>6}"
              + (f" {'ours/this loop':>14} {'ours/this call':>14}" if OURS in variants else ""))
    print(header)
    print("-" * len(header))
    for v in variants:
        loop, call = med[v]["loop"], med[v]["call"]
        row = (f"{LABELS[v]:<34} {runs[v][0]['counter'].padding_share:>8.1%} {loop:>7.1f} {n / loop:>6.2f} "
               f"{call:>7.1f} {n / call:>6.2f}")
        if OURS in variants:
            ratio_loop = (n / med[OURS]["loop"]) / (n / loop)
            ratio_call = (n / med[OURS]["call"]) / (n / call)
            row += f" {ratio_loop:>14.2f} {ratio_call:>14.2f}"
        print(row)
    print("\nex/s = training examples per second (median over rounds); ratio = our examples/s over this row's "
          "(of the medians; the spread over rounds is above).")
    print("padding = pad tokens / all tokens in the training batches fed to the model.")
    trainer_opts = {runs[v][0]["optimizer"] for v in variants if v != OURS}
    if trainer_opts:
        print(f"Trainer optimiser: {', '.join(sorted(trainer_opts))}; gradient clipping at max-norm 1.0 on both sides.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
