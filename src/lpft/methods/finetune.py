"""One training loop for FT, LP-FT, LoRA and LP-LoRA: AdamW (weight decay 0), linear decay, no warmup and gradient
clipping at global norm 1.0 (Hugging Face ``Trainer``'s defaults, which the authors ran with; ``max_grad_norm=0`` is
the deviation kept as an option). Batches are length-bucketed by default (``data_order="length"``: it matched
``Trainer``'s random order within seed noise on CB, see the README); ``data_order="random"`` is the authors' order.

The loop trains whatever parameters have ``requires_grad`` (all of them for FT; LoRA factors + head for LoRA),
evaluates the validation metric after every epoch and keeps the best epoch's weights.

Resumable and deterministic: the data order of epoch ``e`` is a function of ``(seed, e)`` and the dropout RNG is
reseeded from ``(seed, e)`` at each epoch start, so a run resumed from a checkpoint (weights + optimizer +
scheduler, and the RNG state when taken inside an epoch, saved atomically) ends with the same numbers as an
uninterrupted one. Checkpoints cost time (~270 MB for MiniLM FT), so they are written by time, not by epoch
(``checkpoint_every`` seconds, checked at the end of each epoch), and when the process is asked to stop (SIGINT,
SIGTERM: after the current step). The best epoch's weights are kept in memory and written once, with the next
checkpoint; a finished run writes none of it.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..data.batching import Encoded, iterate, train_batches
from ..errors import TrainingDiverged as TrainingDiverged  # re-exported (defined in lpft.errors)
from ..io import atomic_path, load_tensors, read_json, save_tensors, write_json
from ..model import Classifier, autocast, extract
from ..timing import phase


@dataclass
class FinetuneResult:
    best_epoch: int
    best_metric: float
    history: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # the best epoch's weights


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
             precision: str = "fp32", checkpoint_every: float = 300.0) -> FinetuneResult:
    """Train ``clf`` in place; on return it holds the best epoch's weights.

    ``evaluate(logits, labels) -> (primary metric, metrics dict)`` scores the validation set after every epoch.
    With ``validation=None`` nothing is evaluated and the last epoch's weights are kept.
    ``state_dir`` holds the resume state; it is removed once training has finished.
    ``max_grad_norm``: clip the gradient of all trainable parameters to this global L2 norm before each step, as
    ``Trainer`` does (``None`` or 0: no clipping). ``data_order``: ``random`` or ``length``
    (:func:`lpft.data.batching.train_batches`).
    ``precision="bf16"`` runs the forward passes (training and validation) under bf16 autocast; the loss, the
    parameters, their gradients and the optimiser state stay fp32.
    ``checkpoint_every``: seconds between resume checkpoints, checked at the end of each epoch (0: after every
    epoch, as lpft 0.2 did). SIGINT / SIGTERM (from the main thread's point of view) stop training after the
    current step with a checkpoint there, then raise KeyboardInterrupt; a second signal stops at once.
    """
    state_dir = Path(state_dir)
    device = next(clf.parameters()).device
    params = [p for p in clf.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=_can_fuse(params))
    steps_per_epoch = len(train_batches(train, batch_size, seed, 0, data_order))
    total = steps_per_epoch * epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / total))
    with phase("checkpoint"):
        run = _resume(clf, optimizer, scheduler, state_dir)
    result = run.result
    step = run.epoch * steps_per_epoch + run.batch
    last_checkpoint = time.monotonic()
    if run.epoch == epochs > 0 and on_epoch_end is not None:
        # resumed from the checkpoint taken after the last epoch: its end-of-epoch hook may have been cut off (a
        # kill or a full disk between that checkpoint and the hook), so it runs again, on the same weights
        on_epoch_end(epochs, clf)

    with _StopOnSignal() as stop:
        for epoch in range(run.epoch, epochs):
            started = time.perf_counter() - (run.epoch_seconds if epoch == run.epoch else 0.0)
            skip = run.batch if epoch == run.epoch else 0
            if skip:  # resumed inside this epoch: the dropout stream goes on where it stopped
                _set_rng_state(run.rng, device)
            else:
                torch.manual_seed(seed * 100_003 + epoch)  # dropout stream of this epoch, independent of resume
            clf.train()
            losses = list(run.epoch_losses) if skip else []
            batches = train_batches(train, batch_size, seed, epoch, data_order)
            bar = tqdm(iterate(train, batches[skip:]), total=len(batches), initial=skip,
                       desc=f"{desc} {epoch + 1}/{epochs}", leave=False, unit="batch")
            for done, (_, batch) in enumerate(bar, start=skip + 1):
                with phase("forward_backward"):
                    batch = {k: v.to(device) for k, v in batch.items()}
                    labels = batch.pop("labels")
                    with autocast(device, precision):
                        logits = clf(**batch)
                    loss = F.cross_entropy(logits.float(), labels)
                    if not torch.isfinite(loss):  # every later number would be NaN: stop before anything records it
                        raise TrainingDiverged(epoch + 1, step + 1, loss.item())
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    losses.append(loss.item())
                with phase("optimizer"):
                    if max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                step += 1
                if step % log_every == 0 or step == 1:
                    result.steps.append(_step_record(clf, step, losses[-1], logits))
                    bar.set_postfix(loss=f"{np.mean(losses[-log_every:]):.4f}")
                if stop.requested and done < len(batches):  # mid-epoch: the position, the losses, the RNG
                    with phase("checkpoint"):
                        _save_checkpoint(clf, optimizer, scheduler, state_dir, result, epoch, done, losses,
                                         time.perf_counter() - started, device)
                    raise KeyboardInterrupt
            w, b = clf.head_norms()
            row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "head_weight_norm": w,
                   "head_bias_norm": b}
            if validation is None:  # nothing to select by: every epoch supersedes the previous one
                primary, metrics, improved = float(epoch + 1), {}, True
            else:
                with phase("eval"):
                    val_feats, val_logits = extract(clf, validation, eval_batch_size, logits=True,
                                                    precision=precision)
                    if not np.isfinite(val_logits).all():  # the epoch's last update broke the weights
                        raise TrainingDiverged(epoch + 1, step, float(val_logits[~np.isfinite(val_logits)][0]),
                                               "validation logit")
                    primary, metrics = evaluate(val_logits, validation.labels)
                row.update(validation=metrics, mean_logit_norm=float(np.linalg.norm(val_logits, axis=1).mean()))
                improved = primary > result.best_metric
            result.history.append({**row, "seconds": time.perf_counter() - started})
            if improved:
                with phase("checkpoint"):  # in memory; written with the next resume checkpoint, once
                    result.best_epoch, result.best_metric = epoch + 1, float(primary)
                    result.best_state = trainable_state(clf)
            due = time.monotonic() - last_checkpoint >= checkpoint_every
            if due or stop.requested:
                with phase("checkpoint"):
                    _save_checkpoint(clf, optimizer, scheduler, state_dir, result, epoch + 1, 0, [], 0.0, device)
                last_checkpoint = time.monotonic()
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, clf)
            tqdm.write(epoch_line(desc, epoch + 1, epochs, float(np.mean(losses)), metrics, improved))
            if stop.requested:
                raise KeyboardInterrupt

    if result.best_state is not None:
        with phase("checkpoint"):
            load_trainable_state(clf, result.best_state)
    return result


class _StopOnSignal:
    """While training: SIGINT / SIGTERM set ``requested`` (the loop checkpoints after the current step and stops);
    a second signal raises KeyboardInterrupt at once. Outside the main thread (where Python cannot install signal
    handlers, e.g. some Ray or notebook setups) it does nothing and signals act as usual."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write(f"{signal.Signals(signum).name}: stopping after this step with a resume checkpoint "
                   "(send it again to stop at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


@dataclass
class _Resumed:
    result: FinetuneResult
    epoch: int = 0  # finished epochs
    batch: int = 0  # finished batches of the next epoch (a checkpoint taken on a signal)
    epoch_losses: list = field(default_factory=list)
    epoch_seconds: float = 0.0
    rng: dict | None = None


def _rng_state(device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save_checkpoint(clf, optimizer, scheduler, state_dir: Path, result: FinetuneResult, epoch: int, batch: int,
                     epoch_losses: list, epoch_seconds: float, device) -> None:
    """The resume state after ``epoch`` finished epochs and ``batch`` batches of the next: the trainable weights,
    optimiser + scheduler (+ RNG inside an epoch), the best weights if not written yet, then the progress pointer
    naming those files (written last, atomically), then the files it no longer names are removed."""
    step = scheduler.last_epoch
    weights, opt = f"weights-{step}.safetensors", f"optimizer-{step}.pt"
    save_tensors(state_dir / weights, trainable_state(clf))
    with atomic_path(state_dir / opt) as tmp:
        # torch format is unavoidable for optimizer state; it holds only tensors and numbers and is read back
        # with weights_only=True, so loading it cannot run code.
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    **({"rng": _rng_state(device)} if batch else {})}, tmp)
    best = f"best-{result.best_epoch}.safetensors" if result.best_state is not None else None
    if best is not None and not (state_dir / best).exists():  # each best epoch's weights are written once
        save_tensors(state_dir / best, result.best_state)
    write_json(state_dir / "progress.json", {
        "epoch": epoch, "batch": batch, "weights": weights, "optimizer": opt, "best": best,
        "best_epoch": result.best_epoch, "best_metric": result.best_metric, "history": result.history,
        "steps": result.steps, "epoch_losses": epoch_losses, "epoch_seconds": epoch_seconds,
    })
    for path in state_dir.iterdir():
        if path.name not in {"progress.json", weights, opt, best}:
            path.unlink(missing_ok=True)


