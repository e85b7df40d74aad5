"""Silence third-party chatter that users cannot act on; called by the ``lpft`` command and by each study worker
process (a Ray actor), so both print the same lines."""

from __future__ import annotations

import os


def quiet_libraries() -> None:
    """Turn off tokenizers' fork warning, PEFT's warnings, transformers' FutureWarnings, logging and progress bars."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", module="peft")
    # deprecation notices from inside transformers (e.g. when PEFT wraps a model) are not actionable for users
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
