"""The inference interface: greedy generation until a stop, and continuation log-likelihood.

After lm-evaluation-harness ``lm_eval/api/model.py`` (class ``LM``: ``generate_until``
and ``loglikelihood``), on token ids rather than strings: tokenization and prompt
formats stay with the task (`lora_tradeoff.spider.generation`, `lora_tradeoff.mmlu.scoring`), so
every backend sees exactly the same ids. A backend is any class with these two
methods (`typing.Protocol`, no base class needed); see `engine.BatchedEngine` and
`hf.HFReference`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Called once per batch with the input indices that batch finished (for progress lines).
BatchDone = Callable[[Sequence[int]], None]


class StopRule(Protocol):
    """Decides from the new token ids of one sequence whether generation has stopped.

    ``max_new_tokens`` is the budget: a backend never generates more than that per
    sequence, and ``check`` must return a stop once ``len(new_ids) >= max_new_tokens``.
    """

    max_new_tokens: int

    def check(self, new_ids: list[int]) -> tuple[list[int], str, str] | None:
        """``(kept token ids, kept text, reason)`` once ``new_ids`` hold a stop, else None.

        The kept ids are a prefix of ``new_ids``; a backend may have generated a
        few tokens past the stop (they are discarded), so the answer must depend on
        the ids up to the stop only.
        """
        ...


@dataclass(frozen=True)
class Generation:
    """One greedy continuation, cut at its stop.

    ``token_ids``: the kept new tokens (an eos that stopped it included); ``text``:
    their text as the stop rule kept it; ``stop_reason``: the rule's reason;
    ``seconds``: this row's share of the wall time of its batch (and of any work
    shared across batches), so the column sums to the total time.
    """

    token_ids: list[int]
    text: str
    stop_reason: str
    seconds: float


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuation`` after ``context`` (token ids, the context non-empty).

    ``group``: a hint that requests of one group share a long token prefix (MMLU:
    the subject, whose prompts all start with the same few-shot examples); a
    backend may compute that prefix once, or ignore the hint. It never changes
    the result beyond float rounding.
    """

    context: tuple[int, ...]
    continuation: tuple[int, ...]
    group: str = ""


class LM(Protocol):
    """A causal language model that answers the two requests of the workflow."""

    def generate_until(
        self,
        prompts: Sequence[Sequence[int]],
        stop: StopRule,
        batch_size: int,
        on_batch: BatchDone | None = None,
    ) -> list[Generation]:
        """Greedy continuation of each prompt (token ids, no padding) until ``stop`` says so.

        At most ``stop.max_new_tokens`` new tokens per prompt; prompts are run
        ``batch_size`` at a time (the backend picks the order). Returns one
        `Generation` per prompt, in input order. The tokens are those of
        ``model.generate(do_sample=False)`` on each prompt alone, cut at the stop
        (float rounding aside).
        """
        ...

    def loglikelihood(
        self,
        requests: Sequence[LoglikelihoodRequest],
        batch_size: int,
        on_batch: BatchDone | None = None,
    ) -> list[float]:
        """Summed log-probability (natural log, float32 log-softmax over the whole
        vocabulary) of each request's continuation tokens after its context, one
        float per request in input order: lm-evaluation-harness's ``loglikelihood``
        without the is-greedy flag. At most ``batch_size`` sequences per forward.
        """
        ...
