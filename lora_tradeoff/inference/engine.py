"""Our inference engine: batched greedy generation and continuation log-likelihood.

`BatchedEngine.generate_until` is token-for-token the output of ``model.generate(do_sample=False)``
run on one prompt at a time, cut at the first stop (`lora_tradeoff.spider.generation.stop_point`
for SQL), and much faster than transformers' batched ``generate`` (the measured speeds are in
docs/speed.md and the benchmark run folders it lists, not here, where they would go stale):

* Group prefixes, computed and attended once. Prompts of one Spider database share
  everything before the question (system turn, few-shot examples, the schema): on
  Spider dev 3-shot, nearly all the prompt tokens, so the prefill computes each database's
  prefix once and then only the questions.
  `batching.prefix_groups` finds the groups from the token ids alone; each group's
  prefix keys/values are computed once per batch and kept once, not copied into every
  row, and attention is split in two ("cascade" attention, `lora_tradeoff.inference.cascade`):
  the rows' queries against their group's prefix (one variable-length flash-attention
  call for all groups on CUDA) and each row against its own tokens, merged exactly
  through their log-sum-exps. A decode step reads each prefix once instead of once per
  row, and a row's own buffer holds only its question and answer.
* Batches by group, prefill runs of similar length. Rows of a group sit together in a
  batch (`batching.grouped_batches`); the question parts are prefilled in runs of similar
  length, right-aligned in each row's buffer (the padding before a short one is masked out
  and position ids continue the row's prefix, so every sequence sees exactly its own
  prompt), keys/values written in place into buffers allocated once per batch.
* Grouped-query attention without copies at decode steps: the query heads that
  share a key/value head are folded into the query axis (same scores, one read
  of the keys), where transformers' SDPA path would copy every key/value head
  once per query head (3x for SmolLM2) at every layer and step.
* A lean decode loop. One forward per step with only the last position's logits,
  rows that have stopped are dropped from the batch, and the batch ends as soon
  as every row has stopped.
* The decode step on fixed-shape buffers, replayed as a CUDA graph. At a small
  model's decode step the GPU waits on Python: transformers' forward launches
  over a thousand kernels for a 28-layer model. Every tensor of the step (cache, mask,
  token, position, write slot, the prefix segments) lives in a buffer that the step
  updates in place, so on CUDA one capture serves every later step of the batch and
  a step costs one graph launch. CPU runs the same step eagerly.

Continuation log-likelihood (`BatchedEngine.loglikelihood`) batches the same way:

* Letters that differ in their last token only (MMLU's " A" .. " D") share one
  row: all their log-probabilities are read off one forward.
* Rows of one group (an MMLU subject) run the tokens they all share (description
  and few-shot examples) once; its key/value cache is reused by every batch.
* Rows are right-padded in batches of similar length (`length_batches`), and
  only the positions read go through the LM head.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from lora_tradeoff.inference.base import BatchDone, Generation, LoglikelihoodRequest, StopRule
from lora_tradeoff.inference.batching import (
    PAD_TOLERANCE,
    check_pad_tolerance,
    common_prefix_length,
    grouped_batches,
    length_batches,
    prefix_groups,
    similar_length_groups,
)
from lora_tradeoff.inference.cascade import (
    PrefixSegments,
    SharedPrefixes,
    additive_bias,
    attending,
    cascade_attention_for,
)
from lora_tradeoff.inference.profiling import PhaseTimer, phase

_log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Key/value cache


class _BatchKVLayer(CacheLayerMixin):
    """One layer's keys/values for one batch, in buffers allocated once (used for the prefill).

    Appending writes in place (transformers' DynamicLayer re-concatenates the whole
    cache at every step) and attention reads only the filled part. The buffers are
    zero-filled: slots that a row never fills (before a short suffix) are masked
    out, and a masked zero adds exactly nothing, where uninitialised memory could
    hold a NaN that would poison the sum.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self._keys, self._values = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self.set_length(length)

    def set_length(self, length: int) -> None:
        self.length = length
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Never needed: the buffers exist from the start."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.set_length(end)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self._keys.shape[-2]

    def rows(self, start: int, stop: int, length: int) -> _BatchKVLayer:
        """A layer over rows ``start:stop`` sharing this one's buffers, with ``length`` slots taken as filled."""
        return _BatchKVLayer(self._keys[start:stop], self._values[start:stop], length)


