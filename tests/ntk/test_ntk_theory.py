"""The paper's NTK statements, checked numerically (float64) with the kernels lpft computes.

Prop. 4.1 on tiny BERT / RoBERTa; the Corollary and Prop. 4.4 on linear feature extractors phi(x) = B x, built
here as small "backbones" that take token ids (one id per sample picks the input vector x from a frozen table).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from tiny_models import ARCHS, tiny_config
from lpft.model import Classifier
from lpft.ntk import compute_kernels, residuals

C = 3


# ---------------------------------------------------------------------------------------------------------------
# Prop. 4.1: one gradient step changes the logits by eta * Theta delta, to first order


def _one_sgd_step_change(clf, train, labels, test, eta):
    """Logit change on ``test`` after one SGD step of size eta on the *summed* CE loss over ``train``."""
    model = Classifier(clf.backbone, C, dropout=0.0)
    model.head = clf.head
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    model.eval()  # the eNTK is the eval-mode (dropout-free) model's
    with torch.no_grad():
        before = model(**test)
    loss = nn.functional.cross_entropy(model(**train), labels, reduction="sum")
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= eta * g
        after = model(**test)
        for p, s in zip(params, saved):
            p.copy_(s)
    return (after - before).reshape(-1).numpy()


@pytest.mark.parametrize("arch", ARCHS)
def test_prop_4_1_logit_change_is_eta_theta_delta(arch):
    torch.manual_seed(0)
    clf = Classifier.from_config(tiny_config(arch, vocab_size=40), num_labels=C).double()
    gen = torch.Generator().manual_seed(1)
    train = {"input_ids": torch.randint(1, 40, (4, 6), generator=gen), "attention_mask": torch.ones(4, 6).long()}
    test = {"input_ids": torch.randint(1, 40, (3, 5), generator=gen), "attention_mask": torch.ones(3, 5).long()}
    labels = torch.tensor([0, 2, 1, 2])
    k = compute_kernels(clf, train, test, dtype=torch.float64)
    with torch.no_grad():
        delta = residuals(clf.eval()(**train).numpy(), labels.numpy())
    predicted = k.full_test @ delta  # sum_i Theta(x, x_i) delta_i, per unit eta
    errors = []
    for eta in (1e-3, 1e-4, 1e-5):
        actual = _one_sgd_step_change(clf, train, labels, test, eta)
        errors.append(np.linalg.norm(actual - eta * predicted) / np.linalg.norm(eta * predicted))
    # relative error O(eta): each 10x smaller step makes it ~10x smaller (absolute error ~100x: quadratic)
    assert errors[2] < 1e-3
    assert errors[0] / errors[1] > 7 and errors[1] / errors[2] > 7


# ---------------------------------------------------------------------------------------------------------------
# linear feature extractors


class LinearBackbone(nn.Module):
    """phi(x) = W x (+ U A x for LoRA); ``input_ids`` (B, 1) index a frozen table of input vectors x."""

    def __init__(self, inputs: torch.Tensor, hidden: int, rank: int = 0, sigma: float = 1.0, seed: int = 0):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden, pad_token_id=None)
        self.table = nn.Embedding.from_pretrained(inputs, freeze=True)
        self.W = nn.Linear(inputs.shape[1], hidden, bias=False, dtype=inputs.dtype)
        # the same pretrained W for every model; `seed` only draws the LoRA factor A
        nn.init.normal_(self.W.weight, 0, inputs.shape[1] ** -0.5, generator=torch.Generator().manual_seed(0))
        gen = torch.Generator().manual_seed(seed)
        self.lora_A = self.lora_U = None
        if rank:
            self.W.weight.requires_grad_(False)
            self.lora_A = nn.Linear(inputs.shape[1], rank, bias=False, dtype=inputs.dtype)
            self.lora_U = nn.Linear(rank, hidden, bias=False, dtype=inputs.dtype)
            nn.init.normal_(self.lora_A.weight, 0, sigma, generator=gen)  # A ~ N(0, sigma^2)
            nn.init.zeros_(self.lora_U.weight)  # U = 0 at init

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        x = self.table(input_ids)
        phi = self.W(x)
        if self.lora_A is not None:
            phi = phi + self.lora_U(self.lora_A(x))
        return BaseModelOutput(last_hidden_state=phi)


def linear_classifier(inputs, hidden=8, rank=0, sigma=1.0, seed=0, head_seed=0) -> Classifier:
    clf = Classifier(LinearBackbone(inputs, hidden, rank, sigma, seed), C, dropout=0.0).double()
    gen = torch.Generator().manual_seed(head_seed)
    with torch.no_grad():
        clf.head.weight.copy_(torch.randn(C, hidden, generator=gen, dtype=torch.float64))
        clf.head.bias.copy_(torch.randn(C, generator=gen, dtype=torch.float64))
    return clf


def ids(indices) -> dict:
    t = torch.as_tensor(indices)[:, None]
    return {"input_ids": t, "attention_mask": torch.ones_like(t)}


def test_corollary_features_orthogonal_to_train_span_do_not_move():
    d, n_train = 12, 4
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n_train, d, generator=gen, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.cat([X.T, torch.randn(d, d, generator=gen, dtype=torch.float64)], 1))
    X_orth = (Q[:, n_train:n_train + 3]).T * 2.0  # orthogonal to span(X)
    inputs = torch.cat([X, X_orth])
    clf = linear_classifier(inputs)
    train, test = ids(range(n_train)), ids(range(n_train, n_train + 3))
    labels = torch.tensor([0, 1, 2, 1])

    k = compute_kernels(clf, train, test, dtype=torch.float64)
    assert np.abs(k.F_test).max() < 1e-12 * np.abs(k.F_train).max()  # Theta_phi(x, x_i) = <x, x_i> I = 0

    phi0 = clf.features(**test).detach().clone()
    opt = torch.optim.SGD(clf.parameters(), lr=0.1)
    for _ in range(20):  # full fine-tuning of B and the head
        opt.zero_grad()
        nn.functional.cross_entropy(clf(**train), labels).backward()
        opt.step()
    assert (clf.backbone.W.weight.detach() - LinearBackbone(inputs, 8).W.weight).abs().max() > 1e-2  # B moved
    assert (clf.features(**test).detach() - phi0).abs().max() < 1e-12  # but not on the orthogonal complement


def test_prop_4_4_lora_kernel_concentrates_on_scaled_ft_kernel():
    """At U = 0, F_LoRA = V0 V0^T x^T A^T A x' and E[A^T A] = sigma^2 r I, so F_LoRA -> sigma^2 r F_FT with
    fluctuations ~ sigma^2 sqrt(r). With the Johnson-Lindenstrauss scaling sigma^2 = 1/r (PEFT's Gaussian init)
    sigma^2 r = 1 and the relative error itself shrinks like 1/sqrt(r)."""
    d, hidden, n = 16, 8, 6
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, d, generator=gen, dtype=torch.float64)
    samples = ids(range(n))
    ft = compute_kernels(linear_classifier(inputs, hidden), samples, dtype=torch.float64)
    ranks, means = (2, 8, 32, 128), []
    for r in ranks:
        sigma = r ** -0.5
        errs = []
        for seed in range(6):
            clf = linear_classifier(inputs, hidden, rank=r, sigma=sigma, seed=seed)
            lora = compute_kernels(clf, samples, dtype=torch.float64)
            assert np.array_equal(lora.P_train, ft.P_train)  # P_LoRA = P_FT exactly (same phi0, same head)
            errs.append(np.linalg.norm(lora.F_train - sigma**2 * r * ft.F_train) / np.linalg.norm(ft.F_train))
        means.append(np.mean(errs))
    assert all(a > b for a, b in zip(means, means[1:])), means  # decreasing in r (averaged over seeds)
    assert means[-1] < means[0] / 4, means  # 64x the rank: ~8x smaller in expectation
