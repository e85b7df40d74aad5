"""The paper's classifier and everything needed to build and run it, one module per concern.

=====================  ===================================================================================
module                 concern
=====================  ===================================================================================
:mod:`.hub`            where a model comes from (embedded MiniLM, folder, hub) and loading config,
                       tokenizer and backbone from it; the input length limit; the fingerprint for caches
:mod:`.pooling`        how ``phi(x)`` reads one vector off the last hidden states (first / last / mean)
:mod:`.classifier`     ``Classifier`` = backbone + dropout + ``Linear(h, C)``; encoder vs decoder defaults;
                       the head's initialisation
:mod:`.device`         the one ``--device`` rule and ``--precision`` (bf16 autocast)
:mod:`.features`       ``extract``: ``phi(x)`` (and logits) for a whole split, in eval mode
:mod:`.memory`         pretrained weights and tokenizers kept in memory across a study's runs (its executors)
=====================  ===================================================================================

``lpft.model`` re-exports every public name, so ``from lpft.model import Classifier, extract`` works as before the
split. The option choices (``POOLINGS``, ``PRECISIONS``, ...) live in the torch-free :mod:`lpft.options`: ``--help``
imports that, never this package (which imports torch).

Example (tiny model built from a config, no download)::

    >>> from transformers import BertConfig
    >>> clf = Classifier.from_config(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    ...                                         intermediate_size=64, vocab_size=100), num_labels=3)
    >>> import torch; ids = torch.tensor([[1, 5, 7, 2]])
    >>> clf(input_ids=ids, attention_mask=torch.ones_like(ids)).shape
    torch.Size([1, 3])
"""

from ..errors import ModelError
from ..options import DEFAULT_MODEL, HEAD_INITS, POOLINGS, PRECISIONS
from .classifier import (
    DECODER_MODEL_TYPES,
    Classifier,
    default_dropout,
    default_pooling,
    init_head,
    initializer_range,
    is_decoder,
)
from .device import autocast, resolve_device
from .features import extract
from .hub import (
    HUB_TIMEOUT_S,
    check_safetensors_weights,
    hub_options,
    hub_unreachable,
    load_backbone,
    load_config,
    load_tokenizer,
    max_input_tokens,
    model_fingerprint,
    resolve_model_path,
)
from .pooling import pool, pool_weights, position_ids_from_mask

__all__ = [
    "DECODER_MODEL_TYPES", "DEFAULT_MODEL", "HEAD_INITS", "HUB_TIMEOUT_S", "POOLINGS", "PRECISIONS", "Classifier",
    "ModelError", "autocast", "check_safetensors_weights", "default_dropout", "default_pooling", "extract",
    "hub_options", "hub_unreachable", "init_head", "initializer_range", "is_decoder", "load_backbone", "load_config",
    "load_tokenizer", "max_input_tokens", "model_fingerprint", "pool", "pool_weights", "position_ids_from_mask",
    "resolve_device", "resolve_model_path",
]
