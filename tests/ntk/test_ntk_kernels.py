"""The eNTK engine against the full-Jacobian reference, in float64 on tiny BERT / RoBERTa models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lpft.methods.lora import apply_lora
from lpft.model import Classifier
from lpft.ntk import compute_kernels, compute_kernels_to_dir, load_kernels
from lpft.ntk.gradients import DenseBlock, EmbeddingBlock, LogitGradients, embedding_entries_kept, pad_rows
from lpft.ntk.reference import authors_entk, jacobian_entk, logit_jacobians
from tiny_models import ARCHS, activate_lora_b, tiny_config

VOCAB, C = 40, 3


def tiny_classifier(arch: str, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    clf = Classifier.from_config(tiny_config(arch, vocab_size=VOCAB), num_labels=C)
    with torch.no_grad():  # a non-degenerate head, so every block of F matters
        clf.head.weight.normal_(0, 1.0)
    return clf


def make_rows(lengths, seed: int = 1, pairs: bool = False):
    """Random token rows from a small vocabulary: ids repeat within and across samples (sparse-embedding case)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for length in lengths:
        ids = torch.randint(1, VOCAB, (length,), generator=gen)
        row = {"input_ids": ids, "attention_mask": torch.ones(length, dtype=torch.long)}
        if pairs:
            row["token_type_ids"] = (torch.arange(length) >= length // 2).long()
        rows.append(row)
    return rows


def rel_err(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("arch", ARCHS)
def test_kernels_match_full_jacobian_reference(arch):
    clf = tiny_classifier(arch)
    train, test = make_rows([6, 3, 9, 5], pairs=arch == "bert"), make_rows([7, 2, 4], seed=2, pairs=arch == "bert")
    k = compute_kernels(clf, train, test, dtype=torch.float64)
    ref_train = jacobian_entk(clf.double(), train)
    ref_test = jacobian_entk(clf, test, train)
    assert k.F_train.shape == (4 * C, 4 * C) and k.F_test.shape == (3 * C, 4 * C)
    assert rel_err(k.F_train, ref_train["backbone"]) < 1e-6
    assert rel_err(k.F_test, ref_test["backbone"]) < 1e-6
    assert rel_err(k.P_train, ref_train["head"]) < 1e-12  # P = (<phi0, phi0'> + 1) I_C is the head's eNTK
    assert rel_err(k.P_test, ref_test["head"]) < 1e-12
    assert rel_err(k.full_train, ref_train["full"]) < 1e-6  # P + F = the eNTK of the whole model
    assert rel_err(k.full_test, ref_test["full"]) < 1e-6
    assert np.allclose(k.F_train, k.F_train.T, rtol=0, atol=1e-12 * np.abs(k.F_train).max())


@pytest.mark.parametrize("arch", ARCHS)
def test_staged_and_sample_by_sample_paths_agree(arch):
    clf = tiny_classifier(arch, seed=3)
    rows = make_rows([5, 8, 3])
    staged = LogitGradients(clf, rows, dtype=torch.float64)
    assert staged.staged, "tiny HF encoders must take the staged (layer-wise) path"
    k1 = compute_kernels(clf, rows, dtype=torch.float64)
    k2 = compute_kernels(clf, rows, dtype=torch.float64, staged=False)
    assert rel_err(k2.F_train, k1.F_train) < 1e-12


def _gradients_by_sample(engine: LogitGradients) -> dict[str, np.ndarray]:
    """Dense per-sample gradient rows of every block, in sample order (embedding blocks densified)."""
    C, n = engine.num_labels, engine.num_samples
    perm = (engine.order[:, None] * C + np.arange(C)).reshape(-1)
    out = {}
    for block in engine.blocks():
        if isinstance(block, DenseBlock):
            G = block.G.numpy()
        else:
            vocab = int(block.ids.max()) + 1
            G = np.zeros((n, vocab, C, block.delta.shape[-1]))
            np.add.at(G, (block.sample.numpy(), block.ids.numpy()), block.delta.numpy())
            G = G.transpose(0, 2, 1, 3).reshape(n * C, -1)
        dense = np.empty_like(G)
        dense[perm] = G
        out[block.name] = dense
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_per_sample_gradients_independent_of_batching_and_padding(arch):
    clf = tiny_classifier(arch, seed=4)
    rows = make_rows([9, 2, 6, 4, 7])
    alone = _gradients_by_sample(LogitGradients(clf, rows, dtype=torch.float64, max_tokens=1))  # one per batch
    batched = _gradients_by_sample(LogitGradients(clf, rows, dtype=torch.float64, max_tokens=10_000))
    # a padded batch with extra all-pad columns, given as one dict
    padded = pad_rows(rows, 0)
    padded = {k: torch.cat([v, torch.zeros(v.shape[0], 5, dtype=v.dtype)], 1) for k, v in padded.items()}
    padded_grads = _gradients_by_sample(LogitGradients(clf, padded, dtype=torch.float64))
    assert alone.keys() == batched.keys() == padded_grads.keys()
    for name in alone:
        scale = np.abs(alone[name]).max() or 1.0
        assert np.abs(batched[name] - alone[name]).max() <= 1e-12 * scale, name
        assert np.abs(padded_grads[name] - alone[name]).max() <= 1e-12 * scale, name
    # and they are the true logit gradients
    ref = logit_jacobians(clf.double(), rows)
    emb = alone["embeddings.word_embeddings.weight"]
    want = ref["backbone.embeddings.word_embeddings.weight"].numpy()
    assert np.abs(emb - want[:, : emb.shape[1]]).max() <= 1e-12 * np.abs(want).max()
    assert not np.any(want[:, emb.shape[1]:])  # rows of ids never seen have zero gradient


def test_memory_budget_splits_groups_without_changing_the_kernel():
    clf = tiny_classifier("bert", seed=5)
    rows = make_rows([6, 4, 5])
    roomy = LogitGradients(clf, rows, dtype=torch.float64)
    tight = LogitGradients(clf, rows, dtype=torch.float64, memory_budget=4000)
    assert len(tight.group_names) > 3 * len(roomy.group_names)
    assert any("[" in g for g in tight.group_names)  # weights cut into row blocks
    k1 = compute_kernels(clf, rows, dtype=torch.float64)
    k2 = compute_kernels(clf, rows, dtype=torch.float64, memory_budget=4000)
    assert rel_err(k2.F_train, k1.F_train) < 1e-12


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_kernel_is_over_the_adapter_factors_only(arch):
    clf = tiny_classifier(arch, seed=6)
    apply_lora(clf, r=4, alpha=8, seed=1)
    activate_lora_b(clf)  # B = 0 at init makes A's gradients vanish; make both factors matter
    rows = make_rows([5, 7, 3])
    engine = LogitGradients(clf, rows, dtype=torch.float64)
    assert engine.staged
    assert engine.group_names and all("lora_" in g for g in engine.group_names)
    k = compute_kernels(clf, rows, dtype=torch.float64)
    ref = jacobian_entk(clf.double(), rows)
    assert rel_err(k.F_train, ref["backbone"]) < 1e-6
    assert rel_err(k.full_train, ref["full"]) < 1e-6


def test_float32_fast_path_close_to_float64():
    clf = tiny_classifier("roberta", seed=7)
    rows = make_rows([8, 5, 6, 3])
    k32 = compute_kernels(clf, rows)
    k64 = compute_kernels(clf, rows, dtype=torch.float64)
    assert k32.F_train.dtype == np.float64
    assert rel_err(k32.F_train, k64.F_train) < 1e-5


def test_authors_method_agrees():
    clf = tiny_classifier("bert", seed=8).double()
    rows = make_rows([4, 6])
    k = compute_kernels(clf, rows, dtype=torch.float64)
    assert rel_err(k.F_train, authors_entk(clf, rows)) < 1e-10


def test_embedding_block_gram_matches_dense_scatter():
    gen = torch.Generator().manual_seed(0)
    n, C, dim, vocab = 5, 2, 3, 6
    sample = torch.randint(0, n, (30,), generator=gen)
    ids = torch.randint(0, vocab, (30,), generator=gen)
    delta = torch.randn(30, C, dim, generator=gen, dtype=torch.float64)
    block = EmbeddingBlock("emb", sample, ids, delta, n)
    G = torch.zeros(n, C, vocab, dim, dtype=torch.float64)
    for s, v, d in zip(sample, ids, delta):
        G[s, :, v] += d
    G = G.reshape(n * C, -1)
    for ncols in (n, 3):
        assert torch.allclose(block.gram(ncols), G @ G[: ncols * C].T, atol=1e-12)
    dense = DenseBlock("dense", G, n)
    assert torch.allclose(dense.gram(3, slab=7, block_rows=4), G @ G[: 3 * C].T, atol=1e-12)


def test_embedding_parameter_subsampling_is_the_documented_approximation():
    """embedding_fraction p keeps each entry of the word-embedding matrix with probability p, scaled by 1/p: the
    word-embedding block of F becomes the Gram of the Jacobian's kept columns / p; every other block is exact."""
    clf = tiny_classifier("bert", seed=9)
    rows = make_rows([6, 8, 4])
    exact = compute_kernels(clf, rows, dtype=torch.float64)
    assert rel_err(compute_kernels(clf, rows, dtype=torch.float64, embedding_fraction=1.0).F_train,
                   exact.F_train) < 1e-12
    approx = compute_kernels(clf, rows, dtype=torch.float64, embedding_fraction=0.5, seed=3)
    J = logit_jacobians(clf.double(), rows)["backbone.embeddings.word_embeddings.weight"]
    J = J.reshape(len(rows) * C, VOCAB, -1)
    kept = embedding_entries_kept(VOCAB, J.shape[2], 0.5, seed=3)  # (vocab, h) entries
    assert 0.3 < kept.double().mean() < 0.7 and (kept.any(1) & ~kept.all(1)).any()  # entries, not whole rows
    full_block = torch.einsum("avh,bvh->ab", J, J).numpy()
    kept_block = torch.einsum("avh,bvh->ab", J * kept, J * kept).numpy() / 0.5
    assert rel_err(approx.F_train, exact.F_train - full_block + kept_block) < 1e-10
    # unbiased: averaged over draws, the subsampled kernel approaches the exact one
    mean = np.mean([compute_kernels(clf, rows, dtype=torch.float64, embedding_fraction=0.5, seed=s).F_train
                    for s in range(8)], axis=0)
    assert rel_err(mean, exact.F_train) < rel_err(approx.F_train, exact.F_train)


class _Interrupt(Exception):
    pass


def test_resumable_folder(tmp_path):
    clf = tiny_classifier("bert", seed=10)
    train, test = make_rows([5, 7, 4]), make_rows([6, 3], seed=2)
    want = compute_kernels(clf, train, test, dtype=torch.float64)
    folder = tmp_path / "kernels"
    seen = []

    def stop_after_five(done, total, name):
        seen.append(name)
        if done == 5:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        compute_kernels_to_dir(clf, train, test, folder, train_indices=[10, 11, 12], test_indices=[0, 1],
                               dtype=torch.float64, progress=stop_after_five)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["done"] == 5 and not meta["complete"] and (folder / "state.npz").exists()
    resumed = []
    got = compute_kernels_to_dir(clf, train, test, folder, train_indices=[10, 11, 12], test_indices=[0, 1],
                                 dtype=torch.float64, progress=lambda d, t, n: resumed.append(n))
    assert resumed == meta["groups"][5:]  # finished groups are not recomputed
    for name in ("P_train", "F_train", "P_test", "F_test"):
        assert rel_err(getattr(got, name), getattr(want, name)) < 1e-12, name
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["complete"] and meta["train_indices"] == [10, 11, 12] and meta["test_indices"] == [0, 1]
    assert meta["ordering"].startswith("sample-major") and not (folder / "state.npz").exists()
    loaded = load_kernels(folder)
    assert np.array_equal(loaded.F_test, got.F_test) and loaded.num_labels == C
    again = compute_kernels_to_dir(clf, train, test, folder, train_indices=[10, 11, 12], test_indices=[0, 1],
                                   dtype=torch.float64, progress=lambda *a: pytest.fail("recomputed"))
    assert np.array_equal(again.F_train, got.F_train)
    with pytest.raises(ValueError, match="another model"):  # a complete folder is not silently reused either
        compute_kernels_to_dir(clf, train, test, folder, dtype=torch.float32)
    # a different model must not silently continue someone else's partial sums
    other = tmp_path / "other"
    with pytest.raises(_Interrupt):
        compute_kernels_to_dir(clf, train, test, other, dtype=torch.float64, progress=stop_after_five)
    with pytest.raises(ValueError, match="another model"):
        compute_kernels_to_dir(tiny_classifier("bert", seed=11), train, test, other, dtype=torch.float64)


def test_encoded_examples_as_input():
    from lpft.data.base import Example
    from lpft.data.batching import collate, encode
    from lpft.model import DEFAULT_MODEL, load_tokenizer

    torch.manual_seed(12)
    clf = Classifier.from_config(tiny_config("bert"), num_labels=C)  # the embedded tokenizer's vocabulary
    examples = [Example("a cat sat", 0, "on the mat"), Example("it rains", 2, None), Example("no", 1, "yes it is")]
    enc = encode(load_tokenizer(DEFAULT_MODEL), examples, max_length=32)
    k1 = compute_kernels(clf, enc.subset([0, 1]), enc.subset([2]))
    batch = {key: v for key, v in collate(enc, [0, 1, 2]).items() if key != "labels"}
    k2 = compute_kernels(clf, {key: v[:2] for key, v in batch.items()}, {key: v[2:] for key, v in batch.items()})
    assert k1.F_test.shape == (C, 2 * C)
    assert rel_err(k1.F_train, k2.F_train) < 1e-6 and rel_err(k1.F_test, k2.F_test) < 1e-6


@pytest.mark.parametrize("arch", ARCHS)
def test_query_value_part_matches_the_jacobian_reference(arch, tmp_path):
    """F over the query / value weights only (claim 7, Prop. 4.4), saved beside F; resumes like F."""
    clf = tiny_classifier(arch, seed=3)
    train, test = make_rows([6, 3, 9, 5], seed=4), make_rows([7, 2], seed=5)
    folder = tmp_path / "k"
    seen = []

    def stop_after_three(done, total, name):
        seen.append(name)
        if done == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        compute_kernels_to_dir(clf, train, test, folder, dtype=torch.float64, part_modules=("query", "value"),
                               progress=stop_after_three)
    k = compute_kernels_to_dir(clf, train, test, folder, dtype=torch.float64, part_modules=("query", "value"))
    jac = logit_jacobians(clf.double(), train)
    names = [n for n in jac if n.endswith(("query.weight", "value.weight"))]
    assert len(names) == 4  # 2 layers x (query, value), weights only (LoRA adapts the weights)
    ref = sum(jac[n].double() @ jac[n].double().T for n in names).numpy()
    F_qv = np.load(folder / "F_qv_train.npy")
    assert F_qv.shape == k.F_train.shape and rel_err(F_qv, ref) < 1e-6
    assert 0 < np.abs(F_qv).max() < np.abs(k.F_train).max()  # a part of F, not all of it
    # without the option nothing changes: no file, and the folder signature of earlier computations
    plain = compute_kernels_to_dir(clf, train, test, tmp_path / "plain", dtype=torch.float64)
    assert not (tmp_path / "plain" / "F_qv_train.npy").exists()
    assert np.array_equal(plain.F_train, k.F_train)
