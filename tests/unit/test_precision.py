"""The workflow's precision setting (``dtype``) resolved on every kind of device.

CUDA devices are mocked (this machine has none): ``torch.cuda.get_device_capability`` answers
7.5 (a T4) or 8.0 (an A100) and ``torch.cuda.is_bf16_supported`` answers True, as it does on a T4
through emulation, so a resolution that asked it instead of the capability would fail here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lora_tradeoff.inference.cascade import varlen_flash_available
from lora_tradeoff.model import precision
from lora_tradeoff.model.loading import load_model_and_tokenizer, nf4_quantization_config
from lora_tradeoff.model.precision import PrecisionError, autocast_flags, rehearse_t4, resolve_dtype, torch_dtype
from lora_tradeoff.training.run import RunSpec, base_weights_dtype, build_sft_config


@pytest.fixture
def cuda_capability(monkeypatch: pytest.MonkeyPatch):
    """Set the mocked CUDA card's compute capability: ``cuda_capability(7, 5)``."""

    def set_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)

    return set_capability


def test_cpu_resolves_auto_to_float32_and_takes_bfloat16_and_float32():
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("float32", "cpu") == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"


def test_cpu_refuses_float16_naming_the_key_and_the_fix():
    with pytest.raises(PrecisionError, match=r"^dtype: float16 needs a CUDA GPU.*set dtype: auto or float32"):
        resolve_dtype("float16", "cpu")


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_below_8_0_resolves_auto_to_float16_although_torch_says_bf16_is_supported(cuda_capability, device):
    cuda_capability(7, 5)
    assert torch.cuda.is_bf16_supported()  # the emulation answer that must not decide
    assert resolve_dtype("auto", device) == "float16"
    assert resolve_dtype("float16", device) == "float16"
    assert resolve_dtype("float32", device) == "float32"


def test_cuda_below_8_0_refuses_bfloat16_naming_the_key_the_capability_and_the_fix(cuda_capability):
    cuda_capability(7, 5)
    with pytest.raises(PrecisionError, match=r"^dtype: bfloat16 needs .* 8\.0 .* has 7\.5 .*Set dtype: auto"):
        resolve_dtype("bfloat16", "cuda")


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (9, 0)])
def test_cuda_8_0_and_newer_resolves_auto_to_bfloat16_and_takes_every_choice(cuda_capability, capability):
    cuda_capability(*capability)
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    for choice in ("bfloat16", "float16", "float32"):
        assert resolve_dtype(choice, "cuda") == choice


def test_unknown_setting_is_refused():
    with pytest.raises(PrecisionError, match="dtype: 'fp16' is not one of auto, bfloat16, float16, float32"):
        resolve_dtype("fp16", "cpu")


def test_schema_offers_exactly_the_settings_resolve_dtype_takes():
    from lora_tradeoff.config_check import load_schema

    prop = load_schema()["properties"]["dtype"]
    assert tuple(prop["enum"]) == precision.DTYPES and prop["default"] == "auto"


def test_trainer_flags_autocast_and_loss_scaling_per_dtype():
    assert autocast_flags("bfloat16") == {"bf16": True, "fp16": False}
    assert autocast_flags("float16") == {"bf16": False, "fp16": True}
    assert autocast_flags("float32") == {"bf16": False, "fp16": False}
    args = build_sft_config(RunSpec.from_config("t4", {}), Path("unused"), "float16", "cuda")
    assert (args.fp16, args.bf16) == (True, False)


def test_frozen_lora_base_takes_the_dtype_and_full_fine_tuning_keeps_float32_master_weights():
    lora, full = RunSpec.from_config("lora", {}), RunSpec.from_config("full", {"method": "full"})
    assert [base_weights_dtype(lora, name) for name in ("bfloat16", "float16", "float32")] == [
        "bfloat16",
        "float16",
        "float32",
    ]
    assert {base_weights_dtype(full, name) for name in ("bfloat16", "float16", "float32")} == {"float32"}


@pytest.mark.parametrize("name", ["bfloat16", "float16", "float32"])
def test_qlora_computes_in_the_resolved_dtype(name):
    assert nf4_quantization_config(name).bnb_4bit_compute_dtype == torch_dtype(name)


def _query_like(dtype: torch.dtype = torch.float16) -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cuda"), dtype=dtype, shape=(1, 12, 5, 128))


def test_cascade_takes_the_varlen_flash_kernel_only_from_capability_8_0(cuda_capability):
    cuda_capability(8, 0)
    assert varlen_flash_available(_query_like())
    assert not varlen_flash_available(_query_like(torch.float32))
    cuda_capability(7, 5)
    assert not varlen_flash_available(_query_like())


@pytest.fixture
def rehearsal(monkeypatch: pytest.MonkeyPatch, cuda_capability):
    """A mocked 80 GB CUDA card of capability 9.0; the rehearsal and torch's SDPA flags are undone after."""
    cuda_capability(9, 0)
    fractions: list[float] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * 1024**3))
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda fraction, device=None: fractions.append(fraction)
    )
    flags = torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.cudnn_sdp_enabled()
    yield fractions
    rehearse_t4(False)
    torch.backends.cuda.enable_flash_sdp(flags[0])
    torch.backends.cuda.enable_cudnn_sdp(flags[1])


def test_t4_rehearsal_makes_an_h100_choose_and_refuse_as_a_t4_would(rehearsal):
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    assert rehearse_t4(True)
    assert resolve_dtype("auto", "cuda") == "float16"
    with pytest.raises(PrecisionError, match="has 7.5"):
        resolve_dtype("bfloat16", "cuda")
    assert not torch.backends.cuda.flash_sdp_enabled() and not torch.backends.cuda.cudnn_sdp_enabled()
    assert not varlen_flash_available(_query_like())
    assert rehearsal == [pytest.approx(15 / 80)]
    assert not rehearse_t4(False)
    assert resolve_dtype("auto", "cuda") == "bfloat16"


def test_t4_rehearsal_does_nothing_without_cuda():
    assert not torch.cuda.is_available()
    assert not rehearse_t4(True)
    assert resolve_dtype("auto", "cpu") == "float32"


def test_inference_loads_the_resolved_dtype_and_refuses_float16_on_cpu_before_loading(base_model_dir, tmp_path):
    model, _ = load_model_and_tokenizer(base_model_dir, device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    model, _ = load_model_and_tokenizer(base_model_dir, device="cpu")
    assert model.dtype == torch.float32
    # A folder with no model: the refusal must come before anything is read from it.
    with pytest.raises(PrecisionError, match="dtype: float16"):
        load_model_and_tokenizer(tmp_path, device="cpu", dtype="float16")


def test_report_says_which_precision_ran():
    from lora_tradeoff.report.summary import training_precision

    t4_lora = {
        "dtype_setting": "auto",
        "dtype": "float16",
        "base_dtype": "float16",
        "trainable_dtype": "float32",
        "bf16": False,
        "fp16": True,
    }
    assert training_precision(t4_lora) == (
        "float16 weights, float32 trainable, fp16 autocast + loss scaling (dtype auto: float16)"
    )
    h100_full = {"dtype_setting": "bfloat16", "dtype": "bfloat16", "base_dtype": "float32", "bf16": True}
    assert training_precision({**h100_full, "trainable_dtype": "float32"}) == "float32 weights, bf16 autocast"
    # A hyperparams.json written before the dtype setting existed.
    assert training_precision({"base_dtype": "bfloat16", "bf16": True}) == "bfloat16 weights, bf16 autocast"
