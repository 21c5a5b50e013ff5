"""Rules format_spider_prompts / format_spider_train: Spider items -> chat JSONL."""

import json

from transformers import AutoTokenizer

from lora_tradeoff.files import write_jsonl
from lora_tradeoff.logs import rule_logger
from lora_tradeoff.model.source import read_manifest
from lora_tradeoff.spider.prompts import format_split

log = rule_logger(snakemake.log[0], snakemake.rule)
training = snakemake.rule == "format_spider_train"
model_dir = read_manifest(snakemake.input.model)["model_dir"]
examples = json.loads(open(snakemake.input.examples[0]).read()) if snakemake.input.get("examples") else []
kept, dropped = format_split(
    items=json.loads(open(snakemake.input.split).read()),
    tables=json.loads(open(snakemake.input.tables).read()),
    databases=json.loads(open(snakemake.input.databases).read()),
    tokenizer=AutoTokenizer.from_pretrained(model_dir),
    system=snakemake.params.system,
    user_template=snakemake.params.user_template,
    max_seq_len=snakemake.params.max_seq_len,
    limit=snakemake.params.limit,
    seed=snakemake.params.seed,
    examples=examples,
    with_answer=training,
    system_role=snakemake.params.system_role,
)
write_jsonl(kept, snakemake.output.prompts)
write_jsonl(dropped, snakemake.output.dropped)
tokens = [row["n_tokens"] for row in kept]
log.info("%d items formatted (tokens: min %d, max %d)", len(kept), min(tokens), max(tokens))
if dropped:
    log.warning("%d items dropped: longer than prompt.max_seq_len=%d", len(dropped), snakemake.params.max_seq_len)
