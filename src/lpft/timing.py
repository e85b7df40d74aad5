"""Where a run's wall time goes: named phases that add up to it, written to the run folder as ``timing.json``.

``lpft.runs.train`` opens a :class:`PhaseTimer` for the run; code anywhere below it marks its work with
``with phase("eval"): ...``, which is free when no timer is open (tests, the Python API's helpers). Phases nest: the
inner phase's time is taken out of the outer one, so every second is counted once and the phases plus ``other``
(what no phase claimed: progress bars, batch collation, Python between phases) equal the wall time exactly.

On a GPU the phases are not synchronised (that would slow training down): the training loop reads every step's loss
with ``.item()``, which waits for the step, so the step phases stay close to the truth; ``eval`` and ``features``
end with a copy to the CPU, which waits too.

    >>> timer = PhaseTimer()
    >>> with timer.phase("eval"):
    ...     with timer.phase("write"):
    ...         pass
    >>> summary = timer.summary()
    >>> abs(sum(summary["phases"].values()) - summary["wall_seconds"]) < 1e-9
    True
"""

from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager, nullcontext

#: The phases of a run, in the order they happen. ``forward_backward``: a training step's forward pass, loss and
#: backward pass; ``optimizer``: gradient clipping, the AdamW update and the scheduler; ``eval``: validation after
#: each epoch and the final validation / test logits; ``features``: pre-trained features for the linear probe (from
#: the cache or computed); ``probe``: fitting the linear probe; ``checkpoint``: resume state and best weights.
PHASES = ("tokenise", "model", "features", "probe", "forward_backward", "optimizer", "eval", "checkpoint", "write")

_ACTIVE: contextvars.ContextVar[PhaseTimer | None] = contextvars.ContextVar("lpft_phase_timer", default=None)


class PhaseTimer:
    """Seconds per phase since the timer was made; see the module docstring."""

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._open: list[list] = []  # [phase, since] per open phase, innermost last

    @contextmanager
    def phase(self, name: str):
        if name not in self.seconds:
            raise ValueError(f"unknown phase {name!r}: expected one of {', '.join(PHASES)}")
        now = time.perf_counter()
        if self._open:  # pause the enclosing phase
            outer = self._open[-1]
            self.seconds[outer[0]] += now - outer[1]
        self._open.append([name, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            inner, since = self._open.pop()
            self.seconds[inner] += now - since
            if self._open:
                self._open[-1][1] = now

    def summary(self, wall_seconds: float | None = None) -> dict:
        """``{"wall_seconds": w, "phases": {phase: s, ..., "other": w - sum}}``; the phases sum to ``w``."""
        wall = time.perf_counter() - self.started if wall_seconds is None else wall_seconds
        phases = dict(self.seconds)
        phases["other"] = wall - sum(phases.values())
        return {"wall_seconds": wall, "phases": phases}

    @contextmanager
    def active(self):
        """Make this the timer that :func:`phase` reports to, for the duration of the block."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def phase(name: str):
    """Count the block as ``name`` in the open run's timer; does nothing when none is open."""
    timer = _ACTIVE.get()
    return timer.phase(name) if timer is not None else nullcontext()
