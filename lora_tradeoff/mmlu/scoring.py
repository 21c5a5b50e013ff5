"""MMLU 4-shot scoring: prompts, encoding, truncation, log-likelihood and generate modes.

The prompt format and the scoring rule follow lm-evaluation-harness's ``mmlu``
task (default variant), so our numbers mean what "MMLU 4-shot" means elsewhere:

* prompt: the subject description, the first ``n_shot`` solved questions of the
  subject's dev split, then the test question ending in ``"Answer:"``;
* score: the log-likelihood of each continuation ``" A"`` .. ``" D"``, whose tokens
  are read off the joint tokenization of prompt + continuation (the harness's
  ``_encode_pair``; a letter of several tokens scores the sum of their
  log-probabilities); the prediction is the most likely letter (the harness's ``acc``).

Rows use the normalized MMLU format of the workflow:
``{"id": "<subject>/<split>/<row index>", "subject", "question", "choices": [4], "answer": "A".."D"}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lora_tradeoff.inference.base import LoglikelihoodRequest
from lora_tradeoff.inference.batching import PAD_TOLERANCE
from lora_tradeoff.logs import Progress
from lora_tradeoff.mmlu.suite import SUBJECT_CATEGORY
from lora_tradeoff.model.token_ids import bos_prefix, encode_texts, end_of_turn_ids, pad_token_id

LETTERS = ("A", "B", "C", "D")

# The harness's MMLU template (lm_eval/tasks/mmlu/default/_default_template_yaml):
# target_delimiter " " between "Answer:" and the letter, fewshot_delimiter "\n\n"
# between solved examples.
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"

# A letter standing alone ("B", " B.", "(B)"), not the A of "Answer".
_STANDALONE_LETTER = re.compile(r"\b([ABCD])\b")


# ------------------------------------------------------------------------ prompts


def format_question(row: dict) -> str:
    """The harness's doc_to_text: stripped question, lettered choices, ``"Answer:"``."""
    lines = [row["question"].strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, row["choices"], strict=True)]
    lines.append("Answer:")
    return "\n".join(lines)


def format_prompt(
    item: dict,
    dev_rows_by_subject: dict[str, list[dict]],
    n_shot: int = 4,
    use_chat_template: bool = False,
    tokenizer: Any = None,
) -> str:
    """The n-shot prompt for ``item``, as lm-evaluation-harness builds it.

    ``"The following are multiple choice questions (with answers) about {subject}.\\n\\n"``,
    then the first ``n_shot`` dev questions of the subject each followed by
    ``" {letter}\\n\\n"``, then the item's question ending in ``"Answer:"``.

    With ``use_chat_template`` the whole text becomes one user turn of
    ``tokenizer``'s chat template, followed by the assistant header; score such
    prompts with ``target_delimiter=""`` (see :func:`target_delimiter`).
    """
    examples = dev_rows_by_subject[item["subject"]][:n_shot]
    if len(examples) < n_shot:
        raise ValueError(f"{item['subject']}: {n_shot}-shot needs {n_shot} dev rows, found {len(examples)}")
    description = (
        f"The following are multiple choice questions (with answers) about {item['subject'].replace('_', ' ')}."
    )
    shots = "".join(
        format_question(example) + TARGET_DELIMITER + example["answer"] + FEWSHOT_DELIMITER for example in examples
    )
    prompt = description + "\n\n" + shots + format_question(item)
    if not use_chat_template:
        return prompt
    if tokenizer is None:
        raise ValueError("use_chat_template needs the tokenizer whose chat template wraps the prompt")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def target_delimiter(use_chat_template: bool) -> str:
    """What separates prompt and answer letter: ``" "`` after ``"Answer:"``; nothing
    after an assistant header, which ends in a newline (the harness also drops the
    delimiter when it applies a chat template)."""
    return "" if use_chat_template else TARGET_DELIMITER


# ------------------------------------------------------------------------ scoring


def encode_pair(
    tokenizer: Any, context: str, continuation: str, prefix: Sequence[int] = ()
) -> tuple[list[int], list[int]]:
    """``(context ids, continuation ids)`` as lm-evaluation-harness's ``_encode_pair`` makes them.

    Whitespace ending the context moves to the continuation; the continuation's ids are the
    tail of the JOINT tokenization of context + continuation past the context's own token
    count, so a tokenizer that writes the space as a piece of its own (SentencePiece's ``"▁"``)
    or merges it with the letter (byte-level BPE's ``" A"``) is read as it really tokenizes.
    ``prefix`` (see :func:`bos_prefix`) goes before a context that does not already start with it.
    Raises ValueError when the context is empty or the continuation gets no token of its own.
    """
    context_ids, (continuation_ids,) = encode_pairs(tokenizer, context, [continuation], prefix)
    return context_ids, continuation_ids


