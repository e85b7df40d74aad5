"""Shared fixtures: tiny BERT / RoBERTa models built from a config (fast, offline) and the real-data folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests never reach the Hugging Face hub (it is unreachable on CI); hub code paths are tested with fakes.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never write to the user's cache (~/.cache/lpft: features, probes, the cost model's measured rates, which a
# test's tiny model or a loaded machine would poison): this process and every `lpft` process a test starts use a
# fresh folder, removed when the session ends (tests/study/test_cost.py checks it).
TEST_CACHE = Path(tempfile.mkdtemp(prefix="lpft-test-cache-"))
os.environ["LPFT_CACHE_DIR"] = str(TEST_CACHE)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LPFT_DATA_DIR", REPO.parent / "shared" / "data"))

from tiny_models import ARCHS, save_tiny_model, tiny_config  # noqa: E402,F401

# ---------------------------------------------------------------- test tiers
# `python -m pytest -q` runs everything (CI, the README's command); `python -m pytest -q -m "not slow"` is the fast
# tier for the edit-test loop. A test is slow when it trains whole runs or studies, starts processes or Ray, or reads
# the real data with the embedded model: its file is in SLOW_FILES, it uses a fixture in SLOW_FIXTURES, or it is
# marked `integration`. The lists are decided centrally here (issue 16), from `pytest --durations` and the fixtures
# that build many runs; a new test that trains a study belongs in one of them.
SLOW_FILES = {
    "test_concurrency.py",               # each test starts 1-2 `lpft train` processes
    "study/test_executors.py",           # a Ray instance and a study on it
    "study/test_study_report.py",        # a whole study and its report
    "methods/test_pipeline.py",          # a whole run per method, twice for determinism and resume
    "decoders/test_decoder_pipeline.py",  # whole runs of GPT-2 / Llama / Qwen2 tiny decoders
    "analysis/test_claims_cli.py",       # a study of every method, then `lpft claims`
    "integration/test_cb_methods.py",
}
SLOW_TESTS = {
    "test_readme.py::test_every_command_parses_and_dry_runs_offline_in_order",  # every README command
    "test_cli.py::test_tiny_run_end_to_end_and_reuse",                   # two `lpft train` processes (10 s idle)
    "test_cli.py::test_bad_input_is_one_line_exit_2_and_writes_nothing",  # 7 processes, 4 s each (in-process copy fast)
    "test_hardening.py::test_a_local_ray_instance_prints_nothing_on_stderr",  # starts Ray in a process (6.5 s)
    "ntk/test_ntk_sketch.py::test_sigterm_leaves_no_temporary_file",    # an `lpft ntk` process, killed (4.8 s)
    "test_gates.py::test_mypy_passes",                                  # mypy over the [tool.mypy] modules (63 s)
}
SLOW_FIXTURES = {
    "shared_data",   # the real data folder, read with the embedded MiniLM
    "toy_runs",      # a finished run of every method (analysis tests)
    "infer_runs",    # finished runs for the inference tests
    "local_study",   # a study on the local executor
    "study_out",     # a study for `lpft claims`
}


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        where = Path(str(item.fspath)).resolve().relative_to(tests).as_posix()
        if (where in SLOW_FILES or f"{where}::{item.name.split('[')[0]}" in SLOW_TESTS
                or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("integration")):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", params=ARCHS)
def tiny_model_dir(request, tmp_path_factory) -> Path:
    """A saved tiny model folder, once per architecture."""
    return save_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark files. Under CI=true a missing folder fails; elsewhere it skips."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real data folder {SHARED_DATA} is missing (CI=true requires it)")
        pytest.skip(f"real data folder {SHARED_DATA} is missing")
    return SHARED_DATA


@pytest.fixture(scope="module")
def polarity_csv(tmp_path_factory) -> Path:
    """A 40-row two-class CSV (pos / neg by word choice): the smallest learnable user-file task."""
    folder = tmp_path_factory.mktemp("polarity")
    rows = ["text,label"] + [f"{'good great fine' if i % 2 else 'bad awful poor'} item {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(40)]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    return folder / "train.csv"
