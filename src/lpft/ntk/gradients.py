"""Per-sample logit gradients w.r.t. the backbone, streamed in memory-bounded blocks.

The FT-effective kernel ``F(x, x') = V0 J(x) J(x')^T V0^T`` (paper Prop. 4.1) needs, for every sample ``x`` and
class ``c``, the gradient ``g_c(x) = d f_c(x) / d theta`` of one logit w.r.t. the trainable backbone parameters:
C vector-Jacobian products per sample, not the h needed to form ``d phi / d theta`` first.

How the work is organised, and why:

* **Stages.** The backbone is cut into a chain (the embeddings module, then each encoder layer) whose inputs are
  recorded in one ordinary forward pass. Going from the top stage down, each stage is re-run on its recorded input
  with ``torch.func`` (``vmap`` over samples of a ``vjp``, ``vmap`` over the C logit cotangents); the input
  cotangent it returns is the output cotangent of the stage below. The backward pass is thus done once, and memory
  holds the hidden states plus one stage's per-sample quantities. The chain is checked on the first batch (each
  stage called once, outputs feeding the next stage, every trainable parameter inside exactly one stage); a
  backbone that fails the check is one stage, run sample by sample (exact, slower). See :mod:`.stages`.
* **Row parts** (``row_parts=True``, for estimators that treat each gradient row on its own, as the sketch does):
  the recorded stage inputs and the cotangents grow with N outside the blocks' budget, so when they would pass a
  fifth of ``memory_budget`` the batches are cut into consecutive *parts* that each fit; each part is recorded
  again (one more forward pass in all) and run top-down alone, and its blocks hold only its rows (``row0``).
* **Factored modules.** For ``nn.Linear`` (and GPT-2's ``Conv1D``) and ``nn.Embedding`` the per-sample weight
  gradient is ``sum_t delta_t a_t^T``: the cotangent at the module output (got by adding a zero *probe* to the
  output and differentiating w.r.t. it) times the module input. Storing ``(a, delta)`` instead of dense gradients lets
  a big
  weight be cut into blocks of output rows without re-running anything, and keeps embedding gradients sparse in
  the token ids: the word-embedding block of the kernel is a sum over the ids two samples share, with no dense
  ``vocab x h`` gradient ever formed. See :mod:`.blocks`.
* **Other trainable parameters** (biases, LayerNorm, anything else) get dense per-sample gradients from the
  ``vjp`` directly.

The kernel is taken over the backbone parameters with ``requires_grad=True``: all of them for full fine-tuning,
only the adapter factors for a PEFT/LoRA-wrapped backbone. Dropout is off (eval mode). Padding never changes a
sample's gradient: pad keys are masked, so the cotangent at every pad position is exactly zero.

Row ``p * C + c`` of every block is class ``c`` of the sample at position ``p`` in *batch order* (samples are
batched by length; ``order[p]`` is the sample's index); ``to_sample_order`` maps a Gram back to sample order.

Example (tiny random BERT; each block's Gram matrix is one term of F)::

    >>> import torch
    >>> from transformers import BertConfig
    >>> from lpft.model import Classifier
    >>> cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    ...                  vocab_size=50)
    >>> clf = Classifier.from_config(cfg, num_labels=3)
    >>> batch = {"input_ids": torch.tensor([[2, 7, 9, 3], [2, 5, 3, 0]]),
    ...          "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    >>> grads = LogitGradients(clf, batch, dtype=torch.float64)
    >>> F = grads.to_sample_order(sum(block.gram(2) for block in grads.blocks()), 2)
    >>> F.shape
    torch.Size([6, 6])
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vjp, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..model.pooling import pool, pool_weights
from ..options import DEFAULT_MEMORY_BUDGET as DEFAULT_MEMORY_BUDGET  # re-exported (defined in lpft.options)
from .blocks import DenseBlock, EmbeddingBlock
from .stages import (
    Call,
    Recorder,
    Stage,
    Taps,
    candidate_stages,
    fill_stage,
    first_tensor,
    out_in,
    split_call,
    word_embeddings,
)

#: Share of the memory budget the recorded stage inputs and cotangents of one row part may take (``row_parts``).
INPUT_SHARE = 0.2

#: Pass target standing for a stage's direct (non-factored) parameters; factored targets are module names, and
#: "" is one too (a stage that *is* an embedding module).
DIRECT = ":direct"


# ----------------------------------------------------------------------------------------------------------------
# samples


def sample_rows(samples) -> list[dict[str, torch.Tensor]]:
    """Normalise a sample set to a list of unpadded per-sample dicts (``input_ids``, ``attention_mask``, ...).

    ``samples`` is an :class:`lpft.data.batching.Encoded`, a padded batch ``{"input_ids": (B, T), ...}`` (right or
    left padding is trimmed using ``attention_mask``), or a list of per-sample dicts.
    """
    if hasattr(samples, "input_ids") and hasattr(samples, "pad_token_id"):  # Encoded
        rows = []
        for i, ids in enumerate(samples.input_ids):
            row = {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(len(ids), dtype=torch.long)}
            if samples.token_type_ids is not None:
                row["token_type_ids"] = torch.tensor(samples.token_type_ids[i])
            rows.append(row)
        return rows
    if isinstance(samples, Mapping):
        ids = samples["input_ids"]
        mask = samples.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if samples.get(k) is not None]
        rows = []
        for b in range(ids.shape[0]):
            nz = torch.nonzero(mask[b]).flatten()
            start, end = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, ids.shape[1])
            rows.append({k: torch.as_tensor(samples[k][b, start:end]) if k != "attention_mask"
                         else mask[b, start:end].long() for k in keys})
        return rows
    return [dict(r) for r in samples]


def pad_rows(rows: Sequence[Mapping[str, torch.Tensor]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad per-sample dicts into one batch (pad id for ``input_ids``, 0 elsewhere)."""
    width = max(len(r["input_ids"]) for r in rows)
    out = {}
    for key in dict.fromkeys(k for r in rows for k in r):  # a key missing in some rows (token types): zeros
        fill = pad_token_id if key == "input_ids" else 0
        t = torch.full((len(rows), width), fill, dtype=torch.long)
        for b, r in enumerate(rows):
            if key in r:
                t[b, : len(r[key])] = r[key]
            elif key == "attention_mask":
                t[b, : len(r["input_ids"])] = 1
        out[key] = t
    return out


