"""Rule train_lora: one LoRA/QLoRA run from its config entry (resumes from checkpoints)."""

import json
from pathlib import Path

import torch

from lora_tradeoff.logs import rule_logger
from lora_tradeoff.training import RunSpec, train_lora

log = rule_logger(snakemake.log[0], f"train_lora[{snakemake.wildcards.run}]")
torch.set_num_threads(snakemake.threads)
spec = RunSpec.from_config(snakemake.wildcards.run, snakemake.params.run)
train_lora(
    spec,
    model_dir=Path(json.loads(open(snakemake.input.model).read())["model_dir"]),
    train_jsonl=Path(snakemake.input.train),
    out_dir=Path(snakemake.output.hyperparams).parent,
    progress=log.info,
)
