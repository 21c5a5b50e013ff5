"""The workflow's one precision setting (config key ``dtype``), resolved for the device a job runs on.

Every stage that computes with the model asks :func:`resolve_dtype`: inference (generate_sql,
score_mmlu: the weights' dtype), training (fine_tune: the frozen LoRA base's dtype, and the
Trainer's ``bf16``/``fp16`` autocast flags from :func:`autocast_flags`) and QLoRA's
``bnb_4bit_compute_dtype``. ``auto`` picks what the device computes natively:

* CUDA, compute capability 8.0 or newer (A100, RTX 30xx/40xx, L4, H100, H200): ``bfloat16``;
* CUDA below 8.0 (T4, V100, RTX 20xx): ``float16``. Such a card has no bf16 tensor cores;
  ``torch.cuda.is_bf16_supported()`` still answers True there (bf16 emulated through float32,
  slow, and some kernels refuse it), so the answer comes from the capability instead;
* CPU: ``float32`` (bf16 matmuls on a CPU without AMX are slow and lossy).

An explicit choice the device cannot honour fails at once with :class:`PrecisionError`, naming the
key and the fix: ``bfloat16`` below capability 8.0, ``float16`` on a CPU (accelerate autocasts and
scales float16 losses on GPUs only; on a CPU ``fp16=True`` would silently train in float32).

Training in float16 follows the usual mixed-precision recipe: the trainable weights stay float32
(PEFT keeps a LoRA adapter in float32 on a float16 base; full fine-tuning loads float32 master
weights), the passes run under float16 autocast, and the loss is scaled (``fp16=True``: a
``GradScaler``) so small gradients do not underflow float16's range.

T4 rehearsal (:func:`rehearse_t4`): on a bf16-capable GPU, behave as a 16 GB T4 would, for a rerun
of the 16 GB config on the GPUs we can reach (docs/hardware.md).
"""

from __future__ import annotations

from typing import Any, Literal

DTYPE_KEY = "dtype"
DTYPES = ("auto", "bfloat16", "float16", "float32")
Dtype = Literal["bfloat16", "float16", "float32"]
NATIVE_BF16_CAPABILITY = (8, 0)
T4_CAPABILITY = (7, 5)
T4_MEMORY_BYTES = 15 * 1024**3

# The capability a T4 rehearsal reports in place of the real card's (None: the real one).
_rehearsed_capability: tuple[int, int] | None = None


class PrecisionError(ValueError):
    """The ``dtype`` asked for cannot run on this device; the message names the key and the fix."""


def device_capability(device: str) -> tuple[int, int]:
    """The CUDA compute capability of ``device`` (``cuda`` or ``cuda:N``), or the rehearsed one."""
    import torch

    if _rehearsed_capability is not None:
        return _rehearsed_capability
    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


def resolve_dtype(setting: str, device: str) -> Dtype:
    """The dtype name the model computes in on ``device`` (``cpu``, ``cuda``, ``cuda:N``) for ``setting``.

    ``setting`` is the config's ``dtype``: ``auto``, ``bfloat16``, ``float16`` or ``float32``.
    Raises :class:`PrecisionError` for an unknown setting, ``bfloat16`` on a CUDA GPU below
    compute capability 8.0, and ``float16`` on a CPU.
    """
    if setting not in DTYPES:
        raise PrecisionError(f"{DTYPE_KEY}: {setting!r} is not one of {', '.join(DTYPES)}")
    if not device.startswith("cuda"):
        if setting == "float16":
            raise PrecisionError(
                f"{DTYPE_KEY}: float16 needs a CUDA GPU (it is the precision of GPUs without bf16: on a CPU, "
                "float16 generation and scoring are slow, and training would silently run in float32: accelerate "
                "autocasts and scales float16 losses on GPUs only); set dtype: auto or float32 here"
            )
        return "float32" if setting == "auto" else setting
    capability = device_capability(device)
    native_bf16 = capability >= NATIVE_BF16_CAPABILITY
    if setting == "auto":
        return "bfloat16" if native_bf16 else "float16"
    if setting == "bfloat16" and not native_bf16:
        raise PrecisionError(
            f"{DTYPE_KEY}: bfloat16 needs a GPU of compute capability 8.0 or newer (native bf16); this one has "
            f"{capability[0]}.{capability[1]} (a T4 is 7.5), where bf16 is emulated through float32 and some "
            "kernels refuse it. Set dtype: auto (float16 here) or float16"
        )
    return setting


def torch_dtype(name: str) -> Any:
    """``torch.bfloat16`` / ``torch.float16`` / ``torch.float32`` for a resolved dtype name."""
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def autocast_flags(dtype: str) -> dict[str, bool]:
    """The Trainer's mixed-precision flags for a resolved dtype: ``{"bf16": ..., "fp16": ...}``.

    ``fp16=True`` is float16 autocast with a loss-scaling ``GradScaler``; float32 sets neither.
    """
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16"}


def rehearse_t4(enabled: bool) -> bool:
    """Make this process behave as on a 16 GB T4 (when ``enabled`` and on CUDA); return whether it does.

    The precision choice sees compute capability 7.5 (``auto`` gives float16, ``bfloat16`` is
    refused), torch's flash and cuDNN attention kernels are turned off (a T4 has neither; SDPA then
    takes the memory-efficient or math kernel, the cascade its per-group path), and the process may
    take at most 15 GiB of the card (``torch.cuda.set_per_process_memory_fraction``), so running out
    of memory fails as it would on a T4. Call before the model is loaded. Speed is the bigger
    card's, not a T4's.
    """
    global _rehearsed_capability
    import torch

    if not enabled or not torch.cuda.is_available():
        _rehearsed_capability = None
        return False
    _rehearsed_capability = T4_CAPABILITY
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, T4_MEMORY_BYTES / total))
    return True
