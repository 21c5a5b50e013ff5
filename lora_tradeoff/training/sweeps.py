"""Hyper-parameter sweeps: one configured run trained once per combination of listed values.

A run with ``sweep: {learning_rate: [1.0e-4, 1.0e-3]}`` in ``config.training.runs`` becomes
the runs ``<name>_lr1e-4`` and ``<name>_lr1e-3``: ordinary runs (their own
``results/runs/<run>/``, Spider and MMLU scores, rerun tracking), identical but for the swept
key. Like seed replicates (:mod:`lora_tradeoff.training.replicates`), expanding names rather than adding
wildcards keeps every rule and path as it is and lets Snakemake add or drop one point's jobs
only. Several keys give their cartesian product, the first key varying slowest. The report
joins the points of one sweep in the order of the swept values (its frontier figure).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

# How each sweepable key (schemas/config.schema.yaml, training.runs[].sweep) appears in run names:
# a short prefix before the value (r64_all_lr1e-3, r16_qv_bs16), or the value alone where it names
# itself (r16_qv_full, r16_qv_nf4, r16_qv_cosine, r16_qv_adamw_8bit).
NAME_PARTS = {
    "method": "",
    "learning_rate": "lr",
    "r": "r",
    "alpha": "alpha",
    "num_epochs": "ep",
    "max_steps": "steps",
    "quantization": "",
    "weight_decay": "wd",
    "warmup_ratio": "warmup",
    "lr_scheduler": "",
    "per_device_batch_size": "bs",
    "grad_accumulation": "ga",
    "optim": "",
    "dropout": "dropout",
}


def format_value(value: Any) -> str:
    """A swept value as it appears in a run name: ``1e-3`` for 0.001, ``1p5e-5`` for 1.5e-05, ``2`` for 2.0."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e4:
            return str(int(value))
        mantissa, exponent = f"{value:.12e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".").replace(".", "p")  # a run name has no dots
        return f"{mantissa}e{int(exponent)}"
    return str(value).replace(".", "p")


def point_name(name: str, values: Mapping[str, Any]) -> str:
    """``<name>_<part><value>`` for each swept key, in the sweep's key order."""
    parts = [f"{NAME_PARTS.get(key, key)}{format_value(value)}" for key, value in values.items()]
    return "_".join([name, *parts])


def expand_sweeps(runs: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """``config.training.runs`` with every ``sweep`` entry expanded into one run per point.

    Returns ``(runs, sweeps)``: the runs as the workflow trains them (a run without ``sweep``
    unchanged; one with ``sweep`` replaced by one copy per combination of values, named by
    :func:`point_name`, without the ``sweep`` key) and ``{name: {"keys", "runs", "values"}}``
    for each swept run: its swept keys, its points' names in expansion order, and each point's
    swept values. Raises ValueError naming the key when a sweep is empty, lists no values or
    repeats one, sweeps ``name``/``seeds``/``sweep``, or when two runs end up with one name
    (e.g. ``1e-3`` and ``0.001``, or a point named like another run).
    """
    expanded: list[dict[str, Any]] = []
    sweeps: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}  # run name -> the config key that made it (for clash messages)
    for index, run in enumerate(runs):
        sweep = run.get("sweep")
        if sweep is None:
            if run["name"] in origin:
                raise ValueError(
                    f"config.training.runs[{index}].name: {run['name']} is also the name made by "
                    f"{origin[run['name']]}; rename one of the runs"
                )
            expanded.append(dict(run))
            origin[run["name"]] = f"config.training.runs[{index}].name"
            continue
        key = f"config.training.runs[{run['name']}].sweep"
        if not sweep:
            raise ValueError(f"{key}: list at least one key with its values, e.g. learning_rate: [1.0e-4, 1.0e-3]")
        for swept, values in sweep.items():
            if swept in ("name", "seeds", "sweep", "eval_steps"):
                raise ValueError(f"{key}.{swept}: cannot be swept; sweep hyper-parameters such as learning_rate")
            if not isinstance(values, list) or not values:
                raise ValueError(f"{key}.{swept}: need a list of values, got {values!r}")
            if len({format_value(value) for value in values}) != len(values):
                raise ValueError(f"{key}.{swept}: values {values} repeat a value (or two give one run name)")
        base = {name: value for name, value in run.items() if name != "sweep"}
        points = []
        for combination in itertools.product(*sweep.values()):
            values = dict(zip(sweep, combination, strict=True))
            name = point_name(run["name"], values)
            if name in origin:
                raise ValueError(
                    f"{key}.{next(iter(sweep))}: point {name} is also the name made by {origin[name]}; "
                    "rename one of the runs"
                )
            origin[name] = key
            expanded.append({**base, **values, "name": name})
            points.append((name, values))
        sweeps[run["name"]] = {
            "keys": list(sweep),
            "runs": [name for name, _ in points],
            "values": {name: values for name, values in points},
        }
    return expanded, sweeps
