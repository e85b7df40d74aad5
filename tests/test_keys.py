"""lpft.keys: every name a computation gets. The values pinned here are the names of existing runs, caches and
eNTKs (the committed results' run folders, the v2 study's): a change that renames them fails here."""

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from lpft import keys
from lpft.config import ConfigError
from lpft.methods.config import LEGACY_PROTOCOL, RunConfig
from lpft.options import DEFAULT_MEMORY_BUDGET
from lpft.study import NtkSpec, Workspace, load_study, plan
from lpft.study.jobs import NtkJob, TrainJob, kernel_settings

REPO = Path(__file__).resolve().parents[1]
V2 = {"epochs": 10, "max_length": 128}  # results/study.toml's [run] (the v2 study)


@pytest.mark.parametrize("options, folder", [
    ({}, "bbc-news/lp-ft/all-MiniLM-L6-v2-seed0-15eeded438"),
    (LEGACY_PROTOCOL, "bbc-news/lp-ft/all-MiniLM-L6-v2-seed0-c7e2da0d52"),
    ({"task": "cb", "method": "lp", "seed": 4, **V2}, "cb/lp/all-MiniLM-L6-v2-seed0-338fa2fcc8"),
    ({"task": "cb", "method": "ft", "seed": 1, **V2}, "cb/ft/all-MiniLM-L6-v2-seed1-c38f6781a5"),
    ({"task": "sst2", "method": "lp-lora", "seed": 3, "train_subset": 900, "validation_subset": 300, **V2},
     "sst2/lp-lora/all-MiniLM-L6-v2-seed3-403e8286a3"),
    ({"task": "sst2", "method": "lp-ft", "seed": 2, "head_norm": 10.0, "train_subset": 900, "validation_subset": 300,
      **V2}, "sst2/lp-ft/all-MiniLM-L6-v2-seed2-c0a652c0b0"),
    ({"precision": "bf16"}, "bbc-news/lp-ft/all-MiniLM-L6-v2-seed0-94c9098765"),
    ({"pooling": "mean"}, "bbc-news/lp-ft/all-MiniLM-L6-v2-seed0-30da917637"),
    ({"task": "cb", "method": "lora", "lora_targets": "query"}, "cb/lora/all-MiniLM-L6-v2-seed0-1fcbd9c594"),
])
def test_run_folders_keep_their_names(options, folder):
    assert keys.run_folder(RunConfig(**options).resolved(), ".") == Path(folder)


def test_options_at_their_neutral_value_stay_out_of_the_key():
    base = RunConfig().resolved()
    # options that change no number, and the architecture's own pooling, never change the key
    for change in ({"log_every": 3}, {"eval_batch_size": 7}, {"checkpoint_every": 1.0}, {"pooling": "first"},
                   {"subset_order": "first"}):  # (no subset drawn: the order picks nothing)
        assert keys.run_key(RunConfig(**change).resolved()) == keys.run_key(base), change
    # what runs did before an option existed is its neutral value
    for option, legacy in LEGACY_PROTOCOL.items():
        assert legacy in keys._neutral_values(RunConfig(train_subset=5), option), option
    assert keys.key_fields(RunConfig(**LEGACY_PROTOCOL, train_subset=5).resolved()).keys().isdisjoint(keys.NEUTRAL)
    # any other value enters the key
    for change in ({"precision": "bf16"}, {"pooling": "mean"}, {"validation_subset": 5}, {"lora_targets": "query"},
                   {"train_subset": 5, "subset_order": "stratified"}):
        assert set(change) <= set(keys.key_fields(RunConfig(**change).resolved())), change


def test_probe_and_feature_cache_names():
    lp = RunConfig(task="cb", method="lp", **V2).resolved()
    for method in ("lp-ft", "lp-lora"):
        assert keys.probe_key(RunConfig(task="cb", method=method, seed=2, **V2).resolved()) == "338fa2fcc8cb"
    assert keys.probe_key(lp) == keys.run_key(lp) + "cb"
    assert keys.features_key("m", "t", "first", "fp32") == "m-t"
    assert keys.features_key("m", "t", "mean", "bf16") == "m-t-mean-bf16"
    assert keys.probe_cache_name("m-t", "y", 10, 5, 5000) == "m-t-yy-C10-k5-i5000.safetensors"
    assert keys.run_features_name("trained", "cb test / ood.csv", "t", "w") == "trained-cb_test_ood.csv-t-w.npy"


