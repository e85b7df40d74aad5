"""Slow, transparent eNTK computations to check :mod:`lpft.ntk.kernels` against (tests, benchmarks).

* :func:`jacobian_entk` — the textbook recipe: ``torch.func.jacrev`` gives each sample's full Jacobian of the
  logits w.r.t. every trainable parameter (dense, word embeddings included), then explicit contraction
  ``J_a J_b^T``. Memory is N * C * (#parameters) numbers.
* :func:`authors_entk` — the paper's route: per sample, the reverse-mode Jacobian of all h feature units
  (h backward passes), each projected on the fly by V0 into the C logit-gradient rows, then contraction.

Both run one sample at a time without padding, in sample order (row ``i * C + c``), on the model as is.

Example::

    >>> import torch
    >>> from transformers import BertConfig
    >>> from lpft.model import Classifier
    >>> cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    ...                  vocab_size=50)
    >>> clf = Classifier.from_config(cfg, num_labels=2)
    >>> rows = [{"input_ids": torch.tensor([2, 7, 3])}, {"input_ids": torch.tensor([2, 9, 9, 3])}]
    >>> jacobian_entk(clf, rows)["full"].shape
    (4, 4)
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, jacrev

from .gradients import sample_rows


def _trainable(clf) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in clf.named_parameters() if p.requires_grad}


def logit_jacobians(clf, samples) -> dict[str, torch.Tensor]:
    """Per-sample Jacobians of the logits w.r.t. each trainable parameter: name -> (N*C, numel), sample-major."""
    rows = sample_rows(samples)
    params = _trainable(clf)
    was = clf.training
    clf.eval()
    try:
        per_sample = []
        for row in rows:
            inputs = {k: v[None] for k, v in row.items()}
            jac = jacrev(lambda p, inputs=inputs: functional_call(clf, p, (), inputs)[0])(params)
            per_sample.append({n: j.reshape(j.shape[0], -1) for n, j in jac.items()})
    finally:
        clf.train(was)
    return {n: torch.cat([j[n] for j in per_sample]) for n in params}


def jacobian_entk(clf, samples_a, samples_b=None) -> dict[str, np.ndarray]:
    """eNTK by full Jacobians: ``{"full", "head", "backbone"}`` kernels (N_a*C, N_b*C), float64 numpy.

    ``head`` contracts over the head's parameters (= P when the head is trainable), ``backbone`` over the
    trainable backbone parameters (= F), ``full`` over all trainable parameters.
    """
    ja = logit_jacobians(clf, samples_a)
    jb = ja if samples_b is None else logit_jacobians(clf, samples_b)
    rows, cols = next(iter(ja.values())).shape[0], next(iter(jb.values())).shape[0]
    out = {}
    for part, prefix in (("head", "head."), ("backbone", "backbone."), ("full", "")):
        K = torch.zeros(rows, cols, dtype=torch.float64)
        for n in ja:
            if n.startswith(prefix):
                K += ja[n].double() @ jb[n].double().T
        out[part] = K.numpy()
    return out


def authors_logit_gradients(clf, sample: dict, buffer_bytes: int = 2**30) -> dict[str, torch.Tensor]:
    """One sample's logit gradients w.r.t. the trainable backbone parameters, the authors' way: backpropagate
    each of the h feature units of phi(x) (h backward passes, dense gradients) and project by V0; returns
    name -> (C, numel). The projection is done for blocks of feature units as one matmul ``V0[:, block] @ J_block``
    (``buffer_bytes`` bounds the block), so the baseline is not slowed by per-unit updates."""
    params = [(n, p) for n, p in clf.backbone.named_parameters() if p.requires_grad]
    sizes = [p.numel() for _, p in params]
    total = sum(sizes)
    V0 = clf.head.weight.detach()
    was = clf.training
    clf.eval()
    try:
        with torch.enable_grad():
            phi = clf.features(**{k: v[None] for k, v in sample.items()})[0]
            h = phi.shape[0]
            block = max(1, min(h, buffer_bytes // (4 * total)))
            J = torch.zeros(V0.shape[0], total, dtype=V0.dtype)
            buf = torch.empty(block, total, dtype=V0.dtype)
            for k0 in range(0, h, block):
                k1 = min(h, k0 + block)
                for j, k in enumerate(range(k0, k1)):
                    grads = torch.autograd.grad(phi[k], [p for _, p in params], retain_graph=k + 1 < h,
                                                allow_unused=True)
                    torch.cat([torch.zeros(n) if g is None else g.reshape(-1) for g, n in zip(grads, sizes)],
                              out=buf[j])
                # rows += sum_k V0[:, k] d phi_k / d theta (computed transposed: MKL is faster that way round)
                J.T.addmm_(buf[: k1 - k0].T, V0[:, k0:k1].T)
    finally:
        clf.train(was)
    return dict(zip([n for n, _ in params], J.split(sizes, dim=1)))


def authors_entk(clf, samples) -> np.ndarray:
    """F over the given samples (N*C, N*C), float64, from :func:`authors_logit_gradients`."""
    per_sample = [authors_logit_gradients(clf, row) for row in sample_rows(samples)]
    K = torch.zeros((), dtype=torch.float64)
    for n in per_sample[0]:
        J = torch.cat([g[n] for g in per_sample]).double()
        K = K + J @ J.T
    return K.numpy()
