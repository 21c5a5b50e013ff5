"""MMLU suite: which test questions every model answers.

The harness's subject -> category table, and the two suites of ``config.mmlu.suite``: a
seeded sample of ``per_category`` questions of each category, or the whole test split.
Rows use the normalized MMLU format of :mod:`lora_tradeoff.mmlu.data`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

# Subject -> category of lm-evaluation-harness, copied from SUBJECTS in
# lm_eval/tasks/mmlu/_generate_configs.py (it defines the mmlu_stem,
# mmlu_humanities, mmlu_social_sciences and mmlu_other groups). Note that the
# harness puts anatomy under stem, unlike some other MMLU implementations.
SUBJECT_CATEGORY: dict[str, str] = {
    "abstract_algebra": "stem",
    "anatomy": "stem",
    "astronomy": "stem",
    "business_ethics": "other",
    "clinical_knowledge": "other",
    "college_biology": "stem",
    "college_chemistry": "stem",
    "college_computer_science": "stem",
    "college_mathematics": "stem",
    "college_medicine": "other",
    "college_physics": "stem",
    "computer_security": "stem",
    "conceptual_physics": "stem",
    "econometrics": "social_sciences",
    "electrical_engineering": "stem",
    "elementary_mathematics": "stem",
    "formal_logic": "humanities",
    "global_facts": "other",
    "high_school_biology": "stem",
    "high_school_chemistry": "stem",
    "high_school_computer_science": "stem",
    "high_school_european_history": "humanities",
    "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences",
    "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem",
    "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem",
    "high_school_psychology": "social_sciences",
    "high_school_statistics": "stem",
    "high_school_us_history": "humanities",
    "high_school_world_history": "humanities",
    "human_aging": "other",
    "human_sexuality": "social_sciences",
    "international_law": "humanities",
    "jurisprudence": "humanities",
    "logical_fallacies": "humanities",
    "machine_learning": "stem",
    "management": "other",
    "marketing": "other",
    "medical_genetics": "other",
    "miscellaneous": "other",
    "moral_disputes": "humanities",
    "moral_scenarios": "humanities",
    "nutrition": "other",
    "philosophy": "humanities",
    "prehistory": "humanities",
    "professional_accounting": "other",
    "professional_law": "humanities",
    "professional_medicine": "other",
    "professional_psychology": "social_sciences",
    "public_relations": "social_sciences",
    "security_studies": "social_sciences",
    "sociology": "social_sciences",
    "us_foreign_policy": "social_sciences",
    "virology": "other",
    "world_religions": "humanities",
}

# "other" is left out: it mixes business, medicine and trivia, and the suite is
# meant to show where fine-tuning costs general knowledge, category by category.
SUITE_CATEGORIES = ("stem", "humanities", "social_sciences")
# The harness's four groups (mmlu_stem, mmlu_humanities, mmlu_social_sciences,
# mmlu_other), in the order the full suite lists them.
ALL_CATEGORIES = ("stem", "humanities", "social_sciences", "other")
SUITES = ("per_category", "full")


def group_by_subject(rows: Iterable[dict]) -> dict[str, list[dict]]:
    """Rows per subject, in their original order (the few-shot examples are the first n)."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["subject"], []).append(row)
    return grouped


# -------------------------------------------------------------------------- suite


def _unique_questions(rows: Sequence[dict]) -> list[dict]:
    """Drop repeated (question, choices) pairs, keeping the first: MMLU's test split
    holds 27 exact duplicates, and a suite must not count one question twice."""
    seen: set[tuple] = set()
    unique = []
    for row in rows:
        key = (row["question"], tuple(row["choices"]))
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def _round_robin_quotas(subjects: Sequence[str], available: dict[str, int], total: int) -> dict[str, int]:
    """Deal ``total`` questions one at a time over ``subjects`` in the given order.

    Each subject gets ``total // len(subjects)`` or one more (the first subjects
    in the order get the remainder); a subject with too few questions is
    skipped once empty, so its share goes to the others.
    """
    if total > sum(available[subject] for subject in subjects):
        raise ValueError(f"asked for {total} questions, the subjects hold only {sum(available.values())}")
    quotas = dict.fromkeys(subjects, 0)
    dealt = 0
    while dealt < total:
        for subject in subjects:
            if dealt < total and quotas[subject] < available[subject]:
                quotas[subject] += 1
                dealt += 1
    return quotas