def test_ntk_folders_keep_their_names():
    ft = RunConfig(task="cb", method="ft", seed=1, **V2).resolved()
    assert keys.ntk_folder(".", ft, 225, 56, DEFAULT_MEMORY_BUDGET, None, "random", None, None, True) == \
        Path("cb/ntk/ft-seed1-n225x56-44a3706ddc")  # results/study.toml's first eNTK
    assert keys.ntk_folder(".", ft, 50, 56, DEFAULT_MEMORY_BUDGET, None, "random", 4096, None, False) == \
        Path("cb/ntk/ft-seed1-n50x56-f2c377a0d2")
    assert keys.ntk_sizes(ft, 250, 56, 225, 56) == (225, 56)
    assert keys.ntk_sizes(dataclasses.replace(ft, train_subset=100, eval_subset=30), 250, 56, 225, 56) == (100, 30)


def _finish(folder: Path, settings: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "stats.json").write_text(json.dumps({"settings": settings}))


def test_a_finished_ntk_is_found_without_the_data(tmp_path, monkeypatch):
    import lpft.runs

    def no_data(*args, **kwargs):
        raise AssertionError("read the data")

    monkeypatch.setattr(lpft.runs, "load_task", no_data)
    cfg = RunConfig(task="cb", method="lp-ft", seed=1).resolved()
    job, trial = NtkJob(cfg, NtkSpec(n_train=250, n_test=56)), NtkJob(cfg, NtkSpec(n_train=20, n_test=10))
    ws = Workspace(out=tmp_path)
    assert not job.done(ws) and job.finished(ws) is None
    # a smaller trial of the same run has a folder name of the same form: never taken for the full computation
    _finish(trial.folder_for(20, 10, ws), kernel_settings(trial.settings))
    assert trial.done(ws) and not job.done(ws)
    _finish(job.folder_for(225, 56, ws), kernel_settings(job.settings))
    assert job.done(ws) and job.folder(ws) == tmp_path / "cb" / "ntk" / job.folder_for(225, 56, ws).name
    assert job.execute(ws) == job.folder(ws)  # finished: reused, no data read
    # other statistics settings: the kernels' folder is the same, the job is not done
    other = NtkJob(cfg, NtkSpec(n_train=250, n_test=56, predict=False))
    assert not other.done(ws)
    assert job.key == other.key == keys.job_key("NtkJob", cfg, (250, 56, job.kernel_options))
    assert TrainJob(cfg).key == f"TrainJob:{keys.run_folder(cfg, '.')}"


@pytest.mark.parametrize("study, report, runs", [
    ("study.toml", "report", "runs/paper-study-v2"), ("study-v1.toml", "report-v1", "runs/paper-study")])
def test_committed_results_keep_their_run_folders(study, report, runs):
    """Every run folder a committed report names is where its study file's plan puts that run today."""
    spec, ws = load_study(REPO / "results" / study, data_dir=str(REPO))  # (no data read for these tasks)
    assert spec.report.resolve() == (REPO / "results" / report).resolve()
    planned = {str(keys.run_folder(c, runs)) for c in plan(spec).train_configs()}
    named = {row["folder"] for path in (REPO / "results" / report).glob("*/runs.csv")
             for row in csv.DictReader(path.open()) if row.get("folder")}
    assert len(named) > 50 and named <= planned


def test_a_config_is_resolved_once(monkeypatch):
    import lpft.methods.config as config

    calls = []
    real = config._check_types
    monkeypatch.setattr(config, "_check_types", lambda cfg: calls.append(1) or real(cfg))
    cfg = RunConfig(task="cb").resolved()
    assert cfg.resolved() == cfg and cfg.resolved().resolved() == cfg and len(calls) == 1
    cfg.epochs = 0  # changed after resolving: checked again
    with pytest.raises(ConfigError, match="--epochs must be > 0"):
        cfg.resolved()
    assert len(calls) == 2
