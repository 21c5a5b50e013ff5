"""Length batching and shared token prefixes, the two planning helpers of every batched backend.

One implementation each, used by generation (`engine.BatchedEngine.generate_until`:
the prompts' prefix groups, batches by group, prefill runs) and by log-likelihood
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


def check_batch_size(value: object) -> int:
    """``value`` as a batch size: an integer of at least 1; ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"batch_size must be an integer of at least 1, got {value!r}")
    return int(value)


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
    check_batch_size(batch_size)
    order = sorted(range(len(lengths)) if indices is None else indices, key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    for index in order:
        if batches and len(batches[-1]) < batch_size and lengths[index] >= (1 - tolerance) * lengths[batches[-1][0]]:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def similar_length_groups(lengths: Sequence[int], tolerance: float = PAD_TOLERANCE) -> list[tuple[int, int]]:
    """Split lengths sorted longest first into runs ``(start, stop)``, each within ``tolerance`` of its first.

    Each run is prefilled in one forward, padded to its longest suffix, so at
    most that fraction of a prefill is spent on padding (`length_batches` on
    already sorted lengths, as slices).
    """
    runs = length_batches(lengths, max(len(lengths), 1), tolerance)
    return [(run[0], run[-1] + 1) for run in runs]


def common_prefix_length(sequences: Sequence[Sequence[int]], limit: int) -> int:
    """Number of leading tokens all sequences share, at most ``limit`` (0 for no sequences).

    Each sequence is compared with the first by slices (a binary search for the first difference),
    so the work per sequence runs in C rather than token by token in Python: the planning of all
    1034 Spider dev prompts compares some 800k token pairs. Lists and tuples compare alike.
    """
    if not sequences:
        return 0
    first = tuple(sequences[0][: max(limit, 0)])
    length = len(first)
    for ids in sequences[1:]:
        if tuple(ids[:length]) == first[:length]:
            continue
        equal, unequal = 0, length  # the first `equal` tokens match; the first `unequal` do not
        while unequal - equal > 1:
            middle = (equal + unequal) // 2
            if tuple(ids[:middle]) == first[:middle]:
                equal = middle
            else:
                unequal = middle
        length = equal
    return length


def shared_prefix_length(prompt_ids: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix common to all prompts, leaving every prompt at least one own token.

    The last prompt token must go through the suffix prefill, because its logits
    choose the first new token.
    """
    if not prompt_ids:
        return 0
    return common_prefix_length(prompt_ids, min(len(ids) for ids in prompt_ids) - 1)


# Rows of a group searched back by the grouping (`prefix_groups`): it costs this times the number of
# prompts; a longer run of prompts sharing a prefix is split into groups of at most this many.
_MAX_GROUP = 512


def prefix_groups(prompt_ids: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Group prompts by a shared token prefix: ``(group of each prompt, prefix length of each group)``.

    The grouping that prefills the fewest tokens, each group's prefix once and every prompt's
    tokens after its group's prefix: prompts are sorted, so that prompts sharing a prefix are
    neighbours, and cut into runs of neighbours (dynamic programming over the sorted order,
    runs of at most 512). A run's prefix is the shortest common prefix of neighbours in it; it
    is worth its own group when ``(n - 1) * prefix > n * base``, base being the prefix common to
    all prompts, which the prompts left over share as one more group (its prefix is their own
    common prefix). Every prompt keeps at least one own token (its last, whose logits choose
    the first new token). On all 1034 Spider dev 3-shot prompts (Qwen2.5-Coder's tokenizer) it
    finds the 20 databases, and the prefill computes 35k of the 844k prompt tokens (each
    database's prefix once, then the questions) instead of 323k after the 504 all share.
    Groups are numbered in sorted order; an empty input gives ``([], [])``.
    """
    count = len(prompt_ids)
    if count == 0:
        return [], []
    base = shared_prefix_length(prompt_ids)
    order = sorted(range(count), key=lambda index: tuple(prompt_ids[index]))  # lists and tuples alike
    neighbours = [  # prefix shared by sorted neighbours k and k + 1, each keeping one own token
        common_prefix_length(
            [prompt_ids[order[k]], prompt_ids[order[k + 1]]],
            min(len(prompt_ids[order[k]]), len(prompt_ids[order[k + 1]])) - 1,
        )
        for k in range(count - 1)
    ]
    # best[i]: fewest tokens saved beyond ``base`` by grouping the first i sorted prompts; choice[i]:
    # where the last group starts (i - 1 for a prompt left over).
    best = [0] * (count + 1)
    choice = list(range(-1, count))
    for end in range(1, count + 1):
        best[end], choice[end] = best[end - 1], end - 1
        shared = None
        for start in range(end - 2, max(end - 1 - _MAX_GROUP, -1), -1):
            shared = neighbours[start] if shared is None else min(shared, neighbours[start])
            if shared <= base:
                break
            size = end - start
            gain = best[start] + (size - 1) * shared - size * base
            if gain > best[end]:
                best[end], choice[end] = gain, start
    runs: list[tuple[int, int]] = []
    end = count
    while end > 0:
        start = choice[end]
        runs.append((start, end))
        end = start
    runs.reverse()
    group_of = [0] * count
    lengths: list[int] = []
    left_over: list[int] = []
    for start, end in runs:
        members = order[start:end]
        if len(members) == 1:
            left_over += members
            continue
        for index in members:
            group_of[index] = len(lengths)
        lengths.append(min(neighbours[start : end - 1]))
    if left_over:
        for index in left_over:
            group_of[index] = len(lengths)
        rest = [prompt_ids[index] for index in left_over]
        lengths.append(common_prefix_length(rest, min(len(ids) for ids in rest) - 1))
    return group_of, lengths


def grouped_batches(own_lengths: Sequence[int], groups: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of ``batch_size``, the rows of a group consecutive (so a group's prefix is
    needed by one batch or by neighbouring ones), groups with the longest own part first and rows
    longest first within a group (the first batch is the largest, so a batch size too large for
    the device fails at once). ``own_lengths``: each row's tokens after its group's prefix."""
    check_batch_size(batch_size)
    longest: dict[int, int] = {}
    for length, group in zip(own_lengths, groups, strict=True):
        longest[group] = max(longest.get(group, 0), length)
    order = sorted(range(len(own_lengths)), key=lambda i: (-longest[groups[i]], groups[i], -own_lengths[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
