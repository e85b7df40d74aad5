"""`lpft compare`: study validation, the report's numbers against the run folders, atomic output, table helpers,
`lpft calibrate`; and one end-to-end run on real CB data (integration)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from toy_runs import toy_config

import lpft.report.compare as compare_module
from lpft.analysis.calibration import fit_temperature
from lpft.cli import main
from lpft.config import ConfigError
from lpft.methods.config import METHODS, RunConfig
from lpft.model import DEFAULT_MODEL
from lpft.report.plots import plot_dynamics
from lpft.report.tables import fmt_mean_std, fmt_number, fmt_percent, markdown_table, mean_std, read_csv, write_csv
from lpft.runs import RunRecord
from lpft.study import StudySpec, TaskSpec, Workspace, run_study, study_configs
from lpft.study.spec import NtkSpec, SweepSpec

# ---------------------------------------------------------------- helpers


def test_mean_std_and_formats():
    assert mean_std([1.0, 3.0, None]) == (2.0, pytest.approx(np.sqrt(2)), 2)
    assert mean_std([5.0]) == (5.0, None, 1) and mean_std([None]) == (None, None, 0)
    assert fmt_mean_std([0.8, 0.9], fmt_percent) == "85.00 ± 7.07"
    assert fmt_mean_std([0.8143], fmt_percent) == "81.43" and fmt_mean_std([]) == "–"
    assert [fmt_number(x) for x in (0.997, 22.1, 7.39e8, 0.0, 1.2e-4)] == ["0.997", "22.1", "7.39e+08", "0",
                                                                          "1.20e-04"]
    assert markdown_table(["a", "b"], [["1", "x|y"]]).splitlines() == ["| a | b |", "| --- | --- |",
                                                                      "| 1 | x\\|y |"]


def test_csv_round_trip_keeps_full_precision(tmp_path):
    rows = [{"a": 1 / 3, "b": None}, {"a": 2.0, "c": "x"}]
    back = read_csv(write_csv(tmp_path / "t.csv", rows))
    assert float(back[0]["a"]) == 1 / 3 and back[0]["b"] == "" and back[1]["c"] == "x"


def test_study_configs_validate_and_order_seed_major():
    cfgs = study_configs(RunConfig(task="cb", epochs=1), ["lp", "FT", "lp"], [2, 1])
    # LP is seed-free: both seeds' LP cells are one run
    assert [(c.method, c.seed) for c in cfgs] == [("lp", 0), ("ft", 2), ("lp", 0), ("ft", 1)]
    assert cfgs[0] == cfgs[2] and cfgs[0].epochs is None
    with pytest.raises(ConfigError, match="--methods: 'sgd' is not a method"):
        study_configs(RunConfig(task="cb"), ["ft", "sgd"], [0])
    with pytest.raises(ConfigError, match="--seeds"):
        study_configs(RunConfig(task="cb"), ["ft"], [])


def test_dynamics_plot_is_written(tmp_path):
    steps = [{"step": s, "loss": 1 / (s + 1), "head_weight_norm": 1 + s, "head_bias_norm": 0.1,
              "mean_logit_norm": 0.5 * s + 0.1} for s in range(0, 50, 10)]
    path = plot_dynamics([("ft", "FT", steps), ("ft", "FT", steps[1:]), ("lp", "LP", [])], tmp_path / "d.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- the study on the toy runs


def check_report_against_runs(report: Path, methods, seeds) -> list[dict]:
    """The report's per-run CSV, summary CSVs and Markdown agree with the run folders they name."""
    rows = read_csv(report / "runs.csv")
    assert sorted((r["method"], int(r["seed"])) for r in rows) == sorted((m, s) for m in methods for s in seeds)
    for row in rows:
        record = RunRecord(row["folder"])
        seed = 0 if row["method"] == "lp" else int(row["seed"])  # one seed-free LP run serves every seed
        assert (record.config.method, record.config.seed) == (row["method"], seed)
        for name, value in record.metrics["test"].items():
            assert float(row[f"test_{name}"]) == value
        weight, bias = record.head("lp" if row["method"] == "lp" else "ft")
        assert float(row["norm_weight"]) == pytest.approx(np.linalg.norm(weight))
        assert float(row["norm_bias"]) == pytest.approx(np.linalg.norm(bias))
        assert float(row["temperature"]) == pytest.approx(fit_temperature(*record.logits("validation")))
        if row["method"] == "lp":
            assert float(row["diff"]) == 0.0
    summary = {r["method"]: r for r in read_csv(report / "metrics.csv")}
    md = (report / "report.md").read_text()
    for method in methods:
        accs = [float(r["test_accuracy"]) for r in rows if r["method"] == method]
        assert float(summary[method]["test_accuracy_mean"]) == pytest.approx(np.mean(accs))
        assert fmt_mean_std(accs, fmt_percent) in md
    return rows


