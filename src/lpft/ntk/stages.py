"""Cutting a backbone into a chain of stages that ``torch.func`` can re-run one at a time (see
:mod:`lpft.ntk.gradients`): discovery, the recording hooks, the output probes of factored modules.

Example::

    >>> from transformers import BertConfig, BertModel
    >>> cfg = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    ...                  vocab_size=50)
    >>> [st.name for st in candidate_stages(BertModel(cfg, add_pooling_layer=False))]
    ['embeddings', 'encoder.layer.0', 'encoder.layer.1']
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Mapping, cast

import torch
from torch import nn
from torch.utils._pytree import tree_flatten


@dataclass
class Stage:
    """One link of the chain: a module, whether its first argument is the previous stage's output, and its
    trainable parameters split into factored module weights and direct parameters."""

    name: str
    module: nn.Module
    hidden_input: bool  # args[0] is the previous stage's output
    factored: dict[str, nn.Module] = field(default_factory=dict)  # module name (in stage) -> Linear / Embedding
    direct: dict[str, nn.Parameter] = field(default_factory=dict)  # other trainable params (names in stage)


def _conv1d_type():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers always has it today
        return None
    return Conv1D


def is_factorable(m: nn.Module) -> bool:
    """A plain Linear / Embedding (or GPT-2's Conv1D, a Linear with its weight stored transposed) with a trainable
    weight, whose gradient is an outer product of its output cotangent and its input (no max_norm renormalisation,
    no frequency scaling)."""
    if isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward:
        return m.weight.requires_grad
    if type(m) is _conv1d_type():
        return cast(torch.Tensor, m.weight).requires_grad  # nn.Module types its attributes as Tensor | Module
    if isinstance(m, nn.Embedding) and type(m).forward is nn.Embedding.forward:
        return m.weight.requires_grad and m.max_norm is None and not m.scale_grad_by_freq and not m.sparse
    return False


def out_in(m: nn.Module) -> tuple[int, int]:
    """(output, input) features of a factored Linear-like module. Conv1D stores its weight as (in, out); its
    gradient blocks are laid out (out, in) like a Linear's, a permutation of the weight's entries that no kernel
    (a sum over all entries) can see."""
    out_features, in_features = cast(torch.Tensor, m.weight).shape  # nn.Module types attributes as Tensor | Module
    if type(m) is _conv1d_type():
        return in_features, out_features
    return out_features, in_features


def fill_stage(stage: Stage, calls: Mapping[int, int]) -> None:
    """Split a stage's trainable parameters into factored module weights and direct parameters."""
    factored_weights = set()
    for name, m in stage.module.named_modules():
        if is_factorable(m) and calls.get(id(m), 0) == 1:
            stage.factored[name] = m
            factored_weights.add(id(m.weight))
    stage.direct = {n: p for n, p in stage.module.named_parameters() if p.requires_grad
                    and id(p) not in factored_weights}


def first_tensor(out):
    if torch.is_tensor(out):
        return out
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    return out[0]


def layer_list(backbone: nn.Module) -> tuple[str, nn.ModuleList] | None:
    lists = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        return None
    return max(lists, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))


def word_embeddings(backbone: nn.Module) -> nn.Module | None:
    try:
        emb = backbone.get_input_embeddings()  # type: ignore[operator]  # nn.Module types attributes as Tensor
    except (AttributeError, NotImplementedError):
        emb = None
    if emb is None:
        embs = [m for m in backbone.modules() if isinstance(m, nn.Embedding)]
        emb = max(embs, key=lambda m: m.num_embeddings) if embs else None
    return emb


def candidate_stages(backbone: nn.Module) -> list[Stage] | None:
    """[embeddings module, layer 0, ..., layer L-1, final modules] for transformers built that way, else None.

    The final modules are those holding parameters next to the layer list (or next to one of its ancestors) other
    than the embeddings: a decoder's final norm (Llama's ``norm``). Whether the candidate really is a chain is
    checked by running it (``LogitGradients._verify``): GPT-2, whose position embeddings are added between its
    word embeddings and the first layer, is not, and runs as one stage."""
    found = layer_list(backbone)
    emb = word_embeddings(backbone)
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
    lparts = lname.split(".")
    ancestors = {".".join(lparts[:i]) for i in range(len(lparts) + 1)}
    tail = []
    for i in range(len(lparts) - 1, -1, -1):  # innermost ancestor first
        parent = ".".join(lparts[:i])
        for child, mod in modules[parent].named_children():
            full = f"{parent}.{child}" if parent else child
            if full in ancestors or full == stage0 or stage0.startswith(full + "."):
                continue
            if next(mod.parameters(), None) is not None:
                tail.append(Stage(full, mod, True))
    return [Stage(stage0, modules[stage0], False)] + [
        Stage(f"{lname}.{i}", layer, True) for i, layer in enumerate(layers)] + tail


class Recorder:
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
                self.outputs[k] = first_tensor(out)
        return hook

    def _count(self, mod, inp, out):
        self.counts[id(mod)] = self.counts.get(id(mod), 0) + 1
        if inp and torch.is_tensor(inp[0]) and torch.is_tensor(out):
            self.shapes[id(mod)] = (tuple(inp[0].shape[1:]), tuple(out.shape[1:]))


class Taps:
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
class Call:
    """One recorded stage call for one batch: flattened (args, kwargs), which leaves are per-sample."""

    leaves: list
    spec: object
    batched: list[int]
    hidden: int | None


def split_call(args, kwargs, batch: int, hidden_input: bool) -> Call:
    leaves, spec = tree_flatten((tuple(args), dict(kwargs)))
    hidden = 0 if hidden_input else None
    # per-sample leaves have a batch dimension in front of a sequence dimension; 1-D tensors (e.g. a decoder's
    # cache_position) are shared, even when their length happens to equal the batch size
    batched = [i for i, x in enumerate(leaves) if i != hidden and torch.is_tensor(x) and x.dim() >= 2
               and x.shape[0] == batch]
    return Call(leaves, spec, batched, hidden)
