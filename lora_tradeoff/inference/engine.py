"""Our inference engine: batched greedy generation and continuation log-likelihood.

`BatchedEngine.generate_until` is token-for-token the output of ``model.generate(do_sample=False)``
run on one prompt at a time, cut at the first stop (`lora_tradeoff.generation.stop_point`
for SQL), and much faster (on an H100, 1034 three-shot Spider dev prompts: 173 q/s against 0.48 q/s):

* Shared prefix, attended once. Every prompt of a style starts with the same
  tokens (system turn and, for few_shot, the three worked examples, ~600 of
  ~1000 tokens): their keys/values are computed once and kept once, not copied
  into every row. Attention is split in two ("cascade" attention): all queries
  of the batch against the one shared prefix (a single dense attention), and
  each row's queries against its own tokens; the two are merged exactly through
  their log-sum-exps. A decode step then reads the prefix's keys/values once
  instead of once per row, and the prefill never builds a mask over the prefix.
* Batches of similar length. Prompts are sorted by length, suffixes are
  right-aligned in each row's buffer (the padding before a short suffix is
  masked out and position ids continue the prefix, so every sequence sees
  exactly its own prompt), and keys/values are written in place into buffers
  allocated once per batch.
* Grouped-query attention without copies at decode steps: the query heads that
  share a key/value head are folded into the query axis (same scores, one read
  of the keys), where transformers' SDPA path would copy every key/value head
  once per query head (3x for SmolLM2) at every layer and step.
* A lean decode loop. One forward per step with only the last position's logits,
  rows that have stopped are dropped from the batch, and the batch ends as soon
  as every row has stopped.
* The decode step on fixed-shape buffers, replayed as a CUDA graph. At a small
  model's decode step the GPU waits on Python: transformers' forward launches
  some 400 kernels, ~35-55 ms of host time at any batch size. Every tensor of
  the step (cache, mask, token, position, write slot) lives in a buffer that
  the step updates in place, so on CUDA one capture serves every later step of
  the batch and a step costs one graph launch. CPU runs the same step eagerly.

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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.masking_utils import sdpa_mask

from lora_tradeoff.inference.base import BatchDone, Generation, LoglikelihoodRequest, StopRule
from lora_tradeoff.inference.batching import (
    PAD_TOLERANCE,
    check_pad_tolerance,
    common_prefix_length,
    length_batches,
    length_sorted_batches,
    shared_prefix_length,
    similar_length_groups,
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


def _encode_prefix(model: Any, prefix_ids: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Keys/values of the shared prefix at positions 0..len-1, batch of one; None for an empty prefix."""
    if not prefix_ids:
        return None
    cache = _batch_cache(model, 1, len(prefix_ids))
    model(
        input_ids=torch.tensor([list(prefix_ids)], device=model.device),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return [(layer.keys, layer.values) for layer in cache.layers]


# ---------------------------------------------------------------------------
# Attention

_CASCADE = "lora_tradeoff_cascade"

# Keys/values of the shared prefix per layer index, batch of one, while `_cascade_attention` is active.
_shared_prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def attention_with_lse(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None, scale: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention and the log-sum-exp of its scores: ``(output (B, H, L, E), lse (B, H, L) float32)``.

    The log-sum-exp is what lets two attentions over disjoint key sets be merged
    exactly (`merge_attention`). SDPA's public function does not return it, so the
    kernels behind it are called directly: memory-efficient attention on CUDA
    (takes an additive bias), the flash kernel on CPU. ``bias`` is additive,
    broadcastable to (B, H, L, S), in the query's dtype.
    """
    if bias is not None:
        bias = bias.expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
    if query.device.type == "cuda":
        output, lse, _, _ = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, bias, True, 0.0, False, scale=scale
        )
        return output, lse[..., : query.shape[2]]
    output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, False, attn_mask=bias, scale=scale
    )
    return output, lse


def merge_attention(
    first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """The attention over the union of two disjoint key sets, from the attention over each and its log-sum-exp.

    Set a's share of the softmax mass is exp(lse_a) / (exp(lse_a) + exp(lse_b)) = sigmoid(lse_a - lse_b),
    and the result is b + share * (a - b), in float32: six kernels per call (a decode step makes one
    call per layer, and a step's cost is its kernel count, bench/bench_decode_step.py) where
    normalising each weight by the log-sum-exp of both took eleven.
    """
    (out_a, lse_a), (out_b, lse_b) = first, second
    share_a = torch.sigmoid(lse_a - lse_b)[..., None]
    return torch.lerp(out_b.float(), out_a.float(), share_a).to(out_a.dtype)


# The additive bias of a key a query may not attend to. Finite and far below any attention score
# (exp(-30000) is 0 in float32), not the dtype's minimum: for a query that sees none of its own keys
# (a pad position) CUDA's memory-efficient kernel returned output 0 and log-sum-exp 0 when the bias
# was the minimum, which the merge then weighed against the prefix as if it held mass (an H200,
# torch 2.11); with this value the log-sum-exp is about -30000 and the prefix carries the query,
# on CUDA and CPU alike. Representable in bfloat16 and float16.
MASKED = -30000.0


def _additive_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An additive bias (0 = may attend, :data:`MASKED` = may not) from a boolean mask (True = attend).

    The bias lives in storage whose rows are 16-element aligned, as the memory-efficient kernel
    requires.
    """
    kv_length = mask.shape[-1]
    aligned = -(-kv_length // 16) * 16
    bias = torch.full((*mask.shape[:-1], aligned), MASKED, dtype=dtype, device=mask.device)
    bias[..., :kv_length].masked_fill_(mask, 0.0)
    return bias[..., :kv_length]


def cascade_mask(*args: Any, dtype: torch.dtype, **kwargs: Any) -> torch.Tensor:
    """transformers' SDPA mask for one forward, as the additive bias `cascade_attention` takes.

    transformers builds the mask once per forward and hands it to every layer, so
    the bias is built here once rather than in each layer. The causal shortcut
    (no mask at all) is turned off: without the prefix in the keys, a plain causal
    mask would not be aligned to the row's own slots.
    """
    return _additive_bias(sdpa_mask(*args, **{**kwargs, "allow_is_causal_skip": False}), dtype)


def cascade_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Inference attention of ``query`` over the shared prefix (if any) and the row's own keys/values.

    ``query`` is (B, H, L, E); ``key``/``value`` (B, K, S, E) hold each row's own
    tokens, K key/value heads each shared by H/K query heads; ``attention_mask``
    is an additive bias over those S slots (the decoder's, or `cascade_mask`'s). Own part: for one
    new token per row, a group's query heads are stacked along the query axis and
    read their key/value head once; for a prefill, key/value heads are repeated.
    Prefix part: the queries of all rows and positions are one long query axis
    against the single prefix copy.
    """
    batch, heads, q_length, head_dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    if q_length == 1:
        folded = query.reshape(batch, kv_heads, group, head_dim)
        own = attention_with_lse(folded, key, value, attention_mask, scaling)
        own = (own[0].reshape(batch, heads, 1, head_dim), own[1].reshape(batch, heads, 1))
    else:
        own = attention_with_lse(
            query, key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1), attention_mask, scaling
        )
    prefix = _shared_prefix.get(module.layer_idx)
    if prefix is None:
        output = own[0]
    else:
        # (B, H, L, E) -> (1, K, B * group * L, E): head h = k * group + j, so every query row of key/value head k.
        stacked = query.reshape(batch, kv_heads, group * q_length, head_dim).transpose(0, 1)
        stacked = stacked.reshape(1, kv_heads, batch * group * q_length, head_dim)
        out, lse = attention_with_lse(stacked, prefix[0], prefix[1], None, scaling)
        out = out.reshape(kv_heads, batch, group * q_length, head_dim).transpose(0, 1)
        lse = lse.reshape(kv_heads, batch, group * q_length).transpose(0, 1)
        shared = (out.reshape(batch, heads, q_length, head_dim), lse.reshape(batch, heads, q_length))
        output = merge_attention(shared, own)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(_CASCADE, cascade_attention)
AttentionMaskInterface.register(_CASCADE, cascade_mask)


@contextmanager
def _cascade_attention(model: Any) -> Iterator[None]:
    """Run ``model`` with `cascade_attention`, and put its attention setting and the prefix registry back afterwards."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = _CASCADE
    try:
        yield
    finally:
        config._attn_implementation = before
        _shared_prefix.clear()


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
    prefix_length: int,
    suffixes: Sequence[Sequence[int]],
    pad_id: int,
    runs: Sequence[tuple[int, int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the suffixes' keys/values into ``cache``; return the first new tokens and the own-token mask.

    Layout of every row's own buffer: ``[gap | suffix | new tokens]``, suffixes
    ending at the same slot, so that all rows decode in lockstep (the shared
    prefix lives once, outside these buffers). The gap is masked out and position
    ids continue the prefix, so each row sees exactly its prompt. Runs of similar
    length are prefilled separately, each padded only to its own longest suffix: ``runs``, the
    ``(start, stop)`` row ranges of `similar_length_groups`.
    """
    device = model.device
    batch, width = len(suffixes), len(suffixes[0])
    mask = torch.zeros((batch, capacity), dtype=torch.long)
    mask[:, width:] = 1  # new tokens (and alignment padding past them): the decoder opens one slot per step
    for row, suffix in enumerate(suffixes):
        mask[row, width - len(suffix) : width] = 1
    mask = mask.to(device)
    first_tokens = []
    for start, stop in runs:
        run_width = len(suffixes[start])
        input_ids = torch.full((stop - start, run_width), pad_id, dtype=torch.long)
        lengths = torch.tensor([len(suffix) for suffix in suffixes[start:stop]])
        for row, suffix in enumerate(suffixes[start:stop]):
            input_ids[row, run_width - len(suffix) :] = torch.tensor(suffix)
        position_ids = (prefix_length + torch.arange(run_width) - (run_width - lengths[:, None])).clamp(min=0)
        run_cache = Cache(layers=[layer.rows(start, stop, width - run_width) for layer in cache.layers])
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


class _Decoder:
    """Greedy decode steps for one batch, every tensor of a step in a buffer updated in place.

    A step opens the mask at the write slot, runs the model on each row's last
    token (keys/values written at the slot), takes the argmax as the next token
    and advances position and slot. On CUDA the first step runs eagerly (it
    initialises the lazy state a capture must not see, such as cuBLAS
    workspaces), the second is captured as a CUDA graph, and every later step
    replays it.
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
        use_graph: bool,
        warmed: bool,
    ) -> None:
        self.model = model
        self.keys, self.values = keys, values
        self.tokens, self.bias, self.positions, self.slot = tokens, bias, positions, slot
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
        use_graph: bool,
    ) -> _Decoder:
        """A decoder that continues from a prefilled cache whose first ``filled`` slots are written."""
        device = tokens.device
        visible = mask.bool() & (torch.arange(mask.shape[1], device=device) < filled)
        bias = _additive_bias(visible, model.dtype)
        return cls(
            model,
            [layer._keys for layer in cache.layers],
            [layer._values for layer in cache.layers],
            tokens.clone(),
            bias[:, None, None, :],
            positions.clone(),
            torch.tensor([filled], device=device),
            use_graph=use_graph,
            warmed=False,
        )

    def _step(self) -> None:
        self.bias.index_fill_(3, self.slot, 0.0)
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

    def keep_rows(self, index: torch.Tensor) -> _Decoder:
        """A decoder over rows ``index`` only (fresh buffers; on CUDA a new capture at the next step)."""
        return _Decoder(
            self.model,
            [buffer[index] for buffer in self.keys],
            [buffer[index] for buffer in self.values],
            self.tokens[index],
            self.bias[index],
            self.positions[index],
            self.slot,
            use_graph=self.use_graph,
            warmed=self.warmed,
        )


def _greedy_batch(
    model: Any,
    prefix_length: int,
    suffixes: Sequence[Sequence[int]],
    pad_id: int,
    scanner: StopRule,
    cuda_graphs: bool,
    timer: PhaseTimer | None = None,
) -> list[tuple[list[int], str, str]]:
    """Greedy continuations of ``prefix + suffix`` for suffixes sorted longest first.

    Returns ``(kept token ids, kept text, stop reason)`` per suffix. ``timer`` (profiling
    only) times the phases and receives the batch's facts (`PhaseTimer.end_batch`).
    """
    device = model.device
    batch = len(suffixes)
    max_new = scanner.max_new_tokens
    filled = len(suffixes[0])
    if timer is not None:
        timer.begin_batch()
    # Memory-efficient attention wants the bias rows 16-element aligned; the slots past the budget stay masked.
    capacity = -(-(filled + max_new) // 16) * 16
    with phase(timer, "batch_setup"):
        cache = _batch_cache(model, batch, capacity)
    runs = similar_length_groups([len(suffix) for suffix in suffixes])
    with phase(timer, "prefill"):
        tokens, mask = _prefill(model, cache, capacity, prefix_length, suffixes, pad_id, runs)
    with phase(timer, "batch_setup"):
        positions = torch.tensor([prefix_length + len(suffix) for suffix in suffixes], device=device)
        decoder = _Decoder.after_prefill(model, cache, tokens, mask, positions, filled, cuda_graphs)
    del cache, mask
    rows = list(range(batch))  # original row index of each row still decoding
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
                    decoder = decoder.keep_rows(torch.tensor(keep, device=device))
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
            "prefix_tokens": prefix_length,
            "suffix_tokens": [len(suffix) for suffix in suffixes],
            "prefill_runs": [(stop - start, len(suffixes[start])) for start, stop in runs],
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
        """Greedy continuations, prompts of similar length batched, their shared prefix attended once."""
        model = self.model
        timer = self.timer
        total = len(prompts)
        results: list[Generation | None] = [None] * total
        started = time.perf_counter()
        with torch.inference_mode(), _cascade_attention(model):
            with phase(timer, "plan"):
                prefix_length = shared_prefix_length(prompts)
            with phase(timer, "prefix_prefill"):
                prefix_kv = _encode_prefix(model, prompts[0][:prefix_length]) if total else None
            _shared_prefix.update(enumerate(prefix_kv or []))
            prefix_share = (time.perf_counter() - started) / max(total, 1)
            with phase(timer, "plan"):
                batches = length_sorted_batches([len(ids) for ids in prompts], batch_size)
            for batch in batches:
                batch_started = time.perf_counter()
                outputs = _greedy_batch(
                    model,
                    prefix_length,
                    [prompts[i][prefix_length:] for i in batch],
                    self.pad_id,
                    stop,
                    self.cuda_graphs,
                    timer,
                )
                seconds = (time.perf_counter() - batch_started) / len(batch) + prefix_share
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
