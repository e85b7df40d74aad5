"""Report folders appear whole or not at all: built under a temporary name, then swapped in."""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..io import follow_umask


@contextmanager
def report_folder(final: str | Path):
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final`` (an older report there is
    moved aside first and then deleted), on error it is removed and ``final`` is left as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        # mkdtemp makes the folder private and some writers (save_pretrained's safetensors) make 0600 files: the
        # report gets the modes the user's umask gives
        follow_umask(tmp)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{time.time_ns()}")
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
