"""Every module a rule's script runs lies inside the package code that rule takes as its `code` input.

Snakemake tracks a rule's own script, not what it imports: the rules list the package folders
they run as inputs (``package_code`` in rules/common.smk). These tests read the rules and walk the
scripts' imports (every ``import`` of lora_tradeoff, at module level or inside a function, followed
through the package), so a module imported from outside those folders fails here instead of
leaving results stale.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "lora_tradeoff"

# The rules that take package code as an input; the others (data acquisition, formatting, the
# suite, fine_tune: see rules/train.smk) deliberately do not. A new rule with a code input is
# added here.
RULES_WITH_CODE = {"score_spider", "report", "generate_sql", "score_mmlu", "mmlu_regression"}

_RULE = re.compile(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", re.S | re.M)
_CODE = re.compile(r"code=package_code\((.*?)\),\n", re.S)
_SCRIPT = re.compile(r'script:\s*"\.\./(workflow_scripts/\w+\.py)"')


def _rules() -> dict[str, str]:
    text = "\n".join(path.read_text() for path in sorted((REPO / "rules").glob("*.smk")))
    return {match[1]: match[2] for match in _RULE.finditer(text)}


def _code_input(body: str) -> set[Path]:
    """The files ``package_code(...)`` of this rule returns (its arguments are literals)."""
    call = ast.parse(f"f({_CODE.search(body)[1]})", mode="eval").body
    folders = [ast.literal_eval(arg) for arg in call.args]
    modules = next((ast.literal_eval(kw.value) for kw in call.keywords if kw.arg == "modules"), [])
    files = {path for folder in folders for path in (PACKAGE / folder).glob("*.py")}
    return files | {PACKAGE / f"{module}.py" for module in modules}


def _module_file(name: str) -> Path | None:
    """The file of a lora_tradeoff module or package, None if there is none."""
    path = REPO.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _imported_files(source: Path) -> set[Path]:
    """The package files this file imports anywhere in it (lazy imports in functions included)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from lora_tradeoff.spider import execution` imports the module execution too.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "lora_tradeoff":
                continue
            parts = name.split(".")
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py too.
            for depth in range(2, len(parts) + 1):
                if (path := _module_file(".".join(parts[:depth]))) is not None:
                    found.add(path)
    return found


def _transitive_imports(script: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = list(_imported_files(script))
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_imported_files(path))
    return seen


def test_the_rules_with_package_code_inputs_are_the_expected_ones():
    rules = _rules()
    assert {name for name, body in rules.items() if "code=" in body} == RULES_WITH_CODE
    assert all("code=package_code(" in rules[name] for name in RULES_WITH_CODE)


@pytest.mark.parametrize("rule", sorted(RULES_WITH_CODE))
def test_every_module_a_rule_imports_is_in_its_code_input(rule):
    body = _rules()[rule]
    script = REPO / _SCRIPT.search(body)[1]
    imported = _transitive_imports(script)
    assert imported, f"{script.name} imports nothing of lora_tradeoff: the walk is broken"
    missing = imported - _code_input(body) - {PACKAGE / "__init__.py"}
    assert not missing, f"rule {rule} runs {sorted(str(p.relative_to(REPO)) for p in missing)} outside its code input"


def test_the_package_init_left_out_of_code_inputs_holds_only_a_docstring():
    (statement,) = ast.parse((PACKAGE / "__init__.py").read_text()).body
    assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def test_the_walk_finds_a_lazy_import():
    """score_mmlu's engine is imported inside a function: the walk must still see it."""
    imported = _transitive_imports(REPO / "workflow_scripts" / "score_mmlu.py")
    assert PACKAGE / "inference" / "engine.py" in imported
