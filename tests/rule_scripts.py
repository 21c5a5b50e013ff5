"""The rules' scripts and what they import, read statically (for tests/unit/test_rule_code_inputs.py
and tests/unit/test_envs.py)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lora_tradeoff"

RULE = re.compile(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", re.S | re.M)
SCRIPT = re.compile(r'script:\s*"\.\./(workflow_scripts/\w+\.py)"')


def rules() -> dict[str, str]:
    """Each rule of rules/*.smk: its name and the text of its body."""
    text = "\n".join(path.read_text() for path in sorted((REPO / "rules").glob("*.smk")))
    return {match[1]: match[2] for match in RULE.finditer(text)}


def module_file(name: str) -> Path | None:
    """The file of a lora_tradeoff module or package, None if there is none."""
    path = REPO.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def imported_names(source: Path, lazy: bool) -> set[str]:
    """Dotted names ``source`` imports (``from a import b`` gives ``a`` and ``a.b``: b may be a module).

    ``lazy``: every import in the file, those inside functions too. Otherwise those that run when
    it is run or imported: module-level statements and class bodies, not function bodies or
    ``if TYPE_CHECKING:`` blocks.
    """
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if not lazy and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if not lazy and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names.add(child.module)
                names.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(source.read_text()))
    return names


def script_imports(script: Path, lazy: bool) -> tuple[set[Path], set[str]]:
    """``(package files, outside modules)`` that running ``script`` imports, following the imports
    of every package file it reaches (see :func:`imported_names` for ``lazy``). Importing a.b.c runs
    a/__init__.py and a/b/__init__.py too. The outside modules are top-level names, the standard
    library left out."""
    files: set[Path] = set()
    outside: set[str] = set()
    todo = [script]
    while todo:
        for name in imported_names(todo.pop(), lazy):
            parts = name.split(".")
            if parts[0] == "lora_tradeoff":
                for depth in range(2, len(parts) + 1):
                    if (path := module_file(".".join(parts[:depth]))) is not None and path not in files:
                        files.add(path)
                        todo.append(path)
            elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                outside.add(parts[0])
    return files, outside
