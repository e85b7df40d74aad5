"""The study's price (``lpft.study.cost``, ``lpft study --dry-run``): the cost model's arithmetic, its token counts
against the data, list scheduling over the dependency graph, and the paper-scale study planned and priced without
reading any data."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from lpft.cli import main
from lpft.data.base import Task
from lpft.methods.config import RunConfig
from lpft.study import load_study, plan
from lpft.study.cost import (
    RATES_VERSION,
    TASK_PROFILES,
    Contention,
    Profile,
    Rates,
    cpu_rates,
    flops_per_token,
    makespan,
    profile,
    run_seconds,
)

PAPER = Path(__file__).resolve().parents[2] / "studies" / "paper.toml"
QUIET = Contention((0.1, 0.1, 0.1), (0.2, 0.1, 0.1), 2, 1, 0.0)
BUSY = Contention((7.2, 7.0, 6.5), (7.3, 7.0, 6.5), 2, 1, 5.5)  # 5.5 other threads wanted the 2 CPUs
RATES = Rates("all-MiniLM-L6-v2", "cpu", 1, ft=(0.05, 1e-3), lora=(0.04, 7e-4), forward=3e-4, probe=0.01,
              start=2.0, flops=4e10, contention=QUIET)


def write_rates(cache: Path, rates: Rates) -> Path:
    """A cost cache file as ``cpu_rates`` writes it (the test does not time the machine)."""
    path = cache / "cost" / f"{rates.model}-cpu-t{rates.threads}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {k: v for k, v in dataclasses.asdict(rates).items() if k not in ("source", "contention")}
    path.write_text(json.dumps({"version": RATES_VERSION, "rates": fields,
                                "contention": dataclasses.asdict(rates.contention)}))
    return path


def test_run_seconds_is_the_documented_sum():
    p = Profile({"train": 100, "validation": 20, "test": 30}, {"train": 5000.0, "validation": 1000.0,
                                                                "test": 1500.0}, 3, "test")
    ft = RunConfig(task="cb", method="ft", epochs=4, batch_size=16).resolved()
    epoch = math.ceil(100 / 16) * 0.05 + 1e-3 * 5000 + 3e-4 * 1000
    assert run_seconds(ft, p, RATES, False) == pytest.approx(2.0 + 4 * epoch + 3e-4 * 2500)
    lpft = dataclasses.replace(ft, method="lp-ft").resolved()
    probe = 3e-4 * 5000 + 0.01 * 100  # train features + the probe's fit, paid by the first run of a probe only
    assert run_seconds(lpft, p, RATES, True) - run_seconds(lpft, p, RATES, False) == pytest.approx(probe)
    lp = dataclasses.replace(ft, method="lp").resolved()
    assert run_seconds(lp, p, RATES, False) == pytest.approx(2.0 + probe + 3e-4 * 2500)
    lora = dataclasses.replace(ft, method="lora").resolved()
    assert run_seconds(lora, p, RATES, False) < run_seconds(ft, p, RATES, False)


def test_makespan_follows_the_dependency_graph():
    # LP 10 s; two FT 5 s; LP-FT 3 s waits for the LP: on 2 slots FT, FT run beside the LP, LP-FT after it
    assert makespan([10, 5, 5, 3], [(), (), (), (0,)], 2) == 13
    assert makespan([10, 5, 5, 3], [(), (), (), (0,)], 1) == 23
    # the waiting LP-FT does not hold a slot: the FT queued behind it runs at once
    assert makespan([10, 3, 4], [(), (0,), ()], 2) == 13
    assert makespan([], [], 4) == 0


def test_flops_per_token_counts_the_layers():
    base, large = flops_per_token("roberta-base", 0), flops_per_token("roberta-large", 0)
    assert base == 12 * 2 * (4 * 768 ** 2 + 2 * 768 * 3072)  # 2 x 85M non-embedding weights
    assert large / base == pytest.approx(24 * (4 * 1024 ** 2 + 2 * 1024 * 4096) / base * 2)


def test_the_token_table_matches_the_data(shared_data, monkeypatch):
    """TASK_PROFILES (used when the data is not here) against the files: sizes exact, tokens within 3 %."""
    monkeypatch.delenv("LPFT_DATA_DIR", raising=False)  # without a data folder, the table
    for task in ("cb", "rte", "mrpc", "wsc"):
        cfg = RunConfig(task=task, method="ft").resolved()
        data = profile(cfg, str(shared_data))
        assert data.source == "data"
        (n_train, n_val, n_test), _ = TASK_PROFILES[task]
        assert (data.sizes["train"], data.sizes["validation"], data.sizes["test"]) == (n_train, n_val, n_test)
        table = profile(cfg, None)
        assert table.source == "table"
        assert table.tokens["train"] == pytest.approx(data.tokens["train"], rel=0.03), task


def test_rates_are_measured_once_and_cached(tmp_path, monkeypatch):
    calls = []

    def fake_measure(model, device, threads):
        calls.append((model, device, threads))
        return dataclasses.replace(RATES, threads=threads)

    monkeypatch.setattr("lpft.study.cost.measure", fake_measure)
    first = cpu_rates("all-MiniLM-L6-v2", tmp_path, "cpu", 2)
    again = cpu_rates("all-MiniLM-L6-v2", tmp_path, "cpu", 2)
    assert calls == [("all-MiniLM-L6-v2", "cpu", 2)] and again.ft == first.ft and "cached" in again.source
    scaled = cpu_rates("roberta-base", tmp_path, "cpu", 2)  # not on this machine: the embedded model, scaled
    assert len(calls) == 1 and "scaled" in scaled.source
    ratio = flops_per_token("roberta-base") / flops_per_token("all-MiniLM-L6-v2")
    assert scaled.ft[1] == pytest.approx(RATES.ft[1] * ratio) and 5 < ratio < 10


@pytest.fixture
def no_data(monkeypatch):
    """Any read of a task's files fails the test: planning and pricing must not download or read data."""
    def refuse(self, split):
        raise AssertionError(f"read {self.name} {split}")

    monkeypatch.setattr(Task, "load", refuse)
    monkeypatch.delenv("LPFT_DATA_DIR", raising=False)


