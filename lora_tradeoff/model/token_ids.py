"""The model's special token ids, one policy for every stage that feeds or reads token ids.

lm-evaluation-harness keeps these on the model side (``TemplateLM``: ``eot_token_id``,
``prefix_token_id``, the pad token of ``HFLM``); here they are functions of the model and its
tokenizer, used by Spider generation, MMLU scoring and the check of a converted model:

* **end of turn** (:func:`end_of_turn_ids`): where ``generate`` stops, i.e. the generation
  config's eos ids, and the tokenizer's eos;
* **padding** (:func:`pad_token_id`): the tokenizer's pad token, else its eos token (as the
  harness's ``HFLM`` does), else the smallest end-of-turn id of the model. Padding is always masked, so the
  choice changes no result; it is one choice so that logs and batches agree across stages;
* **beginning of sequence**: a chat prompt holds whatever its template writes, so it is encoded
  without the tokenizer's special tokens (:func:`encode_texts`); a plain-text prompt (MMLU without
  the chat template) starts with the tokenizer's default prefix (:func:`bos_prefix`), never twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def end_of_turn_ids(model: Any, tokenizer: Any) -> frozenset[int]:
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


def pad_token_id(tokenizer: Any, model: Any = None) -> int:
    """The id of (masked) padding: the tokenizer's pad token, else its eos, else (given the model)
    the smallest of :func:`end_of_turn_ids`."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    if model is not None:
        return min(end_of_turn_ids(model, tokenizer))
    raise ValueError(
        f"{tokenizer.name_or_path!r} defines neither a pad nor an eos token: batches cannot be padded. "
        "Use a checkpoint whose tokenizer_config.json names an eos_token."
    )


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as it stands, without the tokenizer's special tokens (one batched call)."""
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def bos_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a text by default (``[<s>]`` for Mistral/Llama-2, none for
    SmolLM2 or Qwen2.5): lm-evaluation-harness encodes contexts with the tokenizer's default special
    tokens and never adds a second BOS to a text that already starts with one."""
    plain = tokenizer.encode("a", add_special_tokens=False)
    default = tokenizer.encode("a")
    for start in range(len(default) - len(plain) + 1):
        if default[start : start + len(plain)] == plain:
            return list(default[:start])
    return []
