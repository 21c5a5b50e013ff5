"""Rule generate_sql: greedy SQL for every prompt, base model or fine-tuned run alike."""

import torch

from lora_tradeoff.files import read_jsonl, write_jsonl
from lora_tradeoff.gpus import claim_gpu
from lora_tradeoff.logs import peak_gpu_memory, rule_logger
from lora_tradeoff.model.loading import load_from_manifest
from lora_tradeoff.model.precision import rehearse_t4
from lora_tradeoff.spider.generation import generate_sql

log = rule_logger(snakemake.log[0], f"generate_sql[{snakemake.wildcards.model}]")
if (gpu := claim_gpu()) is not None:  # several GPUs: this job's own (lora_tradeoff/gpus.py)
    log.info("on GPU %s", gpu)
torch.set_num_threads(snakemake.threads)
if rehearse_t4(snakemake.params.rehearse_t4):
    log.info("T4 rehearsal: capability 7.5, no flash/cuDNN attention, 15 GiB cap")
weights = snakemake.input.weights[0] if snakemake.input.weights else None
model, tokenizer = load_from_manifest(
    snakemake.input.model, weights, quantization=snakemake.params.quantization, dtype=snakemake.params.dtype
)
log.info(
    "model on %s in %s (dtype: %s), fine-tuned weights %s", model.device, model.dtype, snakemake.params.dtype, weights
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
