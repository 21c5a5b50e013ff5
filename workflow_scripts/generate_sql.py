"""Rule generate_sql: greedy SQL for every prompt, base model or fine-tuned run alike."""

from lora_tradeoff.files import read_jsonl, write_jsonl
from lora_tradeoff.logs import peak_gpu_memory
from lora_tradeoff.model.job import load_evaluated_model, start_model_job
from lora_tradeoff.spider.generation import generate_sql

log = start_model_job(
    snakemake.log[0], f"generate_sql[{snakemake.wildcards.model}]", snakemake.threads, snakemake.params.rehearse_t4
)
model, tokenizer = load_evaluated_model(
    snakemake.input.model,
    snakemake.input.weights[0] if snakemake.input.weights else None,
    snakemake.params.quantization,
    snakemake.params.dtype,
    log,
)
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
