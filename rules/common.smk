import os
import sys
from pathlib import Path

from snakemake.common.configfile import load_configfile
from snakemake.logging import logger
from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

# The Snakefile imports lora_tradeoff from this checkout, installed or not. The rule
# scripts import it as an installed package: from .venv (`make venv`), or from each
# conda env, whose post-deploy script (envs/install-package.sh) installs the checkout
# named here into the env it has just created. (Written, not read: the lint's envvars
# rule is about variables a workflow needs from its caller.)
sys.path.insert(0, workflow.basedir)
os.environ.update(LORA_TRADEOFF_SOURCE=workflow.basedir)

from lora_tradeoff.config_check import LORA_ONLY_KEYS, config_problems, load_schema
from lora_tradeoff.training.curve import expand_eval_steps
from lora_tradeoff.overlays import (
    Layer,
    apply_run_merge,
    layer_paths,
    locate_run_problems,
    source_name,
)
from lora_tradeoff.training.replicates import expand_seed_replicates
from lora_tradeoff.training.sweeps import expand_sweeps

# Snakemake replaced the run list of config.yaml by the last --configfile's; merge the files' own run
# lists by name instead (lora_tradeoff/overlays.py) and say what each overlay did to them.
_layers = [
    Layer(source_name(path), load_configfile(str(path)))
    for path in layer_paths(
        workflow.configfiles,
        workflow.overwrite_configfiles,
        workflow.config_settings.replace_workflow_config,
    )
]
_layers.append(Layer("--config", dict(workflow.config_settings.config)))
try:
    _run_changes = apply_run_merge(
        config,
        _layers,
        load_schema(workflow.source_path("../schemas/config.schema.yaml")),
    )
except ValueError as error:
    raise WorkflowError(f"Invalid configuration: {error}")
if workflow.is_main_process:
    for _change in _run_changes[1:]:  # the overlays (the first layer defined the runs)
        logger.info(_change.describe())

_problems = config_problems(
    config, workflow.source_path("../schemas/config.schema.yaml")
)
if _problems:
    # A run's index is into the merged list: name the run and the files that set it.
    _problems = locate_run_problems(_problems, config, _run_changes)
    raise WorkflowError(
        "Invalid configuration (config.yaml or --config/--configfile):\n  "
        + "\n  ".join(_problems)
    )
# Fills the schema's defaults (the check above already passed).
validate(config, schema="../schemas/config.schema.yaml")

if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    from lora_tradeoff.installation import import_problem

    # Without conda every rule script runs with this interpreter (lora_tradeoff/installation.py).
    _problem = import_problem(Path(workflow.basedir), sys.executable, Path.cwd())
    if _problem:
        raise WorkflowError(_problem)


try:
    # A run with `sweep` becomes one run per point, e.g. <name>_lr1e-3 (lora_tradeoff/training/sweeps.py).
    _runs, SWEEPS = expand_sweeps(config["training"]["runs"])
    # A run with `seeds` becomes one run <name>_s<seed> per seed (lora_tradeoff/training/replicates.py).
    _runs, REPLICATES = expand_seed_replicates(_runs)
    # A run with `eval_steps` keeps its weights at those steps; each is evaluated as the
    # model <run>_step<N> (lora_tradeoff/training/curve.py).
    _runs, CHECKPOINTS = expand_eval_steps(_runs)
except ValueError as error:
    raise WorkflowError(f"Invalid configuration: {error}")
RUNS = {run["name"]: run for run in _runs}
if workflow.is_main_process and (SWEEPS or REPLICATES):
    # The overlays' lines above name config entries; these are the runs they expand into.
    logger.info(
        f"training.runs: {len(RUNS)} runs after sweeps and seeds: {', '.join(RUNS)}"
    )


