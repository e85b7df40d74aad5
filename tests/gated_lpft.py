"""``python tests/gated_lpft.py ARGS``: the ``lpft`` CLI, with fine-tuning paused after its first epoch (tests only).

After the first epoch's resume state is saved (callers pass ``--checkpoint-every 0``: a checkpoint every epoch) (the
run folder holds ``state/`` and the run lock is held), the process touches ``$LPFT_TEST_GATE.reached`` and waits
until the file ``$LPFT_TEST_GATE`` exists (at most 120 s).
Concurrency tests use it to make "the second process arrives while the first is mid-run" certain rather than a
matter of timing on a loaded machine. Everything else is the real CLI.
"""

import os
import sys
import time
from pathlib import Path

import lpft.methods.finetune as finetune_module
from lpft.cli import main

GATE = Path(os.environ["LPFT_TEST_GATE"])
_save_checkpoint = finetune_module._save_checkpoint


def _gated_save_checkpoint(*args, **kwargs):
    _save_checkpoint(*args, **kwargs)
    Path(f"{GATE}.reached").touch()
    deadline = time.monotonic() + 120
    while not GATE.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


finetune_module._save_checkpoint = _gated_save_checkpoint
sys.exit(main(sys.argv[1:]))
