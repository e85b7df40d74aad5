"""The training loop itself: best-epoch restore, linear decay to 0, clipping, batch orders, that it learns, the
checkpoint policy and stopping on SIGINT / SIGTERM."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from lpft.data.batching import DATA_ORDERS, Encoded, train_batches
from lpft.methods.finetune import finetune, trainable_state
from lpft.model import Classifier, init_head
from tiny_models import tiny_config

VOCAB = 60


def toy_task(n: int, seed: int) -> Encoded:
    """Separable 3-class sequences: class c draws its tokens from ids [10 + 15 c, 25 + 15 c), lengths 4..12."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    rows = [[1] + rng.integers(10 + 15 * c, 25 + 15 * c, size=rng.integers(3, 12)).tolist() for c in labels]
    return Encoded(rows, None, labels.astype(np.int64), 0)


def tiny(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    clf = Classifier.from_config(tiny_config("bert", vocab_size=VOCAB), num_labels=3)
    init_head(clf.head, seed)
    return clf


def accuracy(logits, labels):
    acc = float(np.mean(logits.argmax(1) == labels))
    return acc, {"accuracy": acc}


class Recorder:
    """Wraps AdamW.step to record the learning rate and the gradient norm each step sees."""

    def __init__(self, monkeypatch):
        self.lrs, self.grad_norms = [], []
        original = torch.optim.AdamW.step

        def step(opt, *args, **kwargs):
            self.lrs.append(opt.param_groups[0]["lr"])
            grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
            self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            return original(opt, *args, **kwargs)

        monkeypatch.setattr(torch.optim.AdamW, "step", step)


@pytest.mark.parametrize("order", DATA_ORDERS)
def test_separable_toy_task_is_learned(order, tmp_path):
    from lpft.model import extract

    train, val = toy_task(48, 0), toy_task(24, 1)
    clf = tiny()
    assert accuracy(extract(clf, val, logits=True)[1], val.labels)[0] < 0.5  # not before training ...
    result = finetune(clf, train, val, epochs=4, batch_size=8, lr=1e-2, seed=0, evaluate=accuracy,
                      state_dir=tmp_path / "state", data_order=order)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 3
    assert result.best_metric == 1.0  # ... but after: 3 disjoint vocabularies, perfectly separable
    assert accuracy(extract(clf, val, logits=True)[1], val.labels)[0] == 1.0  # the model handed back


def test_restored_model_is_the_best_epochs(tmp_path):
    """Validation scores 0.2, 0.9, 0.5: the model handed back holds epoch 2's weights, not the last ones."""
    scores = iter([0.2, 0.9, 0.5])
    snapshots = {}
    clf = tiny()
    result = finetune(clf, toy_task(24, 0), toy_task(6, 1), epochs=3, batch_size=8, lr=1e-3, seed=0,
                      evaluate=lambda logits, labels: (next(scores), {}), state_dir=tmp_path / "state",
                      on_epoch_end=lambda epoch, model: snapshots.__setitem__(epoch, trainable_state(model)))
    assert result.best_epoch == 2 and result.best_metric == 0.9
    final = trainable_state(clf)
    for name, value in final.items():
        torch.testing.assert_close(value, snapshots[2][name], rtol=0, atol=0)
    assert any(not torch.equal(final[n], snapshots[3][n]) for n in final)


def test_without_validation_the_last_epoch_is_kept(tmp_path):
    snapshots = {}
    clf = tiny()
    result = finetune(clf, toy_task(24, 0), None, epochs=2, batch_size=8, lr=1e-3, seed=0, evaluate=None,
                      state_dir=tmp_path / "state",
                      on_epoch_end=lambda epoch, model: snapshots.__setitem__(epoch, trainable_state(model)))
    assert result.best_epoch == 2
    for name, value in trainable_state(clf).items():
        assert torch.equal(value, snapshots[2][name])


@pytest.mark.parametrize("order", DATA_ORDERS)
def test_learning_rate_decays_linearly_to_zero(order, tmp_path, monkeypatch):
    rec = Recorder(monkeypatch)
    train, lr, epochs, batch = toy_task(20, 0), 1e-3, 3, 8
    finetune(tiny(), train, toy_task(6, 1), epochs=epochs, batch_size=batch, lr=lr, seed=0, evaluate=accuracy,
             state_dir=tmp_path / "state", data_order=order)
    total = epochs * int(np.ceil(20 / batch))  # 3 batches per epoch (8, 8, 4)
    assert len(rec.lrs) == total
    np.testing.assert_allclose(rec.lrs, [lr * (1 - s / total) for s in range(total)], rtol=1e-12)
    # linear, reaching 0 exactly one step after the last
    assert rec.lrs[-1] - (rec.lrs[-2] - rec.lrs[-1]) == pytest.approx(0.0, abs=1e-15)


def test_gradients_are_clipped_to_max_grad_norm(tmp_path, monkeypatch):
    train, val = toy_task(16, 0), toy_task(6, 1)
    rec = Recorder(monkeypatch)
    finetune(tiny(), train, val, epochs=1, batch_size=8, lr=1e-3, seed=0, evaluate=accuracy,
             state_dir=tmp_path / "a", max_grad_norm=0.05)
    clipped = rec.grad_norms[:]
    assert max(clipped) == pytest.approx(0.05, rel=1e-5)
    rec.grad_norms.clear()
    finetune(tiny(), train, val, epochs=1, batch_size=8, lr=1e-3, seed=0, evaluate=accuracy,
             state_dir=tmp_path / "b", max_grad_norm=0)
    assert rec.grad_norms[0] > 0.05  # unclipped: the raw first-step gradient is larger than the cap above


def test_batch_orders():
    enc = toy_task(40, 0)
    for order in DATA_ORDERS:
        for epoch in (0, 1):
            batches = train_batches(enc, 8, seed=3, epoch=epoch, order=order)
            assert sorted(i for b in batches for i in b) == list(range(40))  # each example once per epoch
            assert batches == train_batches(enc, 8, seed=3, epoch=epoch, order=order)  # a function of (seed, epoch)
    random0 = train_batches(enc, 8, 3, 0, "random")
    assert random0 != train_batches(enc, 8, 3, 1, "random")  # a fresh permutation every epoch
    perm = np.random.default_rng([3, 0]).permutation(40)  # random: consecutive slices of one permutation
    assert random0 == [perm[i:i + 8].tolist() for i in range(0, 40, 8)]

    def padding(batches):
        lengths = enc.lengths
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)

    assert padding(train_batches(enc, 8, 3, 0, "length")) < padding(random0) / 2
    with pytest.raises(ValueError, match="data order 'sorted'"):
        train_batches(enc, 8, 3, 0, "sorted")


