"""config/README.md's key reference is generated from the schema and is current."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from markdown_it import MarkdownIt

from lora_tradeoff.config_check import load_schema
from lora_tradeoff.config_reference import (
    BEGIN,
    COMMAND,
    END,
    current_section,
    keys,
    main,
    render,
    replace_section,
    resolve,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
README = REPO / "config" / "README.md"

# The JSON Schema 2020-12 keywords; any other key in a schema object is a typo (or a YAML flow
# mapping split at a comma, as `description: a (b, c)` is, which JSON Schema silently ignores).
KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "$comment", "$anchor", "title", "description", "default", "examples",
    "deprecated", "readOnly", "writeOnly", "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "format", "maxItems", "minItems",
    "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties", "required", "dependentRequired",
    "properties", "patternProperties", "additionalProperties", "propertyNames", "items", "prefixItems", "contains",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "unevaluatedItems",
    "unevaluatedProperties",
}  # fmt: skip


def row(text: str, path: str) -> str:
    """The table row of the key ``path`` in the rendered ``text``."""
    (line,) = [line for line in text.splitlines() if line.startswith(f"| `{path}` |")]
    return line


def schema_paths(node: dict[str, Any], root: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of ``node`` as a dotted path, walked independently of the module under test."""
    node = resolve(node, root)
    paths = []
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        sub = resolve(sub, root)
        paths += schema_paths(sub, root, path)
        if isinstance(sub.get("items"), dict):
            paths += schema_paths(sub["items"], root, f"{path}[]")
    return paths


