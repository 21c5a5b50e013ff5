"""Scoring MMLU prompts with the real default model: valid letters, batching-invariant results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lora_tradeoff.inference.batching import length_batches
from lora_tradeoff.inference.engine import BatchedEngine, _plan_batches, _rows_for_requests
from lora_tradeoff.inference.hf import HFReference
from lora_tradeoff.mmlu import scoring
from lora_tradeoff.mmlu.data import read_mmlu_csv_dir
from lora_tradeoff.mmlu.scoring import (
    LETTERS,
    encode_contexts,
    encode_pair,
    encode_pairs,
    format_prompt,
    loglikelihood_requests,
    parse_letter,
    score_mmlu,
)
from lora_tradeoff.mmlu.suite import group_by_subject
from lora_tradeoff.model.loading import load_model_and_tokenizer
from lora_tradeoff.model.token_ids import bos_prefix

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
    # One prompt four times: equal lengths, so batches are full (prompts of unequal length
    # split a batch where padding would exceed batching.PAD_TOLERANCE).
    score_mmlu(model, tokenizer, items[:4], prompts[:1] * 4, batch_size=2, share_prefix=False, progress=lines.append)
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


@pytest.mark.parametrize("share_prefix", [False, True])
def test_a_padding_tolerance_changes_the_batches_not_the_scores(
    model_and_tokenizer, items_and_prompts, batched, share_prefix
):
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    groups = [item["subject"] if share_prefix else "" for item in items]
    rows = _rows_for_requests(loglikelihood_requests(tokenizer, prompts, " ", groups))
    strict, loose = (_plan_batches(rows, 5, tolerance) for tolerance in (0.0, 1.0))
    # Every distinct length is a batch of its own without tolerance; with full tolerance
    # only the batch size splits.
    assert sum(len(chunks) for _, chunks in strict) > sum(len(chunks) for _, chunks in loose)
    for tolerance in (0.0, 1.0):
        scored = score_mmlu(
            model, tokenizer, items, prompts, batch_size=5, share_prefix=share_prefix, pad_tolerance=tolerance
        )
        _assert_same_scores(batched, scored)
    for bad in (1.5, -0.1, float("nan"), True, "0.5", None):
        with pytest.raises(ValueError, match="pad_tolerance"):
            BatchedEngine(model, 0, pad_tolerance=bad)
        with pytest.raises(ValueError, match="pad_tolerance"):  # generate mode batches with it too
            score_mmlu(model, tokenizer, items[:1], prompts[:1], batch_size=1, mode="generate", pad_tolerance=bad)
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1, got 0"):
        length_batches([3, 2, 1], 0)


def test_prompts_tokenized_in_batches_get_the_ids_of_one_call_each(model_and_tokenizer, items_and_prompts, monkeypatch):
    _, tokenizer = model_and_tokenizer
    _, prompts = items_and_prompts
    continuations = [" A", " B", " C", " D"]
    one_by_one = [encode_pairs(tokenizer, prompt, continuations, prefix=[7]) for prompt in prompts]
    # Chunks of 7 texts cut through the five texts of a question.
    monkeypatch.setattr(scoring, "ENCODE_CHUNK", 7)
    assert encode_contexts(tokenizer, prompts, continuations, prefix=[7]) == one_by_one
    requests = loglikelihood_requests(tokenizer, prompts, " ", ["g"] * len(prompts))
    assert [(r.context, r.continuation) for r in requests] == [
        (tuple(context[1:]), tuple(tail)) for context, tails in one_by_one for tail in tails
    ]  # SmolLM2 puts no BOS before a text: the requests have no prefix
    with pytest.raises(ValueError, match="MMLU prompt 1 is empty"):
        encode_contexts(tokenizer, [prompts[0], " \n"], continuations)
    with pytest.raises(TypeError, match="not one string"):
        encode_contexts(tokenizer, prompts[0], continuations)
    with pytest.raises(ValueError, match="2 prompts but 1 groups"):
        loglikelihood_requests(tokenizer, prompts[:2], " ", ["g"])


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


def test_generate_mode_completions_are_those_of_model_generate(model_and_tokenizer, items_and_prompts):
    """Generate mode runs through the inference engine; its completions are ``model.generate``'s
    greedy tokens on each prompt alone, up to eos or the budget, without special tokens."""
    import torch

    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    rows = score_mmlu(model, tokenizer, items[:3], prompts[:3], batch_size=3, mode="generate", max_new_tokens=6)
    for row, prompt in zip(rows, prompts[:3], strict=True):
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            output = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
        assert row["completion"] == tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize(
    ("completion", "letter"),
    [(" B", "B"), (" C. Paris", "C"), ("(D)", "D"), ("Answer: A", "A"), (" The answer is B.", "B"), (" none", "")],
)
def test_parse_letter(completion, letter):
    assert parse_letter(completion) == letter


def test_answer_letters_are_read_off_the_joint_tokenization(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    # Byte-level BPE: " A" is one token after "Answer:", and the space stays with the letter
    # when the prompt ends in it (the harness moves trailing whitespace to the continuation).
    for context, continuation in (("Answer:", " A"), ("Answer: ", "A")):
        context_ids, continuation_ids = encode_pair(tokenizer, context, continuation)
        assert context_ids == tokenizer.encode("Answer:", add_special_tokens=False)
        assert continuation_ids == tokenizer.encode(" A", add_special_tokens=False) and len(continuation_ids) == 1
    with pytest.raises(ValueError, match="empty"):
        encode_pair(tokenizer, "  ", " A")


def test_several_continuations_encode_as_each_alone(model_and_tokenizer, items_and_prompts):
    _, tokenizer = model_and_tokenizer
    _, prompts = items_and_prompts
    for context in (prompts[0], prompts[1] + " ", "Answer:\n"):
        continuations = [" A", "B", " Option C", "\nD"]
        context_ids, tails = encode_pairs(tokenizer, context, continuations, prefix=[7])
        assert context_ids[0] == 7
        assert tails == [encode_pair(tokenizer, context, c, prefix=[7])[1] for c in continuations]
        assert (context_ids, tails[0]) == encode_pair(tokenizer, context, continuations[0], prefix=[7])
        stripped = context.rstrip()
        alone = tokenizer.encode(stripped, add_special_tokens=False)
        joint = [tokenizer.encode(context + c, add_special_tokens=False)[len(alone) :] for c in continuations]
        assert tails == joint and context_ids == [7] + alone


@pytest.mark.parametrize("delimiter", [" ", " Option "])
def test_engine_and_reference_backend_agree_on_log_likelihoods(model_and_tokenizer, items_and_prompts, delimiter):
    """Both backends behind the one interface; subjects as groups, so the engine shares their prefixes."""
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    requests = loglikelihood_requests(tokenizer, prompts[:6], delimiter, [item["subject"] for item in items[:6]])
    done: list[int] = []
    ours = BatchedEngine(model, tokenizer.eos_token_id).loglikelihood(requests, batch_size=3, on_batch=done.extend)
    reference = HFReference(model, tokenizer.eos_token_id).loglikelihood(requests, batch_size=1)
    assert sorted(done) == list(range(len(requests))) == list(range(24))
    assert all(value < 0 for value in ours)
    assert ours == pytest.approx(reference, abs=1e-4)


def _reference_rows(model, tokenizer, items, prompts, delimiter, share_prefix):
    from bench.check_mmlu_against_reference import compare

    return compare(model, tokenizer, items, prompts, batch_size=3, delimiter=delimiter, share_prefix=share_prefix)


@pytest.mark.parametrize("share_prefix", [False, True])
def test_multi_token_answers_score_their_summed_log_probability(model_and_tokenizer, items_and_prompts, share_prefix):
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    delimiter = " Option "  # " Option A" is two tokens: the continuation's log-likelihood is a sum
    assert len(encode_pair(tokenizer, prompts[0], delimiter + "A")[1]) == 2
    rows = _reference_rows(model, tokenizer, items[:6], prompts[:6], delimiter, share_prefix)
    assert [row["ours"] for row in rows] == [row["reference"] for row in rows]
    assert max(row["max_prob_diff"] for row in rows) < 1e-4


def test_prompt_ending_in_the_delimiter_scores_as_the_harness(model_and_tokenizer, items_and_prompts):
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    # "Answer: " + "A": the trailing space moves to the continuation, as in the harness, so the
    # scores equal those of "Answer:" + " A".
    spaced = score_mmlu(model, tokenizer, items[:2], [p + " " for p in prompts[:2]], batch_size=2, delimiter="")
    plain = score_mmlu(model, tokenizer, items[:2], prompts[:2], batch_size=2)
    _assert_same_scores(plain, spaced)


@pytest.mark.slow
def test_scores_agree_with_the_plain_pytorch_reference(model_and_tokenizer, items_and_prompts):
    from bench.check_mmlu_against_reference import compare

    model, tokenizer = model_and_tokenizer
    rows = compare(model, tokenizer, *items_and_prompts, batch_size=4, delimiter=" ", share_prefix=True)
    assert [row["ours"] for row in rows] == [row["reference"] for row in rows]
    assert max(row["max_prob_diff"] for row in rows) < 1e-4


# Token lengths of the 30 demo-suite prompts (SmolLM2 tokenizer, 4-shot): a few long
# history/law prompts and many short ones.
DEMO_SUITE_LENGTHS = [
    262, 273, 282, 309, 317, 318, 320, 333, 343, 346, 365, 370, 376, 396, 423,
    439, 454, 465, 469, 483, 486, 505, 514, 535, 565, 587, 878, 1196, 1479, 1892,
]  # fmt: skip


def _padded_tokens(chunks: list[list[int]], lengths: list[int]) -> int:
    return sum(len(chunk) * max(lengths[i] for i in chunk) for chunk in chunks)


def test_batches_pad_little_where_prompt_lengths_vary():
    lengths = DEMO_SUITE_LENGTHS
    chunks = length_batches(lengths, batch_size=8)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    for chunk in chunks:
        assert 1 <= len(chunk) <= 8
        assert [lengths[i] for i in chunk] == sorted((lengths[i] for i in chunk), reverse=True)
        assert min(lengths[i] for i in chunk) >= 0.9 * lengths[chunk[0]]
    assert [lengths[i] for i in chunks[0]] == [1892]  # the longest prompt pads no one
    # Fixed batches of 8 padded the suite to 24,252 tokens for 15,980 real ones.
    fixed = length_batches(lengths, batch_size=8, tolerance=1.0)
    assert [len(chunk) for chunk in fixed] == [8, 8, 8, 6]
    assert _padded_tokens(fixed, lengths) == 24252
    assert sum(lengths) == 15980 < _padded_tokens(chunks, lengths) <= 1.1 * sum(lengths)


# Subjects interleaved, as in the 150-question suite; sociology's questions become a subject of
# one question ("solo") and one of two whose prompts share no first token ("mixed"): the engine
# runs both without a prefix, batched together with the rows of other such groups.
INTERLEAVED = (0, 10, 3, 6, 9, 1, 4, 11, 7, 2, 5, 8)


def _interleaved(items: list[dict], prompts: list[str]) -> tuple[list[dict], list[str]]:
    renamed = {9: "solo", 10: "mixed", 11: "mixed"}
    items = [{**item, "subject": renamed.get(i, item["subject"])} for i, item in enumerate(items)]
    prompts = [("Next question.\n" if i == 11 else "") + prompt for i, prompt in enumerate(prompts)]
    return [items[i] for i in INTERLEAVED], [prompts[i] for i in INTERLEAVED]


def _record_forwards(monkeypatch) -> tuple[list, list]:
    """Spy on the engine: each batch it runs (prefix length, row ids) and the request count of each part given."""
    from lora_tradeoff.inference import engine

    batches, parts = [], []
    run_batch, loglikelihood_parts = engine._target_logprobs, BatchedEngine.loglikelihood_parts

    def target_logprobs(model, batch, pad_id, prefix_cache=None, prefix_length=0):
        batches.append((prefix_length, tuple(row.ids for row in batch)))
        return run_batch(model, batch, pad_id, prefix_cache, prefix_length)

    def counted(self, given, *args, **kwargs):
        def each():
            for part in given:
                parts.append(len(part))
                yield part

        return loglikelihood_parts(self, each(), *args, **kwargs)

    monkeypatch.setattr(engine, "_target_logprobs", target_logprobs)
    monkeypatch.setattr(BatchedEngine, "loglikelihood_parts", counted)
    return batches, parts


def test_scoring_subject_by_subject_runs_the_batches_of_one_call(model_and_tokenizer, items_and_prompts, monkeypatch):
    """Tokenized group by group in the background, each group given to the engine as it is ready:
    the same batches, prefixes and scores, bit for bit, as one engine call over all the requests."""
    import torch

    model, tokenizer = model_and_tokenizer
    items, prompts = _interleaved(*items_and_prompts)
    subjects = [item["subject"] for item in items]
    batches, calls = _record_forwards(monkeypatch)
    # Full tolerance: the three rows without a prefix fit one batch of 4, as in one call.
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    one_call = BatchedEngine(model, pad_id, pad_tolerance=1.0).loglikelihood(
        loglikelihood_requests(tokenizer, prompts, " ", subjects), batch_size=4
    )
    expected_batches = sorted(batches)
    assert [prefix > 0 for prefix, _ in expected_batches].count(False) == 1  # solo and mixed, batched together
    batches.clear()
    calls.clear()
    rows = score_mmlu(model, tokenizer, items, prompts, batch_size=4, share_prefix=True, pad_tolerance=1.0)
    assert calls == [12, 8, 12, 12, 4]  # one part per subject, in order of first appearance
    assert sorted(batches) == expected_batches
    assert [row["id"] for row in rows] == [item["id"] for item in items]
    for start, row in enumerate(rows):
        logliks = one_call[4 * start : 4 * start + 4]
        probs = torch.softmax(torch.tensor(logliks, dtype=torch.float64), dim=-1).tolist()
        assert [row[f"prob_{letter}"] for letter in LETTERS] == probs
        assert row["prediction"] == LETTERS[max(range(4), key=lambda k: logliks[k])]
    # And the independent one-prompt-at-a-time reference agrees.
    reference = _reference_rows(model, tokenizer, items, prompts, " ", share_prefix=True)
    assert [row["ours"] for row in reference] == [row["reference"] for row in reference]
    assert max(row["max_prob_diff"] for row in reference) < 1e-4
    # Without prefix sharing every group is "": one part.
    calls.clear()
    score_mmlu(model, tokenizer, items[:3], prompts[:3], batch_size=4, share_prefix=False)
    assert calls == [12]


def test_an_empty_prompt_of_a_later_subject_is_named_by_its_index_before_any_forward(
    model_and_tokenizer, items_and_prompts, monkeypatch
):
    model, tokenizer = model_and_tokenizer
    items, prompts = _interleaved(*items_and_prompts)
    prompts[11] = " \n"  # the third of marketing, the last subject tokenized before the ungrouped rows
    batches, _ = _record_forwards(monkeypatch)
    with pytest.raises(ValueError, match="MMLU prompt 11 is empty"):
        score_mmlu(model, tokenizer, items, prompts, batch_size=4, share_prefix=True)
    assert batches == []
    with pytest.raises(ValueError, match="pad_tolerance"):  # the engine's check still comes first
        score_mmlu(model, tokenizer, items, prompts, batch_size=4, pad_tolerance=2.0)
    with pytest.raises(TypeError, match="not one string"):
        score_mmlu(model, tokenizer, items[:1], "a", batch_size=4)


def test_an_error_while_tokenizing_in_the_background_propagates(model_and_tokenizer, items_and_prompts, monkeypatch):
    import threading

    model, tokenizer = model_and_tokenizer
    items, prompts = _interleaved(*items_and_prompts)
    encode, threads = scoring.encode_contexts, []

    def failing(tokenizer, contexts, *args, **kwargs):
        threads.append(threading.current_thread())
        if prompts[3] in contexts:  # marketing, the fourth group tokenized
            raise RuntimeError("tokenizer broke")
        return encode(tokenizer, contexts, *args, **kwargs)

    monkeypatch.setattr(scoring, "encode_contexts", failing)
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        score_mmlu(model, tokenizer, items, prompts, batch_size=4, share_prefix=True, progress=lines.append)
    assert threads and threading.main_thread() not in threads
    assert lines  # the first subject was scored before the error surfaced


def test_a_group_split_over_two_parts_is_refused(model_and_tokenizer, items_and_prompts):
    # Its rows would get two prefix caches and other batches than one call gives them.
    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    requests = loglikelihood_requests(tokenizer, prompts[:3], " ", [item["subject"] for item in items[:3]])
    engine = BatchedEngine(model, tokenizer.eos_token_id)
    with pytest.raises(ValueError, match=f"group {items[0]['subject']!r} spans two parts"):
        engine.loglikelihood_parts([requests[:4], requests[4:]], batch_size=4)
    # Ungrouped requests may be split anywhere: they are batched together after the last part.
    ungrouped = loglikelihood_requests(tokenizer, prompts[:3], " ", [""] * 3)
    assert engine.loglikelihood_parts([ungrouped[:4], ungrouped[4:]], 4) == engine.loglikelihood(ungrouped, 4)


def _harness_letter_logliks(model, tokenizer, prompt: str, max_length: int) -> list[float]:
    """lm-evaluation-harness's HFLM._loglikelihood_tokens for one prompt and the four letters:
    the input is (context + continuation)[-(max_length + 1):][:-1]; the continuation's log-probabilities sum."""
    import torch

    context_ids, continuations = encode_pairs(
        tokenizer, prompt, [" " + letter for letter in LETTERS], bos_prefix(tokenizer)
    )
    logliks = []
    for continuation in continuations:
        whole = (context_ids + continuation)[-(max_length + 1) :]
        with torch.inference_mode():
            logits = model(torch.tensor([whole[:-1]])).logits[0].log_softmax(-1)
        targets = whole[-len(continuation) :]
        positions = range(len(whole) - 1 - len(continuation), len(whole) - 1)
        logliks.append(sum(float(logits[p, t]) for p, t in zip(positions, targets, strict=True)))
    return logliks


