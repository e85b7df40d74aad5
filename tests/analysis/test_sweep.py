"""Norm sweep: configs, the rescaled start norm, the feature change per run, summary, plot and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from toy_runs import toy_config

from lpft.analysis.sweep import summarise_sweep, sweep_rows
from lpft.cli import main
from lpft.config import ConfigError
from lpft.methods.config import RunConfig
from lpft.report.norm_sweep import write_sweep_report
from lpft.report.tables import read_csv
from lpft.runs import RunRecord
from lpft.study import LocalExecutor, TrainJob, Workspace, sweep_configs


def test_sweep_configs_cover_the_grid_and_validate():
    base = RunConfig(task="cb", epochs=1)
    cfgs = sweep_configs(base, ["ft", "lp-ft"], [0.5, 5.0], [0, 1])
    assert len(cfgs) == 8 and {c.head_norm for c in cfgs} == {0.5, 5.0} and all(c.head_scale is None for c in cfgs)
    scaled = sweep_configs(base, ["ft"], [2.0], [0], mode="scale")
    assert scaled[0].head_scale == 2.0 and scaled[0].head_norm is None
    with pytest.raises(ConfigError, match="'lp' cannot be swept"):
        sweep_configs(base, ["lp"], [1.0], [0])
    with pytest.raises(ConfigError, match="--norms must all be > 0"):
        sweep_configs(base, ["ft"], [1.0, -2.0], [0])
    with pytest.raises(ConfigError, match="mode"):
        sweep_configs(base, ["ft"], [1.0], [0], mode="percent")


def test_sweep_runs_rescale_the_start_and_measure_feature_change(toy_files, tiny_bert_dir, tmp_path):
    base = toy_config(toy_files, tiny_bert_dir, train_subset=24)  # 3 optimiser steps per run: fast
    configs = sweep_configs(base, ["ft"], [0.5, 20.0], [0]) + sweep_configs(base, ["ft"], [3.0], [0], "scale")
    folders = LocalExecutor().run([TrainJob(c) for c in configs],
                                  Workspace(out=tmp_path / "runs", cache_dir=str(tmp_path / "cache"), device="cpu"))
    rows = sweep_rows([RunRecord(f) for f in folders], cache=tmp_path / "cache", device="cpu")
    by_value = {(r["mode"], r["value"]): r for r in rows}
    init_norm = by_value[("norm", 0.5)]["unscaled_norm"]
    assert by_value[("norm", 0.5)]["start_norm"] == pytest.approx(0.5, rel=1e-5)
    assert by_value[("norm", 20.0)]["start_norm"] == pytest.approx(20.0, rel=1e-5)
    assert by_value[("scale", 3.0)]["start_norm"] == pytest.approx(3.0 * init_norm, rel=1e-5)
    assert all(r["diff"] > 0 for r in rows)

    summary = summarise_sweep(rows + [{**rows[0], "seed": 1, "diff": rows[0]["diff"] + 1.0}])
    first = next(s for s in summary if s["value"] == 0.5)
    assert first["n"] == 2 and first["diff_mean"] == pytest.approx(rows[0]["diff"] + 0.5)
    assert first["diff_std"] == pytest.approx(np.std([0.0, 1.0], ddof=1))

    report = write_sweep_report(tmp_path / "report", rows[:2], summarise_sweep(rows[:2]), "norm", "files", "test",
                                {"seeds": [0]})
    assert (report / "sweep.png").stat().st_size > 1000
    assert [float(r["value"]) for r in read_csv(report / "summary.csv")] == [0.5, 20.0]
    assert "| 0.5 |" in (report / "report.md").read_text()


def test_cli_refuses_bad_sweeps_before_writing(tmp_path, capsys):
    code = main(["norm-sweep", "--task", "cb", "--methods", "lp", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'lp' cannot be swept" in err[0]
    code = main(["norm-sweep", "--task", "cb", "--norms", "1,abc", "--out", str(tmp_path / "runs")])
    assert code == 2 and "--norms: 'abc' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
