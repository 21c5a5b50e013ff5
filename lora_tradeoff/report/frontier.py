"""The trade-off frontier: every run's Δ Spider EX against its Δ MMLU, by method family, with verdicts.

One row per fine-tuned run (:func:`frontier_rows`; seed replicates are rows of their own,
checkpoints along training are not runs): its changes against the baseline with their 95 %
paired bootstrap intervals and minimum detectable differences (MDD, both from
:func:`lora_tradeoff.stats.paired_comparison`, i.e. :func:`lora_tradeoff.stats.minimum_detectable_difference`
for Spider's and MMLU's paired per-question outcomes alike), its method family
(:func:`method_family`), its swept values (:mod:`lora_tradeoff.training.sweeps`), whether it is
Pareto-optimal (:func:`pareto_optimal`) and a verdict on forgetting (:func:`frontier_verdict`,
the one home of that policy). :func:`sweep_lines` joins the points of each sweep in the order
of the swept value, for the figure and the prose.

Units: changes, intervals and MDDs in percentage points against the baseline.
"""

from __future__ import annotations

import json
import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from lora_tradeoff.stats import OVERALL

LORA, QLORA, FULL = "LoRA", "QLoRA", "full fine-tuning"
FAMILIES = (LORA, QLORA, FULL)  # the order of the legend and the prose

NO_FORGETTING, FORGETTING, COLLAPSE = "no forgetting detected", "forgetting detected", "collapse"
VERDICTS = (NO_FORGETTING, FORGETTING, COLLAPSE)
# The verdict's thresholds (frontier_verdict): forgetting when the 95 % interval of Δ MMLU lies
# wholly below FORGETTING_BELOW_POINTS; collapse when each change is a drop larger than
# COLLAPSE_MDD_MULTIPLE times its MDD.
FORGETTING_BELOW_POINTS = 0.0
COLLAPSE_MDD_MULTIPLE = 1.0


def method_family(record: Mapping[str, Any]) -> str:
    """The method family of a run from its hyperparams.json record: :data:`LORA`, :data:`QLORA` or :data:`FULL`.

    ``record["spec"]["method"]`` is ``"lora"`` or ``"full"`` (absent in records written before
    full fine-tuning existed: ``"lora"``); a LoRA run on a ``quantization: nf4`` base is QLoRA.
    Raises ValueError for another method, or for full fine-tuning of a 4-bit base.
    """
    spec = record["spec"]
    method = spec.get("method", "lora")
    quantized = spec.get("quantization", "none") == "nf4"
    if method == "lora":
        return QLORA if quantized else LORA
    if method == "full" and not quantized:
        return FULL
    raise ValueError(
        f"run {record.get('run', '?')!r}: no method family for method {method!r} with quantization "
        f"{spec.get('quantization')!r}"
    )


def _drop_beyond_mdd(delta: float | None, mdd: float | None) -> bool:
    """A drop larger than the MDD: ``delta < -COLLAPSE_MDD_MULTIPLE * mdd``. False where the MDD is
    undefined (None: no question differs, or too few for any change to be detectable)."""
    return delta is not None and mdd is not None and delta < -COLLAPSE_MDD_MULTIPLE * mdd


def frontier_verdict(row: Mapping[str, Any]) -> str:
    """What one run's changes say about forgetting (the thresholds are this module's constants).

    :data:`COLLAPSE` when Δ Spider EX and Δ MMLU overall are both drops beyond their MDD
    (``delta < -mdd``; an undefined MDD never counts as exceeded); else :data:`FORGETTING` when
    the 95 % interval of Δ MMLU lies below 0 (its upper bound < 0); else :data:`NO_FORGETTING`.
    ``row`` needs ``delta_spider_ex_points``, ``spider_mdd_points``, ``delta_mmlu_overall_points``,
    ``mmlu_mdd_points`` and ``mmlu_ci_high_points`` (points; MDDs may be None).
    """
    if _drop_beyond_mdd(row["delta_spider_ex_points"], row["spider_mdd_points"]) and _drop_beyond_mdd(
        row["delta_mmlu_overall_points"], row["mmlu_mdd_points"]
    ):
        return COLLAPSE
    if row["mmlu_ci_high_points"] < FORGETTING_BELOW_POINTS:
        return FORGETTING
    return NO_FORGETTING


