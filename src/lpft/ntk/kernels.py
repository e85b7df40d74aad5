"""eNTK matrices of a classifier f(x) = V phi(x) + b, split as Theta = P + F (paper Prop. 4.1).

* ``P(x, x') = (<phi0(x), phi0(x')> + 1) I_C`` — the pre-train-effective part, from the head's gradients.
* ``F(x, x') = V0 J(x) J(x')^T V0^T`` — the FT-effective part, from the trainable backbone parameters
  (:mod:`lpft.ntk.gradients`; exact over all of them, word embeddings included, unless ``embedding_fraction``).

Layout: every kernel is a float64 ``(N_a * C) x (N_b * C)`` matrix in **sample-major** order: row ``i * C + c`` is
sample ``i``, class ``c``, so the C x C block of a pair is ``K[i*C:(i+1)*C, j*C:(j+1)*C]``. Train kernels are
train x train; test kernels are test x train (the rows a kernel predictor needs).

Example (tiny random BERT)::

    >>> import torch
    >>> from transformers import BertConfig
    >>> from lpft.model import Classifier
    >>> cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    ...                  vocab_size=50)
    >>> clf = Classifier.from_config(cfg, num_labels=2)
    >>> train = {"input_ids": torch.tensor([[2, 7, 9, 3], [2, 5, 3, 0]]),
    ...          "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    >>> k = compute_kernels(clf, train, test={"input_ids": torch.tensor([[2, 8, 3]])})
    >>> k.full_train.shape, k.F_test.shape
    ((4, 4), (2, 4))
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..io import atomic_path
from ..locks import exclusive
from .gradients import DEFAULT_MEMORY_BUDGET, LogitGradients, sample_rows

ORDERING = "sample-major: row i*C + c is sample i, class c"


@dataclass
class Kernels:
    """P and F for train x train (and test x train when a test set was given), float64, sample-major."""

    P_train: np.ndarray
    F_train: np.ndarray
    num_labels: int
    P_test: np.ndarray | None = None
    F_test: np.ndarray | None = None
    features_train: np.ndarray | None = None  # phi0, (N, h)
    features_test: np.ndarray | None = None

    @property
    def full_train(self) -> np.ndarray:
        """The eNTK of the whole model, P + F (train x train)."""
        return self.P_train + self.F_train

    @property
    def full_test(self) -> np.ndarray | None:
        return None if self.F_test is None else self.P_test + self.F_test


def pretrain_kernel(phi_a: np.ndarray, phi_b: np.ndarray, num_labels: int) -> np.ndarray:
    """``P = (phi_a phi_b^T + 1) (x) I_C`` in sample-major order: (N_a*C, N_b*C), float64."""
    gram = np.asarray(phi_a, np.float64) @ np.asarray(phi_b, np.float64).T + 1.0
    return np.kron(gram, np.eye(num_labels))


def _engine(clf, train, test, **options) -> tuple[LogitGradients, int]:
    train_rows = sample_rows(train)
    rows = train_rows + (sample_rows(test) if test is not None else [])
    return LogitGradients(clf, rows, split=len(train_rows), **options), len(train_rows)


def compute_kernels(clf, train, test=None, *, dtype: torch.dtype = torch.float32,
                    memory_budget: int = DEFAULT_MEMORY_BUDGET, embedding_fraction: float | None = None,
                    seed: int = 0, progress: Callable[[int, int, str], None] | None = None,
                    sketch: int | None = None, sketch_seed: int = 0, **engine_options) -> Kernels:
    """P and F of ``clf`` at its current parameters on ``train`` (and ``test`` x ``train``).

    ``train`` / ``test``: an ``Encoded``, a padded batch dict or a list of per-sample dicts (see
    :func:`lpft.ntk.gradients.sample_rows`). ``dtype``: gradient precision (kernels always accumulate in float64).
    ``progress(done, total, group_name)`` is called after each parameter group.
    ``sketch=K``: F is *estimated* from K-dimensional sign projections of the gradients (:mod:`lpft.ntk.sketch`,
    unbiased, signs drawn with ``sketch_seed``); P stays exact. The projections take (N+M)*C*K floats of
    ``memory_budget``, and the engine streams the rows in parts (``row_parts``) so that the rest stays within it
    whatever N: only the projections and the (N*C)^2 result grow with N.
    """
    engine, n = _engine(clf, train, test, dtype=dtype,
                        memory_budget=_engine_budget(memory_budget, sketch, _num_rows(clf, train, test)),
                        embedding_fraction=embedding_fraction, seed=seed, row_parts=sketch is not None,
                        **engine_options)
    acc = _Accumulator(engine, n, sketch, sketch_seed)
    total = len(engine.group_names)
    done = 0
    for block in engine.blocks():  # (not enumerate: its cached result tuple would keep the old block alive)
        acc.add(block)
        name = block.name
        del block  # free its gradients before the next block is made
        done += 1
        if progress is not None:
            progress(done, total, name)
    return _assemble(engine, acc.result(), n)


def _num_rows(clf, train, test) -> int:
    count = len(sample_rows(train)) + (len(sample_rows(test)) if test is not None else 0)
    return count * clf.head.out_features


def _engine_budget(memory_budget: int, sketch: int | None, rows: int) -> int:
    """The engine's share of the budget: all of it, less the sketch's projections (at least a quarter is left)."""
    if sketch is None:
        return memory_budget
    return max(memory_budget // 4, memory_budget - rows * int(sketch) * 4)


class _Accumulator:
    """F summed block by block: the exact Gram (``state`` = the partial F), or a sketch (``state`` = the
    projections, the Gram taken at the end)."""

    def __init__(self, engine: LogitGradients, n: int, sketch: int | None, sketch_seed: int,
                 part_modules: Sequence[str] = ()):
        from .sketch import Sketch

        self.engine, self.n = engine, n
        rows = engine.num_samples * engine.num_labels
        if part_modules and sketch is not None:
            raise ValueError("F over a part of the parameters (part_modules) needs the exact kernel, not a sketch")
        self.part_modules = tuple(part_modules)
        m = n * engine.num_labels
        # F over part_modules' weights only, train x train in batch order (claim 7: LoRA's modules, Prop. 4.4)
        self.part = np.zeros((m, m)) if self.part_modules else None
        if sketch is None:
            if len(engine.parts) > 1:
                raise ValueError("the exact Gram needs every row in each block: build the engine without row_parts")
            self.sketch, self.state = None, np.zeros((rows, n * engine.num_labels))
        else:
            self.sketch = Sketch(sketch, sketch_seed, rows, torch.float64 if engine.dtype == torch.float64
                                 else torch.float32)
            self.state = self.sketch.Y.numpy()

    def load(self, state: np.ndarray) -> None:
        if state.shape != self.state.shape or state.dtype != self.state.dtype:
            raise ValueError(f"saved state {state.shape} {state.dtype}, expected {self.state.shape} "
                             f"{self.state.dtype}")
        self.state[...] = state  # in place: the sketch's Y shares this memory

    def add(self, block) -> None:
        if self.sketch is None:
            gram = block.gram(self.n)
            torch.from_numpy(self.state).add_(gram)
            if self.part is not None and in_part(block.name, self.part_modules):
                self.part += gram[: self.part.shape[0]].numpy()  # the train samples come first in batch order
        else:
            self.sketch.add(block)

    def result(self) -> np.ndarray:
        """F in batch order, (rows, n*C) float64; a sketch's projections are released (the state is then gone)."""
        if self.sketch is None:
            return self.state
        gram = self.sketch.gram(self.n, self.engine.num_labels).numpy()
        self.sketch = self.state = None  # type: ignore[assignment]  # (N+M)*C*K floats no longer needed
        return gram


