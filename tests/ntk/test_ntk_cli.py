"""`lpft ntk` in-process on a tiny model: files, self-consistent statistics, reuse, bad input, the Eq. 1 prediction."""

import json

import numpy as np
import pytest

from lpft.cli import main
from lpft.ntk import load_kernels, pretrain_kernel
from lpft.ntk.sampling import sample_indices


@pytest.fixture(scope="module")
def toy_csv(polarity_csv):
    return polarity_csv


def ntk_args(csv, model, out, *extra):
    return ["ntk", "--task", "files", "--train-file", str(csv), "--test-file", str(csv), "--model", str(model),
            "--max-length", "16", "--n-train", "8", "--n-test", "6", "--out", str(out), "--cache-dir", "none", *extra]


def only_folder(out):
    folders = list((out / "files" / "ntk").iterdir())
    assert len(folders) == 1
    return folders[0]


def test_ntk_end_to_end_consistent_and_reused(toy_csv, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(ntk_args(toy_csv, tiny_bert_dir, out, "--method", "lp-ft", "--lp-cs", "2", "--lp-folds", "2")) == 0
    captured = capsys.readouterr()
    first = captured.out
    assert "FT ratio" in first and "cosine" in first
    # progress over parameter groups is a bar on stderr, not one stdout line per group; no empty metric dicts
    assert "kernel group" not in first and "eNTK parameter groups" in captured.err
    assert "validation {}" not in first and "NTK predict: fine-tune epoch 1/1: train loss" in first
    folder = only_folder(out)
    assert folder.name.startswith("lp-ft-seed0-n8x6-")
    for name in ("meta.json", "P_train.npy", "F_train.npy", "P_test.npy", "F_test.npy", "stats.json", "summary.md",
                 "spectrum.png", "pair_norms.png", "environment.json"):
        assert (folder / name).is_file(), name
    stats = json.loads((folder / "stats.json").read_text())
    # provenance, as a run folder records it: the whole start config, package versions, git revision, command line
    assert stats["config"]["method"] == "lp-ft" and stats["config"]["lr"] > 0 and stats["config"]["max_length"]
    environment = json.loads((folder / "environment.json").read_text())
    assert environment["packages"]["torch"].startswith("2.") and "git_revision" in environment and "argv" in environment
    C, N, h = stats["num_labels"], stats["n_train"], 32
    assert (C, N, stats["n_test"]) == (2, 8, 6)
    # a seeded random sample (36 train rows: the first 90 % of the file; 40 test rows), not the first N
    assert stats["sample"] == "random" and stats["warnings"] == []
    assert stats["train_indices"] == sample_indices(36, 8, seed=0) != list(range(8))
    assert stats["test_indices"] == sample_indices(40, 6, seed=0, stream=1)
    assert stats["kernel_scaling"] == "raw"
    ks = stats["kernels"]
    assert set(ks) == {"P", "F", "P+F"}
    # P and F are PSD, so <P, F> >= 0 and ||P + F||_F >= max(||P||_F, ||F||_F)
    assert ks["P+F"]["frobenius"] >= max(ks["P"]["frobenius"], ks["F"]["frobenius"]) * (1 - 1e-9)
    assert ks["P+F"]["frobenius"] ** 2 >= (ks["P"]["frobenius"] ** 2 + ks["F"]["frobenius"] ** 2) * (1 - 1e-9)
    # P = (G + 1) (x) I_C: rank <= C * min(N, h + 1); subadditivity for P + F
    assert ks["P"]["rank"] <= C * min(N, h + 1) and ks["P"]["rank"] % C == 0
    assert ks["P+F"]["rank"] <= ks["P"]["rank"] + ks["F"]["rank"]
    for k in ks.values():
        assert k["size"] == N * C and 1 <= k["rank"] <= N * C
        assert k["entry_chance"] == pytest.approx(0.5)
        for key in ("entry_train", "entry_test", "argmax_train", "argmax_test"):
            assert 0 <= k[key] <= 1
    assert np.isfinite(stats["ft_ratio"]) and stats["ft_ratio"] > 0  # not bounded by 1 (paper: 1.0137, LP-LoRA)
    kern = load_kernels(folder)
    np.testing.assert_allclose(kern.P_train, pretrain_kernel(kern.features_train, kern.features_train, C))
    assert np.linalg.norm(kern.full_train) == pytest.approx(ks["P+F"]["frobenius"])
    assert {"cosine", "rel_error_sgd_scale", "fitted_scale", "rel_error_fitted"} <= set(stats["predict"]["test"])
    summary = (folder / "summary.md").read_text()
    assert "FT ratio" in summary and "entry acc" in summary and "Eq. 1" in summary and "Eq. 2" in summary
    assert {"cosine", "rel_error_sgd_scale", "fitted_scale", "rel_error_fitted"} <= set(
        stats["predict"]["features_test"])

    stamp = (folder / "F_train.npy").stat().st_mtime_ns
    assert main(ntk_args(toy_csv, tiny_bert_dir, out, "--method", "lp-ft", "--lp-cs", "2", "--lp-folds", "2",
                         "--no-predict")) == 0
    again = capsys.readouterr().err
    assert "eNTK parameter groups" not in again  # the finished kernel folder is loaded, not recomputed
    assert (folder / "F_train.npy").stat().st_mtime_ns == stamp
    stats2 = json.loads((folder / "stats.json").read_text())
    assert "predict" not in stats2
    assert stats2["kernels"]["F"]["frobenius"] == pytest.approx(ks["F"]["frobenius"])

    # another sample set in the same --out (a small trial, then the full N) gets its own folder, no error
    assert main(ntk_args(toy_csv, tiny_bert_dir, out, "--method", "lp-ft", "--lp-cs", "2", "--lp-folds", "2",
                         "--no-predict", "--n-train", "6")) == 0
    assert sorted(f.name.split("-")[3] for f in (out / "files" / "ntk").iterdir()) == ["n6x6", "n8x6"]


def test_method_lp_is_exit_2_and_writes_nothing(toy_csv, tiny_bert_dir, tmp_path, capsys):
    assert main(ntk_args(toy_csv, tiny_bert_dir, tmp_path / "out", "--method", "lp")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lpft: error: --method lp")
    assert not (tmp_path / "out").exists()


def predict_stats(toy_csv, model, out, *extra):
    assert main(ntk_args(toy_csv, model, out, "--method", "ft", "--batch-size", "4", *extra)) == 0
    return json.loads((only_folder(out) / "stats.json").read_text())["predict"]


def test_eq1_prediction_matches_real_finetuning_at_small_lr(toy_csv, tiny_bert_dir, tmp_path):
    # the real training loop (AdamW, dropout on): the direction is predicted, the scale is not SGD's
    real = predict_stats(toy_csv, tiny_bert_dir, tmp_path / "adamw", "--lr", "1e-5")
    assert real["optimizer"] == "adamw" and real["dropout"] is True
    assert real["test"]["cosine"] > 0.9
    # plain SGD without dropout: Eq. 1 with the derived scale w_i = lr_s / |B_s| is exact as lr -> 0
    sgd = predict_stats(toy_csv, tiny_bert_dir, tmp_path / "sgd", "--lr", "1e-6", "--predict-optimizer", "sgd",
                        "--no-predict-dropout")
    assert sgd["test"]["cosine"] > 0.999
    assert sgd["test"]["rel_error_sgd_scale"] < 0.05
    assert sgd["test"]["fitted_scale"] == pytest.approx(1.0, abs=0.05)
    # Eq. 2: the feature change, same scale, from one backward pass and a directional derivative
    assert sgd["features_test"]["cosine"] > 0.999
    assert sgd["features_test"]["fitted_scale"] == pytest.approx(1.0, abs=0.05)
    assert sgd["features_test"]["rel_error_sgd_scale"] < 0.05


def test_absent_class_in_the_sample_is_warned_about(tiny_bert_dir, tmp_path, capsys):
    """Data sorted by label (like CB's train file) and --sample first: the first 4 rows are one class. Said on
    stderr and recorded in stats.json; the default random sample covers both classes."""
    csv = tmp_path / "sorted.csv"
    csv.write_text("text,label\n" + "".join(f"bad awful item {i},neg\n" for i in range(20))
                   + "".join(f"good great item {i},pos\n" for i in range(20)))
    args = ntk_args(csv, tiny_bert_dir, tmp_path / "first", "--method", "ft", "--no-predict", "--sample", "first")
    args[args.index("--n-train") + 1] = "4"
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warning: the train sample (4 examples, --sample first) has no example of class(es) pos" in err
    stats = json.loads((only_folder(tmp_path / "first") / "stats.json").read_text())
    assert stats["train_indices"] == [0, 1, 2, 3] and len(stats["warnings"]) == 2  # test: the first 6 rows too
    args = ntk_args(csv, tiny_bert_dir, tmp_path / "random", "--method", "ft", "--no-predict")
    assert main(args) == 0
    assert "warning" not in capsys.readouterr().err


def test_sketch_option_flags_rank_records_seed_and_keeps_p_exact(toy_csv, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(ntk_args(toy_csv, tiny_bert_dir, out, "--method", "ft", "--no-predict")) == 0
    exact_folder = only_folder(out)
    assert main(ntk_args(toy_csv, tiny_bert_dir, out, "--method", "ft", "--no-predict", "--sketch", "4096",
                         "--sketch-seed", "7")) == 0
    printed = capsys.readouterr().out
    assert "n/a (sketch)" in printed and "sketched:" in printed
    (folder,) = [f for f in (out / "files" / "ntk").iterdir() if f != exact_folder]  # its own folder
    stats = json.loads((folder / "stats.json").read_text())
    exact = json.loads((exact_folder / "stats.json").read_text())
    assert stats["sketch"] == 4096 and stats["sketch_seed"] == 7 and "sketch" not in exact["settings"]
    assert json.loads((folder / "meta.json").read_text())["options"]["sketch_seed"] == 7
    assert stats["kernels"]["F"]["rank"] is None and stats["kernels"]["P+F"]["rank"] is None  # not estimable
    assert stats["kernels"]["P"] == exact["kernels"]["P"]  # P stays exact
    assert stats["kernels"]["F"]["frobenius"] == pytest.approx(exact["kernels"]["F"]["frobenius"], rel=0.1)
    assert stats["ft_ratio"] == pytest.approx(exact["ft_ratio"], rel=0.1)
    assert "n/a (sketch)" in (folder / "summary.md").read_text()


def test_sketch_must_be_positive(toy_csv, tiny_bert_dir, tmp_path, capsys):
    assert main(ntk_args(toy_csv, tiny_bert_dir, tmp_path / "out", "--method", "ft", "--sketch", "0")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sketch must be >= 1" in err[0]
    assert not (tmp_path / "out").exists()


def test_no_regression_skips_only_the_probe_and_reuses_the_kernels(toy_csv, tiny_bert_dir, tmp_path, capsys):
    """--no-regression (whole-train-set FT ratios): no accuracies, the same kernels, FT ratio and norms; asking for
    the regression afterwards refits the statistics on the kept kernels, and default settings keep old folders done."""
    from lpft.study.jobs import kernel_settings
    from lpft.study.spec import NtkSpec

    out = tmp_path / "out"
    assert main(ntk_args(toy_csv, tiny_bert_dir, out, "--method", "ft", "--no-predict", "--no-regression")) == 0
    printed = capsys.readouterr().out
    folder = only_folder(out)
    skipped = json.loads((folder / "stats.json").read_text())
    for k in skipped["kernels"].values():
        assert k["entry_train"] is None and k["argmax_test"] is None and k["entry_chance"] == pytest.approx(0.5)
    assert "not fitted" in skipped["kernel_regression_note"] and "-/-" in printed
    assert skipped["settings"]["regression"] is False
    kernels_written = (folder / "F_train.npy").stat().st_mtime_ns

    assert main(ntk_args(toy_csv, tiny_bert_dir, out, "--method", "ft", "--no-predict")) == 0
    fitted = json.loads((only_folder(out) / "stats.json").read_text())
    assert (folder / "F_train.npy").stat().st_mtime_ns == kernels_written  # kernels reused, statistics refitted
    assert fitted["ft_ratio"] == skipped["ft_ratio"]
    for name, k in fitted["kernels"].items():
        assert 0 <= k["entry_train"] <= 1 and k["frobenius"] == skipped["kernels"][name]["frobenius"]
    assert "regression" not in kernel_settings(NtkSpec())  # folders made before the option stay done