def pareto_optimal(points: Mapping[str, tuple[float | None, float | None]]) -> set[str]:
    """The names whose point ``(Δ MMLU, Δ EX)`` no other point dominates.

    ``b`` dominates ``a`` when ``b`` is >= ``a`` on both changes and > on one. Only the runs
    compete (the baseline at the origin is not a candidate); two runs at the same point are both
    optimal unless a third dominates them. A point with a missing change is never optimal.
    """
    known = {name: p for name, p in points.items() if None not in p and not any(map(math.isnan, p))}

    def dominated(a: tuple[float, float]) -> bool:
        return any(b[0] >= a[0] and b[1] >= a[1] and (b[0] > a[0] or b[1] > a[1]) for b in known.values())

    return {name for name, point in known.items() if not dominated(point)}


def sweep_members(
    sweeps: Mapping[str, Mapping[str, Any]], runs: Sequence[str], replicates: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, dict[str, Any], str | None]]:
    """``{run: (sweep, swept values, replicate group or None)}`` for every run a sweep made.

    A sweep's point trained with several seeds is a replicate group (:mod:`lora_tradeoff.training.replicates`
    expands seeds after sweeps): each of its replicates gets the point's values. Raises ValueError
    for a sweep point that is neither a run nor a replicate group, and for a run in two sweeps.
    """
    members: dict[str, tuple[str, dict[str, Any], str | None]] = {}
    for sweep, entry in sweeps.items():
        for point in entry["runs"]:
            names = [point] if point in runs else list(replicates.get(point, []))
            if not names:
                raise ValueError(f"sweep {sweep!r} names {point!r}, which is neither a run nor a replicate group")
            for name in names:
                if name in members:
                    raise ValueError(f"run {name!r} is in two sweeps: {members[name][0]!r} and {sweep!r}")
                members[name] = (sweep, dict(entry["values"][point]), None if point in runs else point)
    return members


