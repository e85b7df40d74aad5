"""The eNTK engine on decoder backbones (tiny GPT-2 / Llama / Qwen2) against the torch.func full-Jacobian reference,
in float64: last-token and mean pooling, full fine-tuning and LoRA, batching and padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpft.methods.lora import apply_lora
from lpft.model import Classifier
from lpft.ntk import compute_kernels
from lpft.ntk.gradients import LogitGradients
from lpft.ntk.reference import jacobian_entk
from tiny_models import activate_lora_b, tiny_decoder_config

C = 3


def tiny_decoder(arch: str, pooling: str | None = None, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    clf = Classifier.from_config(tiny_decoder_config(arch), num_labels=C, pooling=pooling)
    with torch.no_grad():  # a non-degenerate head, so every block of F matters
        clf.head.weight.normal_(0, 1.0)
    return clf


def make_rows(lengths, seed: int = 1):
    """Token rows over a small id range: ids repeat within and across samples (sparse-embedding case)."""
    gen = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(3, 30, (n,), generator=gen), "attention_mask": torch.ones(n, dtype=torch.long)}
            for n in lengths]


def rel_err(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("arch, pooling", [("gpt2", None), ("llama", None), ("qwen2", None), ("llama", "mean"),
                                           ("gpt2", "first")])
def test_decoder_kernels_match_full_jacobian_reference(arch, pooling):
    clf = tiny_decoder(arch, pooling)
    train, test = make_rows([6, 3, 9, 5]), make_rows([7, 2, 4], seed=2)
    engine = LogitGradients(clf, train, dtype=torch.float64)
    # Llama / Qwen2 are cut into layer stages (embed_tokens, layers, final norm); GPT-2 adds its position
    # embeddings between the word embeddings and the first layer, so it runs as one stage, sample by sample
    assert engine.staged == (arch != "gpt2")
    if engine.staged:
        assert [st.name for st in engine.stages] == ["embed_tokens", "layers.0", "layers.1", "norm"]
    else:  # GPT-2's Conv1D projections are factored like Linear layers (their own gradient blocks)
        assert {"h.0.attn.c_attn.weight", "h.1.mlp.c_proj.weight", "wte.weight", "wpe.weight"} <= set(
            engine.group_names)
    k = compute_kernels(clf, train, test, dtype=torch.float64)
    ref_train = jacobian_entk(clf.double(), train)
    ref_test = jacobian_entk(clf, test, train)
    assert rel_err(k.F_train, ref_train["backbone"]) < 1e-6
    assert rel_err(k.F_test, ref_test["backbone"]) < 1e-6
    assert rel_err(k.P_train, ref_train["head"]) < 1e-12
    assert rel_err(k.full_test, ref_test["full"]) < 1e-6
    clf.eval()  # no dropout, as in the engine
    phi = torch.cat([clf.features(**{key: v[None] for key, v in r.items()}) for r in train]).detach().numpy()
    np.testing.assert_allclose(k.features_train, phi, rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoder_lora_kernel_matches_reference(arch):
    clf = apply_lora(tiny_decoder(arch, seed=6), r=4, alpha=8, seed=1)
    activate_lora_b(clf)  # B = 0 at init makes A's gradients vanish; make both factors matter
    rows = make_rows([5, 7, 3])
    engine = LogitGradients(clf, rows, dtype=torch.float64)
    assert engine.group_names and all("lora_" in g for g in engine.group_names)
    k = compute_kernels(clf, rows, dtype=torch.float64)
    assert rel_err(k.F_train, jacobian_entk(clf.double(), rows)["backbone"]) < 1e-6


def test_decoder_kernel_independent_of_batching():
    """Right padding inside a batch never changes a causal model's kernel (pads come after every real token)."""
    clf = tiny_decoder("llama", seed=4)
    rows = make_rows([9, 2, 6, 4])
    alone = compute_kernels(clf, rows, dtype=torch.float64, max_tokens=1)
    batched = compute_kernels(clf, rows, dtype=torch.float64, max_tokens=10_000)
    assert rel_err(batched.F_train, alone.F_train) < 1e-12
