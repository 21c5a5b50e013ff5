# LoRA / QLoRA fine-tuning, one job per run in config.training.runs.


rule train_lora:
    input:
        train="results/spider/sft_train.jsonl",
        model="results/model/base_model.json",
    output:
        # Checkpoints go to results/runs/{run}/checkpoints/, deliberately not an
        # output: Snakemake deletes the outputs of a failed or killed job, and the
        # checkpoints are what lets the rerun continue instead of starting over.
        adapter=directory("results/runs/{run}/adapter"),
        train_log="results/runs/{run}/train_log.csv",
        hyperparams="results/runs/{run}/hyperparams.json",
    log:
        "results/logs/train_lora/{run}.log",
    benchmark:
        "results/benchmarks/train_lora/{run}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        **get_run_params(),
    script:
        "../workflow_scripts/train_lora.py"


# The adapter a run kept after one of its eval_steps, as an evaluated model's adapter
# (copied: the kept folder is not an output of train_lora, which cannot name per-run outputs).
rule export_checkpoint:
    input:
        hyperparams="results/runs/{run}/hyperparams.json",
    output:
        directory("results/runs/{run}/adapter-step{step}"),
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
