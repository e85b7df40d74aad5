"""Dataclass configs whose attribute docstrings become ``--options`` (cleanrl style, no extra dependency).

A config is a plain ``@dataclass``; the string literal under each field is its help text::

    @dataclass
    class Demo:
        epochs: int = 10
        \"\"\"passes over the training set\"\"\"

``add_config_arguments(parser, Demo)`` adds ``--epochs``; ``config_from_args(Demo, args)`` builds the instance.
We parse the docstrings with :mod:`ast` because dataclasses drop them at runtime.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import textwrap
import typing
from functools import lru_cache

from .errors import ConfigError as ConfigError  # re-exported (defined in lpft.errors)

_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(value: str | int) -> int:
    """A size in bytes from an integer or a number with a unit (decimal kB / MB / GB, binary KiB / MiB / GiB);
    ``ValueError`` names what was expected.

    >>> parse_size("1.5GiB"), parse_size("4 GB"), parse_size("67108864"), parse_size(2**30)
    (1610612736, 4000000000, 67108864, 1073741824)
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = _SIZE_UNITS.get(match.group(2).lower() or "b") if match else None
    if match is None or unit is None:
        raise ValueError(f"{value!r} is not a size: expected bytes or a number with a unit (kB, MB, GB, KiB, MiB, "
                         "GiB)")
    return int(float(match.group(1)) * unit)


@lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """Map each field of dataclass ``cls`` to the docstring written under it."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _base_type(annotation):
    """``int | None`` -> int, ``str`` -> str, ``bool`` -> bool."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing), {})  # annotations of our own config classes only
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def add_config_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = docs.get(f.name, "").replace("%", "%%")  # argparse %-formats help strings
        kind = _base_type(hints[f.name])
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=default, help=help_text,
                                metavar=f.name.upper())


def config_from_args(cls, args: argparse.Namespace, **overrides):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)
