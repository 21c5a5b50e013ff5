# Format Spider for chat: one formatter serves training (with the gold SQL as the
# assistant turn) and inference (zero-shot, or few-shot with fixed train examples).


rule select_fewshot_examples:
    input:
        train="results/data/spider/train.json",
        tables="results/data/spider/tables.json",
    output:
        "results/spider/fewshot_examples.json",
    log:
        "results/logs/select_fewshot_examples.log",
    benchmark:
        "results/benchmarks/select_fewshot_examples.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        n_shot=config["prompt"]["n_shot"],
        seed=config["prompt"]["fewshot_seed"],
        max_tables=config["prompt"]["fewshot_max_tables"],
    script:
        "../workflow_scripts/select_fewshot_examples.py"


rule format_spider_prompts:
    input:
        split="results/data/spider/dev.json",
        tables="results/data/spider/tables.json",
        databases="results/data/spider/databases.json",
        examples=get_fewshot_examples_input,
        model="results/model/base_model.json",
    output:
        prompts="results/spider/prompts/{style}.jsonl",
        dropped="results/spider/prompts/{style}.dropped.jsonl",
    log:
        "results/logs/format_spider_prompts/{style}.log",
    benchmark:
        "results/benchmarks/format_spider_prompts/{style}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        system=config["prompt"]["system"],
        system_role=config["prompt"]["system_role"],
        user_template=get_user_template,
        max_seq_len=config["prompt"]["max_seq_len"],
        limit=config["spider"]["dev_limit"],
        seed=config["spider"]["dev_seed"],
    script:
        "../workflow_scripts/format_spider.py"


rule format_spider_train:
    input:
        split="results/data/spider/train.json",
        tables="results/data/spider/tables.json",
        databases="results/data/spider/databases.json",
        model="results/model/base_model.json",
    output:
        prompts="results/spider/sft_train.jsonl",
        dropped="results/spider/sft_train.dropped.jsonl",
    log:
        "results/logs/format_spider_train.log",
    benchmark:
        "results/benchmarks/format_spider_train.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        system=config["prompt"]["system"],
        system_role=config["prompt"]["system_role"],
        user_template=get_user_template,
        max_seq_len=config["prompt"]["max_seq_len"],
        limit=config["spider"]["train_limit"],
        seed=config["spider"]["train_seed"],
    script:
        "../workflow_scripts/format_spider.py"
