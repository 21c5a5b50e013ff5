"""Supervised fine-tuning with TRL's ``SFTTrainer``: LoRA and QLoRA (a PEFT ``LoraConfig``) or full.

One run = one :class:`RunSpec` (every hyper-parameter, from ``config.training.runs[<name>]``)
trained by :func:`fine_tune` into ``results/runs/<name>/``:

* ``weights/``          the fine-tuned weights: the LoRA adapter (``method: lora``), or the whole
                        model in float32 with its tokenizer (``method: full``); written atomically,
                        so a killed run never leaves a directory that looks complete;
* ``train_log.csv``     step, epoch, loss, learning_rate, grad_norm, tokens_per_s, appended
                        while training so a crash keeps the log;
* ``hyperparams.json``  every value actually used, library versions, data and speed figures;
* ``checkpoints/``      Trainer checkpoints from which a killed run resumes (two kept for LoRA;
                        one for full fine-tuning, whose checkpoint holds the float32 weights and
                        AdamW's two moments, 12 bytes per parameter: 21 GB for Qwen2.5-1.5B);
                        deleted once the weights and ``hyperparams.json`` are written (a finished
                        run has nothing to resume).
* ``steps/weights-step<N>/`` the weights after step N for each of ``eval_steps`` (the trade-off
                        along training, :mod:`lora_tradeoff.training.curve`); kept, unlike the checkpoints,
                        and copied into ``weights-step<N>/`` by the rule export_checkpoint.

Full fine-tuning (``method: full``) is the same trainer without a PEFT config: the weights stay
float32 (the optimizer's master copy; bf16 weights alone round away updates smaller than 1/256
of a weight) and the forward and backward passes run under bf16 or float16 autocast on a GPU. Its memory is
the weights, gradients and AdamW state, 16 bytes per parameter, plus activations: 42 GB at batch
32 with gradient checkpointing for a 1.5B model. The lean path for a 24 GB card: ``optim:
adamw_8bit`` (bitsandbytes; the two moments in 8 bits, 10 instead of 16 bytes per parameter),
gradient checkpointing and a small ``per_device_batch_size`` with ``grad_accumulation``.

Loss masking. The training text of an example is ``apply_chat_template(messages)``; the
inference prompt is ``apply_chat_template(messages[:-1], add_generation_prompt=True)``. The
prompt must be a token prefix of the training text (checked per example), carries label
-100, and the loss falls on the assistant's SQL and its closing ``<|im_end|>`` only; the
newline the chat template writes after ``<|im_end|>`` stays in the text (so it is exactly
the rendered conversation) with label -100, because inference stops at ``<|im_end|>``.
We tokenize ourselves (TRL accepts ``input_ids`` + ``labels`` as is) since TRL's own
prompt-completion masking would also train that trailing newline.

Speed levers (GPU), all off or neutral by default so CPU runs work unchanged:

* the workflow's ``dtype: auto`` (:mod:`lora_tradeoff.model.precision`): a bf16 LoRA base + bf16
  autocast on CUDA capability >= 8.0, a float16 base + float16 autocast with loss scaling below
  (T4), float32 on CPU; trainable weights stay float32 throughout;
* ``packing: true``: padding-free batches: the batch's examples are concatenated into one
  row with restarting ``position_ids``; attention stays within each example (transformers
  derives the block-diagonal mask from ``position_ids``, or the varlen kernel uses the
  sequence boundaries). The batch holds the same examples as without it: only padding goes.
  With ``sdpa`` the mask is dense (quadratic in the summed batch length), so large GPU
  batches want ``attn_implementation: flex_attention`` (or ``flash_attention_2`` where
  installed);
* ``group_by_length: true``: padded batches of similar lengths (little padding, per-row
  attention), robust with ``sdpa``;
* large ``per_device_batch_size``: a 135M model is launch-bound on an H100 at small batches;
* ``torch_compile: true``;
* ``liger_kernel: true`` (CUDA, ``pip install liger-kernel``): Liger's fused Triton kernels for
  RMSNorm, RoPE, SwiGLU and the LM head + cross-entropy, fewer memory-bound passes and less
  activation memory, so larger batches fit;
* the 49k-vocab logits are never materialised: TRL 1.16 computes the loss with a fused,
  chunked LM head over the labelled positions only (always on).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_tradeoff.config_check import (
    LORA_ONLY_KEYS,
    describe,
    load_schema,
    run_problems,
    run_schema,
    with_defaults,
)
from lora_tradeoff.files import read_jsonl, write_json
from lora_tradeoff.logs import Progress
from lora_tradeoff.model.precision import autocast_flags, resolve_dtype, torch_dtype
from lora_tradeoff.overlays import DROP

ADAPTER_WEIGHTS = "adapter_model.safetensors"
# What save_pretrained writes for a whole model: one file, or an index of shards (models over 5 GB).
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
TRAINER_STATE = "trainer_state.json"
CHECKPOINT_PREFIX = "checkpoint-"
FINGERPRINT = "run_fingerprint.json"
# Checkpoints kept: two of a LoRA run (small), one of a full run (12 bytes per parameter). One is
# enough to resume: the Trainer deletes the older one only after the new one is written, and a
# half-written one is removed before resuming (prepare_resume).
SAVE_TOTAL_LIMIT = {"lora": 2, "full": 1}
LOG_COLUMNS = ("step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_s")


class TrainingConfigError(ValueError):
    """A run's configuration is invalid or cannot run on this machine; the message names the key."""


