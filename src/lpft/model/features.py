"""Feature extraction: ``phi(x)`` (and the head's logits) for a whole encoded split, in eval mode.

LP trains its head on these features, the feature caches store them, and the analyses (feature change, calibration,
t-SNE) read them; one function computes them, so all of them agree to the bit.
"""

from __future__ import annotations

import torch

from .classifier import Classifier
from .device import autocast


@torch.no_grad()
def extract(clf: Classifier, enc, batch_size: int = 64, desc: str | None = None, logits: bool = False,
            precision: str = "fp32"):
    """Features phi(x) (N, h) — and logits (N, C) if asked — for every encoded example, in eval mode.

    Batches are formed by length (little padding) and results scattered back to the original order. Results are
    float32 whatever the ``precision`` the passes ran in (bf16: :func:`autocast`).
    """
    from tqdm.auto import tqdm

    from ..data.batching import eval_batches, iterate

    was_training = clf.training
    clf.eval()
    device = next(clf.parameters()).device
    feats = logit_rows = None
    batches = eval_batches(enc, batch_size)
    for idx, batch in tqdm(iterate(enc, batches), total=len(batches), desc=desc, disable=desc is None,
                           leave=False, unit="batch"):
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        with autocast(device, precision):
            phi = clf.features(**inputs)
            head_out = clf.head(phi) if logits else None
        if feats is None:
            dtype = torch.float32 if phi.dtype == torch.bfloat16 else phi.dtype  # NumPy has no bfloat16
            feats = torch.empty(len(enc), phi.shape[1], dtype=dtype)
            logit_rows = torch.empty(len(enc), clf.num_labels, dtype=dtype) if logits else None
        feats[idx] = phi.to(feats.dtype).cpu()
        if logits:
            logit_rows[idx] = head_out.to(logit_rows.dtype).cpu()
    clf.train(was_training)
    return (feats.numpy(), logit_rows.numpy()) if logits else feats.numpy()
