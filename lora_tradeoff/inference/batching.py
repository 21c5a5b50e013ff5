"""Length batching and shared token prefixes, the two planning helpers of every batched backend.

One implementation each, used by generation (`engine.BatchedEngine.generate_until`:
batches, prefill runs, the prompts' shared prefix) and by log-likelihood
(`engine.BatchedEngine.loglikelihood`: batches, each subject's shared prefix), and
by MMLU's generate mode. Pure Python: no torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

# Sequences run in one forward differ in length by at most this fraction of the
# longest, so padding costs at most that share of the forward (see length_batches).
PAD_TOLERANCE = 0.1


def check_pad_tolerance(value: object) -> float:
    """``value`` as a padding tolerance: a finite number within [0, 1]; ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"pad_tolerance must be a number within [0, 1] (0.1 on a CPU, 0.5 on a GPU), got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"pad_tolerance must be within [0, 1] (0.1 on a CPU, 0.5 on a GPU), got {value}")
    return float(value)


def length_batches(
    lengths: Sequence[int] | dict[int, int],
    batch_size: int,
    tolerance: float = PAD_TOLERANCE,
    indices: Sequence[int] | None = None,
) -> list[list[int]]:
    """``indices`` (default: all of ``lengths``) in batches of at most ``batch_size``, longest first,
    each padded by at most ``tolerance``.

    A batch is padded to its first (longest) sequence, so a batch ends early where the next
    sequence is shorter than ``(1 - tolerance)`` times that one: then padding is at most that
    share of the batch's tokens. ``tolerance=1.0`` gives plain batches of ``batch_size``.
    Longest first makes a batch size too large for the device's memory fail at once rather
    than after an hour. MMLU prompt lengths vary widely (262 to 1892 tokens on the demo
    suite), and fixed batches of 8 spent a third of their tokens on padding.
    Raises ValueError for a ``batch_size`` below 1 or a tolerance outside [0, 1].
    """
    check_pad_tolerance(tolerance)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
    order = sorted(range(len(lengths)) if indices is None else indices, key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    for index in order:
        if batches and len(batches[-1]) < batch_size and lengths[index] >= (1 - tolerance) * lengths[batches[-1][0]]:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in plain batches of ``batch_size``, longest first (`length_batches` without a tolerance)."""
    return length_batches(lengths, batch_size, tolerance=1.0)


def similar_length_groups(lengths: Sequence[int], tolerance: float = PAD_TOLERANCE) -> list[tuple[int, int]]:
    """Split lengths sorted longest first into runs ``(start, stop)``, each within ``tolerance`` of its first.

    Each run is prefilled in one forward, padded to its longest suffix, so at
    most that fraction of a prefill is spent on padding (`length_batches` on
    already sorted lengths, as slices).
    """
    runs = length_batches(lengths, max(len(lengths), 1), tolerance)
    return [(run[0], run[-1] + 1) for run in runs]


def common_prefix_length(sequences: Sequence[Sequence[int]], limit: int) -> int:
    """Number of leading tokens all sequences share, at most ``limit`` (0 for no sequences)."""
    if not sequences:
        return 0
    first = sequences[0]
    length = limit
    for ids in sequences[1:]:
        # Shrink to the first position where this sequence differs from the first one.
        length = next((i for i in range(length) if ids[i] != first[i]), length)
    return max(length, 0)


def shared_prefix_length(prompt_ids: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix common to all prompts, leaving every prompt at least one own token.

    The last prompt token must go through the suffix prefill, because its logits
    choose the first new token.
    """
    if not prompt_ids:
        return 0
    return common_prefix_length(prompt_ids, min(len(ids) for ids in prompt_ids) - 1)
