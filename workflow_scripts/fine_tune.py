"""Rule fine_tune: one run (LoRA, QLoRA or full fine-tuning) from its config entry (resumes from checkpoints)."""

from pathlib import Path

from lora_tradeoff.model.job import start_model_job
from lora_tradeoff.model.source import read_manifest
from lora_tradeoff.training.run import RunSpec, fine_tune

log = start_model_job(
    snakemake.log[0], f"fine_tune[{snakemake.wildcards.run}]", snakemake.threads, snakemake.params.rehearse_t4
)
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