def schema_nodes(node: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(where, schema)`` for every schema object inside ``node`` (properties, items, alternatives...)."""
    found = [("", node)]
    for keyword in ("properties", "$defs", "patternProperties", "dependentSchemas"):
        for name, sub in node.get(keyword, {}).items():
            found += [(f"{keyword}.{name}{where}", n) for where, n in schema_nodes(sub)]
    for keyword in ("items", "additionalProperties", "propertyNames", "contains", "not", "if", "then", "else"):
        if isinstance(node.get(keyword), dict):
            found += [(f"{keyword}{where}", n) for where, n in schema_nodes(node[keyword])]
    for keyword in ("allOf", "anyOf", "oneOf", "prefixItems"):
        for index, sub in enumerate(node.get(keyword, [])):
            found += [(f"{keyword}[{index}]{where}", n) for where, n in schema_nodes(sub)]
    return found


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return load_schema(SCHEMA)


@pytest.fixture(scope="module")
def reference(schema) -> str:
    return render(schema)


def test_readme_section_is_current(reference):
    """Fails when the schema changed and the README was not regenerated: run
    `python -m lora_tradeoff.config_reference --write config/README.md`."""
    assert current_section(README.read_text()) == reference
    assert main(["--check", str(README)]) == 0


def test_a_changed_schema_is_detected_and_written(tmp_path, schema, capsys):
    changed = copy.deepcopy(schema)
    scoring = changed["properties"]["scoring"]["properties"]
    scoring["timeout_s"]["default"] = 25
    scoring["timeout_s"]["description"] = "seconds | one query may run"
    scoring["max_bytes"] = {"type": "integer", "default": 7, "description": "a new key"}
    schema_copy = tmp_path / "schema.yaml"
    schema_copy.write_text(yaml.safe_dump(changed, sort_keys=False))
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())

    assert main(["--check", str(readme), "--schema", str(schema_copy)]) == 1
    err = capsys.readouterr().err
    assert f"rewrite it with: {COMMAND} --write {readme}" in err
    assert "+| `scoring.timeout_s` | number | > 0 | `25` | seconds \\| one query may run |" in err
    assert "+| `scoring.max_bytes` | integer |  | `7` | a new key |" in err

    before = readme.read_text()
    assert main(["--write", str(readme), "--schema", str(schema_copy)]) == 0
    assert main(["--check", str(readme), "--schema", str(schema_copy)]) == 0
    after = readme.read_text()
    # Only the generated section changed: the prose before it is kept as it was.
    assert after[: after.index(BEGIN)] == before[: before.index(BEGIN)]
    assert after.endswith(END + "\n")


def test_check_exits_1_from_the_command_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Configuration\n\nNo reference yet.\n")
    result = subprocess.run(
        [sys.executable, "-m", "lora_tradeoff.config_reference", "--check", str(readme)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no generated config key reference" in result.stderr
    assert f"{COMMAND} --write {readme}" in result.stderr


def test_print_is_the_section(capsys, reference):
    assert main([]) == 0
    assert capsys.readouterr().out == reference


def test_every_schema_key_appears(schema, reference):
    paths = schema_paths(schema, schema)
    assert len(paths) > 100 and "training.runs[].target_modules" in paths and "model.parts[].sha256" in paths
    assert sorted(keys(schema)) == sorted(paths)
    for path in paths:
        assert f"| `{path}` |" in reference


def test_every_key_has_a_description(schema):
    """The schema is the reference: a key without a description would be a blank cell in it."""
    missing = []
    for path in schema_paths(schema, schema):
        node: Any = schema
        for part in path.split("."):
            if part.endswith("[]"):
                node = resolve(node["properties"][part[:-2]], schema)["items"]
            else:
                node = resolve(node["properties"][part], schema)
        if not str(node.get("description", "")).strip():
            missing.append(path)
    assert missing == []


def test_schema_has_only_json_schema_keywords(schema):
    unknown = [(where, sorted(set(node) - KEYWORDS)) for where, node in schema_nodes(schema) if set(node) - KEYWORDS]
    assert unknown == []


def test_enums_defaults_and_requirements_of_real_keys(reference):
    assert row(reference, "dtype") == (
        "| `dtype` | string | `auto`, `bfloat16`, `float16`, `float32` | `auto` | the precision of every stage "
        + row(reference, "dtype").split("| the precision of every stage ", 1)[1]
    )
    assert "| `lora`, `full` | `lora` |" in row(reference, "training.runs[].method")
    # oneOf: both alternatives, and a list default in YAML flow style.
    target = row(reference, "training.runs[].target_modules")
    assert "| array of string or string | array of string: ≥ 1 item; or string: `all-linear` |" in target
    assert "| `[q_proj, v_proj]` |" in target
    assert "| integer or null | ≥ 1 | `null` |" in row(reference, "spider.dev_limit")
    # A default that YAML would not read back unquoted is quoted.
    assert '`"Schema:\\n{schema}\\n\\nQuestion: {question}"`' in row(reference, "prompt.user_template")
    assert "**Required with `source: hf`.**" in row(reference, "model.id")
    assert "**Required.**" in row(reference, "training.runs[].name")
    assert "| ≥ 0; ≤ 1 | `0.1` |" in row(reference, "mmlu.pad_tolerance")


def test_ref_to_defs_is_resolved_and_local_keywords_win():
    schema = {
        "$defs": {
            "source": {
                "type": "object",
                "description": "a dataset",
                "properties": {"id": {"$ref": "#/$defs/id"}, "revision": {"type": "string", "description": "rev"}},
            },
            "id": {"type": "string", "enum": ["a", "b"], "default": "a", "description": "the id"},
        },
        "properties": {
            "train": {"$ref": "#/$defs/source", "description": "where training data comes from"},
            "dev": {"$ref": "#/$defs/source"},
            "steps": {"oneOf": [{"$ref": "#/$defs/id"}, {"type": "integer", "minimum": 1}]},
        },
    }
    text = render(schema)
    assert keys(schema) == ["steps", "train", "train.id", "train.revision", "dev", "dev.id", "dev.revision"]
    assert row(text, "train").endswith("| where training data comes from |")
    assert row(text, "dev").endswith("| a dataset |")
    assert row(text, "dev.id") == "| `dev.id` | string | `a`, `b` | `a` | the id |"
    assert row(text, "steps") == "| `steps` | string or integer | string: `a`, `b`; or integer: ≥ 1 |  |  |"
    with pytest.raises(ValueError, match="cycle"):
        resolve({"$ref": "#/$defs/x"}, {"$defs": {"x": {"$ref": "#/$defs/x"}}})
    with pytest.raises(ValueError, match="does not point"):
        resolve({"$ref": "#/$defs/nothing"}, schema)


def test_markdown_renders_on_github(reference):
    """Every table row has its five cells (a `|` in a description is escaped) and a `<name>` in a
    description stays text, not an HTML tag GitHub would hide."""
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(reference)
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == len(keys(load_schema(SCHEMA))) + reference.count("\n### ")
    assert all(cells.count("<td") + cells.count("<th") == 5 for cells in rows)
    assert "results/runs/&lt;name&gt;/" in html and "<name>" not in html
    assert "<em>" not in html and "<s>" not in html and "<del>" not in html


def test_replace_section_appends_replaces_and_refuses_a_lone_marker():
    section = f"{BEGIN}\nnew\n{END}\n"
    assert replace_section("# Title\n\nProse.\n", section) == f"# Title\n\nProse.\n\n{section}"
    old = f"# Title\n\n{BEGIN}\nold\n{END}\n\n## After\n"
    assert replace_section(old, section) == f"# Title\n\n{BEGIN}\nnew\n{END}\n\n## After\n"
    with pytest.raises(ValueError, match="marker"):
        replace_section(f"# Title\n{BEGIN}\nno end\n", section)