@pytest.mark.parametrize("share_prefix", [False, True])
def test_a_prompt_longer_than_the_context_loses_its_left_end_as_in_the_harness(
    model_and_tokenizer, items_and_prompts, share_prefix
):
    """Issue 31: scored on its last max_length tokens, like lm-evaluation-harness, and counted."""
    import torch

    model, tokenizer = model_and_tokenizer
    items, prompts = items_and_prompts
    items, prompts = items[::3], prompts[::3]  # one question per subject: prompts of different lengths
    lengths = [len(encode_pairs(tokenizer, p, [" A"], bos_prefix(tokenizer))[0]) for p in prompts]
    max_length = min(lengths)  # the shortest prompt just fits, the others do not
    assert max(lengths) > max_length
    rows = score_mmlu(model, tokenizer, items, prompts, batch_size=4, share_prefix=share_prefix, max_length=max_length)
    for row, prompt, length in zip(rows, prompts, lengths, strict=True):
        assert row["truncated_tokens"] == max(length - max_length, 0)
        expected = torch.softmax(torch.tensor(_harness_letter_logliks(model, tokenizer, prompt, max_length)), -1)
        assert [row[f"prob_{letter}"] for letter in LETTERS] == pytest.approx(expected.tolist(), abs=1e-4)


def test_prompts_within_the_context_are_not_truncated(batched):
    assert [row["truncated_tokens"] for row in batched] == [0] * len(batched)
