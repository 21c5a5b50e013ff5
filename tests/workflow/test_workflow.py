"""Real Snakemake on the real default model and bundled data: DAG, reruns, targets."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
pytestmark = pytest.mark.slow


def write_config(workdir: Path, model_dir: Path, **changes) -> Path:
    config = yaml.safe_load((REPO / "tests/config/smoke.yaml").read_text())
    config["model"] = {"source": "local", "path": str(model_dir)}
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
           "--configfile", str(workdir / "config.yaml"), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DEEPEVAL_TELEMETRY_OPT_OUT": "YES"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base_model_dir) -> Path:
    """The whole DAG run once for real on the smoke config."""
    workdir = new_workdir(tmp_path_factory, "run", base_model_dir)
    snakemake(workdir)
    return workdir


def test_dry_run_lists_the_whole_dag(tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "dry", base_model_dir)
    jobs = planned_jobs(workdir)
    assert jobs["get_base_model"] == 1 and jobs["get_spider"] == 1 and jobs["get_mmlu"] == 1
    assert jobs["format_spider_prompts"] == 2 and jobs["format_spider_train"] == 1


def test_second_run_has_nothing_to_do(finished_run):
    assert planned_jobs(finished_run) == collections.Counter()


def test_fewshot_seed_reruns_only_its_downstream(finished_run, base_model_dir):
    write_config(finished_run, base_model_dir, **{"prompt.fewshot_seed": 7})
    try:
        jobs = planned_jobs(finished_run)
    finally:
        write_config(finished_run, base_model_dir)
    assert jobs["select_fewshot_examples"] == 1 and jobs["format_spider_prompts"] == 1
    assert not {"get_spider", "get_mmlu", "get_base_model", "format_spider_train"} & set(jobs)


def test_target_runs_only_its_ancestors(tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "target", base_model_dir)
    jobs = planned_jobs(workdir, "results/spider/prompts/zero_shot.jsonl")
    assert set(jobs) == {"get_base_model", "get_spider", "format_spider_prompts"}


def test_bad_config_fails_before_any_job(tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "bad", base_model_dir)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["training"]["runs"][0]["lerning_rate"] = 1e-4
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    assert "config.training.runs[0]: unknown key(s) lerning_rate; allowed keys: alpha," in proc.stderr + proc.stdout
    assert not (workdir / "results").exists()