class TrainingDivergedError(RuntimeError):
    """A training step produced non-finite gradients; training stopped before the optimizer step."""


def config_key(run_name: str, key: str) -> str:
    """The config path of a run's key, as users write it: ``training.runs[<name>].<key>``."""
    return f"training.runs[{run_name}].{key}"


@dataclass(frozen=True)
class RunSpec:
    """Every hyper-parameter of one LoRA run, as validated by the config schema.

    Build it with :meth:`from_config`: the types, ranges and defaults are those of
    ``training.runs`` in ``schemas/config.schema.yaml`` (the one place for them), so the
    fields carry no defaults of their own. ``max_steps`` (when set) bounds training and
    overrides ``num_epochs``. Batch sizes count examples (also with ``packing``).
    ``max_seq_len`` counts tokens of the whole rendered conversation; longer examples are
    left out (a truncated SQL answer would teach wrong SQL) and counted in ``hyperparams.json``.
    """

    name: str
    method: str
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...] | str
    layers_to_transform: tuple[int, ...] | None
    learning_rate: float
    num_epochs: float
    max_steps: int | None
    per_device_batch_size: int
    grad_accumulation: int
    max_seq_len: int
    seed: int
    quantization: str
    warmup_ratio: float
    weight_decay: float
    optim: str
    lr_scheduler: str
    logging_steps: int
    save_steps: int
    packing: bool
    group_by_length: bool
    gradient_checkpointing: bool
    torch_compile: bool
    attn_implementation: str
    liger_kernel: bool
    eval_steps: tuple[int, ...] | None

    @classmethod
    def from_config(cls, name: str, config: dict[str, Any]) -> RunSpec:
        """Build a spec from one ``training.runs[<name>]`` mapping, validated by the schema.

        ``config`` may be the workflow's validated run (every key present) or a part of one:
        absent keys take the schema's defaults. Raises :class:`TrainingConfigError` naming
        the key for a schema violation (an unknown key too: a typo must not silently fall
        back to a default), for ``seeds`` (the workflow expands it into one run per seed,
        :mod:`lora_tradeoff.training.replicates`) and for each combination of keys that
        :func:`lora_tradeoff.config_check.run_problems` refuses.
        """
        schema = run_schema(load_schema())
        values, errors = with_defaults({**config, "name": name}, schema)
        root = f"training.runs[{name}]"
        if errors:
            raise TrainingConfigError("; ".join(describe(error, schema, root) for error in errors))
        for key, expander in (("seeds", "seeds"), ("sweep", "sweep's points")):
            if key in values:
                raise TrainingConfigError(f"{config_key(name, key)}: one RunSpec per run; expand the {expander} first")
        if DROP in values:
            raise TrainingConfigError(
                f"{config_key(name, DROP)}: an overlay's instruction, not a setting; merge the config files first "
                "(lora_tradeoff.overlays.merge_runs)"
            )
        for key in ("target_modules", "layers_to_transform", "eval_steps"):
            if isinstance(values[key], list):
                values[key] = tuple(values[key])
        # The combinations the schema cannot express: the workflow names them before any job runs
        # (config_check.check_config), this names them to a caller of the library.
        if problems := run_problems(values):
            raise TrainingConfigError("; ".join(f"{config_key(name, key)}: {message}" for key, message in problems))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (tuples as lists); a full run's LoRA-only keys as None (not used)."""
        return {
            key: None
            if self.method == "full" and key in LORA_ONLY_KEYS
            else list(value)
            if isinstance(value, tuple)
            else value
            for key, value in dataclasses.asdict(self).items()
        }


# ----------------------------------------------------------------------------- machine checks