def encode_pairs(
    tokenizer: Any, context: str, continuations: Sequence[str], prefix: Sequence[int] = ()
) -> tuple[list[int], list[list[int]]]:
    """:func:`encode_pair` for several continuations of one context: ``(context ids, [continuation
    ids, ...])``, the same ids, with the context tokenized once instead of once per continuation."""
    ((context_ids, tails),) = encode_contexts(tokenizer, [context], continuations, prefix)
    return context_ids, tails


# Texts per tokenizer call in encode_contexts: large enough for the fast tokenizer's own
# parallel batch encoding, small enough to bound the memory of one call's encodings.
ENCODE_CHUNK = 4096


def check_contexts(contexts: Sequence[str]) -> None:
    """TypeError for one string in place of a sequence of prompts; ValueError naming the index of the
    first prompt that is empty once its trailing whitespace (which goes to the continuation) is moved."""
    if isinstance(contexts, str):
        raise TypeError("contexts must be a sequence of prompts, not one string")
    for index, context in enumerate(contexts):
        if not context.rstrip():
            raise ValueError(f"MMLU prompt {index} is empty; the log-likelihood needs a context")


def encode_contexts(
    tokenizer: Any, contexts: Sequence[str], continuations: Sequence[str], prefix: Sequence[int] = ()
) -> list[tuple[list[int], list[list[int]]]]:
    """:func:`encode_pairs` of every context with the same continuations, one entry per context.

    The same ids as one ``encode`` per text, from batched tokenizer calls: a fast tokenizer
    encodes a batch on all cores (unless ``TOKENIZERS_PARALLELISM=false``), and one call per
    text cost a large share of a full-split run's scoring time on a GPU (figures: docs/speed.md).
    Raises ValueError when a context is empty or a continuation adds no token of its own.
    """
    check_contexts(contexts)
    texts: list[str] = []
    for context in contexts:
        stripped = context.rstrip()
        trailing = context[len(stripped) :]
        texts += [stripped] + [stripped + trailing + continuation for continuation in continuations]
    ids: list[list[int]] = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        ids += encode_texts(tokenizer, texts[start : start + ENCODE_CHUNK])
    prefix = list(prefix)
    width = 1 + len(continuations)
    encoded = []
    for index, context in enumerate(contexts):
        context_ids, *wholes = ids[index * width : (index + 1) * width]
        tails = []
        for continuation, whole in zip(continuations, wholes, strict=True):
            tail = whole[len(context_ids) :]
            if not tail:
                trailing = context[len(context.rstrip()) :]
                raise ValueError(
                    f"{trailing + continuation!r} adds no token to its prompt in this tokenizer; it cannot be scored"
                )
            tails.append(tail)
        if prefix and context_ids[: len(prefix)] != prefix:
            context_ids = prefix + context_ids
        encoded.append((context_ids, tails))
    return encoded


def context_length(model: Any) -> int:
    """The model's context in tokens (``max_position_embeddings`` of its text config)."""
    return int(model.config.get_text_config(decoder=True).max_position_embeddings)


def truncate_left(context_ids: Sequence[int], continuation_length: int, max_length: int) -> tuple[list[int], int]:
    """``(kept context ids, tokens dropped)``: the context's tail that leaves room for the continuation.

    lm-evaluation-harness (``HFLM._loglikelihood_tokens``) feeds ``(context + continuation)[-(max_length
    + 1):][:-1]``: the model sees at most ``max_length`` tokens and the first tokens of the
    context (its BOS, description and first examples) are the ones dropped. The context kept here
    is that input's context part: at most ``max_length + 1 - continuation_length`` tokens.
    """
    keep = max(max_length + 1 - continuation_length, 1)
    dropped = max(len(context_ids) - keep, 0)
    return list(context_ids[dropped:]), dropped


def loglikelihood_requests(
    tokenizer: Any,
    prompts: Sequence[str],
    delimiter: str,
    groups: Sequence[str],
    max_length: int | None = None,
    dropped: list[int] | None = None,
) -> list[LoglikelihoodRequest]:
    """Four requests per prompt, one per letter (``delimiter + letter`` after the prompt, see
    :func:`encode_pairs`), question-major; ``groups[i]`` is prompt i's prefix-sharing hint.

    With ``max_length`` (the model's context) a prompt too long for it loses tokens from its
    left (:func:`truncate_left`, for its longest letter, so the four letters keep one context)
    and shares no prefix; ``dropped``, when given, receives each prompt's number of dropped tokens.
    """
    if len(groups) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(groups)} groups")
    encoded = encode_contexts(tokenizer, prompts, [delimiter + letter for letter in LETTERS], bos_prefix(tokenizer))
    requests = []
    for (context_ids, continuations), group in zip(encoded, groups, strict=True):
        lost = 0
        if max_length is not None:
            context_ids, lost = truncate_left(context_ids, max(map(len, continuations)), max_length)
        if dropped is not None:
            dropped.append(lost)
        requests += [
            LoglikelihoodRequest(tuple(context_ids), tuple(ids), "" if lost else group) for ids in continuations
        ]
    return requests


