"""bench/run_all.py's table on the figures the H200 run wrote (docs/results-h100/benchmarks.json)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.run_all import (
    GENERATION_QPS,
    SCORING_SECONDS,
    markdown_table,
    rows_for_generation,
    rows_for_mmlu,
    rows_for_scoring,
    rows_for_training,
)

RAW = json.loads((Path(__file__).resolve().parents[2] / "docs/results-h100/benchmarks.json").read_text())


def all_rows(raw: dict) -> list[dict]:
    return (
        rows_for_generation(raw["generation"])
        + rows_for_training(raw["training"])
        + rows_for_mmlu(raw["mmlu"])
        + rows_for_scoring(raw["scoring"])
    )


def test_each_target_is_judged_on_the_measured_figure():
    table = markdown_table(all_rows(RAW), on_gpu=True).splitlines()
    generation = next(line for line in table if "| generate_sql q/s |" in line)
    assert f"| {RAW['generation']['ours']['q_per_s']:,} | >= 150 | yes |" in generation
    best_training = max(row["tokens_per_s"] for row in RAW["training"])
    training = [line for line in table if "| >= 100000 |" in line]
    assert len(training) == 1 and f"| {best_training:,} |" in training[0]  # only the best config is judged
    assert "| <= 5 | yes |" in next(line for line in table if line.startswith("| mmlu |"))


def test_gpu_targets_read_not_applicable_on_a_cpu_and_failures_show_no_figure():
    assert GENERATION_QPS.met(400.0, on_gpu=False) == "n/a (CPU)"
    assert SCORING_SECONDS.met(0.5, on_gpu=False) == "yes"  # a CPU target
    assert GENERATION_QPS.met(149.9, on_gpu=True) == "NO"
    failed = markdown_table(rows_for_generation(None) + rows_for_mmlu(None), on_gpu=True)
    assert failed.count("| no figure |") == 2


def test_stock_anchors_print_our_ratio_to_them():
    raw = json.loads(json.dumps(RAW["generation"]))
    ours = raw["ours"]["q_per_s"]
    raw["hf_dynamic"] = {"prompts": 1034, "cache": "dynamic", "q_per_s": 13.0, "peak_memory": "9 GiB"}
    raw["hf_dynamic"]["ours_ratio"] = round(ours / 13.0, 2)
    table = markdown_table(rows_for_generation(raw), on_gpu=True)
    line = next(line for line in table.splitlines() if "dynamic cache" in line)
    assert "| 13.0 |" in line and f"**{round(ours / 13.0, 2)}x**" in line
    assert "static cache" not in table  # an anchor that did not run has no row
