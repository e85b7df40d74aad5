"""Export a finished run as a folder usable without lpft: ``transformers`` + ``safetensors`` (+ ``peft`` for adapters).

The folder holds::

    config.json, model.safetensors   the fine-tuned backbone as a standard Hugging Face model (LoRA merged in);
                                     with ``adapter=True`` instead adapter_config.json + adapter_model.safetensors,
                                     a PEFT adapter against the base model
    tokenizer files                  the run's tokenizer
    head.safetensors                 the classification head: weight (C, h), bias (C,)
    labels.json                      the label names, in the order of the head's rows
    classifier.json                  pooling, max_length, the fitted temperature, labels, base model, the source run
    README.md                        what is where and a short loader that reproduces lpft's probabilities

The loader in the README is the reference: the tests run it, in a process that never imports lpft, and compare its
probabilities with ``lpft predict``'s.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from ..io import save_tensors, write_json
from ..model.hub import load_tokenizer, resolve_model_path
from ..runs import RunRecord
from .inputs import is_pair_task
from .predictor import Predictor

#: the file every export has (an export folder is replaced only if it carries lpft's marker: ``lpft.outputs``)
METADATA = "classifier.json"


def _model_kwargs(backbone) -> str:
    """Extra ``from_pretrained`` arguments: BERT-like classes would otherwise add a randomly initialised pooler
    (unused, but reported as missing weights)."""
    accepts = inspect.signature(type(backbone).__init__).parameters
    return ", add_pooling_layer=False" if "add_pooling_layer" in accepts else ""


def _base_model(name: str) -> str:
    """The pre-trained model as ``from_pretrained`` takes it: an absolute path for local folders, else the hub name."""
    path = resolve_model_path(name)
    return str(Path(path).resolve()) if os.path.isdir(path) else path


LOADER = '''\
import json
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

FOLDER = {folder}
meta = json.load(open(f"{{FOLDER}}/classifier.json"))
tokenizer = AutoTokenizer.from_pretrained(FOLDER)
{model_line}
head = load_file(f"{{FOLDER}}/head.safetensors")


@torch.no_grad()
def predict_proba(texts, pairs=None, calibrated=False):
    """Probabilities (N, C), columns in the order of meta["labels"]; pairs: second segments of sentence pairs."""
    batch = tokenizer(texts, pairs, truncation=True, max_length=meta["max_length"], padding=True,
                      return_tensors="pt")
    mask = batch["attention_mask"]
    if meta["decoder"]:  # positions count real tokens only, so either padding side gives the same features
        batch["position_ids"] = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    hidden = model(**batch).last_hidden_state
    if meta["pooling"] == "mean":
        phi = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    else:  # the first or the last non-padding token, whichever side the tokenizer pads
        at = mask.argmax(1) if meta["pooling"] == "first" else (mask * torch.arange(mask.shape[1])).argmax(1)
        phi = hidden[torch.arange(len(hidden)), at]
    logits = phi @ head["weight"].T + head["bias"]
    return torch.softmax(logits / (meta["temperature"] if calibrated else 1.0), dim=-1)
'''

MODEL_LINE = "model = AutoModel.from_pretrained(FOLDER{kwargs}).eval()"
ADAPTER_LINE = ("from peft import PeftModel\n"
                "base = AutoModel.from_pretrained(meta[\"base_model\"]{kwargs})\n"
                "model = PeftModel.from_pretrained(base, FOLDER).eval()")


def loader_code(folder: str, adapter: bool, model_kwargs: str) -> str:
    """The loader snippet of an export's README (``folder`` as the user will refer to it)."""
    line = (ADAPTER_LINE if adapter else MODEL_LINE).format(kwargs=model_kwargs)
    return LOADER.format(folder=json.dumps(str(folder)), model_line=line)


