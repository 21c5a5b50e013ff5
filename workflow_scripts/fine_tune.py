"""Rule fine_tune: one LoRA/QLoRA run from its config entry (resumes from checkpoints)."""

from pathlib import Path

import torch

from lora_tradeoff.gpus import claim_gpu
from lora_tradeoff.logs import rule_logger
from lora_tradeoff.model.precision import rehearse_t4
from lora_tradeoff.model.source import read_manifest
from lora_tradeoff.training.run import RunSpec, fine_tune

log = rule_logger(snakemake.log[0], f"fine_tune[{snakemake.wildcards.run}]")
if (gpu := claim_gpu()) is not None:  # several GPUs: this job's own (lora_tradeoff/gpus.py)
    log.info("on GPU %s", gpu)
torch.set_num_threads(snakemake.threads)
if rehearse_t4(snakemake.params.rehearse_t4):
    log.info("T4 rehearsal: capability 7.5, no flash/cuDNN attention, 15 GiB cap")
# params: one {key: value} entry per key of the run's config, and dtype and rehearse_t4
# (rules/common.smk, get_run_params)
workflow_keys = ("dtype", "rehearse_t4")
run = {
    key: value for name, entry in snakemake.params.items() if name not in workflow_keys for key, value in entry.items()
}
spec = RunSpec.from_config(snakemake.wildcards.run, run)
fine_tune(
    spec,
    model_dir=Path(read_manifest(snakemake.input.model)["model_dir"]),
    train_jsonl=Path(snakemake.input.train),
    out_dir=Path(snakemake.output.hyperparams).parent,
    progress=log.info,
    dtype=snakemake.params.dtype,
)