def _chunks(rows, max_tokens: int, max_batch: int, split: int) -> list[list[int]]:
    """Batches of similar length (longest first), padded size * width <= max_tokens; samples before and after
    ``split`` never share a batch, so in batch order the first ``split`` samples stay first."""
    chunks = []
    for part in (range(split), range(split, len(rows))):
        order = sorted(part, key=lambda i: -len(rows[i]["input_ids"]))
        cur: list[int] = []
        for i in order:
            width = len(rows[cur[0]]["input_ids"]) if cur else 0
            if cur and ((len(cur) + 1) * width > max_tokens or len(cur) >= max_batch):
                chunks.append(cur)
                cur = []
            cur.append(i)
        if cur:
            chunks.append(cur)
    return chunks


# ----------------------------------------------------------------------------------------------------------------
# the engine


class LogitGradients:
    """Stream the per-sample logit gradients of ``clf``'s trainable backbone parameters as blocks.

    ``samples``: see :func:`sample_rows`. ``dtype``: float32 (fast) or float64 (tests); a model of another dtype is
    copied. ``memory_budget`` (bytes) bounds the large buffers (see :data:`DEFAULT_MEMORY_BUDGET`).
    ``embedding_fraction``: ``None`` (exact, default) or p in (0, 1]: an *approximation* that keeps each
    word-embedding parameter (entry of the vocab x h matrix) with probability p (``seed``) and scales that block by
    1/p (unbiased); the paper kept 10 % of these parameters.
    ``max_tokens``: padded tokens per batch. ``split``: the first ``split`` samples (the train set) come first
    in batch order, so a block's ``gram(split)`` is (all x train). ``staged=False`` forces the one-stage,
    sample-by-sample path (``None``: staged whenever the chain check passes). ``row_parts``: blocks may hold a part
    of the rows (see the module docstring), which bounds the memory of row-wise estimators; a Gram needs all rows.

    Attributes: ``features`` (N, h) float64 phi0; ``num_labels``; ``parts`` (chunk ranges, one unless the rows are
    cut); ``group_names`` (the work units in order: the parameter groups, each prefixed ``rows a:b`` when there
    are several parts); ``staged`` (False when the backbone runs as one stage, sample by sample).
    """

    def __init__(self, clf, samples, *, dtype: torch.dtype = torch.float32,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, embedding_fraction: float | None = None,
                 seed: int = 0, max_tokens: int = 2048, max_batch: int = 64, staged: bool | None = None,
                 split: int | None = None, row_parts: bool = False):
        if embedding_fraction is not None and not 0 < embedding_fraction <= 1:
            raise ValueError(f"embedding_fraction must be in (0, 1], got {embedding_fraction}")
        model_dtype = next(clf.parameters()).dtype
        self.model = clf if model_dtype == dtype else copy.deepcopy(clf).to(dtype)
        self.dtype, self.budget = dtype, int(memory_budget)
        self.embedding_fraction, self.seed = embedding_fraction, seed
        self.num_labels = self.model.head.out_features
        backbone = self.model.backbone
        pad = getattr(getattr(backbone, "config", None), "pad_token_id", None)
        if pad is None:
            pad = getattr(samples, "pad_token_id", 0) or 0
        self.rows = sample_rows(samples)
        self.num_samples = len(self.rows)
        if not self.rows:
            raise ValueError("no samples: the eNTK needs at least one")
        self.pad_token_id = int(pad)
        self.split = self.num_samples if split is None else int(split)
        self.chunks = _chunks(self.rows, max_tokens, max_batch, self.split)
        # blocks use *batch order*: position p holds sample order[p]; `to_sample_order` maps a Gram back
        self.order = np.array([i for idx in self.chunks for i in idx], dtype=np.int64)
        self._starts = np.cumsum([0] + [len(idx) for idx in self.chunks])
        self.V0 = self.model.head.weight.detach().to(dtype)
        self.pooling = getattr(self.model, "pooling", "first")  # which positions phi(x) reads (see lpft.model.pool)
        self.word_embedding = word_embeddings(backbone)
        with self._eval():
            self.stages, self.staged = self._plan(staged is not False)
            self._record(INPUT_SHARE * self.budget if row_parts else math.inf)
        self.parts = self._cut_parts(INPUT_SHARE * self.budget if row_parts else math.inf)
        self.plans = [self._plan_groups(c0, c1) for c0, c1 in self.parts]
        self.plan = self.plans[0]
        self.group_names = [self._unit(i, g) for i, plan in enumerate(self.plans) for p in plan for g in p["groups"]]

    # -- setup ---------------------------------------------------------------------------------------------------

    @contextmanager
    def _eval(self):
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.train(was)

    def _batch(self, idx) -> dict[str, torch.Tensor]:
        return pad_rows([self.rows[i] for i in idx], self.pad_token_id)

    def _plan(self, try_stages: bool) -> tuple[list[Stage], bool]:
        """Cut the backbone into verified stages, or fall back to one stage run sample by sample."""
        backbone = self.model.backbone
        stages = candidate_stages(backbone) if try_stages else None
        if stages is not None and self._verify(stages):
            return stages, True
        whole = Stage("", backbone, False)
        rec = Recorder([whole], watch=list(backbone.modules()))
        with rec():
            backbone(**self._batch(self.chunks[0][:1]))
        fill_stage(whole, rec.counts)
        return [whole], False

    def _verify(self, stages: list[Stage]) -> bool:
        """Check on one batch that the stages form an exact chain (see the module docstring)."""
        backbone = self.model.backbone
        rec = Recorder(stages, watch=list(backbone.modules()), keep_outputs=True)
        idx = self.chunks[0][:2]
        self._probe_batch = len(idx)
        with rec(), torch.enable_grad():
            out = first_tensor(backbone(**self._batch(idx)))
        if rec.stage_counts != [1] * len(stages):
            return False
        for k in range(1, len(stages)):
            prev, args = rec.outputs[k - 1], rec.calls[k][0]
            if not args or not torch.is_tensor(args[0]) or not (args[0] is prev or torch.equal(args[0], prev)):
                return False
        if not torch.equal(rec.outputs[-1], out):
            return False
        # captured side inputs (masks, position ids) must not depend on trainable parameters
        for k, (args, kwargs) in enumerate(rec.calls):
            leaves, _ = tree_flatten((tuple(args)[1:] if stages[k].hidden_input else tuple(args), kwargs))
            if any(torch.is_tensor(x) and x.requires_grad for x in leaves):
                return False
        seen: dict[int, int] = {}
        for st in stages:
            for p in st.module.parameters():
                if p.requires_grad:
                    if id(p) in seen:
                        return False
                    seen[id(p)] = 1
        if set(seen) != {id(p) for p in backbone.parameters() if p.requires_grad}:
            return False
        for st in stages:
            fill_stage(st, rec.counts)
        return self._try_vmap(stages, rec)

    def _try_vmap(self, stages, rec) -> bool:
        """Run each distinct stage type once under vmap (one sample) so unsupported ops fall back early."""
        tried = set()
        for k, st in enumerate(stages):
            if type(st.module) in tried:
                continue
            tried.add(type(st.module))
            args, kwargs = rec.calls[k]
            args = tuple(a.detach() if torch.is_tensor(a) else a for a in args)
            call = split_call(args, kwargs, self._probe_batch, st.hidden_input)
            call.leaves = [x[:1] if i in call.batched or i == call.hidden else x for i, x in enumerate(call.leaves)]
            out = first_tensor(rec.outputs[k])
            cot = torch.zeros(1, self.num_labels, *out.shape[1:], dtype=out.dtype)
            try:
                self._run_batch(st, call, targets=(), need_h=st.hidden_input, cot=cot, vmapped=True)
            except (RuntimeError, NotImplementedError, ValueError):  # e.g. vmap over data-dependent branches
                return False
        return True

    def _record(self, keep_bytes: float = math.inf) -> None:
        """The recording forward pass: each stage's call per batch, factored modules' shapes, features phi0, and
        the bytes each batch holds while a part runs (``_input_bytes``). The calls are kept while they fit in
        ``keep_bytes``; past it none are (``calls`` is None), and each part records its own (:meth:`_record_calls`)."""
        backbone = self.model.backbone
        watch = [m for st in self.stages for m in st.factored.values()]
        self.calls: list[list[Call]] | None = []
        self.shapes: list[dict[int, tuple]] = []
        self._out_width: list[tuple] = []
        self._pool_weights: list[torch.Tensor] = []
        self._input_bytes: list[int] = []
        feats = torch.zeros(self.num_samples, self.V0.shape[1], dtype=torch.float64)
        for idx in self.chunks:
            rec = Recorder(self.stages, watch=watch)
            batch = self._batch(idx)
            with rec():
                out = first_tensor(backbone(**batch))
            calls = [split_call(rec.calls[k][0], rec.calls[k][1], len(idx), st.hidden_input)
                     for k, st in enumerate(self.stages)]
            # the recorded per-sample inputs, plus a stage's output and input cotangents (B, C, T, h) each
            cot = len(idx) * self.num_labels * math.prod(out.shape[1:]) * torch.finfo(self.dtype).bits // 8
            self._input_bytes.append(_tensor_bytes(calls) + 2 * cot)
            if self.calls is not None:
                self.calls.append(calls)
                if sum(self._input_bytes) > keep_bytes:
                    self.calls = None  # more than one part: each records its own
            self.shapes.append(rec.shapes)
            # rows are unpadded and batches right-padded: each row's tokens are its first len(row) positions
            lengths = torch.tensor([len(self.rows[i]["input_ids"]) for i in idx])
            mask = (torch.arange(out.shape[1])[None, :] < lengths[:, None]).long()
            feats[idx] = pool(out, mask, self.pooling).double()
            self._pool_weights.append(pool_weights(mask, self.pooling, self.dtype))
            self._out_width.append(tuple(out.shape[1:]))
        self.features = feats.numpy()

    def _record_calls(self, c0: int, c1: int) -> list[list[Call]]:
        """The stage calls of batches ``c0 .. c1-1``, recorded again (the row parts' forward pass)."""
        if self.calls is not None:
            return self.calls[c0:c1]
        calls = []
        for c in range(c0, c1):
            idx = self.chunks[c]
            rec = Recorder(self.stages)
            with rec():
                self.model.backbone(**self._batch(idx))
            calls.append([split_call(rec.calls[k][0], rec.calls[k][1], len(idx), st.hidden_input)
                          for k, st in enumerate(self.stages)])
        return calls

    def _cut_parts(self, cap: float) -> list[tuple[int, int]]:
        """Consecutive batch ranges whose recorded inputs and cotangents fit in ``cap`` bytes (a batch at least)."""
        if self.calls is not None:
            return [(0, len(self.chunks))]
        parts, c0, used = [], 0, 0
        for c, nbytes in enumerate(self._input_bytes):
            if c > c0 and used + nbytes > cap:
                parts.append((c0, c))
                c0, used = c, 0
            used += nbytes
        parts.append((c0, len(self.chunks)))
        return parts

    def _unit(self, part: int, group: str) -> str:
        """Name of one unit of work: the group, prefixed by the part's rows when the rows are cut."""
        if len(self.parts) == 1:
            return group
        c0, c1 = self.parts[part]
        return f"rows {int(self._starts[c0]) * self.num_labels}:{int(self._starts[c1]) * self.num_labels} {group}"

    # -- planning ------------------------------------------------------------------------------------------------

    def _plan_groups(self, c0: int, c1: int) -> list[dict]:
        """Passes (stage, targets) top-down over batches ``c0 .. c1-1`` and the gradient blocks each yields, sized
        to the budget."""
        C, item = self.num_labels, torch.finfo(self.dtype).bits // 8
        rows = int(self._starts[c1] - self._starts[c0]) * C
        cache_cap, block_cap = 0.4 * self.budget, 0.3 * self.budget
        plan = []
        lowest = min((k for k, st in enumerate(self.stages) if st.factored or st.direct), default=len(self.stages))
        for k in range(len(self.stages) - 1, lowest - 1, -1):
            st = self.stages[k]
            targets, cost = [], []
            if st.direct:
                targets.append(DIRECT)
                cost.append(rows * sum(p.numel() for p in st.direct.values()) * item)
            for name, m in st.factored.items():
                nbytes = 0
                for idx, shapes in zip(self.chunks[c0:c1], self.shapes[c0:c1]):
                    ins, outs = shapes[id(m)]
                    nbytes += len(idx) * (math.prod(ins) * (8 if isinstance(m, nn.Embedding) else item)
                                          + C * math.prod(outs) * item)
                targets.append(name)
                cost.append(nbytes)
            passes: list[list[str]] = []
            cur: list[str] = []
            used = 0.0
            for t, c in zip(targets, cost):
                if cur and used + c > cache_cap:
                    passes.append(cur)
                    cur, used = [], 0.0
                cur.append(t)
                used += c
            passes.append(cur)
            for j, tg in enumerate(passes):
                groups = []
                for t in tg:
                    if t == DIRECT:
                        total = sum(p.numel() for p in st.direct.values())
                        groups += _slices(f"{st.name}:other", total, int(block_cap // (rows * item)))
                        continue
                    m = st.factored[t]
                    full = _weight_name(st, t)
                    if isinstance(m, nn.Embedding):
                        groups.append(full)
                        continue
                    out_f, in_f = out_in(m)
                    groups += _slices(full, out_f, int(block_cap // (rows * in_f * item)))
                plan.append({"stage": k, "targets": tg, "groups": groups, "need_h": j == 0 and k > lowest})
        return plan

    # -- passes --------------------------------------------------------------------------------------------------

    def _run_batch(self, st: Stage, call: Call, targets, need_h: bool, cot: torch.Tensor, vmapped: bool,
                   shapes: Mapping[int, tuple] | None = None):
        """One stage on one batch: per-sample (direct grads, input cotangent, probe cotangents, module inputs)."""
        taps = Taps()
        factored = {t: st.factored[t] for t in targets if t != DIRECT}
        direct = {n: p.detach() for n, p in st.direct.items()} if DIRECT in targets else {}
        batch = cot.shape[0]
        probes = {}
        for t, m in factored.items():
            out_shape = shapes[id(m)][1] if shapes else ()
            probes[t] = torch.zeros((), dtype=self.dtype).expand(batch, *out_shape)  # no memory: only its grad
        leaves, spec = call.leaves, call.spec
        h = leaves[call.hidden] if call.hidden is not None else None
        batched = [leaves[i] for i in call.batched]
        slots: dict[str, int] = {}

        def run(d, hh, z, bl):
            full = list(leaves)
            for i, x in zip(call.batched, bl):
                full[i] = x.unsqueeze(0)
            if call.hidden is not None:
                full[call.hidden] = hh.unsqueeze(0)
            args, kwargs = tree_unflatten(full, spec)
            record: dict = {}
            taps.active = ({n: v.unsqueeze(0) for n, v in z.items()}, record)
            try:
                out = first_tensor(functional_call(st.module, d, tuple(args), kwargs))
            finally:
                taps.active = None
            uniq: list = []
            for name, t in record.items():  # query/key/value share one input tensor: keep it once
                j = next((j for j, u in enumerate(uniq) if u is t), None)
                if j is None:
                    j = len(uniq)
                    uniq.append(t)
                slots[name] = j
            return out[0], [u[0] for u in uniq]

        def per_sample(d, hh, z, bl, c):
            if need_h:
                _, fn, aux = vjp(lambda d_, h_, z_: run(d_, h_, z_, bl), d, hh, z, has_aux=True)
                gd, gh, gz = vmap(fn)(c)
            else:
                _, fn, aux = vjp(lambda d_, z_: run(d_, hh, z_, bl), d, z, has_aux=True)
                (gd, gz), gh = vmap(fn)(c), None
            return gd, gh, gz, aux

        with taps.installed(factored):
            if vmapped:
                out = vmap(per_sample, in_dims=(None, 0 if h is not None else None, 0, 0, 0),
                           # torch.func.vmap accepts None in out_dims (its annotation does not say so)
                           out_dims=(0, 0 if need_h else None, 0, 0))(  # type: ignore[arg-type]
                    direct, h, probes, batched, cot)
            else:  # sample by sample, for backbones that vmap cannot run
                res = [per_sample(direct, None if h is None else h[b], {n: v[b] for n, v in probes.items()},
                                  [x[b] for x in batched], cot[b]) for b in range(batch)]
                out = _stack(res)
        return out, slots

    def _top_cotangent(self, chunk: int) -> torch.Tensor:
        """d f_c / d (last hidden state): V0[c] times each position's pooling weight (one-hot at the first or last
        token, 1/length over the tokens for mean pooling); (B, C, T, h)."""
        w = self._pool_weights[chunk]
        return w[:, None, :, None] * self.V0[None, :, None, :]

    def blocks(self, skip: Sequence[str] = ()) -> Iterator[DenseBlock | EmbeddingBlock]:
        """Yield the gradient blocks in ``group_names`` order, except those in ``skip`` (for resuming)."""
        skipped = set(skip)
        with self._eval():
            for i, (c0, c1) in enumerate(self.parts):
                plan = self.plans[i]
                wanted = {g for p in plan for g in p["groups"] if self._unit(i, g) not in skipped}
                if wanted:
                    yield from self._part_blocks(c0, c1, plan, wanted)

    def _part_blocks(self, c0: int, c1: int, plan: list[dict], wanted: set[str]) -> Iterator:
        """The blocks of batches ``c0 .. c1-1`` (rows ``_starts[c0] * C`` on) named in ``wanted``."""
        calls = self._record_calls(c0, c1)
        cots = [self._top_cotangent(c) for c in range(c0, c1)]
        below, stage = None, None  # input cotangents of the current stage = output cotangents of the next
        for p in plan:
            k = p["stage"]
            st = self.stages[k]
            if k != stage:
                cots = below if below is not None else cots
                below, stage = None, k
            mine = [g for g in p["groups"] if g in wanted]
            if not mine and not p["need_h"]:
                continue
            targets = p["targets"] if mine else []
            results, new_cots = [], []
            for c in range(c0, c1):
                (gd, gh, gz, aux), slots = self._run_batch(
                    st, calls[c - c0][k], targets, p["need_h"], cots[c - c0], self.staged, self.shapes[c])
                results.append((self.chunks[c], gd, gz, aux, slots))
                new_cots.append(gh)
            if p["need_h"]:
                below = new_cots
            del new_cots
            if mine:
                yield from self._make_blocks(st, p, results, set(mine), c0, c1)
            del results

    def to_sample_order(self, K: np.ndarray | torch.Tensor, ncols: int):
        """Permute a Gram in batch order, (N*C, ncols*C), to sample order (row i*C + c is sample i, class c)."""
        C = self.num_labels
        perm = torch.as_tensor((self.order[:, None] * C + np.arange(C)).reshape(-1))
        out = torch.empty_like(torch.as_tensor(K))
        out[perm[:, None], perm[None, : ncols * C]] = torch.as_tensor(K)
        return out.numpy() if isinstance(K, np.ndarray) else out

    def _make_blocks(self, st: Stage, p: dict, results, wanted, c0: int, c1: int) -> Iterator:
        """Assemble gradient blocks from one pass's per-batch results (batches ``c0 .. c1-1``); rows in batch order
        (i*C + c), from row ``row0`` = ``_starts[c0] * C`` on."""
        C, first = self.num_labels, int(self._starts[c0])
        n = int(self._starts[c1]) - first
        spans = [((int(self._starts[c]) - first) * C, (int(self._starts[c + 1]) - first) * C) for c in range(c0, c1)]
        for t in p["targets"]:
            if t == DIRECT:
                base = f"{st.name}:other"
                for g in p["groups"]:
                    if g not in wanted or not (g == base or g.startswith(base + "[")):
                        continue
                    total = sum(q.numel() for q in st.direct.values())
                    a0, a1 = (0, total) if g == base else map(int, g[len(base) + 1:-1].split(":"))
                    G = torch.empty(n * C, a1 - a0, dtype=self.dtype)
                    for (r0, r1), (idx, gd, *_rest) in zip(spans, results):
                        flat = torch.cat([gd[nm].reshape(len(idx) * C, -1) for nm in st.direct], 1)
                        G[r0:r1] = flat[:, a0:a1]
                    yield DenseBlock(g, G, n, param=base, offset=a0, param_size=total, row0=first * C)
                    del G  # before the next block is allocated
                continue
            m = st.factored[t]
            full = _weight_name(st, t)
            if isinstance(m, nn.Embedding):
                if full in wanted:
                    yield self._embedding_block(full, m, t, results, c0)
                continue
            out_f, in_f = out_in(m)
            for g in p["groups"]:
                if g not in wanted or not (g == full or g.startswith(full + "[")):
                    continue
                o0, o1 = (0, out_f) if g == full else map(int, g[len(full) + 1:-1].split(":"))
                G = torch.empty(n * C, (o1 - o0) * in_f, dtype=self.dtype)
                for (r0, r1), (idx, _gd, gz, aux, slots) in zip(spans, results):
                    B = len(idx)
                    a = aux[slots[t]].reshape(B, -1, in_f)  # module input (B, S, in)
                    d = gz[t].reshape(B, C, -1, out_f)[..., o0:o1]  # output cotangent (B, C, S, out)
                    # per sample: (C*out x S) @ (S x in) = the C gradient rows, written in place
                    dt = d.permute(0, 1, 3, 2).reshape(B, C * (o1 - o0), -1)
                    torch.bmm(dt, a, out=G[r0:r1].view(B, C * (o1 - o0), in_f))
                yield DenseBlock(g, G, n, param=full, offset=o0 * in_f, param_size=out_f * in_f,
                                 row0=first * C)
                del G

    def _embedding_block(self, name: str, m: nn.Embedding, t: str, results, c0: int = 0) -> EmbeddingBlock:
        C = self.num_labels
        samples, id_chunks, deltas = [], [], []
        for start, (idx, _gd, gz, aux, slots) in zip(self._starts[c0:], results):
            tok = aux[slots[t]].reshape(len(idx), -1)  # (B, S) row ids
            d = gz[t].reshape(len(idx), C, tok.shape[1], -1).transpose(1, 2)  # (B, S, C, dim)
            live = d.flatten(2).ne(0).any(-1)  # pad positions have exactly zero cotangent
            if m.padding_idx is not None:  # nn.Embedding gives the padding row no gradient
                live &= tok.ne(m.padding_idx)
            b, s = torch.nonzero(live, as_tuple=True)
            samples.append(b + int(start))  # batch-order position
            id_chunks.append(tok[b, s])
            deltas.append(d[b, s])
        sample, ids, delta = torch.cat(samples), torch.cat(id_chunks), torch.cat(deltas)
        scale = 1.0
        if self.embedding_fraction is not None and m is self.word_embedding and self.embedding_fraction < 1:
            # zeroing a token's cotangent in the dropped columns of its row drops exactly those entries of the
            # per-sample gradient (a sum over the tokens with that id), so the sparse Gram needs no other change
            kept = embedding_entries_kept(m.num_embeddings, m.embedding_dim, self.embedding_fraction, self.seed)
            delta = delta * kept[ids].unsqueeze(1).to(delta.dtype)  # (K, C, dim) * (K, 1, dim)
            scale = 1.0 / self.embedding_fraction
        return EmbeddingBlock(name, sample, ids, delta, self.num_samples, scale, m.num_embeddings)


def _weight_name(st: Stage, module: str) -> str:
    """Group name of a factored module's weight: ``<stage>.<module>.weight`` (a stage may be the module itself,
    e.g. a decoder's ``embed_tokens``)."""
    return ".".join(x for x in (st.name, module, "weight") if x)


def _slices(name: str, size: int, most: int) -> list[str]:
    """``[name]`` if ``size`` units fit in ``most``, else near-equal slices ``name[a:b]`` of at most ``most``."""
    if most >= size:
        return [name]
    count = math.ceil(size / max(1, most))
    edges = [round(j * size / count) for j in range(count + 1)]
    return [f"{name}[{a}:{b}]" for a, b in zip(edges[:-1], edges[1:])]


def embedding_entries_kept(num_embeddings: int, dim: int, fraction: float, seed: int) -> torch.Tensor:
    """The word-embedding parameters kept by the ``embedding_fraction`` approximation: each entry of the
    (num_embeddings, dim) weight independently with probability ``fraction`` (bool mask, reproducible from
    ``seed``), as the paper subsampled 10 % of the embedding parameters."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(num_embeddings, dim, generator=gen) < fraction


def _tensor_bytes(calls: Sequence[Call]) -> int:
    """Bytes of the per-sample tensors in a batch's recorded stage calls (a tensor shared by stages counted once)."""
    seen = {}
    for call in calls:
        for i in call.batched + ([call.hidden] if call.hidden is not None else []):
            x = call.leaves[i]
            if torch.is_tensor(x):
                seen[x.data_ptr()] = x.numel() * x.element_size()
    return sum(seen.values())


def _stack(results):
    """Stack per-sample outputs of ``per_sample`` along a new batch dimension (the non-vmapped path)."""
    gd = {n: torch.stack([r[0][n] for r in results]) for n in results[0][0]}
    gh = None if results[0][1] is None else torch.stack([r[1] for r in results])
    gz = {n: torch.stack([r[2][n] for r in results]) for n in results[0][2]}
    aux = [torch.stack([r[3][j] for r in results]) for j in range(len(results[0][3]))]
    return gd, gh, gz, aux
