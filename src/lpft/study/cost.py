"""A study's price before it runs (``lpft study FILE --dry-run``): seconds per job from a cost model, and the wall
time of each executor from the plan's dependency graph.

The model, per training run (``run_seconds``): a fixed start (model load, tokenisation, writing the run folder),
``epochs x (steps x a + b x train tokens)`` for the FT stage (``a`` per optimiser step, ``b`` per token: forward,
backward and AdamW; LoRA has its own pair), forward passes over the validation split every epoch and over validation
and test at the end (``f`` per token), and for the job that computes a linear probe the train features plus
scikit-learn's LogisticRegressionCV (per sample). An eNTK job: per-sample gradients (``C`` backward passes per
sample) plus the Gram products (FLOPs at the measured rate).

The rates come from a short measurement on this machine (:func:`measure`, ~10 s: a few training steps of the
study's model at two batch sizes, forward passes, a probe fit on synthetic features), cached under
``<cache>/cost/`` per model, device and thread count; a model that is not on this machine (a hub name offline) is
measured through the embedded model and scaled by FLOPs per token. Each time is the best of several repeats (the
minimum: what a step costs when nothing else disturbs it), and the file records how busy the machine was (load
average, CPUs, other processes ready to run during the measurement: :class:`Contention`), so ``--dry-run`` says when
its rates were measured on a busy machine; ``--remeasure`` measures again. Finished runs of the study recalibrate the
estimate: their recorded seconds against the model's prediction give a factor applied to the rest.

GPUs are not measured (none here): a GPU run is priced from FLOPs per token (2 x non-embedding parameters forward,
x3 with backward, x2 for LoRA's frozen backbone) at ``GPU_FLOPS`` effective FLOP/s plus ``GPU_STEP_S`` per step.

Token counts come from the data when it is on this machine (user files, BBC News, a local data folder); for the
paper's GLUE / SuperGLUE tasks read from the hub they come from :data:`TASK_PROFILES` (split sizes and token-length
quantiles measured on ../shared/data): pricing a study never downloads anything.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..methods.config import RunConfig

#: effective FLOP/s of one GPU on this fp32 training (an assumption, not a measurement: an A100 reaches ~19.5 TFLOP/s
#: fp32 peak, an H100 SXM ~67; short 128-token batches of a 125M model reach a fraction of it). Override with
#: ``--gpu-flops``.
GPU_FLOPS = 20e12
#: seconds of framework overhead per optimiser step on a GPU (kernel launches, clipping, AdamW over ~200 tensors)
GPU_STEP_S = 0.03
#: a run's fixed start on a GPU: model load and move, tokenisation, writing its folder
GPU_RUN_START_S = 10.0

#: Split sizes after the paper's 9:1 split (train, validation, test) and 20 quantiles (2.5 %..97.5 %) of the token
#: lengths of the train split (measured with all-MiniLM-L6-v2's WordPiece tokenizer on ../shared/data; BoolQ's on
#: its validation file, the only one here; WiC's are an estimate: its data is not here).
TASK_PROFILES = {
    "cb": ((225, 25, 56), [33, 41, 45, 49, 53, 57, 61, 64, 67, 70, 72, 75, 79, 84, 88, 98, 108, 122, 144, 188]),
    "rte": ((2241, 249, 277), [25, 31, 35, 38, 41, 44, 46, 49, 51, 54, 57, 61, 64, 69, 77, 93, 113, 128, 144, 180]),
    "boolq": ((8484, 943, 3270), [47, 62, 71, 80, 88, 95, 102, 109, 115, 122, 129, 137, 145, 154, 164, 176, 192, 210,
                                  240, 300]),
    "wic": ((4885, 543, 638), [17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 33, 35, 37, 40, 44, 52]),
    "wsc": ((499, 55, 104), [23, 25, 27, 27, 29, 30, 31, 31, 32, 33, 35, 37, 39, 41, 45, 49, 55, 62, 67, 85]),
    "cola": ((7696, 855, 1043), [6, 7, 8, 8, 8, 9, 9, 10, 10, 10, 11, 11, 12, 12, 13, 14, 15, 16, 18, 23]),
    "sst2": ((60614, 6735, 872), [3, 4, 5, 5, 6, 6, 7, 8, 9, 10, 11, 12, 13, 15, 17, 19, 22, 25, 30, 39]),
    "mrpc": ((3301, 367, 408), [29, 34, 37, 40, 42, 45, 46, 48, 51, 53, 54, 56, 58, 60, 62, 64, 66, 69, 72, 78]),
}
TASK_PROFILES.update({"cola-id": TASK_PROFILES["cola"], "cola-ood": TASK_PROFILES["cola"]})
#: (layers, hidden, intermediate) of common hub models, so that pricing needs no download
KNOWN_SHAPES = {"roberta-base": (12, 768, 3072), "bert-base-uncased": (12, 768, 3072),
                "bert-base-cased": (12, 768, 3072), "roberta-large": (24, 1024, 4096),
                "bert-large-uncased": (24, 1024, 4096), "distilroberta-base": (6, 768, 3072)}
SPLIT_NAMES = ("train", "validation", "test")
#: the format of ``<cache>/cost/*.json``: a file of another version (before 2: no record of the machine's load) is
#: measured again
RATES_VERSION = 2
#: repeats of each timed step / forward pass after a warm-up; the minimum is kept
REPEATS = 4


@dataclass
class Contention:
    """How busy the machine was while the rates were measured: the load averages (1, 5, 15 min) before and after,
    the CPUs, and the mean number of other threads ready to run (sampled from /proc/loadavg during the measurement,
    less the measuring threads; None where there is no /proc)."""

    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    cpus: int
    threads: int
    others_running: float | None

    def busy(self) -> bool:
        """More threads wanted the CPUs than there are (others + ours > CPUs, with 0.5 of slack for the sampling);
        without /proc: a 1-minute load average at or above the CPU count when the measurement ended."""
        if self.others_running is not None:
            return self.others_running + self.threads > self.cpus + 0.5
        return self.load_after[0] >= self.cpus

    def describe(self) -> str:
        others = (f"{self.others_running:.1f} other threads ready to run, " if self.others_running is not None
                  else "")
        return f"{others}load {self.load_after[0]:.1f} on {self.cpus} CPUs"


class _RunnableSampler:
    """Other threads ready to run, sampled at each timed step (``/proc/loadavg``'s 4th field counts every runnable
    thread on the machine, ours included)."""

    def __init__(self, threads: int):
        self.threads, self.samples = threads, list[int]()

    def sample(self) -> None:
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return
        self.samples.append(max(0, running - self.threads))

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


@dataclass
class Rates:
    """Seconds on one device and thread count: per training step ``a`` + per token ``b`` (FT, LoRA), per forward
    token ``f``, per probe sample (``probe``), the fixed start of a run, and FLOP/s of the eNTK's Gram products."""

    model: str
    device: str
    threads: int
    ft: tuple[float, float]
    lora: tuple[float, float]
    forward: float
    probe: float
    start: float
    flops: float
    source: str = "measured"
    contention: Contention | None = field(default=None)  # None: not measured here (GPU), or an older cache file


