"""Conda cannot run here, so the env files are checked statically: parse, pin, agree with pip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.rule_scripts import SCRIPT, rules, script_imports

REPO = Path(__file__).resolve().parents[2]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def env_pins(env: dict) -> dict[str, str]:
    pins = {}
    for dependency in env["dependencies"]:
        specs = dependency["pip"] if isinstance(dependency, dict) else [dependency]
        separator = "==" if isinstance(dependency, dict) else "="
        for spec in specs:
            assert re.fullmatch(rf"[A-Za-z0-9_.-]+{separator}[0-9][0-9A-Za-z.]*", spec), f"unpinned: {spec}"
            name, version = spec.split(separator)
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_rule_has_a_conda_env():
    rules = "\n".join(path.read_text() for path in (REPO / "rules").glob("*.smk"))
    n_rules = len(re.findall(r"^rule (?!all\b)\w+:", rules, re.M))
    n_envs = len(re.findall(r'conda:\n\s+"../envs/\w+\.yaml"', rules))
    assert n_rules == n_envs > 0
    used = set(re.findall(r'"../envs/(\w+\.yaml)"', rules))
    assert used <= {path.name for path in ENV_FILES}


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_is_pinned_and_matches_requirements(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    pins = env_pins(env)
    requirements = requirement_pins()
    for name, version in pins.items():
        if name in ("python", "pip"):
            continue
        assert name in requirements, f"{env_file.name}: {name} is not in requirements.txt"
        assert version == requirements[name], f"{env_file.name}: {name} {version} != {requirements[name]}"


def test_pyproject_installs_every_package_of_the_repository():
    import tomllib

    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    top_level = {path.parent.name for path in REPO.glob("*/__init__.py")} - {"tests"}
    packages = {
        ".".join(path.parent.relative_to(REPO).parts)
        for name in top_level
        for path in (REPO / name).rglob("__init__.py")
    }
    assert sorted(listed) == sorted(packages)


# ------------------------------------------------------------------ each rule's env holds its imports

_ENV = re.compile(r'conda:\s*"\.\./envs/(\w+\.yaml)"')


def _with_requirements(distributions: set[str]) -> set[str]:
    """``distributions`` and everything they require (this environment's metadata, extras left out)."""
    from importlib import metadata

    provided: set[str] = set()
    todo = list(distributions)
    while todo:
        name = todo.pop()
        if name in provided:
            continue
        provided.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in map(Requirement, requirements):
            if requirement.marker is None or "extra" not in str(requirement.marker):
                todo.append(canonicalize_name(requirement.name))
    return provided


def _rules_with_scripts() -> list[tuple[str, Path, str]]:
    return [
        (rule, REPO / script[1], _ENV.search(body)[1])
        for rule, body in rules().items()
        if (script := SCRIPT.search(body))
    ]


@pytest.mark.parametrize(("rule", "script", "env_file"), _rules_with_scripts(), ids=lambda v: getattr(v, "name", v))
def test_each_rules_env_provides_every_package_its_script_imports(rule, script, env_file):
    """With --use-conda a rule runs in its env alone: a module its code imports at load time that
    the env neither pins nor gets through a pinned package fails the job at its first line."""
    from importlib import metadata

    pins = {canonicalize_name(name) for name in env_pins(yaml.safe_load((REPO / "envs" / env_file).read_text()))}
    provided = _with_requirements(pins)
    by_module = metadata.packages_distributions()
    missing = {
        module: sorted({canonicalize_name(dist) for dist in by_module.get(module, [module])})
        for module in script_imports(script, lazy=False)[1]
    }
    missing = {module: dists for module, dists in missing.items() if not set(dists) & provided}
    assert not missing, f"rule {rule} ({script.name}) imports {missing}, which envs/{env_file} does not provide"
