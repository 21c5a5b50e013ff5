# The report: summary tables, failure examples and figures of every model and run,
# built into results/report.html by `snakemake --report results/report.html`.


rule report:
    input:
        spider_scored=expand(
            "results/{model}/spider_scored.csv", model=evaluated_models()
        ),
        spider_summary=expand(
            "results/{model}/spider_summary.json", model=evaluated_models()
        ),
        mmlu_scored=expand("results/{model}/mmlu_scored.csv", model=mmlu_models()),
        regression="results/mmlu/regression.csv",
        hyperparams=expand("results/runs/{run}/hyperparams.json", run=RUNS),
        train_logs=expand("results/runs/{run}/train_log.csv", run=RUNS),
        model="results/model/base_model.json",
        # A change to the report code must rebuild the report (seconds).
        code=package_code(
            "report", "spider", "training", modules=["config_check", "logs", "stats"]
        ),
    output:
        frontier_png=report(
            "results/report/frontier.png",
            caption="../report/frontier.rst",
            category="1. Frontier",
            labels={"figure": "trade-off frontier", "format": "PNG"},
        ),
        frontier_svg=report(
            "results/report/frontier.svg",
            caption="../report/frontier.rst",
            category="1. Frontier",
            labels={"figure": "trade-off frontier", "format": "SVG"},
        ),
        # Shown inside the report: an HTML result opens in the report's frame, while a Markdown or
        # JSON result is only a download link (one Chromium does not follow). Entries of a category
        # are sorted by their labels, hence the numbers.
        headline_html=report(
            "results/report/headline.html",
            caption="../report/summary.rst",
            category="2. Summary",
            labels={"table": "1. headline"},
        ),
        summary_html=report(
            "results/report/summary.html",
            caption="../report/summary.rst",
            category="2. Summary",
            labels={"table": "2. every table"},
        ),
        failures_html=report(
            "results/report/failure_examples.html",
            caption="../report/failure_examples.rst",
            category="5. Failure examples",
            labels={"table": "failure examples"},
        ),
        summary_md="results/report/summary.md",
        summary_json="results/report/summary.json",
        failures_md="results/report/failure_examples.md",
        failures_json="results/report/failure_examples.json",
        tradeoff_png=report(
            "results/report/tradeoff.png",
            caption="../report/tradeoff.rst",
            category="3. Trade-off",
            labels={"figure": "1. per run: Δ Spider EX vs Δ MMLU", "format": "PNG"},
        ),
        tradeoff_svg=report(
            "results/report/tradeoff.svg",
            caption="../report/tradeoff.rst",
            category="3. Trade-off",
            labels={"figure": "1. per run: Δ Spider EX vs Δ MMLU", "format": "SVG"},
        ),
        tradeoff_curve_png=report(
            "results/report/tradeoff_curve.png",
            caption="../report/tradeoff_curve.rst",
            category="3. Trade-off",
            labels={"figure": "2. along training", "format": "PNG"},
        ),
        tradeoff_curve_svg=report(
            "results/report/tradeoff_curve.svg",
            caption="../report/tradeoff_curve.rst",
            category="3. Trade-off",
            labels={"figure": "2. along training", "format": "SVG"},
        ),
        spider_hardness_png=report(
            "results/report/spider_hardness.png",
            caption="../report/spider_hardness.rst",
            category="4. Details",
            labels={"figure": "Spider EX by hardness", "format": "PNG"},
        ),
        spider_hardness_svg=report(
            "results/report/spider_hardness.svg",
            caption="../report/spider_hardness.rst",
            category="4. Details",
            labels={"figure": "Spider EX by hardness", "format": "SVG"},
        ),
        mmlu_accuracy_png=report(
            "results/report/mmlu_accuracy.png",
            caption="../report/mmlu_accuracy.rst",
            category="4. Details",
            labels={"figure": "MMLU accuracy by category", "format": "PNG"},
        ),
        mmlu_accuracy_svg=report(
            "results/report/mmlu_accuracy.svg",
            caption="../report/mmlu_accuracy.rst",
            category="4. Details",
            labels={"figure": "MMLU accuracy by category", "format": "SVG"},
        ),
        train_loss_png=report(
            "results/report/train_loss.png",
            caption="../report/train_loss.rst",
            category="4. Details",
            labels={"figure": "training loss", "format": "PNG"},
        ),
        train_loss_svg=report(
            "results/report/train_loss.svg",
            caption="../report/train_loss.rst",
            category="4. Details",
            labels={"figure": "training loss", "format": "SVG"},
        ),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=evaluated_models(),
        mmlu_models=mmlu_models(),
        runs=list(RUNS),
        replicates=REPLICATES,
        sweeps=SWEEPS,
        checkpoints=CHECKPOINTS,
        baseline="base",
        prompt_styles={model: prompt_style(model) for model in evaluated_models()},
        resamples=config["mmlu"]["bootstrap_resamples"],
        seed=config["mmlu"]["seed"],
        n_shot=config["mmlu"]["n_shot"],
    script:
        "../workflow_scripts/report.py"
