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
  backbone that fails the check is one stage, run sample by sample (exact, slower).
* **Factored modules.** For ``nn.Linear`` and ``nn.Embedding`` the per-sample weight gradient is
  ``sum_t delta_t a_t^T``: the cotangent at the module output (got by adding a zero *probe* to the output and
  differentiating w.r.t. it) times the module input. Storing ``(a, delta)`` instead of dense gradients lets a big
  weight be cut into blocks of output rows without re-running anything, and keeps embedding gradients sparse in
  the token ids: the word-embedding block of the kernel is a sum over the ids two samples share, with no dense
  ``vocab x h`` gradient ever formed.
* **Other trainable parameters** (biases, LayerNorm, LoRA-free leftovers) get dense per-sample gradients from the
  ``vjp`` directly.

The kernel is taken over the backbone parameters with ``requires_grad=True``: all of them for full fine-tuning,
only the adapter factors for a PEFT/LoRA-wrapped backbone. Dropout is off (eval mode). Padding never changes a
sample's gradient: pad keys are masked, so the cotangent at every pad position is exactly zero.

Row ``i * C + c`` of every block is sample ``i``, class ``c`` (sample-major).

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
    >>> F = sum(block.gram(2) for block in grads.blocks())
    >>> F.shape
    torch.Size([6, 6])
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vjp, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

#: Default memory budget (bytes) for the engine's large buffers: cached per-sample quantities of one stage
#: (40 %), one gradient block (30 %) and per-batch work (the rest).
DEFAULT_MEMORY_BUDGET = 3 * 2**30


# ----------------------------------------------------------------------------------------------------------------
# samples


