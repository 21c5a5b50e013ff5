"""Conda cannot run here, so the env files are checked statically: parse, pin, agree with pip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

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
