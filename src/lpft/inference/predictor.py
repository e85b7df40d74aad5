"""A finished run as a predictor: labels, probabilities (optionally temperature-scaled) and features for new texts.

The run folder is all it needs: the trained model comes back from ``model.safetensors`` (``RunRecord.classifier``,
LoRA runs PEFT-wrapped so the logits match the run's saved ones exactly), texts are tokenised exactly as training
did (the run's tokenizer and ``max_length``; a ``(text, text_pair)`` tuple is a tokenizer pair, as for CB or RTE),
and the temperature is the one ``lpft calibrate`` fits on the run's validation logits.

Inputs are processed in chunks of ``CHUNK_BATCHES`` batches: memory stays bounded by a chunk's tokens however long
the input, while batches inside a chunk are still formed by length (little padding) and results come back in input
order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy.special import softmax
from tqdm.auto import tqdm

from ..analysis.calibration import fit_temperature
from ..analysis.run_features import final_head
from ..data import Example
from ..data.batching import encode
from ..model import extract, load_tokenizer, resolve_device
from ..runs import RunRecord

#: batches per tokenised chunk (see the module docstring)
CHUNK_BATCHES = 8

Text = str | tuple[str, str] | Example


def as_examples(texts: Iterable[Text]) -> list[Example]:
    """Strings, ``(text, text_pair)`` tuples or :class:`Example` objects as examples (label 0 where unknown)."""
    if isinstance(texts, (str, tuple)):
        raise TypeError("expected a list of texts (str, or (text, text_pair) tuples), not a single "
                        f"{type(texts).__name__}: wrap it in a list")
    out = []
    for i, item in enumerate(texts):
        if isinstance(item, Example):
            out.append(item)
        elif isinstance(item, str):
            out.append(Example(item, 0))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            out.append(Example(item[0], 0, item[1]))
        else:
            raise TypeError(f"text {i}: expected a str or a (text, text_pair) pair of str, got {item!r:.60}")
    return out


class Predictor:
    """The trained classifier of one finished run folder (what :func:`lpft.load_run` returns).

    ``predict(texts)`` gives label names, ``predict_proba(texts, calibrated=False)`` an (N, C) array whose columns
    follow ``labels``, ``features(texts)`` the (N, h) features phi(x) the head reads. ``config`` is the run's
    resolved :class:`~lpft.methods.config.RunConfig`, ``metrics`` its ``metrics.json``, ``temperature`` the
    fitted T. The model and tokenizer are loaded on first use, on ``device`` (default: cuda if available).
    """

    def __init__(self, path: str | Path, device: str | None = None, batch_size: int | None = None,
                 progress: bool = False):
        self.record = RunRecord(path)
        self.path = self.record.path
        self.config = self.record.config
        self.metrics = self.record.metrics
        self.labels: tuple[str, ...] = tuple(self.record.data["labels"])
        self.device = resolve_device(device)
        self.batch_size = batch_size or self.config.eval_batch_size
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be > 0, got {self.batch_size}")
        self.progress = progress
        self._model = self._tokenizer = self._temperature = self._final_head = None

    def __repr__(self) -> str:
        c = self.config
        return f"Predictor({str(self.path)!r}: {c.method} on {c.task}, {c.model}, labels {list(self.labels)})"

    @property
    def pooling(self) -> str:
        """Which token states phi(x) pools: "first" for encoders (decoder runs may record "last" or "mean")."""
        return getattr(self.config, "pooling", None) or "first"

    @property
    def model(self):
        if self._model is None:
            self._model = self.record.classifier().to(self.device)
        return self._model

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config.model)
        return self._tokenizer

    @property
    def temperature(self) -> float:
        """T fitted on the run's validation logits: the same fit, and so the same T, as ``lpft calibrate``."""
        if self._temperature is None:
            self._temperature = fit_temperature(*self.record.logits("validation"))
        return self._temperature

    def _run(self, texts: Iterable[Text], want_features: bool) -> np.ndarray:
        examples = as_examples(texts)
        chunk = self.batch_size * CHUNK_BATCHES
        parts = []
        with tqdm(total=len(examples), desc="predict", unit="text", disable=not self.progress or not examples,
                  leave=False) as bar:
            for start in range(0, len(examples), chunk):
                enc = encode(self.tokenizer, examples[start:start + chunk], self.config.max_length)
                # the run's precision (bf16 runs saved their logits from bf16 passes)
                feats = extract(self.model, enc, self.batch_size,
                                precision=getattr(self.config, "precision", None) or "fp32")
                parts.append(feats if want_features else self._head(feats))
                bar.update(len(enc))
        if not parts:
            width = self.model.head.in_features if want_features else len(self.labels)
            return np.zeros((0, width), dtype=np.float32 if want_features else np.float64)
        return np.concatenate(parts)

    def _head(self, feats: np.ndarray) -> np.ndarray:
        # the run's final head in float64, as its saved logits and the analyses have it: an LP head is solved in
        # float64 and its weights can be large enough that a float32 copy moves probabilities by ~1e-6
        if self._final_head is None:
            self._final_head = [a.astype(np.float64) for a in final_head(self.record)]
        weight, bias = self._final_head
        return feats.astype(np.float64) @ weight.T + bias

    def logits(self, texts: Sequence[Text]) -> np.ndarray:
        """Logits (N, C), float64, in input order."""
        return self._run(texts, want_features=False)

    def probabilities(self, logits: np.ndarray, calibrated: bool = False) -> np.ndarray:
        """softmax(logits / T) with the fitted T if ``calibrated``, else T = 1."""
        return softmax(np.asarray(logits, dtype=np.float64) / (self.temperature if calibrated else 1.0), axis=1)

    def predict_proba(self, texts: Sequence[Text], calibrated: bool = False) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of ``labels``; ``calibrated`` divides by T first."""
        return self.probabilities(self.logits(texts), calibrated)

    def predict(self, texts: Sequence[Text]) -> list[str]:
        """The predicted label name of each text (temperature scaling never changes it)."""
        return [self.labels[i] for i in self.logits(texts).argmax(axis=1)]

    def read(self, path: str | Path, text_columns: Sequence[str] | None = None, label_column: str | None = None):
        """A file's examples and label ids for this run, read as ``lpft predict FILE`` and ``lpft evaluate --ood
        FILE`` read it (:func:`lpft.inference.inputs.read_inputs`): the run's task release format, its own columns
        or ``text`` / ``label``; labels as names or ids (``labels`` is None without a label column).

        >>> examples, labels = run.read("DATA/WiC/val.jsonl")            # doctest: +SKIP
        >>> run.predict(examples)                                        # doctest: +SKIP
        """
        from .inputs import read_inputs

        return read_inputs(self.record, path, tuple(text_columns) if text_columns else None, label_column)

    def features(self, texts: Sequence[Text]) -> np.ndarray:
        """phi(x) (N, h), float32: the pooled last-layer states the head reads."""
        return self._run(texts, want_features=True)


def load_run(path: str | Path, device: str | None = None, batch_size: int | None = None,
             progress: bool = False) -> Predictor:
    """A :class:`Predictor` for the finished run folder ``path`` (FileNotFoundError if it is not one)."""
    return Predictor(path, device, batch_size, progress)
