# Execution accuracy: run predicted and gold SQL on the real database (read-only,
# time-limited) and compare results with the official Spider semantics.


rule score_spider:
    input:
        predictions="results/{model}/spider_predictions.jsonl",
        dev="results/data/spider/dev.json",
        databases="results/data/spider/databases.json",
        # A change to the scoring semantics must rescore every model (cheap).
        code=package_code("spider", modules=["files", "logs"]),
    output:
        scored="results/{model}/spider_scored.csv",
        summary="results/{model}/spider_summary.json",
    log:
        "results/logs/score_spider/{model}.log",
    benchmark:
        "results/benchmarks/score_spider/{model}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        mode=config["scoring"]["mode"],
        timeout_s=config["scoring"]["timeout_s"],
        row_cap=config["scoring"]["row_cap"],
        sql_block=config["generation"]["sql_block"],
    script:
        "../workflow_scripts/score_spider.py"
