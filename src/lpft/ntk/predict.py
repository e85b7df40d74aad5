"""Predict the logit change of a short fine-tuning from the eNTK at its start (paper Eq. 1) and compare with reality.

Eq. 1 (first order in the parameter change, i.e. the kernel regime)::

    f_FT(x) - f0(x)  ~=  sum_i w_i Theta(x, x_i) delta_i,      delta_i = e_{y_i} - softmax(f0(x_i))

**The scale w_i.** For plain SGD on the batch-mean cross-entropy, a step ``s`` on batch ``B_s`` moves the parameters
by ``(lr_s / |B_s|) sum_{i in B_s} J(x_i)^T delta_i`` (minus the CE gradient is ``J^T delta``), so to first order
the logits move by ``(lr_s / |B_s|) sum_{i in B_s} Theta(x, x_i) delta_i``. Over one epoch every train sample is in
exactly one batch, so ``w_i = lr_{s(i)} / |B_{s(i)}|`` with the run's schedule ``lr_s = lr (1 - s / T)`` (linear
decay to 0 over the ``T`` steps of the run, no warm-up). With equal batches this is ``w = lr (T + 1) / (2 T B)``,
i.e. the "effective eta" ``lr * epochs / B`` of the kernel equation, halved by the linear decay.
:func:`schedule_weights` gives these exact per-sample weights from the real batch order (:func:`train_batches`).

**Adam.** The real training loop (:func:`lpft.methods.finetune.finetune`) uses AdamW, which rescales each
coordinate of the gradient (its first steps are close to ``lr * sign(g)``), so the SGD scale does not carry over
and the direction is only approximately the kernel's. We therefore report, on the test samples:

* ``cosine``: scale-free cosine similarity between predicted and actual change (all (sample, class) entries);
* ``rel_error_sgd_scale``: ``||pred - actual|| / ||actual||`` with the SGD scale above;
* ``fitted_scale`` (``alpha`` minimising ``||alpha pred - actual||``, as a multiple of the SGD scale) and
  ``rel_error_fitted`` (``= sqrt(1 - cosine^2)`` when cosine > 0);
* the same cosine for the P-only and F-only parts of the prediction, and for the train samples.

**Eq. 2 (features).** ``phi_FT(x) - phi0(x) ~= sum_i w_i J(x) J(x_i)^T V0^T delta_i`` with ``J = d phi0 / d theta``
over the trainable backbone parameters and the same ``w_i``, ``delta_i``. :func:`predicted_feature_change` computes it
without any kernel: ``g = sum_i w_i J(x_i)^T V0^T delta_i`` is one backward pass of the scalar
``sum_i w_i <V0^T delta_i, phi(x_i)>``, and ``J(x) g`` is a directional derivative (double-backward trick).

``optimizer="sgd"`` runs the same batches and schedule with plain SGD (:func:`sgd_finetune`), where Eq. 1 is exact
as ``lr -> 0`` — a check of the kernel itself.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

OPTIMIZERS = ("adamw", "sgd")


def schedule_weights(train, batch_size: int, seed: int, lr: float, epochs: int = 1,
                     data_order: str = "length") -> np.ndarray:
    """``w_i`` for the real batch order of ``train`` (an ``Encoded``) under ``lr_s = lr (1 - s / T)``."""
    from ..data.batching import train_batches

    per_epoch = [train_batches(train, batch_size, seed, e, data_order) for e in range(epochs)]
    total = sum(len(b) for b in per_epoch)
    w = np.zeros(len(train))
    step = 0
    for batches in per_epoch:
        for idx in batches:
            w[np.asarray(idx)] += lr * max(0.0, 1.0 - step / total) / len(idx)
            step += 1
    return w


def predicted_change(K: np.ndarray, delta: np.ndarray, weights: np.ndarray, num_labels: int) -> np.ndarray:
    """``sum_i w_i K(x, x_i) delta_i`` as (M, C); ``K`` (M*C, N*C) sample-major, ``delta`` (N*C,)."""
    return (K @ (np.repeat(weights, num_labels) * delta)).reshape(-1, num_labels)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a), np.ravel(b)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float("nan")


def compare(pred: np.ndarray, actual: np.ndarray) -> dict:
    """Cosine, relative error at the given scale, least-squares scale factor and the relative error after it."""
    pred, actual = np.ravel(pred), np.ravel(actual)
    na = float(np.linalg.norm(actual))
    pp = float(pred @ pred)
    alpha = float(pred @ actual / pp) if pp > 0 else float("nan")
    return {"cosine": cosine(pred, actual),
            "rel_error_sgd_scale": float(np.linalg.norm(pred - actual) / na) if na > 0 else float("nan"),
            "fitted_scale": alpha,
            "rel_error_fitted": float(np.linalg.norm(alpha * pred - actual) / na) if na > 0 and pp > 0
            else float("nan"),
            "actual_norm": na, "predicted_norm": float(np.sqrt(pp))}


def sgd_finetune(clf, train, *, batch_size: int, lr: float, seed: int, epochs: int = 1,
                 data_order: str = "length") -> None:
    """The training loop of :func:`lpft.methods.finetune.finetune` (same batches, schedule, dropout seeding) with
    plain SGD instead of AdamW and no gradient clipping (Eq. 1's first-order step)."""
    import torch.nn.functional as F

    from ..data.batching import iterate, train_batches

    device = next(clf.parameters()).device
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    total = len(train_batches(train, batch_size, seed, 0, data_order)) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total))
    for epoch in range(epochs):
        torch.manual_seed(seed * 100_003 + epoch)
        clf.train()
        for _, batch in iterate(train, train_batches(train, batch_size, seed, epoch, data_order)):
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            loss = F.cross_entropy(clf(**batch), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    clf.eval()


def disable_dropout(model) -> None:
    """Set every dropout probability of ``model`` to 0 (modules and attention's ``dropout_prob``)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "dropout_prob", None), float):
            m.dropout_prob = 0.0
        if isinstance(getattr(m, "attention_dropout", None), float):
            m.attention_dropout = 0.0


def actual_change(clf, train, test, *, batch_size: int, lr: float, seed: int, weight_decay: float = 0.0,
                  epochs: int = 1, optimizer: str = "adamw", eval_batch_size: int = 64, dropout: bool = True,
                  features: bool = False, max_grad_norm: float | None = 1.0, data_order: str = "length") -> tuple:
    """Fine-tune a copy of ``clf`` on ``train`` for ``epochs`` epochs and return the logit change (eval mode) on
    (train, test) of the model after the last epoch (no validation-based selection).

    ``optimizer="adamw"`` is the real training loop (with its ``max_grad_norm`` clipping and ``data_order``);
    ``"sgd"`` the same batches and schedule with plain, unclipped SGD.

    ``dropout=False`` switches every dropout of the copy off during training (the kernel is taken without dropout,
    so only then is Eq. 1 exact as ``lr -> 0``). ``features=True`` returns
    ``(logit change train, logit change test, feature change train, feature change test)`` instead."""
    from ..methods.finetune import finetune
    from ..model.features import extract

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    before = [extract(clf, enc, eval_batch_size, logits=True) for enc in (train, test)]
    model = copy.deepcopy(clf)
    if not dropout:
        disable_dropout(model)
    if optimizer == "sgd":
        sgd_finetune(model, train, batch_size=batch_size, lr=lr, seed=seed, epochs=epochs, data_order=data_order)
    else:
        with tempfile.TemporaryDirectory(prefix="lpft-ntk-predict-") as tmp:
            finetune(model, train, None, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, evaluate=None,
                     state_dir=Path(tmp) / "state", weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                     data_order=data_order, log_every=10 ** 9, eval_batch_size=eval_batch_size,
                     desc="NTK predict: fine-tune")
    after = [extract(model, enc, eval_batch_size, logits=True) for enc in (train, test)]
    del model
    d_logits = [a[1].astype(np.float64) - b[1].astype(np.float64) for a, b in zip(after, before)]
    if not features:
        return d_logits[0], d_logits[1]
    d_feats = [a[0].astype(np.float64) - b[0].astype(np.float64) for a, b in zip(after, before)]
    return d_logits[0], d_logits[1], d_feats[0], d_feats[1]


def _backbone_params(clf) -> list:
    return [p for p in clf.backbone.parameters() if p.requires_grad]


def feature_gradient(clf, train, delta: np.ndarray, weights: np.ndarray, eval_batch_size: int = 64) -> list:
    """``g = sum_i w_i J(x_i)^T V0^T delta_i`` over the trainable backbone parameters (eval mode, no dropout):
    the gradient of ``sum_i w_i <V0^T delta_i, phi(x_i)>``; ``delta`` (N, C) or (N*C,)."""
    from ..data.batching import eval_batches, iterate

    params = _backbone_params(clf)
    device = next(clf.parameters()).device
    was_training = clf.training
    clf.eval()
    V0 = clf.head.weight.detach()
    coef = torch.as_tensor(np.asarray(delta, dtype=np.float64).reshape(len(train), -1)
                           * np.asarray(weights, dtype=np.float64)[:, None], device=device)
    grads = [torch.zeros_like(p) for p in params]
    try:
        for idx, batch in iterate(train, eval_batches(train, eval_batch_size)):
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            phi = clf.features(**inputs)
            u = (coef[idx].to(V0.dtype) @ V0).to(phi.dtype)  # rows w_i V0^T delta_i, (B, h)
            got = torch.autograd.grad((phi * u).sum(), params, allow_unused=True)
            for acc, g in zip(grads, got):
                if g is not None:
                    acc += g
    finally:
        clf.train(was_training)
    return grads


def directional_features(clf, enc, direction: list, eval_batch_size: int = 64) -> np.ndarray:
    """``J(x) g`` for every example of ``enc`` as (M, h): the change of ``phi(x)`` along the parameter direction
    ``g`` (a list matching the trainable backbone parameters), by double backward, eval mode."""
    from ..data.batching import eval_batches, iterate

    params = _backbone_params(clf)
    device = next(clf.parameters()).device
    was_training = clf.training
    clf.eval()
    out: np.ndarray | None = None
    try:
        for idx, batch in iterate(enc, eval_batches(enc, eval_batch_size)):
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            phi = clf.features(**inputs)
            u = torch.zeros_like(phi, requires_grad=True)
            vjp = torch.autograd.grad(phi, params, grad_outputs=u, create_graph=True, allow_unused=True)
            pairs = [(v, g) for v, g in zip(vjp, direction) if v is not None and v.requires_grad]
            if pairs:
                (jg,) = torch.autograd.grad([v for v, _ in pairs], u, grad_outputs=[g for _, g in pairs])
            else:
                jg = torch.zeros_like(phi)
            if out is None:
                out = np.zeros((len(enc), phi.shape[1]))
            out[idx] = jg.detach().cpu().double().numpy()
    finally:
        clf.train(was_training)
    return out if out is not None else np.zeros((0, 0))  # no examples: an empty (0, h) array has no h to give


def predicted_feature_change(clf, train, test, delta: np.ndarray, weights: np.ndarray, eval_batch_size: int = 64
                             ) -> np.ndarray:
    """Eq. 2: ``sum_i w_i J(x) J(x_i)^T V0^T delta_i`` for every test example, (M, h), without a kernel."""
    g = feature_gradient(clf, train, delta, weights, eval_batch_size)
    return directional_features(clf, test, g, eval_batch_size)


def predict_and_compare(kernels, clf, train, test, train_logits: np.ndarray, *, batch_size: int, lr: float,
                        seed: int, weight_decay: float = 0.0, epochs: int = 1, optimizer: str = "adamw",
                        eval_batch_size: int = 64, dropout: bool = True, max_grad_norm: float | None = 1.0,
                        data_order: str = "length") -> dict:
    """Eq. 1 prediction from ``kernels`` (at ``clf``'s current parameters) against a real fine-tuning of a copy.

    Returns a JSON-ready dict: the setting, the SGD scale, and :func:`compare` results for the full kernel on test
    and train, plus cosines of the P-only and F-only predictions on test, and ``features_test``: :func:`compare` for
    the Eq. 2 feature-change prediction on test.
    """
    from .stats import residuals

    C = kernels.num_labels
    delta = residuals(train_logits, train.labels)
    w = schedule_weights(train, batch_size, seed, lr, epochs, data_order)
    pred_feat = predicted_feature_change(clf, train, test, delta, w, eval_batch_size)
    d_train, d_test, _, f_test = actual_change(clf, train, test, batch_size=batch_size, lr=lr, seed=seed,
                                               weight_decay=weight_decay, epochs=epochs, optimizer=optimizer,
                                               eval_batch_size=eval_batch_size, dropout=dropout, features=True,
                                               max_grad_norm=max_grad_norm, data_order=data_order)
    pred_test = predicted_change(kernels.full_test, delta, w, C)
    pred_train = predicted_change(kernels.full_train, delta, w, C)
    return {
        "optimizer": optimizer, "dropout": dropout, "epochs": epochs, "lr": lr, "batch_size": batch_size,
        "max_grad_norm": max_grad_norm if optimizer == "adamw" else None, "data_order": data_order,
        "mean_sgd_weight": float(w.mean()),
        "scale_note": "w_i = lr_s(i) / |B_s(i)|, lr_s = lr (1 - s/T): first-order SGD; fitted_scale is a "
                      "multiple of it",
        "test": compare(pred_test, d_test),
        "train": compare(pred_train, d_train),
        "test_cosine_P_only": cosine(predicted_change(kernels.P_test, delta, w, C), d_test),
        "test_cosine_F_only": cosine(predicted_change(kernels.F_test, delta, w, C), d_test),
        "features_test": compare(pred_feat, f_test),
        "features_note": "Eq. 2: phi_FT(x) - phi0(x) ~= sum_i w_i J(x) J(x_i)^T V0^T delta_i over the trainable "
                         "backbone parameters, same w_i",
    }
