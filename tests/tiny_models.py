"""Tiny BERT / RoBERTa encoders and GPT-2 / Llama / Qwen2 decoders built from a config: fast, offline models for
unit tests. Decoders come with a word-level tokenizer built here (no pad token, like GPT-2's and Llama's)."""

from __future__ import annotations

from pathlib import Path

import torch

ARCHS = ("bert", "roberta")


def tiny_config(arch: str = "bert", vocab_size: int = 30522):
    """A 2-layer encoder with hidden size 32. Vocab matches the embedded tokenizer so saved tiny models load with it."""
    from transformers import BertConfig, RobertaConfig

    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  vocab_size=vocab_size, max_position_embeddings=160)
    if arch == "bert":
        cfg = BertConfig(**common)
    elif arch == "roberta":
        # the embedded (BERT) tokenizer pads with id 0; RoBERTa's position ids depend on padding_idx
        cfg = RobertaConfig(**common, pad_token_id=0, type_vocab_size=1)
    else:
        raise ValueError(arch)
    cfg._attn_implementation = "eager"
    return cfg


def save_tiny_model(path: Path, arch: str = "bert", seed: int = 0) -> Path:
    """Save a tiny random encoder plus the embedded tokenizer to ``path`` so ``Classifier.from_pretrained`` works."""
    from transformers import AutoModel

    from lpft.model import DEFAULT_MODEL, load_tokenizer

    torch.manual_seed(seed)
    model = AutoModel.from_config(tiny_config(arch))
    model.save_pretrained(path)
    load_tokenizer(DEFAULT_MODEL).save_pretrained(path)
    return path


DECODER_ARCHS = ("gpt2", "llama", "qwen2")

#: the decoders' tokenizer vocabulary: special tokens, the polarity fixture's words, some filler words and digits
DECODER_WORDS = (["<unk>", "<s>", "</s>"] + "good great fine bad awful poor item the a movie was is not very".split()
                 + [str(i) for i in range(40)])


def tiny_decoder_config(arch: str = "llama", vocab_size: int = len(DECODER_WORDS)):
    """A 2-layer decoder with hidden size 32 (Llama / Qwen2 with grouped-query attention: 2 heads, 1 KV head)."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    ids = dict(bos_token_id=1, eos_token_id=2)
    if arch == "gpt2":
        cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_inner=64, vocab_size=vocab_size, n_positions=160, **ids)
    elif arch in ("llama", "qwen2"):
        cls = LlamaConfig if arch == "llama" else Qwen2Config
        cfg = cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, vocab_size=vocab_size, max_position_embeddings=160, **ids)
    else:
        raise ValueError(arch)
    cfg._attn_implementation = "eager"
    return cfg


def decoder_tokenizer(padding_side: str = "right"):
    """A whitespace word-level tokenizer over :data:`DECODER_WORDS` with BOS/EOS/UNK and no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(DECODER_WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   padding_side=padding_side)


def save_tiny_decoder(path: Path, arch: str = "llama", seed: int = 0) -> Path:
    """Save a tiny random decoder plus :func:`decoder_tokenizer` to ``path`` (``Classifier.from_pretrained`` and
    ``load_tokenizer`` then work on it, as on a hub checkpoint)."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    AutoModel.from_config(tiny_decoder_config(arch)).save_pretrained(path)
    decoder_tokenizer().save_pretrained(path)
    return path


def activate_lora_b(clf, std: float = 0.3, seed: int = 0) -> None:
    """LoRA starts with B = 0, which makes A's gradients vanish: draw B so that both factors enter a kernel test."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in clf.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def umask_modes(folder: Path) -> dict[str, str]:
    """Files under ``folder`` whose mode is not what the user's umask gives an ordinary file (issue 20, case 7)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    return {str(p.relative_to(folder)): oct(p.stat().st_mode & 0o777) for p in folder.rglob("*")
            if p.is_file() and p.stat().st_mode & 0o777 != 0o666 & ~umask}

