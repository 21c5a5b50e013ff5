"""bench/bench_training.py trains full fine-tuning configurations end to end and records their method."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_training.py"


@pytest.mark.slow
def test_a_full_config_trains_on_the_cpu_and_an_8bit_one_is_refused_there(base_model_dir, spider_dir, tmp_path):
    """Two CPU steps of full fine-tuning on the default model: the row records method, optimizer and the
    float32 weights; 8-bit AdamW (bitsandbytes, CUDA only) fails in its own process with the reason."""
    out = tmp_path / "table.json"
    command = [sys.executable, str(BENCH), "--model-dir", str(base_model_dir), "--spider-dir", str(spider_dir)]
    command += ["--configs", "full-padded-32,full-grouped-16-gc-8bit", "--device", "cpu", "--batch-size", "2"]
    command += ["--warmup", "1", "--steps", "1", "--limit", "8", "--max-seq-len", "512", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    full, lean = json.loads(out.read_text())
    assert (full["config"], full["method"], full["optim"], full["batch"]) == (
        "full-padded-32",
        "full",
        "adamw_torch_fused",
        2,
    )
    assert full["weights_dtype"] == "float32" and full["gradient_checkpointing"] is False
    assert full["tokens_per_s"] > 0 and full["tokens_per_step"] > 0 and full["peak_mem_kind"] == "process RSS"
    assert math.isfinite(full["train_loss"])
    assert (
        lean["config"] == "full-grouped-16-gc-8bit" and "adamw_8bit (bitsandbytes) runs on CUDA only" in lean["error"]
    )
