"""The trade-off along training: eval_steps become evaluated models, joined back into one curve per run."""

from __future__ import annotations

import pytest

from lora_tradeoff.training.curve import curve_rows, expand_eval_steps


def test_eval_steps_become_checkpoint_models_and_null_leaves_the_run_as_it_was():
    runs = [
        {"name": "r16_qv", "r": 16, "eval_steps": [12, 6]},
        {"name": "r64_all", "r": 64, "eval_steps": None},
        {"name": "plain", "r": 8},
    ]
    expanded, checkpoints = expand_eval_steps(runs)
    assert expanded == [
        {"name": "r16_qv", "r": 16, "eval_steps": [6, 12]},
        {"name": "r64_all", "r": 64},  # the same fine_tune params as before eval_steps existed
        {"name": "plain", "r": 8},
    ]
    assert checkpoints == {"r16_qv_step6": {"run": "r16_qv", "step": 6}, "r16_qv_step12": {"run": "r16_qv", "step": 12}}
    assert runs[0]["eval_steps"] == [12, 6]  # the config is not changed


def test_eval_steps_refuses_bad_steps_and_name_clashes():
    with pytest.raises(ValueError, match=r"runs\[a\].eval_steps: need distinct positive"):
        expand_eval_steps([{"name": "a", "eval_steps": [3, 3]}])
    with pytest.raises(ValueError, match=r"runs\[a\].eval_steps"):
        expand_eval_steps([{"name": "a", "eval_steps": [0]}])
    with pytest.raises(ValueError, match=r"\['a_step2'\] have the name of a run"):
        expand_eval_steps([{"name": "a", "eval_steps": [2]}, {"name": "a_step2"}])


def test_curve_rows_run_in_step_order_to_the_final_adapter():
    def point(ex: float, mmlu: float) -> dict:
        return {"delta_spider_ex_points": ex, "delta_mmlu_overall_points": mmlu}

    tradeoff = {"a": point(9, -3), "a_step6": point(5, -1), "a_step2": point(1, 0), "b": point(2, 2)}
    checkpoints = {"a_step6": {"run": "a", "step": 6}, "a_step2": {"run": "a", "step": 2}}
    curve = curve_rows(tradeoff, checkpoints, {"a": 10, "b": 10})
    assert [(row["step"], row["model"], row["final"]) for row in curve["a"]] == [
        (2, "a_step2", False),
        (6, "a_step6", False),
        (10, "a", True),
    ]
    assert [row["delta_spider_ex_points"] for row in curve["a"]] == [1, 5, 9]
    assert curve["b"] == [{"step": 10, "model": "b", "final": True, **point(2, 2)}]
    with pytest.raises(ValueError, match="checkpoint 'c_step1' of run 'c' has no results"):
        curve_rows(tradeoff, {"c_step1": {"run": "c", "step": 1}}, {"a": 10})
