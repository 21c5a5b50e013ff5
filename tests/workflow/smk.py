"""Run Snakemake for real on a scratch working directory (shared by the workflow tests)."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "DEEPEVAL_TELEMETRY_OPT_OUT": "YES"}


def write_config(workdir: Path, model_dir: Path, **changes) -> Path:
    config = yaml.safe_load((REPO / "tests/config/smoke.yaml").read_text())
    config["model"] = {"source": "local", "path": str(model_dir)}
    for dotted, value in changes.items():  # "training.runs.1.learning_rate": list items by index
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[leaf] = value
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    # --configfile takes several values: it must not stand right before the targets.
    return [
        str(SNAKEMAKE), "--configfile", str(workdir / "config.yaml"), "-s", str(REPO / "Snakefile"),
        "-d", str(workdir), "--cores", "2", *args,
    ]  # fmt: skip


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    cmd = snakemake_command(workdir, *args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir: Path, *targets: str) -> collections.Counter:
    """Rule -> job count of a dry run (empty when nothing is to be done)."""
    out = snakemake(workdir, "-n", *targets).stdout
    table = re.search(r"job\s+count\n[-\s]+\n(.*?)\ntotal", out, re.S)
    if not table:
        assert "Nothing to be done" in out, out[-2000:]
        return collections.Counter()
    return collections.Counter({name: int(n) for name, n in re.findall(r"^(\S+)\s+(\d+)$", table.group(1), re.M)})


def new_workdir(tmp_path_factory, name: str, model_dir: Path) -> Path:
    workdir = tmp_path_factory.mktemp(name)
    (workdir / "data").symlink_to(REPO / "data")
    write_config(workdir, model_dir)
    return workdir
