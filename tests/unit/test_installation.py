"""The rule scripts' packages: where an interpreter imports them from, and the conda envs' install script.

Real interpreters: bare venvs (no pip, nothing installed) made here, given what a case needs
through a .pth file, as an environment of a user would have it.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tradeoff.installation import PACKAGES, import_problem

REPO = Path(__file__).resolve().parents[2]


def bare_venv(root: Path, *path_entries: Path) -> Path:
    """A venv without pip whose site-packages also holds ``path_entries`` (one .pth line each); its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "00-paths.pth").write_text("".join(f"{entry}\n" for entry in path_entries))
    # setuptools replaces the standard library's distutils through this .pth of its own.
    shim = Path(site.getsitepackages()[0], "distutils-precedence.pth")
    if shim.exists():
        Path(purelib, shim.name).write_text(shim.read_text())
    return python


def build_tools(root: Path) -> Path:
    """A folder with only pip and setuptools of this interpreter (links), for an editable install."""
    root.mkdir()
    site_packages = Path(__import__("pip").__file__).parents[1]
    for name in ("pip", "setuptools", "_distutils_hack", "pkg_resources"):
        # The .dist-info too: setuptools registers its commands (dist_info, editable_wheel) there.
        for path in [site_packages / name, *site_packages.glob(f"{name}-*.dist-info")]:
            if path.exists():
                (root / path.name).symlink_to(path)
    return root


def test_this_environment_imports_the_packages_of_this_checkout(tmp_path):
    assert import_problem(REPO, sys.executable, tmp_path) is None


def test_an_environment_without_the_packages_is_named_with_the_command_that_installs_them(tmp_path):
    python = bare_venv(tmp_path / "venv")
    problem = import_problem(REPO, str(python), tmp_path)
    assert problem is not None
    assert f"{python}, which cannot import lora_tradeoff, custom_metrics" in problem
    assert f"`{python} -m pip install --no-deps -e {REPO}`" in problem
    # A path with a space is quoted, so that the command can be pasted.
    clone = tmp_path / "my clone"
    assert f"-m pip install --no-deps -e '{clone}'`" in import_problem(clone, str(python), tmp_path)


def test_packages_installed_from_another_checkout_are_refused(tmp_path):
    other = tmp_path / "other-clone"
    for name in PACKAGES:
        (other / name).mkdir(parents=True)
        (other / name / "__init__.py").write_text("")
    python = bare_venv(tmp_path / "venv", other)
    problem = import_problem(REPO, str(python), tmp_path)
    assert problem is not None
    assert f"imports lora_tradeoff from {other / 'lora_tradeoff'}, not from this workflow's checkout {REPO}" in problem


def test_the_working_folder_does_not_count_as_installed(tmp_path):
    # A rule script runs from the working directory without it on sys.path: a checkout that is the
    # working directory is not importable for it, so it must not pass the check either.
    python = bare_venv(tmp_path / "venv")
    assert "cannot import" in import_problem(REPO, str(python), REPO)


def test_snakemake_stops_before_any_job_when_its_python_lacks_the_packages(tmp_path):
    # Snakemake importable (this venv's site-packages on the path), the editable install of this
    # checkout not: the .pth files of that folder are not processed when it is added by a .pth line.
    python = bare_venv(tmp_path / "venv", *map(Path, site.getsitepackages()))
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "data").symlink_to(REPO / "data")
    proc = subprocess.run(
        [str(python), "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "work")]
        + ["--configfile", str(REPO / "config.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode != 0
    assert "which cannot import lora_tradeoff, custom_metrics" in proc.stdout + proc.stderr
    assert not (tmp_path / "work" / "results").exists()


@pytest.mark.parametrize("env", sorted(path.stem for path in (REPO / "envs").glob("*.yaml")))
def test_every_conda_env_installs_the_checkout_after_it_is_created(env):
    # Snakemake's post-deploy script of envs/<env>.yaml is envs/<env>.post-deploy.sh.
    script = REPO / "envs" / f"{env}.post-deploy.sh"
    assert script.resolve() == (REPO / "envs" / "install-package.sh").resolve()


def test_the_install_script_installs_the_checkout_editable_into_the_active_python(tmp_path):
    python = bare_venv(tmp_path / "venv", build_tools(tmp_path / "tools"))
    assert "cannot import" in import_problem(REPO, str(python), tmp_path)
    # As Snakemake runs it: inside the env (its python first on PATH), from the working directory.
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("LORA_TRADEOFF_SOURCE", None)
    script = str(REPO / "envs" / "torch.post-deploy.sh")
    unset = subprocess.run(["sh", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert unset.returncode != 0 and "LORA_TRADEOFF_SOURCE" in unset.stderr
    subprocess.run(["sh", script], cwd=tmp_path, env={**env, "LORA_TRADEOFF_SOURCE": str(REPO)}, check=True)
    assert import_problem(REPO, str(python), tmp_path) is None
    # Another Python project in its place installs, but the env is not taken as ready.
    other = tmp_path / "other-project"
    other.mkdir()
    project = '[project]\nname = "other"\nversion = "1"\n[tool.setuptools]\npackages = []\n'
    (other / "pyproject.toml").write_text(project)
    bare = bare_venv(tmp_path / "venv2", build_tools(tmp_path / "tools2"))
    env2 = {**env, "PATH": f"{bare.parent}{os.pathsep}{os.environ['PATH']}", "LORA_TRADEOFF_SOURCE": str(other)}
    wrong = subprocess.run(["sh", script], cwd=tmp_path, env=env2, capture_output=True, text=True)
    assert wrong.returncode != 0 and "No module named 'lora_tradeoff'" in wrong.stderr
