"""`lpft --help` texts: each default stated once, `--version`, what each command writes, no ignored options."""

import argparse
import re

import pytest

from lpft.cli import COMMANDS, build_parser, main


@pytest.fixture(scope="module")
def helps():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "10000")  # one line per option: no words broken at hyphens
        parser = build_parser()
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return {name: " ".join(subparsers.choices[name].format_help().split()) for name in COMMANDS}


def option_help(text: str, option: str) -> str:
    """The help of one option in a whitespace-normalised help page (up to the next option)."""
    m = re.search(rf"(?<=\s){re.escape(option)} [A-Z_]+ (.*?)(?= --[a-z][a-z-]*(?: [A-Z_{{]|,)|$)", text)
    assert m, option
    return m.group(1)


# (command, option, text its help must contain): the hand-written default, stated once
STATED_ONCE = [
    ("train", "--model", "(default: the embedded all-MiniLM-L6-v2)"),
    ("train", "--epochs", "(default 10; 1 for bbc-news)"),
    ("train", "--batch-size", "(default: paper Table 6"),
    ("train", "--lr", "(default: paper Table 6)"),
    ("train", "--max-length", "(default 128; 64 for bbc-news)"),
    ("train", "--dropout", "(default: the backbone's hidden dropout)"),
    ("train", "--device", "(default: cuda if available, else cpu)"),
    ("train", "--cache-dir", "(default: $LPFT_CACHE_DIR or ~/.cache/lpft)"),
    ("ntk", "--memory-budget", "(unset: 3 GiB)"),
    ("compare", "--report", "unset: <out>/<task>/report"),
]


@pytest.mark.parametrize("command,option,text", STATED_ONCE, ids=[f"{c} {o}" for c, o, _ in STATED_ONCE])
def test_each_default_is_stated_once(helps, command, option, text):
    help_text = option_help(helps[command], option)
    assert text in help_text
    assert help_text.lower().count("default") + help_text.count("unset") == 1, help_text


@pytest.mark.parametrize("command", COMMANDS)
def test_no_help_says_default_none_or_twice(helps, command):
    assert "(default: None)" not in helps[command]
    assert not re.search(r"\(default[^()]*\)\s*\(default", helps[command])


@pytest.mark.parametrize("command,option,default", [("train", "--seed", "(default: 0)"),
                                                     ("train", "--weight-decay", "(default: 0.0)"),
                                                     ("ntk", "--n-train", "(default: 250)"),
                                                     ("compare", "--seeds", "(default: 0)")])
def test_plain_defaults_are_still_shown(helps, command, option, default):
    assert default in option_help(helps[command], option)


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"lpft {version('lpft')}"


@pytest.mark.parametrize("command,where", [("train", "<out>/<task>/<method>/<model>-seed<seed>-<key>/"),
                                           ("ntk", "<out>/<task>/ntk/<method>-seed<seed>-n<N>x<M>-<key>/"),
                                           ("compare", "<out>/<task>/report"),
                                           ("norm-sweep", "<out>/<task>/norm-sweep"),
                                           ("evaluate", "<run>/evaluation"),
                                           ("calibrate", "<run>/calibration"),
                                           ("predict", "<run>/predictions/<name>.csv"),
                                           ("export", "Writes DIR")])
def test_help_says_where_output_goes(helps, command, where):
    description = helps[command].split(" options: ")[0]
    assert where in description


def test_ntk_lists_no_training_option_it_ignores(helps):
    assert "--log-every" not in helps["ntk"] and "--epochs" not in helps["ntk"]
    assert "--log-every" in helps["train"] and "--epochs" in helps["train"]


@pytest.mark.parametrize("command", ["compare", "norm-sweep"])
def test_studies_need_an_explicit_task(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--seeds", "0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    # compare also takes --tasks instead of --task
    assert ("the following arguments are required: --task" in err
            or "one of the arguments --task --tasks is required" in err), err


def test_test_file_help_says_what_unset_means(helps):
    assert "a stratified 10% of the training file" in option_help(helps["train"], "--test-file")


# libraries that take seconds to import on a 2-core machine; printing help must load none of them
HEAVY = ("torch", "transformers", "sklearn", "scipy", "peft", "datasets", "pandas", "matplotlib", "numpy")


def test_help_imports_no_heavy_library():
    """`lpft --help` and every `lpft CMD --help` read their choices from the torch-free lpft.options: a fresh
    interpreter prints all of them and has loaded none of HEAVY (the help took 3-7 s when it imported torch)."""
    import subprocess
    import sys

    script = (
        "import contextlib, io, sys\n"
        "from lpft.cli import COMMANDS, main\n"
        "for argv in [['--help']] + [[c, '--help'] for c in COMMANDS]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as stop:\n"
        "            assert stop.code == 0, (argv, stop.code)\n"
        "    assert 'usage: lpft' in out.getvalue(), argv\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"help imported {done.stdout.strip()}"