def test_compare_report_matches_the_run_folders(toy_runs, toy_files, tiny_bert_dir, toy_out, toy_cache, tmp_path):
    base = toy_config(toy_files, tiny_bert_dir)
    spec = StudySpec(tasks=(TaskSpec("files", base, ood=(str(toy_files / "shifted.csv"),)),), methods=METHODS,
                     seeds=(0,), report=tmp_path / "report", gd_max_steps=2000)
    report = run_study(spec, Workspace(out=toy_out, cache_dir=toy_cache, device="cpu"), layout="compare").report
    rows = check_report_against_runs(report, METHODS, [0])
    assert all(r["reused"] == "True" for r in rows)  # the session's runs were reused, not retrained
    assert {r["folder"] for r in rows} == {str(r.path) for r in toy_runs.values()}
    for name in ("dynamics.png", "tsne.png", "reliability-lp-ft.png", "dynamics.csv", "tsne.csv", "lp_gd.csv",
                 "reliability.csv", "features.csv", "calibration.csv", "head_norms.csv", "ood.csv", "ood_runs.csv",
                 "study.json"):
        assert (report / name).stat().st_size > 0, name
    ood_runs = read_csv(report / "ood_runs.csv")  # per run: what `lpft claims` reads for claim 1 OOD
    assert {r["folder"] for r in ood_runs} == {str(r.path) for r in toy_runs.values()}
    dyn = read_csv(report / "dynamics.csv")
    assert {r["source"] for r in dyn} == {"gradient descent", "steps.json"}
    ft_steps = [r for r in dyn if r["method"] == "ft"]
    assert [int(r["step"]) for r in ft_steps] == [s["step"] for s in toy_runs["ft"].steps]
    tsne = read_csv(report / "tsne.csv")
    assert {r["panel"] for r in tsne} == {"pre-trained (LP head)", "after FT", "after LP-FT", "after LoRA",
                                          "after LP-LoRA"}
    md = (report / "report.md").read_text()
    for section in ("paper Table 8", "paper Table 1", "paper Table 3", "paper Figure 1", "Figures 5-6",
                    "out-of-distribution"):
        assert section in md
    assert "RoBERTa-base" not in md  # a user-file task: no paper numbers to show
    assert json.loads((report / "study.json").read_text())["seeds"] == [0]


def test_study_report_tests_the_claims_on_its_own_folders(toy_runs, toy_files, tiny_bert_dir, toy_out, toy_cache,
                                                         tmp_path):
    base = toy_config(toy_files, tiny_bert_dir)
    spec = StudySpec(tasks=(TaskSpec("files", base, ood=(str(toy_files / "shifted.csv"),)),), methods=METHODS,
                     seeds=(0,), report=tmp_path / "study", gd_max_steps=200, tsne_samples=20, claims=True)
    report = run_study(spec, Workspace(out=toy_out, cache_dir=toy_cache, device="cpu"), layout="study").report
    md = (report / "report.md").read_text()
    assert md.index("## The seven claims") < md.index("## files")  # the verdicts come right after Table 8
    assert "[claims/claims.md](claims/claims.md)" in md
    # only the study's own runs, though --out holds the other tests' runs too
    assert {r["folder"] for r in read_csv(report / "claims" / "runs.csv")} == {str(r.path) for r in toy_runs.values()}
    stats = read_csv(report / "claims" / "claims.csv")
    ood = [s for s in stats if s["claim"] == "1" and "OOD" in s["statistic"]]
    # one seed gives no interval, and the toy runs sit at their majority class (rules v2's gate): never a firm verdict
    assert ood and all(s["n"] == "1" and s["verdict"] in ("inconclusive", "uninformative") for s in ood)


