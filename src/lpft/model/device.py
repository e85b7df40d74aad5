"""Device and precision: the one rule that picks and checks ``--device``, and what ``--precision`` does.

Every command checks its ``--device`` with :func:`resolve_device` before any work, so a missing GPU is one line and
exit 2 rather than a CUDA error mid-run. ``--precision bf16`` is autocast around the forward passes, never a cast of
the weights (:func:`autocast`).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..options import PRECISIONS


def resolve_device(device: str | None = None) -> str:
    """The one device rule of lpft: ``None`` → ``cuda`` when available, else ``cpu``; a given device is checked.

    Raises ConfigError (one line, naming ``--device``) for a name torch does not know, a device this build or
    machine lacks (``cuda`` on a CPU-only build, ``cuda:3`` with two GPUs, ``mps`` off Apple silicon) or a device
    type lpft cannot train on. Every command checks ``--device`` with this before any work.
    """
    if device is None or str(device).strip() in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(str(device).strip())
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a torch device: expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this PyTorch is a CPU-only build" if torch.version.cuda is None
                   else f"no CUDA GPU is visible (PyTorch built for CUDA {torch.version.cuda})")
            raise ConfigError(f"--device {device!r}: {why}; use --device cpu or leave --device unset")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"--device {device!r}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
        return str(dev)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {device!r}: MPS is not available on this machine; use --device cpu")
        return str(dev)
    raise ConfigError(f"--device {device!r}: lpft runs on cpu, cuda, cuda:N or mps, not {dev.type}")


def autocast(device: torch.device | str, precision: str = "fp32"):
    """The autocast context of ``precision`` on ``device``: nothing for fp32, bfloat16 autocast for bf16.

    Autocast (not ``model.to(bfloat16)``) keeps the weights, the optimiser state and the AdamW update in fp32 and
    runs matmuls in bf16; bf16 has fp32's exponent range, so no loss scaling is needed.
    """
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