def test_head_initialisation_is_trainers_by_default():
    """normal: N(0, initializer_range^2) weights and zero bias, as transformers' _init_weights; uniform: nn.Linear's."""
    from transformers import BertForSequenceClassification

    from lpft.model import initializer_range

    clf = tiny()
    std = initializer_range(clf.backbone)
    assert std == 0.02
    head = torch.nn.Linear(384, 3)
    init_head(head, seed=1, std=std)
    assert torch.all(head.bias == 0)
    assert float(head.weight.detach().std()) == pytest.approx(std, rel=0.05)
    init_head(head, seed=1, std=std)
    again = head.weight.detach().clone()
    init_head(head, seed=1, std=std)
    assert torch.equal(head.weight.detach(), again)  # a function of the seed
    # the same distribution as a Trainer model's classifier (mean / std over many entries)
    reference = BertForSequenceClassification(tiny_config("bert", vocab_size=VOCAB)).classifier
    assert torch.all(reference.bias == 0)
    assert float(reference.weight.detach().std()) == pytest.approx(std, rel=0.25)  # 96 entries
    init_head(head, seed=2, method="uniform")
    bound = 384 ** -0.5
    assert float(head.bias.detach().abs().max()) > 0 and float(head.weight.detach().abs().max()) <= bound
    with pytest.raises(ValueError, match="head initialisation 'zeros'"):
        init_head(head, seed=0, method="zeros")