def test_study_claims_read_its_norm_sweep_and_query_value_kernels(toy_runs, toy_files, tiny_bert_dir, toy_out,
                                                                  toy_cache, tmp_path):
    # the two readers only a v2-style study reaches: claim 5 from the study's own [norm_sweep] runs, claim 7 from
    # eNTK folders with F over query / value (F_qv_train.npy) beside the whole-model F
    base = toy_config(toy_files, tiny_bert_dir)
    norms = (0.1, 1.0, 5.0, 10.0, 100.0)
    spec = StudySpec(tasks=(TaskSpec("files", base),), methods=METHODS, seeds=(0,), report=tmp_path / "study",
                     gd_max_steps=200, tsne_samples=20, claims=True,
                     sweep=SweepSpec(methods=("ft", "lp-ft"), values=norms),
                     ntk=(NtkSpec(n_train=12, n_test=6, predict=False, query_value=True),))
    report = run_study(spec, Workspace(out=toy_out, cache_dir=toy_cache, device="cpu"), layout="study").report
    stats = read_csv(report / "claims" / "claims.csv")
    rho = {s["statistic"]: s for s in stats if s["claim"] == "5"}
    # one seed: an interval needs more (and the toy runs sit at their majority class), but the 5-norm curve was read
    for method in ("FT", "LP-FT"):
        s = rho[f"Spearman rho(start norm, feature change), {method}, AdamW"]
        assert s["n"] == "1" and s["verdict"] in ("inconclusive", "uninformative"), s  # n 0 without the sweep
    c7 = [s for s in stats if s["claim"] == "7"]
    decide = next(s for s in c7 if s["statistic"].startswith("centred residual: permuted F_FT − F_FT")
                  and "LP-LoRA" not in s["statistic"])
    assert decide["n"] == "1" and "F_FT over query,value" in decide["note"]
    assert "against the whole-model F_FT" in decide["note"]
    assert any("[LP-LoRA vs LP-FT, shown]" in s["statistic"] and s["verdict"] == "shown, no verdict" for s in c7), \
        [(s["statistic"], s["verdict"]) for s in c7]
    ratio = next(s for s in stats if s["claim"] == "4" and s["statistic"] == "FT ratio LP-FT − FT")
    assert ratio["n"] == "1"
    pairs = read_csv(report / "claims" / "kernel_pairs.csv")
    assert {p["pair"] for p in pairs} == {"lora vs ft", "lp-lora vs lp-ft"}
    assert all(not Path(p["folder_a"]).is_absolute() or str(toy_out) in p["folder_a"] for p in pairs)


def test_an_interrupted_report_leaves_the_previous_one(toy_runs, toy_files, tiny_bert_dir, toy_out, toy_cache,
                                                       tmp_path, monkeypatch):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("previous")
    base = toy_config(toy_files, tiny_bert_dir)

    def crash(*args, **kwargs):
        (args[0] / "runs.csv").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_module, "write_task_files", crash)
    with pytest.raises(KeyboardInterrupt):
        run_study(StudySpec(tasks=(TaskSpec("files", base),), methods=("lp",), seeds=(0,), report=report),
                  Workspace(out=toy_out, cache_dir=toy_cache), layout="compare")
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary folder left behind
    assert [p.name for p in report.iterdir()] == ["report.md"] and (report / "report.md").read_text() == "previous"


def test_cli_compare_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    for args, message in ((["--methods", "lp,sgd"], "'sgd' is not a method"),
                          (["--seeds", "1,x"], "--seeds: 'x' is not an integer seed"),
                          (["--split", "dev"], "--split 'dev' is unknown"),
                          (["--lr", "-1"], "--lr must be > 0"),
                          (["--ood", str(tmp_path / "missing.csv")], "missing.csv: file not found"),
                          (["--ood", "cola-ood"], "--ood: task 'cola-ood' has labels unacceptable, acceptable")):
        code = main(["compare", "--task", "cb", *args, "--out", str(tmp_path / "runs")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()


def test_cli_calibrate(toy_runs, tmp_path, capsys):
    record = toy_runs["lp-ft"]
    assert main(["calibrate", str(record.path), "--report", str(tmp_path / "cal")]) == 0
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert saved["temperature"] == pytest.approx(fit_temperature(*record.logits("validation")))
    assert f"T = {saved['temperature']:.4f}" in out and "before TS" in out and "after TS" in out
    assert (tmp_path / "cal" / "reliability.png").stat().st_size > 1000
    assert len(read_csv(tmp_path / "cal" / "reliability.csv")) == 30  # 15 bins, before and after


# ---------------------------------------------------------------- end to end on real data


@pytest.mark.integration
def test_lpft_compare_on_cb_end_to_end(shared_data, tmp_path, capsys):
    """`lpft compare` on a CB subset with the embedded model: every method trains, the report matches the runs."""
    args = ["compare", "--task", "cb", "--methods", ",".join(METHODS), "--seeds", "1", "--epochs", "1",
            "--train-subset", "48", "--eval-subset", "24", "--max-length", "64", "--model", DEFAULT_MODEL,
            "--data-dir", str(shared_data), "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr()
    report = tmp_path / "runs" / "cb" / "report"
    assert f"report: {report / 'report.md'}" in out.out
    assert "[5/5] cb LP-LoRA seed 1: test accuracy" in out.out  # progress per run (tqdm.write prints to stdout)
    rows = check_report_against_runs(report, METHODS, [1])
    lp_heads = [RunRecord(r["folder"]).head("lp")[0] for r in rows if r["method"] in ("lp", "lp-ft", "lp-lora")]
    assert all(np.array_equal(lp_heads[0], h) for h in lp_heads)  # one LP, shared
    md = (report / "report.md").read_text()
    assert "paper test accuracy (%), RoBERTa-base | 77.86 | 81.43 | 84.64 | 77.50 | 75.71" in md
    assert "0.997" in md and "24.8" in md  # the paper's Table 1 for CB beside ours
    gd = read_csv(report / "lp_gd.csv")[0]
    assert gd["verdict"] == "near", gd  # LP by gradient descent reaches scikit-learn's probe

