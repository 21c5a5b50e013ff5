"""Load the base model, or a fine-tuned run's weights, the same way for every evaluation.

One loader serves generation and MMLU scoring for the base model and for every
fine-tuned run, a LoRA adapter or a fully fine-tuned model folder alike, so a difference
between two rows of a results table can only come from the weights, never from how they
were loaded (same dtype, device and tokenizer: the base model's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora_tradeoff.model.precision import resolve_dtype, torch_dtype


class AdapterMismatchError(ValueError):
    """Fine-tuned weights (an adapter or a whole model) were trained from another base model than the one configured."""


# The keys of config.json that a fully fine-tuned model shares with the base it was trained from.
SAME_ARCHITECTURE_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")


def is_full_model(weights_dir: Path) -> bool:
    """A whole model folder (full fine-tuning) rather than a PEFT adapter folder."""
    weights_dir = Path(weights_dir)
    return (weights_dir / "config.json").is_file() and not (weights_dir / "adapter_config.json").is_file()


def check_full_model_matches(weights_dir: Path, model_config: Any) -> None:
    """Fail with a clear message when a fully fine-tuned model cannot come from this base model."""
    config = json.loads((Path(weights_dir) / "config.json").read_text())
    differ = [
        f"{key} {config.get(key)!r} (base: {getattr(model_config, key, None)!r})"
        for key in SAME_ARCHITECTURE_KEYS
        if config.get(key) != getattr(model_config, key, None)
    ]
    if differ:
        raise AdapterMismatchError(
            f"{weights_dir}/config.json: {', '.join(differ)}; the model was fine-tuned from another base model. "
            "Retrain it (delete the run's results folder) or point config.model at the model it was trained from."
        )


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_adapter_matches(adapter_dir: Path, model_config: Any) -> None:
    """Fail with a clear message when an adapter cannot belong to this base model."""
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.exists():
        raise AdapterMismatchError(
            f"{adapter_dir} has no adapter_config.json: not a PEFT adapter directory. "
            "Rerun the training rule that writes it."
        )
    adapter_config = json.loads(config_path.read_text())
    if adapter_config.get("peft_type") != "LORA":
        raise AdapterMismatchError(f"{config_path}: peft_type is {adapter_config.get('peft_type')!r}, expected LORA")
    expected_layers = int(model_config.num_hidden_layers)
    layers = adapter_config.get("layers_to_transform")
    layer_list = [layers] if isinstance(layers, int) else (layers or [])
    if any(layer >= expected_layers for layer in layer_list):
        raise AdapterMismatchError(
            f"{config_path}: layers_to_transform {layers} exceeds the base model's "
            f"{expected_layers} layers; the adapter was trained on another model. Retrain it "
            "(delete the run's results folder) or point config.model at the model it was trained on."
        )


def nf4_quantization_config(compute_dtype: str) -> Any:
    """QLoRA's 4-bit base: NF4 with double quantization, computing in ``compute_dtype`` (a resolved
    :func:`lora_tradeoff.model.precision.resolve_dtype` name; training and inference alike)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(compute_dtype),
    )


def load_model_and_tokenizer(
    model_dir: Path,
    weights_dir: Path | None = None,
    device: str = "auto",
    merge_adapter: bool = True,
    quantization: str = "none",
    dtype: str = "auto",
) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` in eval mode on ``device``; the tokenizer is always ``model_dir``'s.

    ``dtype`` is the config's precision setting, resolved for ``device`` by
    :func:`lora_tradeoff.model.precision.resolve_dtype` (``auto``: bf16 on CUDA capability >= 8.0,
    float16 below, float32 on CPU); the model's ``dtype`` attribute says what ran.

    ``weights_dir`` is a run's fine-tuned weights. A whole model folder (full fine-tuning) is
    loaded in place of the base model, in the same dtype. An adapter folder is applied with PEFT
    and, when ``merge_adapter`` is true, merged into the base weights: one matmul per layer
    instead of two, with the same outputs up to float rounding.

    ``quantization="nf4"`` loads the base in 4-bit as a QLoRA run was trained (and as
    a 16 GB card can hold a 7B model); its adapter then stays unmerged, because
    merging would round the LoRA update into 4-bit weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    precision = resolve_dtype(dtype, device)  # before anything is loaded: a refusal comes at once
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    quantized = quantization == "nf4"
    if quantized:
        if not device.startswith("cuda"):
            raise ValueError(
                f"{weights_dir or model_dir}: a QLoRA (quantization: nf4) run is evaluated with its 4-bit base, "
                "which needs a CUDA GPU and bitsandbytes; this machine has none. Evaluate it on a GPU."
            )
        model = AutoModelForCausalLM.from_pretrained(
            model_dir,
            quantization_config=nf4_quantization_config(precision),
            dtype=torch_dtype(precision),
            device_map={"": torch.device(device).index or 0},
        )
    elif weights_dir is not None and is_full_model(Path(weights_dir)):
        base_config = AutoConfig.from_pretrained(model_dir)
        check_full_model_matches(Path(weights_dir), base_config)
        model = AutoModelForCausalLM.from_pretrained(weights_dir, dtype=torch_dtype(precision)).to(device)
        model.eval()
        return model, tokenizer
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(precision))
        # On the device before the adapter: PEFT then loads the adapter there and merges it there.
        # Merging r 64 on every linear layer of Qwen2.5-Coder-1.5B on 2 CPU threads took 11-14 s
        # (its rule spent 17 s loading, 3 s without an adapter); on a GPU it is a few matmuls.
        model.to(device)
    if weights_dir is not None:
        from peft import PeftModel

        adapter_dir = Path(weights_dir)
        check_adapter_matches(adapter_dir, model.config)
        try:
            model = PeftModel.from_pretrained(model, adapter_dir)
        except (RuntimeError, ValueError, KeyError) as error:
            raise AdapterMismatchError(
                f"{adapter_dir} does not fit the base model {model_dir}: {error}. "
                "Retrain the adapter on this base model or point config.model at the one it was trained on."
            ) from error
        if merge_adapter and not quantized:
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def apply_liger_kernels(model: Any) -> None:
    """Replace ``model``'s RMSNorm, rotary embedding and SwiGLU by Liger's fused Triton kernels, in place.

    Inference only (the loss kernels stay off). They make one decode step launch fewer kernels
    and run faster (bench/bench_decode_step.py), yet the whole of dev generates more slowly with
    them (bench_generation.py --liger) and some greedy answers change through rounding; the
    measured figures are in docs/speed.md and the benchmark run folders it lists.
    Raises ValueError off CUDA (Triton kernels) and ImportError without the liger-kernel package.
    """
    if model.device.type != "cuda":
        raise ValueError(f"Liger's fused kernels run on CUDA only; this model is on {model.device}")
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError as error:
        raise ImportError("Liger's fused kernels need the liger-kernel package: pip install liger-kernel") from error
    _apply_liger_kernel_to_instance(
        model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
    )


def load_from_manifest(
    manifest_path: Path,
    weights_dir: Path | None = None,
    device: str = "auto",
    quantization: str = "none",
    dtype: str = "auto",
) -> tuple[Any, Any]:
    """:func:`load_model_and_tokenizer` on the checkpoint named by the get_base_model manifest."""
    from lora_tradeoff.model.source import read_manifest

    model_dir = read_manifest(manifest_path)["model_dir"]
    return load_model_and_tokenizer(Path(model_dir), weights_dir, device, quantization=quantization, dtype=dtype)
