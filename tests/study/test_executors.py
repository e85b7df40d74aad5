"""Executors: a multi-task study file run locally (report with the cross-task table), the same grid on a local Ray
instance with identical metrics and logits, and a Ray worker killed mid-run that changes nothing."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from study_files import study_toml

from lpft.cli import main
from lpft.io import read_json
from lpft.report.tables import fmt_mean_std, fmt_percent, read_csv
from lpft.runs import RunRecord
from lpft.study import RayExecutor, load_study, plan, run_study


def run_files(out):
    """run folder name -> (metrics without timings, validation logits, test logits)."""
    found = {}
    for metrics in sorted(out.glob("files/*/*/metrics.json")):
        record = RunRecord(metrics.parent)
        numbers = {k: v for k, v in record.metrics.items() if k != "seconds"}
        # every epoch's losses and metrics too: a resumed run that lost its optimiser state differs after the resume
        numbers["history"] = [{k: v for k, v in row.items() if "seconds" not in k} for row in record.history]
        found[metrics.parent.relative_to(out).as_posix()] = (numbers, record.logits("validation")[0],
                                                              record.logits("test")[0])
    return found


def assert_same_runs(a, b):
    assert sorted(a) == sorted(b) and a
    for name in a:
        assert a[name][0] == b[name][0], name
        for x, y in zip(a[name][1:], b[name][1:]):
            np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def local_study(two_tasks, tiny_bert_dir, tmp_path_factory):
    """`lpft study` with the local executor: 2 tasks x (LP-FT, FT) x 2 seeds, 2 epochs, plus a norm sweep."""
    import torch

    folder = tmp_path_factory.mktemp("local-study")
    threads = torch.get_num_threads()
    path = folder / "study.toml"
    path.write_text(study_toml(two_tasks, tiny_bert_dir, methods=("lp", "ft", "lp-ft"), seeds=(1, 2),
                               extra='\n[norm_sweep]\ntasks = ["alpha"]\nmethods = ["ft"]\nnorms = [0.5, 5]\n'
                                     'seeds = [1]\n'))
    # default executor options: the same torch threads per run as RayExecutor's defaults (the machine's cores)
    assert main(["study", str(path), "--out", str(folder / "runs"), "--cache-dir", str(folder / "cache"),
                 "--device", "cpu"]) == 0
    assert torch.get_num_threads() == threads  # the caller's setting is restored
    return path, folder


def test_local_study_report_has_the_cross_task_table(local_study):
    path, folder = local_study
    report = folder / "runs" / "study" / "study"
    rows = read_csv(report / "table8.csv")
    assert [(r["task"], r["method"]) for r in rows] == [(t, m) for t in ("alpha", "beta")
                                                        for m in ("lp", "ft", "lp-ft")]
    md = (report / "report.md").read_text()
    for task in ("alpha", "beta"):
        runs = read_csv(report / task / "runs.csv")
        assert len(runs) == 6  # 3 methods x 2 seeds
        lp = {r["folder"] for r in runs if r["method"] == "lp"}
        assert len(lp) == 1  # one seed-free LP run fills both seeds' cells
        accs = [float(r["test_accuracy"]) for r in runs if r["method"] == "ft"]
        cell = next(r for r in rows if r["task"] == task and r["method"] == "ft")
        assert float(cell["mean"]) == pytest.approx(np.mean(accs)) and int(cell["n"]) == 2
        assert f"## {task}" in md and f"({task}/report.md)" in md
        assert (report / task / "report.md").is_file() and (report / task / "tsne.png").is_file()
        assert fmt_mean_std(accs, fmt_percent) in md
    assert "Test metrics across tasks (paper Table 8)" in md
    sweep = read_csv(report / "alpha" / "norm-sweep" / "sweep.csv")
    assert sorted(float(r["value"]) for r in sweep) == [0.5, 5.0]
    info = json.loads((report / "study.json").read_text())
    assert info["tasks"] == ["alpha", "beta"] and info["seeds"] == [1, 2]
    # per task: LP + 2 x (FT, LP-FT); 2 sweep points on alpha
    assert len(list((folder / "runs").glob("files/*/*/metrics.json"))) == 2 * 5 + 2


def test_a_second_study_reuses_every_run(local_study, capsys):
    path, folder = local_study
    assert main(["study", str(path), "--out", str(folder / "runs"), "--cache-dir", str(folder / "cache"),
                 "--dry-run"]) == 0
    assert "12 job(s) (12 finished already)" in capsys.readouterr().out


def test_models_kept_in_memory_change_no_number(local_study, tmp_path):
    """The local study kept each model in memory across its 12 runs (the default): the same runs, each reading the
    weights from disk (keep_models=False), give identical numbers. A run that started from another run's trained
    backbone would differ."""
    from lpft.study import LocalExecutor, Workspace

    path, folder = local_study
    spec, _ = load_study(path)
    jobs, deps = plan(spec).graph()
    jobs = [j for j in jobs if getattr(j, "config", None) and j.config.head_norm is None
            and j.config.train_file.endswith("beta.csv")]  # beta's runs: alpha's ran before them in the study
    ws = Workspace(out=tmp_path / "runs", cache_dir=str(tmp_path / "cache"), device="cpu")
    LocalExecutor(keep_models=False).run(jobs, ws)
    ours = run_files(tmp_path / "runs")
    assert len(ours) == 5
    assert_same_runs({k: v for k, v in run_files(folder / "runs").items() if k in ours}, ours)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def ray_study(path, out, cache, **run_options):
    spec, ws = load_study(path, out=str(out), cache_dir=str(cache), device="cpu")
    spec.sweep = None
    spec.compare = True
    spec.tasks = tuple(dataclasses.replace(t, config=dataclasses.replace(t.config, **run_options)) for t in spec.tasks)
    plan(spec)
    return run_study(spec, ws, RayExecutor(), layout="none")  # defaults: bit-identical to the local executor's


def test_ray_runs_the_grid_with_identical_numbers(local_study, ray_instance, tmp_path, capsys):
    path, folder = local_study
    ray_study(path, tmp_path / "runs", tmp_path / "cache")
    out = capsys.readouterr().out
    assert "[10/10]" in out and "alpha LP-FT seed 2: test accuracy" in out  # progress lines from the driver
    local = {k: v for k, v in run_files(folder / "runs").items() if "head" not in k}
    ours = run_files(tmp_path / "runs")
    local = {k: v for k, v in local.items()
             if not read_json(folder / "runs" / k / "config.json")["config"]["head_norm"]}
    assert_same_runs(local, ours)


def test_a_worker_killed_mid_run_changes_nothing(local_study, ray_instance, tmp_path, monkeypatch):
    path, folder = local_study
    marker = tmp_path / "exited"
    # passed to the workers (PYTHONPATH and LPFT_ variables): the first to end an epoch dies (dying_worker/)
    monkeypatch.setenv("LPFT_TEST_EXIT_AFTER_EPOCH", str(marker))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent / "dying_worker")]
                                                     + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                        if p]))
    # a checkpoint after every epoch (not in the run key): the killed run resumes from it, not from scratch
    ray_study(path, tmp_path / "runs", tmp_path / "cache", checkpoint_every=0.0)
    assert marker.read_text().startswith("exited after epoch 1")
    local = {k: v for k, v in run_files(folder / "runs").items()
             if not read_json(folder / "runs" / k / "config.json")["config"]["head_norm"]}
    assert_same_runs(local, run_files(tmp_path / "runs"))
    # the killed run resumed from its checkpoint: its history has both epochs, and no run left resume state behind
    assert [p for p in (tmp_path / "runs").glob("files/*/*/timing.json") if read_json(p)["resumed"]]
    assert not list((tmp_path / "runs").glob("files/*/*/state"))


def test_a_failing_run_on_ray_is_one_error_naming_the_run(two_tasks, ray_instance, tmp_path):
    from lpft.methods.config import RunConfig
    from lpft.model import ModelError
    from lpft.study import TrainJob, Workspace

    cfg = RunConfig(task="files", train_file=str(two_tasks["alpha"]), method="ft", model=str(tmp_path / "missing"),
                    epochs=1).resolved()
    with pytest.raises(ModelError, match=r"1 of 1 runs failed; first, alpha FT seed 0: "):
        RayExecutor().run([TrainJob(cfg)], Workspace(out=tmp_path / "runs", cache_dir=None))
