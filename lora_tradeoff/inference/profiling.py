"""Where a generation run spends its time: wall seconds per phase and per batch, for profiling runs only.

`BatchedEngine` and `lora_tradeoff.spider.generation.generate_sql` take an optional
`PhaseTimer` (default None: no timing, no synchronisation, the code path of the
normal run). With one, every phase (tokenization, planning, shared-prefix
prefill, per-question prefill, decode steps by kind, stop checks) runs inside
`PhaseTimer.phase`, which calls ``synchronize`` (``torch.cuda.synchronize`` on a
GPU) at both of its ends, so the GPU work a phase launches is charged to that
phase and not to whatever next waits for the GPU. The synchronisations stop the
host from running ahead of the GPU, so a profiled run is slower than a timed
one; compare the totals, not only the shares. `summarize_batch` turns the raw
facts the engine records per batch into the figures of `bench/bench_generation.py
--profile-out`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from lora_tradeoff.inference.base import StopRule

_NO_TIMER = nullcontext()


def phase(timer: PhaseTimer | None, name: str) -> AbstractContextManager[None]:
    """``timer.phase(name)``, or a shared do-nothing context when ``timer`` is None (the normal run)."""
    return _NO_TIMER if timer is None else timer.phase(name)


class PhaseTimer:
    """Wall seconds per named phase, with ``synchronize()`` at both ends of each, and one record per batch.

    ``seconds[name]``: summed wall time of the phase, closing synchronisation included;
    ``launch_seconds[name]``: the part before it, while the host was still issuing the work
    (about equal to ``seconds`` when the host is the bottleneck, small when the GPU is);
    ``calls[name]``: how many times it ran. ``batches``: one dict per batch, the engine's
    facts (see `BatchedEngine`) plus ``phase_seconds`` (the seconds per phase within it).
    ``overhead_seconds``: time spent by the timer's own per-batch bookkeeping, to subtract.
    """

    def __init__(self, synchronize: Callable[[], None] | None = None) -> None:
        self.synchronize = synchronize
        self.seconds: dict[str, float] = {}
        self.launch_seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.batches: list[dict] = []
        self.overhead_seconds = 0.0
        self._batch_start: dict[str, float] = {}
        self._batch_calls: dict[str, int] = {}

    def _sync(self) -> None:
        if self.synchronize is not None:
            self.synchronize()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase ``name`` (synchronising before and after it)."""
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            launched = time.perf_counter()
            self._sync()
            end = time.perf_counter()
            self.seconds[name] = self.seconds.get(name, 0.0) + end - start
            self.launch_seconds[name] = self.launch_seconds.get(name, 0.0) + launched - start
            self.calls[name] = self.calls.get(name, 0) + 1

    def begin_batch(self) -> None:
        """Mark the start of a batch: the next `end_batch` gets the phase seconds since this call."""
        self._batch_start = dict(self.seconds)
        self._batch_calls = dict(self.calls)

    def end_batch(self, facts: dict, stop: StopRule) -> None:
        """Record one batch: ``facts`` from the engine, with ``generated`` (per row, every new token
        checked) and ``kept`` (per row, tokens kept); ``stop`` gives how many tokens each row needed."""
        started = time.perf_counter()
        facts = dict(facts)
        facts["needed"] = [
            tokens_needed(stop, ids, kept) for ids, kept in zip(facts.pop("generated"), facts["kept"], strict=True)
        ]
        facts["phase_seconds"] = {
            name: seconds - self._batch_start.get(name, 0.0)
            for name, seconds in self.seconds.items()
            if seconds > self._batch_start.get(name, 0.0)
        }
        facts["phase_calls"] = {
            name: calls - self._batch_calls.get(name, 0)
            for name, calls in self.calls.items()
            if calls > self._batch_calls.get(name, 0)
        }
        self.batches.append(facts)
        self.overhead_seconds += time.perf_counter() - started


def tokens_needed(stop: StopRule, generated: Sequence[int], kept: int) -> int:
    """How many new tokens ``stop`` had to see to stop this row: the shortest prefix of ``generated`` it stops on.

    At least ``kept`` (the kept tokens are a prefix of what it saw); one more after a ';'
    that needs the next token to be a newline. ``len(generated)`` if no shorter prefix stops.
    """
    return next(
        (n for n in range(max(kept, 1), len(generated) + 1) if stop.check(list(generated[:n])) is not None),
        len(generated),
    )


def summarize_batch(facts: dict) -> dict[str, Any]:
    """Figures of one batch from `PhaseTimer.batches`.

    A row's new token ``k`` comes from the prefill (k = 1) or decode step k - 1, so a
    row that needed ``n`` tokens is useful in steps 1 .. n - 1 and wastes its slot in
    every later step it still sits in the decoder (``steps_in_decoder``: until the
    engine drops stopped rows, or the batch ends). ``wasted_slot_share``: finished
    rows' slot-steps over all slot-steps; ``steps_mostly_finished``: steps in which
    more than half of the rows decoded had already finished. ``decode_ms_per_step``: the
    steps' own time (eager, warm-up, replay), graph captures apart (``graph_capture_seconds``).
    ``prompt_tokens``: the rows' whole prompts; the prefill computed ``shared_prefix_tokens`` of them
    (each of the batch's ``shared_prefixes`` once) and ``own_prompt_tokens`` (each row's own part).
    """
    steps_in, needed, kept = facts["steps_in_decoder"], facts["needed"], facts["kept"]
    steps = max(steps_in, default=0)
    slot_steps = sum(steps_in)
    useful = sum(min(s, n - 1) for s, n in zip(steps_in, needed, strict=True))
    mostly_finished = 0
    for step in range(1, steps + 1):
        present = [n for s, n in zip(steps_in, needed, strict=True) if s >= step]
        if 2 * sum(step >= n for n in present) > len(present):
            mostly_finished += 1
    decode_seconds = sum(
        facts["phase_seconds"].get(name, 0.0) for name in ("decode_replay", "decode_eager", "decode_warmup")
    )
    prefixes, suffixes = facts["prefix_tokens"], facts["suffix_tokens"]
    return {
        "rows": len(suffixes),
        "prompt_tokens": sum(prefixes) + sum(suffixes),
        "shared_prefixes": len(facts["shared_prefix_tokens"]),
        "shared_prefix_tokens": sum(facts["shared_prefix_tokens"]),
        "own_prompt_tokens": sum(suffixes),
        "prefill_forwards": len(facts["prefill_runs"]),
        "prefill_padded_tokens": sum(rows * width for rows, width in facts["prefill_runs"]),
        "new_tokens_kept": sum(kept),
        "new_tokens_needed": sum(needed),
        "max_needed": max(needed, default=0),
        "decode_steps": steps,
        "decode_ms_per_step": round(1000 * decode_seconds / steps, 3) if steps else None,
        "graph_captures": facts["phase_calls"].get("graph_capture", 0),
        "graph_capture_seconds": round(facts["phase_seconds"].get("graph_capture", 0.0), 4),
        "row_drops": [list(drop) for drop in facts["drops"]],
        "stop_checks": facts["stop_checks"],
        "slot_steps": slot_steps,
        "wasted_slot_share": round(1 - useful / slot_steps, 4) if slot_steps else 0.0,
        "steps_mostly_finished": mostly_finished,
        "seconds": {name: round(seconds, 4) for name, seconds in facts["phase_seconds"].items()},
    }