def check_quantization_supported(spec: RunSpec) -> None:
    """Fail at once (before anything is loaded) when ``nf4`` cannot run here; no silent fallback."""
    if spec.quantization != "nf4":
        return
    import torch

    key = config_key(spec.name, "quantization")
    if not torch.cuda.is_available():
        raise TrainingConfigError(
            f"{key}: nf4 needs a CUDA GPU and bitsandbytes; this machine has no CUDA. "
            "Use quantization: none or run on a GPU."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainingConfigError(
            f"{key}: nf4 needs the bitsandbytes package, which is not installed "
            "(pip install bitsandbytes). Use quantization: none or install it."
        )


def training_device() -> str:
    """Where the Trainer will run: the first CUDA GPU when present, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_attention_supported(spec: RunSpec, device: str) -> None:
    """Flex attention has no backward pass on CPU (torch 2.13): say so before loading anything."""
    if spec.attn_implementation == "flex_attention" and device != "cuda":
        raise TrainingConfigError(
            f"{config_key(spec.name, 'attn_implementation')}: flex_attention trains on CUDA only "
            "(no backward pass on CPU); use sdpa here"
        )


def _require_cuda_package(key: str, device: str, module: str, off_cuda: str, missing: str) -> None:
    """Raise :class:`TrainingConfigError` for ``key`` off CUDA, or when ``module`` is not installed."""
    if device != "cuda":
        raise TrainingConfigError(f"{key}: {off_cuda}")
    if importlib.util.find_spec(module) is None:
        raise TrainingConfigError(f"{key}: {missing}")


def check_liger_supported(spec: RunSpec, device: str) -> None:
    """Liger's fused Triton kernels need CUDA and the liger-kernel package: say so before loading anything."""
    if spec.liger_kernel:
        _require_cuda_package(
            config_key(spec.name, "liger_kernel"),
            device,
            "liger_kernel",
            "Liger's Triton kernels run on CUDA only; set it to false here",
            "needs the liger-kernel package (pip install liger-kernel) or false",
        )


def check_optimizer_supported(spec: RunSpec, device: str) -> None:
    """bitsandbytes' 8-bit optimizers need CUDA and the package: say so before loading anything."""
    if "8bit" in spec.optim:
        _require_cuda_package(
            config_key(spec.name, "optim"),
            device,
            "bitsandbytes",
            f"{spec.optim} (bitsandbytes) runs on CUDA only; use adamw_torch_fused here",
            f"{spec.optim} needs the bitsandbytes package (pip install bitsandbytes)",
        )


# ----------------------------------------------------------------------------- data


def tokenize_sft_example(tokenizer: Any, messages: Sequence[dict[str, str]]) -> dict[str, list[int]]:
    """``input_ids`` of the rendered conversation and ``labels`` that train the assistant answer only.

    The last message is the assistant's answer. Labels are -100 on the inference prompt
    (system, user and the ``<|im_start|>assistant\\n`` header) and on anything the template
    writes after the closing eos; the answer tokens and that eos keep their ids.
    """
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"the last message must be the assistant's answer, got role {messages[-1]['role']!r}")
    prompt_ids = _chat_ids(tokenizer, list(messages[:-1]), add_generation_prompt=True)
    input_ids = _chat_ids(tokenizer, list(messages), add_generation_prompt=False)
    if input_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(
            "the tokenized inference prompt is not a prefix of the tokenized training conversation; "
            "training would see another context than inference. Check the chat template."
        )
    eos_id = tokenizer.eos_token_id
    try:
        answer_end = input_ids.index(eos_id, len(prompt_ids)) + 1
    except ValueError as error:
        raise ValueError(
            f"the chat template does not close the assistant turn with eos {tokenizer.eos_token!r}"
        ) from error
    labels = [-100] * len(prompt_ids) + input_ids[len(prompt_ids) : answer_end] + [-100] * (len(input_ids) - answer_end)
    return {"input_ids": input_ids, "labels": labels}


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=True
    )
    return list(encoded["input_ids"])


def build_train_dataset(tokenizer: Any, rows: Sequence[dict[str, Any]], max_seq_len: int) -> tuple[Any, dict[str, int]]:
    """Tokenize rows into a ``datasets.Dataset`` (``input_ids``, ``labels``) and count what was kept.

    Examples longer than ``max_seq_len`` are left out, not truncated. Returns the dataset and
    ``{"examples", "examples_too_long", "tokens", "label_tokens"}`` of the kept data (one epoch).
    """
    from datasets import Dataset

    kept = [tokenize_sft_example(tokenizer, row["messages"]) for row in rows]
    too_long = sum(len(example["input_ids"]) > max_seq_len for example in kept)
    kept = [example for example in kept if len(example["input_ids"]) <= max_seq_len]
    if not kept:
        raise ValueError(f"no training example fits max_seq_len={max_seq_len} ({too_long} are longer)")
    stats = {
        "examples": len(kept),
        "examples_too_long": too_long,
        "tokens": sum(len(example["input_ids"]) for example in kept),
        "label_tokens": sum(sum(label != -100 for label in example["labels"]) for example in kept),
    }
    return Dataset.from_list(kept), stats


# ----------------------------------------------------------------------------- checkpoints