class _SlotKVLayer(CacheLayerMixin):
    """One layer's keys/values for the decode steps: one new token per row, written at slot ``slot``.

    ``slot`` is a one-element tensor on the device, advanced in place by the
    decoder, so a captured step writes where the current step must write. The
    whole buffer goes to attention; the mask hides the slots not filled yet.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, slot: torch.Tensor) -> None:
        super().__init__()
        self.keys, self.values, self.slot = keys, values, slot
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Never needed: the buffers exist from the start."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys.index_copy_(2, self.slot, key_states)
        self.values.index_copy_(2, self.slot, value_states)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[-2], 0

    def get_seq_length(self) -> int:
        # Only consulted by transformers when no position ids are passed; the decoder always passes them.
        raise NotImplementedError("the decoder passes position ids and a 4D mask")

    def get_max_length(self) -> int:
        return self.keys.shape[-2]


def _batch_cache(model: Any, batch_size: int, capacity: int) -> Cache:
    """A cache of ``capacity`` zeroed slots per layer for ``batch_size`` rows (each row's own tokens only)."""
    config = model.config.get_text_config(decoder=True)
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    shape = (batch_size, kv_heads, capacity, head_dim)
    return Cache(
        layers=[
            _BatchKVLayer(
                torch.zeros(shape, dtype=model.dtype, device=model.device),
                torch.zeros(shape, dtype=model.dtype, device=model.device),
                0,
            )
            for _ in range(config.num_hidden_layers)
        ]
    )


def _encode_prefixes(model: Any, prefixes: Sequence[Sequence[int]]) -> SharedPrefixes:
    """Keys/values of each token prefix (positions 0..len-1), packed per layer (`SharedPrefixes`).

    Prefixes of similar length run in one forward, right-padded: under the causal mask a real
    token never sees a pad after it, so no other mask is needed. At most about 32k tokens per forward.
    """
    lengths = [len(ids) for ids in prefixes]
    if min(lengths, default=1) < 1:
        raise ValueError("an empty prefix has no keys/values to share")
    per_group: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in prefixes]
    for batch in length_batches(lengths, max(1, _PREFIX_TOKENS_PER_FORWARD // max(lengths)), PAD_TOLERANCE):
        width = lengths[batch[0]]
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):
            input_ids[row, : lengths[index]] = torch.tensor(list(prefixes[index]))
        cache = _batch_cache(model, len(batch), width)
        with attending(None):
            model(input_ids=input_ids.to(model.device), past_key_values=cache, use_cache=True, logits_to_keep=1)
        for row, index in enumerate(batch):
            # (K, P, E) of this row -> (P, K, E), the flash kernel's variable-length layout.
            length = lengths[index]
            per_group[index] = [
                (layer.keys[row, :, :length].transpose(0, 1), layer.values[row, :, :length].transpose(0, 1))
                for layer in cache.layers
            ]
    layers = len(per_group[0])
    keys = [torch.cat([group[layer][0] for group in per_group]).contiguous() for layer in range(layers)]
    values = [torch.cat([group[layer][1] for group in per_group]).contiguous() for layer in range(layers)]
    return SharedPrefixes(keys, values, [0, *accumulate(lengths[:-1])], lengths)


# Tokens per forward when encoding prefixes: Spider dev's 20 database prefixes (up to ~1,500 tokens) in one.
_PREFIX_TOKENS_PER_FORWARD = 32768


# ---------------------------------------------------------------------------
# Decoding


def _steps_per_stop_check(device: torch.device) -> int:
    """Decode steps between two looks for stops.

    Looking needs the new tokens on the host, which makes the host wait for the
    GPU; on CUDA the GPU may run 8 steps ahead instead. Rows then run past their
    stop by up to 7 tokens, which are discarded: the output does not depend on
    this number, only the wasted work does.
    """
    return 8 if device.type == "cuda" else 1


def _prefill(
    model: Any,
    cache: Cache,
    capacity: int,
    prefixes: SharedPrefixes | None,
    groups: Sequence[int],
    prefix_lengths: Sequence[int],
    suffixes: Sequence[Sequence[int]],
    pad_id: int,
    runs: Sequence[tuple[int, int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the suffixes' keys/values into ``cache``; return the first new tokens and the own-token mask.

    Layout of every row's own buffer: ``[gap | suffix | new tokens]``, suffixes
    ending at the same slot, so that all rows decode in lockstep (each group's shared prefix
    lives once, in ``prefixes``). The gap is masked out and position ids continue the row's
    prefix (``prefix_lengths``), so each row sees exactly its prompt. Runs of similar
    length are prefilled separately, each padded only to its own longest suffix: ``runs``, the
    ``(start, stop)`` row ranges, rows of a group (``groups``, into ``prefixes``) consecutive
    within a run.
    """
    device = model.device
    batch = len(suffixes)
    width = max(len(suffix) for suffix in suffixes)
    mask = torch.zeros((batch, capacity), dtype=torch.long)
    mask[:, width:] = 1  # new tokens (and alignment padding past them): the decoder opens one slot per step
    for row, suffix in enumerate(suffixes):
        mask[row, width - len(suffix) : width] = 1
    mask = mask.to(device)
    first_tokens = []
    for start, stop in runs:
        run_width = max(len(suffix) for suffix in suffixes[start:stop])
        input_ids = torch.full((stop - start, run_width), pad_id, dtype=torch.long)
        lengths = torch.tensor([len(suffix) for suffix in suffixes[start:stop]])
        for row, suffix in enumerate(suffixes[start:stop]):
            input_ids[row, run_width - len(suffix) :] = torch.tensor(suffix)
        offsets = torch.tensor(prefix_lengths[start:stop])[:, None]
        position_ids = (offsets + torch.arange(run_width) - (run_width - lengths[:, None])).clamp(min=0)
        run_cache = Cache(layers=[layer.rows(start, stop, width - run_width) for layer in cache.layers])
        segments = None if prefixes is None else PrefixSegments(prefixes, groups[start:stop], run_width)
        with attending(segments):
            logits = model(
                input_ids=input_ids.to(device),
                attention_mask=mask[start:stop, :width],
                position_ids=position_ids.to(device),
                past_key_values=run_cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits
        first_tokens.append(logits[:, -1].argmax(dim=-1))
    return torch.cat(first_tokens), mask


def _take_rows(
    index: Sequence[int], keys: list[torch.Tensor], values: list[torch.Tensor], *rows: torch.Tensor
) -> tuple[Any, ...]:
    """Rows ``index`` (in that order) of every layer's keys and values and of each per-row tensor, copied:
    ``(keys, values, *rows)``."""
    device_index = torch.tensor(list(index), device=keys[0].device)
    gathered = [tensor[device_index] for tensor in rows]
    return [layer[device_index] for layer in keys], [layer[device_index] for layer in values], *gathered


class _Decoder:
    """Greedy decode steps for one batch, every tensor of a step in a buffer updated in place.

    A step opens the mask at the write slot, runs the model on each row's last
    token (keys/values written at the slot), takes the argmax as the next token
    and advances position and slot. On CUDA the first step runs eagerly (it
    initialises the lazy state a capture must not see, such as cuBLAS
    workspaces), the second is captured as a CUDA graph, and every later step
    replays it. ``groups``: each row's group prefix (into ``prefixes``), rows of a group
    consecutive; None prefixes: the rows attend their own tokens only.
    """

    def __init__(
        self,
        model: Any,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        tokens: torch.Tensor,
        bias: torch.Tensor,
        positions: torch.Tensor,
        slot: torch.Tensor,
        prefixes: SharedPrefixes | None,
        groups: Sequence[int],
        use_graph: bool,
        warmed: bool,
    ) -> None:
        self.model = model
        self.keys, self.values = keys, values
        self.tokens, self.bias, self.positions, self.slot = tokens, bias, positions, slot
        self.prefixes, self.groups = prefixes, list(groups)
        self.segments = None if prefixes is None else PrefixSegments(prefixes, self.groups, 1)
        self.cache = Cache(layers=[_SlotKVLayer(k, v, slot) for k, v in zip(keys, values, strict=True)])
        self.use_graph = use_graph and tokens.device.type == "cuda"
        self.warmed = warmed
        self.graph: torch.cuda.CUDAGraph | None = None

    @classmethod
    def after_prefill(
        cls,
        model: Any,
        cache: Cache,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        filled: int,
        prefixes: SharedPrefixes | None,
        groups: Sequence[int],
        use_graph: bool,
        order: Sequence[int] | None = None,
    ) -> _Decoder:
        """A decoder that continues from a prefilled cache whose first ``filled`` slots are written.

        ``order``: the rows to decode, in this order (their group's rows consecutive); default all, as they are.
        """
        device = tokens.device
        visible = mask.bool() & (torch.arange(mask.shape[1], device=device) < filled)
        bias = additive_bias(visible, model.dtype)[:, None, None, :]
        keys = [layer._keys for layer in cache.layers]
        values = [layer._values for layer in cache.layers]
        if order is not None and list(order) != list(range(len(groups))):
            keys, values, tokens, bias, positions = _take_rows(order, keys, values, tokens, bias, positions)
            groups = [groups[row] for row in order]
        return cls(
            model,
            keys,
            values,
            tokens.clone(),
            bias,
            positions.clone(),
            torch.tensor([filled], device=device),
            prefixes,
            groups,
            use_graph=use_graph,
            warmed=False,
        )

    def _step(self) -> None:
        self.bias.index_fill_(3, self.slot, 0.0)
        with attending(self.segments):
            logits = self.model(
                input_ids=self.tokens[:, None],
                attention_mask=self.bias,
                position_ids=self.positions[:, None],
                past_key_values=self.cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits
        self.tokens.copy_(logits[:, -1].argmax(dim=-1))
        self.positions.add_(1)
        self.slot.add_(1)

    def advance(self, timer: PhaseTimer | None = None) -> torch.Tensor:
        """Run one step; return a copy of the new tokens. ``timer`` (profiling only) times it by kind."""
        if not self.use_graph:
            with phase(timer, "decode_eager"):
                self._step()
        elif not self.warmed:
            with phase(timer, "decode_warmup"):
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    self._step()
                torch.cuda.current_stream().wait_stream(side)
            self.warmed = True
        elif self.graph is None and not self._capture(timer):
            with phase(timer, "decode_eager"):
                self._step()
        else:
            with phase(timer, "decode_replay"):
                self.graph.replay()
        return self.tokens.clone()

    def _capture(self, timer: PhaseTimer | None = None) -> bool:
        """Capture one step as a CUDA graph; on failure log why and go on eagerly (the tokens do not change).

        A capture fails when something in the step synchronises with the host,
        which a model class or quantization kernel we have not met might do.
        The capture runs no step: the replay that follows it does.
        """
        graph = torch.cuda.CUDAGraph()
        try:
            with phase(timer, "graph_capture"), torch.cuda.graph(graph):
                self._step()
        except RuntimeError as error:
            _log.warning("CUDA graph capture failed (%s); this batch decodes eagerly", str(error).splitlines()[0])
            self.use_graph = False
            return False
        self.graph = graph
        return True

    def keep_rows(self, index: Sequence[int]) -> _Decoder:
        """A decoder over rows ``index`` only, in that order (fresh buffers; on CUDA a new capture at the next step)."""
        keys, values, tokens, bias, positions = _take_rows(
            index, self.keys, self.values, self.tokens, self.bias, self.positions
        )
        return _Decoder(
            self.model,
            keys,
            values,
            tokens,
            bias,
            positions,
            self.slot,
            self.prefixes,
            [self.groups[i] for i in index],
            use_graph=self.use_graph,
            warmed=self.warmed,
        )


def _prefill_order(suffix_lengths: Sequence[int], groups: Sequence[int]) -> tuple[list[int], list[tuple[int, int]]]:
    """The rows' order for the prefill and its runs: longest suffix first, cut into runs of similar
    length (`similar_length_groups`), the rows of each run then ordered by group (so that a group's
    rows are consecutive, as the prefix attention needs)."""
    by_length = sorted(range(len(suffix_lengths)), key=lambda row: -suffix_lengths[row])
    runs = similar_length_groups([suffix_lengths[row] for row in by_length])
    order = [row for start, stop in runs for row in sorted(by_length[start:stop], key=lambda row: groups[row])]
    return order, runs


def _greedy_batch(
    model: Any,
    prefixes: SharedPrefixes | None,
    groups: Sequence[int],
    prefix_lengths: Sequence[int],
    suffixes: Sequence[Sequence[int]],
    pad_id: int,
    scanner: StopRule,
    cuda_graphs: bool,
    timer: PhaseTimer | None = None,
) -> list[tuple[list[int], str, str]]:
    """Greedy continuations of ``prefix + suffix`` for each row: ``prefix_lengths[row]`` tokens of
    group ``groups[row]``'s prefix in ``prefixes`` (None: no prefix), then ``suffixes[row]``.

    Returns ``(kept token ids, kept text, stop reason)`` per row. ``timer`` (profiling
    only) times the phases and receives the batch's facts (`PhaseTimer.end_batch`).
    """
    device = model.device
    batch = len(suffixes)
    max_new = scanner.max_new_tokens
    order, runs = _prefill_order([len(suffix) for suffix in suffixes], groups)
    filled = max(len(suffix) for suffix in suffixes)
    if timer is not None:
        timer.begin_batch()
    # Memory-efficient attention wants the bias rows 16-element aligned; the slots past the budget stay masked.
    capacity = -(-(filled + max_new) // 16) * 16
    with phase(timer, "batch_setup"):
        cache = _batch_cache(model, batch, capacity)
    with phase(timer, "prefill"):
        tokens, mask = _prefill(
            model,
            cache,
            capacity,
            prefixes,
            [groups[row] for row in order],
            [prefix_lengths[row] for row in order],
            [suffixes[row] for row in order],
            pad_id,
            runs,
        )
    with phase(timer, "batch_setup"):
        positions = torch.tensor([prefix_lengths[row] + len(suffixes[row]) for row in order], device=device)
        # Decode with the rows of a group consecutive over the whole batch (the prefill ordered them within runs).
        by_group = sorted(range(batch), key=lambda k: groups[order[k]])
        decoder = _Decoder.after_prefill(
            model,
            cache,
            tokens,
            mask,
            positions,
            filled,
            prefixes,
            [groups[row] for row in order],
            cuda_graphs,
            by_group,
        )
        rows = [order[k] for k in by_group]  # the row (index into suffixes) of each row still decoding
        tokens = decoder.tokens.clone()
    del cache, mask
    generated: list[list[int]] = [[] for _ in range(batch)]
    results: list[tuple[list[int], str, str] | None] = [None] * batch
    steps_per_check = _steps_per_stop_check(device)
    unchecked: list[torch.Tensor] = []
    steps_in_decoder = [0] * batch  # profiling only: decode steps each row took part in
    drops: list[tuple[int, int, int]] = []  # profiling only: (steps so far, rows before, rows after)
    stop_checks = 0
    for step in range(1, max_new + 1):
        unchecked.append(tokens)
        if step % steps_per_check == 0 or step == max_new:
            with phase(timer, "stop_check"):
                for row, new in zip(rows, torch.stack(unchecked, dim=1).tolist(), strict=True):
                    if results[row] is None:
                        generated[row].extend(new)
                        results[row] = scanner.check(generated[row])
                unchecked = []
                keep = [i for i, row in enumerate(rows) if results[row] is None]
            stop_checks += 1
            if not keep:
                break
            # Dropping stopped rows copies the cache (and on CUDA costs a new capture), so wait until half have stopped.
            if len(rows) - len(keep) >= max(1, len(rows) // 2):
                with phase(timer, "drop_rows"):
                    decoder = decoder.keep_rows(keep)
                if timer is not None:
                    kept_rows = {rows[i] for i in keep}
                    for row in rows:
                        if row not in kept_rows:
                            steps_in_decoder[row] = step - 1
                    drops.append((step - 1, len(rows), len(keep)))
                rows = [rows[i] for i in keep]
        tokens = decoder.advance(timer)
    if timer is not None:
        for row in rows:
            steps_in_decoder[row] = step - 1
        facts = {
            "prefix_tokens": list(prefix_lengths),
            "shared_prefix_tokens": list(prefixes.lengths) if prefixes is not None else [],
            "suffix_tokens": [len(suffix) for suffix in suffixes],
            "prefill_runs": [
                (stop - start, max(len(suffixes[row]) for row in order[start:stop])) for start, stop in runs
            ],
            "steps_in_decoder": steps_in_decoder,
            "generated": generated,
            "kept": [len(result[0]) for result in results],  # type: ignore[index]  # every row stopped
            "drops": drops,
            "stop_checks": stop_checks,
        }
        timer.end_batch(facts, scanner)
    return results  # type: ignore[return-value]  # every row stopped: the last step is a complete check


# ---------------------------------------------------------------------------
# Log-likelihood


@dataclass(frozen=True)
class _Row:
    """One sequence to run: the context and all but the last continuation token of some letters.

    ``targets`` are ``(request index, position, token id)``: the token's log-probability is
    read from the output at ``position`` (the token before it). Requests that are one token
    each after the same context share one row (MMLU's common case: one row per question).
    ``group`` is the requests' prefix-sharing hint ("" for none).
    """

    group: str
    ids: tuple[int, ...]
    targets: tuple[tuple[int, int, int], ...]

    @property
    def first_target(self) -> int:
        return min(position for _, position, _ in self.targets)


def _rows_for_requests(requests: Sequence[LoglikelihoodRequest], first_index: int = 0) -> list[_Row]:
    """Rows to run, in first-seen order: one per distinct context + all but the last continuation
    token within a run of requests (adjacent requests with the same context and group, no
    continuation twice: MMLU's four letters of one question; a repeated question is a new run).
    The requests are numbered from ``first_index`` (in the rows' targets and in errors)."""
    targets: dict[tuple[int, tuple[int, ...]], list[tuple[int, int, int]]] = {}
    groups: dict[tuple[int, tuple[int, ...]], str] = {}
    run, previous, seen = -1, None, set()
    for index, request in enumerate(requests, start=first_index):
        if not request.context or not request.continuation:
            raise ValueError(f"log-likelihood request {index} has an empty context or continuation")
        if (request.group, request.context) != previous or request.continuation in seen:
            run, previous, seen = run + 1, (request.group, request.context), set()
        seen.add(request.continuation)
        ids = tuple(request.context) + tuple(request.continuation[:-1])
        start = len(request.context) - 1
        targets.setdefault((run, ids), []).extend(
            (index, start + offset, token) for offset, token in enumerate(request.continuation)
        )
        groups[(run, ids)] = request.group
    return [_Row(groups[key], key[1], tuple(row_targets)) for key, row_targets in targets.items()]


def _prefix_groups(rows: Sequence[_Row]) -> tuple[list[tuple[int, list[int]]], list[int]]:
    """``(shared prefix length, row indices)`` of each group of rows that shares a prefix, and the
    indices of the rows that share none.

    Rows of the same non-empty ``group`` (the MMLU subject: all its prompts start with the
    same description and few-shot examples) form a group whose common token prefix is
    computed once; rows of group "" and rows alone in theirs have nothing to share.
    """
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row.group, []).append(index)
    shared, unshared = [], []
    for key, indices in groups.items():
        prefix = 0
        if key and len(indices) > 1:
            limit = min(rows[i].first_target for i in indices)
            prefix = common_prefix_length([rows[i].ids for i in indices], limit)
        if prefix:
            shared.append((prefix, indices))
        else:
            unshared += indices
    return shared, unshared


def _batches(
    rows: Sequence[_Row], prefix_length: int, indices: list[int], batch_size: int, pad_tolerance: float
) -> list[list[int]]:
    """``indices`` batched by `length_batches` on their length after the prefix (each row of a batch is
    padded to its longest suffix)."""
    suffixes = {i: len(rows[i].ids) - prefix_length for i in indices}
    return length_batches(suffixes, batch_size, pad_tolerance, indices=indices)


def _plan_batches(
    rows: Sequence[_Row], batch_size: int, pad_tolerance: float = PAD_TOLERANCE
) -> list[tuple[int, list[list[int]]]]:
    """Split rows into ``(shared prefix length, batches of row indices)`` groups, as
    :meth:`BatchedEngine.loglikelihood` runs them: each group of :func:`_prefix_groups` with its
    prefix, then the rows without one, batched together with prefix length 0."""
    shared, unshared = _prefix_groups(rows)
    plan = [(prefix, _batches(rows, prefix, indices, batch_size, pad_tolerance)) for prefix, indices in shared]
    if unshared:
        plan.append((0, _batches(rows, 0, unshared, batch_size, pad_tolerance)))
    return plan


def _target_logprobs(
    model: Any, batch: Sequence[_Row], pad_id: int, prefix_cache: Any = None, prefix_length: int = 0
) -> list[list[float]]:
    """Log-probability of each target token of each row in ``batch`` (one forward pass).

    The rows' ids continue a ``prefix_length``-token prefix whose key/value cache is
    ``prefix_cache`` (batch size 1; copied, not modified), or are whole sequences when
    there is no prefix.

    Sequences are right-padded: every real token keeps its position id and attends only to
    real tokens before it, so padding cannot change its output (left padding would need
    explicit position ids). Only the positions whose outputs are read go through the LM
    head (``logits_to_keep``), which avoids a batch x length x vocabulary logits tensor; the
    log-softmax runs over the whole vocabulary, in float32.
    """
    suffixes = [row.ids[prefix_length:] for row in batch]
    width = max(len(ids) for ids in suffixes)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), prefix_length + width), dtype=torch.long)
    attention_mask[:, :prefix_length] = 1
    for row, ids in enumerate(suffixes):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, prefix_length : prefix_length + len(ids)] = 1
    past = None
    if prefix_cache is not None:
        past = copy.deepcopy(prefix_cache)
        past.batch_repeat_interleave(len(batch))
    target_rows = [row for row, item in enumerate(batch) for _ in item.targets]
    positions = torch.tensor([position - prefix_length for item in batch for _, position, _ in item.targets])
    tokens = torch.tensor([token for item in batch for _, _, token in item.targets])
    kept, slot = torch.unique(positions, return_inverse=True)
    device = model.device
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        past_key_values=past,
        use_cache=past is not None,
        logits_to_keep=kept.to(device),
    ).logits
    # One log-softmax per distinct (row, position); the letters read off it share it.
    pairs, pair_of_target = torch.unique(torch.tensor(target_rows) * len(kept) + slot, return_inverse=True)
    logprobs = torch.log_softmax(logits[pairs // len(kept), pairs % len(kept)].float(), dim=-1).cpu()
    values = logprobs[pair_of_target, tokens].tolist()
    result: list[list[float]] = []
    for item in batch:
        result.append(values[: len(item.targets)])
        values = values[len(item.targets) :]
    return result


def _prefix_cache(model: Any, prefix: Sequence[int]) -> Any:
    """Key/value cache of one forward pass over ``prefix``."""
    input_ids = torch.tensor([list(prefix)], device=model.device)
    return model(input_ids=input_ids, use_cache=True, logits_to_keep=1).past_key_values


# ---------------------------------------------------------------------------
# The engine


class BatchedEngine:
    """Our backend of the `lora_tradeoff.inference.base.LM` interface (see the module docstring).

    ``model``: any causal LM of transformers (with or without a merged or unmerged
    adapter), in eval mode. ``pad_id``: the id written into padding slots (they are
    masked, so its value never changes a result). ``cuda_graphs`` (CUDA only)
    replays each batch's decode step as a CUDA graph. ``pad_tolerance``: how much padding
    a log-likelihood batch may hold (see `length_batches`): little on a CPU, where every
    padded token costs its compute; more on a GPU, where a forward of a few thousand tokens
    costs about its fixed launch overhead and fewer, fuller batches win. ``timer`` (profiling
    only, `lora_tradeoff.inference.profiling`): `generate_until` times its phases with it
    (synchronising the device at each phase boundary) and records each batch's facts.
    """

    def __init__(
        self,
        model: Any,
        pad_id: int,
        cuda_graphs: bool = True,
        pad_tolerance: float = PAD_TOLERANCE,
        timer: PhaseTimer | None = None,
    ) -> None:
        self.model = model
        self.pad_id = pad_id
        self.cuda_graphs = cuda_graphs
        self.pad_tolerance = check_pad_tolerance(pad_tolerance)
        self.timer = timer

    def generate_until(
        self,
        prompts: Sequence[Sequence[int]],
        stop: StopRule,
        batch_size: int,
        on_batch: BatchDone | None = None,
    ) -> list[Generation]:
        """Greedy continuations; prompts grouped by shared prefix (`prefix_groups`), each group's
        prefix encoded once per batch and attended once (`lora_tradeoff.inference.cascade`), rows
        batched with their group (`grouped_batches`). Raises ValueError for a prompt without tokens."""
        empty = next((index for index, ids in enumerate(prompts) if not ids), None)
        if empty is not None:
            raise ValueError(f"prompt {empty} has no tokens: generation continues a prompt")
        model = self.model
        timer = self.timer
        results: list[Generation | None] = [None] * len(prompts)
        with torch.inference_mode(), cascade_attention_for(model):
            with phase(timer, "plan"):
                groups, lengths = prefix_groups(prompts)
                # Rows of a group that shares nothing (prompts with no common first token) run apart, without a prefix.
                planned = []
                for shared in (True, False):
                    indices = [i for i in range(len(prompts)) if (lengths[groups[i]] > 0) == shared]
                    own = [len(prompts[i]) - lengths[groups[i]] for i in indices]
                    for batch in grouped_batches(own, [groups[i] for i in indices], batch_size):
                        planned.append([indices[k] for k in batch])
            for batch in planned:
                batch_started = time.perf_counter()
                batch_groups = list(dict.fromkeys(groups[i] for i in batch))
                local = {group: index for index, group in enumerate(batch_groups)}
                prefixes = None
                if lengths[batch_groups[0]]:
                    with phase(timer, "prefix_prefill"):
                        member = {groups[i]: i for i in batch}  # a prompt of each group
                        prefixes = _encode_prefixes(model, [prompts[member[g]][: lengths[g]] for g in batch_groups])
                outputs = _greedy_batch(
                    model,
                    prefixes,
                    [local[groups[i]] for i in batch],
                    [lengths[groups[i]] for i in batch],
                    [prompts[i][lengths[groups[i]] :] for i in batch],
                    self.pad_id,
                    stop,
                    self.cuda_graphs,
                    timer,
                )
                seconds = (time.perf_counter() - batch_started) / len(batch)
                for index, (kept_ids, text, reason) in zip(batch, outputs, strict=True):
                    results[index] = Generation(kept_ids, text, reason, seconds)
                if on_batch is not None:
                    on_batch(batch)
        return results  # type: ignore[return-value]  # every prompt is in one batch

    def loglikelihood(
        self,
        requests: Sequence[LoglikelihoodRequest],
        batch_size: int,
        on_batch: BatchDone | None = None,
    ) -> list[float]:
        """Summed continuation log-probabilities; requests of one non-empty ``group`` share their prefix's cache."""
        return self.loglikelihood_parts([requests], batch_size, on_batch)

    def loglikelihood_parts(
        self,
        parts: Iterable[Sequence[LoglikelihoodRequest]],
        batch_size: int,
        on_batch: BatchDone | None = None,
    ) -> list[float]:
        """:meth:`loglikelihood` of the requests of ``parts`` one after the other, numbered on across
        parts, each part run as soon as it arrives: ``parts`` may be a generator that prepares
        (tokenizes) the next part meanwhile.

        The batches are those of one call over all the requests: a part's groups that share a
        prefix run at once, its rows without one wait and run together after the last part, as
        one call batches them. That needs every non-empty group within one part: a group seen in
        an earlier part raises ValueError.
        """
        model = self.model
        rows: list[_Row] = []
        unshared: list[int] = []
        logliks: list[float] = []
        done_groups: set[str] = set()

        def score(prefix_length: int, indices: list[int]) -> None:
            cache = _prefix_cache(model, rows[indices[0]].ids[:prefix_length]) if prefix_length else None
            for chunk in _batches(rows, prefix_length, indices, batch_size, self.pad_tolerance):
                batch = [rows[i] for i in chunk]
                for row, values in zip(
                    batch, _target_logprobs(model, batch, self.pad_id, cache, prefix_length), strict=True
                ):
                    for (request_index, _, _), value in zip(row.targets, values, strict=True):
                        logliks[request_index] += value
                if on_batch is not None:
                    # A request's tokens are all targets of one row: it is done with its row.
                    on_batch(list(dict.fromkeys(request_index for row in batch for request_index, _, _ in row.targets)))

        with torch.inference_mode():
            for part in parts:
                part_rows = _rows_for_requests(part, first_index=len(logliks))
                part_groups = {row.group for row in part_rows} - {""}
                if part_groups & done_groups:
                    raise ValueError(f"group {sorted(part_groups & done_groups)[0]!r} spans two parts")
                done_groups |= part_groups
                logliks += [0.0] * len(part)
                first = len(rows)
                rows += part_rows
                shared, lone = _prefix_groups(part_rows)
                unshared += [first + i for i in lone]
                for prefix_length, indices in shared:
                    score(prefix_length, [first + i for i in indices])
            if unshared:
                score(0, unshared)
        return logliks
