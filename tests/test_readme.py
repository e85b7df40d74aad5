"""The README's commands run offline, in order, as written — checked by parsing and dry-running each one.

Every ``lpft ...`` line of a ```bash block (backslash continuations joined) is parsed by the real ``lpft`` parser and
dry-run: its options resolve and validate, its data folder and files exist and load, its model is local (or the line
says ``# needs the hub``, and then the model really is a hub name), and every run folder it reads was created by an
earlier command of the README. A line marked ``# needs <something else>`` (files that are not in ../shared/data) is
parsed and its options validated only. Nothing is trained. Inline ``lpft ...`` code spans must parse too.
"""

import dataclasses
import os
import re
import shlex
from pathlib import Path

import pytest

from lpft.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HUB_MARK = "# needs the hub"
NEEDS_MARK = "# needs "
TRAINING_COMMANDS = ("train", "compare", "norm-sweep", "ntk")


@dataclasses.dataclass
class Line:
    number: int  # README line where the command starts
    argv: list[str]  # after "lpft"
    needs_hub: bool
    needs_other: bool = False  # e.g. "# needs the BOSS files in DATA"

    def __str__(self):
        return f"README.md:{self.number}: lpft {shlex.join(self.argv)}"


def bash_commands(text: str) -> list[Line]:
    """``lpft`` commands of the ```bash blocks, in order: continuations joined, trailing comments split off."""
    out, in_bash, pending, start = [], False, "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("```"):
            in_bash = raw.strip() == "```bash"
            continue
        if not in_bash:
            continue
        if not pending:
            start = number
        line = raw.rstrip()
        code, _, comment = line.partition(" #") if not line.lstrip().startswith("#") else ("", "", line)
        if code.rstrip().endswith("\\"):
            pending += code.rstrip()[:-1] + " "
            continue
        command = (pending + code).strip()
        pending = ""
        if command.startswith("lpft"):
            marks = "#" + comment
            out.append(Line(start, shlex.split(command)[1:], HUB_MARK in marks,
                            NEEDS_MARK in marks and HUB_MARK not in marks))
    return out


def inline_commands(text: str) -> list[str]:
    outside_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    return [" ".join(m.group(1).split()) for m in re.finditer(r"`(lpft(?:\s[^`]*)?)`", outside_blocks)]


README_TEXT = README.read_text()
LINES = bash_commands(README_TEXT)


def test_the_readme_has_commands_and_marks_hub_lines():
    assert len(LINES) >= 8
    assert {line.argv[0] for line in LINES} >= {"train", "compare", "norm-sweep", "evaluate", "calibrate", "ntk"}
    assert any(line.needs_hub for line in LINES)


@pytest.mark.parametrize("command", inline_commands(README_TEXT))
def test_inline_commands_parse(command):
    argv = shlex.split(command)[1:]
    if argv and argv[0].startswith("--"):  # `lpft --version`
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
    elif len(argv) <= 1:  # `lpft` or a command's name in prose: `lpft compare`
        assert not argv or argv[0] in build_parser()._subparsers._group_actions[0].choices
    else:
        build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def readme_cwd(shared_data):
    """The README's commands run from the repository folder, with the data in ../shared/data."""
    if not (REPO / "../shared/data").resolve().is_dir():
        pytest.skip("the README's ../shared/data is not next to this checkout")
    old = os.getcwd()
    os.chdir(REPO)
    yield REPO
    os.chdir(old)


def created_folders(args) -> list[Path]:
    """The run folders a training command writes (those an `evaluate` / `calibrate` line may read)."""
    from lpft.analysis.sweep import sweep_configs
    from lpft.commands._options import base_config, parse_list
    from lpft.config import config_from_args
    from lpft.methods.config import RunConfig
    from lpft.report.compare import study_configs
    from lpft.runs import run_folder

    if args.command == "train":
        configs = [config_from_args(RunConfig, args).resolved()]
    elif args.command == "compare":
        configs = study_configs(base_config(args), parse_list(args.methods, "--methods"),
                                parse_list(args.seeds, "--seeds", int))
    elif args.command == "norm-sweep":
        configs = sweep_configs(base_config(args), parse_list(args.methods, "--methods"),
                                parse_list(args.norms, "--norms", float), parse_list(args.seeds, "--seeds", int),
                                "scale" if args.multipliers else "norm")
    else:
        return []
    return [run_folder(cfg, args.out) for cfg in configs]


