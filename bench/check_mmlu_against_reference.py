"""Check our MMLU scorer against an independent plain-PyTorch log-likelihood computation.

The reference scores one prompt at a time, without padding, batching or
caches, the way lm-evaluation-harness computes ``loglikelihood``: tokenize
context + continuation jointly (trailing whitespace of the context moved into
the continuation), run the full sequence, log-softmax every position and sum
the continuation tokens' log-probabilities; predict the letter with the
highest sum. Our scorer must predict the same letter on every question.

    .venv/bin/python bench/check_mmlu_against_reference.py --model-dir .cache/test-model/checkpoint --threads 1

Exits 1 when any prediction differs.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_mmlu import add_suite_arguments, load_suite  # noqa: E402

from lora_tradeoff.mmlu.scoring import LETTERS, score_mmlu, target_delimiter  # noqa: E402


def harness_loglikelihoods(model: Any, tokenizer: Any, context: str, continuations: Sequence[str]) -> list[float]:
    """Log-likelihood of each continuation after ``context``, one unpadded sequence at a time."""
    import torch

    results = []
    logprobs_by_input: dict[tuple[int, ...], Any] = {}
    for continuation in continuations:
        # lm-evaluation-harness's _encode_pair: whitespace ending the context
        # belongs to the continuation; the continuation's tokens are the tail of
        # the joint tokenization.
        stripped = context.rstrip()
        moved = context[len(stripped) :] + continuation
        whole = tokenizer.encode(stripped + moved, add_special_tokens=False)
        plain_context = tokenizer.encode(stripped, add_special_tokens=False)
        continuation_ids = whole[len(plain_context) :]
        # The tokenizer's default special tokens (BOS for Mistral), unless the text already
        # starts with BOS (a chat template that writes it).
        starts_with_bos = bool(plain_context) and plain_context[0] == tokenizer.bos_token_id
        context_ids = plain_context if starts_with_bos else tokenizer.encode(stripped)
        inputs = tuple(context_ids + continuation_ids[:-1])
        if inputs not in logprobs_by_input:  # the four letters share one input when each is one token
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([inputs], device=model.device)).logits[0]
            logprobs_by_input[inputs] = torch.log_softmax(logits.float(), dim=-1).cpu()
        logprobs = logprobs_by_input[inputs]
        first = len(context_ids) - 1  # position whose output predicts the first continuation token
        results.append(sum(float(logprobs[first + k, token]) for k, token in enumerate(continuation_ids)))
    return results


def compare(
    model: Any,
    tokenizer: Any,
    items: list[dict],
    prompts: list[str],
    batch_size: int,
    delimiter: str,
    share_prefix: bool,
) -> list[dict]:
    """Per question: our prediction and probabilities next to the reference's."""
    ours = score_mmlu(model, tokenizer, items, prompts, batch_size, delimiter=delimiter, share_prefix=share_prefix)
    rows = []
    for item, prompt, row in zip(items, prompts, ours, strict=True):
        logliks = harness_loglikelihoods(model, tokenizer, prompt, [delimiter + letter for letter in LETTERS])
        best = max(range(len(LETTERS)), key=lambda k: logliks[k])
        # Renormalized over the four letters, comparable to our prob_A..prob_D.
        norm = math.log(sum(math.exp(value - max(logliks)) for value in logliks)) + max(logliks)
        reference_probs = dict(zip(LETTERS, (math.exp(value - norm) for value in logliks), strict=True))
        rows.append(
            {
                "id": item["id"],
                "category": row["category"],
                "gold": item["answer"],
                "ours": row["prediction"],
                "reference": LETTERS[best],
                "max_prob_diff": max(abs(row[f"prob_{letter}"] - p) for letter, p in reference_probs.items()),
            }
        )
    return rows


def accuracy_by_category(rows: list[dict], column: str) -> dict[str, float]:
    categories = [*dict.fromkeys(row["category"] for row in rows), "overall"]
    result = {}
    for category in categories:
        subset = [row for row in rows if category in ("overall", row["category"])]
        result[category] = round(100 * sum(row[column] == row["gold"] for row in subset) / len(subset), 1)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_suite_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, help="only the first N suite questions")
    args = parser.parse_args(argv)
    model, tokenizer, items, prompts = load_suite(args)
    items, prompts = items[: args.limit], prompts[: args.limit]
    rows = compare(
        model, tokenizer, items, prompts, args.batch_size, target_delimiter(args.use_chat_template), args.share_prefix
    )
    agree = sum(row["ours"] == row["reference"] for row in rows)
    print(
        f"agreement: {agree}/{len(rows)} predictions; max |prob difference| "
        f"{max(row['max_prob_diff'] for row in rows):.2e}"
    )
    print(f"accuracy (%), ours:      {accuracy_by_category(rows, 'ours')}")
    print(f"accuracy (%), reference: {accuracy_by_category(rows, 'reference')}")
    for row in rows:
        if row["ours"] != row["reference"]:
            print(f"DIFFERS {row['id']}: ours {row['ours']}, reference {row['reference']}")
    if agree != len(rows):
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()
