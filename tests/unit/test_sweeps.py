"""Hyper-parameter sweeps: expansion into named runs, clash refusals, and the config check of swept values."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tradeoff.config_check import SCHEMA_PATH, config_problems
from lora_tradeoff.training.replicates import expand_seed_replicates
from lora_tradeoff.training.sweeps import expand_sweeps, format_value, point_name

REPO = Path(__file__).resolve().parents[2]


def test_swept_values_read_in_run_names():
    assert [format_value(v) for v in (1e-3, 2.0e-4, 1.5e-5, 0.0003, 2.0, 3, "full", True)] == [
        "1e-3", "2e-4", "1p5e-5", "3e-4", "2", "3", "full", "true",
    ]  # fmt: skip
    assert point_name("r64_all", {"learning_rate": 1e-3}) == "r64_all_lr1e-3"
    assert point_name("base", {"method": "full", "num_epochs": 2, "r": 8}) == "base_full_ep2_r8"
    assert point_name("a", {"alpha": 64}) == "a_alpha64"
    assert point_name("a", {"quantization": "nf4", "per_device_batch_size": 16, "optim": "adamw_8bit"}) == (
        "a_nf4_bs16_adamw_8bit"
    )
    assert point_name("a", {"max_steps": None, "learning_rate": 0.12345678}) == "a_stepsnone_lr1p2345678e-1"


def test_a_sweep_becomes_one_ordinary_run_per_point_first_key_slowest():
    runs = [
        {"name": "r16_qv", "r": 16, "learning_rate": 2e-4},
        {"name": "ft", "r": 8, "sweep": {"method": ["lora", "full"], "learning_rate": [1e-5, 5e-5]}},
    ]
    expanded, sweeps = expand_sweeps(runs)
    assert [run["name"] for run in expanded] == [
        "r16_qv", "ft_lora_lr1e-5", "ft_lora_lr5e-5", "ft_full_lr1e-5", "ft_full_lr5e-5",
    ]  # fmt: skip
    assert expanded[4] == {"name": "ft_full_lr5e-5", "r": 8, "method": "full", "learning_rate": 5e-5}
    assert all("sweep" not in run for run in expanded)
    assert sweeps == {
        "ft": {
            "keys": ["method", "learning_rate"],
            "runs": ["ft_lora_lr1e-5", "ft_lora_lr5e-5", "ft_full_lr1e-5", "ft_full_lr5e-5"],
            "values": {
                "ft_lora_lr1e-5": {"method": "lora", "learning_rate": 1e-5},
                "ft_lora_lr5e-5": {"method": "lora", "learning_rate": 5e-5},
                "ft_full_lr1e-5": {"method": "full", "learning_rate": 1e-5},
                "ft_full_lr5e-5": {"method": "full", "learning_rate": 5e-5},
            },
        }
    }
    assert "sweep" in runs[1]  # the config is not changed
    # Seeds apply to every point (the workflow expands sweeps first).
    seeded, groups = expand_seed_replicates(expand_sweeps([{"name": "a", "seeds": [1, 2], "sweep": {"r": [4, 8]}}])[0])
    assert [run["name"] for run in seeded] == ["a_r4_s1", "a_r4_s2", "a_r8_s1", "a_r8_s2"]
    assert groups == {"a_r4": ["a_r4_s1", "a_r4_s2"], "a_r8": ["a_r8_s1", "a_r8_s2"]}


def test_sweeps_that_would_clash_are_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"runs\[a\]\.sweep\.learning_rate: values \[0\.001, 0\.001\] repeat"):
        expand_sweeps([{"name": "a", "sweep": {"learning_rate": [1e-3, 0.001]}}])
    with pytest.raises(ValueError, match=r"runs\[a\]\.sweep\.learning_rate: point a_lr1e-3 is also the name made by "
                       r"config\.training\.runs\[0\]\.name"):  # fmt: skip
        expand_sweeps([{"name": "a_lr1e-3"}, {"name": "a", "sweep": {"learning_rate": [1e-3]}}])
    with pytest.raises(ValueError, match=r"runs\[1\]\.name: a_lr1e-3 is also the name made by config\.training\.runs"):
        expand_sweeps([{"name": "a", "sweep": {"learning_rate": [1e-3]}}, {"name": "a_lr1e-3"}])
    with pytest.raises(ValueError, match=r"runs\[a\]\.sweep\.seeds: cannot be swept"):
        expand_sweeps([{"name": "a", "sweep": {"seeds": [[1], [2]]}}])
    with pytest.raises(ValueError, match=r"runs\[a\]\.sweep: list at least one key"):
        expand_sweeps([{"name": "a", "sweep": {}}])


def _config(runs: list[dict]) -> dict:
    return {"spider": {"source": "bundled", "bundle_dir": "data/spider_demo"}, "training": {"runs": runs}}


def test_config_check_names_each_bad_swept_value():
    problems = config_problems(
        _config([{"name": "a", "sweep": {"learning_rate": [1e-4, -1.0], "r": [8, 16.0], "method": ["dora"]}}]),
        SCHEMA_PATH,
        REPO,
    )
    assert any(p.startswith("config.training.runs[0].sweep.learning_rate[1]: -1.0") for p in problems), problems
    assert any(p.startswith("config.training.runs[0].sweep.r[1]: 16.0 has the wrong type") for p in problems), problems
    assert any(p.startswith("config.training.runs[0].sweep.method[0]: 'dora'") for p in problems), problems
    assert len(problems) == 3
    # A key that cannot be swept, and a point that full fine-tuning cannot train.
    problems = config_problems(_config([{"name": "a", "sweep": {"name": ["x"]}}]), SCHEMA_PATH, REPO)
    assert any("sweep" in p and "'name'" in p for p in problems), problems
    problems = config_problems(
        _config([{"name": "a", "quantization": "nf4", "sweep": {"method": ["lora", "full"]}}]), SCHEMA_PATH, REPO
    )
    assert any(
        p.startswith("config.training.runs[0].sweep (point method full): quantization: nf4 is QLoRA") for p in problems
    )
    assert config_problems(_config([{"name": "a", "sweep": {"learning_rate": [1e-4, 1e-3]}}]), SCHEMA_PATH, REPO) == []


def test_each_point_of_a_product_is_checked_as_a_run():
    """Each value alone is valid; their product makes a point that full fine-tuning cannot train, and
    LoRA-only keys swept over full points would repeat one training."""
    product = {"name": "s", "sweep": {"method": ["lora", "full"], "quantization": ["none", "nf4"]}}
    assert config_problems(_config([product]), SCHEMA_PATH, REPO) == [
        "config.training.runs[0].sweep (point method full, quantization nf4): quantization: nf4 is QLoRA "
        "(a LoRA adapter on a frozen 4-bit base); full fine-tuning trains every weight: set method: lora or "
        "quantization: none"
    ]
    for run in (
        {"name": "f", "method": "full", "sweep": {"r": [8, 16]}},
        {"name": "f", "sweep": {"method": ["lora", "full"], "alpha": [16, 32]}},
    ):
        (problem,) = config_problems(_config([run]), SCHEMA_PATH, REPO)
        assert "unused by full fine-tuning" in problem and problem.startswith("config.training.runs[0].sweep."), problem
    assert config_problems(_config([{"name": "l", "sweep": {"r": [8, 16]}}]), SCHEMA_PATH, REPO) == []
