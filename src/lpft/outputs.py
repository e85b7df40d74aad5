"""One rule for every folder and file lpft writes: nothing a user owns is ever replaced.

A folder lpft writes whole (a report, an export) carries a marker file, ``.lpft-folder.json``, holding its *kind*
and the list of files lpft put there. lpft replaces an existing folder only if

- it is empty, or
- its marker says it is a folder of that kind and every file in it is one the marker lists (a notes file the user
  added makes it theirs), or
- it was written by an lpft older than the marker and its content says so (``_LEGACY``: e.g. a report's ``report.md``
  with only report-like files and no run folder inside).

Anything else (a file, the user's project, a run folder, the folder a command reads) is refused with one line before
any work starts: :func:`check_output_folder` / :func:`check_output_file` are called by every command first, and
:func:`output_folder` checks again when it swaps the finished folder in. A folder is built under a temporary name
beside its final place and moved in whole, so an interrupted command leaves the old folder as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from .config import ConfigError
from .io import DiskFullError, check_writable_folder, follow_umask, is_disk_full, write_json

MARKER = ".lpft-folder.json"
MARKER_VERSION = 1
KINDS = ("report", "export")

# what a folder of each kind written before the marker existed holds: a signature file and only such suffixes
_LEGACY = {
    "report": (("report.md", "claims.md", "calibration.json", "evaluation.csv", "sweep.csv"),
               {".md", ".csv", ".json", ".png", ".svg", ".pdf", ".npy"}),
    "export": (("classifier.json",), {".json", ".safetensors", ".txt", ".md", ".model"}),
}


def _files(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (relative, POSIX), the marker left out."""
    return sorted(p.relative_to(folder).as_posix() + ("/" if p.is_dir() and not p.is_symlink() else "")
                  for p in folder.rglob("*") if p.name != MARKER or p.parent != folder)


def _is_run_folder(folder: Path) -> bool:
    """An lpft run folder: its config.json is a run record (``{"config": {"method": ...}, ...}``), not a Hugging
    Face model config."""
    try:
        record = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and isinstance(record.get("config"), dict) and "method" in record["config"]


def _legacy(folder: Path, kind: str) -> bool:
    signatures, suffixes = _LEGACY[kind]
    if not any((folder / s).is_file() for s in signatures):
        return False
    for rel in _files(folder):
        path = folder / rel.rstrip("/")
        if path.is_symlink():
            return False
        if rel.endswith("/"):
            if _is_run_folder(path):
                return False
            if kind == "export":  # an export is flat: a folder inside is the user's
                return False
            continue
        if path.suffix.lower() not in suffixes or (kind == "report" and _is_run_folder(path.parent)):
            return False
    if kind == "export":
        try:
            meta = json.loads((folder / "classifier.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(meta, dict) and {"labels", "pooling"} <= set(meta)
    return True


def _ours(folder: Path, kind: str) -> str | None:
    """None if lpft may replace ``folder`` as a ``kind`` folder, else why not (a phrase)."""
    if not any(folder.iterdir()):
        return None
    marker = folder / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            meta = json.loads(marker.read_text())
            listed = set(meta["files"]) if isinstance(meta, dict) and isinstance(meta.get("files"), list) else None
        except (OSError, ValueError, KeyError, TypeError):
            listed = None
        if listed is None or meta.get("kind") != kind:
            found = meta.get("kind") if isinstance(meta, dict) and listed is not None else "unreadable"
            return f"holds an lpft marker of kind {found!r}, not {kind!r}"
        extra = [f for f in _files(folder) if f not in listed]
        if extra:
            return f"holds {extra[0]!r}, which lpft did not write there"
        return None
    if _legacy(folder, kind):
        return None
    return f"is not an lpft {kind} folder (no {MARKER} marker)"


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output_folder(path: str | os.PathLike, kind: str, option: str,
                        reads: Iterable[str | os.PathLike] = ()) -> Path:
    """Raise ConfigError (one line naming ``option``) unless lpft may write a ``kind`` folder at ``path``: new, empty
    or its own; writable; not over a folder this command reads (``reads``) nor over or into a run folder."""
    assert kind in KINDS, kind
    path = Path(path)
    shown = f"{option} {str(path)!r}"
    if path.exists() or path.is_symlink():
        if path.is_symlink():
            raise ConfigError(f"{shown} is a symbolic link: expected a new folder or one lpft wrote")
        if not path.is_dir():
            raise ConfigError(f"{shown} is a file, expected a folder (lpft never replaces a file with a folder)")
    real = path.resolve()
    for item in reads:
        read = Path(item).resolve()
        if _inside(read, real):
            what = "is" if read == real else "holds"
            raise ConfigError(f"{shown} {what} {str(item)!r}, which this command reads: choose another folder")
    for up in [real] + list(real.parents):
        if _is_run_folder(up):
            if up == real:
                raise ConfigError(f"{shown} is a run folder: lpft never writes a {kind} folder over a run")
            break
    if path.is_dir():
        why = _ours(path, kind)
        if why:
            raise ConfigError(f"{shown} exists and {why}: expected a new or empty folder, or a previous lpft "
                              f"{kind} to replace")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{shown} is not writable (read-only folder or file system)")
    check_writable_folder(path.parent if str(path.parent) else Path("."), option)
    return path


def check_output_file(path: str | os.PathLike, option: str, reads: Iterable[str | os.PathLike] = (),
                      inside: str | os.PathLike | None = None) -> Path:
    """Raise ConfigError unless lpft may write the file ``path``: not a folder, writable, in a folder that exists or
    can be made, not one of the command's inputs (``reads``), and (``inside``) not leading out of that folder."""
    path = Path(path)
    shown = f"{option} {str(path)!r}"
    if path.is_dir():
        raise ConfigError(f"{shown} is a folder, expected a file name")
    for item in reads:
        item = Path(item)
        if item.exists() and path.exists() and os.path.samefile(item, path) or path.resolve() == item.resolve():
            raise ConfigError(f"{shown} is {str(item)!r}, an input of this command: lpft never overwrites its "
                              "input; choose another file")
    if inside is not None and not _inside(path.resolve(), Path(inside).resolve()):
        raise ConfigError(f"{shown} leads outside {str(inside)!r} (a symbolic link): refusing to write there")
    check_writable_folder(path.parent, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{shown} is not writable (read-only file)")
    return path


@contextmanager
def output_folder(final: str | os.PathLike, kind: str = "report", option: str = "--report",
                  reads: Iterable[str | os.PathLike] = ()):
    """Yield an empty temporary folder beside ``final``; on success it gets its marker and replaces ``final`` (a
    previous lpft folder there is moved aside, then deleted), on error it is removed and ``final`` is left as it was.
    ``final`` is checked (:func:`check_output_folder`) before and again at the swap."""
    final = Path(final)
    reads = list(reads)
    check_output_folder(final, kind, option, reads)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(final) from err
        raise
    try:
        yield tmp
        write_json(tmp / MARKER, {"kind": kind, "version": MARKER_VERSION, "files": _files(tmp)})
        # mkdtemp makes the folder private and some writers (save_pretrained's safetensors) make 0600 files: the
        # folder gets the modes the user's umask gives
        follow_umask(tmp)
        check_output_folder(final, kind, option, reads)  # the work took a while: the folder may have changed
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{time.time_ns()}")
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        # asked before the temporary folder goes (deleting it frees space); library writers such as
        # save_pretrained's safetensors hide the errno, so the free space decides
        full = not isinstance(err, DiskFullError) and is_disk_full(err, final.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise DiskFullError(final) from err
        raise
