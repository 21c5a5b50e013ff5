"""Rule report: summary tables, failure examples and figures of every model and run."""

from pathlib import Path

from lora_tradeoff.logs import rule_logger
from lora_tradeoff.report.build import write_report
from lora_tradeoff.report.inputs import load_inputs

log = rule_logger(snakemake.log[0], "report")
params = snakemake.params
inputs = load_inputs(
    spider_scored=dict(zip(params.models, snakemake.input.spider_scored, strict=True)),
    spider_summary=dict(zip(params.models, snakemake.input.spider_summary, strict=True)),
    mmlu_scored=dict(zip(params.mmlu_models, snakemake.input.mmlu_scored, strict=True)),
    regression=snakemake.input.regression,
    hyperparams=dict(zip(params.runs, snakemake.input.hyperparams, strict=True)),
    train_logs=dict(zip(params.runs, snakemake.input.train_logs, strict=True)),
    model_manifest=snakemake.input.model,
)
summary = write_report(
    inputs,
    out_dir=Path(snakemake.output.summary_md).parent,
    baseline=params.baseline,
    prompt_styles=params.prompt_styles,
    n_resamples=params.resamples,
    seed=params.seed,
    replicates=params.replicates,
    checkpoints=params.checkpoints,
    n_shot=params.n_shot,
    sweeps=params.sweeps,
)
log.info("trade-off per run (points vs %s): %s", params.baseline, summary["tradeoff"])