def in_part(group: str, modules: Sequence[str]) -> bool:
    """Whether a gradient group (``<stage>.<module>.weight`` or a slice ``...weight[a:b]``) is the weight of one
    of ``modules`` (matched on the module's last name, as PEFT's ``target_modules`` are).

    >>> in_part("encoder.layer.0.attention.self.query.weight[0:16]", ("query", "value"))
    True
    >>> in_part("encoder.layer.0.attention.self.key.weight", ("query", "value"))
    False
    """
    base = group.split("[")[0]
    return any(base.endswith(f".{m}.weight") or base == f"{m}.weight" for m in modules)


def _assemble(engine: LogitGradients, K: np.ndarray, n: int) -> Kernels:
    """Kernels in sample order from F accumulated in the engine's batch order."""
    K = engine.to_sample_order(K, n)
    C, phi = engine.num_labels, engine.features
    m = n * C
    test = engine.num_samples > n
    # views of one array, not copies: at N in the thousands each copy is hundreds of MB
    return Kernels(P_train=pretrain_kernel(phi[:n], phi[:n], C), F_train=K[:m], num_labels=C,
                   P_test=pretrain_kernel(phi[n:], phi[:n], C) if test else None,
                   F_test=K[m:] if test else None,
                   features_train=phi[:n].copy(), features_test=phi[n:].copy() if test else None)


