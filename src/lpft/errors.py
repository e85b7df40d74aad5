"""Every error lpft raises for bad input or a condition the user can fix, under one base: :class:`LpftError`.

The ``lpft`` command and the study executors catch ``LpftError`` (not a list of classes) and print one line
``lpft: error: ...`` with exit status 2; anything else is a bug and keeps its traceback. This module imports nothing
heavy (no torch), so any layer can raise these errors. The classes are re-exported where they were first defined
(``lpft.config.ConfigError``, ``lpft.data.base.DataError``, ``lpft.model.ModelError``, ``lpft.io.DiskFullError``,
``lpft.run_files.RunFolderError``, ``lpft.methods.finetune.TrainingDiverged``).

>>> from lpft.errors import ConfigError, LpftError
>>> isinstance(ConfigError("--lr must be > 0, got -1"), (LpftError, ValueError))
True
"""

from __future__ import annotations

import errno
import os

#: what a damaged run folder's message tells the user to do
FIX = "remove the run folder and train again"


class LpftError(Exception):
    """A user error: its message is one line naming the file / row / option and what was expected."""


class ConfigError(LpftError, ValueError):
    """An invalid option value (one-line message naming the option and what was expected)."""


class DataError(LpftError, ValueError):
    """Bad or missing data. The message is one line naming the file/row/option and what was expected."""


class ModelError(LpftError, ValueError):
    """A model name/path that cannot be loaded (one-line message)."""


class RunFolderError(DataError):
    """A file of a run folder is missing, truncated or edited (one line naming the file)."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"run file {path} is damaged: {problem}; {FIX}")


class DiskFullError(LpftError, OSError):
    """A write failed because the device is full; ``filename`` is the file lpft was writing. Also an ``OSError``
    (errno ENOSPC), so code that handles I/O errors sees it as one."""

    def __init__(self, path: str | os.PathLike):
        OSError.__init__(self, errno.ENOSPC, "no space left on device", str(path))

    def __str__(self) -> str:
        return f"no space left on device while writing {self.filename}: free space and rerun to resume"


class TrainingDiverged(LpftError):
    """The loss became NaN or infinite: the run stops (no metrics, no NaN written) and names the step."""

    def __init__(self, epoch: int, step: int, value: float, what: str = "loss"):
        super().__init__(f"training diverged at epoch {epoch}, step {step}: {what} {value} — lower --lr")


def reworded(err: LpftError, message: str) -> LpftError:
    """An error of ``err``'s kind carrying ``message`` instead (e.g. a study's summary of a failed job).

    Args:
        err: the original error.
        message: the new one-line message.

    Returns:
        An instance of the nearest class in ``type(err)``'s hierarchy that takes a plain message (``RunFolderError``
        gives a ``DataError``; ``TrainingDiverged`` and ``DiskFullError`` give an ``LpftError``).
    """
    for cls in type(err).__mro__:
        if issubclass(cls, LpftError) and "__init__" not in vars(cls):
            return cls(message)
    return LpftError(message)  # pragma: no cover - LpftError itself has no __init__