def test_the_paper_study_plans_without_data(no_data, tmp_path):
    spec, ws = load_study(PAPER, out=str(tmp_path))
    assert [t.name for t in spec.tasks] == ["cb", "rte", "boolq", "wic", "wsc", "cola", "sst2", "mrpc"]
    assert spec.seeds == tuple(range(1, 16)) and ws.data_dir is None
    p = plan(spec, ws.data_dir)
    configs = p.train_configs()
    assert all(c.model == "roberta-base" and c.max_length == 128 for c in configs)
    assert all(c.train_subset is None and c.validation_subset is None and c.eval_subset is None for c in configs)
    assert all(c.epochs == 10 for c in configs if c.method != "lp")
    # Table 6, resolved per task and method
    table6 = {(c.task, c.method): (c.batch_size, c.lr) for c in configs if c.head_norm is None}
    assert table6[("cb", "ft")] == (16, 5e-5) and table6[("wsc", "lp-ft")] == (8, 1e-3)
    assert table6[("sst2", "lora")] == (32, 5e-4) and table6[("boolq", "lp-lora")] == (8, 5e-4)
    # per task LP + 15 seeds x 4 methods; the norm sweep: 2 tasks x 2 methods x 8 norms x 3 seeds
    assert len(configs) == 8 * (1 + 15 * 4) + 2 * 2 * 8 * 3
    ntk = [j for jobs in p.ntk.values() for j in jobs]
    assert len(ntk) == 8 * 4 * 3 and {(j.settings.n_train, j.settings.n_test) for j in ntk} == {(250, 250)}
    jobs, deps = p.graph()
    assert len(jobs) == len(configs) + len(ntk)


def test_the_paper_study_dry_run_prices_every_executor(no_data, tmp_path, capsys):
    import torch

    cache = tmp_path / "cache"
    for threads in {1, torch.get_num_threads()}:  # rates as if measured: the test does not time the machine
        write_rates(cache, dataclasses.replace(RATES, threads=threads))
    assert main(["study", str(PAPER), "--out", str(tmp_path / "runs"), "--cache-dir", str(cache), "--dry-run",
                 "--gpus", "16"]) == 0
    out = capsys.readouterr().out
    assert "680 job(s) (0 finished already)" in out
    assert "to do  cb LP-FT seed 1  " in out and "(after cb LP)" in out
    assert "cb eNTK LP-FT seed 1" in out and "ntk/lp-ft-seed1-n*" in out
    lines = {line.split("  ")[1].strip() for line in out.splitlines() if line.startswith("  ") and " h " in line}
    assert any(line.startswith("local, 1 process") for line in lines)
    assert any(line.startswith("GPU, 16 GPUs") for line in lines), out[-800:]
    assert "GPU-hours" in out and "scaled" in out and "TASK_PROFILES" in out


def test_contention_says_busy_when_more_threads_wanted_the_cpus():
    assert not QUIET.busy() and BUSY.busy()
    assert not Contention((3.0,) * 3, (3.0,) * 3, 4, 2, 1.0).busy()  # 1 other + 2 ours on 4 CPUs
    assert Contention((3.0,) * 3, (3.0,) * 3, 2, 2, 1.0).busy()  # 1 other + 2 ours on 2 CPUs
    # no /proc: the load average at the end of the measurement against the CPUs
    assert Contention((0.5,) * 3, (2.5, 1, 1), 2, 1, None).busy()
    assert not Contention((0.5,) * 3, (1.5, 1, 1), 2, 1, None).busy()
    assert "5.5 other threads ready to run, load 7.3 on 2 CPUs" == BUSY.describe()


