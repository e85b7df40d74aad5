"""lpft.workspace: the workspace options declared, read, resolved and checked in one place."""

import argparse
from pathlib import Path

import pytest

from lpft.config import ConfigError
from lpft.workspace import Workspace, add_workspace_arguments


def parse(*argv, fields=("out", "data_dir", "cache_dir", "device")):
    parser = argparse.ArgumentParser()
    add_workspace_arguments(parser, fields)
    return parser.parse_args(list(argv))


def test_options_become_a_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("LPFT_CACHE_DIR", str(tmp_path / "env-cache"))
    ws = Workspace.from_args(parse())
    assert ws == Workspace(Path("runs"), None, "default", None) and ws.cache == tmp_path / "env-cache"
    assert Workspace.from_args(parse("--cache-dir", "none")).cache is None
    ws = Workspace.from_args(parse("--out", "o", "--cache-dir", "c", "--device", "cpu"))
    assert (ws.out, ws.cache, ws.device) == (Path("o"), Path("c"), "cpu")
    # a command without some of the options, or with its own --out (lpft claims reads several folders)
    args = parse("--cache-dir", "c", fields=("cache_dir",))
    args.out = ["a", "b"]
    assert Workspace.from_args(args, out=Path("a")) == Workspace(Path("a"), None, "c", None)


@pytest.mark.parametrize("field, problem", [("out", "is a file"), ("cache_dir", "is a file"),
                                            ("data_dir", "is not a folder"), ("device", "not a torch device")])
def test_checked_names_the_option(field, problem, tmp_path, monkeypatch):
    monkeypatch.setenv("LPFT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "file").write_text("x")
    good = Workspace(tmp_path / "runs", None, str(tmp_path / "c"), "cpu")
    assert good.checked().device == "cpu"
    bad = {"out": tmp_path / "file", "cache_dir": str(tmp_path / "file"), "data_dir": str(tmp_path / "missing"),
           "device": "tpu9"}[field]
    ws = Workspace(**{**good.__dict__, field: bad})
    option = "--" + field.replace("_", "-")
    with pytest.raises(ConfigError, match=f"^{option} .*{problem}"):
        ws.checked()
    with pytest.raises(ConfigError, match=f"^s.toml: {field}" if field != "device" else "^--device"):
        ws.checked(name=lambda f: f"s.toml: {f}" if f != "device" else "--device")


def test_a_study_file_can_turn_the_cache_off(tmp_path):
    from lpft.study import load_study

    path = tmp_path / "s.toml"
    path.write_text('version = 1\ntasks = ["cb"]\ncache_dir = "none"\n')
    assert load_study(path)[1].cache_dir is None  # (was the folder <file's folder>/none)
    path.write_text('version = 1\ntasks = ["cb"]\ncache_dir = "c"\n')
    assert load_study(path)[1].cache_dir == str(tmp_path / "c")
    assert load_study(path, cache_dir="elsewhere")[1].cache_dir == "elsewhere"
