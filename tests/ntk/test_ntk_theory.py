"""The paper's NTK statements, checked numerically (float64) with the kernels lpft computes — and checks that bite.

Each statement is a *check* taking the kernel function under test: it passes for :func:`lpft.ntk.compute_kernels`
and must fail for deliberately wrong kernels (F x 2; P and F swapped), so a check that cannot notice a wrong kernel
is itself a failing test. The oracles never come from the kernel code:

* Prop. 4.1 on tiny BERT / RoBERTa: one SGD step of the head alone moves the logits by exactly ``eta P delta``
  (logits are linear in the head), of the backbone alone by ``eta F delta + O(eta^2)``, of both by the sum.
* Linear models ``phi(x) = W x`` (a small "backbone" taking token ids; one id per sample picks x from a frozen
  table) have closed forms: ``F(x, x') = <x, x'> V0 V0^T`` and ``P(x, x') = (<W x, W x'> + 1) I`` for any x, x'.
* The Corollary: features orthogonal to the span of the train inputs never move, F vanishes there, and their logits
  move by exactly ``eta P delta``.
* Prop. 4.4 through PEFT's LoRA (``lpft.methods.lora.apply_lora``, the code path users run): at B = 0,
  ``F_LoRA(x, x') = s^2 <A x, A x'> V0 V0^T`` with the drawn A and PEFT's scaling s = alpha / r, which concentrates
  on ``s^2 sigma^2 r F_FT`` (sigma^2 = 1 / (3 d): PEFT's Kaiming-uniform A) — a factor that is not 1 here.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from lpft.methods.lora import apply_lora
from lpft.model import Classifier
from lpft.ntk import compute_kernels, residuals
from tiny_models import ARCHS, tiny_config

C = 3


# ---------------------------------------------------------------------------------------------------------------
# the kernel under test, and its mutants


def true_kernels(clf, train, test=None):
    return compute_kernels(clf, train, test, dtype=torch.float64)


def f_doubled(clf, train, test=None):
    k = true_kernels(clf, train, test)
    return dataclasses.replace(k, F_train=2 * k.F_train, F_test=None if k.F_test is None else 2 * k.F_test)


def p_f_swapped(clf, train, test=None):
    k = true_kernels(clf, train, test)
    return dataclasses.replace(k, P_train=k.F_train, F_train=k.P_train, P_test=k.F_test, F_test=k.P_test)


MUTANTS = {"F x 2": f_doubled, "P <-> F": p_f_swapped}


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


# ---------------------------------------------------------------------------------------------------------------
# Prop. 4.1: one gradient step changes the logits by eta * (P + F) delta, P from the head, F from the backbone


def _one_sgd_step_change(clf, train, labels, test, eta, part):
    """Logit change on ``test`` after one SGD step of size eta on the *summed* CE loss over ``train``, moving only
    the head, only the backbone or ``all`` parameters."""
    names = {"head": ("head.",), "backbone": ("backbone.",), "all": ("head.", "backbone.")}[part]
    params = [p for n, p in clf.named_parameters() if p.requires_grad and n.startswith(names)]
    saved = [p.detach().clone() for p in params]
    clf.eval()  # the eNTK is the eval-mode (dropout-free) model's
    with torch.no_grad():
        before = clf(**test)
    loss = nn.functional.cross_entropy(clf(**train), labels, reduction="sum")
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= eta * g
        after = clf(**test)
        for p, s in zip(params, saved):
            p.copy_(s)
    return (after - before).reshape(-1).numpy()


def check_prop_4_1(kernel_fn, arch="bert"):
    torch.manual_seed(0)
    clf = Classifier.from_config(tiny_config(arch, vocab_size=40), num_labels=C).double()
    gen = torch.Generator().manual_seed(1)
    train = {"input_ids": torch.randint(1, 40, (4, 6), generator=gen), "attention_mask": torch.ones(4, 6).long()}
    test = {"input_ids": torch.randint(1, 40, (3, 5), generator=gen), "attention_mask": torch.ones(3, 5).long()}
    labels = torch.tensor([0, 2, 1, 2])
    k = kernel_fn(clf, train, test)
    with torch.no_grad():
        delta = residuals(clf.eval()(**train).numpy(), labels.numpy())
    # the head alone: logits are linear in (V, b), so the change is exactly eta P delta
    eta = 1e-3
    assert rel(_one_sgd_step_change(clf, train, labels, test, eta, "head"), eta * k.P_test @ delta) < 1e-9
    for part, K in (("backbone", k.F_test), ("all", k.P_test + k.F_test)):
        predicted = K @ delta  # per unit eta
        errors = [rel(_one_sgd_step_change(clf, train, labels, test, eta, part), eta * predicted)
                  for eta in (1e-3, 1e-4, 1e-5)]
        # relative error O(eta): each 10x smaller step makes it ~10x smaller (absolute error ~100x: quadratic)
        assert errors[2] < 1e-3, (part, errors)
        assert errors[0] / errors[1] > 7 and errors[1] / errors[2] > 7, (part, errors)


# ---------------------------------------------------------------------------------------------------------------
# linear feature extractors


class LinearBackbone(nn.Module):
    """phi(x) = W x with W the ``query`` projection (so PEFT's LoRA targets it); ``input_ids`` (B, 1) index a
    frozen table of input vectors x."""

    def __init__(self, inputs: torch.Tensor, hidden: int):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden, pad_token_id=None, model_type="linear")
        self.table = nn.Embedding.from_pretrained(inputs, freeze=True)
        self.query = nn.Linear(inputs.shape[1], hidden, bias=False, dtype=inputs.dtype)
        # the same pretrained W for every model
        nn.init.normal_(self.query.weight, 0, inputs.shape[1] ** -0.5, generator=torch.Generator().manual_seed(0))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return BaseModelOutput(last_hidden_state=self.query(self.table(input_ids)))


def linear_classifier(inputs, hidden=8, head_seed=0) -> Classifier:
    clf = Classifier(LinearBackbone(inputs, hidden), C, dropout=0.0).double()
    gen = torch.Generator().manual_seed(head_seed)
    with torch.no_grad():
        clf.head.weight.copy_(torch.randn(C, hidden, generator=gen, dtype=torch.float64))
        clf.head.bias.copy_(torch.randn(C, generator=gen, dtype=torch.float64))
    return clf


def ids(indices) -> dict:
    t = torch.as_tensor(indices)[:, None]
    return {"input_ids": t, "attention_mask": torch.ones_like(t)}


def closed_forms(clf, Xa, Xb, inner=None):
    """(P, F) of a linear classifier on rows of Xa against rows of Xb, sample-major: F = <x, x'> V0 V0^T (or
    ``inner`` in place of the Gram <x, x'>), P = (<W x, W x'> + 1) I."""
    V = clf.head.weight.detach().numpy()
    W = clf.backbone.query.weight.detach().numpy() if hasattr(clf.backbone, "query") else None
    Xa, Xb = np.asarray(Xa), np.asarray(Xb)
    gram = Xa @ Xb.T if inner is None else inner
    P = np.kron((Xa @ W.T) @ (Xb @ W.T).T + 1.0, np.eye(C)) if W is not None else None
    return P, np.kron(gram, V @ V.T)


def check_linear_closed_forms(kernel_fn):
    gen = torch.Generator().manual_seed(3)
    inputs = torch.randn(7, 12, generator=gen, dtype=torch.float64)  # generic, not orthogonal
    clf = linear_classifier(inputs)
    k = kernel_fn(clf, ids(range(4)), ids(range(4, 7)))
    X = inputs.numpy()
    P_train, F_train = closed_forms(clf, X[:4], X[:4])
    P_test, F_test = closed_forms(clf, X[4:], X[:4])
    for name, got, want in (("F train", k.F_train, F_train), ("F test", k.F_test, F_test),
                            ("P train", k.P_train, P_train), ("P test", k.P_test, P_test)):
        assert rel(got, want) < 1e-12, name


def check_corollary(kernel_fn):
    d, n_train = 12, 4
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n_train, d, generator=gen, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.cat([X.T, torch.randn(d, d, generator=gen, dtype=torch.float64)], 1))
    X_orth = (Q[:, n_train:n_train + 3]).T * 2.0  # orthogonal to span(X)
    inputs = torch.cat([X, X_orth])
    clf = linear_classifier(inputs)
    train, test = ids(range(n_train)), ids(range(n_train, n_train + 3))
    labels = torch.tensor([0, 1, 2, 1])

    k = kernel_fn(clf, train, test)
    assert rel(k.F_train, closed_forms(clf, X, X)[1]) < 1e-12  # Theta_phi(x_i, x_j) = <x_i, x_j> I
    assert np.abs(k.F_test).max() < 1e-12 * np.abs(k.F_train).max()  # Theta_phi(x, x_i) = <x, x_i> I = 0

    # one step of full fine-tuning moves orthogonal samples' logits through the head only: exactly eta P delta
    with torch.no_grad():
        delta = residuals(clf(**train).numpy(), labels.numpy())
    eta = 0.1
    change = _one_sgd_step_change(clf, train, labels, test, eta, "all")
    assert rel(change, eta * (k.P_test + k.F_test) @ delta) < 1e-10

    phi0 = clf.features(**test).detach().clone()
    opt = torch.optim.SGD(clf.parameters(), lr=0.1)
    for _ in range(20):  # full fine-tuning of W and the head
        opt.zero_grad()
        nn.functional.cross_entropy(clf(**train), labels).backward()
        opt.step()
    assert (clf.backbone.query.weight.detach() - LinearBackbone(inputs, 8).query.weight).abs().max() > 1e-2
    assert (clf.features(**test).detach() - phi0).abs().max() < 1e-12  # W moved, but not on the complement


def check_prop_4_4(kernel_fn):
    """At B = 0 only B's gradient is non-zero: F_LoRA = s^2 V0 V0^T <A x, A x'> with s = alpha / r; and
    E[A^T A] = sigma^2 r I, so F_LoRA -> s^2 sigma^2 r F_FT with relative fluctuations ~ 1 / sqrt(r)."""
    d, hidden, n, alpha = 16, 8, 6, 8
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, d, generator=gen, dtype=torch.float64)
    X = inputs.numpy()
    samples = ids(range(n))
    P_ft, F_ft = closed_forms(linear_classifier(inputs, hidden), X, X)
    sigma2 = 1.0 / (3 * d)  # PEFT's default A: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(d)), variance 1/(3d)
    ranks, means = (4, 16, 64, 256), []
    for r in ranks:
        factor = (alpha / r) ** 2 * sigma2 * r
        assert abs(factor - 1) > 0.5  # the scalar is part of what is tested
        errs = []
        for seed in range(6):
            clf = apply_lora(linear_classifier(inputs, hidden), r=r, alpha=alpha, seed=seed, targets="query")
            k = kernel_fn(clf, samples)
            A = next(p for name, p in clf.named_parameters() if "lora_A" in name).detach().numpy()  # (r, d)
            assert rel(k.P_train, P_ft) < 1e-12  # P_LoRA = P_FT: same phi0 (B = 0), same head
            XA = X @ A.T
            assert rel(k.F_train, closed_forms(clf, X, X, (alpha / r) ** 2 * XA @ XA.T)[1]) < 1e-10
            errs.append(rel(k.F_train, factor * F_ft))
        means.append(np.mean(errs))
    assert all(a > b for a, b in zip(means, means[1:])), means  # decreasing in r (averaged over seeds)
    assert means[-1] < means[0] / 4 and means[-1] < 0.25, means  # 64x the rank: ~8x smaller in expectation


CHECKS = {"prop 4.1 bert": lambda fn: check_prop_4_1(fn, "bert"),
          "prop 4.1 roberta": lambda fn: check_prop_4_1(fn, "roberta"),
          "linear closed forms": check_linear_closed_forms, "corollary": check_corollary,
          "prop 4.4 via PEFT": check_prop_4_4}
assert set(CHECKS) >= {f"prop 4.1 {a}" for a in ARCHS}


@pytest.mark.parametrize("check", list(CHECKS))
def test_statement_holds_for_the_true_kernel(check):
    CHECKS[check](true_kernels)


@pytest.mark.parametrize("mutant", list(MUTANTS))
@pytest.mark.parametrize("check", list(CHECKS))
def test_statement_check_fails_for_a_wrong_kernel(check, mutant):
    with pytest.raises(AssertionError):
        CHECKS[check](MUTANTS[mutant])
