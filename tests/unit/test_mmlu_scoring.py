"""Scoring MMLU prompts with the real default model: valid letters, batching-invariant results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lora_tradeoff.mmlu import (
    LETTERS,
    format_prompt,
    group_by_subject,
    letter_token_ids,
    parse_letter,
    score_mmlu,
)
from lora_tradeoff.mmlu_data import read_mmlu_csv_dir
from lora_tradeoff.modeling import load_model_and_tokenizer

# Subjects with short questions, 3 questions each (prefix sharing
# needs several questions per subject); 1-shot keeps the prompts short so the
# test file runs in seconds on CPU. Scoring does not depend on the shot count.
SUBJECTS = ("management", "world_religions", "marketing", "sociology")


@pytest.fixture(scope="module")
def model_and_tokenizer(base_model_dir: Path):
    # One thread: on the shared 2-core test machine, two threads wait on each
    # other at every small op and run several times slower.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model_and_tokenizer(base_model_dir, device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def items_and_prompts(mmlu_dir: Path) -> tuple[list[dict], list[str]]:
    test_by_subject = group_by_subject(read_mmlu_csv_dir(mmlu_dir, "test"))
    dev = group_by_subject(read_mmlu_csv_dir(mmlu_dir, "dev"))
    items = [row for subject in SUBJECTS for row in test_by_subject[subject][:3]]
    return items, [format_prompt(item, dev, n_shot=1) for item in items]


@pytest.fixture(scope="module")
def batched(model_and_tokenizer, items_and_prompts) -> list[dict]:
    model, tokenizer = model_and_tokenizer
    return score_mmlu(model, tokenizer, *items_and_prompts, batch_size=5, share_prefix=False)


def test_scoring_reports_progress_per_batch(model_and_tokenizer, items_and_prompts):
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    lines: list[str] = []
    score_mmlu(model, tokenizer, items[:4], prompts[:4], batch_size=2, share_prefix=False, progress=lines.append)
    assert [line.split(",")[0] for line in lines] == ["scored 2/4 questions", "scored 4/4 questions"]
    assert all(re.search(r"[\d.]+ questions/s, ETA \d+:\d\d:\d\d$", line) for line in lines), lines


def test_every_question_gets_a_letter_and_probabilities_summing_to_one(batched, items_and_prompts):
    items, _ = items_and_prompts
    assert len(items) == 12 and [row["id"] for row in batched] == [item["id"] for item in items]
    for row, item in zip(batched, items, strict=True):
        assert row["prediction"] in LETTERS and row["gold"] == item["answer"]
        assert sum(row[f"prob_{letter}"] for letter in LETTERS) == pytest.approx(1.0, abs=1e-5)
        assert row["correct"] == (row["prediction"] == item["answer"])
        assert row["prediction"] == max(LETTERS, key=lambda letter: row[f"prob_{letter}"])
        assert not row["parse_failed"]


def _assert_same_scores(expected: list[dict], actual: list[dict]) -> None:
    assert [row["prediction"] for row in actual] == [row["prediction"] for row in expected]
    for want, got in zip(expected, actual, strict=True):
        for letter in LETTERS:
            assert got[f"prob_{letter}"] == pytest.approx(want[f"prob_{letter}"], abs=1e-4)


def test_batched_scores_equal_one_at_a_time(model_and_tokenizer, items_and_prompts, batched):
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    single = [
        score_mmlu(model, tokenizer, [item], [prompt], batch_size=1, share_prefix=False)[0]
        for item, prompt in zip(items, prompts, strict=True)
    ]
    _assert_same_scores(single, batched)


def test_shared_prefix_cache_gives_the_plain_scores(model_and_tokenizer, items_and_prompts, batched):
    model, tokenizer = model_and_tokenizer
    shared = score_mmlu(model, tokenizer, *items_and_prompts, batch_size=2, share_prefix=True)
    _assert_same_scores(batched, shared)


def test_generate_mode_parses_letters(model_and_tokenizer, items_and_prompts):
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    rows = score_mmlu(model, tokenizer, items[:4], prompts[:4], batch_size=4, mode="generate", max_new_tokens=3)
    for row in rows:
        assert row["prediction"] == parse_letter(row["completion"])
        assert row["parse_failed"] == (row["prediction"] == "")
        assert row["correct"] == (row["prediction"] == row["gold"])
    # The model continues "Answer:" with a letter on these questions.
    assert sum(not row["parse_failed"] for row in rows) >= 3


@pytest.mark.parametrize(
    ("completion", "letter"),
    [(" B", "B"), (" C. Paris", "C"), ("(D)", "D"), ("Answer: A", "A"), (" The answer is B.", "B"), (" none", "")],
)
def test_parse_letter(completion, letter):
    assert parse_letter(completion) == letter


def test_answer_letters_are_single_tokens(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    assert len(set(letter_token_ids(tokenizer, " "))) == 4
    assert len(set(letter_token_ids(tokenizer, ""))) == 4


def test_multi_token_letters_are_refused():
    class SplitTokenizer:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [ord(char) for char in text]

    with pytest.raises(ValueError, match="is 2 tokens"):
        letter_token_ids(SplitTokenizer(), " ")


def test_prompt_that_merges_with_the_answer_token_is_refused(model_and_tokenizer, items_and_prompts):
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    # "Answer: " + "A" is tokenized as "Answer", ":", " A", not as the prompt's
    # "Answer", ":", " " followed by "A".
    with pytest.raises(ValueError, match="does not split"):
        score_mmlu(model, tokenizer, items[:1], [prompts[0] + " "], batch_size=1, delimiter="")


@pytest.mark.slow
def test_scores_agree_with_the_plain_pytorch_reference(model_and_tokenizer, items_and_prompts):
    from bench.check_mmlu_against_reference import compare

    model, tokenizer = model_and_tokenizer
    rows = compare(model, tokenizer, *items_and_prompts, batch_size=4, delimiter=" ", share_prefix=True)
    assert [row["ours"] for row in rows] == [row["reference"] for row in rows]
    assert max(row["max_prob_diff"] for row in rows) < 1e-4
