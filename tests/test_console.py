"""Console lines and output names: epoch lines, run labels, ntk folders, ID / OOD roles."""

import pytest

from lpft.analysis.ood import set_role
from lpft.commands.ntk import ntk_folder
from lpft.methods.config import RunConfig
from lpft.methods.finetune import epoch_line
from lpft.runs import run_label

EPOCH_LINES = [  # (desc, metrics, best, expected line)
    ("LP-FT (seed 0)", {"accuracy": 0.972972972972973}, True,
     "LP-FT (seed 0) epoch 1/2: train loss 0.1887, validation accuracy 0.9730 (best so far)"),
    ("FT (seed 1)", {"accuracy": 0.5, "f1": 0.25}, False,
     "FT (seed 1) epoch 1/2: train loss 0.1887, validation accuracy 0.5000, f1 0.2500"),
    ("NTK predict: fine-tune", {}, True, "NTK predict: fine-tune epoch 1/2: train loss 0.1887"),
]


@pytest.mark.parametrize("desc,metrics,best,expected", EPOCH_LINES, ids=[e[0] for e in EPOCH_LINES])
def test_epoch_line(desc, metrics, best, expected):
    assert epoch_line(desc, 1, 2, 0.18871, metrics, best) == expected


RUN_LABELS = [  # a norm sweep's runs differ only in the head norm / scale: the label must say which
    (RunConfig(method="lp-ft"), "LP-FT (seed 0)"),
    (RunConfig(method="ft", seed=3, head_norm=0.5), "FT (seed 3, head norm 0.5)"),
    (RunConfig(method="ft", seed=3, head_norm=100.0), "FT (seed 3, head norm 100)"),
    (RunConfig(method="lp-lora", head_scale=2.0), "LP-LORA (seed 0, head x2)"),
]


@pytest.mark.parametrize("cfg,label", RUN_LABELS, ids=[label for _, label in RUN_LABELS])
def test_run_label(cfg, label):
    assert run_label(cfg) == label


NTK_BASE = dict(n_train=250, n_test=250, memory_budget=3 << 30, embedding_fraction=None)
NTK_VARIANTS = [("n_train", 20), ("n_test", 20), ("memory_budget", 1 << 30), ("embedding_fraction", 0.1),
                ("sample", "first")]


@pytest.mark.parametrize("option,value", NTK_VARIANTS, ids=[o for o, _ in NTK_VARIANTS])
def test_ntk_folder_is_keyed_on_every_kernel_option(option, value, tmp_path):
    cfg = RunConfig(task="cb", method="lp-ft").resolved()
    base = ntk_folder(tmp_path, cfg, **NTK_BASE)
    assert base == ntk_folder(tmp_path, cfg, **NTK_BASE)  # same options, same folder (resume / reuse)
    assert base.name.startswith("lp-ft-seed0-n250x250-") and base.parent == tmp_path / "cb" / "ntk"
    assert ntk_folder(tmp_path, cfg, **{**NTK_BASE, option: value}) != base


def test_ntk_folder_is_keyed_on_the_run_options(tmp_path):
    a = ntk_folder(tmp_path, RunConfig(task="cb", method="ft").resolved(), **NTK_BASE)
    b = ntk_folder(tmp_path, RunConfig(task="cb", method="ft", lr=1e-3).resolved(), **NTK_BASE)
    assert a != b


ROLES = [  # (run's task, evaluated set: a task name or None for a file, role)
    ("cola", "cola-id", "ID"),  # CoLA's in-domain dev set: the training distribution
    ("cola", "cola-ood", "OOD"),
    ("cola", "cola", "ID+OOD"),  # CoLA's own test split is both parts
    ("cola-ood", "cola-id", "ID"),
    ("cola-id", "cola-id", "ID"),
    ("cb", "cb", "ID"),
    ("cb", "rte", "OOD"),
    ("cb", None, "OOD"),
    ("boss-amazon", "boss-amazon-full", "ID"),  # the same Amazon distribution, whole release
    ("boss-amazon", "boss-dynasent", "OOD"),
    ("boss-amazon", "boss-sst5-full", "OOD"),
    ("boss-dynasent", "boss-dynasent", "ID"),
    ("cola", "boss-amazon", "OOD"),
]


@pytest.mark.parametrize("run_task,task,role", ROLES, ids=[f"{r}-{t}" for r, t, _ in ROLES])
def test_set_role(run_task, task, role):
    assert set_role(run_task, task) == role
