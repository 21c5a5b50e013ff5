"""The reference backend: plain transformers calls, no batching tricks.

``generate_until`` is ``model.generate(do_sample=False)`` on left-padded batches
(``batch_size=1``: one prompt at a time, the strictest reference), cut afterwards
by the stop rule; ``loglikelihood`` is one unpadded forward per request. Tests and
benchmarks hold `engine.BatchedEngine` to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from lora_tradeoff.inference.base import BatchDone, Generation, LoglikelihoodRequest, StopRule


def left_padded(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both ``[len(batch), longest]`` int64 on the CPU: each row's ids
    at the right end, ``pad_id`` (mask 0) before them, so every continuation starts at the same
    column; ``generate`` derives position ids from the mask."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


class HFReference:
    """`lora_tradeoff.inference.base.LM` through ``model.generate`` and plain forwards.

    ``model``: a causal LM of transformers in eval mode; ``pad_id``: the id of the
    left padding (masked; ``generate`` derives position ids from the mask).
    """

    def __init__(self, model: Any, pad_id: int) -> None:
        self.model = model
        self.pad_id = pad_id

    def generate_until(
        self,
        prompts: Sequence[Sequence[int]],
        stop: StopRule,
        batch_size: int,
        on_batch: BatchDone | None = None,
    ) -> list[Generation]:
        """``stop.max_new_tokens`` greedy tokens per prompt (fewer where ``generate`` meets eos), cut at the stop."""
        device = self.model.device
        results: list[Generation] = []
        for start in range(0, len(prompts), batch_size):
            started = time.perf_counter()
            batch = prompts[start : start + batch_size]
            input_ids, attention_mask = left_padded(batch, self.pad_id)
            width = input_ids.shape[1]
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    do_sample=False,
                    max_new_tokens=stop.max_new_tokens,
                    pad_token_id=self.pad_id,
                )
            seconds = (time.perf_counter() - started) / len(batch)
            for new_ids in output[:, width:].tolist():
                # Rows that met eos early are padded after it; the stop rule reads eos before the padding.
                full = new_ids + [self.pad_id] * (stop.max_new_tokens - len(new_ids))
                found = stop.check(full)
                if found is None:
                    raise RuntimeError("the stop rule did not stop a sequence at its budget of max_new_tokens")
                results.append(Generation(found[0], found[1], found[2], seconds))
            if on_batch is not None:
                on_batch(range(start, start + len(batch)))
        return results

    def loglikelihood(
        self,
        requests: Sequence[LoglikelihoodRequest],
        batch_size: int,
        on_batch: BatchDone | None = None,
    ) -> list[float]:
        """One forward over context + continuation (all but its last token) per request; ``batch_size`` unused."""
        results = []
        for index, request in enumerate(requests):
            ids = list(request.context) + list(request.continuation[:-1])
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0]
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            first = len(request.context) - 1  # the position whose output predicts the first continuation token
            results.append(sum(float(logprobs[first + k, token]) for k, token in enumerate(request.continuation)))
            if on_batch is not None:
                on_batch([index])
        return results
