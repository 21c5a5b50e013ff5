"""Rule generate_sql: greedy SQL for every prompt, base model or fine-tuned run alike."""

from lora_tradeoff.files import read_jsonl, write_jsonl
from lora_tradeoff.logs import peak_gpu_memory
from lora_tradeoff.model.job import start_evaluation_job
from lora_tradeoff.spider.generation import generate_sql

log, model, tokenizer = start_evaluation_job(snakemake, "generate_sql")
rows = generate_sql(
    model,
    tokenizer,
    read_jsonl(snakemake.input.prompts),
    max_new_tokens=snakemake.params.max_new_tokens,
    batch_size=snakemake.params.batch_size,
    cuda_graphs=snakemake.params.cuda_graphs,
    sql_block=snakemake.params.sql_block,
    progress=log.info,
)
write_jsonl(rows, snakemake.output[0])
seconds = sum(row["seconds"] for row in rows)
log.info(
    "%d items in %.1f s: %.2f items/s, %.1f new tokens/s%s",
    len(rows),
    seconds,
    len(rows) / seconds if seconds else float("nan"),
    sum(row["new_tokens"] for row in rows) / seconds if seconds else float("nan"),
    peak_gpu_memory(),
)
