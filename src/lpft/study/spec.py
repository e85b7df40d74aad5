"""What a study is: tasks, methods, seeds, per-task run options, OOD sets, norm-sweep and eNTK settings.

A study comes from the command line (``lpft compare``, ``lpft norm-sweep``, ``lpft ntk``) or from a versioned TOML
file (``lpft study STUDY.toml``, see ``docs/study.md``)::

    version = 1
    tasks = ["cb", "rte"]
    methods = ["lp", "ft", "lp-ft", "lora", "lp-lora"]
    seeds = [1, 2, 3]

    [run]                 # run options for every task (any `lpft train` option but method and seed)
    epochs = 10

    [task.cb]             # per-task run options, the task's OOD sets and methods (default: the study's)
    epochs = 20
    ood = ["cb-shifted.csv"]

    [norm_sweep]          # optional: paper Figure 3 on some tasks
    tasks = ["cb"]
    methods = ["ft", "lp-ft"]
    norms = [0.1, 1, 10, 100]

    [ntk]                 # optional: paper Table 2 on some tasks ([[ntk]] tables for several settings)
    tasks = ["cb"]
    methods = ["ft", "lp-ft"]
    n_train = 250

Unknown keys, wrong types and bad values are one-line ``ConfigError`` s naming the file and the key, raised before
anything runs.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, parse_size
from ..methods.config import METHODS, RunConfig
from ..workspace import Workspace as Workspace  # re-exported (defined in lpft.workspace)
from ..workspace import cache_option

STUDY_FILE_VERSION = 1
PAPER_NORMS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0)
# run options the study sets per run (a sweep also sets the head norm): not allowed in [run] / [task.*]
STUDY_SKIPS = ("method", "seed", "head_norm", "head_scale")


@dataclass
class TaskSpec:
    """One task of a study: the name its report section carries, its run options and its OOD sets."""

    name: str
    config: RunConfig
    ood: tuple[str, ...] = ()
    methods: tuple[str, ...] | None = None  # None: the study's methods


@dataclass
class SweepSpec:
    """Paper Figure 3: fine-tune from heads rescaled to each norm (or multiplied by each factor)."""

    tasks: tuple[str, ...] | None = None  # None: every task of the study
    methods: tuple[str, ...] = ("ft", "lp-ft")
    values: tuple[float, ...] = PAPER_NORMS
    mode: str = "norm"  # "norm": target ||V||_F; "scale": multiplier
    seeds: tuple[int, ...] | None = None  # None: the study's seeds
    split: str = "test"


@dataclass
class NtkSpec:
    """Paper Table 2: the eNTK at the start of fine-tuning, per task, method and seed."""

    tasks: tuple[str, ...] | None = None
    methods: tuple[str, ...] = ("ft", "lp-ft", "lora", "lp-lora")
    seeds: tuple[int, ...] | None = None  # None: the study's first seed
    n_train: int = 250
    n_test: int = 250
    sample: str = "random"  # random: seeded sample, as the authors draw it; first: the first N / M (deviation)
    kernel_scaling: str = "raw"  # kernel regression on the raw kernel (authors'); max: divided by max |K| (deviation)
    memory_budget: int | None = None
    embedding_fraction: float | None = None
    predict: bool = True
    predict_optimizer: str = "adamw"
    predict_dropout: bool = True
    head_norms: tuple[float, ...] = ()  # non-empty: an eNTK per start-of-FT head rescaled to each norm (claim 5)
    sketch: int | None = None  # K: F estimated from K-dim sign projections (lpft.ntk.sketch); None: exact
    sketch_seed: int | None = None  # the estimator's seed; None: the run's seed
    query_value: bool = False  # FT / LP-FT: also F over the weights LoRA adapts, F_qv_train.npy (claim 7, Prop. 4.4)
    regression: bool = True  # the authors' kernel-regression probe on P, F, P+F (its cost grows fast with N * C)


@dataclass
class StudySpec:
    tasks: tuple[TaskSpec, ...]
    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0,)
    compare: bool = True  # train the methods × seeds grid and write the compare report
    sweep: SweepSpec | None = None
    ntk: tuple[NtkSpec, ...] = ()  # each: a set of eNTKs with its own settings ([ntk], or several [[ntk]])
    split: str = "test"  # feature statistics and t-SNE
    tsne_samples: int = 500
    gd_max_steps: int = 100_000
    report: Path | None = None
    claims: bool = False  # test the seven claims on the study's folders (lpft.claims) into <report>/claims
    source: str = "command line"  # the study file, for error messages and the report

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.tasks if t.name == name)


# ------------------------------------------------------------------------------------------------ the TOML file

_TOP = {"version", "tasks", "methods", "seeds", "out", "data_dir", "cache_dir", "report", "split", "tsne_samples",
        "claims", "gd_max_steps", "compare", "run", "task", "norm_sweep", "ntk"}
_SWEEP = {"tasks", "methods", "norms", "multipliers", "seeds", "split"}
_NTK = {f.name for f in dataclasses.fields(NtkSpec)}
# a section's name is its task: `task` is no run option in [run] / [task.x] (only `task = "files"` declares a
# section whose name is not a registered task as a files task)
_RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig) if f.name not in STUDY_SKIPS + ("task",)}


def in_study_file(err: ConfigError, path: str | Path, where: str = "") -> ConfigError:
    """``err`` (worded for the command line: ``--max-length ...``) reworded for a study file: the file, the table
    and the key (``max_length``)."""
    import re

    text = re.sub(r"--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_"), str(err))
    return ConfigError(f"{path}: {where + ': ' if where else ''}{text}")


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(f"{path}: reading study files needs Python >= 3.11 or the 'tomli' package") from None
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: study file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


class _Reader:
    """Typed access to one table of the study file; every error names the file and the key."""

    def __init__(self, path: Path, table: dict, where: str, allowed: set[str]):
        self.path, self.table, self.where = path, table, where
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r}{self._in()}: expected one of "
                              f"{', '.join(sorted(allowed))}")

    def _in(self) -> str:
        return f" in [{self.where}]" if self.where else ""

    def error(self, key: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}{self._in()} must be {expected}, got {self.table[key]!r}")

    def get(self, key: str, kind, default=None):
        if key not in self.table:
            return default
        return _check_type(self.table[key], kind, lambda what: self.error(key, what))

    def size(self, key: str, default=None) -> int | None:
        """Bytes: an integer or a string with a unit ("1.5GiB", lpft.config.parse_size)."""
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.error(key, 'bytes or a size such as "1.5GiB"')
        try:
            return parse_size(value)
        except ValueError:
            raise self.error(key, 'bytes or a size such as "1.5GiB"') from None

    def list(self, key: str, kind, default=None):
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"a non-empty list of {kind.__name__}s")
        return tuple(_check_type(v, kind, lambda what: self.error(key, f"a list of {what}s")) for v in value)


def _check_type(value, kind, error):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise error({int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(kind, kind.__name__))


def _run_options(reader: _Reader, keys) -> dict:
    hints = typing.get_type_hints(RunConfig)
    out = {}
    for key in keys:
        kind = [a for a in typing.get_args(hints[key]) if a is not type(None)] or [hints[key]]
        out[key] = reader.get(key, kind[0])
    return out


def load_study(path: str | Path, **location) -> tuple[StudySpec, Workspace]:
    """Read and validate a study file. ``location`` (out, data_dir, cache_dir, device) overrides the file's values
    where not None; relative paths in the file are relative to the file's folder."""
    path = Path(path)
    raw = _load_toml(path)
    top = _Reader(path, raw, "", _TOP)
    if "version" not in raw:
        raise ConfigError(f"{path}: missing 'version = {STUDY_FILE_VERSION}' (the study file format version)")
    if top.get("version", int) != STUDY_FILE_VERSION:
        raise ConfigError(f"{path}: version {raw['version']!r} is not supported: this lpft reads version "
                          f"{STUDY_FILE_VERSION}")
    names = top.list("tasks", str)
    if not names:
        raise ConfigError(f"{path}: 'tasks' is missing: expected a list of task names, e.g. tasks = [\"cb\", \"rte\"]")
    folded = [n.lower() for n in names]
    if len(set(folded)) != len(folded):
        twice = next(n for n in names if folded.count(n.lower()) > 1)
        raise ConfigError(f"{path}: 'tasks' names {twice!r} twice (task names are compared ignoring case: their "
                          "report folders would collide on case-insensitive file systems)")

    @typing.overload
    def rel(value: str) -> str: ...
    @typing.overload
    def rel(value: None) -> None: ...

    def rel(value: str | None) -> str | None:
        return str(path.parent / value) if value is not None and not Path(value).is_absolute() else value

    run_table = raw.get("run", {})
    if not isinstance(run_table, dict):
        raise ConfigError(f"{path}: 'run' must be a table [run]")
    run_reader = _Reader(path, run_table, "run", set(_RUN_FIELDS))
    shared = {k: v for k, v in _run_options(run_reader, run_table).items()}
    task_tables = raw.get("task", {})
    if not isinstance(task_tables, dict):
        raise ConfigError(f"{path}: 'task' must hold tables [task.<name>]")
    extra = sorted(set(task_tables) - set(names))
    if extra:
        raise ConfigError(f"{path}: [task.{extra[0]}] names a task that is not in 'tasks'")
    tasks = []
    for name in names:
        table = task_tables.get(name, {})
        reader = _Reader(path, table, f"task.{name}", set(_RUN_FIELDS) | {"task", "ood", "methods"})
        if "task" in table and reader.get("task", str).lower() != "files":
            raise ConfigError(f"{path}: task in [task.{name}] must be \"files\" (a task defined by files) or left "
                              f"out: the section's name is its task, got {table['task']!r}")
        options = {**shared, **_run_options(reader, [k for k in table if k not in ("ood", "methods", "task")])}
        options["task"] = "files" if "task" in table else name
        for key in ("train_file", "validation_file", "test_file"):
            if options.get(key):
                options[key] = rel(options[key])
        ood = tuple(s if not s.lower().endswith((".csv", ".tsv", ".jsonl", ".json")) else rel(s)
                    for s in (reader.list("ood", str) or ()))
        try:
            RunConfig(**options).resolved()
        except ConfigError as err:
            raise in_study_file(err, path, f"[task.{name}]" if name in task_tables else "[run]") from None
        tasks.append(TaskSpec(name, RunConfig(**options), ood, reader.list("methods", str)))

    sweep = None
    if "norm_sweep" in raw:
        r = _Reader(path, raw["norm_sweep"], "norm_sweep", _SWEEP)
        sweep = SweepSpec(tasks=r.list("tasks", str), methods=r.list("methods", str, SweepSpec.methods),
                          values=r.list("norms", float, PAPER_NORMS),
                          mode="scale" if r.get("multipliers", bool, False) else "norm",
                          seeds=r.list("seeds", int), split=r.get("split", str, "test"))
    ntk = []
    tables = raw.get("ntk", [])
    tables = [tables] if isinstance(tables, dict) else tables
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: 'ntk' must be a table [ntk] or a list of tables [[ntk]]")
    for i, table in enumerate(tables):
        r = _Reader(path, table, "ntk" if len(tables) == 1 else f"ntk[{i}]", _NTK)
        defaults = NtkSpec()
        ntk.append(NtkSpec(tasks=r.list("tasks", str), methods=r.list("methods", str, defaults.methods),
                      seeds=r.list("seeds", int), n_train=r.get("n_train", int, defaults.n_train),
                      n_test=r.get("n_test", int, defaults.n_test), sample=r.get("sample", str, defaults.sample),
                      kernel_scaling=r.get("kernel_scaling", str, defaults.kernel_scaling),
                      memory_budget=r.size("memory_budget"),
                      embedding_fraction=r.get("embedding_fraction", float),
                      predict=r.get("predict", bool, True), predict_optimizer=r.get("predict_optimizer", str, "adamw"),
                      predict_dropout=r.get("predict_dropout", bool, True),
                      head_norms=r.list("head_norms", float, ()), sketch=r.get("sketch", int),
                      sketch_seed=r.get("sketch_seed", int),
                      query_value=r.get("query_value", bool, False),
                      regression=r.get("regression", bool, True)))
    # out: the file's value (relative to the file), else ./runs like every other command
    # cache_dir: the option's value, else the file's ("none": no cache; a path relative to the file)
    cache = location["cache_dir"] if location.get("cache_dir") is not None else top.get("cache_dir", str, "default")
    cache = cache_option(cache)
    ws = Workspace(out=Path(location.get("out") or (rel(top.get("out", str)) or "runs")),
                   data_dir=location.get("data_dir") or rel(top.get("data_dir", str)),
                   cache_dir=cache if cache == "default" or location.get("cache_dir") is not None else rel(cache),
                   device=location.get("device"))
    report = location.get("report") or rel(top.get("report", str))
    spec = StudySpec(tasks=tuple(tasks), methods=top.list("methods", str, METHODS),
                     seeds=top.list("seeds", int, (0,)), compare=top.get("compare", bool, True), sweep=sweep,
                     ntk=tuple(ntk), claims=top.get("claims", bool, False),
                     split=top.get("split", str, "test"), tsne_samples=top.get("tsne_samples", int, 500),
                     gd_max_steps=top.get("gd_max_steps", int, 100_000),
                     report=Path(report) if report else ws.out / "study" / path.stem, source=str(path))
    return spec, ws


__all__ = ["NtkSpec", "StudySpec", "SweepSpec", "TaskSpec", "Workspace", "load_study", "PAPER_NORMS",
           "STUDY_SKIPS"]