# ----------------------------------------------------------------------------------------------------------------
# resumable computation into a folder


def _atomic(path: Path, write: Callable[[str], object]) -> None:
    """Write through ``lpft.io.atomic_path``: a crash never leaves a torn file."""
    with atomic_path(path) as tmp:
        write(str(tmp))


def _signature(clf, rows, n: int, options: dict) -> str:
    """Identity of a computation: parameter values (and which are trainable), token ids of every sample, train
    size and options."""
    h = hashlib.sha256()
    for name, p in clf.named_parameters():
        h.update(f"{name}:{p.requires_grad}".encode())
        h.update(p.detach().to(torch.float64).cpu().numpy().tobytes())
    for row in rows:
        for key in sorted(row):
            h.update(key.encode())
            h.update(row[key].numpy().astype(np.int64).tobytes())
    h.update(json.dumps({"n_train": n, **options}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def compute_kernels_to_dir(clf, train, test, folder: str | os.PathLike, *,
                           train_indices: Sequence[int] | None = None, test_indices: Sequence[int] | None = None,
                           dtype: torch.dtype = torch.float32, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                           embedding_fraction: float | None = None, seed: int = 0,
                           progress: Callable[[int, int, str], None] | None = None,
                           lock_root: str | os.PathLike | None = None, sketch: int | None = None,
                           sketch_seed: int = 0, state_seconds: float = 300.0, part_modules: Sequence[str] = (),
                           **engine_options) -> Kernels:
    """Like :func:`compute_kernels`, saved to ``folder`` and resumable after an interruption.

    Files: ``meta.json`` (ordering, sample indices, options, parameter groups and how many are done),
    ``P_train.npy``, ``F_train.npy``, ``P_test.npy``, ``F_test.npy``, ``features_*.npy`` once complete. While
    running, ``state.npz`` holds the partial sum of F and the number of finished groups; it is rewritten
    atomically after every group, so a rerun with the same model, samples and options continues from there
    (a different model or options raise ``ValueError`` rather than mixing two computations).
    ``train_indices`` / ``test_indices`` are recorded (default ``0..N-1``) to tie rows to dataset examples.
    One process at a time per folder (``lpft.locks``; the lock file lies under ``lock_root``/.locks when given,
    else beside the folder): a second one waits, then reads the finished kernels.
    ``sketch`` / ``sketch_seed``: see :func:`compute_kernels` (recorded in ``meta.json``'s options); the state of a
    sketch (its projections, (N+M)*C*K floats) is saved at most every ``state_seconds``, not after every group.
    SIGTERM (in the main thread) ends the computation like Ctrl-C: no temporary file is left behind, and a rerun
    resumes from the last saved state.
    ``part_modules`` (e.g. ``("query", "value")``, the modules LoRA adapts; exact kernels only): also sum F over
    only those modules' weights and save its train x train block as ``F_qv_train.npy`` (claim 7 compares F of LoRA
    with F of FT restricted to the matrices LoRA adapts, Prop. 4.4). No extra gradients: the blocks are summed twice.
    """
    folder = Path(folder)
    with exclusive(folder, f"waiting for another process computing the eNTK in {folder}", root=lock_root), \
            terminate_as_interrupt():
        return _compute_kernels_locked(clf, train, test, folder, train_indices, test_indices, dtype, memory_budget,
                                       embedding_fraction, seed, progress, sketch, sketch_seed, state_seconds,
                                       engine_options, tuple(part_modules))


@contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` (as SIGINT does), so ``atomic_path`` removes its
    temporary file and locks are released; outside the main thread (where Python cannot set handlers) nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _compute_kernels_locked(clf, train, test, folder: Path, train_indices, test_indices, dtype, memory_budget,
                            embedding_fraction, seed, progress, sketch, sketch_seed, state_seconds,
                            engine_options, part_modules=()) -> Kernels:
    folder.mkdir(parents=True, exist_ok=True)
    meta_path, state_path = folder / "meta.json", folder / "state.npz"
    options = {"dtype": str(dtype), "memory_budget": int(memory_budget), "embedding_fraction": embedding_fraction,
               "seed": seed, **engine_options}
    if part_modules:  # only then: folders computed without a part keep their signature
        options["part_modules"] = list(part_modules)
    if embedding_fraction is not None:  # entries since 0.2 (whole rows before): never resume a folder of rows
        options["embedding_subsampling"] = "entries"
    if sketch is not None:  # (absent for exact kernels: folders written before sketches existed still resume)
        options.update(sketch=int(sketch), sketch_seed=int(sketch_seed), sketch_kind="block sign projection")
    train_rows = sample_rows(train)
    rows = train_rows + (sample_rows(test) if test is not None else [])
    n = len(train_rows)
    signature = _signature(clf, rows, n, options)
    old = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if old is not None and old.get("signature") != signature:
        raise ValueError(f"{folder} holds a kernel computation for another model, sample set or options; "
                         "use a new folder")
    if old is not None and old.get("complete"):
        return load_kernels(folder)
    engine = LogitGradients(clf, rows, split=n, dtype=dtype,
                            memory_budget=_engine_budget(memory_budget, sketch, len(rows) * clf.head.out_features),
                            embedding_fraction=embedding_fraction, seed=seed, row_parts=sketch is not None,
                            **engine_options)
    C = engine.num_labels
    meta = {"ordering": ORDERING, "num_labels": C,
            "train_indices": list(map(int, train_indices)) if train_indices is not None else list(range(n)),
            "test_indices": (list(map(int, test_indices)) if test_indices is not None
                             else list(range(engine.num_samples - n))),
            "options": options, "signature": signature, "groups": engine.group_names, "done": 0,
            "complete": False}
    acc = _Accumulator(engine, n, sketch, sketch_seed, part_modules)
    if old is not None:
        if old.get("groups") != meta["groups"]:
            raise ValueError(f"{folder}: the parameter groups differ from the interrupted run; use a new folder")
        if state_path.exists():
            with np.load(state_path) as st:
                acc.load(st["K"])
                meta["done"] = int(st["done"])
                if acc.part is not None:
                    acc.part[...] = st["K_part"]

    def save_meta() -> None:
        _atomic(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1, allow_nan=False)))

    save_meta()
    total = len(engine.group_names)
    done = meta["done"]
    saved = time.monotonic()
    for block in engine.blocks(skip=engine.group_names[:done]):
        acc.add(block)
        name = block.name
        del block  # free its gradients before the next block is made
        done += 1

        def write_state(tmp, done=done):
            with open(tmp, "wb") as fh:
                extra = {"K_part": acc.part} if acc.part is not None else {}
                np.savez(fh, K=acc.state, done=np.int64(done), **extra)
        if sketch is None or time.monotonic() - saved >= state_seconds:
            _atomic(state_path, write_state)  # the state file is the truth for resuming; meta mirrors it
            meta["done"] = done
            save_meta()
            saved = time.monotonic()
        if progress is not None:
            progress(done, total, name)
    kernels = _assemble(engine, acc.result(), n)
    for name in ("P_train", "F_train", "P_test", "F_test", "features_train", "features_test"):
        value = getattr(kernels, name)
        if value is not None:
            _atomic(folder / f"{name}.npy", partial(_save_npy, value=value))
    if acc.part is not None:
        # batch order -> sample order: rows and columns both index the train samples, the first n in batch order
        C = engine.num_labels
        perm = (engine.order[:n, None] * C + np.arange(C)).reshape(-1)
        F_part = np.empty_like(acc.part)
        F_part[perm[:, None], perm[None, :]] = acc.part
        _atomic(folder / "F_qv_train.npy", partial(_save_npy, value=F_part))
    meta["complete"] = True
    save_meta()
    state_path.unlink(missing_ok=True)
    return kernels


def _save_npy(path: str, value: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, value)


def load_kernels(folder: str | os.PathLike) -> Kernels:
    """Read a folder written by :func:`compute_kernels_to_dir` (complete)."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    if not meta.get("complete"):
        raise ValueError(f"{folder}: kernel computation not complete ({meta.get('done')}/{len(meta['groups'])} "
                         "groups); rerun compute_kernels_to_dir to resume")

    def get(name):
        path = folder / f"{name}.npy"
        return np.load(path) if path.exists() else None
    return Kernels(P_train=get("P_train"), F_train=get("F_train"), num_labels=meta["num_labels"],
                   P_test=get("P_test"), F_test=get("F_test"), features_train=get("features_train"),
                   features_test=get("features_test"))
