"""Paired statistics for comparing models on the same MMLU questions.

Every model answers the same questions, so differences are tested on the
pairs: McNemar's exact test on the questions where exactly one model is right,
and a paired bootstrap interval for the accuracy difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

OVERALL = "overall"


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs.

    ``b``: questions only the first model answers right; ``c``: only the second.
    Under "no difference" each discordant pair goes either way with probability
    1/2, so the p-value is the two-sided binomial tail
    ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``;
    1.0 when there are no discordant pairs. Exact integer arithmetic, then one
    division, so large counts neither overflow nor lose precision.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    n = b + c
    # sum of C(n, k) for k <= min(b, c), each term from the previous one
    # (C(n, k+1) = C(n, k) * (n-k) / (k+1), an exact integer division): linear
    # in min(b, c) where calling math.comb per term is quadratic.
    term = tail = 1
    for k in range(min(b, c)):
        term = term * (n - k) // (k + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap_ci(
    base_correct: Sequence[bool],
    other_correct: Sequence[bool],
    n_resamples: int,
    seed: int,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` interval of accuracy(other) - accuracy(base).

    The questions are resampled with replacement, each keeping its pair of
    outcomes. A pair's difference is -1, 0 or +1, so a resample is fully
    described by how many of each it draws: a multinomial draw over the three
    observed proportions, which is the same distribution as resampling indices
    but takes memory independent of the number of questions. Fractions, not points.
    """
    base = np.asarray(base_correct, dtype=bool)
    other = np.asarray(other_correct, dtype=bool)
    if base.shape != other.shape or base.ndim != 1 or base.size == 0:
        raise ValueError(f"need two equally long, non-empty outcome lists; got {base.shape} and {other.shape}")
    n = base.size
    worse = int(np.sum(base & ~other))
    better = int(np.sum(~base & other))
    counts = np.random.default_rng(seed).multinomial(n, [worse / n, better / n, (n - worse - better) / n], n_resamples)
    differences = (counts[:, 1] - counts[:, 0]) / n
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _paired_outcomes(base: pd.DataFrame, other: pd.DataFrame, name: str) -> pd.DataFrame:
    """Base and other model's ``correct`` side by side per question id (same id set required)."""
    if set(base["id"]) != set(other["id"]) or len(base) != len(other):
        raise ValueError(f"model {name!r} was scored on other questions than the base model; rerun both on one suite")
    return base[["id", "category", "correct"]].merge(
        other[["id", "correct"]], on="id", suffixes=("_base", "_other"), validate="one_to_one"
    )


PERCENT_DECIMALS = 4


def regression_table(
    scored: Mapping[str, pd.DataFrame],
    base: str = "base",
    n_resamples: int = 10_000,
    seed: int = 1234,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Accuracy per category and overall of every model, and its change against ``base``.

    ``scored`` maps a model name to its :func:`lora_tradeoff.mmlu.score_mmlu`
    rows (needs id, category, correct). One output row per model and category
    (categories in order of appearance, then ``"overall"``):

    * ``n``, ``accuracy`` (percent);
    * ``delta_points``: accuracy - base accuracy, in percentage points;
    * ``delta_relative_pct``: that change relative to the base accuracy, in percent;
    * ``base_only_correct`` / ``other_only_correct``: the discordant pairs;
    * ``mcnemar_p``: :func:`mcnemar_exact` on them;
    * ``ci_low_points`` / ``ci_high_points``: :func:`paired_bootstrap_ci` of the
      difference, in percentage points (``1 - alpha`` level).

    The base model's own rows compare it with itself (0 change, p = 1). Percentages and
    points are rounded to 4 decimals (one question in 10,000 is 0.01 points), p-values to 4
    significant digits: regression.csv then reads 33.3333, not 33.333333333333336.
    """
    if base not in scored:
        raise KeyError(f"base model {base!r} not among the scored models {sorted(scored)}")
    base_frame = scored[base]
    categories = list(dict.fromkeys(base_frame["category"]))
    rows = []
    for name, frame in scored.items():
        pairs = _paired_outcomes(base_frame, frame, name)
        for category in [*categories, OVERALL]:
            subset = pairs if category == OVERALL else pairs[pairs["category"] == category]
            base_correct = subset["correct_base"].to_numpy(dtype=bool)
            other_correct = subset["correct_other"].to_numpy(dtype=bool)
            base_accuracy = 100 * base_correct.mean()
            accuracy = 100 * other_correct.mean()
            base_only = int(np.sum(base_correct & ~other_correct))
            other_only = int(np.sum(~base_correct & other_correct))
            low, high = paired_bootstrap_ci(base_correct, other_correct, n_resamples, seed, alpha)
            rows.append(
                {
                    "model": name,
                    "category": category,
                    "n": len(subset),
                    "accuracy": round(accuracy, PERCENT_DECIMALS),
                    "delta_points": round(accuracy - base_accuracy, PERCENT_DECIMALS),
                    "delta_relative_pct": round(100 * (accuracy - base_accuracy) / base_accuracy, PERCENT_DECIMALS)
                    if base_accuracy
                    else float("nan"),
                    "base_only_correct": base_only,
                    "other_only_correct": other_only,
                    "mcnemar_p": float(f"{mcnemar_exact(base_only, other_only):.4g}"),
                    "ci_low_points": round(100 * low, PERCENT_DECIMALS),
                    "ci_high_points": round(100 * high, PERCENT_DECIMALS),
                }
            )
    return pd.DataFrame(rows)
