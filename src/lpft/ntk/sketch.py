"""A sketched FT-effective kernel: F estimated from K-dimensional random projections of the logit gradients.

The exact F (:mod:`.kernels`) costs a dense (N*C) x (N*C) Gram over every backbone parameter: its time grows as
(N*C)^2 * 22.7M on MiniLM. Here each per-(sample, class) gradient row g (all trainable backbone parameters) is
projected to ``dim`` = K numbers by a *block sign projection* (a CountSketch with a structured hash), applied to
each gradient block as the exact engine streams it, and F is estimated by the Gram of the projections:

    y = S g,    y[b] = sum over parameters j with h(j) = b of s(j) g[j]        (b = 0 .. K-1)
    F_hat(x, x') = y(x) . y(x')

* **Hash.** Parameter j of a parameter group (a weight, or a stage's other parameters concatenated; the name of the
  group fixes it, not how the engine slices it) goes to bucket ``h(j) = (offset + j) mod K``; ``offset`` is a fixed
  function of the group's name, so small groups (biases, LayerNorms) spread over the buckets. Consecutive
  parameters never collide; parameters K apart do.
* **Signs.** s(j) = +-1, independent and uniform, drawn per group from ``seed`` (the estimator's seed, recorded).
  That is the only randomness, and it makes F_hat **unbiased**: E[s(j) s(k)] = [j = k].
* **Variance** of one entry, exactly (the hash is fixed, the signs random), with A_b(g) = sum_{h(j)=b} g_j^2,
  C_b = sum_{h(j)=b} g_j g'_j and D_b = sum_{h(j)=b} g_j^2 g'_j^2:

      Var F_hat(g, g') = sum_b [ A_b(g) A_b(g') + C_b^2 - 2 D_b ]

  about (|g|^2 |g'|^2 + (g.g')^2) / K when the gradient's mass spreads evenly over the buckets, as for a CountSketch
  with a random hash: the relative error of an entry falls as 1/sqrt(K), and the mean of S independent sketches
  (seeds) converges to F at the rate sqrt(Var / S). ``tests/ntk/test_ntk_sketch.py`` checks both in float64.

Cost: one multiply-add per gradient entry (memory-bound, about the cost of writing the gradient once) plus the final
(N*C) x (N*C) x K Gram, instead of the (N*C)^2 x 22.7M exact Gram; memory: the (N*C) x K float32 projections.
The word-embedding block stays sparse: each token adds its cotangent to the buckets of its id's row.

What a sketch cannot give: the **rank** of F or P + F (a Gram of K-dimensional vectors has rank <= K, and the noise
fills the spectrum's tail), so ``lpft ntk --sketch`` reports no rank for them. P stays exact (it is cheap).

Example (tiny random BERT; with K far above the number of parameters the sketch is close to exact)::

    >>> import torch
    >>> from transformers import BertConfig
    >>> from lpft.model import Classifier
    >>> from lpft.ntk import compute_kernels
    >>> cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    ...                  vocab_size=50)
    >>> clf = Classifier.from_config(cfg, num_labels=2)
    >>> train = {"input_ids": torch.tensor([[2, 7, 9, 3], [2, 5, 3, 0]]),
    ...          "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    >>> exact = compute_kernels(clf, train, dtype=torch.float64)
    >>> approx = compute_kernels(clf, train, dtype=torch.float64, sketch=2**16, sketch_seed=0)
    >>> float(abs(approx.F_train - exact.F_train).max() / abs(exact.F_train).max()) < 0.1
    True
"""

from __future__ import annotations

import hashlib

import torch

from .blocks import DenseBlock, EmbeddingBlock


def _digest(*parts) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(map(str, parts)).encode()).digest()[:8], "little")


