"""``lpft export``: a finished run as a folder usable with ``transformers`` and ``safetensors`` alone."""

from __future__ import annotations

import argparse

from ..config import ConfigError
from ._options import open_run

DESCRIPTION = ("Writes DIR (built under a temporary name, then swapped in): the backbone as a Hugging Face model "
               "folder (LoRA merged; --adapter: a PEFT adapter), the tokenizer, head.safetensors, labels.json, "
               "classifier.json (pooling, max length, temperature) and README.md with a loader needing only torch, "
               "transformers and safetensors.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a finished run folder")
    parser.add_argument("dir", help="the folder to write (a previous export there is replaced; any other non-empty "
                                    "folder is refused)")
    parser.add_argument("--adapter", action="store_true",
                        help="LoRA runs: write the PEFT adapter against the base model instead of merged weights")


def run(args: argparse.Namespace) -> int:
    from ..inference.export import export_run
    from ..outputs import check_output_folder, output_folder

    record = open_run(args.run)
    if args.adapter and not record.config.uses_lora:
        raise ConfigError(f"--adapter needs a LoRA run (lora or lp-lora); {args.run} is a {record.config.method} run")
    target = check_output_folder(args.dir, "export", "DIR", reads=[args.run])
    # built under a temporary name, then swapped in whole
    with output_folder(target, "export", "DIR", reads=[args.run]) as tmp:
        meta = export_run(args.run, tmp, adapter=args.adapter, shown_as=args.dir)
    kind = "PEFT adapter" if args.adapter else "Hugging Face model" + (" (LoRA merged)" if record.config.uses_lora
                                                                        else "")
    print(f"exported {record.config.method.upper()} on {record.config.task} as a {kind} with "
          f"{len(meta['labels'])} labels, pooling {meta['pooling']}, temperature {meta['temperature']:.4f}")
    print(f"folder: {target}  (loader: {target / 'README.md'})")
    return 0
