"""`lpft claims` end to end on a folder like a study leaves: toy runs (2 seeds), evaluate folders, a norm-sweep
report and real eNTK folders of a tiny BERT; then bad input."""

import json

import numpy as np
import pytest
from toy_runs import toy_config

from lpft.cli import main
from lpft.io import write_json
from lpft.report.tables import read_csv, write_csv
from lpft.runs import train


@pytest.fixture(scope="module")
def study_out(toy_files, tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("claims-study")
    cache = tmp_path_factory.mktemp("claims-cache")
    folders = {}
    for seed in (0, 1):
        for method in ("ft", "lp-ft", "lora"):
            cfg = toy_config(toy_files, tiny_bert_dir, method, seed=seed, lp_cs=3, lp_folds=2)
            folders[(method, seed)] = train(cfg, out=out, cache_dir=cache, device="cpu")
    for seed in (0, 1):  # per-run Diff / CS and an OOD set, as `lpft evaluate` writes them
        for method in ("ft", "lp-ft"):
            assert main(["evaluate", str(folders[(method, seed)]), "--ood", str(toy_files / "shifted.csv"),
                         "--cache-dir", str(cache)]) == 0
    # a norm-sweep report (its producer is tested in test_sweep.py): FT decreasing in the norm on three seeds, five
    # norms (rules v2: a curve needs 5 norms, a verdict 3 seeds)
    sweep = out / "files" / "norm-sweep"
    sweep.mkdir(parents=True)
    write_csv(sweep / "sweep.csv", [{"method": "ft", "seed": s, "value": v, "start_norm": v, "diff": 5 / (1 + v) + s,
                                     "folder": str(out / f"sweep-{s}-{v}")}
                                    for s in (0, 1, 2) for v in (0.1, 1, 5, 10, 100)])
    write_json(sweep / "settings.json", {"config": {"task": "files"}})
    ntk = ["ntk", "--task", "files", "--train-file", str(toy_files / "train.csv"), "--test-file",
           str(toy_files / "test.csv"), "--model", str(tiny_bert_dir), "--max-length", "16", "--n-train", "6",
           "--n-test", "4", "--out", str(out), "--cache-dir", str(cache), "--lp-cs", "3", "--lp-folds", "2"]
    for method in ("ft", "lora"):
        assert main(ntk + ["--method", method, "--no-predict"]) == 0
    for norm in ("0.5", "5"):  # the SGD side of claim 5: a real plain-SGD epoch from rescaled heads
        assert main(ntk + ["--method", "ft", "--head-norm", norm, "--predict-optimizer", "sgd"]) == 0
    return out, cache, folders


def test_claims_end_to_end(study_out, capsys):
    out, cache, folders = study_out
    capsys.readouterr()
    assert main(["claims", "--out", str(out), "--cache-dir", str(cache), "--gd-steps", "50"]) == 0
    printed = capsys.readouterr().out
    report = out / "claims"
    assert f"report: {report / 'claims.md'}" in printed
    for name in ("claims.md", "claims.csv", "runs.csv", "lp_norm_path.csv", "lp_norm_path.png", "monotonicity.csv",
                 "norm_curves.png", "kernel_pairs.csv"):
        assert (report / name).is_file(), name
    rows = read_csv(report / "claims.csv")
    by = {(int(r["claim"]), r["statistic"]): r for r in rows}

    # claim 1: the two seeds' paired differences, recomputed from metrics.json
    c1 = by[(1, "LP-FT − FT test metric (points), ID")]
    diffs = []
    for seed in (0, 1):
        m = [json.loads((folders[(k, seed)] / "metrics.json").read_text())["test"]["accuracy"] for k in ("lp-ft", "ft")]
        diffs.append(100 * (m[0] - m[1]))
    assert int(c1["n"]) == 2 and float(c1["mean"]) == pytest.approx(np.mean(diffs))
    # the toy runs predict one class (33.33 %) on every seed: rules v2 call the statistic uninformative
    assert c1["verdict"] == "uninformative" and "FT predicts one class on every seed (2)" in c1["note"]
    assert (1, "LP-FT − FT test metric (points), OOD shifted") in by
    # claim 2 from the evaluate folders; LoRA / LP-LoRA have none
    assert int(by[(2, "Diff(F) FT − LP-FT, best epoch")]["n"]) == 2
    assert by[(2, "CS(F) LP-FT − FT, best epoch")]["verdict"] == "shown, no verdict"
    assert by[(2, "Diff(F) LoRA − LP-LoRA, best epoch")]["verdict"] == "no data"
    # the last epoch (1 of 1) from features/last-epoch-test.npy: the same numbers as the best epoch here
    last = by[(2, "Diff(F) FT − LP-FT, last epoch")]
    assert int(last["n"]) == 2 and float(last["mean"]) == pytest.approx(
        float(by[(2, "Diff(F) FT − LP-FT, best epoch")]["mean"]), abs=1e-3)
    # claim 3 and its norm path
    assert int(by[(3, "log2 Norm(C) growth, LP − FT")]["n"]) == 2
    path = read_csv(report / "lp_norm_path.csv")
    assert sum(r["kind"] == "L2 probe" for r in path) == 3 and sum(r["chosen"] == "True" for r in path) == 1
    # claim 4: only FT has an unscaled eNTK folder, so no pair: no data, with the command to run
    c4 = [r for r in rows if r["claim"] == "4"]
    assert c4 and all(r["verdict"] == "no data" for r in c4)
    # claim 5: AdamW from the sweep (rho -1 on three seeds, which would hold, but the toy FT is degenerate: rules v2
    # gate it), SGD from the two rescaled eNTK folders
    adamw = by[(5, "Spearman rho(start norm, feature change), FT, AdamW")]
    assert adamw["verdict"] == "uninformative" and float(adamw["mean"]) == pytest.approx(-1.0)
    assert adamw["n"] == "3"
    mono = read_csv(report / "monotonicity.csv")
    sgd = [r for r in mono if r["optimizer"] == "SGD"]
    assert len(sgd) == 1 and sgd[0]["points"] == "2"  # two norms: too few for rho
    assert any(r["claim"] == "5" and "SGD" in r["statistic"] and r["verdict"] == "no data"
               and "--predict-optimizer sgd" in r["note"] for r in rows)
    # claim 6 over FT, LP-FT, LoRA
    assert int(by[(6, "MCE gain (points) LP-FT − best other")]["n"]) == 2
    # claim 7: one seed of LoRA and FT kernels: numbers, but no interval
    pairs = read_csv(report / "kernel_pairs.csv")
    assert len(pairs) == 1 and pairs[0]["pair"] == "lora vs ft"
    assert 0 <= float(pairs[0]["residual"]) <= 1 and float(pairs[0]["baseline_residual"]) > 0
    assert float(pairs[0]["permuted_residual"]) > 0 and pairs[0]["ft_part"].startswith("whole model")
    c7 = [r for r in rows if r["claim"] == "7"]
    assert len(c7) == 3 and all(r["n"] == "1" for r in c7)
    assert [r["verdict"] for r in c7] == ["uninformative", "shown, no verdict", "shown, no verdict"]
    md = (report / "claims.md").read_text()
    assert "## Verdicts" in md and "no interval (n = 1)" in md and "run: lpft ntk --task files" in md
    assert "uninformative" in printed and "claim" in printed
    assert "## Uninformative task × method (rules v2)" in md


def test_claims_task_filter_and_bad_input(study_out, tmp_path, capsys):
    out, cache, _ = study_out
    assert main(["claims", "--out", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["claims", "--out", str(empty)]) == 2
    assert "no finished run" in capsys.readouterr().err
    assert not (empty / "claims").exists()
    assert main(["claims", "--out", str(out), "--tasks", "cbb"]) == 2
    assert "unknown task 'cbb'" in capsys.readouterr().err
    # a task without data: every claim says which command produces it
    assert main(["claims", "--out", str(out), "--tasks", "CB", "--report", str(tmp_path / "cb")]) == 0
    rows = read_csv(tmp_path / "cb" / "claims.csv")
    assert {r["claim"] for r in rows} == {str(c) for c in range(1, 8)}
    assert all(r["task"] == "cb" and r["verdict"] == "no data" and "--task cb" in r["note"] for r in rows)
    assert main(["claims", "--out", str(out), "--gd-steps", "0"]) == 2
    assert main(["claims", "--out", str(out), "--tasks", "files", "--no-lp-path", "--report",
                 str(tmp_path / "r")]) == 0
    assert not (tmp_path / "r" / "lp_norm_path.csv").exists() and (tmp_path / "r" / "claims.md").is_file()


def test_claims_reads_several_folders_once_each(study_out, tmp_path):
    out, cache, folders = study_out
    pairs = [str(folders[(m, s)]) for m in ("ft", "lp-ft") for s in (0, 1)]
    assert main(["claims", "--out", *pairs, "--no-lp-path", "--report", str(tmp_path / "pairs")]) == 0
    stats = {r["statistic"]: r for r in read_csv(tmp_path / "pairs" / "claims.csv") if r["claim"] == "1"}
    assert stats["LP-FT − FT test metric (points), ID"]["n"] == "2"
    assert any("OOD" in name and r["n"] == "2" for name, r in stats.items())  # their evaluate folders, inside
    assert len(read_csv(tmp_path / "pairs" / "runs.csv")) == 4
    # a folder given twice, or inside another one given, counts once
    assert main(["claims", "--out", str(out), *pairs, "--no-lp-path", "--report", str(tmp_path / "all")]) == 0
    runs = read_csv(tmp_path / "all" / "runs.csv")
    assert len({r["folder"] for r in runs}) == len(runs) == len(folders)
