"""Pretrained models and tokenizers kept in memory across the runs of one process (a study's executor).

A study runs many jobs on the same pretrained model in one long-lived process (the local executor, or one Ray actor
per slot). Inside :func:`keep_pretrained`, ``lpft.model.hub.load_backbone`` reads a model's weights from disk (or the
hub) once and gives every later call a **deep copy of the pristine in-memory backbone**: each run starts from
exactly the pretrained weights, never from an object another run trained (the stored backbone is never handed
out). Tokenizers are read-only in lpft (the pad token is fixed when loading), so ``load_tokenizer`` gives every run
the same one. Outside :func:`keep_pretrained` both load from disk every time, as before.

The cache is keyed by the loader, its arguments and the model files' identity (path, sizes, modification times:
``model_fingerprint``), so a model folder rewritten during a study is read again. A deep copy consumes no random
numbers and copies every parameter and buffer exactly, so runs are bit-identical with and without the cache (tested).

    >>> with keep_pretrained():
    ...     active()
    True
    >>> active()
    False
"""

from __future__ import annotations

import copy
import functools
import threading
from contextlib import contextmanager

_LOCK = threading.RLock()
_STORE: dict | None = None  # a process-wide dict while some keep_pretrained() is open (Ray runs actor methods in
# a thread of its own, so a context variable set where the actor starts would not be seen by its jobs)


def active() -> bool:
    """Whether loaders keep what they load (inside :func:`keep_pretrained`)."""
    return _STORE is not None


@contextmanager
def keep_pretrained():
    """Keep loaded backbones and tokenizers for the body's duration (nested calls share the outer store); what was
    kept is dropped when the outermost body ends."""
    global _STORE
    with _LOCK:
        outer = _STORE
        if outer is None:
            _STORE = {}
    try:
        yield
    finally:
        with _LOCK:
            if outer is None:
                _STORE = None


def kept(fresh_copy: bool):
    """Decorate a loader ``load(name_or_path, *args)`` so that inside :func:`keep_pretrained` it loads once per
    model and arguments; ``fresh_copy``: every call gets a deep copy of the stored object (models: runs train
    them), else the stored object itself (read-only objects: tokenizers)."""

    def decorate(load):
        @functools.wraps(load)
        def loader(name_or_path: str, *args, **kwargs):
            if _STORE is None:
                return load(name_or_path, *args, **kwargs)
            from .hub import model_fingerprint

            key = (load.__qualname__, name_or_path, model_fingerprint(name_or_path), args,
                   tuple(sorted(kwargs.items())))
            with _LOCK:
                store = _STORE
                if store is None:  # the study ended meanwhile (another thread)
                    return load(name_or_path, *args, **kwargs)
                if key not in store:
                    store[key] = load(name_or_path, *args, **kwargs)  # errors propagate, nothing is kept
                return copy.deepcopy(store[key]) if fresh_copy else store[key]

        return loader

    return decorate


def preload(models) -> None:
    """Read each model's tokenizer and weights into the open store now (a Ray actor's start, before its first job,
    in parallel with the other slots). A model that fails to load is skipped: the job that uses it reports the error
    in one line, as it would without the store."""
    from .hub import load_backbone, load_tokenizer

    if _STORE is None:
        return
    for name in dict.fromkeys(models):
        try:
            load_tokenizer(name)
            load_backbone(name)
        except Exception:  # noqa: BLE001 - reported by the job that needs the model
            continue
