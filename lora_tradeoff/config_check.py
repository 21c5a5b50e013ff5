"""The configuration schema, its defaults, and readable configuration errors.

``schemas/config.schema.yaml`` is the one place for the configuration's types and
defaults. :func:`with_defaults` fills those defaults into a copy of a config (or of one
part of it, such as one run: :mod:`lora_tradeoff.training.run` builds its ``RunSpec`` that
way) and returns the schema violations; nothing else in the package restates a default.

``snakemake.utils.validate`` fills the same defaults but reports a violation as a
multi-line dump of the schema. The workflow first asks :func:`config_problems` and
stops with its short messages (one line per problem, naming the key and what is
allowed), then lets ``validate`` fill the defaults into its config.

The checks beyond the schema (input paths, run names) run on the config with its
defaults filled, and read only the top-level sections that the schema accepted, so a
section of the wrong shape (``model: foo``, ``training: {runs: 5}``, ``spider: null``)
gives its one schema line and no traceback.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# The schema beside the package in the repository (the workflow validates against it too).
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def run_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of one entry of ``config.training.runs``."""
    return schema["properties"]["training"]["properties"]["runs"]["items"]


def _fill_defaults(
    validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """``properties`` that first sets each absent key that has a ``default`` (a copy of it).

    As ``snakemake.utils.validate`` does (after the jsonschema FAQ), but a value of the wrong
    type is left alone, so a config of any shape gives its violations and no traceback.
    """
    if isinstance(instance, dict):
        for key, subschema in properties.items():
            if "default" in subschema and key not in instance:
                instance[key] = copy.deepcopy(subschema["default"])
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


def _is_integer(checker: Any, instance: Any) -> bool:
    """An int, not a bool and not a float such as 16.0 (which JSON Schema would count as an
    integer, but torch and peft refuse as a size: ``r: 16.0`` would pass and fail in fine_tune)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_DefaultFillingValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"properties": _fill_defaults},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def with_defaults(instance: Any, schema: dict[str, Any]) -> tuple[Any, list[jsonschema.ValidationError]]:
    """A deep copy of ``instance`` with the schema's defaults filled, and its schema violations.

    ``instance`` is left as it is. The violations are sorted by their message; the defaults
    are filled also where another key is invalid (checks beyond the schema read them).
    """
    filled = copy.deepcopy(instance)
    errors = sorted(_DefaultFillingValidator(schema).iter_errors(filled), key=str)
    return filled, errors


def key_path(parts: Any, root: str = "config") -> str:
    text = root
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


_BOOLEAN_WORDS = {"true": "true", "yes": "true", "on": "true", "false": "false", "no": "false", "off": "false"}


def _type_hint(error: jsonschema.ValidationError) -> str:
    """How to write a value of the wrong type that looks like the expected one ('' if none).

    Text that reads as a number: Snakemake's ``--config key={...}`` keeps every value inside
    the braces as text, and YAML 1.1 (PyYAML) reads ``5e-4`` (no dot) as text. A float with
    no fraction where an integer is expected: ``16.0``. ``true``/``false`` (or yes/no, on/off) as
    text: quoted in a YAML file, or Snakemake's ``--config key=true`` (it reads only ``True`` and
    ``False`` as booleans, and every value inside ``key={...}`` as text).
    """
    expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    value = error.instance
    if isinstance(value, float) and value.is_integer() and "integer" in expected:
        return f"; write {int(value)}"
    if isinstance(value, str) and "boolean" in expected and value.strip().lower() in _BOOLEAN_WORDS:
        # Quoted in a YAML file, or from --config: Snakemake reads `key=True` as a boolean but
        # `key=true` (and every value inside `key={...}`) as text.
        word = _BOOLEAN_WORDS[value.strip().lower()]
        path = list(error.absolute_path)
        command_line = f"; on the command line: --config {path[0]}={word.capitalize()}" if len(path) == 1 else ""
        return f"; write {word} unquoted in a YAML file given with --configfile{command_line}"
    if not isinstance(value, str) or not {"integer", "number"} & set(expected):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if "integer" not in expected or number.is_integer():
        if re.fullmatch(r"[+-]?[0-9]+[eE][+-]?[0-9]+", value.strip()):
            return f"; YAML reads {value} as text: write it with a dot, {value.lower().replace('e', '.0e', 1)}"
        return (
            "; it is text: write the number unquoted in a YAML file given with --configfile "
            "(--config keeps values inside {...} as text)"
        )
    return ""


def describe(error: jsonschema.ValidationError, schema: dict[str, Any], root: str = "config") -> str:
    """One line for a violation of ``schema``: the key (under ``root``), the value and what is allowed."""
    where = key_path(error.absolute_path, root)
    if error.validator == "additionalProperties":
        allowed = sorted(_schema_at(schema, list(error.absolute_path)).get("properties", {}))
        # YAML reads some keys as numbers or booleans (`1:`, `on:`, `yes:`): name them as written.
        unknown = sorted(key if isinstance(key, str) else repr(key) for key in error.instance if key not in allowed)
        return f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; use one of {error.validator_value}"
    if error.validator == "type":
        value = "null" if error.instance is None else repr(error.instance)
        return f"{where}: {value} has the wrong type; expected {error.validator_value}{_type_hint(error)}"
    if error.validator == "required":
        condition = _condition(error, schema)
        return f"{where}: {error.message}" + (f" ({condition})" if condition else "")
    description = _schema_at(schema, list(error.absolute_path)).get("description")
    return f"{where}: {error.message}" + (f" ({description})" if description else "")


def _path_keys(config: dict[str, Any], rejected: set[str]) -> list[tuple[str, str]]:
    """(key, path) pairs that the configured sources will read.

    ``config`` is a mapping with the schema's defaults filled (:func:`with_defaults`); the
    top-level sections named in ``rejected`` (those with a schema violation, whose shape is
    unknown) are not read.
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
    source = spider.get("source")
    if source == "bundled":
        keys.append(("config.spider.bundle_dir", spider.get("bundle_dir")))
    elif source == "dir":
        keys.append(("config.spider.dir", spider.get("dir")))
    elif source == "hf":
        keys.append(("config.spider.tables", spider.get("tables")))
        keys.append(("config.spider.database_dir", spider.get("database_dir")))
    for split in ("test", "dev"):
        mmlu_source = section("mmlu").get(split, {})
        if mmlu_source.get("source") == "csv_dir":
            keys.append((f"config.mmlu.{split}.dir", mmlu_source.get("dir")))
    return keys