def readme(record: RunRecord, meta: dict, code: str, adapter: bool) -> str:
    cfg = record.config
    pair = "" if not is_pair_task(record) else (
        "\nThe model was trained on sentence pairs: pass the first segments as `texts` and the second as `pairs`"
        + ("." if cfg.task == "files" else ", formatted as in lpft's docs/tasks.md.") + "\n")
    weights = ("`adapter_config.json`, `adapter_model.safetensors`: a PEFT LoRA adapter for the base model "
               f"`{meta['base_model']}` (needs `peft`)" if adapter else
               "`config.json`, `model.safetensors`: the fine-tuned backbone"
               + (" with the LoRA adapters merged into its weights" if cfg.uses_lora else ""))
    test = record.metrics.get("test", {})
    scores = ", ".join(f"{k} {v:.4f}" for k, v in test.items())
    return f"""# {cfg.method.upper()} classifier for `{cfg.task}` ({Path(cfg.model).name}, seed {cfg.seed})

Exported by `lpft export` from the run folder `{record.path}` (test: {scores}).

- {weights}
- tokenizer files: the tokenizer the run was trained with
- `head.safetensors`: the linear head, `weight` ({len(meta['labels'])}, h) and `bias`
- `labels.json`: the label names, in the order of the head's rows: {', '.join(meta['labels'])}
- `classifier.json`: pooling `{meta['pooling']}`, `max_length` {meta['max_length']}, temperature
  {meta['temperature']:.6g} (fitted on the validation split by `lpft calibrate`'s rule), the labels, the source run

## Loading it without lpft

```python
{code}```

```python
probs = predict_proba(["first text", "second text"])          # (N, C) tensor
labels = [meta["labels"][i] for i in probs.argmax(1)]
```
{pair}
`predict_proba` reproduces `lpft predict`'s probabilities to float32 rounding (~1e-6); `calibrated=True` divides the
logits by the fitted temperature first, as `lpft predict --calibrated` does. For many texts call it in batches.
"""


def export_run(run: str | Path | Predictor, folder: str | Path, adapter: bool = False,
               shown_as: str | None = None) -> dict:
    """Write the export of a finished run into ``folder`` (created if needed); returns the metadata written.

    ``shown_as`` is how the README's loader refers to the folder (default: ``folder`` as given). The caller decides
    atomicity (``lpft export`` builds the folder under a temporary name and swaps it in).
    """
    predictor = run if isinstance(run, Predictor) else Predictor(run, device="cpu")
    record, cfg = predictor.record, predictor.config
    if adapter and not cfg.uses_lora:
        raise ValueError(f"run {record.path} is a {cfg.method} run: --adapter needs a LoRA run (lora or lp-lora)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clf = record.classifier(merge_lora_weights=not adapter)
    if adapter:
        clf.backbone.save_pretrained(str(folder))  # PEFT: adapter_config.json + adapter_model.safetensors only
        backbone = clf.backbone.get_base_model()
    else:
        clf.backbone.save_pretrained(str(folder), safe_serialization=True)
        backbone = clf.backbone
    load_tokenizer(cfg.model).save_pretrained(str(folder))
    save_tensors(folder / "head.safetensors", {"weight": clf.head.weight, "bias": clf.head.bias},
                 {"pooling": predictor.pooling})
    labels = list(predictor.labels)
    write_json(folder / "labels.json", labels)
    meta = {"labels": labels, "pooling": predictor.pooling, "decoder": bool(clf.causal), "max_length": cfg.max_length,
            "temperature": predictor.temperature, "base_model": _base_model(cfg.model),
            "adapter": adapter, "text_columns": cfg.text_columns if cfg.task == "files" else None,
            "source": {"run": str(record.path), "task": cfg.task, "method": cfg.method, "model": cfg.model,
                       "seed": cfg.seed, "metrics": record.metrics}}
    write_json(folder / METADATA, meta)
    code = loader_code(shown_as or str(folder), adapter, _model_kwargs(backbone))
    (folder / "README.md").write_text(readme(record, meta, code, adapter))
    return meta
