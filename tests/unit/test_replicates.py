"""Training-seed replicates: config expansion and the interval across seeds, on hand-checked values."""

from __future__ import annotations

import math
import statistics

import pytest

from lora_tradeoff.training.replicates import across_seeds, expand_seed_replicates, t_quantile_975


def test_a_run_with_seeds_becomes_one_run_per_seed():
    runs = [
        {"name": "r16_qv", "r": 16, "seed": 42, "seeds": [42, 43]},
        {"name": "r64_all", "r": 64, "seed": 7},
    ]
    expanded, groups = expand_seed_replicates(runs)
    assert expanded == [
        {"name": "r16_qv_s42", "r": 16, "seed": 42},
        {"name": "r16_qv_s43", "r": 16, "seed": 43},
        {"name": "r64_all", "r": 64, "seed": 7},
    ]
    assert groups == {"r16_qv": ["r16_qv_s42", "r16_qv_s43"]}
    assert runs[0]["seeds"] == [42, 43]  # the config is not changed


def test_seed_expansion_refuses_clashes_and_empty_lists():
    with pytest.raises(ValueError, match=r"\['a_s1'\] given twice"):
        expand_seed_replicates([{"name": "a", "seeds": [1]}, {"name": "a_s1"}])
    with pytest.raises(ValueError, match=r"runs\[0\].seeds: need distinct seeds"):
        expand_seed_replicates([{"name": "a", "seeds": []}])
    with pytest.raises(ValueError, match=r"runs\[1\].seeds"):
        expand_seed_replicates([{"name": "b"}, {"name": "a", "seeds": [3, 3]}])


def test_t_quantiles_match_the_table_and_the_normal_limit():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(4) == 2.776 and t_quantile_975(30) == 2.042
    assert t_quantile_975(40) == pytest.approx(2.021, abs=0.002)  # tabulated t(0.975; 40)
    assert t_quantile_975(120) == pytest.approx(1.980, abs=0.001)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_interval_across_seeds_by_hand():
    # Three seeds: +4, +6, +8 points. mean 6, sd 2, half-width 4.303 * 2 / sqrt(3) = 4.9687.
    entry = across_seeds([4.0, 6.0, 8.0])
    assert (entry["n_seeds"], entry["mean"], entry["sd"]) == (3, 6.0, 2.0)
    assert entry["ci_low"] == pytest.approx(6 - 4.9687, abs=1e-4)
    assert entry["ci_high"] == pytest.approx(6 + 4.9687, abs=1e-4)
    two = across_seeds([7.4, 8.1])
    assert two["ci_high"] - two["mean"] == pytest.approx(12.706 * statistics.stdev([7.4, 8.1]) / math.sqrt(2))
    one = across_seeds([5.0])
    assert (one["mean"], one["sd"], one["ci_low"]) == (5.0, None, None)
    with pytest.raises(ValueError, match="one finite value per replicate"):
        across_seeds([1.0, float("nan")])
