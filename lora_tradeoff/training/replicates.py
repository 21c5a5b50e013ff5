"""Training-seed replicates: one configured run trained once per seed, and their spread.

A run with ``seeds: [42, 43]`` in ``config.training.runs`` becomes the runs ``<name>_s42``
and ``<name>_s43``: each an ordinary run (its own ``results/runs/<name>_s<seed>/``, adapter,
Spider and MMLU scores, rerun tracking), identical but for ``seed``. Expanding names, rather
than adding a seed wildcard, keeps every rule and path as it is (the base model has no seed)
and lets Snakemake add or drop one seed's jobs only. The report groups the replicates back
under ``<name>`` (:func:`across_seeds`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

# Two-sided 95 % quantiles t(0.975; df) of Student's t for df = 1..30 (any statistics table, e.g.
# NIST/SEMATECH e-Handbook of Statistical Methods, table 1.3.6.7.2).
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def replicate_name(name: str, seed: int) -> str:
    return f"{name}_s{seed}"


def expand_seed_replicates(runs: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """``config.training.runs`` with every ``seeds`` entry expanded into one run per seed.

    Returns ``(runs, groups)``: the runs as the workflow trains them (a run without ``seeds``
    unchanged; one with ``seeds`` replaced by copies named ``<name>_s<seed>`` whose ``seed``
    is that seed and that have no ``seeds`` key), and ``{name: [replicate names]}`` for the
    runs that had ``seeds``, in seed order as listed. Raises ValueError naming the key when
    ``seeds`` is empty or repeats a seed, or when two runs end up with one name.
    """
    expanded: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {}
    for index, run in enumerate(runs):
        seeds = run.get("seeds")
        if seeds is None:
            expanded.append(dict(run))
            continue
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"config.training.runs[{index}].seeds: need distinct seeds, got {list(seeds)}")
        base = {key: value for key, value in run.items() if key != "seeds"}
        names = [replicate_name(run["name"], seed) for seed in seeds]
        expanded += [{**base, "name": name, "seed": seed} for name, seed in zip(names, seeds, strict=True)]
        groups[run["name"]] = names
    counts: dict[str, int] = {}
    for run in expanded:
        counts[run["name"]] = counts.get(run["name"], 0) + 1
    clashes = sorted(name for name, count in counts.items() if count > 1)
    if clashes:
        raise ValueError(f"config.training.runs: run name(s) {clashes} given twice (after expanding seeds); rename one")
    return expanded, groups


def t_quantile_975(df: int) -> float:
    """t(0.975; df): the table for df <= 30, beyond it the first two terms of the Cornish-Fisher
    expansion z + (z^3 + z) / (4 df) (Abramowitz & Stegun 26.7.5; error < 0.002 for df > 30)."""
    if df < 1:
        raise ValueError(f"need at least 1 degree of freedom, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df)


def across_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean of one quantity over replicates and its 95 % interval across seeds.

    The interval is mean ± t(0.975; k-1) · sd / sqrt(k) over the k replicate values (Student's
    t; it treats the seeds as a sample of training randomness and says nothing about the
    questions, whose uncertainty is each replicate's own per-question interval). Returns
    ``{"n_seeds", "values", "mean", "sd", "ci_low", "ci_high"}``; sd and the interval are
    None with one value. Raises ValueError for no values or a missing (None/NaN) value.
    """
    if not values or any(v is None or math.isnan(v) for v in values):
        raise ValueError(f"need one finite value per replicate, got {list(values)}")
    k = len(values)
    mean = statistics.fmean(values)
    if k == 1:
        return {"n_seeds": 1, "values": list(values), "mean": mean, "sd": None, "ci_low": None, "ci_high": None}
    sd = statistics.stdev(values)
    half = t_quantile_975(k - 1) * sd / math.sqrt(k)
    return {"n_seeds": k, "values": list(values), "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}