def test_measured_rates_record_the_machines_load(tiny_bert_dir, tmp_path):
    import os

    rates = cpu_rates(str(tiny_bert_dir), tmp_path, "cpu", 1)
    c = rates.contention
    assert c.cpus == os.cpu_count() and c.threads == 1 and len(c.load_before) == len(c.load_after) == 3
    assert c.others_running is None or c.others_running >= 0
    again = cpu_rates(str(tiny_bert_dir), tmp_path, "cpu", 1)  # read back: the same numbers and load
    assert "cached" in again.source and again.contention == c and again.ft == rates.ft
    assert 0 < rates.ft[1] and 0 < rates.forward and 0 <= rates.start


def test_old_damaged_or_remeasured_cache_files_are_measured_again(tmp_path, monkeypatch):
    calls = []

    def fake_measure(model, device, threads):
        calls.append(model)
        return dataclasses.replace(RATES, threads=threads, contention=QUIET)

    monkeypatch.setattr("lpft.study.cost.measure", fake_measure)
    path = write_rates(tmp_path, dataclasses.replace(RATES, contention=BUSY))
    assert cpu_rates(RATES.model, tmp_path, "cpu", 1).contention == BUSY and calls == []
    assert cpu_rates(RATES.model, tmp_path, "cpu", 1, remeasure=True).contention == QUIET and len(calls) == 1
    assert json.loads(path.read_text())["contention"]["others_running"] == 0.0  # replaced
    # version 1 (no load recorded; the 183 h estimate from rates measured at load 12): measured again
    path.write_text(json.dumps({k: v for k, v in dataclasses.asdict(RATES).items() if k != "contention"}))
    cpu_rates(RATES.model, tmp_path, "cpu", 1)
    assert len(calls) == 2 and json.loads(path.read_text())["version"] == RATES_VERSION
    path.write_text("{not json")
    cpu_rates(RATES.model, tmp_path, "cpu", 1)
    assert len(calls) == 3


def test_dry_run_says_when_rates_were_measured_on_a_busy_machine(two_tasks, tiny_bert_dir, tmp_path, capsys,
                                                                monkeypatch):
    from study_files import study_toml

    from lpft.study.cost import measure

    model = str(tiny_bert_dir)
    measured = []

    def busy_measure(*args):
        measured.append(args)
        return dataclasses.replace(measure(*args), contention=BUSY)

    monkeypatch.setattr("lpft.study.cost.measure", busy_measure)
    path = tmp_path / "s.toml"
    path.write_text(study_toml(two_tasks, tiny_bert_dir, methods=("ft",), seeds=(1,)))
    args = ["study", str(path), "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
            "--threads-per-run", "1", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "warning: the CPU rates were measured on a busy machine (5.5 other threads ready to run, load 7.3 " \
           "on 2 CPUs)" in out and "--remeasure" in out
    assert len(measured) == 1  # once for both executors
    monkeypatch.setattr("lpft.study.cost.measure", lambda *a: dataclasses.replace(measure(*a), contention=QUIET))
    assert main(args) == 0 and "busy machine" in capsys.readouterr().out  # read from the cache: still busy
    assert main(args + ["--remeasure"]) == 0 and "busy machine" not in capsys.readouterr().out
    assert main(args) == 0 and "busy machine" not in capsys.readouterr().out and model


def test_tests_never_write_to_the_home_cache(two_tasks, tiny_bert_dir, tmp_path, capsys):
    """tests/conftest.py points LPFT_CACHE_DIR at a temporary folder: a dry-run without --cache-dir (the default
    cache) writes its rates there, never under ~/.cache/lpft, where a tiny model's rates poisoned real estimates."""
    import os
    import time

    from study_files import study_toml

    home = Path.home() / ".cache" / "lpft"
    isolated = Path(os.environ.get("LPFT_CACHE_DIR", home)).resolve()
    assert isolated != home.resolve() and home.resolve() not in isolated.parents
    started = time.time()
    path = tmp_path / "s.toml"
    path.write_text(study_toml(two_tasks, tiny_bert_dir, methods=("ft",), seeds=(1,)))
    assert main(["study", str(path), "--out", str(tmp_path / "runs"), "--threads-per-run", "1", "--dry-run"]) == 0
    written = list((isolated / "cost").glob("*tiny-bert*-cpu-t1.json"))
    assert written, sorted(isolated.rglob("*"))
    fresh = [f for f in home.rglob("*") if f.is_file() and f.stat().st_mtime >= started - 1 and "tiny" in f.name]
    assert not fresh