@pytest.mark.parametrize("option, value, message", [
    ("head_init", "zeros", "--head-init 'zeros' is unknown"),
    ("data_order", "sorted", "--data-order 'sorted' is unknown"),
    ("max_grad_norm", -1.0, "--max-grad-norm must be >= 0"),
])
def test_protocol_options_are_validated(option, value, message):
    from lpft.config import ConfigError
    from lpft.methods.config import RunConfig

    with pytest.raises(ConfigError, match=message):
        RunConfig(**{option: value}).resolved()
    resolved = RunConfig().resolved()
    assert (resolved.head_init, resolved.max_grad_norm, resolved.data_order) == ("normal", 1.0, "length")
    assert RunConfig(max_grad_norm=0).resolved().max_grad_norm == 0.0  # 0: no clipping (an int becomes a float)
    with pytest.raises(ConfigError, match="--max-grad-norm must be a number, got None"):
        RunConfig(max_grad_norm=None).resolved()


# ---------------------------------------------------------------- checkpoint policy and stopping on a signal

def train_toy(state_dir, on_forward=None, **kw):
    """4 epochs of 3 batches on the toy task (dropout on: resuming must restore the RNG as well)."""
    clf = tiny()

    def hook(module, args):
        if on_forward is not None and module.training:
            on_forward()

    clf.register_forward_pre_hook(hook)
    options = dict(epochs=4, batch_size=8, lr=1e-3, seed=0, evaluate=accuracy, state_dir=state_dir, log_every=1)
    result = finetune(clf, toy_task(20, 0), toy_task(6, 1), **{**options, **kw})
    return clf, result


def same_training(a, b):
    (clf_a, res_a), (clf_b, res_b) = a, b
    strip = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert strip(res_a.history) == strip(res_b.history) and res_a.steps == res_b.steps
    assert (res_a.best_epoch, res_a.best_metric) == (res_b.best_epoch, res_b.best_metric)
    state_a, state_b = trainable_state(clf_a), trainable_state(clf_b)
    assert all(torch.equal(state_a[n], state_b[n]) for n in state_a)  # bit for bit


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A run under the default policy, and its state folder (300 s between checkpoints: none in a run of seconds)."""
    state_dir = tmp_path_factory.mktemp("whole")
    return train_toy(state_dir), state_dir


# SIGTERM inside epoch 2 (after its batch 2 of 3), SIGINT in the last batch of epoch 2
@pytest.mark.parametrize("signum, at_forward", [(signal.SIGTERM, 5), (signal.SIGINT, 6)])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resuming_changes_nothing(signum, at_forward, tmp_path,
                                                                                      capsys, uninterrupted):
    calls = iter(range(1, 100))

    def send_signal():
        if next(calls) == at_forward:
            os.kill(os.getpid(), signum)

    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt):
        train_toy(tmp_path / "stopped", send_signal)
    assert signal.getsignal(signum) is before  # the handler is put back
    progress = json.loads((tmp_path / "stopped" / "progress.json").read_text())
    # the step that was running when the signal came was finished first
    assert (progress["epoch"], progress["batch"]) == ((1, 2) if at_forward == 5 else (2, 0))
    assert len(progress["steps"]) == at_forward
    assert not capsys.readouterr().out.count("epoch 3/4")
    resumed = train_toy(tmp_path / "stopped")
    assert ("resuming in epoch 2 after batch 2" if at_forward == 5 else "resuming after epoch 2") in \
        capsys.readouterr().out
    same_training(uninterrupted[0], resumed)


def test_checkpoints_are_written_by_time_and_the_best_weights_once(tmp_path, monkeypatch, uninterrupted):
    import lpft.methods.finetune as finetune_module

    written = []
    real_save = finetune_module._save_checkpoint

    def save(*args):
        real_save(*args)
        written.append(sorted(p.name for p in args[3].iterdir()))

    monkeypatch.setattr(finetune_module, "_save_checkpoint", save)
    assert not list(uninterrupted[1].iterdir())  # the default policy wrote nothing
    every_epoch = train_toy(tmp_path / "every", checkpoint_every=0)  # lpft 0.2's policy
    assert len(written) == 4
    for files in written:  # the latest weights and optimiser state, the best epoch's weights, the pointer
        assert len(files) == 4 and "progress.json" in files and sum(f.startswith("best-") for f in files) == 1
    same_training(uninterrupted[0], every_epoch)
    with pytest.raises(Exception, match="--checkpoint-every must be a number of seconds >= 0"):
        from lpft.methods.config import RunConfig

        RunConfig(checkpoint_every=-1).resolved()
    assert RunConfig(checkpoint_every=5).resolved().run_key() == RunConfig().resolved().run_key()
