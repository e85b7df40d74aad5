"""The study layer without training: seed-free LP, the plan's waves, the study file, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from study_files import study_toml

from lpft.cli import main
from lpft.config import ConfigError
from lpft.methods.config import RunConfig
from lpft.runs import run_folder
from lpft.study import StudySpec, SweepSpec, TaskSpec, load_study, plan, probe_key


def test_lp_is_one_run_whatever_the_seed_and_schedule():
    a = RunConfig(task="cb", method="lp", seed=3, epochs=1, lr=1e-3, batch_size=4, head_norm=2.0).resolved()
    b = RunConfig(task="cb", method="lp").resolved()
    assert a == b and run_folder(a) == run_folder(b) and a.seed == 0 and a.epochs is None
    assert a.resolved() == a  # idempotent
    # options that change the probe still make another LP run
    assert RunConfig(task="cb", method="lp", max_length=64).resolved().run_key() != b.run_key()
    with pytest.raises(ConfigError, match="--lr must be > 0"):  # validated before being normalised away
        RunConfig(task="cb", method="lp", lr=-1).resolved()
    ft1, ft2 = (RunConfig(task="cb", method="ft", seed=s).resolved() for s in (1, 2))
    assert ft1.run_key() != ft2.run_key()


def test_plan_trains_lp_once_and_the_probe_first():
    base = RunConfig(task="cb", epochs=1)
    spec = StudySpec(tasks=(TaskSpec("cb", base), TaskSpec("rte", RunConfig(task="rte", epochs=1))),
                     methods=("lp", "ft", "lp-ft", "lp-lora"), seeds=(1, 2, 3),
                     sweep=SweepSpec(tasks=("cb",), methods=("lp-ft",), values=(1.0, 10.0), seeds=(1,)))
    p = plan(spec)
    grid = p.compare["cb"]
    assert [(s.method, s.seed) for s in grid][:4] == [("lp", 1), ("ft", 1), ("lp-ft", 1), ("lp-lora", 1)]
    assert len({s.config.run_key() for s in grid if s.method == "lp"}) == 1  # one LP run fills three cells
    configs = p.train_configs()
    assert len(configs) == 2 * (1 + 3 * 3) + 2  # per task: LP + 3 seeds x 3 FT methods; 2 sweep points
    jobs, deps = p.graph()
    # first the probes (the LP runs), then what needs no probe; each LP-FT / LP-LoRA waits for its own probe only
    assert [(j.config.task, j.config.method) for j in jobs[:2]] == [("cb", "lp"), ("rte", "lp")]
    assert [j.config.method for j in jobs[2:8]] == ["ft"] * 6 and all(not deps[i] for i in range(8))
    second = jobs[8:]
    assert {j.config.method for j in second} == {"lp-ft", "lp-lora"} and len(second) == 2 * 6 + 2
    for job, (probe,) in zip(second, deps[8:]):
        assert jobs[probe].config.method == "lp" and probe_key(jobs[probe].config) == probe_key(job.config)
        assert jobs[probe].config.task == job.config.task
    assert len({j.config.run_key() + j.config.task for j in jobs}) == len(jobs)  # every run once


def test_plan_validates_everything_up_front():
    base = RunConfig(task="cb")
    with pytest.raises(ConfigError, match="'sgd' is not a method"):
        plan(StudySpec(tasks=(TaskSpec("cb", base),), methods=("ft", "sgd")))
    with pytest.raises(ConfigError, match="'lp' cannot be swept"):
        plan(StudySpec(tasks=(TaskSpec("cb", base),), sweep=SweepSpec(methods=("lp",))))
    with pytest.raises(ConfigError, match=r"\[norm_sweep\] tasks: 'rte' is not one of the study's tasks"):
        plan(StudySpec(tasks=(TaskSpec("cb", base),), sweep=SweepSpec(tasks=("rte",))))


def test_study_file_reads_per_task_overrides(two_tasks, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(study_toml(two_tasks, "m", extra='\n[norm_sweep]\nnorms = [1, 5]\n\n[ntk]\nmethods = ["ft"]\n'
                               'n_train = 4\n').replace('[task.beta]', '[task.beta]\nepochs = 3\nood = ["x.csv"]'))
    spec, ws = load_study(path)
    alpha, beta = spec.tasks
    assert (alpha.name, alpha.config.task, alpha.config.epochs, beta.config.epochs) == ("alpha", "files", 2, 3)
    assert beta.ood == (str(tmp_path / "x.csv"),) and spec.seeds == (1, 2) and spec.methods == ("ft", "lp-ft")
    assert (alpha.methods, beta.methods) == (None, None)
    (ntk,) = spec.ntk
    assert spec.sweep.values == (1.0, 5.0) and ntk.methods == ("ft",) and ntk.n_train == 4 and not spec.claims
    assert ws.out == Path("runs") and spec.report == Path("runs") / "study" / "s"  # no 'out' in the file: ./runs
    assert load_study(path, out=str(tmp_path / "o"))[1].out == tmp_path / "o"


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("version = 1", "version = 2"), "version 2 is not supported"),
    (lambda t: t.replace("version = 1\n", ""), "missing 'version = 1'"),
    (lambda t: t.replace("[run]", "[run]\nepoch = 3"), "unknown key 'epoch' in [run]"),
    (lambda t: t.replace("[run]", "colour = 1\n[run]"), "unknown key 'colour': expected one of"),
    (lambda t: t.replace("[run]", "[run]\nseed = 3"), "unknown key 'seed' in [run]"),
    (lambda t: t.replace("epochs = 2", 'epochs = "two"'), "epochs in [run] must be an integer, got 'two'"),
    (lambda t: t.replace("seeds = [1, 2]", "seeds = []"), "seeds must be a non-empty list"),
    (lambda t: t + "\n[task.gamma]\nepochs = 1\n", "[task.gamma] names a task that is not in 'tasks'"),
    (lambda t: t.replace("version = 1", "version = = 1"), "not valid TOML"),
])
def test_bad_study_files_are_one_line_errors(two_tasks, tmp_path, capsys, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(study_toml(two_tasks, "m")))
    assert main(["study", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lpft: error: {path}") and message in err[0], err
    assert not (tmp_path / "runs").exists()


def test_executor_ray_without_ray_is_one_line(two_tasks, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    path = tmp_path / "s.toml"
    path.write_text(study_toml(two_tasks, tiny_bert_dir))
    for argv in (["study", str(path)], ["compare", "--task", "cb"], ["norm-sweep", "--task", "cb"]):
        assert main([*argv, "--executor", "ray", "--out", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["lpft: error: --executor ray needs Ray: pip install -e '.[ray]'"], err
    assert not (tmp_path / "runs").exists()


def test_dry_run_lists_the_jobs(two_tasks, tiny_bert_dir, tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(study_toml(two_tasks, tiny_bert_dir, methods=("lp", "ft"), seeds=(1, 2)))
    assert main(["study", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 task(s), 6 job(s) (0 finished already)" in out  # per task: one LP + FT for 2 seeds
    assert out.count("to do") == 6 and "alpha LP " in out and "beta FT seed 2" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--tasks", "cb,rte,cb"], "--tasks: a task is named twice"),
    (["--tasks", "cb,rte", "--ood", "cola-ood"], "--ood applies to one task"),
    (["--tasks", "cb,nope"], "nope"),
])
def test_compare_tasks_bad_input_is_one_line(tmp_path, capsys, args, message):
    assert main(["compare", *args, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()


def test_ntk_tables_and_head_norms(two_tasks, tmp_path):
    path = tmp_path / "s.toml"
    ntk = ('\n[[ntk]]\nmethods = ["ft", "lp-ft"]\nn_train = 4\npredict = false\n'
           '\n[[ntk]]\nmethods = ["lp-ft"]\nseeds = [2]\nn_train = 3\nhead_norms = [0.5, 5]\n'
           'predict_optimizer = "sgd"\n')
    toml = study_toml(two_tasks, "m", extra=ntk)
    path.write_text(toml.replace("tsne_samples = 8", "tsne_samples = 8\nclaims = true"))
    spec, _ = load_study(path)
    table2, sgd = spec.ntk
    assert spec.claims and (table2.predict, table2.head_norms) == (False, ()) and sgd.head_norms == (0.5, 5.0)
    jobs = plan(spec).ntk["alpha"]
    assert [(j.config.method, j.config.seed, j.config.head_norm) for j in jobs] == [
        ("ft", 1, None), ("lp-ft", 1, None), ("lp-ft", 2, 0.5), ("lp-ft", 2, 5.0)]
    assert jobs[2].settings.predict_optimizer == "sgd" and jobs[3].label.endswith("LP-FT seed 2 head norm 5")
    bad = path.read_text().replace("head_norms = [0.5, 5]", "head_norms = [0.5, -1]")
    path.write_text(bad)
    with pytest.raises(ConfigError, match="ntk head_norms must be finite and > 0, got -1"):
        plan(load_study(path)[0])
    path.write_text(bad.replace("[[ntk]]", "[ntk]", 1))  # a table and an array of tables: TOML itself refuses
    with pytest.raises(ConfigError, match=str(path)):
        load_study(path)


def test_job_identity_reads_the_data_from_the_workspace(shared_data, monkeypatch):
    # an eNTK folder's name holds its sample sizes, so naming the job reads the task: from the study's data folder,
    # not from the environment (a study file's data_dir, with LPFT_DATA_DIR unset, once fell through to the hub)
    from lpft.study import NtkSpec, Workspace
    from lpft.study.jobs import NtkJob

    monkeypatch.delenv("LPFT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    job = NtkJob(RunConfig(task="cb", method="ft", seed=1).resolved(), NtkSpec(n_train=250, n_test=250))
    # (the job's identity in a study, job.key, reads no data; its folder, named when it runs, does)
    assert "/ft-seed1-n225x56-" in str(job.folder(Workspace(out=Path("elsewhere"), data_dir=str(shared_data))))
    assert job.key.startswith("NtkJob:cb/ntk/ft-seed1-n250x250-")


def test_workspace_paths_become_absolute_for_workers(tmp_path, monkeypatch):
    from lpft.study import Workspace
    from lpft.study.executors import _Worker

    monkeypatch.chdir(tmp_path)
    ws = Workspace(out=Path("runs"), data_dir="data", cache_dir="cache").absolute()
    assert (ws.out, ws.data_dir, ws.cache_dir) == (tmp_path / "runs", str(tmp_path / "data"), str(tmp_path / "cache"))
    assert Workspace(cache_dir="default").absolute().cache_dir == "default"

    class WhereAmI:
        def execute(self, ws):
            return Path.cwd()

    (tmp_path / "caller").mkdir()
    folder, seconds = _Worker(1, str(tmp_path / "caller")).execute(WhereAmI(), ws)
    assert folder == str(tmp_path / "caller") and seconds >= 0


def test_a_task_can_name_its_own_methods(two_tasks, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(study_toml(two_tasks, "m", methods=("lp", "ft", "lp-ft"))
                    .replace("[task.beta]", '[task.beta]\nmethods = ["ft", "lora"]'))
    spec, _ = load_study(path)
    p = plan(spec)
    assert {s.method for s in p.compare["alpha"]} == {"lp", "ft", "lp-ft"}
    assert [(s.method, s.seed) for s in p.compare["beta"]] == [("ft", 1), ("lora", 1), ("ft", 2), ("lora", 2)]
    path.write_text(path.read_text().replace('methods = ["ft", "lora"]', 'methods = ["ft", "sgd"]'))
    with pytest.raises(ConfigError, match="'sgd' is not a method"):
        plan(load_study(path)[0])


def test_ntk_sketch_option(two_tasks, tmp_path):
    """`[[ntk]] sketch = K`: its own folder (the exact one keeps its key) and settings; K < 1 refused."""
    path = tmp_path / "s.toml"
    ntk = ('\n[[ntk]]\nmethods = ["ft"]\nn_train = 4\n'
           '\n[[ntk]]\nmethods = ["ft"]\nn_train = 4\nsketch = 4096\nsketch_seed = 9\n')
    path.write_text(study_toml(two_tasks, "m", extra=ntk))
    exact, sketched = load_study(path)[0].ntk
    assert (exact.sketch, exact.sketch_seed, sketched.sketch, sketched.sketch_seed) == (None, None, 4096, 9)
    from lpft.study.jobs import kernel_settings, ntk_folder
    assert "sketch" not in kernel_settings(exact) and kernel_settings(sketched)["sketch"] == 4096
    cfg = plan(load_study(path)[0]).ntk["alpha"][0].config
    assert ntk_folder("o", cfg, 4, 4, 1, None) != ntk_folder("o", cfg, 4, 4, 1, None, sketch=4096, sketch_seed=9)
    path.write_text(path.read_text().replace("sketch = 4096", "sketch = 0"))
    with pytest.raises(ConfigError, match="--sketch must be >= 1"):
        plan(load_study(path)[0])


@pytest.mark.parametrize("value, expected", [("1610612736", 1610612736), ('"1.5GiB"', 1610612736),
                                             ('"3 GB"', 3 * 10**9), ('"lots"', None), ("true", None), ("1.5", None)])
def test_ntk_memory_budget_in_a_study_file(two_tasks, tmp_path, value, expected):
    """`memory_budget` in [[ntk]]: bytes, or a size with a unit as `lpft ntk --memory-budget` takes it."""
    path = tmp_path / "s.toml"
    path.write_text(study_toml(two_tasks, "m", extra=f'\n[[ntk]]\nmethods = ["ft"]\nmemory_budget = {value}\n'))
    if expected is None:
        with pytest.raises(ConfigError, match=r"memory_budget in \[ntk\] must be bytes or a size such as"):
            load_study(path)
    else:
        assert load_study(path)[0].ntk[0].memory_budget == expected


def test_docs_study_example_names_every_ntk_key():
    """docs/study.md's example study file is valid TOML and its [ntk] table lists every key a study file takes."""
    import dataclasses
    import re

    from lpft.study.spec import NtkSpec

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

    text = (Path(__file__).resolve().parents[2] / "docs" / "study.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert set(tomllib.loads(block)["ntk"]) == {f.name for f in dataclasses.fields(NtkSpec)}
