"""The key reference of ``config/README.md``, generated from ``schemas/config.schema.yaml``.

The schema is the one home of the configuration's types, allowed values, defaults and
descriptions; the reference at the end of ``config/README.md`` is rendered from it, between
:data:`BEGIN` and :data:`END`, so it cannot drift:

* ``python -m lora_tradeoff.config_reference`` prints the section;
* ``--write config/README.md`` rewrites it in place (appended at the end if the file has none);
* ``--check config/README.md`` exits 1, naming the command that fixes it, when it is stale
  (``make lint`` runs it).

One table per top-level section (the top-level scalar keys first), plus one per array of
objects (``training.runs[]``, ``model.parts[]``), right after the table that holds the array.
Each row gives the dotted key, its type(s), the allowed values (``enum``, ``const`` and the
numeric, length and pattern constraints), its default and its description. ``$ref`` to the
schema's own ``$defs`` is resolved, ``oneOf``/``anyOf`` alternatives are listed, and a key
required by an ``allOf`` ``if``/``then`` on a ``const`` says when. The text is GitHub Markdown:
``|`` is escaped in every cell, and ``<``, ``*``, ``~`` and word-initial ``_`` outside code
spans, so ``results/runs/<name>/`` stays visible.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lora_tradeoff.config_check import SCHEMA_PATH, load_schema

BEGIN = (
    "<!-- BEGIN GENERATED: config keys (python -m lora_tradeoff.config_reference --write config/README.md);"
    " edit the descriptions in schemas/config.schema.yaml, not this section -->"
)
END = "<!-- END GENERATED -->"
# What --check and --write look for: the start of BEGIN, so a reworded BEGIN still finds an old section.
BEGIN_PREFIX = "<!-- BEGIN GENERATED: config keys"
COMMAND = "python -m lora_tradeoff.config_reference"
# The lines of the difference that --check shows.
MAX_DIFF_LINES = 30

_TYPE_WORDS = {"null": "null", "integer": "integer", "number": "number", "string": "string", "boolean": "boolean"}


@dataclass(frozen=True)
class Row:
    """One key of the reference: its dotted path and the cells of its table row."""

    path: str
    types: str
    allowed: str
    default: str
    description: str


@dataclass(frozen=True)
class Table:
    """One table of the reference: a heading, a line of text under it, and its rows."""

    heading: str
    intro: str
    rows: list[Row]


# --------------------------------------------------------------------------- schema walking


def resolve(node: Any, root: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """``node`` with a local ``$ref`` (``#/$defs/...``) replaced by its target.

    Keywords beside the ``$ref`` override the target's (a ``description`` or ``default`` given
    at the point of use wins). A target that is itself a ``$ref`` is followed; a cycle raises
    ``ValueError``.
    """
    if not isinstance(node, dict) or "$ref" not in node:
        return node
    ref = node["$ref"]
    if not isinstance(ref, str) or not ref.startswith("#/"):
        raise ValueError(f"only local $ref (#/...) are supported, not {ref!r}")
    if ref in seen:
        raise ValueError(f"$ref cycle through {ref}")
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            raise ValueError(f"$ref {ref} does not point into the schema")
        target = target[part]
    merged = {**resolve(target, root, seen | {ref}), **{k: v for k, v in node.items() if k != "$ref"}}
    return merged


def _alternatives(node: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """The resolved ``oneOf``/``anyOf`` alternatives of ``node`` (empty when it has none)."""
    return [resolve(alt, root) for key in ("oneOf", "anyOf") for alt in node.get(key, [])]


def _object_properties(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The ``properties`` of an object schema, each resolved (those of its alternatives too)."""
    props = {name: resolve(sub, root) for name, sub in node.get("properties", {}).items()}
    for alt in _alternatives(node, root):
        for name, sub in alt.get("properties", {}).items():
            props.setdefault(name, resolve(sub, root))
    return props


def _items_object(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any] | None:
    """The item schema of an array of objects, or None for any other key."""
    items = resolve(node.get("items"), root)
    if isinstance(items, dict) and _object_properties(items, root):
        return items
    return None


def _conditional_requirements(node: dict[str, Any], root: dict[str, Any]) -> dict[str, list[str]]:
    """``{key: ["`source: hf`", ...]}``: the keys an ``if {key: {const}}`` / ``then {required}`` asks for."""
    conditions: dict[str, list[str]] = {}
    for clause in node.get("allOf", []):
        clause = resolve(clause, root)
        test = clause.get("if", {}).get("properties", {})
        required = clause.get("then", {}).get("required", [])
        if len(test) != 1 or not required:
            continue
        ((key, spec),) = test.items()
        if "const" not in spec:
            continue
        for name in required:
            conditions.setdefault(name, []).append(f"`{key}: {_flow(spec['const'])}`")
    return conditions


# --------------------------------------------------------------------------- cell text