def package_code(*folders, modules=()):
    """The package code a rule's script runs, as the rule's `code` input: every .py file of the
    stage folders of lora_tradeoff named (e.g. "spider", "inference", "model") and the named
    top-level modules (e.g. "logs", "files"). Snakemake tracks a rule's own script but not what it
    imports; with these inputs a change to that code reruns the rule (rerun trigger mtime), and a
    module added to, or removed from, one of the folders reruns it too (trigger input) - a whole
    folder, so that a new module can never be missed, at the price of rerunning the rule for a
    change to a module of the folder it does not import. The top-level __init__.py holds only the
    package's docstring and is left out. tests/unit/test_rule_code_inputs.py checks that every
    module a rule's script imports, directly or through the package, is among these files.
    """
    package = Path(workflow.basedir, "lora_tradeoff")
    files = [path for folder in folders for path in (package / folder).glob("*.py")]
    files += [package / f"{module}.py" for module in modules]
    return sorted(str(path) for path in files)


wildcard_constraints:
    style="few_shot|zero_shot",
    run="|".join(RUNS),
    model="|".join(["base", "base_zero_shot", *RUNS, *CHECKPOINTS]),
    step="[0-9]+",


def get_final_outputs():
    return [
        "results/report/summary.md",
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


def evaluated_models():
    """Rows of the results tables: the baseline, optionally the base model zero-shot, every run
    and every checkpoint of a run (evaluated exactly like a run)."""
    models = ["base"]
    if (
        config["prompt"]["base_zero_shot"]
        and config["prompt"]["base_style"] != "zero_shot"
    ):
        models.append("base_zero_shot")
    return models + list(RUNS) + list(CHECKPOINTS)


def mmlu_models():
    """base_zero_shot has the base weights: its MMLU would repeat the base row."""
    return ["base", *RUNS, *CHECKPOINTS]


def prompt_style(model):
    if model == "base":
        return config["prompt"]["base_style"]
    if model == "base_zero_shot":
        return "zero_shot"
    return config["prompt"]["finetuned_style"]


def get_generation_prompts(wildcards):
    return f"results/spider/prompts/{prompt_style(wildcards.model)}.jsonl"


def get_weights(wildcards):
    """The run's fine-tuned weights (adapter or whole model), or the checkpoint's; nothing for the base model rows."""
    if wildcards.model in RUNS:
        return [f"results/runs/{wildcards.model}/weights"]
    if wildcards.model in CHECKPOINTS:
        kept = CHECKPOINTS[wildcards.model]
        return [f"results/runs/{kept['run']}/weights-step{kept['step']}"]
    return []


def get_model_quantization(wildcards):
    """A QLoRA run is evaluated as it was trained: 4-bit base, adapter unmerged."""
    model = CHECKPOINTS.get(wildcards.model, {}).get("run", wildcards.model)
    run = RUNS.get(model)
    return run["quantization"] if run else "none"


# A run's config goes to fine_tune as one params entry per key, each a one-entry dict
# {key: value}: Snakemake records params by value, without their names, so a whole dict
# would make a dry run's reason print the run twice; this way it names the key that changed.
# eval_steps, present in some runs only, travels in the save_steps entry (every run has one):
# a key of its own would add an entry to every run's params and retrain runs without it.
RUN_KEYS = sorted({key for run in RUNS.values() for key in run} - {"eval_steps"})


def get_run_key(key):
    def run_key(wildcards):
        run = RUNS[wildcards.run]
        entry = {key: run[key]} if key in run else {}
        if run.get("method") == "full" and key in LORA_ONLY_KEYS:
            entry = {}  # unused by full fine-tuning: changing it reruns nothing
        if key == "save_steps" and "eval_steps" in run:
            entry["eval_steps"] = run["eval_steps"]
        return entry

    return run_key


def get_run_params():
    return {key: get_run_key(key) for key in RUN_KEYS}


def mmlu_sample_param(key):
    """A key of the 150-question sample; None for the full suite, which does not use it,
    so changing it then reruns nothing."""
    if config["mmlu"]["suite"] == "per_category":
        return config["mmlu"][key]
    return None


def get_mmlu_scored(wildcards):
    return expand("results/{model}/mmlu_scored.csv", model=mmlu_models())