def is_complete_checkpoint(path: Path) -> bool:
    """A Trainer checkpoint is complete when its weights (adapter or model) exist and its state parses.

    The Trainer writes ``trainer_state.json`` last, so a readable state means the weights,
    optimizer, scheduler and RNG states before it were written too.
    """
    if not any((path / name).is_file() for name in (ADAPTER_WEIGHTS, *MODEL_WEIGHTS)):
        return False
    try:
        json.loads((path / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return True


def checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix(CHECKPOINT_PREFIX))


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Checkpoint directories, oldest step first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [
        path
        for path in checkpoint_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if path.is_dir() and path.name.removeprefix(CHECKPOINT_PREFIX).isdigit()
    ]
    return sorted(found, key=checkpoint_step)


def last_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint, skipping any half-written one (a run killed while saving)."""
    complete = [path for path in list_checkpoints(checkpoint_dir) if is_complete_checkpoint(path)]
    return complete[-1] if complete else None


def run_fingerprint(spec: RunSpec, model_dir: Path, train_jsonl: Path, dtype: str = "auto") -> dict[str, Any]:
    """What a checkpoint must have been trained with to be resumed: spec, precision setting, base model, data."""
    digest = hashlib.sha256(Path(train_jsonl).read_bytes()).hexdigest()
    return {
        "spec": spec.to_dict(),
        "dtype": dtype,
        "model_dir": str(Path(model_dir).resolve()),
        "train_sha256": digest,
    }


def prepare_resume(checkpoint_dir: Path, fingerprint: dict[str, Any], progress: Callable[[str], None]) -> Path | None:
    """Return the checkpoint to resume from, after clearing what cannot be resumed.

    Checkpoints of another spec, base model or data set are deleted (resuming them would
    mix two runs); so are incomplete ones, which the Trainer's rotation would otherwise
    take for the newest.
    """
    fingerprint_path = checkpoint_dir / FINGERPRINT
    if fingerprint_path.exists() and json.loads(fingerprint_path.read_text()) != fingerprint:
        progress(f"{checkpoint_dir}: checkpoints of another configuration or data set; starting over")
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json(fingerprint_path, fingerprint)
    for path in list_checkpoints(checkpoint_dir):
        if not is_complete_checkpoint(path):
            progress(f"removing incomplete checkpoint {path.name} (the run was killed while saving it)")
            shutil.rmtree(path)
    return last_complete_checkpoint(checkpoint_dir)


# ----------------------------------------------------------------------------- model and trainer


def resolve_target_modules(model: Any, target_modules: tuple[str, ...] | str) -> list[str]:
    """Module names LoRA wraps; ``all-linear`` = every linear layer of the decoder (not the LM head).

    Expanded here rather than by PEFT because PEFT refuses ``layers_to_transform`` with the
    string form, and the explicit list is what hyperparams.json should record.
    """
    if target_modules != "all-linear":
        return list(target_modules)
    import torch

    output_embeddings = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not output_embeddings
        }
    )


def build_lora_config(spec: RunSpec, target_modules: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=target_modules,
        layers_to_transform=list(spec.layers_to_transform) if spec.layers_to_transform is not None else None,
        layers_pattern="layers" if spec.layers_to_transform is not None else None,
        bias="none",
    )


def build_sft_config(spec: RunSpec, checkpoint_dir: Path, dtype: str = "float32", device: str = "cpu") -> Any:
    """The TRL/Trainer arguments of a run on ``device`` computing in the resolved ``dtype``
    (``bf16``/``fp16`` autocast from :func:`lora_tradeoff.model.precision.autocast_flags`; everything not
    set here is the library default)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(checkpoint_dir),
        seed=spec.seed,
        data_seed=spec.seed,
        max_steps=spec.max_steps if spec.max_steps is not None else -1,
        num_train_epochs=spec.num_epochs,
        per_device_train_batch_size=spec.per_device_batch_size,
        gradient_accumulation_steps=spec.grad_accumulation,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.lr_scheduler,
        warmup_steps=spec.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=spec.weight_decay,
        logging_steps=spec.logging_steps,
        save_strategy="steps",
        save_steps=spec.save_steps,
        save_total_limit=SAVE_TOTAL_LIMIT[spec.method],
        optim=spec.optim,
        **autocast_flags(dtype),
        use_cpu=device != "cuda",  # transformers takes bf16 autocast on a CPU only when told it is one
        gradient_checkpointing=spec.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if spec.gradient_checkpointing else None,
        torch_compile=spec.torch_compile,
        use_liger_kernel=spec.liger_kernel,
        # Sequences are tokenized and length-filtered by build_train_dataset; TRL must not
        # truncate again (and refuses max_length with padding-free batches).
        max_length=None,
        packing=False,
        padding_free=spec.packing,
        train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        # Pinned host memory speeds copies to a GPU; without one, torch warns that it is unused.
        dataloader_pin_memory=device == "cuda",
    )


