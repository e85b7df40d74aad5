"""Safe concurrency: two processes on one run folder, a killed lock holder, the shared caches (lpft.locks).

The process tests start real ``lpft train`` subprocesses (through ``tests/gated_lpft.py``, which pauses fine-tuning
after its first epoch until the test opens a gate, so the second process certainly arrives mid-run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock, Timeout

from lpft.locks import compute_once, exclusive, lock_path
from lpft.methods.config import RunConfig
from lpft.runs import run_folder, train

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
WAITING = "waiting for another process training"
FINISHED_RUN = {"config.json", "environment.json", "heads", "model.safetensors", "logits", "history.json",
                "steps.json", "timing.json", "metrics.json", "features"}  # features/: the last epoch's test features


def train_args(csv: Path, model: Path, out: Path, cache: Path) -> list[str]:
    return ["train", "--task", "files", "--train-file", str(csv), "--model", str(model), "--method", "ft",
            "--epochs", "3", "--batch-size", "8", "--lr", "1e-3", "--max-length", "16", "--out", str(out),
            "--cache-dir", str(cache), "--device", "cpu", "--checkpoint-every", "0"]  # the gate waits for a checkpoint


def start(args: list[str], log: Path, gate: Path) -> subprocess.Popen:
    env = {**os.environ, "LPFT_TEST_GATE": str(gate), "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, str(TESTS / "gated_lpft.py"), *args], stdout=fh,
                                stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def metrics_table(output: str) -> list[str]:
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("split"))
    return lines[at:at + 4]


@pytest.mark.parametrize("delay", [0, 3, 9])
def test_two_processes_on_one_run_train_once(delay, polarity_csv, tiny_bert_dir, tmp_path):
    out, cache, gate = tmp_path / "runs", tmp_path / "cache", tmp_path / "gate"
    args = train_args(polarity_csv, tiny_bert_dir, out, cache)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = start(args, logs[0], gate)
    time.sleep(delay)
    second = start(args, logs[1], gate)
    try:
        # whichever process got the lock is paused after epoch 1; the other must be waiting for it
        contended = wait_for(lambda: any(WAITING in log.read_text() for log in logs), 240)
    finally:
        gate.touch()
        codes = [p.wait(timeout=240) for p in (first, second)]
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], outputs
    assert contended, outputs
    waited = [o for o in outputs if WAITING in o]
    trained = [o for o in outputs if " epoch 3/3: train loss" in o]
    assert len(waited) == 1 and len(trained) == 1 and waited[0] is not trained[0], outputs
    assert "reusing finished run" in waited[0] and "reusing" not in trained[0]
    assert metrics_table(outputs[0]) == metrics_table(outputs[1])
    folder = run_folder(RunConfig(task="files", train_file=str(polarity_csv), model=str(tiny_bert_dir),
                                  method="ft", epochs=3, batch_size=8, lr=1e-3, max_length=16).resolved(), out)
    assert {p.name for p in folder.iterdir()} == FINISHED_RUN  # no state/, no lock, no temporary file
    assert not [p for p in folder.rglob(".*")]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # the method folder lists only the run
    assert lock_path(folder, out) == out / ".locks" / "files" / "ft" / f"{folder.name}.lock"
    assert lock_path(folder, out).exists()


def test_lock_of_a_killed_process_does_not_block(polarity_csv, tiny_bert_dir, tmp_path, capsys):
    out, gate = tmp_path / "runs", tmp_path / "gate"
    proc = start(train_args(polarity_csv, tiny_bert_dir, out, tmp_path / "cache"), tmp_path / "killed.log", gate)
    try:
        assert wait_for(lambda: Path(f"{gate}.reached").exists(), 240), (tmp_path / "killed.log").read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    cfg = RunConfig(task="files", train_file=str(polarity_csv), model=str(tiny_bert_dir), method="ft", epochs=3,
                    batch_size=8, lr=1e-3, max_length=16)
    folder = run_folder(cfg.resolved(), out)
    assert (folder / "state" / "progress.json").exists() and not (folder / "metrics.json").exists()
    with FileLock(str(lock_path(folder, out))).acquire(timeout=10):  # free at once: the lock died with its holder
        pass
    assert train(cfg, out=out, cache_dir=tmp_path / "cache", device="cpu") == folder
    printed = capsys.readouterr().out
    assert "resuming after epoch 1" in printed and WAITING not in printed
    assert {p.name for p in folder.iterdir()} == FINISHED_RUN


def test_exclusive_waits_and_says_so_once(tmp_path):
    target, said, order = tmp_path / "run", [], []
    holding = threading.Event()

    def holder():
        with exclusive(target):
            holding.set()
            time.sleep(0.5)
            order.append("holder done")

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(10)
    with exclusive(target, "waiting for the holder", notify=said.append):  # flock: another fd waits, even here
        order.append("waiter in")
    thread.join()
    assert said == ["waiting for the holder"] and order == ["holder done", "waiter in"]
    with exclusive(target, "never printed", notify=said.append):  # free: no message
        pass
    assert said == ["waiting for the holder"] and not target.exists() and lock_path(target).exists()


def test_compute_once_computes_a_cache_entry_once_across_concurrent_callers(tmp_path):
    path, calls, results = tmp_path / "features" / "key.npy", [], []
    entered = threading.Event()

    def compute():
        calls.append(1)
        entered.set()
        time.sleep(0.5)  # the second caller arrives while this runs
        return np.arange(4.0)

    def call():
        results.append(compute_once(path, compute, np.load, lambda p, v: np.save(p, v), what="features"))

    threads = [threading.Thread(target=call)]
    threads[0].start()
    entered.wait(10)
    threads.append(threading.Thread(target=call))
    threads[1].start()
    for t in threads:
        t.join(30)
    assert len(calls) == 1 and len(results) == 2
    assert all(np.array_equal(r, np.arange(4.0)) for r in results)
    assert np.array_equal(compute_once(path, lambda: 1 / 0, np.load, None), np.arange(4.0))  # cached: no compute


def test_lock_path_under_a_root_or_beside():
    out = Path("runs")
    assert lock_path(out / "cb" / "ft" / "m-seed0-abc", out) == Path("runs/.locks/cb/ft/m-seed0-abc.lock")
    assert lock_path(Path("cache/features/k.npy")) == Path("cache/features/.k.npy.lock")
    assert lock_path(Path("elsewhere/x"), out) == Path("elsewhere/.x.lock")  # not under the root: beside


def test_failed_start_leaves_no_lock_behind(polarity_csv, tmp_path, monkeypatch):
    """Bad model weights surface after the lock is taken: the error must still leave nothing in --out."""
    import lpft.runs as runs

    def broken(*args, **kwargs):
        raise RuntimeError("weights unreadable")

    monkeypatch.setattr(runs, "start_of_fine_tuning", broken)
    cfg = RunConfig(task="files", train_file=str(polarity_csv), method="ft", epochs=1, max_length=16)
    with pytest.raises(RuntimeError, match="weights unreadable"):
        train(cfg, out=tmp_path / "runs", cache_dir=None, device="cpu")
    assert not (tmp_path / "runs").exists()


def test_lock_is_not_held_after_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with exclusive(tmp_path / "x"):
            raise RuntimeError("boom")
    lock = FileLock(str(lock_path(tmp_path / "x")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        pytest.fail("lock still held after the block raised")
    lock.release()