def sample_rows(samples, pad_token_id: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Normalise a sample set to a list of unpadded per-sample dicts (``input_ids``, ``attention_mask``, ...).

    ``samples`` is an :class:`lpft.data.batching.Encoded`, a padded batch ``{"input_ids": (B, T), ...}`` (right
    padding is trimmed using ``attention_mask``), or a list of per-sample dicts.
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
            length = int(nz[-1]) + 1 if len(nz) else ids.shape[1]
            rows.append({k: torch.as_tensor(samples[k][b, :length]) if k != "attention_mask"
                         else mask[b, :length].long() for k in keys})
        return rows
    return [dict(r) for r in samples]


def pad_rows(rows: Sequence[Mapping[str, torch.Tensor]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad per-sample dicts into one batch (pad id for ``input_ids``, 0 elsewhere)."""
    width = max(len(r["input_ids"]) for r in rows)
    out = {}
    for key in rows[0]:
        fill = pad_token_id if key == "input_ids" else 0
        t = torch.full((len(rows), width), fill, dtype=rows[0][key].dtype)
        for b, r in enumerate(rows):
            t[b, : len(r[key])] = r[key]
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
# gradient blocks


@dataclass
class DenseBlock:
    """Per-sample gradients of one parameter group: ``G`` is (R, P_g), row ``i * C + c``."""

    name: str
    G: torch.Tensor
    num_samples: int

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


# ----------------------------------------------------------------------------------------------------------------
# stages


@dataclass
class _Stage:
    name: str
    module: nn.Module
    hidden_input: bool  # args[0] is the previous stage's output
    factored: dict[str, nn.Module] = field(default_factory=dict)  # module name (in stage) -> Linear / Embedding
    direct: dict[str, nn.Parameter] = field(default_factory=dict)  # other trainable params (names in stage)


def _is_factorable(m: nn.Module) -> bool:
    if isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward:
        return m.weight.requires_grad
    if isinstance(m, nn.Embedding) and type(m).forward is nn.Embedding.forward:
        return m.weight.requires_grad and m.max_norm is None and not m.scale_grad_by_freq and not m.sparse
    return False


def _fill_stage(stage: _Stage, calls: Mapping[int, int]) -> None:
    """Split a stage's trainable parameters into factored module weights and direct parameters."""
    factored_weights = set()
    for name, m in stage.module.named_modules():
        if _is_factorable(m) and calls.get(id(m), 0) == 1:
            stage.factored[name] = m
            factored_weights.add(id(m.weight))
    stage.direct = {n: p for n, p in stage.module.named_parameters() if p.requires_grad
                    and id(p) not in factored_weights}


def _first_tensor(out):
    if torch.is_tensor(out):
        return out
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    return out[0]


def _layer_list(backbone: nn.Module) -> tuple[str, nn.ModuleList] | None:
    lists = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        return None
    return max(lists, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))


def _word_embeddings(backbone: nn.Module) -> nn.Module | None:
    try:
        emb = backbone.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        emb = None
    if emb is None:
        embs = [m for m in backbone.modules() if isinstance(m, nn.Embedding)]
        emb = max(embs, key=lambda m: m.num_embeddings) if embs else None
    return emb


def _candidate_stages(backbone: nn.Module) -> list[_Stage] | None:
    """[embeddings module, layer 0, ..., layer L-1] for encoders built that way, else None."""
    found = _layer_list(backbone)
    emb = _word_embeddings(backbone)
    if found is None or emb is None:
        return None
    lname, layers = found
    names = {id(m): n for n, m in backbone.named_modules()}
    ename = names.get(id(emb))
    if not ename:
        return None
    parts = ename.split(".")
    stage0 = None
    for i in range(1, len(parts) + 1):
        cand = ".".join(parts[:i])
        if not (lname == cand or lname.startswith(cand + ".")):
            stage0 = cand
            break
    if stage0 is None:
        return None
    modules = dict(backbone.named_modules())
    return [_Stage(stage0, modules[stage0], False)] + [
        _Stage(f"{lname}.{i}", layer, True) for i, layer in enumerate(layers)]


class _Recorder:
    """Pre/post forward hooks that record each stage call's (args, kwargs) and output, and count module calls."""

    def __init__(self, stages, watch=(), keep_outputs=False):
        self.stages, self.watch, self.keep_outputs = stages, list(watch), keep_outputs
        self.calls: list[tuple] = [None] * len(stages)
        self.outputs: list = [None] * len(stages)
        self.counts: dict[int, int] = {}
        self.stage_counts = [0] * len(stages)
        self.shapes: dict[int, tuple] = {}

    @contextmanager
    def __call__(self):
        handles = []
        for k, st in enumerate(self.stages):
            handles.append(st.module.register_forward_pre_hook(self._pre(k), with_kwargs=True))
            handles.append(st.module.register_forward_hook(self._post(k)))
        for m in self.watch:
            handles.append(m.register_forward_hook(self._count))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _pre(self, k):
        def hook(mod, args, kwargs):
            self.calls[k] = (args, kwargs)
            self.stage_counts[k] += 1
        return hook

    def _post(self, k):
        def hook(mod, args, out):
            if self.keep_outputs:
                self.outputs[k] = _first_tensor(out)
        return hook

    def _count(self, mod, inp, out):
        self.counts[id(mod)] = self.counts.get(id(mod), 0) + 1
        if inp and torch.is_tensor(inp[0]) and torch.is_tensor(out):
            self.shapes[id(mod)] = (tuple(inp[0].shape[1:]), tuple(out.shape[1:]))


class _Taps:
    """Forward hooks on factored modules: while active, add the probe to the output and record the input."""

    def __init__(self):
        self.active: tuple[dict, dict] | None = None

    @contextmanager
    def installed(self, modules: Mapping[str, nn.Module]):
        handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, name):
        def hook(mod, inp, out):
            if self.active is None or name not in self.active[0]:
                return None
            probes, record = self.active
            record[name] = inp[0]
            return out + probes[name]
        return hook


@dataclass
class _Call:
    """One recorded stage call for one batch: flattened (args, kwargs), which leaves are per-sample."""

    leaves: list
    spec: object
    batched: list[int]
    hidden: int | None


def _split_call(args, kwargs, batch: int, hidden_input: bool) -> _Call:
    leaves, spec = tree_flatten((tuple(args), dict(kwargs)))
    hidden = 0 if hidden_input else None
    batched = [i for i, x in enumerate(leaves) if i != hidden and torch.is_tensor(x) and x.dim() >= 1
               and x.shape[0] == batch]
    return _Call(leaves, spec, batched, hidden)


# ----------------------------------------------------------------------------------------------------------------
# the engine


class LogitGradients:
    """Stream the per-sample logit gradients of ``clf``'s trainable backbone parameters as blocks.

    ``samples``: see :func:`sample_rows`. ``dtype``: float32 (fast) or float64 (tests); a model of another dtype is
    copied. ``memory_budget`` (bytes) bounds the large buffers (see :data:`DEFAULT_MEMORY_BUDGET`).
    ``embedding_fraction``: ``None`` (exact, default) or p in (0, 1]: an *approximation* that keeps each
    word-embedding row with probability p (``seed``) and scales that block by 1/p (unbiased); the paper kept 10 %.
    ``max_tokens``: padded tokens per batch. ``split``: the first ``split`` samples (the train set) come first in
    batch order, so a block's ``gram(split)`` is (all x train). ``staged=False`` forces the one-stage, sample-by-sample path
    (``None``: staged whenever the chain check passes).

    Attributes: ``features`` (N, h) float64 phi0; ``num_labels``; ``group_names`` (the blocks, in order);
    ``staged`` (False when the backbone runs as one stage, sample by sample).
    """

    def __init__(self, clf, samples, *, dtype: torch.dtype = torch.float32,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, embedding_fraction: float | None = None,
                 seed: int = 0, max_tokens: int = 2048, max_batch: int = 64, staged: bool | None = None,
                 split: int | None = None):
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
        self.pad_token_id = int(pad)
        self.split = self.num_samples if split is None else int(split)
        self.chunks = _chunks(self.rows, max_tokens, max_batch, self.split)
        # blocks use *batch order*: position p holds sample order[p]; `to_sample_order` maps a Gram back
        self.order = np.array([i for idx in self.chunks for i in idx], dtype=np.int64)
        self._starts = np.cumsum([0] + [len(idx) for idx in self.chunks])
        self.V0 = self.model.head.weight.detach().to(dtype)
        self.word_embedding = _word_embeddings(backbone)
        with self._eval():
            self.stages, self.staged = self._plan(staged is not False)
            self._record()
        self.plan = self._plan_groups()
        self.group_names = [g for p in self.plan for g in p["groups"]]

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

    def _plan(self, try_stages: bool) -> tuple[list[_Stage], bool]:
        """Cut the backbone into verified stages, or fall back to one stage run sample by sample."""
        backbone = self.model.backbone
        stages = _candidate_stages(backbone) if try_stages else None
        if stages is not None and self._verify(stages):
            return stages, True
        whole = _Stage("", backbone, False)
        rec = _Recorder([whole], watch=list(backbone.modules()))
        with rec():
            backbone(**self._batch(self.chunks[0][:1]))
        _fill_stage(whole, rec.counts)
        return [whole], False

    def _verify(self, stages: list[_Stage]) -> bool:
        """Check on one batch that the stages form an exact chain (see the module docstring)."""
        backbone = self.model.backbone
        rec = _Recorder(stages, watch=list(backbone.modules()), keep_outputs=True)
        idx = self.chunks[0][:2]
        self._probe_batch = len(idx)
        with rec(), torch.enable_grad():
            out = _first_tensor(backbone(**self._batch(idx)))
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
            _fill_stage(st, rec.counts)
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
            call = _split_call(args, kwargs, self._probe_batch, st.hidden_input)
            call.leaves = [x[:1] if i in call.batched or i == call.hidden else x for i, x in enumerate(call.leaves)]
            out = _first_tensor(rec.outputs[k])
            cot = torch.zeros(1, self.num_labels, *out.shape[1:], dtype=out.dtype)
            try:
                self._run_batch(st, call, targets=(), need_h=st.hidden_input, cot=cot, vmapped=True)
            except RuntimeError:
                return False
        return True

    def _record(self) -> None:
        """The recording forward pass: each stage's call per batch, factored modules' shapes, features phi0."""
        backbone = self.model.backbone
        watch = [m for st in self.stages for m in st.factored.values()]
        self.calls: list[list[_Call]] = []
        self.shapes: list[dict[int, tuple]] = []
        self._out_width: list[tuple] = []
        feats = torch.zeros(self.num_samples, self.V0.shape[1], dtype=torch.float64)
        for idx in self.chunks:
            rec = _Recorder(self.stages, watch=watch)
            with rec():
                out = _first_tensor(backbone(**self._batch(idx)))
            self.calls.append([_split_call(*rec.calls[k], len(idx), st.hidden_input)
                               for k, st in enumerate(self.stages)])
            self.shapes.append(rec.shapes)
            feats[idx] = out[:, 0].double()
            self._out_width.append(tuple(out.shape[1:]))
        self.features = feats.numpy()

    # -- planning ------------------------------------------------------------------------------------------------

    def _plan_groups(self) -> list[dict]:
        """Passes (stage, targets) top-down and the gradient blocks each yields, sized to the budget."""
        C, item = self.num_labels, torch.finfo(self.dtype).bits // 8
        rows = self.num_samples * C
        cache_cap, block_cap = 0.4 * self.budget, 0.3 * self.budget
        plan = []
        lowest = min((k for k, st in enumerate(self.stages) if st.factored or st.direct), default=len(self.stages))
        for k in range(len(self.stages) - 1, lowest - 1, -1):
            st = self.stages[k]
            targets, cost = [], []
            if st.direct:
                targets.append("")  # "" = the stage's direct parameters
                cost.append(rows * sum(p.numel() for p in st.direct.values()) * item)
            for name, m in st.factored.items():
                nbytes = 0
                for idx, shapes in zip(self.chunks, self.shapes):
                    ins, outs = shapes[id(m)]
                    nbytes += len(idx) * (math.prod(ins) * (8 if isinstance(m, nn.Embedding) else item)
                                          + C * math.prod(outs) * item)
                targets.append(name)
                cost.append(nbytes)
            passes, cur, used = [], [], 0.0
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
                    if t == "":
                        total = sum(p.numel() for p in st.direct.values())
                        per = max(1, int(block_cap // (rows * item)))
                        groups += ([f"{st.name}:other"] if per >= total else
                                   [f"{st.name}:other[{a}:{min(a + per, total)}]" for a in range(0, total, per)])
                        continue
                    m = st.factored[t]
                    full = f"{st.name}.{t}.weight".lstrip(".")
                    if isinstance(m, nn.Embedding):
                        groups.append(full)
                        continue
                    out_f, in_f = m.weight.shape
                    per = max(1, int(block_cap // (rows * in_f * item)))
                    if per >= out_f:
                        groups.append(full)
                    else:
                        groups += [f"{full}[{o}:{min(o + per, out_f)}]" for o in range(0, out_f, per)]
                plan.append({"stage": k, "targets": tg, "groups": groups, "need_h": j == 0 and k > lowest})
        return plan

    # -- passes --------------------------------------------------------------------------------------------------

    def _run_batch(self, st: _Stage, call: _Call, targets, need_h: bool, cot: torch.Tensor, vmapped: bool,
                   shapes: Mapping[int, tuple] | None = None):
        """One stage on one batch: per-sample (direct grads, input cotangent, probe cotangents, module inputs)."""
        taps = _Taps()
        factored = {t: st.factored[t] for t in targets if t}
        direct = {n: p.detach() for n, p in st.direct.items()} if "" in targets else {}
        batch = cot.shape[0]
        probes = {}
        for t, m in factored.items():
            out_shape = shapes[id(m)][1] if shapes else None
            probes[t] = torch.zeros(batch, *out_shape, dtype=self.dtype)
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
                out = _first_tensor(functional_call(st.module, d, tuple(args), kwargs))
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
                           out_dims=(0, 0 if need_h else None, 0, 0))(
                    direct, h, probes, batched, cot)
            else:  # sample by sample, for backbones that vmap cannot run
                res = [per_sample(direct, None if h is None else h[b], {n: v[b] for n, v in probes.items()},
                                  [x[b] for x in batched], cot[b]) for b in range(batch)]
                out = _stack(res)
        return out, slots

    def _top_cotangent(self, batch: int, width) -> torch.Tensor:
        """d f_c / d (last hidden state): V0[c] at the first token, zero elsewhere; (B, C, T, h)."""
        cot = torch.zeros(batch, self.num_labels, *width, dtype=self.dtype)
        cot[:, :, 0, :] = self.V0
        return cot

    def blocks(self, skip: Sequence[str] = ()) -> Iterator[DenseBlock | EmbeddingBlock]:
        """Yield the gradient blocks in ``group_names`` order, except those in ``skip`` (for resuming)."""
        skip = set(skip)
        with self._eval():
            cots = [self._top_cotangent(len(idx), self._out_width[c]) for c, idx in enumerate(self.chunks)]
            below, stage = None, None  # input cotangents of the current stage = output cotangents of the next
            for p in self.plan:
                k = p["stage"]
                st = self.stages[k]
                if k != stage:
                    cots = below if below is not None else cots
                    below, stage = None, k
                wanted = [g for g in p["groups"] if g not in skip]
                if not wanted and not p["need_h"]:
                    continue
                targets = p["targets"] if wanted else []
                results, new_cots = [], []
                for c, idx in enumerate(self.chunks):
                    (gd, gh, gz, aux), slots = self._run_batch(
                        st, self.calls[c][k], targets, p["need_h"], cots[c], self.staged, self.shapes[c])
                    results.append((idx, gd, gz, aux, slots))
                    new_cots.append(gh)
                if p["need_h"]:
                    below = new_cots
                del new_cots
                if wanted:
                    yield from self._make_blocks(st, p, results, set(wanted))
                del results

    def to_sample_order(self, K: np.ndarray | torch.Tensor, ncols: int):
        """Permute a Gram in batch order, (N*C, ncols*C), to sample order (row i*C + c is sample i, class c)."""
        C = self.num_labels
        perm = torch.as_tensor((self.order[:, None] * C + np.arange(C)).reshape(-1))
        out = torch.empty_like(torch.as_tensor(K))
        out[perm[:, None], perm[None, : ncols * C]] = torch.as_tensor(K)
        return out.numpy() if isinstance(K, np.ndarray) else out

    def _make_blocks(self, st: _Stage, p: dict, results, wanted) -> Iterator:
        """Assemble gradient blocks from one pass's per-batch results; rows in batch order (i*C + c)."""
        C, n = self.num_labels, self.num_samples
        spans = [(int(self._starts[c]) * C, int(self._starts[c + 1]) * C) for c in range(len(self.chunks))]
        for t in p["targets"]:
            if t == "":
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
                    yield DenseBlock(g, G, n)
                continue
            m = st.factored[t]
            full = f"{st.name}.{t}.weight".lstrip(".")
            if isinstance(m, nn.Embedding):
                if full in wanted:
                    yield self._embedding_block(full, m, t, results)
                continue
            out_f, in_f = m.weight.shape
            for g in p["groups"]:
                if g not in wanted or not (g == full or g.startswith(full + "[")):
                    continue
                o0, o1 = (0, out_f) if g == full else map(int, g[len(full) + 1:-1].split(":"))
                G = torch.empty(n * C, (o1 - o0) * in_f, dtype=self.dtype)
                for (r0, r1), (idx, gd, gz, aux, slots) in zip(spans, results):
                    B = len(idx)
                    a = aux[slots[t]].reshape(B, -1, in_f)  # module input (B, S, in)
                    d = gz[t].reshape(B, C, -1, out_f)[..., o0:o1]  # output cotangent (B, C, S, out)
                    # per sample: (C*out x S) @ (S x in) = the C gradient rows, written in place
                    dt = d.permute(0, 1, 3, 2).reshape(B, C * (o1 - o0), -1)
                    torch.bmm(dt, a, out=G[r0:r1].view(B, C * (o1 - o0), in_f))
                yield DenseBlock(g, G, n)

    def _embedding_block(self, name: str, m: nn.Embedding, t: str, results) -> EmbeddingBlock:
        C = self.num_labels
        samples, ids, deltas = [], [], []
        for start, (idx, gd, gz, aux, slots) in zip(self._starts, results):
            tok = aux[slots[t]].reshape(len(idx), -1)  # (B, S) row ids
            d = gz[t].reshape(len(idx), C, tok.shape[1], -1).transpose(1, 2)  # (B, S, C, dim)
            live = d.flatten(2).ne(0).any(-1)  # pad positions have exactly zero cotangent
            if m.padding_idx is not None:  # nn.Embedding gives the padding row no gradient
                live &= tok.ne(m.padding_idx)
            b, s = torch.nonzero(live, as_tuple=True)
            samples.append(b + int(start))  # batch-order position
            ids.append(tok[b, s])
            deltas.append(d[b, s])
        sample, ids, delta = torch.cat(samples), torch.cat(ids), torch.cat(deltas)
        scale = 1.0
        if self.embedding_fraction is not None and m is self.word_embedding and self.embedding_fraction < 1:
            gen = torch.Generator().manual_seed(self.seed)
            kept = torch.rand(m.num_embeddings, generator=gen) < self.embedding_fraction
            keep = kept[ids]
            sample, ids, delta = sample[keep], ids[keep], delta[keep]
            scale = 1.0 / self.embedding_fraction
        return EmbeddingBlock(name, sample, ids, delta, self.num_samples, scale)


def _stack(results):
    """Stack per-sample outputs of ``per_sample`` along a new batch dimension (the non-vmapped path)."""
    gd = {n: torch.stack([r[0][n] for r in results]) for n in results[0][0]}
    gh = None if results[0][1] is None else torch.stack([r[1] for r in results])
    gz = {n: torch.stack([r[2][n] for r in results]) for n in results[0][2]}
    aux = [torch.stack([r[3][j] for r in results]) for j in range(len(results[0][3]))]
    return gd, gh, gz, aux
