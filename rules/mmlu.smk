# MMLU 4-shot regression suite: one fixed question list, scored for every model.


rule build_mmlu_suite:
    input:
        test="results/data/mmlu/test.jsonl",
    output:
        "results/mmlu/suite.csv",
    log:
        "results/logs/build_mmlu_suite.log",
    benchmark:
        "results/benchmarks/build_mmlu_suite.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        suite=config["mmlu"]["suite"],
        per_category=mmlu_sample_param("per_category"),
        categories=mmlu_sample_param("categories"),
        seed=mmlu_sample_param("seed"),
    script:
        "../workflow_scripts/build_mmlu_suite.py"


rule score_mmlu:
    input:
        suite="results/mmlu/suite.csv",
        dev="results/data/mmlu/dev.jsonl",
        model="results/model/base_model.json",
        weights=get_weights,
        # A change to the MMLU code (prompts, truncation, the engine, loading) rescores every
        # model: minutes per model on a GPU. Also for a change to another module of these
        # folders (mmlu/suite.py, say): see package_code.
        code=package_code(
            "mmlu", "inference", "model", modules=["files", "gpus", "logs"]
        ),
    output:
        "results/{model}/mmlu_scored.csv",
    log:
        "results/logs/score_mmlu/{model}.log",
    benchmark:
        "results/benchmarks/score_mmlu/{model}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        n_shot=config["mmlu"]["n_shot"],
        mode=config["mmlu"]["mode"],
        use_chat_template=config["mmlu"]["use_chat_template"],
        share_prefix=config["mmlu"]["share_prefix"],
        quantization=get_model_quantization,
        dtype=config["dtype"],
        rehearse_t4=config["rehearse_t4"],
        batch_size=config["mmlu"]["batch_size"],
        pad_tolerance=config["mmlu"]["pad_tolerance"],
    script:
        "../workflow_scripts/score_mmlu.py"


rule mmlu_regression:
    input:
        scored=get_mmlu_scored,
        code=package_code(modules=["logs", "stats"]),
    output:
        "results/mmlu/regression.csv",
    log:
        "results/logs/mmlu_regression.log",
    benchmark:
        "results/benchmarks/mmlu_regression.tsv"
    conda:
        "../envs/eval.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=mmlu_models(),
        resamples=config["mmlu"]["bootstrap_resamples"],
        seed=config["mmlu"]["seed"],
    script:
        "../workflow_scripts/mmlu_regression.py"
