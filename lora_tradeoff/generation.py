"""Greedy SQL generation for the base model and every LoRA adapter through one batched path.

`generate_sql` is token-for-token the output of ``model.generate(do_sample=False)``
run on one prompt at a time, cut at the first stop (see `stop_point`), and much
faster (on an H100, 1034 three-shot Spider dev prompts: 173 q/s against 0.48 q/s):

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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.masking_utils import sdpa_mask

from lora_tradeoff.logs import Progress
from lora_tradeoff.sql_extract import answer_span, statement_terminator

_log = logging.getLogger(__name__)

# Suffixes prefilled in one forward differ in length by at most this fraction,
# so padding costs at most that share of the prefill (see similar_length_groups).
_PREFILL_PADDING = 0.1

_FENCE = "```"


class PromptTooLongError(ValueError):
    """A prompt plus the generation budget does not fit the model's context."""


class MissingChatTemplateError(ValueError):
    """The tokenizer cannot turn chat messages into a prompt."""


# ---------------------------------------------------------------------------
# Prompts


def encode_prompts(tokenizer: Any, prompt_rows: Sequence[dict]) -> list[list[int]]:
    """Token ids of each row's ``messages`` exactly as ``apply_chat_template(messages, add_generation_prompt=True)``.

    The template is rendered to text and the texts are tokenized in one batch
    (that is what ``apply_chat_template(tokenize=True)`` does per prompt, so the
    ids are the same; the batch call is several times faster on 1000 prompts).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise MissingChatTemplateError(
            f"The tokenizer of {tokenizer.name_or_path!r} has no chat template, so chat messages cannot be "
            "turned into a prompt. Use an instruction-tuned model whose checkpoint ships one "
            "(chat_template.jinja or tokenizer_config.json 'chat_template'), i.e. change config.model."
        )
    texts = [
        tokenizer.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=False)
        for row in prompt_rows
    ]
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def check_prompt_lengths(
    prompt_ids: Sequence[Sequence[int]], row_ids: Sequence[str], context_length: int, max_new_tokens: int
) -> None:
    """Fail before any generation when a prompt leaves no room for ``max_new_tokens`` in the context."""
    limit = context_length - max_new_tokens
    for row_id, ids in zip(row_ids, prompt_ids, strict=True):
        if len(ids) > limit:
            raise PromptTooLongError(
                f"Prompt {row_id} has {len(ids)} tokens, but the model's context of {context_length} tokens "
                f"minus generation.max_new_tokens={max_new_tokens} leaves {limit}. Lower prompt.max_seq_len "
                "(fewer schema tables / shorter examples) or generation.max_new_tokens in the config."
            )


def shared_prefix_length(prompt_ids: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix common to all prompts, leaving every prompt at least one own token.

    The last prompt token must go through the suffix prefill, because its logits
    choose the first new token.
    """
    if not prompt_ids:
        return 0
    first = prompt_ids[0]
    length = min(len(ids) for ids in prompt_ids) - 1
    for ids in prompt_ids[1:]:
        # Shrink to the first position where this prompt differs from the first one.
        length = next((i for i in range(length) if ids[i] != first[i]), length)
    return max(length, 0)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first.

    Similar lengths keep padding small; longest first makes a batch size that is
    too large for the device's memory fail at once rather than after an hour.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


# ---------------------------------------------------------------------------
# Stops


def stop_point(
    new_ids: Sequence[int], eos_ids: frozenset[int], decode: Callable[[Sequence[int]], str], complete: bool
) -> tuple[int, str, str] | None:
    """Where generation of one sequence stops: ``(tokens kept, text kept, reason)``, or None to go on.

    Reasons, earliest in the text wins:

    * ``statement_end``: a ';' followed by a newline, or the code fence that
      closes an opened one. The kept text ends with the ';' or the fence; the
      kept tokens end with the token that completes it.
    * ``eos``: an end-of-turn token. It counts as a kept token, its text is dropped.
    * ``max_new_tokens``: ``complete`` says the budget is spent.
    """
    eos_at = next((i for i, token in enumerate(new_ids) if token in eos_ids), None)
    body = new_ids if eos_at is None else new_ids[:eos_at]
    text = decode(body)
    end = statement_end(text)
    if end is not None:
        kept = next(n for n in range(1, len(body) + 1) if decode(body[:n]).startswith(text[:end]))
        return kept, text[:end], "statement_end"
    if eos_at is not None:
        return eos_at + 1, text, "eos"
    if complete:
        return len(new_ids), text, "max_new_tokens"
    return None


