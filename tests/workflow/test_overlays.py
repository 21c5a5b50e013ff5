"""Real Snakemake dry runs with an overlay (`--configfile my.yaml`) on the smoke config: runs merge by name."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.workflow.smk import ENV, REPO, SNAKEMAKE, write_config

pytestmark = pytest.mark.slow


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """The smoke config as the working folder's config.yaml; a dry run never reads the model folder."""
    (tmp_path / "data").symlink_to(REPO / "data")
    (tmp_path / "model").mkdir()
    write_config(tmp_path, tmp_path / "model")
    return tmp_path


def dry_run_with(workdir: Path, overlay: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`snakemake -n --configfile my.yaml` as a user types it, and the runs fine_tune would train."""
    (workdir / "my.yaml").write_text(overlay)
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1", "-n"]
    proc = subprocess.run([*cmd, "--configfile", "my.yaml"], capture_output=True, text=True, env=ENV, cwd=workdir)
    trained = set(re.findall(r"^rule fine_tune:\n(?:    .*\n)*?    wildcards: run=(\S+)", proc.stdout, re.M))
    return proc, trained


ALL_RUNS = {"tiny_qv", "tiny_last", "tiny_full_lr1e-4", "tiny_full_lr1e-3"}


def test_an_overlay_changes_one_run_and_keeps_the_others(workdir):
    proc, trained = dry_run_with(workdir, "training:\n  runs:\n    - {name: tiny_qv, learning_rate: 5.0e-3}\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert trained == ALL_RUNS
    assert (
        "my.yaml: training.runs: changed tiny_qv (learning_rate 0.001 -> 0.005); now tiny_qv, tiny_last, tiny_full"
        in proc.stdout + proc.stderr
    )


def test_an_overlay_adds_a_run(workdir):
    proc, trained = dry_run_with(workdir, "training:\n  runs:\n    - {name: tiny_r8, r: 8, max_steps: 2}\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert trained == ALL_RUNS | {"tiny_r8"}
    added = "my.yaml: training.runs: added tiny_r8; now tiny_qv, tiny_last, tiny_full, tiny_r8"
    assert added in proc.stdout + proc.stderr


def test_an_overlay_drops_a_run(workdir):
    proc, trained = dry_run_with(workdir, "training:\n  runs:\n    - {name: tiny_full, drop: true}\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert trained == {"tiny_qv", "tiny_last"}
    assert "my.yaml: training.runs: dropped tiny_full; now tiny_qv, tiny_last" in proc.stdout + proc.stderr


def test_dropping_an_unknown_run_is_refused_before_any_job(workdir):
    # A sweep's point is not a configured run: its sweep is dropped by the configured name.
    proc, trained = dry_run_with(workdir, "training:\n  runs:\n    - {name: tiny_full_lr1e-3, drop: true}\n")
    assert proc.returncode != 0 and not trained
    assert (
        "Invalid configuration: my.yaml: training.runs[0]: drop: true names tiny_full_lr1e-3, which no earlier "
        "config file defines; runs defined: tiny_qv, tiny_last, tiny_full" in proc.stdout + proc.stderr
    )
    assert not (workdir / "results").exists()