def frontier_rows(
    runs: Sequence[str],
    tradeoff: Mapping[str, Mapping[str, Any]],
    spider: Mapping[str, Mapping[str, Any]],
    mmlu: Mapping[str, Mapping[str, Any]],
    hyperparams: Mapping[str, Mapping[str, Any]],
    sweeps: Mapping[str, Mapping[str, Any]] | None = None,
    replicates: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per run, sorted by Δ MMLU overall, highest (least forgetting) first; ties by Δ EX, highest first.

    ``tradeoff``, ``spider`` and ``mmlu`` are the summary's entries of the same names
    (:func:`lora_tradeoff.report.summary.build_summary`), ``hyperparams`` each run's
    hyperparams.json, ``sweeps`` ``{sweep: {"keys", "runs", "values"}}``
    (:func:`lora_tradeoff.training.sweeps.expand_sweeps`) and ``replicates`` ``{group: [run names]}``.
    Row keys: ``run``, ``method_family``, ``sweep`` (None outside a sweep), ``swept_values``
    (``{key: value}``, empty outside a sweep),
    ``replicate_of`` (the seed-replicate group, or None), ``delta_spider_ex_points``,
    ``spider_ci_low_points``, ``spider_ci_high_points``, ``spider_mdd_points``,
    ``delta_mmlu_overall_points``, ``mmlu_ci_low_points``, ``mmlu_ci_high_points``,
    ``mmlu_mdd_points`` (MDDs None where undefined), ``mmlu_categories`` (``{category:
    {"delta_points", "ci_low_points", "ci_high_points"}}``, every category but overall),
    ``pareto_optimal``, ``verdict`` (:func:`frontier_verdict`) and ``mmlu_cost_per_ex_point``
    (Δ MMLU / Δ EX for a run with Δ EX > 0 and forgetting or collapse, else None).
    """
    replicates = dict(replicates or {})
    members = sweep_members(sweeps or {}, runs, replicates)
    group_of = {name: group for group, names in replicates.items() for name in names}
    rows = []
    for run in runs:
        categories = mmlu[run]["categories"]
        sweep, values, _ = members.get(run, (None, {}, None))
        row: dict[str, Any] = {
            "run": run,
            "method_family": method_family(hyperparams[run]),
            "sweep": sweep,
            "swept_values": values,
            "replicate_of": group_of.get(run),
            "delta_spider_ex_points": tradeoff[run]["delta_spider_ex_points"],
            "spider_ci_low_points": tradeoff[run]["spider_ci_low_points"],
            "spider_ci_high_points": tradeoff[run]["spider_ci_high_points"],
            "spider_mdd_points": spider[run]["mdd_points"],
            "delta_mmlu_overall_points": tradeoff[run]["delta_mmlu_overall_points"],
            "mmlu_ci_low_points": tradeoff[run]["mmlu_ci_low_points"],
            "mmlu_ci_high_points": tradeoff[run]["mmlu_ci_high_points"],
            "mmlu_mdd_points": categories[OVERALL]["mdd_points"],
            "mmlu_categories": {
                category: {key: entry[key] for key in ("delta_points", "ci_low_points", "ci_high_points")}
                for category, entry in categories.items()
                if category != OVERALL
            },
        }
        row["verdict"] = frontier_verdict(row)
        ex = row["delta_spider_ex_points"]
        gained_and_forgot = ex is not None and ex > 0 and row["verdict"] != NO_FORGETTING
        row["mmlu_cost_per_ex_point"] = row["delta_mmlu_overall_points"] / ex if gained_and_forgot else None
        rows.append(row)
    optimal = pareto_optimal({r["run"]: (r["delta_mmlu_overall_points"], r["delta_spider_ex_points"]) for r in rows})
    for row in rows:
        row["pareto_optimal"] = row["run"] in optimal

    def order(row: Mapping[str, Any]) -> tuple[float, float]:
        ex = row["delta_spider_ex_points"]
        return (-row["delta_mmlu_overall_points"], math.inf if ex is None else -ex)

    return sorted(rows, key=order)  # stable: equal changes keep the run order


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _group_verdict(verdicts: Sequence[str]) -> str:
    """One verdict for a point made of several seed replicates: theirs if they agree, else ``mixed (…)``."""
    distinct = [v for v in VERDICTS if v in verdicts]
    return distinct[0] if len(distinct) == 1 else f"mixed ({', '.join(distinct)})"


def sweep_lines(
    sweeps: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], replicates: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """The lines of the frontier figure: each sweep's points in the order of its first swept value.

    A sweep of one key is one line. With several keys, the points that share every other
    swept value form one line (``fixed`` holds those values), ordered by the first key. The
    order is ascending when every value of the first key is a number, else the configured
    order (e.g. ``method: [lora, full]``). A point trained with several seeds is the mean of its
    replicates' changes (``replicates[point]``), with their common verdict or ``mixed (…)``.
    Returns ``[{"sweep", "key", "ascending", "fixed", "runs", "values", "delta_mmlu_overall_points",
    "delta_spider_ex_points", "verdicts", "families"}]``, per sweep in line order; the lists
    run along the line (``ascending``: ordered by value, not as configured; ``families``: the
    method families on it).
    """
    by_run = {row["run"]: row for row in rows}
    lines = []
    for sweep, entry in sweeps.items():
        key, others = entry["keys"][0], entry["keys"][1:]
        groups: dict[str, list[str]] = {}
        for point in entry["runs"]:
            fixed = {k: entry["values"][point][k] for k in others}
            groups.setdefault(json.dumps(fixed, sort_keys=True, default=str), []).append(point)
        for points in groups.values():
            by_value = all(_is_number(entry["values"][p][key]) for p in points)
            if by_value:
                points = sorted(points, key=lambda p: entry["values"][p][key])
            members = [[p] if p in by_run else list(replicates[p]) for p in points]
            rows_of = [[by_run[name] for name in names] for names in members]
            lines.append(
                {
                    "sweep": sweep,
                    "key": key,
                    "ascending": by_value,
                    "fixed": {k: entry["values"][points[0]][k] for k in others},
                    "runs": list(points),
                    "values": [entry["values"][p][key] for p in points],
                    "delta_mmlu_overall_points": [
                        statistics.fmean(r["delta_mmlu_overall_points"] for r in rs) for rs in rows_of
                    ],
                    "delta_spider_ex_points": [
                        statistics.fmean(r["delta_spider_ex_points"] for r in rs) for rs in rows_of
                    ],
                    "verdicts": [_group_verdict([r["verdict"] for r in rs]) for rs in rows_of],
                    "families": sorted({r["method_family"] for rs in rows_of for r in rs}, key=FAMILIES.index),
                }
            )
    return lines
