"""Cascade attention: each query row attends its group's shared prefix (kept once) and its own tokens.

Prompts of one Spider database share everything up to the question (system turn, few-shot
examples, the database's schema): of the 844k tokens of all 1034 Spider dev 3-shot prompts
(Qwen2.5-Coder's tokenizer) the prefill then computes 35k, the 20 database prefixes (15k) once each
and the questions (20k). The engine keeps
each group's prefix keys/values once (`SharedPrefixes`) and every row's own tokens
(question and answer) in its own buffer. Attention is split in two and merged exactly through
the log-sum-exps (`merge_attention`):

* prefix part: the queries of a group's rows against that group's prefix. On CUDA one
  variable-length flash-attention call serves every group of the batch (rows of a group are
  consecutive; `PrefixSegments` holds the offsets); elsewhere one dense call per group.
* own part: each row against its own keys, under an additive mask bias.

The engine activates a `PrefixSegments` for each forward (`attending`); a forward with none
active (the prefixes' own prefill) attends its own keys only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import sdpa_mask

from lora_tradeoff.model.precision import device_capability

# The additive bias of a key a query may not attend to. Finite and far below any attention score
# (exp(-30000) is 0 in float32), not the dtype's minimum: for a query that sees none of its own keys
# (a pad position) CUDA's memory-efficient kernel returned output 0 and log-sum-exp 0 when the bias
# was the minimum, which the merge then weighed against the prefix as if it held mass (an H200,
# torch 2.11); with this value the log-sum-exp is about -30000 and the prefix carries the query,
# on CUDA and CPU alike. Representable in bfloat16 and float16.
MASKED = -30000.0

CASCADE = "lora_tradeoff_cascade"


def additive_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An additive bias (0 = may attend, :data:`MASKED` = may not) from a boolean mask (True = attend).

    The bias lives in storage whose rows are 16-element aligned, as the memory-efficient kernel
    requires.
    """
    kv_length = mask.shape[-1]
    aligned = -(-kv_length // 16) * 16
    bias = torch.full((*mask.shape[:-1], aligned), MASKED, dtype=dtype, device=mask.device)
    bias[..., :kv_length].masked_fill_(mask, 0.0)
    return bias[..., :kv_length]


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

    Outputs are (..., E) and log-sum-exps (...), in any one layout. Set a's share of the softmax
    mass is exp(lse_a) / (exp(lse_a) + exp(lse_b)) = sigmoid(lse_a - lse_b), and the result is
    b + share * (a - b), in float32: six kernels per call (a decode step makes one call per layer,
    and a step's cost is its kernel count, bench/bench_decode_step.py) where normalising each
    weight by the log-sum-exp of both took eleven.
    """
    (out_a, lse_a), (out_b, lse_b) = first, second
    share_a = torch.sigmoid(lse_a - lse_b)[..., None]
    return torch.lerp(out_b.float(), out_a.float(), share_a).to(out_a.dtype)


# ---------------------------------------------------------------------------
# Shared prefixes and which rows attend which


@dataclass(frozen=True)
class SharedPrefixes:
    """Keys/values of a batch's group prefixes, per layer, packed one after another: (T, K, E) each.

    Group ``g``'s tokens are ``starts[g] : starts[g] + lengths[g]`` of the token axis; K key/value
    heads of E dimensions; T = sum of the lengths.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    starts: list[int]
    lengths: list[int]


def varlen_flash_available(query_like: torch.Tensor) -> bool:
    """Whether torch's variable-length flash-attention kernel runs here: CUDA with compute capability
    8.0 or newer, float16/bfloat16, head dimension a multiple of 8 up to 256, flash SDPA enabled.

    Below 8.0 (a T4; or a T4 rehearsal, :func:`lora_tradeoff.model.precision.rehearse_t4`) the per-group
    path runs instead, on the memory-efficient kernel, which takes float16 and float32 there."""
    if query_like.device.type != "cuda" or query_like.dtype not in (torch.float16, torch.bfloat16):
        return False
    head_dim = query_like.shape[-1]
    return (
        head_dim % 8 == 0
        and head_dim <= 256
        and torch.backends.cuda.flash_sdp_enabled()
        and device_capability(str(query_like.device)) >= (8, 0)
    )


class PrefixSegments:
    """Which prefix each query row of one forward attends: runs of consecutive rows of one group.

    ``row_groups``: the group (index into ``prefixes``) of each row of the forward, rows of a group
    consecutive; ``q_length``: query positions per row. On CUDA with flash attention the
    segments are prepared once for the variable-length kernel (cumulative query and key offsets,
    int32 on the device; the prefixes of groups that are not consecutive in ``prefixes`` are
    copied together), so a captured decode step replays with them. Raises ValueError when a
    group's rows are not consecutive.
    """

    def __init__(self, prefixes: SharedPrefixes, row_groups: Sequence[int], q_length: int) -> None:
        runs: list[tuple[int, int]] = []  # (group, rows)
        for group in row_groups:
            if runs and runs[-1][0] == group:
                runs[-1] = (group, runs[-1][1] + 1)
            else:
                runs.append((group, 1))
        groups = [group for group, _ in runs]
        if len(set(groups)) != len(groups):
            raise ValueError(f"rows of one group must be consecutive, got group order {groups}")
        self.prefixes, self.runs, self.q_length = prefixes, runs, q_length
        probe = prefixes.keys[0]
        self.varlen = varlen_flash_available(probe)
        if not self.varlen:
            return
        lengths = [prefixes.lengths[group] for group in groups]
        first, last = groups[0], groups[-1]
        if groups == list(range(first, last + 1)):
            start, stop = prefixes.starts[first], prefixes.starts[last] + prefixes.lengths[last]
            self.keys = [layer[start:stop] for layer in prefixes.keys]
            self.values = [layer[start:stop] for layer in prefixes.values]
        else:
            spans = [(prefixes.starts[group], prefixes.lengths[group]) for group in groups]
            self.keys = [torch.cat([layer[s : s + n] for s, n in spans]) for layer in prefixes.keys]
            self.values = [torch.cat([layer[s : s + n] for s, n in spans]) for layer in prefixes.values]
        queries = [rows * q_length for _, rows in runs]
        device = probe.device
        self.cu_q = torch.tensor([0, *accumulate(queries)], dtype=torch.int32, device=device)
        self.cu_k = torch.tensor([0, *accumulate(lengths)], dtype=torch.int32, device=device)
        self.max_q, self.max_k = max(queries), max(lengths)


_active = threading.local()


@contextmanager
def attending(segments: PrefixSegments | None) -> Iterator[None]:
    """Let the forwards inside attend the prefixes of ``segments`` (None: own tokens only)."""
    before = getattr(_active, "segments", None)
    _active.segments = segments
    try:
        yield
    finally:
        _active.segments = before


def prefix_attention(
    query: torch.Tensor, segments: PrefixSegments, layer: int, scale: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``query`` (B, H, L, E) over its rows' group prefixes at ``layer``:
    ``(output (B, L, H, E), lse (B, L, H) float32)``.

    CUDA (flash): one variable-length call, the grouped query heads native to the kernel. Else: per
    group, the queries of all its rows and positions as one long query axis against the single
    prefix copy, the H/K query heads of a key/value head folded into that axis.
    """
    batch, heads, q_length, head_dim = query.shape
    if segments.varlen:
        flat = query.transpose(1, 2).reshape(batch * q_length, heads, head_dim)
        out, lse, _, _, _ = torch.ops.aten._flash_attention_forward(
            flat,
            segments.keys[layer],
            segments.values[layer],
            segments.cu_q,
            segments.cu_k,
            segments.max_q,
            segments.max_k,
            0.0,
            False,
            False,
            scale=scale,
        )
        return out.view(batch, q_length, heads, head_dim), lse.view(heads, batch, q_length).permute(1, 2, 0)
    prefixes = segments.prefixes
    kv_heads = prefixes.keys[layer].shape[1]
    group = heads // kv_heads
    outputs, lses, row = [], [], 0
    for prefix_group, rows in segments.runs:
        start, length = prefixes.starts[prefix_group], prefixes.lengths[prefix_group]
        keys = prefixes.keys[layer][start : start + length].transpose(0, 1)[None]
        values = prefixes.values[layer][start : start + length].transpose(0, 1)[None]
        # (n, H, L, E) -> (1, K, n * group * L, E): head h = k * group + j, so every query row of key/value head k.
        part = query[row : row + rows]
        stacked = part.reshape(rows, kv_heads, group * q_length, head_dim).transpose(0, 1)
        stacked = stacked.reshape(1, kv_heads, rows * group * q_length, head_dim)
        out, lse = attention_with_lse(stacked, keys, values, None, scale)
        outputs.append(out.reshape(kv_heads, rows, group * q_length, head_dim).transpose(0, 1))
        lses.append(lse.reshape(kv_heads, rows, group * q_length).transpose(0, 1))
        row += rows
    output = torch.cat(outputs).reshape(batch, heads, q_length, head_dim).transpose(1, 2)
    return output, torch.cat(lses).reshape(batch, heads, q_length).transpose(1, 2)


def cascade_mask(*args: Any, dtype: torch.dtype, **kwargs: Any) -> torch.Tensor:
    """transformers' SDPA mask for one forward, as the additive bias `cascade_attention` takes.

    transformers builds the mask once per forward and hands it to every layer, so
    the bias is built here once rather than in each layer. The causal shortcut
    (no mask at all) is turned off: without the prefix in the keys, a plain causal
    mask would not be aligned to the row's own slots.
    """
    return additive_bias(sdpa_mask(*args, **{**kwargs, "allow_is_causal_skip": False}), dtype)


def cascade_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Inference attention of ``query`` over its group's shared prefix (if any) and the row's own keys/values.

    ``query`` is (B, H, L, E); ``key``/``value`` (B, K, S, E) hold each row's own
    tokens, K key/value heads each shared by H/K query heads; ``attention_mask``
    is an additive bias over those S slots (the decoder's, or `cascade_mask`'s). Own part: for one
    new token per row, a group's query heads are stacked along the query axis and
    read their key/value head once; for a prefill, key/value heads are repeated.
    Prefix part: `prefix_attention` with the active `PrefixSegments`. Returns (B, L, H, E).
    """
    batch, heads, q_length, head_dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    if q_length == 1:
        folded = query.reshape(batch, kv_heads, group, head_dim)
        own_out, own_lse = attention_with_lse(folded, key, value, attention_mask, scaling)
        own = (own_out.reshape(batch, 1, heads, head_dim), own_lse.reshape(batch, 1, heads))
    else:
        own_out, own_lse = attention_with_lse(
            query, key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1), attention_mask, scaling
        )
        own = (own_out.transpose(1, 2), own_lse.transpose(1, 2))
    segments = getattr(_active, "segments", None)
    if segments is None:
        return own[0].contiguous(), None
    shared = prefix_attention(query, segments, module.layer_idx, scaling)
    return merge_attention(shared, own).contiguous(), None


AttentionInterface.register(CASCADE, cascade_attention)
AttentionMaskInterface.register(CASCADE, cascade_mask)


@contextmanager
def cascade_attention_for(model: Any) -> Iterator[None]:
    """Run ``model`` with `cascade_attention`, and put its attention setting back afterwards."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = CASCADE
    try:
        yield
    finally:
        config._attn_implementation = before