def _flow(value: Any) -> str:
    """``value`` in YAML flow style, as a config file would write it (``null``, ``[a, b]``, ``{}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if _plain_yaml(value) else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_flow(item)}" for key, item in value.items()) + "}"
    return repr(value)


def _plain_yaml(text: str) -> bool:
    """Whether YAML reads ``text`` unquoted (in a flow list too) as this very string."""
    if not text or text != text.strip() or "\n" in text or re.search(r"[,\[\]{}]|: | #", text):
        return False
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def _code(text: str) -> str:
    """``text`` as a code span (doubled backticks when it holds one)."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _escape_prose(text: str) -> str:
    """Markdown ``text`` made literal outside its code spans (``<``, ``*``, ``~``, a word-initial ``_``)."""
    parts = re.split(r"(`[^`]*`)", text)
    for index in range(0, len(parts), 2):
        part = parts[index].replace("\\", "\\\\")
        part = re.sub(r"([<*~\[\]])", r"\\\1", part)
        part = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", part)
        parts[index] = part
    return "".join(parts)


def _cell(text: str) -> str:
    """A table cell: one line, ``|`` escaped (GitHub splits cells before it reads code spans)."""
    return " ".join(text.split()).replace("|", "\\|")


def _type_of(node: dict[str, Any], root: dict[str, Any]) -> str:
    """The type(s) of a key: ``integer or null``, ``array of string``, ``array of string or string``."""
    alternatives = _alternatives(node, root)
    if alternatives and "type" not in node:
        return " or ".join(_type_of(alt, root) for alt in alternatives)
    types = node.get("type")
    if types is None:
        if "const" in node:
            return type(node["const"]).__name__
        if "enum" in node:
            return "one of the values"
        return "any"
    names = [types] if isinstance(types, str) else list(types)
    words = []
    for name in names:
        if name == "array":
            items = resolve(node.get("items"), root)
            words.append(f"array of {_type_of(items, root)}" if isinstance(items, dict) and items else "array")
        else:
            words.append(_TYPE_WORDS.get(name, name))
    return " or ".join(words)