def _resume(clf, optimizer, scheduler, state_dir: Path) -> _Resumed:
    progress_path = state_dir / "progress.json"
    if not progress_path.exists():
        if state_dir.exists():
            shutil.rmtree(state_dir)
        state_dir.mkdir(parents=True)
        return _Resumed(FinetuneResult(best_epoch=0, best_metric=-np.inf))
    progress = read_json(progress_path)
    epoch, batch = progress["epoch"], progress.get("batch", 0)
    if "weights" in progress:
        weights, opt, best = progress["weights"], progress["optimizer"], progress["best"]
    else:  # resume state of lpft 0.2 (a checkpoint after every epoch; best.safetensors renamed after the pointer)
        weights, opt, best = f"epoch-{epoch}.safetensors", f"epoch-{epoch}-optimizer.pt", "best.safetensors"
        if (state_dir / f"best-{progress['best_epoch']}.safetensors").exists():
            best = f"best-{progress['best_epoch']}.safetensors"
    load_trainable_state(clf, load_tensors(state_dir / weights))
    saved = torch.load(state_dir / opt, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    where = f"in epoch {epoch + 1} after batch {batch}" if batch else f"after epoch {epoch}"
    tqdm.write(f"resuming {where} from {state_dir}")
    best_metric = -np.inf if progress["best_metric"] is None else progress["best_metric"]  # -inf is saved as null
    result = FinetuneResult(progress["best_epoch"], best_metric, progress["history"], progress["steps"],
                            load_tensors(state_dir / best) if best and (state_dir / best).exists() else None)
    return _Resumed(result, epoch, batch, progress.get("epoch_losses", []), progress.get("epoch_seconds", 0.0),
                    saved.get("rng"))


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
