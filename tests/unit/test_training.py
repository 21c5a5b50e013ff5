"""LoRA training on the real model and real Spider train rows, a few steps each.

To stay within minutes on 2 CPU cores the runs adapt only the top three decoder layers
(so the backward pass stops there) and train on the shortest real examples.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_tradeoff.config_check import load_schema, run_schema
from lora_tradeoff.files import write_jsonl
from lora_tradeoff.spider.prompts import SchemaLookup, format_items
from lora_tradeoff.training.run import (
    RunSpec,
    TrainingConfigError,
    build_trainer,
    export_step_weights,
    fine_tune,
    is_complete_checkpoint,
    read_train_log,
    step_weights_dir,
    tokenize_sft_example,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "Translate the question into one SQLite query. Answer with SQL only."
USER_TEMPLATE = "Schema:\n{schema}\n\nQuestion: {question}"
# lr 5e-3 and a fixed batch make the loss fall visibly within a handful of steps.
TEST_RUN = {
    "r": 8,
    "alpha": 16,
    "dropout": 0.0,
    "target_modules": "all-linear",
    "layers_to_transform": [27, 28, 29],
    "learning_rate": 5e-3,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "per_device_batch_size": 2,
    "max_seq_len": 256,
    "logging_steps": 1,
    "seed": 7,
}


@pytest.fixture(scope="module")
def tokenizer(base_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_dir)


@pytest.fixture(scope="module")
def sft_rows(spider_dir: Path, tokenizer) -> list[dict]:
    """The four shortest of the first 200 real Spider train questions, as SFT rows."""
    train = json.loads((spider_dir / "train_spider.json").read_text())[:200]
    items = [{"id": f"train-{index:04d}", **item} for index, item in enumerate(train)]
    schemas = SchemaLookup(json.loads((spider_dir / "tables.json").read_text()), {})
    rows, _ = format_items(
        items, schemas, SYSTEM, USER_TEMPLATE, lambda messages: 0, max_seq_len=10**6, with_answer=True
    )
    rows.sort(key=lambda row: len(tokenize_sft_example(tokenizer, row["messages"])["input_ids"]))
    return rows[:4]


@pytest.fixture(scope="module")
def train_jsonl(tmp_path_factory, sft_rows: list[dict]) -> Path:
    """Two rows = one batch of two, the same every step: a tiny repeated set."""
    path = tmp_path_factory.mktemp("data") / "sft_train.jsonl"
    write_jsonl(sft_rows[:2], path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_model_dir: Path, train_jsonl: Path) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("runs") / "tiny"
    spec = RunSpec.from_config("tiny", {**TEST_RUN, "max_steps": 6, "save_steps": 100, "eval_steps": [2, 4]})
    messages: list[str] = []
    record = fine_tune(spec, base_model_dir, train_jsonl, out_dir, progress=messages.append)
    progress = [message for message in messages if "trained" in message]
    assert [message.split(",")[0] for message in progress][-1] == "[tiny] trained 6/6 steps"
    assert all(re.search(r"steps/s, ETA \d+:\d\d:\d\d, loss [\d.]+, [\d,]+ tokens/s$", line) for line in progress)
    return out_dir, record


def test_run_spec_reads_config_and_names_bad_keys():
    spec = RunSpec.from_config("a", {"name": "a", "target_modules": ["q_proj"], "layers_to_transform": [1, 2]})
    assert spec.target_modules == ("q_proj",) and spec.layers_to_transform == (1, 2)
    assert spec.to_dict()["target_modules"] == ["q_proj"]
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[a\]: unknown key\(s\) lerning_rate; allowed keys"):
        RunSpec.from_config("a", {"lerning_rate": 1e-3})
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[a\]\.quantization"):
        RunSpec.from_config("a", {"quantization": "int8"})
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[a\]\.target_modules"):
        RunSpec.from_config("a", {"target_modules": "all"})
    with pytest.raises(TrainingConfigError, match=r"runs\[a\]\.r: 16\.0 has the wrong type; expected integer"):
        RunSpec.from_config("a", {"r": 16.0})  # a float rank would fail inside peft


def test_run_spec_takes_its_fields_and_defaults_from_the_schema():
    schema = run_schema(load_schema())
    not_settings = {"seeds", "sweep", "drop"}  # expanded or read before a run exists
    assert {field.name for field in dataclasses.fields(RunSpec)} == set(schema["properties"]) - not_settings
    spec = RunSpec.from_config("plain", {})
    for key, value in spec.to_dict().items():
        assert value == schema["properties"][key].get("default", "plain"), key
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[a\]\.group_by_length: is for padded batches"):
        RunSpec.from_config("a", {"packing": True, "group_by_length": True})
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[a\]\.seeds: one RunSpec per run; expand the seeds"):
        RunSpec.from_config("a", {"seeds": [1, 2]})
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[a\]\.sweep: one RunSpec per run; expand the sweep"):
        RunSpec.from_config("a", {"sweep": {"r": [8, 16]}})
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[a\]\.drop: an overlay's instruction"):
        RunSpec.from_config("a", {"drop": True})


def test_nf4_without_cuda_fails_at_once_naming_the_key(tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    spec = RunSpec.from_config("qlora", {"quantization": "nf4"})
    with pytest.raises(TrainingConfigError) as error:
        # Paths that do not exist: nothing may be read before the check.
        fine_tune(spec, tmp_path / "no-model", tmp_path / "no-data.jsonl", tmp_path / "out")
    assert "training.runs[qlora].quantization: nf4 needs a CUDA GPU" in str(error.value)
    assert "no CUDA" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_flex_attention_without_cuda_fails_before_loading(tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    spec = RunSpec.from_config("flex", {"packing": True, "attn_implementation": "flex_attention"})
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[flex\]\.attn_implementation: .*CUDA only"):
        build_trainer(spec, tmp_path / "no-model", [], tmp_path / "checkpoints")


def test_liger_kernel_without_cuda_fails_before_loading(tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    spec = RunSpec.from_config("liger", {"liger_kernel": True})
    with pytest.raises(TrainingConfigError, match=r"training\.runs\[liger\]\.liger_kernel: .*CUDA only"):
        build_trainer(spec, tmp_path / "no-model", [], tmp_path / "checkpoints")


def test_collated_batch_trains_only_the_sql_and_its_end_token(tmp_path, base_model_dir, tokenizer, sft_rows):
    """The labels the trainer sees: -100 on the inference prompt, ids on SQL + <|im_end|>."""
    import torch

    spec = RunSpec.from_config("mask", {**TEST_RUN, "max_steps": 1})
    trainer, facts = build_trainer(spec, base_model_dir, sft_rows, tmp_path / "checkpoints")
    assert facts["target_modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    batch = trainer.data_collator([trainer.train_dataset[index] for index in range(2)])
    assert "attention_mask" in batch
    for row, input_ids, labels, mask in zip(
        sft_rows[:2], batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, return_dict=True)
        prompt_ids = list(prompt["input_ids"])
        assert input_ids[: len(prompt_ids)].tolist() == prompt_ids  # training context == inference prompt
        assert (labels[: len(prompt_ids)] == -100).all()
        trained = labels[labels != -100]
        assert tokenizer.decode(trained) == row["query"] + "<|im_end|>"
        assert trained[-1].item() == tokenizer.eos_token_id == 2
        # the text is exactly the rendered conversation; the newline after <|im_end|> is not trained
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        assert tokenizer.decode(input_ids[mask.bool()]) == full
        assert torch.equal(labels[mask == 0], torch.full_like(labels[mask == 0], -100))


def test_padding_free_batch_gives_the_padded_loss(tmp_path, base_model_dir, sft_rows):
    """Packing (padding-free) keeps each example's attention to itself: same loss as padding."""
    import torch

    losses = {}
    for packing in (False, True):
        spec = RunSpec.from_config("pack", {**TEST_RUN, "max_steps": 1, "packing": packing})
        trainer, _ = build_trainer(spec, base_model_dir, sft_rows, tmp_path / f"checkpoints-{packing}")
        batch = trainer.data_collator([trainer.train_dataset[index] for index in range(len(sft_rows))])
        assert ("attention_mask" in batch) != packing
        if packing:
            assert batch["input_ids"].shape[0] == 1  # one row, no padding
            assert (batch["position_ids"] == 0).sum() == len(sft_rows)
        trainer.model.eval()
        with torch.no_grad():
            losses[packing] = trainer.compute_loss(trainer.model, batch).item()
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_loss_falls_and_everything_is_on_record(trained):
    out_dir, record = trained
    log = read_train_log(out_dir / "train_log.csv")
    assert [row["step"] for row in log] == list(range(1, 7))
    losses = [row["loss"] for row in log]
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(row["tokens_per_s"] > 0 and row["grad_norm"] > 0 for row in log)

    assert (out_dir / "weights" / "adapter_model.safetensors").is_file()
    assert (out_dir / "weights" / "adapter_config.json").is_file()
    assert not list(out_dir.glob(".weights*"))  # no temp dir left behind
    saved = json.loads((out_dir / "hyperparams.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["spec"]["r"] == 8 and saved["spec"]["layers_to_transform"] == [27, 28, 29]
    assert saved["lora_config"]["layers_to_transform"] == [27, 28, 29]
    assert saved["lora_config"]["layers_pattern"] == "layers"
    assert saved["sft_args"]["learning_rate"] == 5e-3 and saved["sft_args"]["max_steps"] == 6
    assert set(saved["versions"]) >= {"torch", "transformers", "peft", "trl"}
    assert saved["device"] == "cpu" and saved["base_dtype"] == "float32"
    # dtype auto on a CPU: float32 throughout, no autocast (lora_tradeoff/model/precision.py)
    assert (saved["dtype_setting"], saved["dtype"], saved["trainable_dtype"]) == ("auto", "float32", "float32")
    assert (saved["bf16"], saved["fp16"]) == (False, False)
    assert (saved["sft_args"]["bf16"], saved["sft_args"]["fp16"]) == (False, False)
    assert saved["train_examples"] == 2 and saved["global_steps"] == 6 and saved["resumed"] is False
    assert saved["train_tokens_per_epoch"] > saved["train_label_tokens_per_epoch"] > 0
    assert 0 < saved["trainable_share"] < 0.01
    assert saved["final_loss"] == pytest.approx(losses[-1])
    assert saved["tokens_per_s"] > 0 and saved["wall_time_s"] > 0
    # TRL's fused LM head computed the loss: the (tokens, vocab) logits were never materialised.
    assert saved["memory_path"] == {
        "lm_head_loss": "trl_fused_chunked",
        "gradient_checkpointing": False,
        "liger_layer_kernels": 0,
    }


def test_bfloat16_trains_a_frozen_bf16_base_under_autocast_with_float32_adapter_weights(
    tmp_path, base_model_dir, train_jsonl
):
    """The mixed-precision path a GPU takes (half-precision base, float32 trainable weights,
    autocast), run for real on the CPU, where accelerate autocasts bf16 (not float16)."""
    spec = RunSpec.from_config("bf16", {**TEST_RUN, "max_steps": 2, "save_steps": 100})
    record = fine_tune(spec, base_model_dir, train_jsonl, tmp_path / "bf16", dtype="bfloat16")
    assert (record["dtype_setting"], record["dtype"]) == ("bfloat16", "bfloat16")
    assert (record["base_dtype"], record["trainable_dtype"]) == ("bfloat16", "float32")
    assert (record["bf16"], record["fp16"], record["sft_args"]["bf16"]) == (True, False, True)
    losses = [row["loss"] for row in read_train_log(tmp_path / "bf16" / "train_log.csv")]
    assert len(losses) == 2 and all(0 < loss < 20 for loss in losses), losses


def test_float16_on_a_cpu_is_refused_before_anything_is_written(tmp_path, base_model_dir, train_jsonl):
    from lora_tradeoff.model.precision import PrecisionError

    spec = RunSpec.from_config("fp16", {**TEST_RUN, "max_steps": 1})
    with pytest.raises(PrecisionError, match=r"^dtype: float16 needs a CUDA GPU"):
        fine_tune(spec, base_model_dir, train_jsonl, tmp_path / "fp16", dtype="float16")
    assert not (tmp_path / "fp16").exists()


def test_a_checkpoint_of_another_precision_setting_is_not_resumed(train_jsonl, base_model_dir):
    from lora_tradeoff.training.run import run_fingerprint

    spec = RunSpec.from_config("p", TEST_RUN)
    assert run_fingerprint(spec, base_model_dir, train_jsonl, "auto") != run_fingerprint(
        spec, base_model_dir, train_jsonl, "float32"
    )


def test_gradient_checkpointing_is_on_record_as_it_ran(tmp_path, base_model_dir, sft_rows):
    from lora_tradeoff.training.run import memory_path

    spec = RunSpec.from_config("gc", {**TEST_RUN, "max_steps": 1, "gradient_checkpointing": True})
    trainer, _ = build_trainer(spec, base_model_dir, sft_rows, tmp_path / "checkpoints")
    trainer.train()
    assert memory_path(trainer.model, spec)["gradient_checkpointing"] is True
    assert trainer.state.log_history[0]["loss"] > 0


def test_saved_adapter_loads_for_inference_and_changes_greedy_output(trained, base_model_dir, sft_rows):
    from lora_tradeoff.model.loading import load_model_and_tokenizer

    out_dir, _ = trained
    outputs = []
    for adapter_dir in (None, out_dir / "weights"):
        model, tokenizer = load_model_and_tokenizer(base_model_dir, adapter_dir, device="cpu")
        prompt = tokenizer.apply_chat_template(
            sft_rows[0]["messages"][:-1], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        generated = model.generate(**prompt, max_new_tokens=16, do_sample=False)
        outputs.append(tokenizer.decode(generated[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True))
    assert outputs[0] != outputs[1]


def test_same_seed_gives_the_same_losses(trained, tmp_path, base_model_dir, train_jsonl):
    """A second run with the same seed reproduces the first steps exactly (constant lr, so the
    shorter max_steps does not change them), and its final adapter is the 6-step run's adapter
    kept after step 2 (eval_steps)."""
    from safetensors.torch import load_file

    out_dir, _ = trained
    spec = RunSpec.from_config("tiny", {**TEST_RUN, "max_steps": 2, "save_steps": 100})
    fine_tune(spec, base_model_dir, train_jsonl, tmp_path / "again")
    first = [row["loss"] for row in read_train_log(out_dir / "train_log.csv")][:2]
    again = [row["loss"] for row in read_train_log(tmp_path / "again" / "train_log.csv")]
    assert again == first
    assert sorted(path.name for path in (out_dir / "steps").iterdir()) == ["weights-step2", "weights-step4"]
    weights = {
        name: load_file(folder / "adapter_model.safetensors")
        for name, folder in {
            "step2": step_weights_dir(out_dir, 2),
            "step4": step_weights_dir(out_dir, 4),
            "final": out_dir / "weights",
            "two_steps": tmp_path / "again" / "weights",
        }.items()
    }
    assert weights["step2"].keys() == weights["two_steps"].keys()
    assert all(torch_equal(weights["step2"][key], weights["two_steps"][key]) for key in weights["step2"])
    for later in ("step4", "final"):
        assert not all(torch_equal(weights["step2"][key], weights[later][key]) for key in weights["step2"])
    # rule export_checkpoint copies the kept adapter into its own folder.
    export_step_weights(out_dir, 4, tmp_path / "adapter-step4")
    assert (tmp_path / "adapter-step4" / "adapter_model.safetensors").read_bytes() == (
        step_weights_dir(out_dir, 4) / "adapter_model.safetensors"
    ).read_bytes()
    with pytest.raises(FileNotFoundError, match="no weights kept after step 3.*--forcerun fine_tune"):
        export_step_weights(out_dir, 3, tmp_path / "adapter-step3")


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_eval_step_beyond_the_last_step_fails_before_training(tmp_path, base_model_dir, train_jsonl):
    # Bounded by num_epochs, the last step is known only once the data is read: fine_tune refuses it.
    spec = RunSpec.from_config("tiny", {**TEST_RUN, "num_epochs": 1, "eval_steps": [1, 3]})
    with pytest.raises(TrainingConfigError, match=r"runs\[tiny\]\.eval_steps: step\(s\) \[3\] lie beyond"):
        fine_tune(spec, base_model_dir, train_jsonl, tmp_path / "beyond")
    assert not (tmp_path / "beyond" / "train_log.csv").exists()
    # Bounded by max_steps, the spec itself is refused (the same check as the workflow's config check).
    with pytest.raises(TrainingConfigError, match=r"runs\[tiny\]\.eval_steps: step\(s\) \[3\] lie beyond max_steps 2"):
        RunSpec.from_config("tiny", {**TEST_RUN, "max_steps": 2, "eval_steps": [1, 3]})
    with pytest.raises(TrainingConfigError, match=r"eval_steps: \[2, 2\] has non-unique elements"):
        RunSpec.from_config("tiny", {"eval_steps": [2, 2]})


def kill_after_checkpoint(
    name: str, config: dict, base_model_dir: Path, train_jsonl: Path, out_dir: Path, step: int
) -> list[Path]:
    """Train run ``name`` in a child process, SIGKILL it once its checkpoint after ``step`` is complete,
    and return the complete checkpoints it left."""
    code = (
        "import json, sys; from pathlib import Path; from lora_tradeoff.training.run import RunSpec, fine_tune; "
        f"fine_tune(RunSpec.from_config({name!r}, json.loads(sys.argv[1])), *map(Path, sys.argv[2:]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(config), str(base_model_dir), str(train_jsonl), str(out_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    checkpoint = out_dir / "checkpoints" / f"checkpoint-{step}"
    deadline = time.monotonic() + 300
    while not is_complete_checkpoint(checkpoint):
        assert process.poll() is None, f"training exited before its checkpoint after step {step}"
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return [path for path in (out_dir / "checkpoints").glob("checkpoint-*") if is_complete_checkpoint(path)]


def test_killed_run_resumes_from_its_last_complete_checkpoint(trained, tmp_path, base_model_dir, train_jsonl):
    out_dir = tmp_path / "resumable"
    config = {**TEST_RUN, "max_steps": 4, "save_steps": 2}
    complete = kill_after_checkpoint("resumable", config, base_model_dir, train_jsonl, out_dir, step=2)
    first = out_dir / "checkpoints" / "checkpoint-2"
    killed_at = max(int(path.name.split("-")[1]) for path in complete)
    assert killed_at < 4, "the run finished before it could be killed"
    assert not (out_dir / "weights").exists()
    # A checkpoint the kill interrupted while saving: weights written, state not yet.
    partial = out_dir / "checkpoints" / f"checkpoint-{killed_at + 1}"
    partial.mkdir()
    shutil.copyfile(first / "adapter_model.safetensors", partial / "adapter_model.safetensors")

    spec = RunSpec.from_config("resumable", config)
    record = fine_tune(spec, base_model_dir, train_jsonl, out_dir)

    assert record["resumed"] is True and record["resumed_from_step"] == killed_at
    assert record["global_steps"] == 4
    assert json.loads((out_dir / "hyperparams.json").read_text())["resumed_from_step"] == killed_at
    assert not partial.exists()
    assert not (out_dir / "checkpoints").exists()  # finished: nothing left to resume from
    log = read_train_log(out_dir / "train_log.csv")
    assert [row["step"] for row in log] == list(range(1, 5))
    # The resumed run continues the trajectory of the uninterrupted one (same seed, data, constant lr).
    uninterrupted = [row["loss"] for row in read_train_log(trained[0] / "train_log.csv")][:4]
    assert [row["loss"] for row in log] == pytest.approx(uninterrupted, rel=1e-5)


def test_non_finite_gradients_stop_training_before_the_optimizer_step(tmp_path, base_model_dir, sft_rows):
    """A NaN gradient (as cuDNN's attention backward returns on some padded lengths) fails the run at once,
    naming the run and the step, instead of writing NaN into every adapter weight."""
    import torch

    from lora_tradeoff.training.run import TrainingDivergedError

    spec = RunSpec.from_config("nan", {**TEST_RUN, "max_steps": 3})
    trainer, facts = build_trainer(spec, base_model_dir, sft_rows, tmp_path / "checkpoints")
    assert facts["cudnn_attention"] is None  # CPU: no cuDNN kernel to turn off
    lora = [param for name, param in trainer.model.named_parameters() if "lora_B" in name]
    before = lora[0].detach().clone()
    lora[0].register_hook(lambda grad: torch.full_like(grad, float("nan")))
    with pytest.raises(
        TrainingDivergedError, match=r"training\.runs\[nan\]\.learning_rate: non-finite gradients at step 1"
    ):
        trainer.train()
    assert torch.equal(lora[0].detach(), before)  # the step was refused: no NaN written into the adapter


# Full fine-tuning: every weight of the real model trains (float32 master weights), all layers.
FULL_RUN = {
    "method": "full",
    "learning_rate": 1e-4,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "per_device_batch_size": 2,
    "max_seq_len": 256,
    "logging_steps": 1,
    "seed": 7,
}


@pytest.fixture(scope="module")
def trained_full(tmp_path_factory, base_model_dir: Path, train_jsonl: Path) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("runs") / "full"
    spec = RunSpec.from_config("full", {**FULL_RUN, "max_steps": 4, "save_steps": 100})
    return out_dir, fine_tune(spec, base_model_dir, train_jsonl, out_dir)


def test_full_fine_tuning_trains_every_weight_into_a_model_folder(trained_full, base_model_dir, sft_rows):
    from safetensors.torch import load_file

    from lora_tradeoff.model.loading import is_full_model, load_model_and_tokenizer

    out_dir, record = trained_full
    losses = [row["loss"] for row in read_train_log(out_dir / "train_log.csv")]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    weights = out_dir / "weights"
    assert is_full_model(weights) and (weights / "tokenizer.json").is_file()
    assert not (weights / "adapter_config.json").exists()
    saved = json.loads((out_dir / "hyperparams.json").read_text())
    assert saved["method"] == "full" and saved["spec"]["method"] == "full" and saved["lora_config"] is None
    assert saved["spec"]["r"] is None and saved["spec"]["target_modules"] is None  # unused by full fine-tuning
    assert saved["trainable_share"] == 1.0 and saved["trainable_parameters"] > 100_000_000
    assert saved["base_dtype"] == "float32" and saved["sft_args"]["optim"] == "adamw_torch_fused"
    assert saved["tokens_per_s"] > 0 and saved["global_steps"] == 4
    # Every layer moved, the first decoder layer too (LoRA in these tests adapts the top three only).
    tuned = load_file(weights / "model.safetensors")
    base = load_file(base_model_dir / "model.safetensors")
    first = "model.layers.0.mlp.down_proj.weight"
    assert tuned[first].dtype == base[first].dtype
    assert not torch_equal(tuned[first], base[first])
    # The folder loads for inference in place of the base model, with the base model's tokenizer.
    outputs = []
    for weights_dir in (None, weights):
        model, tokenizer = load_model_and_tokenizer(base_model_dir, weights_dir, device="cpu")
        prompt = tokenizer.apply_chat_template(
            sft_rows[0]["messages"][:-1], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        generated = model.generate(**prompt, max_new_tokens=16, do_sample=False)
        outputs.append(generated[0, prompt["input_ids"].shape[1] :].tolist())
    assert outputs[0] != outputs[1]


def test_full_fine_tuning_resumes_after_sigkill(trained_full, tmp_path, base_model_dir, train_jsonl):
    """Killed after its checkpoint at step 2 (weights, AdamW state, RNG), the rerun continues the
    uninterrupted run's trajectory; only the newest checkpoint is kept (16 bytes per parameter)."""
    out_dir = tmp_path / "full_resumable"
    config = {**FULL_RUN, "max_steps": 4, "save_steps": 1}
    complete = kill_after_checkpoint("full_resumable", config, base_model_dir, train_jsonl, out_dir, step=2)
    # save_total_limit 1: the older checkpoint goes once the newer one is written (two only if the kill
    # fell between the two).
    assert len(complete) <= 2, complete
    newest = max(complete, key=lambda path: int(path.name.split("-")[1]))
    killed_at = int(newest.name.split("-")[1])
    assert 2 <= killed_at < 4, "the run finished before it could be killed"
    assert (newest / "optimizer.pt").is_file() and (newest / "model.safetensors").is_file()
    assert not (out_dir / "weights").exists()

    record = fine_tune(RunSpec.from_config("full_resumable", config), base_model_dir, train_jsonl, out_dir)
    assert record["resumed_from_step"] == killed_at and record["global_steps"] == 4
    assert record["sft_args"]["save_total_limit"] == 1
    assert not (out_dir / "checkpoints").exists()
    resumed = [row["loss"] for row in read_train_log(out_dir / "train_log.csv")]
    uninterrupted = [row["loss"] for row in read_train_log(trained_full[0] / "train_log.csv")]
    assert resumed == pytest.approx(uninterrupted, rel=1e-4)


def test_full_fine_tuning_refuses_nf4_and_8bit_adam_without_cuda(tmp_path, base_model_dir, train_jsonl):
    with pytest.raises(TrainingConfigError, match=r"runs\[f\]\.quantization: nf4 is QLoRA.*method: lora"):
        RunSpec.from_config("f", {"method": "full", "quantization": "nf4"})
    spec = RunSpec.from_config("f", {**FULL_RUN, "max_steps": 1, "optim": "adamw_8bit"})
    with pytest.raises(TrainingConfigError, match=r"runs\[f\]\.optim: adamw_8bit \(bitsandbytes\) runs on CUDA only"):
        fine_tune(spec, base_model_dir, train_jsonl, tmp_path / "f")


def test_memory_path_sees_the_fused_lm_head_under_accelerates_autocast_wrapper():
    """A full model trained in bf16: accelerate replaces its forward by an autocast wrapper and keeps the
    forward it wrapped (TRL's fused LM head) as ``_original_forward``; the record must name the fused head."""
    from types import MethodType

    import torch

    from lora_tradeoff.training.run import memory_path

    def _fused_forward(self, *args, **kwargs):
        return None

    model = torch.nn.Linear(2, 2)
    spec = RunSpec.from_config("m", {"method": "full"})
    model.forward = MethodType(_fused_forward, model)
    assert memory_path(model, spec)["lm_head_loss"] == "trl_fused_chunked"
    model._original_forward = model.forward
    model.forward = MethodType(torch.autocast("cpu", dtype=torch.bfloat16)(model.forward.__func__), model)
    assert memory_path(model, spec)["lm_head_loss"] == "trl_fused_chunked"
    del model._original_forward
    assert memory_path(model, spec)["lm_head_loss"] == "full_logits"  # the wrapper alone hides it
