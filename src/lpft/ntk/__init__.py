"""Empirical NTK of LP-FT classifiers (paper Prop. 4.1): Theta = P + F, exact over all trainable backbone
parameters, computed with C vector-Jacobian products per sample (:mod:`.gradients`), streamed in bounded memory,
resumable (:mod:`.kernels`), with Table-2 statistics (:mod:`.stats`) and figures (:mod:`.plots`).

Example (tiny random BERT; see ``docs/ntk.md``)::

    >>> import torch
    >>> from transformers import BertConfig
    >>> from lpft.model import Classifier
    >>> cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    ...                  vocab_size=50)
    >>> clf = Classifier.from_config(cfg, num_labels=2)
    >>> train = {"input_ids": torch.tensor([[2, 7, 9, 3], [2, 5, 3, 0]]),
    ...          "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    >>> k = compute_kernels(clf, train)
    >>> numerical_rank(k.full_train) <= 4
    True
"""

from .gradients import DEFAULT_MEMORY_BUDGET, LogitGradients, sample_rows
from .kernels import Kernels, compute_kernels, compute_kernels_to_dir, load_kernels, pretrain_kernel
from .stats import KernelRegression, frobenius_norm, ft_ratio, kernel_regression, numerical_rank, residuals

__all__ = ["DEFAULT_MEMORY_BUDGET", "LogitGradients", "sample_rows", "Kernels", "compute_kernels",
           "compute_kernels_to_dir", "load_kernels", "pretrain_kernel", "KernelRegression", "frobenius_norm",
           "ft_ratio", "kernel_regression", "numerical_rank", "residuals"]
