"""Run records: ``train(cfg)`` turns a :class:`RunConfig` into a self-describing run folder; ``RunRecord`` reads it.

A run folder (``<out>/<task>/<method>/<model>-seed<seed>-<key>/``) holds::

    config.json        the resolved RunConfig + the data actually used (sizes, content fingerprints)
    environment.json   package versions, Python, platform, git revision, command line
    heads/             init / lp / start / ft .safetensors: the head at initialisation, after LP,
                       at the start of FT (after any norm rescaling) and after FT (weight (C, h), bias (C,))
    model.safetensors  the best epoch's parameters that differ from the pre-trained backbone: the head for LP,
                       everything for FT / LP-FT, LoRA factors + head for LoRA / LP-LoRA
    history.json       one row per epoch: train loss, validation metrics, head norms, mean logit norm, seconds
    steps.json         every ``log_every`` steps: loss, head weight / bias norm, mean logit norm of the batch
    logits/            validation.npy, test.npy (N, C) and validation_labels.npy, test_labels.npy
    timing.json        where the seconds of metrics.json went: {"wall_seconds": s, "phases": {tokenise, model,
                       features, probe, forward_backward, optimizer, eval, checkpoint, write, other}} (lpft.timing;
                       the phases add up to the wall time; of the process that finished the run, "resumed" if any)
    features/          last-epoch-test.npy: phi(x) of the test split after the *last* epoch (FT methods; claim 2
                       compares feature change at a fixed epoch, not only at the best one); feature caches of analysis
    metrics.json       {"val": {...}, "test": {...}, "best_epoch": k, "seconds": s} — written last: its presence
                       marks a finished run, which is then reused instead of recomputed
    state/             resume state while training, written every --checkpoint-every seconds and on SIGINT /
                       SIGTERM (removed when finished)

Every file is written atomically. Validation of options, data and model happens before the folder is created, so
bad input leaves nothing behind. ``RunRecord`` checks every file it reads (``lpft.run_files``): a truncated or edited
file is a one-line :class:`RunFolderError` naming it.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import ConfigError
from .data import Task, compute_metrics, files_task, get_task
from .data.base import fingerprint
from .data.batching import Encoded, encode
from .data.subsets import check_splits, label_counts
from .errors import RunFolderError as RunFolderError  # re-exported (defined in lpft.errors)
from .io import environment_info, save_array, save_tensors, write_json
from .keys import run_folder as run_folder  # re-exported (defined in lpft.keys)
from .locks import exclusive, lock_path
from .methods.config import RunConfig
from .methods.finetune import finetune, load_trainable_state, trainable_state
from .methods.lora import apply_lora, merge_lora
from .methods.lp import linear_probe, pretrained_features, pretrained_features_key, set_head
from .model import Classifier, extract, init_head, initializer_range, load_tokenizer, max_input_tokens, resolve_device
from .run_files import (
    check_config,
    check_head,
    check_history,
    check_logits,
    check_metrics,
    check_model_header,
    check_model_state,
    check_one_head,
    check_steps,
)
from .timing import PhaseTimer, phase
from .workspace import Workspace

HEAD_STAGES = ("init", "lp", "start", "ft")


def load_task(cfg: RunConfig, data_dir: str | None = None) -> Task:
    if cfg.task == "files":
        return files_task(cfg.train_file, cfg.validation_file, cfg.test_file,
                          text_columns=tuple(c.strip() for c in cfg.text_columns.split(",")),
                          label_column=cfg.label_column, split_order=cfg.subset_order)
    return get_task(cfg.task, data_dir)


@dataclass
class Prepared:
    """Everything a run needs before training: the task, the tokenizer and the three encoded splits."""

    task: Task
    tokenizer: object
    splits: dict[str, Encoded]
    data_info: dict


def prepare(cfg: RunConfig, data_dir: str | None = None) -> Prepared:
    """Load and tokenise the data (raises DataError / ModelError on bad input; writes nothing)."""
    task = load_task(cfg, data_dir)
    tokenizer = load_tokenizer(cfg.model)
    limit = max_input_tokens(cfg.model, tokenizer)
    if limit is not None and cfg.max_length > limit:
        raise ConfigError(f"--max-length {cfg.max_length} is more than model {cfg.model!r} accepts: at most {limit} "
                          "tokens per input")
    splits, info, counts, sources, how = {}, {}, {}, {}, {}
    for split in ("train", "validation", "test"):
        whole = task.load(split)
        examples = cfg.pick(split, whole)
        splits[split] = encode(tokenizer, examples, cfg.max_length)
        counts[split] = label_counts(examples, task.num_labels)
        info[split] = {"size": len(examples), "fingerprint": fingerprint(examples), "label_counts": counts[split]}
        how[split] = _how_picked(cfg, split, len(whole), len(examples))
    sources["test"] = label_counts(task.load("test"), task.num_labels)
    sources["train"] = sources["validation"] = label_counts(task.load("train") + task.load("validation"),
                                                            task.num_labels)
    for warning in check_splits(cfg.task, task.labels, counts, sources, how):
        print(f"warning: {warning}", file=sys.stderr)
    return Prepared(task, tokenizer, splits, {"task": task.name, "labels": list(task.labels),
                                              "metrics": list(task.metrics), "subset_order": cfg.subset_order,
                                              "splits": info})


def _how_picked(cfg: RunConfig, split: str, whole: int, used: int) -> str:
    """How a split's examples were picked, for the warnings of ``check_splits``."""
    cut = (f"a {'file-order' if cfg.subset_order == 'first' else 'stratified'} 9:1 cut of the train file"
           if cfg.task == "files" and split != "test" and not cfg.validation_file else "")
    if used == whole:
        return cut or "whole"
    option = {"train": "--train-subset", "validation": "--validation-subset" if cfg.validation_subset else
              "--eval-subset", "test": "--eval-subset"}[split]
    picked = (f"the first {used} of {whole}, {option}, --subset-order first" if cfg.subset_order == "first"
              else f"a stratified {used} of {whole}, {option}")
    return f"{picked}; {cut}" if cut else picked


