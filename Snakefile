# What LoRA fine-tuning buys (Spider execution accuracy) and costs (MMLU 4-shot) an LLM.
# Stages: rules/acquire.smk -> format.smk -> train.smk / generate.smk -> score.smk,
# mmlu.smk -> report.smk. All logic is in the lora_tradeoff package; see README.md.

import os

# Threads that wait for work sleep instead of spinning (GNU OpenMP, read when torch loads).
# On a busy 2-core machine, torch's two spinning threads took the cores from the thread with
# the work: a decode step of SmolLM2 took 1.1-4.3 s against 0.21 s when waiting threads sleep,
# a 2,400-token prefill 14.6 s against 8.9 s (docs/speed.md, "Speed on a CPU"). Set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
