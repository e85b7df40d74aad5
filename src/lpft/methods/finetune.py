"""One training loop for FT, LP-FT, LoRA and LP-LoRA: AdamW (weight decay 0), linear decay, no warmup and gradient
clipping at global norm 1.0 (Hugging Face ``Trainer``'s defaults, which the authors ran with; ``max_grad_norm=0`` is
the deviation kept as an option). Batches are length-bucketed by default (``data_order="length"``: it matched
``Trainer``'s random order within seed noise on CB, see the README); ``data_order="random"`` is the authors' order.

The loop trains whatever parameters have ``requires_grad`` (all of them for FT; LoRA factors + head for LoRA),
evaluates the validation metric after every epoch and keeps the best epoch's weights.

Resumable and deterministic: the data order of epoch ``e`` is a function of ``(seed, e)`` and the dropout RNG is
reseeded from ``(seed, e)`` at each epoch start, so a run resumed from its last finished epoch (weights + optimizer
+ scheduler saved atomically after every epoch) ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..config import ConfigError
from ..data.batching import Encoded, iterate, train_batches
from ..io import atomic_path, load_tensors, read_json, save_tensors, write_json
from ..model import Classifier, autocast, extract


class TrainingDiverged(ConfigError):
    """The loss became NaN or infinite: the run stops (no metrics, no NaN written) and names the step."""

    def __init__(self, epoch: int, step: int, value: float, what: str = "loss"):
        super().__init__(f"training diverged at epoch {epoch}, step {step}: {what} {value} — lower --lr")


@dataclass
class FinetuneResult:
    best_epoch: int
    best_metric: float
    history: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)


def trainable_state(clf: Classifier) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in clf.named_parameters() if p.requires_grad}


def load_trainable_state(clf: Classifier, state: dict[str, torch.Tensor]) -> None:
    params = dict(clf.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def _can_fuse(params: list[torch.Tensor]) -> bool | None:
    """Use PyTorch's fused AdamW where it exists (CPU and CUDA float tensors): the same update in one kernel.

    PyTorch's default on CPU updates one parameter tensor at a time; for MiniLM (22.6M parameters, 2 cores) it took
    ~5x longer than the fused kernel (0.10 s against 0.02 s per step; under load up to a quarter of an FT step, see
    ``benchmarks/train_throughput.py``). The update is the same; results differ from the unfused one only by float
    rounding (~1e-7), and the fused kernel is deterministic.
    ``None`` keeps PyTorch's default elsewhere (other devices or dtypes). A run resumed from an optimizer state saved
    without fusing continues the way it started (the saved state carries the flag).
    """
    ok = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64,
                                                                            torch.float16, torch.bfloat16)
                              for p in params)
    return True if ok else None


def _step_record(clf: Classifier, step: int, loss: float, logits: torch.Tensor) -> dict:
    w, b = clf.head_norms()
    return {"step": step, "loss": loss, "head_weight_norm": w, "head_bias_norm": b,
            "mean_logit_norm": float(logits.detach().norm(dim=1).mean())}


def finetune(clf: Classifier, train: Encoded, validation: Encoded | None, *, epochs: int, batch_size: int,
             lr: float, seed: int, evaluate: Callable[[np.ndarray, np.ndarray], tuple[float, dict]] | None,
             state_dir: Path,
             weight_decay: float = 0.0, max_grad_norm: float | None = 1.0, data_order: str = "length",
             log_every: int = 10, eval_batch_size: int = 64,
             desc: str = "fine-tune", on_epoch_end: Callable[[int, Classifier], None] | None = None,
             precision: str = "fp32") -> FinetuneResult:
    """Train ``clf`` in place; on return it holds the best epoch's weights.

    ``evaluate(logits, labels) -> (primary metric, metrics dict)`` scores the validation set after every epoch.
    With ``validation=None`` nothing is evaluated and the last epoch's weights are kept.
    ``state_dir`` holds the resume state; it is removed once training has finished.
    ``max_grad_norm``: clip the gradient of all trainable parameters to this global L2 norm before each step, as
    ``Trainer`` does (``None`` or 0: no clipping). ``data_order``: ``random`` or ``length``
    (:func:`lpft.data.batching.train_batches`).
    ``precision="bf16"`` runs the forward passes (training and validation) under bf16 autocast; the loss, the
    parameters, their gradients and the optimiser state stay fp32.
    """
    state_dir = Path(state_dir)
    device = next(clf.parameters()).device
    params = [p for p in clf.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=_can_fuse(params))
    steps_per_epoch = len(train_batches(train, batch_size, seed, 0, data_order))
    total = steps_per_epoch * epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / total))
    result, start_epoch = _resume(clf, optimizer, scheduler, state_dir)
    step = start_epoch * steps_per_epoch

    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        torch.manual_seed(seed * 100_003 + epoch)  # dropout stream of this epoch, independent of resume
        clf.train()
        losses = []
        batches = train_batches(train, batch_size, seed, epoch, data_order)
        bar = tqdm(iterate(train, batches), total=len(batches), desc=f"{desc} {epoch + 1}/{epochs}", leave=False,
                   unit="batch")
        for _, batch in bar:
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            with autocast(device, precision):
                logits = clf(**batch)
            loss = F.cross_entropy(logits.float(), labels)
            if not torch.isfinite(loss):  # every later number would be NaN: stop before anything records it
                raise TrainingDiverged(epoch + 1, step + 1, loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss.item())
            if step % log_every == 0 or step == 1:
                result.steps.append(_step_record(clf, step, losses[-1], logits))
                bar.set_postfix(loss=f"{np.mean(losses[-log_every:]):.4f}")
        w, b = clf.head_norms()
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "head_weight_norm": w, "head_bias_norm": b}
        if validation is None:  # nothing to select by: every epoch supersedes the previous one
            primary, metrics, improved = float(epoch + 1), {}, True
        else:
            val_feats, val_logits = extract(clf, validation, eval_batch_size, logits=True, precision=precision)
            if not np.isfinite(val_logits).all():  # the epoch's last update broke the weights after a finite loss
                raise TrainingDiverged(epoch + 1, step, float(val_logits[~np.isfinite(val_logits)][0]),
                                       "validation logit")
            primary, metrics = evaluate(val_logits, validation.labels)
            row.update(validation=metrics, mean_logit_norm=float(np.linalg.norm(val_logits, axis=1).mean()))
            improved = primary > result.best_metric
        result.history.append({**row, "seconds": time.perf_counter() - started})
        if improved:
            result.best_epoch, result.best_metric = epoch + 1, float(primary)
        _save_epoch(clf, optimizer, scheduler, state_dir, epoch + 1, result, improved)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, clf)
        tqdm.write(epoch_line(desc, epoch + 1, epochs, float(np.mean(losses)), metrics, improved))

    load_trainable_state(clf, load_tensors(state_dir / "best.safetensors"))
    return result


def _save_epoch(clf, optimizer, scheduler, state_dir: Path, epoch: int, result: FinetuneResult, improved: bool):
    """Write this epoch's state, then the progress pointer, then drop the previous epoch's files."""
    state = trainable_state(clf)
    save_tensors(state_dir / f"epoch-{epoch}.safetensors", state)
    with atomic_path(state_dir / f"epoch-{epoch}-optimizer.pt") as tmp:
        # torch format is unavoidable for optimizer state; it holds only tensors and numbers and is read back
        # with weights_only=True, so loading it cannot run code.
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp)
    if improved:
        save_tensors(state_dir / f"best-{epoch}.safetensors", state)
    write_json(state_dir / "progress.json", {
        "epoch": epoch, "best_epoch": result.best_epoch, "best_metric": result.best_metric,
        "history": result.history, "steps": result.steps,
    })
    if improved:  # the pointer now names this epoch as best: make best.safetensors follow it
        (state_dir / f"best-{epoch}.safetensors").replace(state_dir / "best.safetensors")
    for old in (f"epoch-{epoch - 1}.safetensors", f"epoch-{epoch - 1}-optimizer.pt"):
        (state_dir / old).unlink(missing_ok=True)


def _resume(clf, optimizer, scheduler, state_dir: Path) -> tuple[FinetuneResult, int]:
    progress_path = state_dir / "progress.json"
    if not progress_path.exists():
        if state_dir.exists():
            shutil.rmtree(state_dir)
        state_dir.mkdir(parents=True)
        return FinetuneResult(best_epoch=0, best_metric=-np.inf), 0
    progress = read_json(progress_path)
    epoch = progress["epoch"]
    best = state_dir / f"best-{progress['best_epoch']}.safetensors"
    if best.exists():  # killed between writing the pointer and renaming the best weights
        best.replace(state_dir / "best.safetensors")
    load_trainable_state(clf, load_tensors(state_dir / f"epoch-{epoch}.safetensors"))
    saved = torch.load(state_dir / f"epoch-{epoch}-optimizer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    tqdm.write(f"resuming after epoch {epoch} from {state_dir}")
    best_metric = -np.inf if progress["best_metric"] is None else progress["best_metric"]  # -inf is saved as null
    return FinetuneResult(progress["best_epoch"], best_metric, progress["history"],
                          progress["steps"]), epoch


def epoch_line(desc: str, epoch: int, epochs: int, train_loss: float, metrics: dict, best: bool) -> str:
    """The console line after each epoch; "best so far" marks the epochs whose weights are kept (the last one
    marked is the model the run ends with).

    >>> epoch_line("LP-FT (seed 0)", 2, 3, 0.18871, {"accuracy": 0.972972, "f1": 0.5}, True)
    'LP-FT (seed 0) epoch 2/3: train loss 0.1887, validation accuracy 0.9730, f1 0.5000 (best so far)'
    >>> epoch_line("NTK predict: fine-tune", 1, 1, 0.5, {}, True)  # no validation metrics: nothing to rank
    'NTK predict: fine-tune epoch 1/1: train loss 0.5000'
    """
    line = f"{desc} epoch {epoch}/{epochs}: train loss {train_loss:.4f}"
    if metrics:
        line += ", validation " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
        line += " (best so far)" if best else ""
    return line