def base_weights_dtype(spec: RunSpec, dtype: str) -> str:
    """The dtype the base model's weights load in for training with the resolved ``dtype``.

    A LoRA base is frozen, so it loads in ``dtype`` (bf16 or float16 on a GPU; PEFT keeps the
    adapter, the trainable part, in float32). QLoRA's non-quantized weights load in ``dtype`` too
    (``prepare_model_for_kbit_training`` then casts them to float32). Full fine-tuning keeps float32
    weights whatever the autocast: the weights are the optimizer's master copy, and in bf16 (8 bits
    of mantissa) an update smaller than 1/256 of a weight would be rounded away, as most are at
    learning rates near 1e-5; float16 master weights would also break loss scaling (the Trainer
    refuses to unscale float16 gradients).
    """
    return "float32" if spec.method == "full" else dtype


def load_base_model(spec: RunSpec, model_dir: Path, dtype: str = "float32") -> Any:
    """The base model for training in the resolved ``dtype`` (:func:`base_weights_dtype`); 4-bit NF4
    computing in ``dtype`` for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"attn_implementation": spec.attn_implementation}
    if spec.quantization == "nf4":
        from lora_tradeoff.model.loading import nf4_quantization_config

        kwargs["quantization_config"] = nf4_quantization_config(dtype)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    kwargs["dtype"] = torch_dtype(base_weights_dtype(spec, dtype))
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if spec.quantization == "nf4":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    return model


def build_trainer(
    spec: RunSpec,
    model_dir: Path,
    rows: Sequence[dict[str, Any]],
    checkpoint_dir: Path,
    callbacks: Sequence[Any] = (),
    dtype: str = "auto",
) -> tuple[Any, dict[str, Any]]:
    """An ``SFTTrainer`` ready to train ``spec`` on ``rows``, and facts about it for the record.

    ``dtype`` is the workflow's precision setting, resolved for the training device by
    :func:`lora_tradeoff.model.precision.resolve_dtype` (a refusal raises
    :class:`~lora_tradeoff.model.precision.PrecisionError` before anything is loaded).
    The facts: device, the resolved dtype, the weights' dtype, bf16/fp16 autocast, resolved target
    modules, data statistics.
    """
    from transformers import AutoTokenizer, PrinterCallback
    from trl import SFTTrainer

    check_quantization_supported(spec)
    device = training_device()
    check_attention_supported(spec, device)
    check_liger_supported(spec, device)
    precision = resolve_dtype(dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset, data_stats = build_train_dataset(tokenizer, rows, spec.max_seq_len)
    check_optimizer_supported(spec, device)
    model = load_base_model(spec, model_dir, precision)
    target_modules = resolve_target_modules(model, spec.target_modules) if spec.method == "lora" else []
    trainer = SFTTrainer(
        model=model,
        args=build_sft_config(spec, checkpoint_dir, precision, device),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=build_lora_config(spec, target_modules) if spec.method == "lora" else None,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # progress goes through TrainLogCallback instead
    if spec.quantization == "nf4" and precision != "bfloat16":
        # TRL casts a quantized model's adapter to bf16 (the QLoRA paper's choice, with bf16 autocast).
        # Under float16 autocast the trainable weights stay float32: loss scaling cannot unscale
        # half-precision gradients, and a T4 has no bf16. The optimizer is built later, in train().
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    trainer.add_callback(FiniteGradientGuard(spec.name, checkpoint_dir))
    facts = {
        "device": device,
        "device_name": _device_name(device),
        "dtype": precision,
        "base_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "trainable_dtype": _trainable_dtype(trainer.model),
        **autocast_flags(precision),
        "target_modules": target_modules,
        "data": data_stats,
        "cudnn_attention": use_safe_attention_kernels(spec, device),
    }
    return trainer, facts


def _trainable_dtype(model: Any) -> str | None:
    """The dtype of the trainable weights (float32 under every autocast), None when nothing trains."""
    dtypes = sorted({str(param.dtype).removeprefix("torch.") for param in model.parameters() if param.requires_grad})
    return ",".join(dtypes) or None


def use_safe_attention_kernels(spec: RunSpec, device: str) -> bool | None:
    """Turn off cuDNN's SDPA kernel for training on CUDA; return whether it stays on (None off CUDA).

    PyTorch's cuDNN attention backward, the default SDPA kernel on H100/H200 since torch 2.11,
    returns NaN gradients when a mask is passed (every padded batch), the padded length is 64
    more than a multiple of 128 and a row's log-sum-exp is below ln(FLT_MAX) ~ -88.7, which
    Qwen2.5's "massive activation" heads reach (pytorch/pytorch#196678, huggingface/trl#7181).
    One such batch turned every LoRA weight into NaN in a full Spider epoch of
    Qwen2.5-Coder-1.5B on an H200 (torch 2.11, cuDNN 9.19); ``bench/check_cudnn_sdpa_nan.py``
    shows the kernel's NaNs at lengths 704, 832 and 1088 and none with it off. Without it, SDPA
    takes the flash or memory-efficient kernel (same results, no NaN).
    """
    if device != "cuda":
        return None
    if spec.attn_implementation != "sdpa":
        return False  # eager, flex and flash-attention never call cuDNN's SDPA kernel
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)
    return False


class _Hooks:
    """transformers.TrainerCallback by duck typing (the Trainer calls hooks by name): a hook a
    callback does not define is a no-op."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class FiniteGradientGuard(_Hooks):
    """Stops training at the first step whose gradients are not all finite, before the optimizer step.

    The Trainer's own ``logging_nan_inf_filter`` hides a NaN loss in the logged average and the
    optimizer then writes NaN into every adapter weight: the run "finishes" with an adapter that
    generates garbage. Here the step is refused and the job fails with
    :class:`TrainingDivergedError`, naming the run and the step; earlier checkpoints stay for a
    rerun (which resumes from the last one) or for diagnosis.
    """

    def __init__(self, run_name: str, checkpoint_dir: Path) -> None:
        self.run_name = run_name
        self.checkpoint_dir = Path(checkpoint_dir)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        import torch

        grads = [param.grad for param in model.parameters() if param.grad is not None]
        if not grads or bool(torch.stack([grad.isfinite().all() for grad in grads]).all()):
            return
        last = last_complete_checkpoint(self.checkpoint_dir)
        kept = f"checkpoints up to {last.name} are kept in {self.checkpoint_dir}" if last else "no checkpoint yet"
        raise TrainingDivergedError(
            f"{config_key(self.run_name, 'learning_rate')}: non-finite gradients at step {state.global_step + 1}; "
            f"the optimizer step was not taken and training stopped ({kept}). Lower the learning rate, or set "
            f"{config_key(self.run_name, 'attn_implementation')}: eager to rule out the attention kernel."
        )


