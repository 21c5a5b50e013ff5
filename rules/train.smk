# Fine-tuning (LoRA, QLoRA or full), one job per run in config.training.runs.


# No package code input, unlike the evaluation rules: any edit to lora_tradeoff/training/ or
# model/ would retrain every run (hours for a large model). A change to the training code that
# must retrain: snakemake --forcerun fine_tune.
rule fine_tune:
    input:
        train="results/spider/sft_train.jsonl",
        model="results/model/base_model.json",
    output:
        # Checkpoints go to results/runs/{run}/checkpoints/, deliberately not an
        # output: Snakemake deletes the outputs of a failed or killed job, and the
        # checkpoints are what lets the rerun continue instead of starting over.
        # The fine-tuned weights: a PEFT adapter (LoRA/QLoRA) or a whole model folder
        # (full fine-tuning); the evaluation rules take either (lora_tradeoff/model/loading.py).
        weights=directory("results/runs/{run}/weights"),
        train_log="results/runs/{run}/train_log.csv",
        hyperparams="results/runs/{run}/hyperparams.json",
    log:
        "results/logs/fine_tune/{run}.log",
    benchmark:
        "results/benchmarks/fine_tune/{run}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        **get_run_params(),
        # The precision setting, resolved on the job's own device (lora_tradeoff/model/precision.py).
        dtype=config["dtype"],
        rehearse_t4=config["rehearse_t4"],
    script:
        "../workflow_scripts/fine_tune.py"


# The weights a run kept after one of its eval_steps, as an evaluated model's weights
# (copied: the kept folder is not an output of fine_tune, which cannot name per-run outputs).
rule export_checkpoint:
    input:
        hyperparams="results/runs/{run}/hyperparams.json",
    output:
        directory("results/runs/{run}/weights-step{step}"),
    log:
        "results/logs/export_checkpoint/{run}_step{step}.log",
    benchmark:
        "results/benchmarks/export_checkpoint/{run}_step{step}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/export_checkpoint.py"
