"""Rule score_spider: execution accuracy of one model's predictions."""

import json

from lora_tradeoff.files import read_jsonl
from lora_tradeoff.logs import rule_logger
from lora_tradeoff.spider.scoring import score_predictions, summarize_scores

log = rule_logger(snakemake.log[0], f"score_spider[{snakemake.wildcards.model}]")
predictions = read_jsonl(snakemake.input.predictions)
evaluated = {row["id"] for row in predictions}
dev = [item for item in json.loads(open(snakemake.input.dev).read()) if item["id"] in evaluated]
databases = {db: entry["path"] for db, entry in json.loads(open(snakemake.input.databases).read()).items()}
scored = score_predictions(
    dev,
    predictions,
    databases,
    mode=snakemake.params.mode,
    timeout_s=snakemake.params.timeout_s,
    row_cap=snakemake.params.row_cap,
    n_workers=snakemake.threads,
    sql_block=snakemake.params.sql_block,
)
scored.to_csv(snakemake.output.scored, index=False)
summary = {**summarize_scores(scored), "sql_block": snakemake.params.sql_block}
with open(snakemake.output.summary, "w") as handle:
    json.dump({"model": snakemake.wildcards.model, **summary}, handle, indent=2)
log.info("summary: %s", summary)
