"""McNemar, paired bootstrap, the paired comparison and the regression table on hand-checked tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lora_tradeoff.stats import (
    mcnemar_exact,
    minimum_detectable_difference,
    paired_bootstrap_ci,
    paired_comparison,
    regression_table,
)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 5, 0.0625),  # 2 * (1/2)^5
        (5, 0, 0.0625),
        (1, 4, 0.375),  # 2 * (1 + 5) / 32
        (3, 3, 1.0),
        (0, 0, 1.0),
        (2, 10, 0.0385742),  # 2 * (1 + 12 + 66) / 4096
    ],
)
def test_mcnemar_exact_on_hand_checked_tables(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, abs=1e-7)


def test_mcnemar_exact_handles_large_counts():
    assert mcnemar_exact(5000, 5000) == 1.0
    # counts straight from a pandas sum are numpy int64, whose products wrap around at 64 bits
    assert mcnemar_exact(np.int64(54), np.int64(147)) == mcnemar_exact(54, 147) > 0
    assert 0.0 <= mcnemar_exact(4800, 5200) < 0.01
    assert mcnemar_exact(14000, 14000) == 1.0


def _pairs(both: int, base_only: int, other_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    base = [True] * both + [True] * base_only + [False] * other_only + [False] * neither
    other = [True] * both + [False] * base_only + [True] * other_only + [False] * neither
    return base, other


def test_bootstrap_of_identical_or_uniformly_better_outcomes_is_a_point():
    base, other = _pairs(both=30, base_only=0, other_only=0, neither=20)
    assert paired_bootstrap_ci(base, other, 1000, seed=0) == (0.0, 0.0)
    assert paired_bootstrap_ci([False] * 10, [True] * 10, 1000, seed=0) == (1.0, 1.0)


def test_bootstrap_matches_index_resampling_and_is_seeded():
    base, other = _pairs(both=50, base_only=10, other_only=20, neither=20)  # n=100, difference +0.10
    low, high = paired_bootstrap_ci(base, other, 10_000, seed=3)
    assert paired_bootstrap_ci(base, other, 10_000, seed=3) == (low, high)
    # The textbook paired bootstrap: resample question indices.
    rng = np.random.default_rng(0)
    diff = np.asarray(other, dtype=float) - np.asarray(base, dtype=float)
    means = diff[rng.integers(0, 100, size=(10_000, 100))].mean(axis=1)
    expected_low, expected_high = np.quantile(means, [0.025, 0.975])
    assert low == pytest.approx(expected_low, abs=0.011) and high == pytest.approx(expected_high, abs=0.011)
    # Normal approximation: 0.10 +- 1.96 * sqrt((0.3 - 0.01) / 100).
    assert low == pytest.approx(-0.0056, abs=0.015) and high == pytest.approx(0.2056, abs=0.015)


def test_bootstrap_rejects_unpaired_outcomes():
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap_ci([True, False], [True], 100, seed=0)


def _scored(outcomes: dict[str, list[bool]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"q{i}" for i in range(len(outcomes["stem"] + outcomes["humanities"]))],
            "category": ["stem"] * len(outcomes["stem"]) + ["humanities"] * len(outcomes["humanities"]),
            "correct": outcomes["stem"] + outcomes["humanities"],
        }
    )


def test_regression_table_on_a_hand_checked_example():
    base = _scored({"stem": [True, True, True, True, False], "humanities": [True, False, False, False, False]})
    # Fine-tuned: loses 3 stem questions, gains 1 humanities question.
    tuned = _scored({"stem": [True, False, False, False, False], "humanities": [True, True, False, False, False]})
    table = regression_table(
        {"base": base, "lora": tuned.sample(frac=1, random_state=0)}, base="base", n_resamples=2000, seed=1
    )
    assert list(table["category"]) == ["stem", "humanities", "overall"] * 2
    lora = table[table["model"] == "lora"].set_index("category")
    assert lora.loc["stem", "accuracy"] == pytest.approx(20.0)
    assert lora.loc["stem", "delta_points"] == pytest.approx(-60.0)
    assert lora.loc["stem", "delta_relative_pct"] == pytest.approx(-75.0)
    assert (lora.loc["stem", "base_only_correct"], lora.loc["stem", "other_only_correct"]) == (3, 0)
    assert lora.loc["stem", "mcnemar_p"] == pytest.approx(0.25)
    assert lora.loc["humanities", "delta_points"] == pytest.approx(20.0)
    assert lora.loc["humanities", "mcnemar_p"] == pytest.approx(1.0)
    assert lora.loc["overall", "n"] == 10
    assert lora.loc["overall", "accuracy"] == pytest.approx(30.0)
    assert lora.loc["overall", "delta_points"] == pytest.approx(-20.0)
    assert lora.loc["overall", "mcnemar_p"] == pytest.approx(0.625)  # b=3, c=1: 2 * (1 + 4) / 16
    assert lora.loc["overall", "ci_low_points"] <= -20.0 <= lora.loc["overall", "ci_high_points"]
    base_rows = table[table["model"] == "base"]
    assert (base_rows["delta_points"] == 0).all() and (base_rows["mcnemar_p"] == 1.0).all()


def test_regression_table_is_rounded_for_reading():
    base = _scored({"stem": [True, False, False], "humanities": [True, True, False]})
    tuned = _scored({"stem": [True, True, False], "humanities": [True, True, True]})
    table = regression_table({"base": base, "lora": tuned}, base="base", n_resamples=500, seed=1)
    lora = table[table["model"] == "lora"].set_index("category")
    # 1/3 -> 2/3: unrounded 66.66666666666667, 33.333333333333336 and 100.00000000000003
    assert (lora.loc["stem", "accuracy"], lora.loc["stem", "delta_points"]) == (66.6667, 33.3333)
    assert lora.loc["stem", "delta_relative_pct"] == 100.0
    assert lora.loc["overall", "mcnemar_p"] == 0.5  # b=0, c=2
    for column in ("accuracy", "delta_points", "delta_relative_pct", "ci_low_points", "ci_high_points"):
        assert (table[column].dropna() == table[column].dropna().round(4)).all(), column


def test_regression_table_refuses_models_scored_on_other_questions():
    base = _scored({"stem": [True, False], "humanities": [True]})
    other = base.assign(id=["q0", "q1", "x"])
    with pytest.raises(ValueError, match="other questions"):
        regression_table({"base": base, "lora": other})


def _connor_n(delta: float, psi: float) -> float:
    """Connor (1987), written out by hand: z(0.975) = 1.959964, z(0.80) = 0.841621."""
    return (1.959964 * math.sqrt(psi) + 0.841621 * math.sqrt(psi - delta**2)) ** 2 / delta**2


def test_minimum_detectable_difference_inverts_connors_formula():
    # By hand: at n = 150, psi = 0.2, delta = 0.100 needs 154.6 questions and delta = 0.102 needs 148.5,
    # so the answer lies between them.
    assert _connor_n(0.100, 0.2) == pytest.approx(154.6, abs=0.1)
    assert _connor_n(0.102, 0.2) == pytest.approx(148.5, abs=0.1)
    mdd = minimum_detectable_difference(150, 0.2)
    assert 0.100 < mdd < 0.102
    assert _connor_n(mdd, 0.2) == pytest.approx(150, abs=0.01)
    for n, psi in [(50, 0.2), (972, 0.1), (14_042, 0.1), (3077, 0.05)]:
        assert _connor_n(minimum_detectable_difference(n, psi), psi) == pytest.approx(n, rel=1e-6)
    # Four times the questions halve it, to first order (the sqrt(psi - delta^2) term moves a little).
    assert minimum_detectable_difference(600, 0.2) == pytest.approx(mdd / 2, rel=0.03)
    # The full MMLU test split at a 10 % discordant share: under one point.
    assert minimum_detectable_difference(14_042, 0.1) == pytest.approx(0.00748, abs=5e-5)


def test_minimum_detectable_difference_has_the_stated_power():
    """Simulated: at the MDD, the exact McNemar test at 5 % rejects in about 80 % of samples."""
    n, psi = 150, 0.2
    delta = minimum_detectable_difference(n, psi)
    rng = np.random.default_rng(0)
    # Discordant cells: base only right with (psi - delta) / 2, other only right with (psi + delta) / 2.
    counts = rng.multinomial(n, [(psi - delta) / 2, (psi + delta) / 2, 1 - psi], size=2000)
    power = np.mean([mcnemar_exact(int(b), int(c)) < 0.05 for b, c, _ in counts])
    assert 0.72 <= power <= 0.86  # the exact test is a little conservative; 2000 draws: +-0.02


def test_minimum_detectable_difference_is_nan_where_undefined():
    assert math.isnan(minimum_detectable_difference(150, 0.0))  # no discordant question
    assert math.isnan(minimum_detectable_difference(0, 0.2))
    assert math.isnan(minimum_detectable_difference(150, 0.01))  # even 1.5 one-way questions would not do
    with pytest.raises(ValueError, match="discordant share"):
        minimum_detectable_difference(150, 1.5)


def test_regression_table_has_subject_rows_and_the_mdd():
    subjects = ["abstract_algebra", "anatomy", "philosophy"]
    categories = ["stem", "stem", "humanities"]
    rng = np.random.default_rng(5)
    base_correct = rng.random(300) < 0.5
    flips = rng.random(300) < 0.2
    frame = pd.DataFrame(
        {
            "id": [f"q{i}" for i in range(300)],
            "subject": [subjects[i % 3] for i in range(300)],
            "category": [categories[i % 3] for i in range(300)],
            "correct": base_correct,
        }
    )
    table = regression_table(
        {"base": frame, "lora": frame.assign(correct=base_correct ^ flips)}, n_resamples=500, seed=1
    )
    lora = table[table["model"] == "lora"]
    assert list(lora["level"]) == ["category", "category", "overall", "subject", "subject", "subject"]
    assert list(lora["subject"]) == ["", "", "", "abstract_algebra", "anatomy", "philosophy"]
    assert list(lora["category"]) == ["stem", "humanities", "overall", "stem", "stem", "humanities"]
    for row in lora.to_dict("records"):
        subset = frame[frame["subject"] == row["subject"]] if row["subject"] else frame
        if row["level"] == "category":
            subset = frame[frame["category"] == row["category"]]
        idx = subset.index.to_numpy()
        assert row["n"] == len(idx)
        assert row["accuracy"] == pytest.approx(100 * (base_correct ^ flips)[idx].mean(), abs=1e-4)
        share = flips[idx].mean()
        assert row["mdd_points"] == pytest.approx(100 * minimum_detectable_difference(len(idx), share), abs=1e-4)
    assert table[table["model"] == "base"]["mdd_points"].isna().all()


def test_paired_comparison_counts_tests_and_bounds_one_pair_of_models():
    base, other = _pairs(both=50, base_only=10, other_only=20, neither=20)  # n=100, difference +0.10
    compared = paired_comparison(base, other, 2000, seed=3)
    assert (compared.n, compared.base_accuracy, compared.accuracy) == (100, 0.6, 0.7)
    assert (compared.base_only_correct, compared.other_only_correct) == (10, 20)
    assert compared.mcnemar_p == mcnemar_exact(10, 20)
    assert (compared.ci_low, compared.ci_high) == paired_bootstrap_ci(base, other, 2000, seed=3)
    assert compared.mdd == minimum_detectable_difference(100, 0.3)
    itself = paired_comparison(base, base, 2000, seed=3)
    assert (itself.ci_low, itself.ci_high, itself.mcnemar_p) == (0.0, 0.0, 1.0) and math.isnan(itself.mdd)
    empty = paired_comparison([], [], 2000, seed=3)
    assert empty.n == 0 and empty.mcnemar_p == 1.0
    assert all(math.isnan(v) for v in (empty.accuracy, empty.base_accuracy, empty.ci_low, empty.ci_high, empty.mdd))
