"""Pretrained weights kept in memory across runs (lpft.model.memory): read from disk once, every run gets the
pristine weights, never what another run trained."""

from __future__ import annotations

import pytest
import torch

from lpft import model
from lpft.model.memory import active, keep_pretrained


@pytest.fixture
def disk_reads(monkeypatch):
    """Counts the reads of weights / tokenizer files through transformers' Auto classes."""
    from transformers import AutoModel, AutoTokenizer

    reads = {"model": 0, "tokenizer": 0}
    model_load, tok_load = AutoModel.from_pretrained, AutoTokenizer.from_pretrained

    def counted(kind, load):
        def wrapper(*args, **kwargs):
            reads[kind] += 1
            return load(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(AutoModel, "from_pretrained", counted("model", model_load))
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", counted("tokenizer", tok_load))
    return reads


def weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_run_never_sees_another_runs_trained_weights(tiny_bert_dir, disk_reads):
    name = str(tiny_bert_dir)
    pristine = weights(model.load_backbone(name))
    with keep_pretrained():
        first = model.Classifier.from_pretrained(name, 2)
        with torch.no_grad():  # "training": every weight of the first run's backbone changes in place
            for p in first.backbone.parameters():
                p.add_(1.0)
        second = model.Classifier.from_pretrained(name, 2)
        third = model.load_backbone(name)
    assert disk_reads["model"] == 2  # once before the study, once inside it: the weights were read once there
    for copy in (second.backbone, third):
        now = weights(copy)
        assert now.keys() == pristine.keys()
        for key in pristine:
            assert torch.equal(now[key], pristine[key]), key
        assert all(p.data_ptr() != q.data_ptr() for p, q in zip(copy.parameters(), first.backbone.parameters()))
    assert second.backbone is not third


def test_tokenizer_read_once_and_nothing_kept_outside(tiny_bert_dir, disk_reads):
    name = str(tiny_bert_dir)
    assert not active()
    with keep_pretrained():
        assert active()
        with keep_pretrained():  # nested (an executor inside a study): the same store
            tok = model.load_tokenizer(name)
        assert model.load_tokenizer(name) is tok
        model.load_backbone(name), model.load_backbone(name)
    assert (disk_reads["tokenizer"], disk_reads["model"]) == (1, 1)
    assert not active()
    assert model.load_tokenizer(name) is not tok  # outside: read from disk every time, as before
    model.load_backbone(name)
    assert (disk_reads["tokenizer"], disk_reads["model"]) == (2, 2)


def test_a_model_folder_rewritten_is_read_again(tmp_path, disk_reads):
    from tiny_models import save_tiny_model

    folder = save_tiny_model(tmp_path / "m", "bert")
    with keep_pretrained():
        before = weights(model.load_backbone(str(folder)))
        import os

        for f in folder.glob("*.safetensors"):  # a new modification time: the files' identity changed
            os.utime(f, (f.stat().st_atime, f.stat().st_mtime + 10))
        model.load_backbone(str(folder))
    assert disk_reads["model"] == 2 and before


def test_a_failed_load_is_not_kept(tmp_path):
    with keep_pretrained():
        for _ in range(2):
            with pytest.raises(model.ModelError):
                model.load_backbone(str(tmp_path / "missing"))
