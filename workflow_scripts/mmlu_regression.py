"""Rule mmlu_regression: accuracy per category and model, change vs base, paired statistics."""

import pandas as pd

from lora_tradeoff.logs import rule_logger
from lora_tradeoff.stats import regression_table

log = rule_logger(snakemake.log[0], "mmlu_regression")
scored = {model: pd.read_csv(path) for model, path in zip(snakemake.params.models, snakemake.input.scored, strict=True)}
table = regression_table(scored, base="base", n_resamples=snakemake.params.resamples, seed=snakemake.params.seed)
table.to_csv(snakemake.output[0], index=False)
log.info("\n%s", table.to_string(index=False))