@dataclass
class Profile:
    """Examples and tokens per split (tokens after truncation to ``max_length``)."""

    sizes: dict[str, int]
    tokens: dict[str, float]
    num_labels: int
    source: str


def model_shape(model: str) -> tuple[int, int, int]:
    """(layers, hidden, intermediate): from the table for known hub names, else from the (local or cached) config."""
    from ..model.hub import load_config

    if model in KNOWN_SHAPES:
        return KNOWN_SHAPES[model]
    c = load_config(model)
    hidden = getattr(c, "hidden_size", None) or c.n_embd
    return (getattr(c, "num_hidden_layers", None) or c.n_layer, hidden,
            getattr(c, "intermediate_size", None) or 4 * hidden)


def flops_per_token(model: str, length: float = 64) -> float:
    """Forward FLOPs per token: 2 x non-embedding weights (attention projections 4 h^2, MLP 2 h ff per layer) plus
    the attention scores (4 x length x h per layer)."""
    layers, h, ff = model_shape(model)
    return layers * (2 * (4 * h * h + 2 * h * ff) + 4 * length * h)


def is_local_model(model: str) -> bool:
    from ..options import DEFAULT_MODEL

    return model in (DEFAULT_MODEL, "embedded") or Path(model).expanduser().is_dir()


# ------------------------------------------------------------------------------------------------ measurement

