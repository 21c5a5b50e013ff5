"""Rule build_mmlu_suite: the fixed MMLU question list every model is scored on."""

import collections

from lora_tradeoff.files import read_jsonl
from lora_tradeoff.logs import rule_logger
from lora_tradeoff.mmlu.data import write_suite_csv
from lora_tradeoff.mmlu.suite import select_suite

log = rule_logger(snakemake.log[0], "build_mmlu_suite")
suite = select_suite(
    read_jsonl(snakemake.input.test),
    suite=snakemake.params.suite,
    per_category=snakemake.params.per_category,
    categories=snakemake.params.categories,
    seed=snakemake.params.seed,
)
write_suite_csv(suite, snakemake.output[0])
log.info("suite: %s", dict(collections.Counter(row["category"] for row in suite)))