def _constraints(node: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """The allowed values of a key as short phrases: its enum, bounds, lengths and pattern."""
    found: list[str] = []
    if "enum" in node:
        found.append(", ".join(_code(_flow(value)) for value in node["enum"]))
    if "const" in node:
        found.append(_code(_flow(node["const"])))
    for keyword, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if keyword in node:
            found.append(f"{sign} {_flow(node[keyword])}")
    if "pattern" in node:
        found.append(f"matches {_code(node['pattern'])}")
    if "minItems" in node:
        found.append(f"≥ {node['minItems']} item{'s' if node['minItems'] != 1 else ''}")
    if "maxItems" in node:
        found.append(f"≤ {node['maxItems']} items")
    if node.get("uniqueItems"):
        found.append("no repeats")
    names = resolve(node.get("propertyNames"), root)
    if isinstance(names, dict) and "enum" in names:
        found.append("keys: " + ", ".join(_code(_flow(value)) for value in names["enum"]))
    if "minProperties" in node:
        found.append(f"≥ {node['minProperties']} key{'s' if node['minProperties'] != 1 else ''}")
    values = resolve(node.get("additionalProperties"), root)
    if isinstance(values, dict) and not node.get("properties"):
        inner = [_type_of(values, root), *_constraints(values, root)]
        found.append("each value: " + ", ".join(inner))
    items = resolve(node.get("items"), root)
    if isinstance(items, dict) and not _object_properties(items, root):
        inner = _constraints(items, root)
        if inner:
            found.append("each item " + ", ".join(inner))
    alternatives = _alternatives(node, root)
    if alternatives:
        phrases = [", ".join(_constraints(alt, root)) for alt in alternatives]
        found.append(
            "; or ".join(
                f"{_type_of(alt, root)}: {phrase}" if phrase else _type_of(alt, root)
                for alt, phrase in zip(alternatives, phrases, strict=True)
            )
        )
    return found


def _row(path: str, node: dict[str, Any], root: dict[str, Any], required: str) -> Row:
    """The table row of the key at ``path`` (``required`` prefixes its description)."""
    default = _code(_flow(node["default"])) if "default" in node else ""
    description = _escape_prose(str(node.get("description", "")).strip())
    if required:
        description = f"**{required}** {description}".strip()
    return Row(path, _type_of(node, root), "; ".join(_constraints(node, root)), default, description)


# --------------------------------------------------------------------------- tables


def _requirement(name: str, parent: dict[str, Any], root: dict[str, Any]) -> str:
    """``Required.``, ``Required with `source: hf`.`` or nothing, for the key ``name`` of ``parent``."""
    if name in parent.get("required", []):
        return "Required."
    conditions = _conditional_requirements(parent, root).get(name)
    return f"Required with {' or '.join(conditions)}." if conditions else ""


def _add_key(
    path: str, node: dict[str, Any], need: str, root: dict[str, Any], rows: list[Row], out: list[Table]
) -> None:
    """Append the row of the key at ``path`` to ``rows``, then those of its nested object's keys
    (dotted paths); an array of objects gets its own table ``path[]``, appended to ``out``."""
    rows.append(_row(path, node, root, need))
    items = _items_object(node, root)
    if items is not None:
        intro = f"The keys of each entry of {_code(path)}."
        if items.get("description"):
            intro += " " + _escape_prose(" ".join(str(items["description"]).split()))
        item_table = Table(_code(f"{path}[]"), intro, [])
        later: list[Table] = []
        for name, sub in _object_properties(items, root).items():
            _add_key(f"{path}[].{name}", sub, _requirement(name, items, root), root, item_table.rows, later)
        out += [item_table, *later]
        return
    for name, sub in _object_properties(node, root).items():
        _add_key(f"{path}.{name}", sub, _requirement(name, node, root), root, rows, out)


def tables(schema: dict[str, Any]) -> list[Table]:
    """The reference's tables: the top-level keys that are not sections, then one per section
    (each followed by the tables of its arrays of objects), in the schema's order."""
    scalars = Table("Top level", "Keys that are not in a section.", [])
    result = [scalars]
    for name, node in _object_properties(schema, schema).items():
        need = _requirement(name, schema, schema)
        if not _object_properties(node, schema) and _items_object(node, schema) is None:
            scalars.rows.append(_row(name, node, schema, need))
            continue
        section = Table(_code(name), "", [])
        later: list[Table] = []
        _add_key(name, node, need, schema, section.rows, later)
        result += [section, *later]
    return [table for table in result if table.rows]


def keys(schema: dict[str, Any]) -> list[str]:
    """Every dotted key path of the reference (``training.runs[].name`` for an array's items)."""
    return [row.path for table in tables(schema) for row in table.rows]


def render(schema: dict[str, Any], schema_name: str = "schemas/config.schema.yaml") -> str:
    """The generated section, markers included, ending with a newline."""
    lines = [
        BEGIN,
        "",
        "## Every key",
        "",
        f"Generated from `{schema_name}` by `{COMMAND} --write config/README.md`:",
        "change a key's type, default or description in the schema, then run that command (`make lint`",
        "fails while this section is stale). A dotted key is nested in the YAML (`model.wheel.package` is",
        "`package:` under `wheel:` under `model:`); `[]` stands for each entry of a list. The workflow fills",
        "in every default; a key without one is unset unless given.",
    ]
    for table in tables(schema):
        lines += ["", f"### {table.heading}", ""]
        if table.intro:
            lines += [table.intro, ""]
        lines += ["| Key | Type | Allowed | Default | Description |", "|---|---|---|---|---|"]
        for row in table.rows:
            cells = (_code(row.path), row.types, row.allowed, row.default, row.description)
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the README file


def replace_section(text: str, section: str) -> str:
    """``text`` with its generated section replaced by ``section`` (appended when it has none)."""
    start, end = text.find(BEGIN_PREFIX), text.find(END)
    if start == -1 and end == -1:
        return text.rstrip("\n") + "\n\n" + section
    if start == -1 or end == -1 or end < start:
        raise ValueError(
            f"one generated-section marker without the other, or END before BEGIN: {BEGIN_PREFIX!r}, {END!r}"
        )
    return text[:start] + section.rstrip("\n") + text[end + len(END) :]


def current_section(text: str) -> str | None:
    """The generated section of ``text``, markers included, or None when it has none."""
    start, end = text.find(BEGIN_PREFIX), text.find(END)
    if start == -1 or end == -1 or end < start:
        return None
    return text[start : end + len(END)] + "\n"


def check(readme: Path, section: str, schema_path: Path) -> int:
    """0 when ``readme``'s generated section is ``section``; else 1, after telling stderr the fix
    (and the first lines that differ)."""
    found = current_section(readme.read_text())
    if found == section:
        return 0
    fix = f"{COMMAND} --write {readme}"
    if found is None:
        print(
            f"{readme}: no generated config key reference ({BEGIN_PREFIX} ... {END}); add it with: {fix}",
            file=sys.stderr,
        )
        return 1
    print(f"{readme}: the config key reference is stale against {schema_path}; rewrite it with: {fix}", file=sys.stderr)
    diff = difflib.unified_diff(
        found.splitlines(), section.splitlines(), "in the README", "from the schema", lineterm=""
    )
    for line in list(diff)[:MAX_DIFF_LINES]:
        print(line, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Print, write or check the reference; returns the exit status."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=(__doc__ or "").split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="README", help="rewrite the generated section of README")
    action.add_argument("--check", type=Path, metavar="README", help="exit 1 if README's section is stale")
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH, help="the schema (default: %(default)s)")
    args = parser.parse_args(argv)
    section = render(load_schema(args.schema))
    if args.write:
        args.write.write_text(replace_section(args.write.read_text(), section))
        return 0
    if args.check:
        return check(args.check, section, args.schema)
    sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
