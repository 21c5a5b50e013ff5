"""The SLURM profile on a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd, munge,
MariaDB) on localhost, unpacked into a temporary folder and gone afterwards (tests/slurm/cluster.sh)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.workflow.smk import ENV, REPO, new_workdir, snakemake

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
pytestmark = [pytest.mark.slow, pytest.mark.slurm]
# What an earlier, system-wide version of this test left behind, and what must not appear now.
SYSTEM_PATHS = [Path("/etc/slurm/slurm.conf"), Path("/etc/slurm/slurmdbd.conf"), Path("/etc/munge/munge.key")]


def processes_under(folder: Path) -> list[str]:
    """'pid exe' of every running process whose program lies under folder."""
    found = []
    for exe in Path("/proc").glob("[0-9]*/exe"):
        try:
            target = os.readlink(exe)
        except OSError:
            continue
        if target.startswith(f"{folder}/"):
            found.append(f"{exe.parent.name} {target}")
    return found


def installed_packages() -> str:
    return subprocess.run(["dpkg-query", "-W"], capture_output=True, text=True).stdout


def machine_state() -> dict:
    """What the test must leave as it found it: PATH lookups, system config files, Debian packages."""
    return {
        "which": {cmd: shutil.which(cmd) for cmd in ("sinfo", "sbatch", "sacct", "scontrol", "munged")},
        "files": {str(path): path.exists() for path in SYSTEM_PATHS},
        "packages": installed_packages(),
    }


def cluster(state: Path, action: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLURM_TEST_STATE": str(state)}
    return subprocess.run(["bash", str(CLUSTER), action], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def slurm_cluster():
    """Yields the environment of a running cluster: its client commands are on PATH only there."""
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/slurmdbd needs root")
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        pytest.skip("the cluster is unpacked from Debian packages: needs apt-get and dpkg")
    before = machine_state()
    state = Path(tempfile.mkdtemp(prefix="lora-tradeoff-slurm-"))
    try:
        install = cluster(state, "install")
        if install.returncode != 0:
            pytest.skip(f"the SLURM packages could not be downloaded: {install.stderr[-500:]}")
        start = cluster(state, "start")
        assert start.returncode == 0, start.stdout + start.stderr
        yield {**ENV, "PATH": f"{state / 'bin'}:{ENV['PATH']}"}
    finally:
        clean = cluster(state, "clean")
    # The machine as the test found it: no daemon, no folder, no command, no config, no package.
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert not state.exists()
    assert processes_under(state) == []
    after = machine_state()
    assert after["which"] == before["which"]  # sinfo on PATH makes every later snakemake call 10 s slower
    assert after["files"] == before["files"]
    assert after["packages"] == before["packages"]


def test_workflow_cut_runs_through_the_slurm_profile(slurm_cluster, tmp_path_factory, base_model_dir):
    env = slurm_cluster
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
        env=env,
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
        env=env,
    ).stdout
    states = dict(line.split("|")[0::2] for line in sacct.strip().splitlines())
    print(sacct)
    assert states == {job_id: "COMPLETED" for job_id in job_ids}, sacct
