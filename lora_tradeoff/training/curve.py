"""The trade-off along training: adapters kept at chosen steps, evaluated like runs.

A run with ``eval_steps: [6, 12]`` in ``config.training.runs`` keeps its adapter after
optimizer steps 6 and 12 (:class:`lora_tradeoff.training.run.StepAdapterCallback`); each becomes
the evaluated model ``<run>_step<N>`` (adapter ``results/runs/<run>/adapter-step<N>/``), scored
on Spider and MMLU by the same rules and input functions as the base model and the runs, so a
new step adds only its own evaluation jobs. The report joins them back into one curve per run,
from the first checkpoint to the final adapter (:func:`curve_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def checkpoint_name(run: str, step: int) -> str:
    return f"{run}_step{step}"


def expand_eval_steps(runs: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The runs as trained, and every checkpoint of them as an evaluated model.

    Returns ``(runs, checkpoints)``: the runs unchanged, except that an ``eval_steps`` of None
    is dropped (so a run without checkpoints passes fine_tune the same parameters as before the
    key existed); and ``{"<run>_step<N>": {"run": run, "step": N}}`` in run order, steps sorted.
    Raises ValueError naming the key for a step that is not a positive integer or is repeated,
    and for a checkpoint name that is also a run's name.
    """
    expanded: list[dict[str, Any]] = []
    checkpoints: dict[str, dict[str, Any]] = {}
    for run in runs:
        run = dict(run)
        steps = run.get("eval_steps")
        if steps is None:
            run.pop("eval_steps", None)
            expanded.append(run)
            continue
        key = f"config.training.runs[{run['name']}].eval_steps"
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in steps) or len(set(steps)) != len(steps):
            raise ValueError(f"{key}: need distinct positive step numbers, got {list(steps)}")
        run["eval_steps"] = sorted(steps)
        expanded.append(run)
        for step in run["eval_steps"]:
            checkpoints[checkpoint_name(run["name"], step)] = {"run": run["name"], "step": step}
    clashes = sorted(set(checkpoints) & {run["name"] for run in expanded})
    if clashes:
        raise ValueError(f"config.training.runs: checkpoint model(s) {clashes} have the name of a run; rename the run")
    return expanded, checkpoints


def curve_rows(
    tradeoff: Mapping[str, Mapping[str, Any]],
    checkpoints: Mapping[str, Mapping[str, Any]],
    final_steps: Mapping[str, int],
) -> dict[str, list[dict[str, Any]]]:
    """Each run's changes against the baseline through its checkpoints, ending at its final adapter.

    ``tradeoff[model]`` holds a model's changes (``delta_spider_ex_points``, its paired-bootstrap
    ``spider_ci_low_points``/``spider_ci_high_points``, ``delta_mmlu_overall_points`` and its
    ``mmlu_ci_*``), for every run and checkpoint; ``final_steps[run]`` the run's last optimizer
    step (hyperparams.json ``global_steps``). Returns ``{run: [{"step", "model", "final", **changes}]}``
    in step order, for every run of ``final_steps`` (a run without checkpoints has its final row only).
    Raises ValueError for a checkpoint of an unknown run or without results.
    """
    curve: dict[str, list[dict[str, Any]]] = {run: [] for run in final_steps}
    for model, where in checkpoints.items():
        if where["run"] not in curve or model not in tradeoff:
            raise ValueError(f"checkpoint {model!r} of run {where['run']!r} has no results")
        curve[where["run"]].append({"step": where["step"], "model": model, "final": False, **tradeoff[model]})
    for run, step in final_steps.items():
        rows = sorted(curve[run], key=lambda row: row["step"])
        curve[run] = [*rows, {"step": step, "model": run, "final": True, **tradeoff[run]}]
    return curve
