"""MMLU data loading, the 150-question suite and the harness's 4-shot prompt."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lora_tradeoff.mmlu.data import read_mmlu_csv_dir
from lora_tradeoff.mmlu.scoring import format_prompt
from lora_tradeoff.mmlu.suite import SUBJECT_CATEGORY, build_full_suite, build_suite, group_by_subject, select_suite


@pytest.fixture(scope="module")
def test_rows(mmlu_dir: Path) -> list[dict]:
    return read_mmlu_csv_dir(mmlu_dir, "test")


@pytest.fixture(scope="module")
def dev_by_subject(mmlu_dir: Path) -> dict[str, list[dict]]:
    return group_by_subject(read_mmlu_csv_dir(mmlu_dir, "dev"))


@pytest.fixture(scope="module")
def suite(test_rows: list[dict]) -> list[dict]:
    return build_suite(test_rows, per_category=50, seed=1234)


def test_category_map_covers_the_57_subjects_of_the_data(test_rows, dev_by_subject):
    assert len(SUBJECT_CATEGORY) == 57
    assert set(SUBJECT_CATEGORY) == {row["subject"] for row in test_rows} == set(dev_by_subject)
    assert Counter(SUBJECT_CATEGORY.values()) == {"stem": 19, "humanities": 13, "social_sciences": 12, "other": 13}


def test_csv_rows_are_normalized(test_rows, dev_by_subject):
    assert len(test_rows) == 14042
    assert all(len(rows) == 5 for rows in dev_by_subject.values())
    assert test_rows[0] == {
        "id": "abstract_algebra/test/0",
        "subject": "abstract_algebra",
        "question": "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.",
        "choices": ["0", "4", "2", "6"],
        "answer": "B",
    }
    assert len({row["id"] for row in test_rows}) == len(test_rows)


def test_suite_has_exact_counts_per_category(suite):
    assert len(suite) == 150
    assert Counter(row["category"] for row in suite) == {"stem": 50, "humanities": 50, "social_sciences": 50}


def test_suite_has_only_subjects_of_each_category(suite):
    assert all(SUBJECT_CATEGORY[row["subject"]] == row["category"] for row in suite)


def test_suite_has_no_duplicate_questions(suite):
    assert len({row["id"] for row in suite}) == 150
    assert len({(row["question"], tuple(row["choices"])) for row in suite}) == 150


def test_suite_spreads_questions_evenly_over_subjects(suite):
    for category in ("stem", "humanities", "social_sciences"):
        counts = Counter(row["subject"] for row in suite if row["category"] == category)
        subjects = [s for s, c in SUBJECT_CATEGORY.items() if c == category]
        assert set(counts) == set(subjects)
        assert max(counts.values()) - min(counts.values()) <= 1


def test_suite_is_stable_for_a_seed_and_changes_with_it(test_rows, suite):
    assert build_suite(test_rows, per_category=50, seed=1234) == suite
    other = build_suite(test_rows, per_category=50, seed=99)
    assert {row["id"] for row in other} != {row["id"] for row in suite}


def test_suite_takes_all_questions_of_small_subjects_then_fills_from_others(test_rows):
    rows = [row for row in test_rows if row["subject"] in ("anatomy", "astronomy")][:140]  # 135 anatomy, 5 astronomy
    suite = build_suite(rows, per_category=20, categories=("stem",), seed=1)
    assert Counter(row["subject"] for row in suite) == {"astronomy": 5, "anatomy": 15}
    with pytest.raises(ValueError, match="asked for 200"):
        build_suite(rows, per_category=200, categories=("stem",))


def test_full_suite_is_the_whole_test_split_in_the_harness_groups(test_rows):
    suite = build_full_suite(test_rows)
    assert len(suite) == 14042 and len({row["subject"] for row in suite}) == 57
    assert sorted(row["id"] for row in suite) == sorted(row["id"] for row in test_rows)
    # lm-evaluation-harness's mmlu_stem / _humanities / _social_sciences / _other sizes (anatomy in stem).
    assert Counter(row["category"] for row in suite) == {
        "stem": 3153,
        "humanities": 4705,
        "social_sciences": 3077,
        "other": 3107,
    }
    assert list(dict.fromkeys(row["category"] for row in suite)) == ["stem", "humanities", "social_sciences", "other"]
    assert all(SUBJECT_CATEGORY[row["subject"]] == row["category"] for row in suite)
    assert select_suite(test_rows, "full", per_category=None, categories=None, seed=None) == suite
    assert select_suite(test_rows, "per_category", per_category=5, seed=1) == build_suite(test_rows, 5, seed=1)


def test_full_suite_refuses_an_unknown_subject(test_rows):
    stray = {**test_rows[0], "subject": "astrology", "id": "astrology/test/0"}
    with pytest.raises(ValueError, match="astrology"):
        build_full_suite([*test_rows[:3], stray])
    with pytest.raises(ValueError, match="config.mmlu.suite"):
        select_suite(test_rows, "everything")


def test_prompt_matches_the_harness_format_on_a_real_row(test_rows, dev_by_subject):
    item = next(row for row in test_rows if row["id"] == "management/test/0")
    expected = (
        "The following are multiple choice questions (with answers) about management.\n\n"
        "What are the two main dimensions of the Ohio Studies into leadership?\n"
        "A. Starting position and end position\n"
        "B. Initial environment and changed environment\n"
        "C. Organisational structure and conditioning\n"
        "D. Initiating structure and considerations\n"
        "Answer: D\n\n"
        "Hygiene factors are associated with which writer?\n"
        "A. Frederick Hertzberg\n"
        "B. D.C. McClelland\n"
        "C. Abraham Maslow\n"
        "D. Douglas McGregor\n"
        "Answer: A\n\n"
        "Which element of the cultural web forms regalia?\n"
        "A. Symbols\n"
        "B. Rituals and routines\n"
        "C. Power structures\n"
        "D. Control systems\n"
        "Answer: A\n\n"
        "What characteristic is not a key feature of the 'open systems' model of management?\n"
        "A. Morale\n"
        "B. Innovation\n"
        "C. Growth resource\n"
        "D. Adaptation\n"
        "Answer: A\n\n"
        "What is the term for a sub-optimal but acceptable outcome of negotiations between parties?\n"
        "A. Bargaining\n"
        "B. Satisficing\n"
        "C. Accepting\n"
        "D. Compromising\n"
        "Answer:"
    )
    assert format_prompt(item, dev_by_subject, n_shot=4) == expected


def test_prompt_strips_the_question_and_names_the_subject_with_spaces(dev_by_subject):
    item = {"subject": "high_school_us_history", "question": "  Who?\n", "choices": ["a", "b", "c", "d"]}
    prompt = format_prompt(item, dev_by_subject, n_shot=0)
    assert prompt == (
        "The following are multiple choice questions (with answers) about high school us history.\n\n"
        "Who?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    )


def test_chat_template_wraps_the_prompt_as_one_user_turn(test_rows, dev_by_subject, base_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    item = test_rows[0]
    plain = format_prompt(item, dev_by_subject)
    chat = format_prompt(item, dev_by_subject, use_chat_template=True, tokenizer=tokenizer)
    assert chat.count("<|im_start|>user\n" + plain + "<|im_end|>") == 1
    assert chat.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="tokenizer"):
        format_prompt(item, dev_by_subject, use_chat_template=True)