class Sketch:
    """The projections ``Y`` (rows x dim) of every gradient row, accumulated block by block (``add``).

    ``dim``: K, the number of buckets. ``seed``: the signs. ``dtype``: of Y (float32 is plenty: a bucket sums
    ~P/K signed terms, and the sketch's own error is ~1/sqrt(K)).
    """

    def __init__(self, dim: int, seed: int, rows: int, dtype: torch.dtype = torch.float32):
        if dim < 1:
            raise ValueError(f"sketch dimension must be >= 1, got {dim}")
        self.dim, self.seed = int(dim), int(seed)
        self.Y = torch.zeros(rows, self.dim, dtype=dtype)

    def offset(self, group: str) -> int:
        """Bucket of the group's first parameter (fixed by the name, not the seed)."""
        return _digest("offset", group) % self.dim

    def signs(self, group: str, size: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The +-1 signs of all ``size`` parameters of ``group`` (reproducible from ``seed`` and the name)."""
        gen = torch.Generator().manual_seed(_digest("signs", self.seed, group) % 2**63)
        bits = torch.randint(0, 2, (size,), generator=gen, dtype=torch.int8)
        return (bits * 2 - 1).to(dtype or self.Y.dtype)

    def projection(self, group: str, size: int, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Buckets and signs of parameters ``start .. start+count-1`` of ``group`` (the reference the tests use)."""
        j = torch.arange(start, start + count)
        return (self.offset(group) + j) % self.dim, self.signs(group, size)[start:start + count]

    def add(self, block: DenseBlock | EmbeddingBlock) -> None:
        if isinstance(block, EmbeddingBlock):
            self._add_embedding(block)
        else:
            self._add_dense(block)

    def _add_dense(self, block: DenseBlock) -> None:
        G = block.G
        count = G.shape[1]
        rows = slice(block.row0, block.row0 + G.shape[0])  # a part of the rows (see LogitGradients' row_parts)
        group = block.param or block.name
        size = block.param_size or count
        s = self.signs(group, size, G.dtype)[block.offset:block.offset + count]
        K, Y = self.dim, self.Y
        a, b = 0, (self.offset(group) + block.offset) % K
        while a < count:  # runs of consecutive columns that land in consecutive buckets
            L = min(K - b, count - a)
            if G.dtype == Y.dtype:
                Y[rows, b:b + L].addcmul_(G[:, a:a + L], s[a:a + L])  # in place: no copy of the block
            else:
                Y[rows, b:b + L] += (G[:, a:a + L] * s[a:a + L]).to(Y.dtype)
            a, b = a + L, 0

    def _add_embedding(self, block: EmbeddingBlock, tokens_per_step: int = 8192) -> None:
        n_tok = len(block.ids)
        if n_tok == 0:
            return
        C, dim = block.delta.shape[1], block.delta.shape[2]
        group = block.name
        size = (block.num_embeddings or int(block.ids.max()) + 1) * dim
        s = self.signs(group, size, block.delta.dtype)
        off, K = self.offset(group), self.dim
        cls = torch.arange(C)
        d_idx = torch.arange(dim)
        flat = self.Y.view(-1)
        root = block.scale ** 0.5  # the block's Gram is scaled by `scale`
        for t0 in range(0, n_tok, tokens_per_step):
            ids = block.ids[t0:t0 + tokens_per_step]
            param = ids[:, None] * dim + d_idx  # (T, dim) flat parameter index
            vals = block.delta[t0:t0 + tokens_per_step] * s[param][:, None, :]  # (T, C, dim)
            if root != 1.0:
                vals = vals * root
            rows = block.sample[t0:t0 + tokens_per_step][:, None] * C + cls  # (T, C)
            index = rows[:, :, None] * K + ((off + param) % K)[:, None, :]  # (T, C, dim)
            flat.index_add_(0, index.reshape(-1), vals.reshape(-1).to(flat.dtype))

    def gram(self, ncols: int, num_labels: int) -> torch.Tensor:
        """F_hat in batch order: (rows, ncols * C) float64, ``ncols`` leading (train) samples."""
        # the exact engine's Gram of a dense block: float32 slabs summed in float64, upper block triangle only
        return DenseBlock("sketch", self.Y, self.Y.shape[0] // num_labels).gram(ncols)
