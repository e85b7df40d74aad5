"""Pooling: how ``phi(x)`` reads one vector per input off a backbone's last hidden states.

Three rules, chosen per model (``Classifier.pooling``): the first non-padding token (the paper's ``[CLS]`` / ``<s>``
for encoders), the last one (decoder-only models: the only position that has seen the whole input under causal
attention) or the mean over them. They live apart from the classifier because the eNTK (``lpft.ntk.gradients``)
needs the same rule as a weight per position (:func:`pool_weights`) without building a model.
"""

from __future__ import annotations

import torch

from ..options import POOLINGS


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """(B, T, h) last hidden states -> (B, h): the first or last non-padding token, or the mean over them.

    Works for right and left padding alike (positions come from ``attention_mask``; ``None`` = no padding).

    >>> h = torch.arange(12.0).reshape(2, 3, 2)
    >>> right, left = torch.tensor([[1, 1, 0], [1, 1, 1]]), torch.tensor([[0, 1, 1], [1, 1, 1]])
    >>> pool(h, right, "last")[0].tolist(), pool(h, left, "last")[0].tolist(), pool(h, left, "first")[0].tolist()
    ([2.0, 3.0], [4.0, 5.0], [2.0, 3.0])
    >>> pool(h, right, "mean")[0].tolist()
    [1.0, 2.0]
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r} is unknown: expected one of {', '.join(POOLINGS)}")
    B, T = hidden_states.shape[:2]
    if attention_mask is None:
        if pooling == "mean":
            return hidden_states.mean(1)
        return hidden_states[:, 0 if pooling == "first" else T - 1]
    mask = attention_mask.to(hidden_states.device) != 0
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * m).sum(1) / m.sum(1).clamp(min=1)
    if pooling == "first":  # the smallest attended position (0 under right padding); argmax takes the first max
        idx = mask.int().argmax(-1)
    else:  # the largest attended position
        idx = T - 1 - mask.int().flip(-1).argmax(-1)
    return hidden_states[torch.arange(B, device=hidden_states.device), idx]


def pool_weights(attention_mask: torch.Tensor, pooling: str, dtype=torch.float32) -> torch.Tensor:
    """(B, T) weights ``w`` with ``pool(H, mask, pooling) == sum_t w[:, t] H[:, t]``: the derivative of the pooled
    features w.r.t. each position's hidden state (the eNTK's top cotangent)."""
    B, T = attention_mask.shape
    if pooling == "mean":
        m = (attention_mask != 0).to(dtype)
        return m / m.sum(1, keepdim=True).clamp(min=1)
    idx = pool(torch.arange(T, dtype=torch.float64).expand(B, T)[..., None], attention_mask, pooling)[:, 0].long()
    return torch.nn.functional.one_hot(idx, T).to(dtype)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions 0, 1, ... counted over attended tokens only, as Hugging Face generation does: a left-padded
    sequence then gets the same positions (and so the same last-token state) as a right-padded one."""
    position_ids = attention_mask.long().cumsum(-1) - 1
    return position_ids.masked_fill(attention_mask == 0, 1)
