"""Training throughput of SFT (LoRA or full): real (non-padding) tokens/s and peak memory per configuration.

Each configuration trains the real model on real Spider train rows through the same
``build_trainer`` the workflow uses (TRL SFTTrainer, with a PEFT LoRA config or, for the
``full-*`` configurations, without one: every weight trained), in its own subprocess (an
out-of-memory configuration cannot spoil the others and peak memory is per config).
Tokens/s is measured over ``--steps`` optimizer steps after ``--warmup`` steps (compilation,
allocator warm-up), counting only real tokens. Runs standalone (no snakemake):

    python bench/bench_training.py --model-dir results/model/base --spider-dir ../shared/data/spider
    python bench/bench_training.py ... --configs padded,grouped --batch-size 2 --steps 2 --warmup 1   # CPU smoke
    python bench/bench_training.py ... --configs full-padded-32-gc,full-grouped-16-gc,full-grouped-16-gc-8bit

``--r`` and ``--target-modules`` apply to the LoRA configurations only. Peak memory on a GPU is
what torch allocated (``peak_mem_gb``, the figure run_all judges against a card's memory) and
what its caching allocator held (``peak_reserved_gb``, closer to what the card must have).

Needs torch, transformers, peft, trl, datasets, accelerate, pandas; bitsandbytes for ``*-8bit`` (CUDA only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_tradeoff.files import read_jsonl  # noqa: E402
from lora_tradeoff.spider.prompts import SchemaLookup, format_items  # noqa: E402
from lora_tradeoff.training.run import RunSpec  # noqa: E402

_FULL: dict[str, Any] = {"method": "full", "learning_rate": 1.0e-5}

# The configurations compared; batch sizes are GPU-sized (--batch-size overrides them all).
CONFIGS: dict[str, dict[str, Any]] = {
    # Plain padded batches, as a first TRL run would do: the stock anchor of bench/run_all.py
    # (padded-16 for a 1.5B model: Qwen2.5-1.5B in batches of 16 grouped by length, so with less
    # padding, already took 74 GB on an H200 without recomputation).
    "padded": {"per_device_batch_size": 32},
    "padded-16": {"per_device_batch_size": 16},
    # Padded, but batches of similar length: little padding, per-row attention.
    "grouped": {"per_device_batch_size": 128, "group_by_length": True},
    # The workflow's full-run setting, and the same with Liger's fused kernels (less memory, so twice the batch).
    "grouped-64": {"per_device_batch_size": 64, "group_by_length": True},
    "grouped-32-liger": {"per_device_batch_size": 32, "group_by_length": True, "liger_kernel": True},
    "grouped-64-liger": {"per_device_batch_size": 64, "group_by_length": True, "liger_kernel": True},
    "grouped-128-liger": {"per_device_batch_size": 128, "group_by_length": True, "liger_kernel": True},
    "grouped-compile": {"per_device_batch_size": 128, "group_by_length": True, "torch_compile": True},
    # Memory for a 1.5B model on a 24 GB card: activations recomputed in the backward pass
    # (config/qwen2.5-coder-1.5b.yaml uses grouped-32-gc), or a smaller batch without recomputation.
    "grouped-16": {"per_device_batch_size": 16, "group_by_length": True},
    "grouped-32-gc": {"per_device_batch_size": 32, "group_by_length": True, "gradient_checkpointing": True},
    "grouped-64-gc": {"per_device_batch_size": 64, "group_by_length": True, "gradient_checkpointing": True},
    "packed-flex-64-gc": {
        "per_device_batch_size": 64,
        "packing": True,
        "attn_implementation": "flex_attention",
        "gradient_checkpointing": True,
    },
    "packed-flex-128-gc": {
        "per_device_batch_size": 128,
        "packing": True,
        "attn_implementation": "flex_attention",
        "gradient_checkpointing": True,
    },
    # Padding-free: one flattened row per batch. sdpa builds a dense block-diagonal mask
    # (quadratic in the batch's token count); flex attention skips the masked blocks.
    "packed-sdpa": {"per_device_batch_size": 32, "packing": True},
    "packed-flex": {"per_device_batch_size": 128, "packing": True, "attn_implementation": "flex_attention"},
    "packed-flex-compile": {
        "per_device_batch_size": 128,
        "packing": True,
        "attn_implementation": "flex_attention",
        "torch_compile": True,
    },
    # Full fine-tuning (method full: every weight trained, float32 master weights, bf16 autocast on a
    # GPU), at config/frontier.yaml's learning rate (the rate changes no timing, but a LoRA rate of
    # 2e-4 on every weight is no run anyone would time). The plain TRL anchor: padded batches of 32,
    # as a first TRL run would do, with recomputation because a 1.5B model at batch 32 does not fit
    # 80 GB without it (17.1k tokens/s, 42.1 GB on an H100).
    "full-padded-32-gc": {**_FULL, "per_device_batch_size": 32, "gradient_checkpointing": True},
    # Ours: config/frontier.yaml's full runs (micro-batch 16 grouped by length, x 2 accumulation there),
    # and the lean path for a 24 GB card: AdamW's moments in 8 bits (bitsandbytes, CUDA only).
    "full-grouped-16-gc": {
        **_FULL,
        "per_device_batch_size": 16,
        "group_by_length": True,
        "gradient_checkpointing": True,
    },
    "full-grouped-16-gc-8bit": {
        **_FULL,
        "per_device_batch_size": 16,
        "group_by_length": True,
        "gradient_checkpointing": True,
        "optim": "adamw_8bit",
    },
    "full-grouped-8-gc-8bit": {
        **_FULL,
        "per_device_batch_size": 8,
        "group_by_length": True,
        "gradient_checkpointing": True,
        "optim": "adamw_8bit",
    },
    # A small model (SmolLM2-135M) needs no recomputation: the plain anchor and ours at batch 32.
    "full-padded-32": {**_FULL, "per_device_batch_size": 32},
    "full-grouped-32": {**_FULL, "per_device_batch_size": 32, "group_by_length": True},
}
DEFAULT_CONFIGS = "padded,grouped,grouped-compile,packed-sdpa,packed-flex,packed-flex-compile"


def config_method(name: str) -> str:
    """``lora`` or ``full``: the fine-tuning method of configuration ``name`` (the schema's default, lora)."""
    return CONFIGS[name].get("method", "lora")


# The zero-shot prompt of the workflow's defaults (schemas/config.schema.yaml, prompt.*).
SYSTEM = (
    "You are a text-to-SQL assistant. Given a SQLite database schema and a question, "
    "answer with one SQLite query and nothing else."
)
USER_TEMPLATE = "Schema:\n{schema}\n\nQuestion: {question}"


def spider_rows(spider_dir: Path, limit: int) -> list[dict[str, Any]]:
    """SFT rows (system, user, assistant = gold SQL) for the first ``limit`` train questions."""
    train = json.loads((spider_dir / "train_spider.json").read_text())[:limit]
    items = [{"id": f"train-{index:04d}", **item} for index, item in enumerate(train)]
    schemas = SchemaLookup(json.loads((spider_dir / "tables.json").read_text()), {})
    rows, _ = format_items(items, schemas, SYSTEM, USER_TEMPLATE, lambda messages: 0, 10**9, with_answer=True)
    return rows


def bench_one(args: argparse.Namespace) -> dict[str, Any]:
    """Train one configuration for warmup + steps optimizer steps; return its measurements."""
    import resource

    import torch
    from transformers import TrainerCallback

    from lora_tradeoff.training.run import build_trainer

    overrides = dict(CONFIGS[args.one])
    if args.batch_size:
        overrides["per_device_batch_size"] = args.batch_size
    spec = RunSpec.from_config(
        args.one,
        {
            "r": args.r,
            "alpha": 2 * args.r,
            "target_modules": args.target_modules.split(",") if args.target_modules != "all-linear" else "all-linear",
            "max_seq_len": args.max_seq_len,
            "max_steps": args.warmup + args.steps,
            "warmup_ratio": 0.0,
            "logging_steps": 10**6,
            "save_steps": 10**6,
            **overrides,
        },
    )
    rows = read_jsonl(args.train_jsonl) if args.train_jsonl else spider_rows(args.spider_dir, args.limit)
    cuda = torch.cuda.is_available()

    class StepTimer(TrainerCallback):
        """Clock and token count at the end of the warm-up and of the last step."""

        def __init__(self) -> None:
            self.marks: dict[int, tuple[float, int]] = {}

        def on_step_end(self, train_args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step in (args.warmup, args.warmup + args.steps):
                if cuda:
                    torch.cuda.synchronize()
                self.marks[state.global_step] = (time.perf_counter(), trainer._total_train_tokens)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as scratch:
        trainer, facts = build_trainer(spec, args.model_dir, rows, Path(scratch), [timer])
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = trainer.train()
    (t0, tokens0), (t1, tokens1) = timer.marks[args.warmup], timer.marks[args.warmup + args.steps]
    peak_gb = (
        torch.cuda.max_memory_allocated() / 2**30
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    )
    return {
        "config": args.one,
        "method": spec.method,
        "optim": spec.optim,
        "batch": spec.per_device_batch_size,
        "packing": spec.packing,
        "group_by_length": spec.group_by_length,
        "attn": spec.attn_implementation,
        "compile": spec.torch_compile,
        "gradient_checkpointing": spec.gradient_checkpointing,
        "bf16": facts["bf16"],
        "weights_dtype": facts["base_dtype"],
        "tokens_per_s": round((tokens1 - tokens0) / (t1 - t0), 1),
        "step_ms": round(1000 * (t1 - t0) / args.steps, 1),
        "tokens_per_step": round((tokens1 - tokens0) / args.steps),
        "peak_mem_gb": round(peak_gb, 2),
        "peak_mem_kind": "cuda allocated" if cuda else "process RSS",
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
        "train_loss": round(result.metrics["train_loss"], 4),
        "device": facts["device_name"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="HF checkpoint of the base model")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train-jsonl", type=Path, help="SFT rows (results/spider/sft_train.jsonl)")
    source.add_argument("--spider-dir", type=Path, help="official Spider (train_spider.json, tables.json)")
    parser.add_argument("--limit", type=int, default=7000, help="train questions read from --spider-dir")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--batch-size", type=int, default=None, help="override every config's batch size")
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--target-modules", default="q_proj,v_proj", help='comma-separated, or "all-linear"')
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, allocator)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--out", type=Path, help="also write the table here (.csv or .json)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one config in this process
    args = parser.parse_args()

    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if args.one:
        print("BENCH_RESULT " + json.dumps(bench_one(args)), flush=True)
        return

    import pandas as pd

    names = args.configs.split(",")
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:  # all checked before the first trains
        parser.error(f"unknown config {unknown[0]!r}; known: {', '.join(CONFIGS)}")
    results = []
    for name in names:
        command = [sys.executable, __file__, *sys.argv[1:], "--one", name]
        started = time.perf_counter()
        process = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in process.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
        if process.returncode == 0 and lines:
            results.append(json.loads(lines[-1].removeprefix("BENCH_RESULT ")))
        else:
            error = (process.stderr.strip().splitlines() or ["no output"])[-1]
            results.append({"config": name, "error": error[:200]})
        print(f"{name}: done in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)

    table = pd.DataFrame(results)
    print(table.to_string(index=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".json":
            args.out.write_text(table.to_json(orient="records", indent=2))
        else:
            table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