def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(model: str, device: str = "cpu", threads: int = 1, length: int = 64) -> Rates:
    """Time a few training steps (16 x 16 and 16 x 96 tokens, FT and LoRA), forward passes and a probe fit of
    ``model``: each the best of :data:`REPEATS` after a warm-up; how busy the machine was is recorded with them."""
    import numpy as np
    import torch

    from ..methods.lora import apply_lora
    from ..methods.lp import fit_linear_probe
    from ..model import Classifier

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before, others = os.getloadavg(), _RunnableSampler(threads)
    try:
        t0 = time.perf_counter()
        clf = Classifier.from_pretrained(model, 3).to(device)
        start = time.perf_counter() - t0
        config: Any = clf.backbone.config  # transformers' config (torch's Module.__getattr__ types it a Module)
        vocab = config.vocab_size
        gen = torch.Generator().manual_seed(0)

        def batch(n: int, length: int):
            return {"input_ids": torch.randint(1000, min(vocab, 20000), (n, length), generator=gen).to(device),
                    "attention_mask": torch.ones(n, length, dtype=torch.long, device=device)}

        def step_rates(net) -> tuple[float, float]:
            """(seconds per step, per token) from steps of 16 x 16 and 16 x 96 tokens (best of REPEATS after a
            warm-up: on a shared machine the best is the least disturbed)."""
            params = [p for p in net.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=1e-5)
            seconds = {}
            for length in (16, 96):
                inputs, labels = batch(16, length), torch.zeros(16, dtype=torch.long, device=device)
                times = []
                for _ in range(1 + REPEATS):
                    others.sample()
                    t = time.perf_counter()
                    loss = torch.nn.functional.cross_entropy(net(**inputs), labels)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    opt.zero_grad()
                    times.append(time.perf_counter() - t)
                seconds[length] = min(times[1:])
            per_token = max(seconds[96] - seconds[16], 1e-9) / (16 * 80)
            return max(0.0, seconds[16] - 16 * 16 * per_token), per_token

        clf.train()
        ft = step_rates(clf)
        clf.eval()
        with torch.no_grad():
            inputs = batch(32, length)
            clf(**inputs)
            forward = min(_timed(lambda: clf(**inputs)) for _ in range(REPEATS)) / (32 * length)
            x = torch.randn(512, 512, device=device)
            t = time.perf_counter()
            for _ in range(4):
                x @ x
            flops = 4 * 2 * 512 ** 3 / (time.perf_counter() - t)
        t0 = time.perf_counter()
        lora_net = Classifier.from_pretrained(model, 3).to(device)
        start = min(start, time.perf_counter() - t0)  # the second load: without the first one's imports
        lora = step_rates(apply_lora(lora_net).train())
        rng = np.random.default_rng(0)  # a probe on 3 noisy clusters: LogisticRegressionCV's cost per sample
        labels = rng.integers(0, 3, 300)
        feats = rng.normal(size=(300, config.hidden_size)) + labels[:, None] * 0.3
        t = time.perf_counter()
        fit_linear_probe(feats.astype(np.float32), labels, 3, 10, 5, 5000)
        probe = (time.perf_counter() - t) / 300
    finally:
        torch.set_num_threads(previous)
    contention = Contention(load_before, os.getloadavg(), os.cpu_count() or 1, threads, others.mean())
    return Rates(model, device, threads, ft, lora, forward, probe, start, flops, contention=contention)


def scaled(rates: Rates, model: str) -> Rates:
    """``rates`` of one model carried to another by the ratio of their FLOPs per token."""
    r = flops_per_token(model) / flops_per_token(rates.model)
    return dataclasses.replace(rates, model=model, ft=(rates.ft[0] * r, rates.ft[1] * r),
                               lora=(rates.lora[0] * r, rates.lora[1] * r), forward=rates.forward * r,
                               start=rates.start * r, source=f"scaled x{r:.1f} by FLOPs from {rates.model}")


def cpu_rates(model: str, cache: Path | None, device: str = "cpu", threads: int = 1,
              remeasure: bool = False) -> Rates:
    """This machine's rates for ``model``: measured once, then read from ``<cache>/cost/`` (a file of another
    :data:`RATES_VERSION` is measured again; ``remeasure``: measure again and replace the file)."""
    from ..io import write_json
    from ..options import DEFAULT_MODEL

    measured = model if is_local_model(model) else DEFAULT_MODEL
    safe = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in measured)
    path = Path(cache) / "cost" / f"{safe}-{device}-t{threads}.json" if cache else None
    rates = _read_rates(path) if path is not None and path.exists() and not remeasure else None
    if rates is None:
        rates = measure(measured, device, threads)
        if path is not None:
            fields = {k: v for k, v in dataclasses.asdict(rates).items() if k not in ("source", "contention")}
            write_json(path, {"version": RATES_VERSION, "rates": fields,
                              "contention": dataclasses.asdict(rates.contention) if rates.contention else None})
    return rates if measured == model else scaled(rates, model)


