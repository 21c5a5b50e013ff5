"""notebooks/colab.ipynb executed headless (nbclient) on the CPU, with the smoke config in its parameters cell.

The notebook runs on a copy of this checkout (its clone step is skipped because the folder exists;
nothing is installed), so the whole DAG, the report's table and its figures come out as on Colab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.workflow.smk import REPO, write_config

pytestmark = pytest.mark.slow

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (requirements.txt pins it)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (requirements.txt pins it)")
pytest.importorskip("ipykernel", reason="ipykernel (the notebook's kernel) is not installed (requirements.txt pins it)")


def copy_checkout(dest: Path) -> None:
    """The checkout's files as git sees them (tracked and untracked, not ignored), as a clone would hold them."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)


def test_colab_notebook_runs_unchanged_on_cpu_with_the_smoke_config(tmp_path, base_model_dir, monkeypatch):
    checkout = tmp_path / "lora_tradeoff"
    copy_checkout(checkout)
    # One LoRA run and the base model: the notebook's own cells are what is tested here, the DAG is
    # covered by the workflow tests. The notebook runs in the checkout, on its config.yaml: the
    # smoke run replaces the demo's runs rather than merging with them by name.
    smoke = yaml.safe_load((REPO / "tests/config/smoke.yaml").read_text())
    config = write_config(
        tmp_path,
        base_model_dir,
        **{
            "training.runs": smoke["training"]["runs"][:1],
            "training.replace_runs": True,
            "prompt.base_zero_shot": False,
        },
    )
    notebook = nbformat.read(REPO / "notebooks/colab.ipynb", as_version=4)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "config/gpu-16gb.yaml" in parameters[0].source
    parameters[0].source = (
        f"REPO_URL = None\nREPO_DIR = {str(checkout)!r}\nCONFIGS = [{str(config)!r}]\n"
        "OVERRIDES = {}\nINSTALL = False\nCORES = 2"
    )
    # The kernel and Snakemake's jobs import the copy.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nbclient.NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert "dtype auto runs in float32 on cpu" in text
    markdown = [output["data"]["text/markdown"] for output in outputs if "text/markdown" in output.get("data", {})]
    assert len(markdown) == 1 and "## Hyper-parameters" in markdown[0]
    trained = sorted(path.name for path in (checkout / "results/runs").iterdir())
    assert trained == ["tiny_qv"], trained  # the smoke config's run alone
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == len(list((checkout / "results/report").glob("*.png"))) >= 3
