"""The paper's classifier: a Hugging Face encoder or decoder + dropout + one ``Linear(h, C)`` on a pooled token.

``f(x) = V phi(x) + b`` with ``phi(x)`` the backbone's last hidden states pooled by :mod:`lpft.model.pooling`. There
is no pooler and no dense+tanh layer, so the backbone and the head are exactly the two pieces the NTK decomposition
(paper Prop. 4.1) talks about: ``Classifier.backbone`` and ``Classifier.head``. The head's initialisation is here too:
its norm is the quantity the paper's Norm(C) figures are about.
"""

from __future__ import annotations

import torch
from torch import nn

from ..options import HEAD_INITS, POOLINGS
from .hub import load_backbone
from .pooling import pool, position_ids_from_mask

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
        """Pretrained backbone (:func:`~lpft.model.hub.load_backbone`) + a fresh head; ``pooling`` None picks the
        architecture's default. The head is initialised by the caller (:func:`init_head`, seeded)."""
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
        """Logits ``V dropout(phi(x)) + b``, (B, C)."""
        phi = self.features(input_ids, attention_mask, token_type_ids, **kwargs)
        return self.head(self.dropout(phi))

    def head_norms(self) -> tuple[float, float]:
        """(||V||_F, ||b||_2) of the head."""
        return float(self.head.weight.detach().norm()), float(self.head.bias.detach().norm())


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
