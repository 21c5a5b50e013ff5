import sys

from snakemake.utils import validate

# The Snakefile imports lora_tradeoff from this repository. Rule scripts find it
# through the symlink workflow_scripts/lora_tradeoff, because Snakemake puts a
# script's own folder on sys.path (locally, in conda envs and on cluster nodes).
sys.path.insert(0, workflow.basedir)

from lora_tradeoff.config_check import config_problems

_problems = config_problems(
    config, workflow.source_path("../schemas/config.schema.yaml")
)
if _problems:
    raise WorkflowError(
        "Invalid configuration (config.yaml or --config/--configfile):\n  "
        + "\n  ".join(_problems)
    )
# Fills the schema's defaults (the check above already passed).
validate(config, schema="../schemas/config.schema.yaml")


RUNS = {run["name"]: run for run in config["training"]["runs"]}


wildcard_constraints:
    style="few_shot|zero_shot",
    run="|".join(RUNS),


def get_final_outputs():
    return [
        "results/spider/prompts/few_shot.jsonl",
        "results/spider/prompts/zero_shot.jsonl",
        "results/spider/sft_train.jsonl",
        "results/data/mmlu/test.jsonl",
    ]


# Keys of config.spider that choose which questions are used, not where Spider comes
# from: changing them must not re-acquire the data.
SPIDER_SELECTION_KEYS = ("dev_limit", "dev_seed", "train_limit", "train_seed")


def get_spider_source(wildcards):
    return {
        key: value
        for key, value in config["spider"].items()
        if key not in SPIDER_SELECTION_KEYS
    }


def get_fewshot_examples_input(wildcards):
    """Only the few-shot prompts depend on the chosen train examples."""
    return (
        ["results/spider/fewshot_examples.json"]
        if wildcards.style == "few_shot"
        else []
    )


def get_user_template(wildcards):
    """A function, so Snakemake does not read {schema}/{question} as wildcards."""
    return config["prompt"]["user_template"]
