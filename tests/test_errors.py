"""One base for user errors: every class lpft raises for bad input is an ``LpftError``, and the ``lpft`` command
turns any of them into one line ``lpft: error: ...`` with exit status 2 (anything else keeps its traceback)."""

from __future__ import annotations

import errno
import importlib
import inspect
import pkgutil

import pytest

import lpft
from lpft import cli, errors
from lpft.errors import (
    ConfigError,
    DataError,
    DiskFullError,
    LpftError,
    ModelError,
    RunFolderError,
    TrainingDiverged,
    reworded,
)

USER_ERRORS = [ConfigError, DataError, ModelError, RunFolderError, DiskFullError, TrainingDiverged]


def _error_classes_defined_in_lpft() -> list[type]:
    """Every exception class defined anywhere in the lpft package (found by walking its modules)."""
    found = set()
    for info in pkgutil.walk_packages(lpft.__path__, "lpft."):
        if info.name.startswith("lpft.__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("lpft"):
                found.add(obj)
    return sorted(found, key=lambda cls: cls.__qualname__)


def test_every_error_class_in_lpft_is_a_user_error():
    classes = _error_classes_defined_in_lpft()
    assert set(USER_ERRORS) <= set(classes)
    assert [cls for cls in classes if not issubclass(cls, LpftError)] == []


@pytest.mark.parametrize("module, name", [("lpft.config", "ConfigError"), ("lpft.data.base", "DataError"),
                                          ("lpft.model", "ModelError"), ("lpft.io", "DiskFullError"),
                                          ("lpft.run_files", "RunFolderError"), ("lpft.runs", "RunFolderError"),
                                          ("lpft.methods.finetune", "TrainingDiverged")])
def test_old_import_paths_give_the_same_class(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_kinds_keep_their_builtin_bases():
    # callers that catch ValueError / OSError keep working
    assert issubclass(ConfigError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(ModelError, ValueError) and issubclass(RunFolderError, DataError)
    err = DiskFullError("/x/run.json")
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC and err.filename == "/x/run.json"
    # divergence is a user error of its own, no longer disguised as a bad option
    assert not issubclass(TrainingDiverged, ConfigError)


@pytest.mark.parametrize("err, kind", [(ConfigError("a"), ConfigError), (RunFolderError("/r/x.json", "bad"), DataError),
                                       (TrainingDiverged(1, 2, float("nan")), LpftError),
                                       (DiskFullError("/r/x.json"), LpftError), (ModelError("m"), ModelError)])
def test_reworded_keeps_the_kind(err, kind):
    new = reworded(err, "1 of 3 runs failed")
    assert type(new) is kind and str(new) == "1 of 3 runs failed"


@pytest.mark.parametrize("err", [TrainingDiverged(2, 7, float("inf")), RunFolderError("/r/head.safetensors", "gone"),
                                 DiskFullError("/r/metrics.json"), LpftError("plain base")])
def test_cli_prints_one_line_and_exits_2_for_any_user_error(monkeypatch, capsys, err):
    def run(args):
        raise err

    monkeypatch.setattr("lpft.commands.calibrate.run", run)
    assert cli.main(["calibrate", "some-run"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"lpft: error: {err}\n"


def test_cli_keeps_the_traceback_of_a_bug(monkeypatch):
    def run(args):
        raise KeyError("a bug")

    monkeypatch.setattr("lpft.commands.calibrate.run", run)
    with pytest.raises(KeyError):
        cli.main(["calibrate", "some-run"])
