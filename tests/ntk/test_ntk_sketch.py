"""The sketched F (lpft.ntk.sketch) against the exact one, in float64 on a tiny BERT: unbiased, with the variance the
module docstring states, so the mean of S seeds converges at the rate sqrt(Var / S); a wrong scale fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from test_ntk_kernels import C, make_rows, tiny_classifier

from lpft.ntk import compute_kernels, compute_kernels_to_dir, load_kernels
from lpft.ntk.blocks import EmbeddingBlock
from lpft.ntk.gradients import LogitGradients
from lpft.ntk.sketch import Sketch

DIM, SEEDS = 64, 200


@pytest.fixture(scope="module")
def sketches():
    """One pass of the engine (float64) feeding SEEDS sketches; the exact F; each entry's theoretical variance."""
    clf = tiny_classifier("bert")
    rows = make_rows([6, 3, 9, 5], pairs=True)
    engine = LogitGradients(clf, rows, dtype=torch.float64)
    R = engine.num_samples * C
    accs = [Sketch(DIM, seed, R, torch.float64) for seed in range(SEEDS)]
    exact = torch.zeros(R, R, dtype=torch.float64)
    # theory (module docstring): Var = sum_b [A_b(g) A_b(g') + C_b^2 - 2 D_b] over buckets b
    A = torch.zeros(R, DIM, dtype=torch.float64)
    Cb = torch.zeros(DIM, R, R, dtype=torch.float64)
    D = torch.zeros(R, R, dtype=torch.float64)
    for block in engine.blocks():
        for acc in accs:
            acc.add(block)
        exact += block.gram(engine.num_samples)
        if isinstance(block, EmbeddingBlock):
            group, G = block.name, _dense_embedding(block)
            size, start = G.shape[1], 0
        else:
            group, G = block.param, block.G
            size, start = block.param_size, block.offset
        buckets, _ = accs[0].projection(group, size, start, G.shape[1])
        A.index_add_(1, buckets, G * G)
        for b in buckets.unique().tolist():
            Gb = G[:, buckets == b]
            Cb[b] += Gb @ Gb.T
        D += (G * G) @ (G * G).T
    var = A @ A.T + (Cb ** 2).sum(0) - 2 * D
    estimates = np.stack([acc.gram(engine.num_samples, C).numpy() for acc in accs])
    return exact.numpy(), estimates, var.numpy()


def _dense_embedding(block: EmbeddingBlock) -> torch.Tensor:
    """The embedding block's per-sample gradients as a dense (R, vocab * dim) matrix (the slow reference)."""
    C_, dim = block.delta.shape[1], block.delta.shape[2]
    G = torch.zeros(block.num_samples * C_, block.num_embeddings * dim, dtype=block.delta.dtype)
    for k in range(len(block.ids)):
        v = int(block.ids[k])
        for c in range(C_):
            G[int(block.sample[k]) * C_ + c, v * dim:(v + 1) * dim] += block.delta[k, c]
    return G * block.scale ** 0.5


def check_rate(exact, estimates, var):
    """The mean of S estimates is within a few standard errors sqrt(Var / S) of exact (every entry), and the spread
    over seeds is the theoretical variance (median ratio over entries)."""
    S = len(estimates)
    iu = np.triu_indices(exact.shape[0])
    keep = var[iu] > 1e-12 * var.max()
    z = (estimates.mean(0) - exact)[iu][keep] / np.sqrt(var[iu][keep] / S)
    ratio = estimates.var(0, ddof=1)[iu][keep] / var[iu][keep]
    return float(np.abs(z).max()), float(np.median(ratio))