def statement_end(text: str) -> int | None:
    """Character offset just after the first statement terminator in ``text``, or None.

    A terminator is a ';' that a newline follows and that ends the answer's
    first statement as SQL reads it (`sql_extract.statement_terminator`, the
    lexing extraction uses: a ';' inside a string literal, quoted identifier,
    ``--`` or ``/* */`` comment, or a reasoning block ends nothing), or a code
    fence that closes an earlier one ("```sql\\nSELECT 1\\n```") outside reasoning. A ';' at
    the very end is not one yet: the next token may still be a newline, or an eos.
    """
    ends = []
    terminator = statement_terminator(text)
    if terminator is not None:
        ends.append(terminator)
    begin, end = answer_span(text)
    opening = text.find(_FENCE, begin, end)
    closing = text.find(_FENCE, opening + len(_FENCE), end) if opening >= 0 else -1
    if closing >= 0:
        ends.append(closing + len(_FENCE))
    return min(ends, default=None)


_BYTE_STOPS = ("<0x3B>", "<0x60>")


def _stop_candidates(tokenizer: Any) -> frozenset[int]:
    """Token ids whose text holds a ';' or a backtick: only a sequence with one of them can reach a statement end."""
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    # Byte-level BPE and SentencePiece pieces spell ';' and '`' as themselves; SentencePiece's
    # byte-fallback pieces (Mistral, Llama-2) spell them <0x3B> and <0x60>.
    return frozenset(
        i for i, token in enumerate(vocabulary) if token and (";" in token or "`" in token or token in _BYTE_STOPS)
    )


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Ids that end the assistant's turn: the generation config's (where ``generate`` stops) and the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    ids.discard(None)
    if not ids:
        raise ValueError(
            f"{tokenizer.name_or_path!r} defines no eos token; generation could not stop at the end of a turn."
        )
    return frozenset(ids)


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
    """The attention over the union of two disjoint key sets, from the attention over each and its log-sum-exp."""
    (out_a, lse_a), (out_b, lse_b) = first, second
    lse = torch.logaddexp(lse_a, lse_b)
    weight_a = torch.exp(lse_a - lse)[..., None]
    weight_b = torch.exp(lse_b - lse)[..., None]
    return (out_a.float() * weight_a + out_b.float() * weight_b).to(out_a.dtype)


def _additive_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An additive bias (0 = may attend, the dtype's minimum = may not) from a boolean mask (True = attend).

    The minimum rather than -inf keeps a row that sees none of its own tokens (a
    pad position) finite; the shared prefix then carries all of its weight. The
    bias lives in storage whose rows are 16-element aligned, as the
    memory-efficient kernel requires.
    """
    kv_length = mask.shape[-1]
    aligned = -(-kv_length // 16) * 16
    bias = torch.full((*mask.shape[:-1], aligned), torch.finfo(dtype).min, dtype=dtype, device=mask.device)
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


class _StopScanner:
    """Decides, from token ids on the host, when each sequence has stopped (see `stop_point`)."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(model, tokenizer)
        self.candidates = _stop_candidates(tokenizer)
        self.max_new_tokens = max_new_tokens

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def check(self, new_ids: list[int]) -> tuple[list[int], str, str] | None:
        """``(kept token ids, kept text, reason)`` once ``new_ids`` hold a stop, else None."""
        complete = len(new_ids) >= self.max_new_tokens
        # Decoding is the slow part; a sequence without eos or ';'/'`' tokens cannot have stopped.
        if not complete and not any(token in self.eos_ids or token in self.candidates for token in new_ids):
            return None
        stop = stop_point(new_ids, self.eos_ids, self.decode, complete)
        return None if stop is None else (new_ids[: stop[0]], stop[1], stop[2])


def _steps_per_stop_check(device: torch.device) -> int:
    """Decode steps between two looks for stops.

    Looking needs the new tokens on the host, which makes the host wait for the
    GPU; on CUDA the GPU may run 8 steps ahead instead. Rows then run past their
    stop by up to 7 tokens, which are discarded: the output does not depend on
    this number, only the wasted work does.
    """
    return 8 if device.type == "cuda" else 1


def similar_length_groups(lengths: Sequence[int], tolerance: float = _PREFILL_PADDING) -> list[tuple[int, int]]:
    """Split lengths sorted longest first into runs ``(start, stop)``, each within ``tolerance`` of its first.

    Each run is prefilled in one forward, padded to its longest suffix, so at
    most that fraction of a prefill is spent on padding.
    """
    runs: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(lengths) + 1):
        if index == len(lengths) or lengths[index] < (1 - tolerance) * lengths[start]:
            runs.append((start, index))
            start = index
    return runs