def _read_rates(path: Path) -> Rates | None:
    """The cached rates, or None for a file to measure again: another format version, or damaged."""
    from ..io import read_json

    try:
        data = read_json(path)
        if data.get("version") != RATES_VERSION:
            return None
        c, r = data["contention"], data["rates"]
        contention = Contention(tuple(c["load_before"]), tuple(c["load_after"]), int(c["cpus"]), int(c["threads"]),
                                c["others_running"])
        return Rates(**{**r, "ft": tuple(r["ft"]), "lora": tuple(r["lora"]), "source": f"measured, cached in {path}",
                        "contention": contention})
    except (ValueError, KeyError, TypeError, AttributeError):  # damaged: a new measurement replaces it
        return None


def gpu_rates(model: str, gpu_flops: float = GPU_FLOPS) -> Rates:
    """A GPU's rates from FLOPs per token at ``gpu_flops`` (no GPU is measured)."""
    f = flops_per_token(model, 128) / gpu_flops
    return Rates(model, "gpu", 0, (GPU_STEP_S, 3 * f), (GPU_STEP_S, 2 * f), f, 2e-4, GPU_RUN_START_S, gpu_flops,
                 f"{gpu_flops:.3g} FLOP/s per GPU (assumed)")


# ------------------------------------------------------------------------------------------------ token counts

def profile(cfg: RunConfig, data_dir: str | None, tokenizer_model: str | None = None) -> Profile:
    """Examples and tokens per split of ``cfg``'s (subset) data: read here when it is on this machine, else from
    :data:`TASK_PROFILES`. Never downloads: a registered task without a local folder uses the table."""
    from ..data import DataError
    from ..data.readers import resolve_data_dir
    from ..runs import load_task

    task = cfg.task
    local = task in ("files", "bbc-news") or resolve_data_dir(data_dir) is not None
    if local:
        try:
            return _read_profile(cfg, data_dir, tokenizer_model)
        except DataError:
            if task not in TASK_PROFILES:
                raise
    if task not in TASK_PROFILES:
        from ..config import ConfigError

        raise ConfigError(f"cannot price task {task!r} without its data: pass --data-dir")
    (n_train, n_val, n_test), q = TASK_PROFILES[task]
    assert cfg.max_length is not None  # resolved
    mean = sum(min(v, cfg.max_length) for v in q) / len(q)
    sizes = {"train": n_train, "validation": n_val, "test": n_test}
    sizes = {s: min(n, cfg.split_limit(s) or n) for s, n in sizes.items()}
    num_labels = len(load_task(cfg, data_dir).labels)  # the label names are known without reading files
    return Profile(sizes, {s: n * mean for s, n in sizes.items()}, num_labels, "table")


def _read_profile(cfg: RunConfig, data_dir: str | None, tokenizer_model: str | None) -> Profile:
    from ..data.batching import encode
    from ..model.hub import load_tokenizer
    from ..options import DEFAULT_MODEL
    from ..runs import load_task

    task = load_task(cfg, data_dir)
    tokenizer = load_tokenizer(tokenizer_model or (cfg.model if is_local_model(cfg.model) else DEFAULT_MODEL))
    assert cfg.max_length is not None  # resolved
    sizes, tokens = {}, {}
    for split in SPLIT_NAMES:
        examples = cfg.pick(split, task.load(split))  # the run's own subset
        sizes[split] = len(examples)
        tokens[split] = float(sum(len(ids) for ids in encode(tokenizer, examples, cfg.max_length).input_ids))
    return Profile(sizes, tokens, task.num_labels, "data")


# ------------------------------------------------------------------------------------------------ the model

def run_seconds(cfg: RunConfig, p: Profile, r: Rates, computes_probe: bool) -> float:
    """Predicted seconds of one training run (``computes_probe``: it extracts features and fits the probe)."""
    seconds = r.start
    if computes_probe or cfg.method == "lp":
        seconds += r.forward * p.tokens["train"] + r.probe * p.sizes["train"]
    if cfg.method == "lp":
        return seconds + r.forward * (p.tokens["validation"] + p.tokens["test"])
    a, b = r.lora if cfg.uses_lora else r.ft
    assert cfg.batch_size is not None and cfg.epochs is not None  # resolved, and a method with an FT stage
    steps = math.ceil(p.sizes["train"] / cfg.batch_size)
    epoch = steps * a + b * p.tokens["train"] + r.forward * p.tokens["validation"]
    return seconds + cfg.epochs * epoch + r.forward * (p.tokens["validation"] + p.tokens["test"])


