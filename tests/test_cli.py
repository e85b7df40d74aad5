"""The `lpft` command through a subprocess: help, bad input (exit 2, one line, nothing written), a tiny run."""

import os
import re
import subprocess
import sys

import pytest


def lpft(*args, cwd=None, env_extra=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "lpft", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def test_help_lists_subcommands():
    out = lpft("--help")
    assert out.returncode == 0 and "train" in out.stdout
    out = lpft("train", "--help")
    assert out.returncode == 0 and "--method" in out.stdout and "paper Table 6" in out.stdout


@pytest.fixture(scope="module")
def toy_csv(polarity_csv):
    """The polarity task's folder, plus a file whose row 3 has an empty label."""
    (polarity_csv.parent / "bad.csv").write_text("text,label\nhello,pos\nworld,\n")
    return polarity_csv.parent


BAD_INPUTS = [
    (["--task", "nosuchtask"], "unknown task 'nosuchtask'"),
    (["--task", "cb", "--method", "sgd"], "--method 'sgd' is unknown"),
    (["--task", "cb", "--lr", "-1"], "--lr must be > 0"),
    (["--task", "cb", "--epochs", "0"], "--epochs must be > 0"),
    (["--task", "cb", "--model", "./no/such/model"], "model path './no/such/model' does not exist"),
    (["--task", "files"], "--task files needs --train-file"),
    (["--task", "cb", "--data-dir", "/no/such/dir"], "/no/such/dir"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path):
    out_dir = tmp_path / "runs"
    result = lpft("train", *args, "--out", str(out_dir), "--cache-dir", "none")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lpft: error:"), result.stderr
    assert message in lines[0]
    assert not out_dir.exists()


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_in_process_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys):
    """The same cases through ``lpft.cli.main`` in this process (the fast tier's copy: the process version above,
    which also sees what importing the libraries prints, starts an interpreter per case and is in the slow tier)."""
    from lpft.cli import main

    out_dir = tmp_path / "runs"
    assert main(["train", *args, "--out", str(out_dir), "--cache-dir", "none"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lpft: error:"), lines
    assert message in lines[0]
    assert not out_dir.exists()


def test_malformed_data_file_names_file_and_row(toy_csv, tmp_path):
    result = lpft("train", "--task", "files", "--train-file", str(toy_csv / "bad.csv"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "bad.csv" in result.stderr and "3" in result.stderr, result.stderr
    assert not (tmp_path / "r").exists()


def test_tiny_run_end_to_end_and_reuse(toy_csv, tiny_bert_dir, tmp_path):
    args = ["train", "--task", "files", "--train-file", str(toy_csv / "train.csv"), "--model", str(tiny_bert_dir),
            "--method", "lp-ft", "--epochs", "1", "--max-length", "16", "--out", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache")]
    first = lpft(*args)
    assert first.returncode == 0, first.stderr
    assert "LP-FT on files" in first.stdout and "test" in first.stdout and "run folder:" in first.stdout
    # the epoch line names the metric and says which epoch is kept, rather than printing a dict and a bare '*'
    assert "LP-FT (seed 0) epoch 1/1: train loss " in first.stdout and ", validation accuracy " in first.stdout
    assert "(best so far)" in first.stdout and "{" not in first.stdout and "*" not in first.stdout
    trained = re.search(r"best epoch 1, (trained in \d+ s)\n", first.stdout)
    assert trained, first.stdout
    again = lpft(*args)
    assert again.returncode == 0 and "reusing finished run" in again.stdout + again.stderr
    # a reused run reports the time it took to train, not the second it took to read it
    assert f"best epoch 1, {trained.group(1)} (reused from an earlier command)" in again.stdout, again.stdout