def _prefill(
    model: Any, cache: Cache, capacity: int, prefix_length: int, suffixes: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the suffixes' keys/values into ``cache``; return the first new tokens and the own-token mask.

    Layout of every row's own buffer: ``[gap | suffix | new tokens]``, suffixes
    ending at the same slot, so that all rows decode in lockstep (the shared
    prefix lives once, outside these buffers). The gap is masked out and position
    ids continue the prefix, so each row sees exactly its prompt. Runs of similar
    length are prefilled separately, each padded only to its own longest suffix.
    """
    device = model.device
    batch, width = len(suffixes), len(suffixes[0])
    mask = torch.zeros((batch, capacity), dtype=torch.long)
    mask[:, width:] = 1  # new tokens (and alignment padding past them): the decoder opens one slot per step
    for row, suffix in enumerate(suffixes):
        mask[row, width - len(suffix) : width] = 1
    mask = mask.to(device)
    first_tokens = []
    for start, stop in similar_length_groups([len(suffix) for suffix in suffixes]):
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

    def advance(self) -> torch.Tensor:
        """Run one step; return a copy of the new tokens."""
        if not self.use_graph:
            self._step()
        elif not self.warmed:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step()
            torch.cuda.current_stream().wait_stream(side)
            self.warmed = True
        elif self.graph is None and not self._capture():
            self._step()
        else:
            self.graph.replay()
        return self.tokens.clone()

    def _capture(self) -> bool:
        """Capture one step as a CUDA graph; on failure log why and go on eagerly (the tokens do not change).

        A capture fails when something in the step synchronises with the host,
        which a model class or quantization kernel we have not met might do.
        """
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
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
    scanner: _StopScanner,
    cuda_graphs: bool,
) -> list[tuple[list[int], str, str]]:
    """Greedy continuations of ``prefix + suffix`` for suffixes sorted longest first.

    Returns ``(kept token ids, kept text, stop reason)`` per suffix.
    """
    device = model.device
    batch = len(suffixes)
    max_new = scanner.max_new_tokens
    filled = len(suffixes[0])
    # Memory-efficient attention wants the bias rows 16-element aligned; the slots past the budget stay masked.
    capacity = -(-(filled + max_new) // 16) * 16
    cache = _batch_cache(model, batch, capacity)
    tokens, mask = _prefill(model, cache, capacity, prefix_length, suffixes, pad_id)
    positions = torch.tensor([prefix_length + len(suffix) for suffix in suffixes], device=device)
    decoder = _Decoder.after_prefill(model, cache, tokens, mask, positions, filled, cuda_graphs)
    del cache, mask
    rows = list(range(batch))  # original row index of each row still decoding
    generated: list[list[int]] = [[] for _ in range(batch)]
    results: list[tuple[list[int], str, str] | None] = [None] * batch
    steps_per_check = _steps_per_stop_check(device)
    unchecked: list[torch.Tensor] = []
    for step in range(1, max_new + 1):
        unchecked.append(tokens)
        if step % steps_per_check == 0 or step == max_new:
            for row, new in zip(rows, torch.stack(unchecked, dim=1).tolist(), strict=True):
                if results[row] is None:
                    generated[row].extend(new)
                    results[row] = scanner.check(generated[row])
            unchecked = []
            keep = [i for i, row in enumerate(rows) if results[row] is None]
            if not keep:
                break
            # Dropping stopped rows copies the cache (and on CUDA costs a new capture), so wait until half have stopped.
            if len(rows) - len(keep) >= max(1, len(rows) // 2):
                decoder = decoder.keep_rows(torch.tensor(keep, device=device))
                rows = [rows[i] for i in keep]
        tokens = decoder.advance()
    return results  # type: ignore[return-value]  # every row stopped: the last step is a complete check


def generate_sql(
    model: Any,
    tokenizer: Any,
    prompt_rows: list[dict],
    max_new_tokens: int,
    batch_size: int,
    progress: Callable[[str], None] | None = None,
    cuda_graphs: bool = True,
) -> list[dict]:
    """Greedy answers to chat prompts, one result row per prompt row, in input order.

    ``prompt_rows`` need "id" and "messages" (chat turns; the model sees
    ``apply_chat_template(messages, add_generation_prompt=True)``). The model is
    any causal LM, with or without a (merged or unmerged) adapter, in eval mode.

    Each result row holds:

    * id, prompt_tokens: the prompt's length in tokens;
    * raw_output: the generated text up to and including the stop (a ';' that
      ends a statement, a closing code fence) or up to eos, eos itself excluded;
    * output_token_ids, new_tokens: the generated tokens kept (eos included when
      that was the stop) and their number;
    * stop_reason: "statement_end", "eos" or "max_new_tokens";
    * seconds: this item's share of its batch's wall time plus its share of the
      shared-prefix encoding, so the column sums to the total time.

    ``cuda_graphs`` (CUDA only) replays each batch's decode step as a CUDA graph.
    ``progress`` receives one line per batch: items done of all, items/s, ETA.

    The tokens are those of ``model.generate(do_sample=False)`` on each prompt
    alone, cut at the stop (float rounding differences aside, which batching can
    introduce on GPUs in bf16).
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) and batch_size ({batch_size}) must be at least 1")
    prompt_ids = encode_prompts(tokenizer, prompt_rows)
    check_prompt_lengths(
        prompt_ids,
        [row["id"] for row in prompt_rows],
        int(model.config.get_text_config(decoder=True).max_position_embeddings),
        max_new_tokens,
    )
    scanner = _StopScanner(model, tokenizer, max_new_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(scanner.eos_ids)
    total = len(prompt_rows)
    results: list[dict] = [{} for _ in range(total)]
    started = time.perf_counter()
    tracker = Progress(total, "items", "generated", progress)
    with torch.inference_mode(), _cascade_attention(model):
        prefix_length = shared_prefix_length(prompt_ids)
        prefix_kv = _encode_prefix(model, prompt_ids[0][:prefix_length]) if total else None
        _shared_prefix.update(enumerate(prefix_kv or []))
        prefix_share = (time.perf_counter() - started) / max(total, 1)
        for batch in length_sorted_batches([len(ids) for ids in prompt_ids], batch_size):
            batch_started = time.perf_counter()
            outputs = _greedy_batch(
                model,
                prefix_length,
                [prompt_ids[i][prefix_length:] for i in batch],
                pad_id,
                scanner,
                cuda_graphs,
            )
            seconds = (time.perf_counter() - batch_started) / len(batch) + prefix_share
            for index, (kept_ids, text, reason) in zip(batch, outputs, strict=True):
                results[index] = {
                    "id": prompt_rows[index]["id"],
                    "prompt_tokens": len(prompt_ids[index]),
                    "raw_output": text,
                    "output_token_ids": kept_ids,
                    "new_tokens": len(kept_ids),
                    "stop_reason": reason,
                    "seconds": seconds,
                }
            tracker.advance(len(batch))
    return results
