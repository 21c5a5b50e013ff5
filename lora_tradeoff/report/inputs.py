"""What the report reads: the files the other rules write, keyed by model or run.

Nothing is re-scored here. :func:`standard_paths` gives the workflow's layout under
``results/``; :func:`load_inputs` reads the files into one :class:`ReportInputs`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

BASELINE = "base"
BASE_ZERO_SHOT = "base_zero_shot"


@dataclass
class ReportInputs:
    """Everything the report reads, keyed by model (Spider, MMLU) or run (training)."""

    spider_scored: dict[str, pd.DataFrame]  # every evaluated model, baseline first
    spider_summary: dict[str, dict[str, Any]]
    mmlu_scored: dict[str, pd.DataFrame]  # baseline and runs (base_zero_shot has the base weights)
    regression: pd.DataFrame
    hyperparams: dict[str, dict[str, Any]]  # every fine-tuned run
    train_logs: dict[str, pd.DataFrame]
    # The base model's manifest (results/model/base_model.json): what the report says the model is.
    model_manifest: dict[str, Any] = field(default_factory=dict)
    # Where the per-item tables came from: recompute_from_items() reads them again, independently.
    item_paths: dict[str, dict[str, Path]] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(self.spider_scored)

    @property
    def runs(self) -> list[str]:
        return list(self.hyperparams)


def standard_paths(
    results_dir: Path | str, models: Sequence[str], mmlu_models: Sequence[str], runs: Sequence[str]
) -> dict[str, Any]:
    """The report's input paths in the workflow's layout under ``results_dir`` (keyword arguments of
    :func:`load_inputs`)."""
    root = Path(results_dir)
    return {
        "spider_scored": {m: root / m / "spider_scored.csv" for m in models},
        "spider_summary": {m: root / m / "spider_summary.json" for m in models},
        "mmlu_scored": {m: root / m / "mmlu_scored.csv" for m in mmlu_models},
        "regression": root / "mmlu" / "regression.csv",
        "hyperparams": {r: root / "runs" / r / "hyperparams.json" for r in runs},
        "train_logs": {r: root / "runs" / r / "train_log.csv" for r in runs},
        "model_manifest": root / "model" / "base_model.json",
    }


def read_spider_scored(path: Path | str) -> pd.DataFrame:
    # keep_default_na=False: an empty prediction is "", not NaN; the numeric columns are converted below.
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["score"] = frame["score"].astype(float)
    return frame


def read_mmlu_scored(path: Path | str) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame["correct"] = frame["correct"].astype(bool)
    return frame


def load_inputs(
    spider_scored: Mapping[str, Path | str],
    spider_summary: Mapping[str, Path | str],
    mmlu_scored: Mapping[str, Path | str],
    regression: Path | str,
    hyperparams: Mapping[str, Path | str],
    train_logs: Mapping[str, Path | str],
    model_manifest: Path | str | None = None,
) -> ReportInputs:
    """Read the files; the mapping order fixes the order of models and runs in every table and figure."""
    return ReportInputs(
        model_manifest=json.loads(Path(model_manifest).read_text()) if model_manifest else {},
        spider_scored={m: read_spider_scored(p) for m, p in spider_scored.items()},
        spider_summary={m: json.loads(Path(p).read_text()) for m, p in spider_summary.items()},
        mmlu_scored={m: read_mmlu_scored(p) for m, p in mmlu_scored.items()},
        regression=pd.read_csv(regression),
        hyperparams={r: json.loads(Path(p).read_text()) for r, p in hyperparams.items()},
        train_logs={r: pd.read_csv(p) for r, p in train_logs.items()},
        item_paths={
            "spider_scored": {m: Path(p) for m, p in spider_scored.items()},
            "mmlu_scored": {m: Path(p) for m, p in mmlu_scored.items()},
        },
    )
