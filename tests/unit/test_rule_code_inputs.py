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

from tests.rule_scripts import PACKAGE, REPO, SCRIPT, rules, script_imports

# The rules that take package code as an input; the others (data acquisition, formatting, the
# suite, fine_tune: see rules/train.smk) deliberately do not. A new rule with a code input is
# added here.
RULES_WITH_CODE = {"score_spider", "report", "generate_sql", "score_mmlu", "mmlu_regression"}

_CODE = re.compile(r"code=package_code\((.*?)\),\n", re.S)


def _code_input(body: str) -> set[Path]:
    """The files ``package_code(...)`` of this rule returns (its arguments are literals)."""
    call = ast.parse(f"f({_CODE.search(body)[1]})", mode="eval").body
    folders = [ast.literal_eval(arg) for arg in call.args]
    modules = next((ast.literal_eval(kw.value) for kw in call.keywords if kw.arg == "modules"), [])
    files = {path for folder in folders for path in (PACKAGE / folder).glob("*.py")}
    return files | {PACKAGE / f"{module}.py" for module in modules}


def _transitive_imports(script: Path) -> set[Path]:
    """The package files running ``script`` imports, lazy imports inside functions included."""
    return script_imports(script, lazy=True)[0]


def test_the_rules_with_package_code_inputs_are_the_expected_ones():
    bodies = rules()
    assert {name for name, body in bodies.items() if "code=" in body} == RULES_WITH_CODE
    assert all("code=package_code(" in bodies[name] for name in RULES_WITH_CODE)


@pytest.mark.parametrize("rule", sorted(RULES_WITH_CODE))
def test_every_module_a_rule_imports_is_in_its_code_input(rule):
    body = rules()[rule]
    script = REPO / SCRIPT.search(body)[1]
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