def test_mean_over_seeds_converges_at_the_theoretical_rate(sketches):
    exact, estimates, var = sketches
    assert np.abs(var).max() > 0 and (var >= -1e-9 * var.max()).all()
    zmax, ratio = check_rate(exact, estimates, var)
    assert zmax < 4.5, zmax           # ~190 entries of a N(0, 1) statistic: max |z| ~ 3
    assert 0.8 < ratio < 1.25, ratio  # sample variance over 200 seeds: +-10 % per entry
    # the rate: the mean of S/4 seeds has about twice the error of the mean of S
    err = [np.linalg.norm(estimates[:s].mean(0) - exact) for s in (SEEDS // 4, SEEDS)]
    assert 1.3 < err[0] / err[1] < 3.0, err
    # a single sketch at this K is far from exact: the agreement above is the averaging, not a degenerate sketch
    assert np.linalg.norm(estimates[0] - exact) / np.linalg.norm(exact) > 0.05


@pytest.mark.parametrize("scale", [1.1, 0.9])
def test_a_wrong_scale_fails_the_check(sketches, scale):
    exact, estimates, var = sketches
    zmax, ratio = check_rate(exact, estimates * scale, var)
    assert zmax > 4.5 or not 0.8 < ratio < 1.25


def test_wide_sketch_is_close_and_engine_path_matches(tmp_path):
    """K far above the parameter count: near exact; the folder path gives the in-memory result, records the seed,
    and a different seed gives a different estimate."""
    clf = tiny_classifier("bert")
    train, test = make_rows([6, 3, 9, 5], pairs=True), make_rows([7, 2, 4], seed=2, pairs=True)
    exact = compute_kernels(clf, train, test, dtype=torch.float64)
    k = compute_kernels(clf, train, test, dtype=torch.float64, sketch=2**16, sketch_seed=3)
    rel = np.linalg.norm(k.F_train - exact.F_train) / np.linalg.norm(exact.F_train)
    assert rel < 0.03
    assert np.linalg.norm(k.F_test - exact.F_test) / np.linalg.norm(exact.F_test) < 0.03
    assert np.array_equal(k.P_train, exact.P_train) and np.array_equal(k.P_test, exact.P_test)  # P stays exact
    d = compute_kernels_to_dir(clf, train, test, tmp_path / "s", dtype=torch.float64, sketch=2**16, sketch_seed=3)
    np.testing.assert_allclose(d.F_train, k.F_train, rtol=1e-12, atol=1e-12 * np.abs(k.F_train).max())
    meta = __import__("json").loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["options"]["sketch"] == 2**16 and meta["options"]["sketch_seed"] == 3
    other = compute_kernels(clf, train, dtype=torch.float64, sketch=2**16, sketch_seed=4)
    assert not np.allclose(other.F_train, k.F_train)
    # float32 projections (the default gradients) agree with the float64 ones to float32 accuracy
    k32 = compute_kernels(clf, train, test, sketch=2**16, sketch_seed=3)
    assert np.linalg.norm(k32.F_train - k.F_train) / np.linalg.norm(k.F_train) < 1e-5


def test_sketch_is_independent_of_how_groups_are_sliced():
    """A parameter keeps its bucket and sign whatever the memory budget: the same seed, the same estimate."""
    clf = tiny_classifier("bert")
    train = make_rows([6, 3, 9, 5])
    a = compute_kernels(clf, train, dtype=torch.float64, sketch=128, sketch_seed=1)
    b = compute_kernels(clf, train, dtype=torch.float64, sketch=128, sketch_seed=1, memory_budget=40_000)
    np.testing.assert_allclose(a.F_train, b.F_train, rtol=1e-10, atol=1e-12 * np.abs(a.F_train).max())


def test_sketch_resumes_from_its_saved_projections(tmp_path):
    clf = tiny_classifier("bert")
    train = make_rows([6, 3, 9, 5])
    want = compute_kernels(clf, train, dtype=torch.float64, sketch=256, sketch_seed=2)
    folder = tmp_path / "k"
    calls = []

    def stop_after_three(done, total, name):
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        compute_kernels_to_dir(clf, train, None, folder, dtype=torch.float64, sketch=256, sketch_seed=2,
                               state_seconds=0.0, progress=stop_after_three)
    got = compute_kernels_to_dir(clf, train, None, folder, dtype=torch.float64, sketch=256, sketch_seed=2,
                                 state_seconds=0.0, progress=lambda d, t, n: calls.append(d))
    assert calls[3] == 4  # resumed after the third group
    np.testing.assert_allclose(got.F_train, want.F_train, rtol=1e-12, atol=1e-12 * np.abs(want.F_train).max())
    np.testing.assert_array_equal(load_kernels(folder).F_train, got.F_train)


def test_sigterm_leaves_no_temporary_file(tmp_path):
    """SIGTERM while a state file is being written: the process stops, no *.tmp is left, a rerun completes."""
    folder = tmp_path / "k"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{os.path.dirname(__file__)!r}, {os.path.dirname(os.path.dirname(__file__))!r}]
        import numpy as np
        import torch
        from test_ntk_kernels import make_rows, tiny_classifier
        from lpft.ntk import compute_kernels_to_dir
        real = np.savez
        def savez_then_term(fh, **arrays):
            real(fh, **arrays)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the .tmp file exists
        np.savez = savez_then_term
        compute_kernels_to_dir(tiny_classifier("bert"), make_rows([6, 3, 9, 5]), None, {str(folder)!r},
                               dtype=torch.float64)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr, proc.stderr[-2000:]
    assert folder.exists() and not list(folder.rglob("*.tmp")), sorted(p.name for p in folder.iterdir())
    k = compute_kernels_to_dir(tiny_classifier("bert"), make_rows([6, 3, 9, 5]), None, folder, dtype=torch.float64)
    assert k.F_train.shape == (4 * C, 4 * C)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_rows_cut_into_parts_give_the_same_sketch(tmp_path):
    """A budget too small for every sample's recorded stage inputs: the engine cuts the rows into parts, runs each
    alone (recorded again), and the sketch of train and test rows is the one-part sketch; each part's recorded
    inputs fit in its share of the budget; an exact Gram refuses parts; an interrupted run resumes between parts."""
    from lpft.ntk.gradients import INPUT_SHARE
    from lpft.ntk.kernels import _Accumulator, _engine_budget

    clf = tiny_classifier("bert")
    train, test = make_rows([6, 3, 9, 5, 7], pairs=True), make_rows([7, 2, 4], seed=2, pairs=True)
    options = dict(dtype=torch.float64, sketch=128, sketch_seed=1, max_batch=1)
    whole = compute_kernels(clf, train, test, **options)
    budget = 200_000
    share = INPUT_SHARE * _engine_budget(budget, 128, 8 * C)  # as compute_kernels gives it
    engine = LogitGradients(clf, train + test, split=5, dtype=torch.float64, row_parts=True, max_batch=1,
                            memory_budget=_engine_budget(budget, 128, 8 * C))
    assert engine.calls is None and len(engine.parts) >= 3, engine.parts
    assert all(c1 == c0 + 1 or sum(engine._input_bytes[c0:c1]) <= share for c0, c1 in engine.parts)
    assert engine.group_names[0].startswith("rows 0:") and len(set(engine.group_names)) == len(engine.group_names)
    with pytest.raises(ValueError, match="row_parts"):
        _Accumulator(engine, 5, None, 0)
    cut = compute_kernels(clf, train, test, memory_budget=budget, **options)
    for name in ("F_train", "F_test"):
        a, b = getattr(whole, name), getattr(cut, name)
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.abs(a).max())
    np.testing.assert_array_equal(cut.features_test, whole.features_test)

    folder, seen = tmp_path / "k", []

    stop = sum(len(p["groups"]) for p in engine.plans[0]) + 2  # within the second part

    def interrupt(done, total, name):
        seen.append(done)
        if done == stop:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        compute_kernels_to_dir(clf, train, test, folder, memory_budget=budget, state_seconds=0.0,
                               progress=interrupt, **options)
    got = compute_kernels_to_dir(clf, train, test, folder, memory_budget=budget, state_seconds=0.0,
                                 progress=lambda d, t, n: seen.append(d), **options)
    assert seen == list(range(1, len(engine.group_names) + 1))  # resumed where it stopped, nothing done twice
    np.testing.assert_allclose(got.F_test, whole.F_test, rtol=1e-12, atol=1e-12 * np.abs(whole.F_test).max())
