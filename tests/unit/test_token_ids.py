"""The token-id policy (lora_tradeoff/model/token_ids.py) on the real default model's tokenizer."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from lora_tradeoff.model.token_ids import end_of_turn_ids, pad_token_id


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_dir)


def test_padding_falls_back_from_pad_to_eos_to_the_models_end_of_turn(tokenizer):
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[7, 5]))
    assert pad_token_id(tokenizer, model) == tokenizer.pad_token_id
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    assert pad_token_id(no_pad, model) == no_pad.eos_token_id == 2  # SmolLM2's <|im_end|>
    neither = copy.deepcopy(no_pad)
    neither.eos_token = None
    assert end_of_turn_ids(model, neither) == {5, 7}
    assert pad_token_id(neither, model) == 5
    with pytest.raises(ValueError, match="defines neither a pad nor an eos token"):
        pad_token_id(neither)