class StepWeightsCallback(_Hooks):
    """Saves the weights after each optimizer step listed in ``steps`` to :func:`step_weights_dir` of ``out_dir``.

    The adapter of a LoRA run, the whole model of a full one. Written atomically
    (:func:`save_weights_atomic`), so a run killed while saving leaves no
    folder that looks complete. A step beyond the run's last step is refused before training
    starts (:class:`TrainingConfigError` naming ``eval_steps``).
    """

    def __init__(self, run_name: str, steps: Sequence[int], out_dir: Path) -> None:
        self.run_name = run_name
        self.steps = set(steps)
        self.out_dir = Path(out_dir)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        beyond = sorted(step for step in self.steps if step > state.max_steps)
        if beyond:
            raise TrainingConfigError(
                f"{config_key(self.run_name, 'eval_steps')}: step(s) {beyond} lie beyond the run's last step "
                f"{state.max_steps}; list steps up to {state.max_steps} or train longer"
            )

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step in self.steps:
            save_weights_atomic(model, step_weights_dir(self.out_dir, state.global_step))


def step_weights_dir(out_dir: Path, step: int) -> Path:
    """Where :func:`fine_tune` keeps the weights after ``step`` (the run folder's ``steps/``)."""
    return Path(out_dir) / "steps" / f"weights-step{step}"


def export_step_weights(out_dir: Path, step: int, dest: Path) -> None:
    """Copy the weights kept after ``step`` to ``dest`` (rule export_checkpoint).

    Raises FileNotFoundError naming the folder and the fix when training did not keep them.
    """
    source = step_weights_dir(out_dir, step)
    if not any((source / name).is_file() for name in ("adapter_config.json", "config.json")):
        raise FileNotFoundError(
            f"{source}: no weights kept after step {step}; the run was trained without this step in "
            f"eval_steps: rerun it (snakemake --forcerun fine_tune)"
        )
    replace_dir_atomic(Path(dest), lambda tmp: shutil.copytree(source, tmp))


def _device_name(device: str) -> str:
    import platform

    import torch

    return torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- logging