def _head_tensors(clf: Classifier) -> dict:
    return {"weight": clf.head.weight.detach().clone(), "bias": clf.head.bias.detach().clone()}


def rescale_head(clf: Classifier, norm: float | None = None, scale: float | None = None) -> None:
    """Scale weight and bias together so that ||V||_F == norm (or by ``scale``): the paper's norm sweep."""
    if norm is None and scale is None:
        return
    factor = scale if scale is not None else norm / float(clf.head.weight.detach().norm())
    with torch.no_grad():
        clf.head.weight.mul_(factor)
        clf.head.bias.mul_(factor)


def start_of_fine_tuning(cfg: RunConfig, prep: Prepared, cache: Path | None,
                         device: str | None = None) -> tuple[Classifier, dict[str, dict]]:
    """The model as the FT stage starts (for LP: after LP) and the heads on the way there.

    The pre-trained backbone with the seeded random head (FT, LoRA) or the linear probe's head (LP-FT, LP-LoRA),
    wrapped with LoRA for LoRA methods and rescaled by ``head_norm`` / ``head_scale``. Returns the model and
    ``{"init": ..., "lp": ..., "start": ...}`` head tensors (``lp`` only for LP methods, ``start`` not for LP).
    The eNTK of the FT stage is taken at exactly this model.
    """
    cfg = cfg.resolved()
    task, splits = prep.task, prep.splits
    with phase("model"):
        clf = Classifier.from_pretrained(cfg.model, task.num_labels, cfg.dropout, cfg.pooling)
        init_head(clf.head, cfg.seed, cfg.head_init, initializer_range(clf.backbone))
        clf.to(resolve_device(device))
    heads = {"init": _head_tensors(clf)}
    if cfg.uses_lp:
        with phase("features"):
            feats = pretrained_features(clf, cfg.model, splits["train"], cache, cfg.eval_batch_size,
                                        "LP features train", cfg.precision)
            key = pretrained_features_key(clf, cfg.model, splits["train"], cfg.precision)
        with phase("probe"):
            weight, bias = linear_probe(feats, splits["train"].labels, task.num_labels, cfg.lp_cs, cfg.lp_folds,
                                        cfg.lp_max_iter, cache, key)
        set_head(clf, weight, bias)
        heads["lp"] = {"weight": torch.from_numpy(weight), "bias": torch.from_numpy(bias)}
    if cfg.method != "lp":
        if cfg.uses_lora:
            with phase("model"):
                apply_lora(clf, cfg.lora_r, cfg.lora_alpha, seed=cfg.seed, targets=cfg.lora_targets)
        rescale_head(clf, cfg.head_norm, cfg.head_scale)
        heads["start"] = _head_tensors(clf)
    return clf, heads