def dry_run(line: Line, args, created: dict[Path, str]) -> None:
    """Everything the command would check or read before its long work, without training anything."""
    from lpft.config import config_from_args
    from lpft.data import get_task
    from lpft.methods.config import RunConfig
    from lpft.model import hub_options, resolve_model_path

    if line.needs_other:  # files we do not have here: the options must still be valid
        if args.command in TRAINING_COMMANDS:
            config_from_args(RunConfig, args).resolved()
        return
    if getattr(args, "data_dir", None):
        assert Path(args.data_dir).is_dir(), f"{line}: --data-dir {args.data_dir} does not exist"
    if args.command in TRAINING_COMMANDS:
        cfg = (config_from_args(RunConfig, args)).resolved()
        for name in ("train_file", "validation_file", "test_file"):
            if getattr(cfg, name):
                assert Path(getattr(cfg, name)).is_file(), f"{line}: --{name.replace('_', '-')} is missing"
        from lpft.runs import load_task

        load_task(cfg, args.data_dir).load("train")  # the data is where the line says, offline
        path = resolve_model_path(cfg.model)
        if line.needs_hub:
            assert not Path(path).is_dir(), f"{line}: marked '{HUB_MARK}' but its model is local"
            from lpft.model import ModelError

            with pytest.raises(ModelError, match="cannot be reached"):  # offline it fails fast, in one line
                hub_options(cfg.model, path)
        else:
            assert Path(path).is_dir(), f"{line}: model {cfg.model!r} needs the hub: mark the line '{HUB_MARK}'"
        for folder in created_folders(args):
            created.setdefault(folder, str(line))
    if args.command == "predict" and args.file:
        assert Path(args.file).is_file(), f"{line}: the file to predict, {args.file}, is missing"
    if args.command in ("evaluate", "calibrate", "predict", "export"):
        run = Path(args.run)
        same_kind = [str(f) for f in created if f.parent == run.parent] or [str(f) for f in list(created)[:4]]
        assert run in created, (f"{line}: no earlier README command creates {run}; the training commands above "
                                f"create e.g. {', '.join(same_kind)}")
        if args.command == "evaluate":
            trained_on = run.parts[1]
            labels = get_task(trained_on, args.data_dir).labels
            for spec in args.ood:
                task = get_task(spec, args.data_dir)
                assert task.labels == labels, f"{line}: {spec} has other labels than {trained_on}"
                task.load("test")


def test_every_command_parses_and_dry_runs_offline_in_order(readme_cwd, capsys):
    created: dict[Path, str] = {}
    parser = build_parser()
    for line in LINES:
        if "--help" in line.argv:
            with pytest.raises(SystemExit) as stop:
                main(line.argv)
            assert stop.value.code == 0, str(line)
            continue
        args = parser.parse_args(line.argv)
        dry_run(line, args, created)
    capsys.readouterr()


def test_sample_output_names_the_folder_the_command_creates():
    """The quick start's printed run folder is the one `lpft train` makes today."""
    from lpft.methods.config import RunConfig
    from lpft.runs import run_folder

    printed = re.search(r"run folder: (runs/bbc-news/\S+)", README_TEXT).group(1)
    assert printed == str(run_folder(RunConfig().resolved()))


# (README text, parsed lines): the parser of the test itself, so that a README edit cannot slip past it
PARSER_CASES = [
    ("```bash\nlpft train --task cb  # paper\n```\n", [(2, ["train", "--task", "cb"], False, False)]),
    ("```bash\nlpft train --model x \\\n    --seed 2   # needs the hub (any)\n```\n",
     [(2, ["train", "--model", "x", "--seed", "2"], True, False)]),
    ("```\nlpft train\n```\n```bash\npip install x  # needs PyPI\nlpft ntk\n```\n", [(6, ["ntk"], False, False)]),
    ("```bash\nlpft compare --task boss-amazon \\\n    --data-dir DATA   # needs the BOSS files\n```\n",
     [(2, ["compare", "--task", "boss-amazon", "--data-dir", "DATA"], False, True)]),
]


@pytest.mark.parametrize("text,expected", PARSER_CASES)
def test_command_extraction(text, expected):
    assert [(line.number, line.argv, line.needs_hub, line.needs_other) for line in bash_commands(text)] == expected
