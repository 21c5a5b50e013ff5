# What LoRA fine-tuning buys (Spider execution accuracy) and costs (MMLU 4-shot) an LLM.
# Stages: rules/acquire.smk -> format.smk -> train.smk / generate.smk -> score.smk,
# mmlu.smk -> report.smk. All logic is in the lora_tradeoff package; see README.md.


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/acquire.smk"
include: "rules/format.smk"
include: "rules/train.smk"
include: "rules/generate.smk"
include: "rules/score.smk"
include: "rules/mmlu.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