def _check_same_data(folder: Path, cfg: RunConfig, saved: dict, current: dict | None = None,
                     data_dir: str | None = None, finished: bool = True) -> None:
    """A run is reused or resumed only if the data it was trained and tested on is unchanged.

    ``saved`` is the ``data`` entry of its config.json; ``current`` the same for the data as it is now (computed
    from the task when not given)."""
    if current is None:
        task = load_task(cfg, data_dir)
        current = {}
        for split in saved["splits"]:
            current[split] = {"fingerprint": fingerprint(cfg.pick(split, task.load(split)))}
    else:
        current = current["splits"]
    for split, info in saved["splits"].items():
        if split in current and current[split]["fingerprint"] != info["fingerprint"]:
            what = "finished run" if finished else "unfinished run (resume state)"
            raise ConfigError(f"{what} {folder} was made from different {split} data than {cfg.task!r} has now; "
                              "remove the folder or choose another --out")


def _resumable_data(folder: Path) -> dict | None:
    """The data an interrupted run in ``folder`` was training on, or None when there is nothing to resume."""
    if not (folder / "state" / "progress.json").exists():
        return None
    return check_config(folder / "config.json")[1]


def run_label(cfg: RunConfig) -> str:
    """How progress lines name a run, so that the lines of a study's many runs can be told apart.

    >>> run_label(RunConfig(method="lp-ft", seed=2, head_norm=10.0))
    'LP-FT (seed 2, head norm 10)'
    """
    extra = (f", head norm {cfg.head_norm:g}" if cfg.head_norm is not None
             else f", head x{cfg.head_scale:g}" if cfg.head_scale is not None else "")
    return f"{cfg.method.upper()} (seed {cfg.seed}{extra})"


def train(cfg: RunConfig, out: str | Path = "runs", data_dir: str | None = None,
          cache_dir: str | Path | None = "default", device: str | None = None) -> Path:
    """Run (or reuse, or resume) one training run; returns its folder.

    One process at a time per run folder (``lpft.locks``): a second process or worker on the same run waits for
    the first, then reuses its finished run; if the first was killed, the second resumes from its state.
    """
    cfg = cfg.resolved()
    ws = Workspace(Path(out), data_dir, None if cache_dir is None else str(cache_dir), device).checked()
    device, cache = ws.device, ws.cache
    folder = run_folder(cfg, out)
    if (folder / "metrics.json").exists():
        return _reuse(folder, cfg, data_dir)
    timer = PhaseTimer()
    with timer.active():
        with phase("tokenise"):
            prep = prepare(cfg, data_dir)  # bad data or tokenizer: an error before anything is written
        lock = lock_path(folder, root=out)
        created = [d for d in (lock.parent, *lock.parent.parents) if not d.exists()]
    try:
        with exclusive(folder, f"waiting for another process training {folder}", root=out):
            if (folder / "metrics.json").exists():  # the process we waited for finished it
                return _reuse(folder, cfg, data_dir)
            with timer.active():
                return _train_locked(cfg, prep, folder, cache, device, timer)
    except BaseException:
        if created and not folder.exists():  # failed before writing anything (e.g. model weights): leave no trace
            lock.unlink(missing_ok=True)
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break
        raise


