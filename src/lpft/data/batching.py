"""Tokenisation and batching with little padding waste.

Examples are tokenised once (no padding) and padded per batch. Training batches come in one of two orders
(``DATA_ORDERS``), both a pure function of (seed, epoch):

* ``length`` (default): *length bucketing*: shuffle, cut into pools of ``pool_batches`` batches, sort each pool by
  length, form batches, shuffle the batch order. Each batch then holds similar lengths, so padding is a small share
  of the tokens (see ``benchmarks/train_throughput.py``) while the order stays random. On CB it gave the same test
  accuracy, Diff(F) and Norm(C) as ``random`` within seed noise (README, "Protocol").
* ``random`` (the authors' setup): a fresh random permutation every epoch cut into consecutive batches, as Hugging
  Face ``Trainer``'s ``RandomSampler`` does (the last batch may be smaller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..config import ConfigError
from ..options import DATA_ORDERS  # noqa: F401  (the choices live with the other option constants)
from .base import Example


@dataclass
class Encoded:
    """Tokenised examples: ragged token ids (and token type ids when the tokenizer makes them) plus labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def subset(self, indices: Sequence[int]) -> "Encoded":
        idx = list(indices)
        return Encoded([self.input_ids[i] for i in idx],
                       None if self.token_type_ids is None else [self.token_type_ids[i] for i in idx],
                       self.labels[idx], self.pad_token_id)


def encode(tokenizer, examples: Sequence[Example], max_length: int = 128) -> Encoded:
    """Tokenise examples (pairs as tokenizer pairs), truncating to ``max_length`` tokens, without padding."""
    ids: list[list[int]] = [None] * len(examples)  # type: ignore[list-item]
    types: list[list[int]] | None = [None] * len(examples)  # type: ignore[list-item]
    singles = [i for i, ex in enumerate(examples) if ex.text_pair is None]
    pairs = [i for i, ex in enumerate(examples) if ex.text_pair is not None]
    for group in (singles, pairs):
        if not group:
            continue
        # Below this the tokenizer cannot truncate (the special tokens alone do not fit) and silently returns whole
        # examples, which then overflow the position embeddings: refuse instead.
        needed = tokenizer.num_special_tokens_to_add(pair=group is pairs) + (2 if group is pairs else 1)
        if max_length < needed:
            kind = "sentence pairs" if group is pairs else "single texts"
            raise ConfigError(f"--max-length {max_length} is too short for {kind}: this tokenizer needs at least "
                              f"{needed} (its special tokens plus one token of each text)")
        texts = [examples[i].text for i in group]
        second = [examples[i].text_pair for i in group] if group is pairs else None
        out = tokenizer(texts, second, truncation=True, max_length=max_length)
        for j, i in enumerate(group):
            ids[i] = out["input_ids"][j]
            if types is not None:
                if "token_type_ids" in out:
                    types[i] = out["token_type_ids"][j]
                else:
                    types = None
    labels = np.array([ex.label for ex in examples], dtype=np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(ids, types, labels, pad)


def collate(enc: Encoded, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to the longest of them; returns model inputs plus ``labels``."""
    rows = [enc.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), enc.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        input_ids[k, : len(r)] = torch.tensor(r)
        attention_mask[k, : len(r)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if enc.token_type_ids is not None:
        token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)
        for k, i in enumerate(indices):
            t = enc.token_type_ids[i]
            token_type_ids[k, : len(t)] = torch.tensor(t)
        batch["token_type_ids"] = token_type_ids
    batch["labels"] = torch.as_tensor(enc.labels[list(indices)])
    return batch


def train_batches(enc: Encoded, batch_size: int, seed: int, epoch: int, order: str = "length",
                  pool_batches: int = 50) -> list[list[int]]:
    """The batches of one epoch in ``order`` (``length`` or ``random``); a pure function of (seed, epoch) so a
    resumed run matches.

    >>> enc = Encoded([[1] * n for n in (5, 1, 9, 2, 7)], None, np.zeros(5, dtype=np.int64), 0)
    >>> sorted(i for b in train_batches(enc, 2, seed=0, epoch=0) for i in b)
    [0, 1, 2, 3, 4]
    >>> [len(b) for b in train_batches(enc, 2, seed=0, epoch=0, order="random")]
    [2, 2, 1]
    """
    if order not in DATA_ORDERS:
        raise ValueError(f"data order {order!r}: expected one of {', '.join(DATA_ORDERS)}")
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(enc))
    if order == "random":
        return [perm[i:i + batch_size].tolist() for i in range(0, len(perm), batch_size)]
    lengths = enc.lengths
    batches: list[list[int]] = []
    pool = batch_size * pool_batches
    for start in range(0, len(perm), pool):
        chunk = perm[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def eval_batches(enc: Encoded, batch_size: int) -> list[list[int]]:
    """Batches of similar length for inference (sorted by length); callers scatter results back by index."""
    order = np.argsort(enc.lengths, kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def iterate(enc: Encoded, batches: list[list[int]]) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    for idx in batches:
        yield idx, collate(enc, idx)
