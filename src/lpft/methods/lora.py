"""LoRA on the query and value projections via PEFT (paper: r = 8, alpha = 8, A random, B = 0, head trainable).

Only the backbone is wrapped, so ``clf.head`` stays a plain trainable ``nn.Linear`` and ``clf.backbone``'s trainable
parameters are exactly the LoRA factors — the parameters the LoRA eNTK is taken over.
"""

from __future__ import annotations

import torch

from ..model import Classifier

# module names of the attention query/value projections across common encoder families
_QV_NAMES = {"bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
             "electra": ["query", "value"], "deberta-v2": ["query_proj", "value_proj"],
             "distilbert": ["q_lin", "v_lin"], "mpnet": ["q", "v"]}


def lora_target_modules(backbone) -> list[str]:
    model_type = getattr(backbone.config, "model_type", "bert")
    return _QV_NAMES.get(model_type, ["query", "value"])


def apply_lora(clf: Classifier, r: int = 8, alpha: int = 8, dropout: float = 0.0, seed: int = 0) -> Classifier:
    """Wrap ``clf.backbone`` with LoRA adapters (in place) and freeze everything in the backbone but the adapters.

    The adapters' A matrices are initialised under ``torch.manual_seed(seed)`` (B = 0), so logits at initialisation
    are exactly those of the unwrapped model.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=lora_target_modules(clf.backbone))
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        clf.backbone = get_peft_model(clf.backbone, config)
    finally:
        torch.random.set_rng_state(state)
    for p in clf.head.parameters():
        p.requires_grad_(True)
    return clf


def merge_lora(clf: Classifier) -> Classifier:
    """Fold the adapters into the backbone weights (for saving a plain checkpoint); returns ``clf``."""
    if hasattr(clf.backbone, "merge_and_unload"):
        clf.backbone = clf.backbone.merge_and_unload()
    return clf