def _row_index(row: dict) -> int:
    return int(row["id"].rsplit("/", 1)[1])


def build_suite(
    test_rows: Sequence[dict],
    per_category: int = 50,
    categories: Sequence[str] = SUITE_CATEGORIES,
    seed: int = 1234,
) -> list[dict]:
    """Sample ``per_category`` distinct test questions for each category.

    Questions are spread evenly over the category's subjects: the subjects are
    shuffled with the seed and dealt questions round-robin, so the remainder
    lands on the first subjects of the shuffled order. Within a subject the
    questions are a seeded sample without replacement. Each category draws
    from its own generator (seeded by seed and category name), so changing the
    category list does not change the questions of the other categories.

    Returns copies of the rows with a ``"category"`` key, ordered by category
    (as given), subject and row index. The same rows and seed give the same suite.
    """
    by_subject = group_by_subject(test_rows)
    suite: list[dict] = []
    for category in categories:
        subjects = sorted(subject for subject in by_subject if SUBJECT_CATEGORY.get(subject) == category)
        if not subjects:
            raise ValueError(f"no test rows of category {category!r}")
        # String seeds are hashed deterministically by random (version 2 seeding).
        rng = random.Random(f"{seed}/{category}")
        rng.shuffle(subjects)
        pools = {subject: _unique_questions(by_subject[subject]) for subject in subjects}
        quotas = _round_robin_quotas(subjects, {s: len(pool) for s, pool in pools.items()}, per_category)
        chosen = [row for subject in subjects for row in rng.sample(pools[subject], quotas[subject])]
        chosen.sort(key=lambda row: (row["subject"], _row_index(row)))
        suite.extend({**row, "category": category} for row in chosen)
    return suite


def build_full_suite(test_rows: Sequence[dict]) -> list[dict]:
    """Every test question, each with its harness category (``"other"`` included).

    This is the harness's ``mmlu`` task: all 14,042 rows of the test split over 57 subjects,
    duplicates kept (the harness counts the split's 27 repeated questions too, so accuracies
    compare with its). Returns copies of the rows with a ``"category"`` key, ordered by
    category (:data:`ALL_CATEGORIES`), subject and row index. A subject outside
    :data:`SUBJECT_CATEGORY` raises ValueError naming it: its category would be a guess.
    """
    unknown = sorted({row["subject"] for row in test_rows} - set(SUBJECT_CATEGORY))
    if unknown:
        raise ValueError(f"MMLU test rows of subjects outside the harness's 57: {unknown}")
    if not test_rows:
        raise ValueError("no MMLU test rows")
    order = {category: index for index, category in enumerate(ALL_CATEGORIES)}
    suite = [{**row, "category": SUBJECT_CATEGORY[row["subject"]]} for row in test_rows]
    suite.sort(key=lambda row: (order[row["category"]], row["subject"], _row_index(row)))
    return suite


def select_suite(
    test_rows: Sequence[dict],
    suite: str = "per_category",
    per_category: int = 50,
    categories: Sequence[str] = SUITE_CATEGORIES,
    seed: int = 1234,
) -> list[dict]:
    """The questions every model answers (``config.mmlu.suite``).

    ``"per_category"``: :func:`build_suite` (``per_category`` questions of each of
    ``categories``, sampled with ``seed``); ``"full"``: :func:`build_full_suite` (the whole
    test split; the other arguments are not used).
    """
    if suite == "per_category":
        return build_suite(test_rows, per_category=per_category, categories=categories, seed=seed)
    if suite == "full":
        return build_full_suite(test_rows)
    raise ValueError(f"config.mmlu.suite must be one of {SUITES}, got {suite!r}")
