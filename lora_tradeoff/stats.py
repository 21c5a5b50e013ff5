"""Statistics of the report: one model's accuracy, and two models compared on the same questions.

Every model answers the same questions (Spider dev, the MMLU suite), so differences are
tested on the pairs (:func:`paired_comparison`, shared by Spider and MMLU): McNemar's exact
test on the questions where exactly one model is right, a paired bootstrap interval for the
accuracy difference and the smallest difference such a comparison detects. One model's
accuracy gets a Wilson score interval (:func:`wilson_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

OVERALL = "overall"
# regression.csv's ``level``: one row per category, the overall row, one row per subject.
LEVELS = ("category", "overall", "subject")
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion, as fractions; (nan, nan) for n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is not a point at 0 or n successes.
    """
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_half_width_points(n: int, discordant_share: float, z: float = Z_95) -> float:
    """Normal-approximation half-width, in points, of the paired-difference interval at no change.

    With a share ``d`` of questions on which exactly one of the two models is right and no net
    change, the difference of accuracies has standard error sqrt(d / n).
    """
    return 100 * z * math.sqrt(discordant_share / n)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs.

    ``b``: questions only the first model answers right; ``c``: only the second.
    Under "no difference" each discordant pair goes either way with probability
    1/2, so the p-value is the two-sided binomial tail
    ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``;
    1.0 when there are no discordant pairs. Exact integer arithmetic, then one
    division, so large counts neither overflow nor lose precision (numpy integer
    counts are turned into Python ints first: theirs wrap around at 64 bits).
    """
    b, c = int(b), int(c)
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


def minimum_detectable_difference(n: int, discordant_share: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest accuracy difference (fraction) a paired comparison of ``n`` questions detects.

    The two-sided McNemar test at level ``alpha`` finds a true difference ``delta`` of two
    paired accuracies with probability ``power`` when, by Connor's normal approximation
    (R. J. Connor, "Sample size for testing differences in proportions for the paired-sample
    design", Biometrics 43:207-211, 1987; the formula of most sample-size tables for McNemar),

        n = (z_{1-alpha/2} * sqrt(psi) + z_{power} * sqrt(psi - delta**2))**2 / delta**2,

    with ``psi`` the share of questions on which exactly one of the two models is right
    (the discordant share; here the observed one). This solves it for ``delta`` given ``n``
    and ``psi`` (bisection: the right side falls as ``delta`` grows on (0, psi]). Example:
    n = 150, psi = 0.2 gives 0.1015 (10.2 points); n = 14,042, psi = 0.1 gives 0.0075.

    Returns NaN when ``n`` or ``psi`` is 0 (no discordant question: nothing to scale from), or
    when even ``delta = psi`` (every discordant question going one way) would need more than
    ``n`` questions. Raises ValueError for ``psi`` outside [0, 1] or a negative ``n``.
    """
    if n < 0 or not 0.0 <= discordant_share <= 1.0:
        raise ValueError(f"need n >= 0 and a discordant share in [0, 1]; got n={n}, share={discordant_share}")
    psi = float(discordant_share)
    if n == 0 or psi == 0.0:
        return math.nan
    z_alpha = NormalDist().inv_cdf(1 - alpha / 2)
    z_power = NormalDist().inv_cdf(power)

    def needed(delta: float) -> float:  # Connor's n for this delta
        return (z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(psi - delta * delta, 0.0))) ** 2 / delta**2

    if needed(psi) > n:
        return math.nan
    low, high = 0.0, psi
    for _ in range(100):
        middle = (low + high) / 2
        if needed(middle) > n:
            low = middle
        else:
            high = middle
    return high


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


@dataclass(frozen=True)
class PairedComparison:
    """Two models' outcomes on the same ``n`` questions (:func:`paired_comparison`).

    Accuracies, the interval ``(ci_low, ci_high)`` of accuracy - base_accuracy and the MDD are
    fractions (x 100: percent, points); NaN where undefined (no question; the MDD also as
    :func:`minimum_detectable_difference` says, e.g. a model against itself).
    """

    n: int
    base_accuracy: float
    accuracy: float
    base_only_correct: int  # discordant pairs: only the base model is right
    other_only_correct: int  # only the other model is right
    mcnemar_p: float
    ci_low: float
    ci_high: float
    mdd: float


def paired_comparison(
    base_correct: Sequence[bool], other_correct: Sequence[bool], n_resamples: int, seed: int, alpha: float = 0.05
) -> PairedComparison:
    """Compare two models on the same questions, one outcome pair per question, in one order.

    :func:`mcnemar_exact` on the discordant pairs, :func:`paired_bootstrap_ci` (``n_resamples``,
    ``seed``, level ``1 - alpha``) and :func:`minimum_detectable_difference` (two-sided
    ``alpha``, power 80 %) at the observed discordant share. No questions: NaN accuracies,
    interval and MDD, p = 1.
    """
    base = np.asarray(base_correct, dtype=bool)
    other = np.asarray(other_correct, dtype=bool)
    n = base.size
    base_only = int(np.sum(base & ~other))
    other_only = int(np.sum(~base & other))
    if n:
        low, high = paired_bootstrap_ci(base, other, n_resamples, seed, alpha)
        mdd = minimum_detectable_difference(n, (base_only + other_only) / n, alpha)
    else:
        low = high = mdd = math.nan
    return PairedComparison(
        n=n,
        base_accuracy=base.mean() if n else math.nan,
        accuracy=other.mean() if n else math.nan,
        base_only_correct=base_only,
        other_only_correct=other_only,
        mcnemar_p=mcnemar_exact(base_only, other_only),
        ci_low=low,
        ci_high=high,
        mdd=mdd,
    )


