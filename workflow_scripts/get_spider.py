"""Rule get_spider: acquire Spider from the configured source into results/data/spider."""

from pathlib import Path

from lora_tradeoff.logs import rule_logger
from lora_tradeoff.spider.data import acquire_spider

log = rule_logger(snakemake.log[0], "get_spider")
counts = acquire_spider(snakemake.params.source, Path(snakemake.output.dev).parent)
log.info("spider acquired: %s", counts)
if counts["missing_databases"]:
    log.warning(
        "%d dev database(s) missing: their questions will be scored as skipped (see databases.json)",
        counts["missing_databases"],
    )
