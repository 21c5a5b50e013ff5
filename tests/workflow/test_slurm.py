"""The SLURM profile on a real single-node SLURM cluster (slurm-wlm, munge, slurmdbd) on localhost."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.workflow.smk import REPO, new_workdir, snakemake

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/slurmdbd needs root")
    install = subprocess.run(["bash", str(CLUSTER), "install"], capture_output=True, text=True)
    if install.returncode != 0 or not shutil.which("sbatch"):
        pytest.skip(f"slurm-wlm could not be installed: {install.stderr[-500:]}")
    start = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True)
    assert start.returncode == 0, start.stdout + start.stderr
    yield
    subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, text=True)


def test_workflow_cut_runs_through_the_slurm_profile(slurm_cluster, tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "slurm", base_model_dir)
    targets = ["results/spider/prompts/zero_shot.jsonl", "results/spider/fewshot_examples.json"]
    proc = snakemake(
        workdir,
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        "--jobs",
        "2",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        *targets,
    )
    for target in targets:
        assert (workdir / target).stat().st_size > 0
    log = proc.stdout + proc.stderr
    job_ids = sorted(set(re.findall(r"SLURM jobid (\d+)", log)))
    assert len(job_ids) == 4, log[-3000:]  # get_spider, get_base_model, select_fewshot_examples, format
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,JobName,State", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    states = dict(line.split("|")[0::2] for line in sacct.strip().splitlines())
    print(sacct)
    assert states == {job_id: "COMPLETED" for job_id in job_ids}, sacct
