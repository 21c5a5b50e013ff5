"""The common start of the model rules (lora_tradeoff/model/job.py), on the real default model."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lora_tradeoff.model.job import start_evaluation_job


@pytest.fixture(autouse=True)
def own_logging(monkeypatch):
    """rule_logger points stderr and the root logger at the job's log file: give them back after each test."""
    before = sys.stderr
    monkeypatch.setattr(sys, "stderr", before)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    if sys.stderr is not before:  # the log file rule_logger opened
        sys.stderr.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def job(tmp_path: Path, base_model_dir: Path, weights: list[str]) -> SimpleNamespace:
    """What a rule script's ``snakemake`` object holds for an evaluation rule."""
    manifest = tmp_path / "base_model.json"
    manifest.write_text(json.dumps({"model_dir": str(base_model_dir)}))
    return SimpleNamespace(
        log=[str(tmp_path / "logs" / "job.log")],
        threads=1,
        wildcards=SimpleNamespace(model="base"),
        input=SimpleNamespace(model=str(manifest), weights=weights),
        params=SimpleNamespace(quantization="none", dtype="auto", rehearse_t4=False),
    )


def test_evaluation_job_logs_and_loads_the_base_model(tmp_path, base_model_dir):
    import torch

    log, model, tokenizer = start_evaluation_job(job(tmp_path, base_model_dir, []), "score_mmlu")
    assert log.name == "score_mmlu[base]"
    assert torch.get_num_threads() == 1
    assert model.dtype == torch.float32 and not model.training  # CPU: float32, eval mode
    assert tokenizer.eos_token == "<|im_end|>"
    written = Path(tmp_path / "logs" / "job.log").read_text()
    assert "score_mmlu[base]: model on cpu in torch.float32 (dtype: auto), fine-tuned weights None" in written


def test_evaluation_job_names_missing_weights(tmp_path, base_model_dir):
    with pytest.raises(Exception, match="no-such-run"):
        start_evaluation_job(job(tmp_path, base_model_dir, [str(tmp_path / "no-such-run")]), "generate_sql")