def _reuse(folder: Path, cfg: RunConfig, data_dir: str | None) -> Path:
    record = RunRecord(folder)  # refuses a damaged folder with a one-line error naming the file
    _check_same_data(folder, cfg, record.data, data_dir=data_dir)
    tqdm.write(f"reusing finished run {folder}")
    return folder


def _train_locked(cfg: RunConfig, prep: Prepared, folder: Path, cache: Path | None, device: str,
                  timer: PhaseTimer) -> Path:
    task, splits = prep.task, prep.splits
    resume_data = _resumable_data(folder)
    if resume_data is not None:  # before the expensive LP: resuming on other data would mix two trainings
        _check_same_data(folder, cfg, resume_data, prep.data_info, finished=False)
    clf, heads = start_of_fine_tuning(cfg, prep, cache, device)

    with phase("write"):
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", {"config": dataclasses.asdict(cfg), "data": prep.data_info})
        write_json(folder / "environment.json", environment_info())
        for stage, tensors in heads.items():
            save_tensors(folder / "heads" / f"{stage}.safetensors", tensors)

    def evaluate(logits, labels):
        metrics = compute_metrics(task.metrics, labels, logits)
        return metrics[task.primary_metric], metrics

    if cfg.method == "lp":
        logits = {}
        weight, bias = heads["lp"]["weight"].numpy(), heads["lp"]["bias"].numpy()
        for split in ("validation", "test"):
            with phase("features"):
                phi = pretrained_features(clf, cfg.model, splits[split], cache, cfg.eval_batch_size,
                                          f"LP features {split}", cfg.precision)
            with phase("eval"):
                logits[split] = phi.astype(np.float64) @ weight.T + bias
        history, steps, best_epoch = [], [], 0
    else:
        result = finetune(clf, splits["train"], splits["validation"], epochs=cfg.epochs, batch_size=cfg.batch_size,
                          lr=cfg.lr, seed=cfg.seed, evaluate=evaluate, state_dir=folder / "state",
                          weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
                          data_order=cfg.data_order, log_every=cfg.log_every,
                          eval_batch_size=cfg.eval_batch_size, desc=run_label(cfg), precision=cfg.precision,
                          on_epoch_end=_last_epoch_features(cfg, splits["test"], folder),
                          checkpoint_every=cfg.checkpoint_every)
        with phase("write"):
            save_tensors(folder / "heads" / "ft.safetensors", _head_tensors(clf))
        with phase("eval"):
            logits = {split: extract(clf, splits[split], cfg.eval_batch_size, desc=f"evaluate {split}", logits=True,
                                     precision=cfg.precision)[1] for split in ("validation", "test")}
        history, steps, best_epoch = result.history, result.steps, result.best_epoch

    with phase("write"):
        save_tensors(folder / "model.safetensors", trainable_state(clf) if cfg.method != "lp" else
                     {"head.weight": clf.head.weight, "head.bias": clf.head.bias})
        for split, values in logits.items():
            save_array(folder / "logits" / f"{split}.npy", values)
            save_array(folder / "logits" / f"{split}_labels.npy", splits[split].labels)
        write_json(folder / "history.json", history)
        write_json(folder / "steps.json", steps)
    with phase("eval"):
        metrics = {"val": evaluate(logits["validation"], splits["validation"].labels)[1],
                   "test": evaluate(logits["test"], splits["test"].labels)[1], "best_epoch": best_epoch}
    timing = timer.summary()
    metrics["seconds"] = timing["wall_seconds"]
    write_json(folder / "timing.json", {**timing, "resumed": resume_data is not None})
    write_json(folder / "metrics.json", metrics)
    if (folder / "state").exists():  # only after a checkpoint (SIGINT / SIGTERM, or a run of many minutes)
        import shutil

        shutil.rmtree(folder / "state")
    return folder