class TrainLogCallback(_Hooks):
    """Appends each logged step to ``train_log.csv`` (flushed, so a crash keeps it) and reports progress.

    ``tokens_per_s`` counts real (non-padding) tokens since the previous log line, from
    TRL's running ``num_tokens`` (attention-mask sum, or flattened length when padding-free).
    """

    def __init__(self, log_path: Path, run_name: str, progress: Callable[[str], None]) -> None:
        self.log_path = log_path
        self.run_name = run_name
        self.progress = progress
        self.steps: Progress | None = None
        self.last_time = 0.0
        self.last_tokens = 0
        self.tokens = 0

    # transformers.TrainerCallback hooks (duck-typed: the Trainer calls them by name)
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps = Progress(state.max_steps, "steps", f"[{self.run_name}] trained", done=state.global_step)
        self.last_time = self.steps.started
        self.progress(f"[{self.run_name}] training steps {state.global_step + 1}..{state.max_steps}")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        self.tokens = int(logs.get("num_tokens", self.tokens))
        if "loss" not in logs:
            return  # the end-of-training summary, not a step
        now = time.perf_counter()
        tokens_per_s = (self.tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_tokens = now, self.tokens
        row = {
            "step": state.global_step,
            "epoch": logs.get("epoch", state.epoch),
            "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "tokens_per_s": round(tokens_per_s, 1),
        }
        append_log_row(self.log_path, row)
        assert self.steps is not None  # on_train_begin came first
        self.progress(self.steps.update(state.global_step, f"loss {logs['loss']:.4f}, {tokens_per_s:,.0f} tokens/s"))


def append_log_row(log_path: Path, row: dict[str, Any]) -> None:
    new_file = not log_path.exists()
    with open(log_path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def truncate_log(log_path: Path, last_step: int) -> None:
    """Keep the log rows up to ``last_step`` (the resumed checkpoint); later steps are redone."""
    if not log_path.exists():
        return
    with open(log_path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= last_step]
    log_path.unlink()
    for row in rows:
        append_log_row(log_path, row)


def read_train_log(log_path: Path) -> list[dict[str, float]]:
    """``train_log.csv`` as dicts of floats (empty cells as NaN)."""
    with open(log_path, newline="", encoding="utf-8") as handle:
        return [
            {key: float(value) if value else math.nan for key, value in row.items()} for row in csv.DictReader(handle)
        ]


# ----------------------------------------------------------------------------- outputs


def replace_dir_atomic(directory: Path, write: Callable[[Path], Any]) -> None:
    """``write`` a folder under a temporary name beside ``directory`` and rename it into place, replacing an
    old one, so a process killed mid-way never leaves a folder that looks complete."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def save_weights_atomic(model: Any, weights_dir: Path, tokenizer: Any = None) -> None:
    """What ``model.save_pretrained`` writes, into ``weights_dir`` (:func:`replace_dir_atomic`): a PEFT
    model's adapter, a whole model's config and weights; with ``tokenizer``, its files too."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)

    replace_dir_atomic(weights_dir, write)


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import peft
    import torch
    import transformers
    import trl

    return {module.__name__: module.__version__ for module in (torch, transformers, peft, trl, accelerate, datasets)}


def recorded_sft_args(args: Any) -> dict[str, Any]:
    """The Trainer arguments that shape the result or the speed, as actually resolved."""
    keys = (
        "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "optim", "adam_beta1", "adam_beta2",
        "adam_epsilon", "max_grad_norm", "per_device_train_batch_size", "gradient_accumulation_steps",
        "num_train_epochs", "max_steps", "seed", "data_seed", "bf16", "fp16", "gradient_checkpointing",
        "torch_compile", "padding_free", "packing", "train_sampling_strategy", "loss_type", "completion_only_loss",
        "assistant_only_loss", "logging_steps", "save_steps", "save_total_limit",
    )  # fmt: skip
    return {key: getattr(args, key) for key in keys}


def fine_tune(
    spec: RunSpec,
    model_dir: Path,
    train_jsonl: Path,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
    dtype: str = "auto",
) -> dict[str, Any]:
    """Train ``spec`` on ``train_jsonl`` into ``out_dir``; return what hyperparams.json records.

    ``dtype`` is the workflow's precision setting (``auto``, ``bfloat16``, ``float16``,
    ``float32``; :mod:`lora_tradeoff.model.precision`); hyperparams.json records it and what it resolved to.

    Resumes from the newest complete checkpoint in ``out_dir/checkpoints`` when the same
    spec, base model and data left one (e.g. a run killed mid-way). Errors propagate; the
    rows of ``train_log.csv`` written so far stay.
    """
    progress = progress or (lambda message: None)
    check_quantization_supported(spec)  # before anything slow is loaded
    resolve_dtype(dtype, training_device())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = out_dir / "checkpoints"
    log_path = out_dir / "train_log.csv"
    fingerprint = run_fingerprint(spec, model_dir, train_jsonl, dtype)
    resume_from = prepare_resume(checkpoint_dir, fingerprint, progress)
    if resume_from is None:
        log_path.unlink(missing_ok=True)
        shutil.rmtree(out_dir / "steps", ignore_errors=True)  # adapters of an earlier training
    else:
        truncate_log(log_path, checkpoint_step(resume_from))
        progress(f"[{spec.name}] resuming from {resume_from.name}")

    log_callback = TrainLogCallback(log_path, spec.name, progress)
    started = time.perf_counter()
    callbacks: list[Any] = [log_callback]
    if spec.eval_steps:
        callbacks.append(StepWeightsCallback(spec.name, spec.eval_steps, out_dir))
    trainer, facts = build_trainer(spec, model_dir, read_jsonl(train_jsonl), checkpoint_dir, callbacks, dtype)
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    # A whole model folder carries its tokenizer, so it loads on its own; an adapter needs the base's.
    tokenizer = trainer.processing_class if spec.method == "full" else None
    save_weights_atomic(trainer.model, out_dir / "weights", tokenizer)
    missing = [step for step in spec.eval_steps or () if not step_weights_dir(out_dir, step).is_dir()]
    if missing:
        raise RuntimeError(f"[{spec.name}] no weights were kept after eval_steps {missing} (see the log)")
    wall_s = time.perf_counter() - started

    trainable, total = count_parameters(trainer.model)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    train_runtime = result.metrics.get("train_runtime", math.nan)
    record = {
        "run": spec.name,
        "spec": spec.to_dict(),
        "method": spec.method,
        "lora_config": _jsonable(trainer.model.peft_config["default"].to_dict()) if spec.method == "lora" else None,
        "sft_args": recorded_sft_args(trainer.args),
        "effective_batch_size": spec.per_device_batch_size * spec.grad_accumulation,
        "versions": library_versions(),
        "seed": spec.seed,
        "dtype_setting": dtype,
        **{
            key: facts[key]
            for key in (
                "device",
                "device_name",
                "dtype",
                "base_dtype",
                "trainable_dtype",
                "bf16",
                "fp16",
                "target_modules",
                "cudnn_attention",
            )
        },  # fmt: skip
        "base_model_dir": str(model_dir),
        "train_jsonl": str(train_jsonl),
        "train_sha256": fingerprint["train_sha256"],
        "train_examples": facts["data"]["examples"],
        "train_examples_too_long": facts["data"]["examples_too_long"],
        "train_tokens_per_epoch": facts["data"]["tokens"],
        "train_label_tokens_per_epoch": facts["data"]["label_tokens"],
        "tokens_trained_this_process": log_callback.tokens,
        "global_steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_share": trainable / total,
        "resumed": resume_from is not None,
        "resumed_from_step": checkpoint_step(resume_from) if resume_from else None,
        "wall_time_s": round(wall_s, 2),
        "train_runtime_s": round(train_runtime, 2),
        "final_loss": losses[-1] if losses else None,
        "mean_train_loss_this_process": result.metrics.get("train_loss"),
        "tokens_per_s": round(log_callback.tokens / train_runtime, 1) if train_runtime > 0 else None,
        "peak_gpu_memory_gb": _peak_gpu_memory_gb(),
        "memory_path": memory_path(trainer.model, spec),
    }
    write_json(out_dir / "hyperparams.json", record)
    # Every output is complete: checkpoints served only to resume an unfinished run.
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    progress(f"[{spec.name}] done: {trainer.state.global_step} steps, final loss {record['final_loss']}")
    return record


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters: PEFT's count for an adapter (4-bit weights counted unpacked),
    else the parameters with and without ``requires_grad``."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def memory_path(model: Any, spec: RunSpec) -> dict[str, Any]:
    """What kept training memory down in this run, read off the trained model (not the config).

    * ``lm_head_loss``: ``"trl_fused_chunked"`` when TRL's fused LM head computed the loss (the
      log-probabilities of the labelled positions, projected in tiles: the ``(tokens, vocab)``
      logits, 12 GB per 20k tokens over Qwen2.5's 151,936-token vocabulary in float32, are never
      materialised); ``"full_logits"`` otherwise. TRL 1.16 always adds it and refuses Liger's own
      fused linear cross-entropy, which would replace it.
    * ``gradient_checkpointing``: activations recomputed in the backward pass (about a third more
      compute, a fraction of the activation memory).
    * ``liger_layer_kernels``: modules or forwards replaced by Liger's Triton kernels (RMSNorm,
      RoPE, SwiGLU), counted.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    # Under bf16, accelerate wraps a plain model's forward in autocast and keeps the one it wrapped
    # as `_original_forward` (a PEFT model's wrapper sits on the PeftModel, above the base model).
    forward = getattr(base, "_original_forward", base.forward)
    forward = getattr(forward, "__func__", forward)
    liger = sum(
        1
        for module in base.modules()
        if "liger" in type(module).__module__.lower()
        or "liger" in getattr(getattr(module.forward, "__func__", module.forward), "__module__", "").lower()
    )
    return {
        "lm_head_loss": "trl_fused_chunked" if _code_name(forward) == "_fused_forward" else "full_logits",
        "gradient_checkpointing": bool(getattr(base, "is_gradient_checkpointing", spec.gradient_checkpointing)),
        "liger_layer_kernels": liger,
    }


def _code_name(function: Any) -> str:
    """The name a function was defined with (``functools.wraps`` copies the wrapped one's ``__name__``)."""
    code = getattr(function, "__code__", None)
    return code.co_name if code is not None else ""


def _peak_gpu_memory_gb() -> float | None:
    """Peak memory torch allocated on the GPU in this process (weights, activations, optimizer), or None on CPU."""
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _jsonable(value: Any) -> Any:
    """PEFT configs hold sets and enums; make them plain JSON (sets sorted for stable diffs)."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(item) for item in value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
