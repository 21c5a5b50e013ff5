"""Rule export_checkpoint: the weights a run kept after one of its eval_steps, as its own folder."""

from pathlib import Path

from lora_tradeoff.logs import rule_logger
from lora_tradeoff.training.run import export_step_weights

log = rule_logger(snakemake.log[0], f"export_checkpoint[{snakemake.wildcards.run}_step{snakemake.wildcards.step}]")
export_step_weights(Path(snakemake.input.hyperparams).parent, int(snakemake.wildcards.step), Path(snakemake.output[0]))
log.info("weights after step %s -> %s", snakemake.wildcards.step, snakemake.output[0])
