"""Rule score_mmlu: n-shot MMLU answers of one model (base or fine-tuned) on the suite."""

import pandas as pd

from lora_tradeoff.files import read_jsonl
from lora_tradeoff.logs import peak_gpu_memory
from lora_tradeoff.mmlu.data import read_suite_csv
from lora_tradeoff.mmlu.scoring import format_prompt, score_mmlu, target_delimiter
from lora_tradeoff.mmlu.suite import group_by_subject
from lora_tradeoff.model.job import start_evaluation_job

log, model, tokenizer = start_evaluation_job(snakemake, "score_mmlu")
suite = read_suite_csv(snakemake.input.suite)
dev = group_by_subject(read_jsonl(snakemake.input.dev))
use_chat = snakemake.params.use_chat_template
prompts = [format_prompt(item, dev, snakemake.params.n_shot, use_chat, tokenizer) for item in suite]
rows = score_mmlu(
    model,
    tokenizer,
    suite,
    prompts,
    batch_size=snakemake.params.batch_size,
    mode=snakemake.params.mode,
    delimiter=target_delimiter(use_chat),
    share_prefix=snakemake.params.share_prefix,
    pad_tolerance=snakemake.params.pad_tolerance,
    progress=log.info,
)
scored = pd.DataFrame(rows)
scored.to_csv(snakemake.output[0], index=False)
if truncated := int((scored["truncated_tokens"] > 0).sum()):
    log.warning(
        "%d of %d prompts were longer than the model's context and lost their first tokens (up to %d), "
        "as lm-evaluation-harness truncates; fewer shots (mmlu.n_shot) or a longer-context model avoid it",
        truncated,
        len(scored),
        scored["truncated_tokens"].max(),
    )
log.info(
    "accuracy by category: %s%s",
    scored.groupby("category")["correct"].mean().round(3).to_dict(),
    peak_gpu_memory(),
)
