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
