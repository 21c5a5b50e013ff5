"""Rule export_checkpoint: the adapter a run kept after one of its eval_steps, as its own folder."""

from pathlib import Path

from lora_tradeoff.logs import rule_logger
from lora_tradeoff.training import export_step_adapter

log = rule_logger(snakemake.log[0], f"export_checkpoint[{snakemake.wildcards.run}_step{snakemake.wildcards.step}]")
export_step_adapter(Path(snakemake.input.hyperparams).parent, int(snakemake.wildcards.step), Path(snakemake.output[0]))
log.info("adapter after step %s -> %s", snakemake.wildcards.step, snakemake.output[0])
