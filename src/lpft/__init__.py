"""lpft: linear probing then fine-tuning of language models, with NTK analysis.

The Python API in two calls (the ``lpft`` CLI does the same from a shell)::

    run = lpft.train(task="files", train_file="reviews.csv", method="lp-ft")    # any `lpft train` option
    run = lpft.load_run("runs/files/lp-ft/...")                                # a finished run folder
    run.predict(["a great film"]), run.predict_proba([...], calibrated=True), run.features([...])

Both return an :class:`lpft.inference.Predictor`. The heavy modules load on first use, so ``import lpft`` is quick.
"""

from __future__ import annotations


def load_run(path, device: str | None = None, batch_size: int | None = None, progress: bool = False):
    """The finished run folder ``path`` as a :class:`lpft.inference.Predictor`: ``.predict(texts)`` (label names),
    ``.predict_proba(texts, calibrated=False)`` (N, C), ``.features(texts)`` (N, h), ``.config``, ``.metrics``.

    Texts are strings, or ``(text, text_pair)`` tuples for sentence-pair tasks. ``device`` defaults to cuda if
    available; ``batch_size`` to the run's evaluation batch size.
    """
    from .inference import load_run as _load_run

    return _load_run(path, device=device, batch_size=batch_size, progress=progress)


def train(out: str = "runs", data_dir: str | None = None, cache_dir: str | None = "default",
          device: str | None = None, **options):
    """Train (or reuse, or resume) one run, exactly as ``lpft train`` with the same options and defaults, and return
    it as a :class:`lpft.inference.Predictor` (its folder is ``.path``).

    ``options`` are the fields of :class:`lpft.methods.config.RunConfig`, named like the CLI options with ``_``:
    ``task``, ``method``, ``model``, ``seed``, ``epochs``, ``train_file``, ``text_columns``, ... (``lpft train
    --help`` lists them all). ``out``, ``data_dir``, ``cache_dir`` (``None`` disables the feature cache) and
    ``device`` are where data comes from and results go, as the CLI's ``--out``, ``--data-dir``, ``--cache-dir``
    and ``--device``. An unknown option is a TypeError naming it; a bad value a ConfigError, as on the CLI.
    """
    import dataclasses

    from .methods.config import RunConfig
    from .runs import train as train_run

    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"lpft.train: unknown option {unknown[0]!r}; expected RunConfig fields: "
                        f"{', '.join(sorted(known))}")
    folder = train_run(RunConfig(**options), out=out, data_dir=data_dir, cache_dir=cache_dir, device=device)
    return load_run(folder, device=device)


__all__ = ["load_run", "train"]