def _paired_outcomes(base: pd.DataFrame, other: pd.DataFrame, name: str, with_subject: bool) -> pd.DataFrame:
    """Base and other model's ``correct`` side by side per question id (same id set required)."""
    if set(base["id"]) != set(other["id"]) or len(base) != len(other):
        raise ValueError(f"model {name!r} was scored on other questions than the base model; rerun both on one suite")
    keys = ["id", "category", "subject", "correct"] if with_subject else ["id", "category", "correct"]
    return base[keys].merge(other[["id", "correct"]], on="id", suffixes=("_base", "_other"), validate="one_to_one")


PERCENT_DECIMALS = 4


def regression_table(
    scored: Mapping[str, pd.DataFrame],
    base: str = "base",
    n_resamples: int = 10_000,
    seed: int = 1234,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Accuracy per category, overall and per subject of every model, and its change against ``base``.

    ``scored`` maps a model name to its :func:`lora_tradeoff.mmlu.scoring.score_mmlu`
    rows (needs id, category, correct; subject for the subject rows). Output rows per
    model, in this order, told apart by ``level`` (:data:`LEVELS`): one per category
    (``level`` "category", in order of appearance), the ``"overall"`` row, then one per
    subject (``level`` "subject", by category and name; ``category`` holds the subject's
    category, ``subject`` its name, empty on the other rows). Columns:

    * ``n``, ``accuracy`` (percent);
    * ``delta_points``: accuracy - base accuracy, in percentage points;
    * ``delta_relative_pct``: that change relative to the base accuracy, in percent;
    * ``base_only_correct`` / ``other_only_correct``: the discordant pairs;
    * ``mcnemar_p``: :func:`mcnemar_exact` on them;
    * ``ci_low_points`` / ``ci_high_points``: :func:`paired_bootstrap_ci` of the
      difference, in percentage points (``1 - alpha`` level);
    * ``mdd_points``: :func:`minimum_detectable_difference` at this ``n`` and the observed
      discordant share (two-sided ``alpha``, power 80 %), in points; NaN on the base's own
      rows and where no question is discordant.

    Each row is one :func:`paired_comparison`.

    The base model's own rows compare it with itself (0 change, p = 1). Percentages and
    points are rounded to 4 decimals (one question in 10,000 is 0.01 points), p-values to 4
    significant digits: regression.csv then reads 33.3333, not 33.333333333333336.
    """
    if base not in scored:
        raise KeyError(f"base model {base!r} not among the scored models {sorted(scored)}")
    base_frame = scored[base]
    categories = list(dict.fromkeys(base_frame["category"]))
    has_subjects = all("subject" in frame for frame in scored.values())
    subjects = (
        sorted(
            set(zip(base_frame["category"], base_frame["subject"], strict=True)),
            key=lambda pair: (categories.index(pair[0]), pair[1]),
        )
        if has_subjects
        else []
    )
    rows = []
    for name, frame in scored.items():
        pairs = _paired_outcomes(base_frame, frame, name, has_subjects)
        groups = [("category", category, "", pairs[pairs["category"] == category]) for category in categories]
        groups.append(("overall", OVERALL, "", pairs))
        groups += [("subject", category, subject, pairs[pairs["subject"] == subject]) for category, subject in subjects]
        for level, category, subject, subset in groups:
            compared = paired_comparison(subset["correct_base"], subset["correct_other"], n_resamples, seed, alpha)
            base_accuracy = 100 * compared.base_accuracy
            accuracy = 100 * compared.accuracy
            rows.append(
                {
                    "model": name,
                    "level": level,
                    "category": category,
                    "subject": subject,
                    "n": compared.n,
                    "accuracy": round(accuracy, PERCENT_DECIMALS),
                    "delta_points": round(accuracy - base_accuracy, PERCENT_DECIMALS),
                    "delta_relative_pct": round(100 * (accuracy - base_accuracy) / base_accuracy, PERCENT_DECIMALS)
                    if base_accuracy
                    else float("nan"),
                    "base_only_correct": compared.base_only_correct,
                    "other_only_correct": compared.other_only_correct,
                    "mcnemar_p": float(f"{compared.mcnemar_p:.4g}"),
                    "ci_low_points": round(100 * compared.ci_low, PERCENT_DECIMALS),
                    "ci_high_points": round(100 * compared.ci_high, PERCENT_DECIMALS),
                    "mdd_points": round(100 * compared.mdd, PERCENT_DECIMALS),
                }
            )
    return pd.DataFrame(rows)
