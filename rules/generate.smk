# SQL generation: one batched, greedy code path for the base model and every fine-tuned run.


rule generate_sql:
    input:
        prompts=get_generation_prompts,
        model="results/model/base_model.json",
        weights=get_weights,
        # A change to the generation code (the engine, the stop rule, loading) regenerates every
        # model's SQL: minutes per model on a GPU, longer on a CPU. Also for a change to another
        # module of these folders (spider/scoring.py, say): see package_code.
        code=package_code(
            "spider", "inference", "model", modules=["files", "gpus", "logs"]
        ),
    output:
        "results/{model}/spider_predictions.jsonl",
    log:
        "results/logs/generate_sql/{model}.log",
    benchmark:
        "results/benchmarks/generate_sql/{model}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        max_new_tokens=config["generation"]["max_new_tokens"],
        batch_size=config["generation"]["batch_size"],
        cuda_graphs=config["generation"]["cuda_graphs"],
        sql_block=config["generation"]["sql_block"],
        quantization=get_model_quantization,
        dtype=config["dtype"],
        rehearse_t4=config["rehearse_t4"],
    script:
        "../workflow_scripts/generate_sql.py"