LAST_EPOCH_FEATURES = Path("features") / "last-epoch-test.npy"


def _last_epoch_features(cfg: RunConfig, test, folder: Path):
    """The epoch-end hook: after the last epoch, save the test features of the last-epoch weights (the run keeps the
    best epoch's). A run interrupted between its last epoch's checkpoint and this file resumes past the loop, where
    ``finetune`` calls the hook again on the checkpoint's (last-epoch) weights, so the file is written then."""
    def hook(epoch: int, clf) -> None:
        if epoch == cfg.epochs:
            with phase("eval"):
                feats = extract(clf, test, cfg.eval_batch_size, desc="last-epoch features test",
                                precision=cfg.precision)
                save_array(folder / LAST_EPOCH_FEATURES, feats)
    return hook


class RunRecord:
    """Read access to a finished run folder: config, metrics, history, heads, logits and the trained model."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "metrics.json").exists():
            raise FileNotFoundError(f"{self.path} is not a finished run folder (no metrics.json)")
        # every file is checked on opening (cheap: JSON, logits, heads, the model's header), so a truncated or
        # edited file is a RunFolderError naming it here, not a traceback or a wrong number later
        self.config, self.data = check_config(self.path / "config.json")
        self.metrics = check_metrics(self.path / "metrics.json", self.config, self.data)
        self.history = check_history(self.path / "history.json", self.config, self.metrics["best_epoch"])
        self.steps = check_steps(self.path / "steps.json")
        self._logits = {split: check_logits(self.path, split, self.data) for split in ("validation", "test")}
        stages = ("init",) + (("lp",) if self.config.uses_lp else ()) + (("start", "ft") if self.config.method != "lp"
                                                                          else ())
        C = len(self.data["labels"])
        self._heads = {stage: check_head(self.path / "heads" / f"{stage}.safetensors", C) for stage in stages}
        check_model_header(self.path / "model.safetensors", C)
        final = "lp" if self.config.method == "lp" else "ft"
        check_one_head(self.path, final, *self._heads[final])

    def head(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        """(weight (C, h), bias (C,)) at ``stage`` in init, lp, start, ft (lp only for LP methods)."""
        if stage not in HEAD_STAGES:
            raise ValueError(f"unknown head stage {stage!r}: expected one of {', '.join(HEAD_STAGES)}")
        if stage not in self._heads:
            raise FileNotFoundError(f"run {self.path} ({self.config.method}) has no {stage} head")
        weight, bias = self._heads[stage]
        return weight.copy(), bias.copy()

    def logits(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(logits (N, C), labels (N,)) of the best model on ``validation`` or ``test``."""
        logits, labels = self._logits[split]
        return logits.copy(), labels.copy()

    def pretrained(self) -> Classifier:
        """The pre-trained backbone with the run's initial head (phi0 for feature-change statistics)."""
        clf = Classifier.from_pretrained(self.config.model, len(self.data["labels"]), self.config.dropout,
                                         self.config.pooling)
        weight, bias = self.head("init")
        with torch.no_grad():
            clf.head.weight.copy_(torch.from_numpy(weight))
            clf.head.bias.copy_(torch.from_numpy(bias))
        return clf.eval()

    def classifier(self, merge_lora_weights: bool = False) -> Classifier:
        """The trained model (best epoch). LoRA runs come back PEFT-wrapped, reproducing the saved logits exactly;
        ``merge_lora_weights=True`` folds the adapters into plain weights (equal up to float rounding)."""
        clf = self.pretrained()
        if self.config.uses_lora:
            apply_lora(clf, self.config.lora_r, self.config.lora_alpha, seed=self.config.seed,
                       targets=self.config.lora_targets)
        state = check_model_state(self.path / "model.safetensors", dict(clf.named_parameters()))
        load_trainable_state(clf, state)
        return (merge_lora(clf) if merge_lora_weights else clf).eval()
