"""The workspace: where data comes from and results go — ``--out``, ``--data-dir``, ``--cache-dir``, ``--device``.

One torch-free dataclass, declared as options by one helper (:func:`add_workspace_arguments`), read from them by
one function (:func:`Workspace.from_args`), checked and resolved in one place (:meth:`Workspace.checked`: the
output and cache folders writable, the data folder a folder, the device one torch knows) and then passed down.
None of it changes the numbers.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

#: the environment variable that moves the default feature / probe cache
CACHE_ENV = "LPFT_CACHE_DIR"


def default_cache_dir() -> Path:
    """The cache folder when ``--cache-dir`` is left at ``default``: ``$LPFT_CACHE_DIR``, else ``~/.cache/lpft``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "lpft"))


def cache_option(value: str | None) -> str | None:
    """``--cache-dir`` as given: ``none`` (or unset) disables the cache."""
    return None if value in (None, "none") else value


@dataclass
class Workspace:
    """Where data comes from and results go; every worker of an executor must see these paths (a shared mount on a
    cluster). None of it changes the numbers."""

    out: Path = Path("runs")
    data_dir: str | None = None
    cache_dir: str | None = "default"  # "default": $LPFT_CACHE_DIR or ~/.cache/lpft; None: no cache
    device: str | None = None

    @property
    def cache(self) -> Path | None:
        """The feature / probe cache folder (None: no cache)."""
        if self.cache_dir == "default":
            return default_cache_dir()
        return Path(self.cache_dir) if self.cache_dir else None

    def absolute(self) -> Workspace:
        """The same workspace with absolute paths: a worker process (Ray) need not share the caller's directory."""
        def resolve(value):
            return str(Path(value).resolve()) if value is not None else None

        cache = self.cache_dir if self.cache_dir in (None, "default") else resolve(self.cache_dir)
        return Workspace(Path(self.out).resolve(), resolve(self.data_dir), cache, self.device)

    def checked(self, name: Callable[[str], str] | None = None, out: bool = True) -> Workspace:
        """This workspace checked, with its device resolved (``cuda`` when available, else ``cpu``).

        Args:
            name: how an error names a field (default the option: ``--cache-dir``; a study file names its keys).
            out: check that ``out`` is a writable folder (or can be made one); False where nothing is written there.

        Raises:
            ConfigError: one line naming the option: an output or cache folder that cannot be written, a data
                folder that is not a folder, a device torch does not know or this machine lacks.
        """
        from .config import ConfigError
        from .io import check_writable_folder

        def option(field: str) -> str:
            return name(field) if name else "--" + field.replace("_", "-")

        if out:
            check_writable_folder(self.out, option("out"))
        if self.cache_dir == "default":
            check_writable_folder(default_cache_dir(), f"the cache folder (${CACHE_ENV} or ~/.cache/lpft)")
        elif self.cache_dir is not None:
            check_writable_folder(self.cache_dir, option("cache_dir"))
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ConfigError(f"{option('data_dir')} {self.data_dir!r} is not a folder: expected the benchmark data "
                              "folder")
        return replace(self, device=resolve_device(self.device))

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> Workspace:
        """The workspace the options of :func:`add_workspace_arguments` give (``overrides`` replace some)."""
        def given(field: str, read: Callable):
            return overrides[field] if field in overrides else read()

        return cls(out=given("out", lambda: Path(getattr(args, "out", None) or "runs")),
                   data_dir=given("data_dir", lambda: getattr(args, "data_dir", None)),
                   cache_dir=given("cache_dir", lambda: cache_option(getattr(args, "cache_dir", "default"))),
                   device=given("device", lambda: getattr(args, "device", None)))


def resolve_device(device: str | None) -> str:
    """``device`` checked (:func:`lpft.model.resolve_device`; imports torch only for a device to check)."""
    from .model import resolve_device as resolve

    return resolve(device)


_HELP = {
    "out": "folder for run records",
    "data_dir": "folder with the benchmark files in their release formats (else $LPFT_DATA_DIR, else the Hugging "
                "Face hub)",
    "cache_dir": "feature / probe cache (default: $LPFT_CACHE_DIR or ~/.cache/lpft); 'none' disables",
    "device": "torch device: cpu, cuda, cuda:N or mps (default: cuda if available, else cpu)",
}


def add_workspace_arguments(parser: argparse.ArgumentParser, fields: tuple[str, ...] = tuple(_HELP),
                            defaults: dict | None = None, help: dict | None = None) -> None:
    """Declare the workspace options ``fields`` (of out, data_dir, cache_dir, device) on ``parser``, with their
    defaults (``runs``, unset, ``default``, unset) unless ``defaults`` gives others and their help unless ``help``
    words it for the command."""
    given = {"out": "runs", "data_dir": None, "cache_dir": "default", "device": None, **(defaults or {})}
    words = {**_HELP, **(help or {})}
    for field in fields:
        parser.add_argument("--" + field.replace("_", "-"), default=given[field], help=words[field])
