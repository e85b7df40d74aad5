"""LoRA via PEFT (paper: r = 8, alpha = 8, A random, B = 0, head trainable).

The adapted modules are PEFT's own choice per architecture (``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``:
the query and value projections for BERT / RoBERTa / Llama / Qwen2, GPT-2's fused ``c_attn``) unless
``targets`` names them. Only the backbone is wrapped, so ``clf.head`` stays a plain trainable ``nn.Linear`` and
``clf.backbone``'s trainable parameters are exactly the LoRA factors — the parameters the LoRA eNTK is taken over.
"""

from __future__ import annotations

import torch

from ..config import ConfigError
from ..model import Classifier

# query/value projections of encoder families PEFT's mapping does not list
_QV_NAMES = {"distilbert": ["q_lin", "v_lin"], "mpnet": ["q", "v"]}


def lora_target_modules(backbone, targets: str | None = None) -> list[str]:
    """Module names to adapt: ``targets`` (comma-separated) if given, else PEFT's mapping for the model type."""
    if targets:
        return [t.strip() for t in targets.split(",") if t.strip()]
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

    model_type = getattr(backbone.config, "model_type", "bert")
    found = PEFT_TARGETS.get(model_type) or _QV_NAMES.get(model_type)
    if not found:
        raise ConfigError(f"no default LoRA target modules for model type {model_type!r}: name them with "
                          "--lora-targets (e.g. q_proj,v_proj)")
    return list(found)


def apply_lora(clf: Classifier, r: int = 8, alpha: int = 8, dropout: float = 0.0, seed: int = 0,
               targets: str | None = None) -> Classifier:
    """Wrap ``clf.backbone`` with LoRA adapters (in place) and freeze everything in the backbone but the adapters.

    The adapters' A matrices are initialised under ``torch.manual_seed(seed)`` (B = 0), so logits at initialisation
    are exactly those of the unwrapped model. ``targets``: see :func:`lora_target_modules`.
    """
    from peft import LoraConfig, get_peft_model

    modules = lora_target_modules(clf.backbone, targets)
    # GPT-2's projections are Conv1D layers (weight stored transposed): say so rather than let PEFT warn and fix it
    conv1d = any(type(m).__name__ == "Conv1D" and n.rsplit(".", 1)[-1] in modules
                 for n, m in clf.backbone.named_modules())
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", target_modules=modules,
                        fan_in_fan_out=conv1d)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        clf.backbone = get_peft_model(clf.backbone, config)
    except ValueError as err:  # PEFT: "Target modules {...} not found in the base model"
        raise ConfigError(f"--lora-targets {','.join(modules)}: {str(err).splitlines()[0]}") from None
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
