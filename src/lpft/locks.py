"""Inter-process locks for what several processes may write at once: run folders and the shared caches.

Two ``lpft`` processes (or study workers) on the same run folder, the same feature / probe cache entry or the same
eNTK folder must not compute it twice or trample each other's files: the second one waits for the first, then
reuses its result. The lock is an operating-system ``flock`` on a small lock file, taken through :mod:`filelock`:

* it dies with its holder: a process killed by ``SIGKILL``, an out-of-memory kill or a crashed machine's local
  process releases it with its open files, so a killed run never blocks the next one (which then resumes it);
* it lives outside the protected folder: run folders and eNTK folders are locked through
  ``<out>/.locks/<task>/<method>/<name>.lock`` (the ``root`` form of :func:`lock_path`), so a finished run folder
  holds only results and ``<out>/<task>/<method>/`` lists only run folders; a cache entry ``<dir>/<file>`` is locked
  through the hidden ``<dir>/.<file>.lock`` beside it. An empty lock file stays after release on purpose: deleting
  it would let a waiter lock an unlinked file while a newcomer locks a fresh one, and both would proceed.

Shared folders on a cluster: ``flock`` works across machines on NFSv4 and on NFSv3 with ``lockd`` (Linux clients
map it to NFS byte-range locks), and on Lustre / BeeGFS only when mounted with flock support (Lustre ``-o flock``).
A lock held by a machine that crashes (rather than a process that dies) is freed only when the server's lease
expires (NFSv4: about 90 s). Where a filesystem has no ``flock`` at all, :mod:`filelock` falls back to a lock
file that names its holder's PID; a holder killed there can leave it behind — delete the ``.lock`` file by hand.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from filelock import FileLock, Timeout

T = TypeVar("T")


def lock_path(path: str | Path, root: str | Path | None = None) -> Path:
    """The lock file guarding ``path`` (a file or a folder).

    With ``root`` (a folder above ``path``): ``<root>/.locks/<path relative to root>.lock``, out of the way of
    anything that lists ``path``'s folder. Without (or when ``path`` is not under ``root``): ``.<name>.lock``
    beside ``path``.
    """
    path = Path(path)
    if root is not None:
        try:
            return Path(root) / ".locks" / f"{path.relative_to(root)}.lock"
        except ValueError:
            pass
    return path.parent / f".{path.name}.lock"


@contextmanager
def exclusive(path: str | Path, waiting: str | None = None, notify: Callable[[str], None] | None = None,
              root: str | os.PathLike | None = None) -> Iterator[None]:
    """Hold the lock of ``path`` (see :func:`lock_path` for ``root``) for the ``with`` block; wait (without limit)
    while another process holds it.

    ``waiting`` is printed once, through ``notify`` (default ``tqdm.write``: one line, progress bars intact), when
    the lock is busy. The lock is not re-entrant across ``exclusive`` calls on the same path in one process (that
    would wait for itself), so take each lock in one place only.
    """
    target = lock_path(path, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting:
            if notify is None:
                from tqdm.auto import tqdm

                notify = tqdm.write
            notify(waiting)
        lock.acquire()  # blocks; the holder's exit (clean or killed) releases it
    try:
        yield
    finally:
        lock.release()


def compute_once(path: str | Path, compute: Callable[[], T], load: Callable[[Path], T],
                 save: Callable[[Path, T], None], what: str = "this") -> T:
    """``load(path)`` if it exists, else ``compute()`` then ``save(path, value)`` — once across processes.

    For cache entries that several processes may want at the same moment (the LP features of a split, a fitted
    probe): the first computes under the entry's lock, the others wait and read its file. ``save`` must write
    atomically (``lpft.io``), so readers that skip the lock never see a torn file.
    """
    path = Path(path)
    if path.exists():
        return load(path)
    with exclusive(path, f"waiting for another process computing {what} ({path})"):
        if path.exists():  # computed while we waited
            return load(path)
        value = compute()
        save(path, value)
        return value
