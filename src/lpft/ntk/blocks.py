"""Gradient blocks: one parameter group's per-sample logit gradients and their Gram (kernel) contribution.

Rows are ``p * C + c`` (sample at batch position ``p``, class ``c``); ``gram(ncols)`` returns the float64
(R, ncols * C) product with the first ``ncols`` samples (the train set).

Example::

    >>> import torch
    >>> G = torch.arange(12.0).reshape(4, 3)           # 2 samples x C = 2 classes, 3 parameters
    >>> DenseBlock("w", G, num_samples=2).gram(2).shape
    torch.Size([4, 4])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DenseBlock:
    """Per-sample gradients of one parameter group: ``G`` is (R, P_g), row ``i * C + c``. Its columns are
    parameters ``offset .. offset + P_g - 1`` of ``param`` (``param_size`` parameters in all; the whole group when
    ``param`` is empty), which a sketch (:mod:`.sketch`) needs to give a parameter the same bucket however the
    group is sliced. ``row0``: the first row's index among all rows (not 0 when the engine cut the rows into parts;
    such a block is a part of the rows and has no Gram of its own)."""

    name: str
    G: torch.Tensor
    num_samples: int
    param: str = ""
    offset: int = 0
    param_size: int = 0
    row0: int = 0

    def gram(self, ncols: int, slab: int = 32768, block_rows: int = 256) -> torch.Tensor:
        """``G @ G[:ncols*C].T`` as float64, (R, ncols*C); ``ncols`` = number of leading (train) samples.

        Column slabs keep the float32 products short (accuracy) and cache-sized (speed); the square train x train
        part is symmetric, so only its upper block triangle is multiplied and then mirrored.
        """
        G = self.G
        R, P = G.shape
        C = R // self.num_samples
        m = ncols * C
        out = torch.zeros(R, m, dtype=torch.float64)
        edges = list(range(0, m, block_rows)) + [m]
        for s in range(0, P, slab):
            x = G[:, s:s + slab]
            xt = x[:m]
            for a0, a1 in zip(edges[:-1], edges[1:]):
                out[a0:a1, a0:] += (x[a0:a1] @ xt[a0:].T).double()
            if R > m:
                out[m:] += (x[m:] @ xt.T).double()
        for a0, a1 in zip(edges[:-1], edges[1:]):  # mirror the upper block triangle
            out[a1:m, a0:a1] = out[a0:a1, a1:m].T
        return out


@dataclass
class EmbeddingBlock:
    """An embedding weight's per-sample gradients, kept sparse: token ``k`` of sample ``sample[k]`` has row id
    ``ids[k]`` and output cotangent ``delta[k]`` (C, dim); sample i's gradient row v is the sum over its tokens
    with id v. ``scale`` multiplies the block (1 / kept fraction when rows are subsampled)."""

    name: str
    sample: torch.Tensor
    ids: torch.Tensor
    delta: torch.Tensor
    num_samples: int
    scale: float = 1.0
    num_embeddings: int = 0  # rows of the weight (0: unknown)

    def gram(self, ncols: int) -> torch.Tensor:
        """The block's kernel contribution (R, ncols*C) in float64: a sum over the ids two samples share."""
        n, C = self.num_samples, self.delta.shape[1]
        out = torch.zeros(n * C, ncols * C, dtype=torch.float64)
        if len(self.ids) == 0:
            return out
        # aggregate each sample's tokens per id: S[k] is sample s[k]'s gradient row v[k] (C, dim)
        keys, inv = torch.unique(self.ids * n + self.sample, return_inverse=True)
        S = torch.zeros(len(keys), *self.delta.shape[1:], dtype=self.delta.dtype).index_add_(0, inv, self.delta)
        v, s = keys // n, keys % n
        _, counts = torch.unique_consecutive(v, return_counts=True)
        cls = torch.arange(C)
        starts = torch.cumsum(counts, 0) - counts
        # ids seen in one sample only touch that sample's own C x C block
        single = starts[counts == 1]
        single = single[s[single] < ncols]
        if len(single):
            blocks = torch.einsum("kcd,ked->kce", S[single], S[single]).double()
            r = (s[single][:, None] * C + cls).reshape(-1, C)
            out.index_put_((r[:, :, None].expand(-1, C, C).reshape(-1), r[:, None, :].expand(-1, C, C).reshape(-1)),
                           blocks.reshape(-1), accumulate=True)
        for o, k in zip(starts[counts > 1].tolist(), counts[counts > 1].tolist()):
            ss = s[o:o + k]
            X = S[o:o + k].reshape(k * C, -1)
            rows = (ss[:, None] * C + cls).reshape(-1)
            keep = ss < ncols
            if not keep.any():
                continue
            cols = rows.reshape(k, C)[keep].reshape(-1)
            out[rows[:, None], cols[None, :]] += (X @ X.reshape(k, C, -1)[keep].reshape(len(cols), -1).T).double()
        return out * self.scale if self.scale != 1.0 else out
