"""Real Snakemake on the real default model and bundled data: DAG, reruns, targets."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml

from tests.workflow.smk import new_workdir, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow


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
