"""benchmarks/gpu_check.py without a GPU: it refuses clearly, and its plan is made of valid ``lpft`` commands."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lpft.cli import build_parser
from lpft.config import config_from_args
from lpft.methods.config import RunConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_in_one_line_and_writes_nothing(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"})
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpu_check.py: error: needs a CUDA GPU"), result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("quick", [False, True])
def test_plan_is_valid_lpft_commands_at_the_promised_scale(quick, tmp_path, capsys):
    gpu_check = load_script()
    argv = ["--out", str(tmp_path)] + (["--quick"] if quick else [])
    assert gpu_check.main(argv + ["--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    parser = build_parser()
    cli_steps = [line.split(": lpft ", 1)[1].split() for line in printed if ": lpft " in line]
    assert [s[0] for s in cli_steps] == ["compare", "ntk"] and len(printed) == 6
    for argv_ in cli_steps:
        parsed = parser.parse_args(argv_)
        assert parsed.device == "cuda" and parsed.data_dir and config_from_args(RunConfig, parsed).task == "cb"
        config_from_args(RunConfig, parsed).resolved()
    compare, ntk = (parser.parse_args(s) for s in cli_steps)
    if quick:
        assert (compare.methods, compare.seeds, compare.epochs, ntk.n_train) == ("lp,lp-ft", "1", 2, 64)
    else:
        assert (compare.methods, compare.seeds, compare.epochs) == ("lp,ft,lp-ft,lora,lp-lora", "1,2,3", 10)
        assert (ntk.n_train, ntk.n_test, ntk.method) == (250, 250, "lp-ft")
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