def _non_finite(value: Any, key: str = "config") -> list[tuple[str, float]]:
    """``(key, value)`` of every NaN or infinite number: YAML's ``.nan``/``.inf`` pass a schema's
    minimum and maximum (NaN compares false with both) and would fail a job after its model loaded."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(key, value)]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _non_finite(v, f"{key}.{k}")]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _non_finite(v, f"{key}[{i}]")]
    return []


def config_problems(config: dict[str, Any], schema_path: Path, base_dir: Path = Path(".")) -> list[str]:
    """Every schema violation and every missing input path, one readable line each.

    ``config`` is not changed. The path and run-name checks read a copy with the schema's
    defaults filled, and skip the top-level sections that violate the schema.
    """
    schema = load_schema(schema_path)
    config, errors = with_defaults(config, schema)
    problems = [describe(error, schema) for error in errors]
    if not isinstance(config, dict):
        return problems
    problems += [f"{key}: {value} is not a finite number; write a number" for key, value in _non_finite(config)]
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
    for index, run in enumerate(config["training"]["runs"]):
        problems += [f"config.training.runs[{index}].{key}: {message}" for key, message in run_problems(run)]
        problems += sweep_problems(index, run, run_schema(schema))
    return problems


def sweep_problems(index: int, run: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Each swept value checked as the key itself would be, then each point (a combination of
    values) as a run.

    ``schema`` is the schema of one run (:func:`run_schema`); ``run`` has its defaults filled.
    Messages name the value, e.g. ``config.training.runs[0].sweep.learning_rate[1]``, or the point.
    A LoRA-only key swept where a point fine-tunes fully is refused: those points would be the
    same training several times.
    """
    sweep = run.get("sweep")
    if not isinstance(sweep, dict) or not all(isinstance(values, list) for values in sweep.values()):
        return []
    root = f"config.training.runs[{index}].sweep"
    found = []
    for key, values in sweep.items():
        for position, value in enumerate(values):
            _, errors = with_defaults(value, schema["properties"][key])
            found += [describe(error, schema["properties"][key], f"{root}.{key}[{position}]") for error in errors]
    if found:
        return found
    first_problem: dict[tuple[str, str], str] = {}  # a problem shared by several points: named at the first
    for combination in itertools.product(*sweep.values()):
        point = {**run, **dict(zip(sweep, combination, strict=True))}
        values = ", ".join(f"{key} {value}" for key, value in zip(sweep, combination, strict=True))
        for name, message in run_problems(point):
            first_problem.setdefault((name, message), f"{root} (point {values}): {name}: {message}")
    found += first_problem.values()
    lora_only = [key for key in sweep if key in LORA_ONLY_KEYS]
    if lora_only and "full" in [run.get("method"), *sweep.get("method", [])]:
        found.append(
            f"{root}.{lora_only[0]}: unused by full fine-tuning (method: full), so its full points would be "
            "the same training repeated; sweep it in a run with method: lora"
        )
    return found


# The keys that shape a LoRA adapter; full fine-tuning does not use them (training ignores them, the
# workflow does not rerun a full run when they change, and a sweep of them is refused for full runs).
LORA_ONLY_KEYS = ("r", "alpha", "dropout", "target_modules", "layers_to_transform")

# RunSpec.from_config raises these too (lora_tradeoff.training.run calls run_problems).
PACKING_WITH_GROUP_BY_LENGTH = "is for padded batches; packing already removes all padding: set one of them"
FULL_WITH_NF4 = (
    "nf4 is QLoRA (a LoRA adapter on a frozen 4-bit base); full fine-tuning trains every weight: "
    "set method: lora or quantization: none"
)


def run_problems(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for each combination of one run's keys that the schema cannot express.

    ``run`` is a run entry that passed the schema, with its defaults filled. ``packing`` with
    ``group_by_length``; ``eval_steps`` beyond a set ``max_steps`` (fine_tune refuses them when
    it starts, also for a run bounded by ``num_epochs``; this names them before any job runs).
    """
    found = []
    if run.get("method") == "full" and run.get("quantization") == "nf4":
        found.append(("quantization", FULL_WITH_NF4))
    if run.get("packing") and run.get("group_by_length"):
        found.append(("group_by_length", PACKING_WITH_GROUP_BY_LENGTH))
    max_steps, steps = run.get("max_steps"), run.get("eval_steps") or []
    beyond = sorted(step for step in steps if max_steps is not None and step > max_steps)
    if beyond:
        message = f"step(s) {beyond} lie beyond max_steps {max_steps}; list steps up to {max_steps} or raise max_steps"
        found.append(("eval_steps", message))
    return found
