"""Rule select_fewshot_examples: the fixed train examples of the few-shot prompt."""

import json

from lora_tradeoff.logs import rule_logger
from lora_tradeoff.spider.prompts import SchemaLookup, select_fewshot_examples

log = rule_logger(snakemake.log[0], "select_fewshot_examples")
train = json.loads(open(snakemake.input.train).read())
tables = json.loads(open(snakemake.input.tables).read())
# Train databases are absent from the reduced data: their schemas come from tables.json.
examples = select_fewshot_examples(
    train, SchemaLookup(tables, {}), snakemake.params.n_shot, snakemake.params.seed, snakemake.params.max_tables
)
with open(snakemake.output[0], "w") as handle:
    json.dump(examples, handle, indent=2)
log.info("few-shot examples: %s", [example["id"] for example in examples])