def ntk_seconds(job, p: Profile, r: Rates) -> float:
    """Predicted seconds of one eNTK: C backward passes per sample, then the Gram products, then the optional one-
    epoch prediction check."""
    s = job.settings
    n = min(s.n_train, p.sizes["train"])
    m = min(s.n_test, p.sizes["test"])
    c = p.num_labels
    per_sample = (p.tokens["train"] / max(p.sizes["train"], 1))
    grads = (n + m) * c * (r.ft[0] + r.ft[1] * per_sample)
    layers, h, ff = model_shape(job.config.model)
    params = layers * (4 * h * h + 2 * h * ff) + (s.embedding_fraction or 1.0) * 30_000 * h
    gram = 2 * (n * c) * (n + m) * c * params / r.flops
    predict = (r.ft[0] * math.ceil(n / job.config.batch_size) + r.ft[1] * n * per_sample) if s.predict else 0.0
    return r.start + grads + gram + predict


@dataclass
class Estimate:
    seconds: list[float]  # per job (0 for a finished one)
    wall: float  # the executor's wall time over the dependency graph
    rates: Rates
    factor: float = 1.0  # the recalibration from finished runs
    calibrated_on: int = 0


def job_seconds(jobs, done, ws, r: Rates, profiles: dict) -> list[float]:
    """Predicted seconds per job (0 for a finished one): the first job of each probe key pays for the probe."""
    from ..keys import probe_key
    from .jobs import TrainJob

    seen, out = set(), []
    for job, finished in zip(jobs, done):
        cfg = job.config
        key = (cfg.task, cfg.train_subset, cfg.validation_subset, cfg.eval_subset, cfg.max_length, cfg.train_file)
        if key not in profiles:
            profiles[key] = profile(cfg, ws.data_dir)
        probe = cfg.uses_lp and probe_key(cfg) not in seen
        if cfg.uses_lp:
            seen.add(probe_key(cfg))
        if finished:
            out.append(0.0)
        elif isinstance(job, TrainJob):
            out.append(run_seconds(cfg, profiles[key], r, probe))
        else:
            out.append(ntk_seconds(job, profiles[key], r))
    return out


def recalibration(jobs, done, ws, r: Rates, profiles: dict) -> tuple[float, int]:
    """Recorded over predicted seconds of the study's finished training runs (1.0 when none)."""
    from ..io import read_json
    from .jobs import TrainJob

    finished = [j for j, d in zip(jobs, done) if d and isinstance(j, TrainJob)]
    if not finished:
        return 1.0, 0
    predicted = job_seconds(finished, [False] * len(finished), ws, r, profiles)
    actual = [read_json(j.folder(ws) / "metrics.json").get("seconds", 0.0) for j in finished]
    return (sum(actual) / sum(predicted) if sum(predicted) > 0 else 1.0), len(finished)


def makespan(seconds: list[float], deps: list[tuple[int, ...]], slots: int) -> float:
    """Wall time of list scheduling: each free slot takes the first job (in order) whose dependencies are done."""
    import heapq

    finish = [math.inf] * len(seconds)
    free = [0.0] * max(1, slots)
    pending = list(range(len(seconds)))
    now = 0.0
    while pending:
        slot_free = heapq.heappop(free)
        now = max(now, slot_free)
        ready = [i for i in pending if all(finish[d] <= now for d in deps[i])]
        if not ready:  # wait for the next dependency to finish
            now = min(finish[d] for i in pending for d in deps[i] if finish[d] > now)
            heapq.heappush(free, now)
            continue
        i = ready[0]
        pending.remove(i)
        finish[i] = now + seconds[i]
        heapq.heappush(free, finish[i])
    return max((f for f in finish if f < math.inf), default=0.0)


def estimate(jobs, deps, done, ws, rates: Rates, slots: int, profiles: dict | None = None) -> Estimate:
    profiles = {} if profiles is None else profiles
    factor, n = recalibration(jobs, done, ws, rates, profiles) if rates.device != "gpu" else (1.0, 0)
    seconds = [s * factor for s in job_seconds(jobs, done, ws, rates, profiles)]
    return Estimate(seconds, makespan(seconds, deps, slots), rates, factor, n)


def duration(seconds: float) -> str:
    """'3 h 05 min', '12 min 30 s', '45 s'."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


__all__ = ["GPU_FLOPS", "Contention", "Rates", "Profile", "Estimate", "estimate", "cpu_rates", "gpu_rates", "measure",
           "profile", "run_seconds", "ntk_seconds", "job_seconds", "makespan", "duration", "flops_per_token"]