def _loglik_predictions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    group_keys: Sequence[str],
    batch_size: int,
    delimiter: str,
    share_prefix: bool,
    tracker: Progress,
    pad_tolerance: float,
    max_length: int,
) -> list[dict]:
    """One result row per prompt, from the engine's log-likelihoods of its four letters.

    A prompt longer than ``max_length`` is cut from the left (:func:`loglikelihood_requests`);
    its row's ``truncated_tokens`` says by how many tokens.

    With ``share_prefix`` the prompts are tokenized group by group (subjects, each whole, in
    order of first appearance) in a background thread while the engine scores the groups
    already tokenized (:meth:`BatchedEngine.loglikelihood_parts`: the batches of one call over
    all prompts). Tokenizing every prompt before the first forward was a large share of a
    full-split run (figures: docs/speed.md); a fast tokenizer releases the GIL while it
    encodes a batch, so the two overlap. Without
    ``share_prefix`` there is one group, tokenized before the first forward.
    """
    import torch

    from lora_tradeoff.inference.engine import BatchedEngine

    pad_id = pad_token_id(tokenizer, model)
    # Built first: it checks pad_tolerance before the prompts are tokenized (long on the full split).
    engine = BatchedEngine(model, pad_id, pad_tolerance=pad_tolerance)
    check_contexts(prompts)  # here, so that an empty prompt is named by its index in ``prompts``
    groups = group_keys if share_prefix else [""] * len(prompts)
    if len(groups) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(groups)} groups")
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    order = [index for indices in members.values() for index in indices]  # prompt of each request // 4
    width = len(LETTERS)
    remaining = [width] * len(prompts)
    truncated = [0] * len(prompts)

    def encode(indices: list[int]) -> list[LoglikelihoodRequest]:
        dropped: list[int] = []
        requests = loglikelihood_requests(
            tokenizer, [prompts[i] for i in indices], delimiter, [groups[i] for i in indices], max_length, dropped
        )
        for index, lost in zip(indices, dropped, strict=True):
            truncated[index] = lost
        return requests

    def advance(request_indices: Sequence[int]) -> None:
        # A question is done once all its letters are scored (most questions are one row of four).
        done = 0
        for index in request_indices:
            remaining[order[index // width]] -= 1
            done += remaining[order[index // width]] == 0
        tracker.advance(done)

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        futures = [pool.submit(encode, indices) for indices in members.values()]  # encoded one after the other
        scored = engine.loglikelihood_parts((future.result() for future in futures), batch_size, on_batch=advance)
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, waits for the group being tokenized only
    flat = [0.0] * len(scored)
    for index, value in enumerate(scored):
        flat[order[index // width] * width + index % width] = value
    results = []
    for start in range(0, len(flat), width):
        letter_logliks = flat[start : start + width]
        truncated_tokens = truncated[start // width]
        # The four log-likelihoods renormalized over the four choices.
        row_probs = torch.softmax(torch.tensor(letter_logliks, dtype=torch.float64), dim=-1).tolist()
        # max() keeps the first of tied letters, as the harness's argmax.
        best = max(range(len(LETTERS)), key=lambda k: letter_logliks[k])
        results.append(
            {
                "prediction": LETTERS[best],
                **{f"prob_{letter}": p for letter, p in zip(LETTERS, row_probs, strict=True)},
                "parse_failed": False,
                "completion": "",
                "truncated_tokens": truncated_tokens,
            }
        )
    return results


def parse_letter(completion: str) -> str:
    """First standalone letter A-D in a generated answer, or ``""`` when there is none."""
    match = _STANDALONE_LETTER.search(completion)
    return match.group(1) if match else ""


class AnswerStop:
    """The stop rule of generate mode (`lora_tradeoff.inference.base.StopRule`): the first end-of-turn
    token or ``max_new_tokens``, whichever comes first, as ``model.generate`` stops; the kept text
    is decoded without special tokens."""

    def __init__(self, tokenizer: Any, end_of_turn: frozenset[int], max_new_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.end_of_turn = end_of_turn
        self.max_new_tokens = max_new_tokens

    def check(self, new_ids: list[int]) -> tuple[list[int], str, str] | None:
        at = next((i for i, token in enumerate(new_ids) if token in self.end_of_turn), None)
        if at is not None:
            kept, reason = new_ids[: at + 1], "eos"
        elif len(new_ids) >= self.max_new_tokens:
            kept, reason = new_ids[: self.max_new_tokens], "max_new_tokens"
        else:
            return None
        return kept, self.tokenizer.decode(kept, skip_special_tokens=True), reason


def _generate_predictions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    tracker: Progress,
    pad_tolerance: float,
    max_length: int,
) -> list[dict]:
    """Greedy completions through the inference engine (the `LM` interface Spider generation uses);
    a prompt that leaves less than ``max_new_tokens`` of the context is cut from the left, as
    lm-evaluation-harness's ``generate_until`` does."""
    from lora_tradeoff.inference.engine import BatchedEngine

    end_of_turn = end_of_turn_ids(model, tokenizer)
    engine = BatchedEngine(model, pad_token_id(tokenizer, model), pad_tolerance=pad_tolerance)
    cut = [truncate_left(ids, 1, max_length - max_new_tokens) for ids in encode_texts(tokenizer, prompts)]
    generations = engine.generate_until(
        [ids for ids, _ in cut],
        AnswerStop(tokenizer, end_of_turn, max_new_tokens),
        batch_size,
        on_batch=lambda batch: tracker.advance(len(batch)),
    )
    results = []
    for generation, (_, truncated_tokens) in zip(generations, cut, strict=True):
        letter = parse_letter(generation.text)
        results.append(
            {
                "prediction": letter,
                **{f"prob_{letter}": float("nan") for letter in LETTERS},
                "parse_failed": letter == "",
                "completion": generation.text,
                "truncated_tokens": truncated_tokens,
            }
        )
    return results


def score_mmlu(
    model: Any,
    tokenizer: Any,
    items: Sequence[dict],
    prompts: Sequence[str],
    batch_size: int,
    mode: str = "loglik",
    delimiter: str = TARGET_DELIMITER,
    share_prefix: bool = True,
    max_new_tokens: int = 5,
    progress: Callable[[str], None] | None = None,
    pad_tolerance: float = PAD_TOLERANCE,
    max_length: int | None = None,
) -> list[dict]:
    """Answer every item from its prompt; one result row per item, in input order.

    ``mode="loglik"`` (the harness's ``acc``): the prediction is the letter
    whose continuation ``delimiter + letter`` is most likely after the prompt
    (its tokens from the joint tokenization, see :func:`encode_pair`; several
    tokens sum their log-probabilities), read off one forward pass per batch:
    letters that differ in their last token only (every tokenizer tested)
    share one row per question; ``prob_A`` .. ``prob_D`` are those
    likelihoods renormalized over the four letters. With ``share_prefix``
    the tokens that all prompts of one subject share (description and few-shot
    examples) are run once per subject and their key/value cache reused: same
    result up to float rounding, about 2.4x fewer tokens on the 150-question
    suite, which matters on CPU.

    ``mode="generate"``: greedy decoding of ``max_new_tokens`` tokens; the
    prediction is the first standalone letter A-D of the completion, or ``""``
    (``parse_failed``, counted wrong) when there is none; probabilities are NaN.

    A prompt longer than the model's context (``max_length``, default :func:`context_length`)
    is scored on its last tokens, as lm-evaluation-harness does: its first tokens are dropped
    (:func:`truncate_left`; in generate mode the context keeps room for ``max_new_tokens``).

    Rows: id, subject, category, gold, prediction, prob_A..prob_D, correct,
    parse_failed, completion (generated text; empty in loglik mode), truncated_tokens (tokens
    dropped from the prompt's left; 0 when it fit).
    Prompts are batched by length, each batch padded by at most ``pad_tolerance`` of its
    tokens (see `BatchedEngine`; both modes); results come back in input order.
    ``progress`` receives one line per batch: questions done of all, questions/s, ETA.
    """
    if len(items) != len(prompts):
        raise ValueError(f"{len(items)} items but {len(prompts)} prompts")
    tracker = Progress(len(items), "questions", "scored", progress)
    limit = context_length(model) if max_length is None else max_length
    if mode == "loglik":
        subjects = [item["subject"] for item in items]
        predictions = _loglik_predictions(
            model, tokenizer, prompts, subjects, batch_size, delimiter, share_prefix, tracker, pad_tolerance, limit
        )
    elif mode == "generate":
        predictions = _generate_predictions(
            model, tokenizer, prompts, batch_size, max_new_tokens, tracker, pad_tolerance, limit
        )
    else:
        raise ValueError(f"mode must be 'loglik' or 'generate', got {mode!r}")
    return [
        {
            "id": item["id"],
            "subject": item["subject"],
            "category": item.get("category", SUBJECT_CATEGORY.get(item["subject"], "")),
            "gold": item["answer"],
            **prediction,
            "correct": prediction["prediction"] == item["answer"],
        }
        for item, prediction in zip(items, predictions, strict=True)
    ]
