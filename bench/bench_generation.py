"""Benchmark: `generate_sql` against the naive one-prompt-at-a-time ``model.generate`` loop.

Both run, in one process, on the same N real Spider dev questions (drawn with seed 0) with a
3-shot prompt (system turn, three fixed train examples, the question with its
schema), built by the workflow's own formatter with the config defaults. The
naive loop is what the seed notebooks did; it runs on the first
``--reference-n`` prompts only and its throughput is extrapolated to N. Beside them, the stock
batched path on all N prompts (``--anchors``): ``model.generate`` on left-padded batches of
``--batch-size``, stopping at ``;``, with transformers' dynamic and static caches; each prints
our q/s as a ratio to it (``ours_ratio``).

Runs standalone wherever torch, transformers and peft are installed (CPU or CUDA):

    python bench/bench_generation.py --model-dir <hf checkpoint> --spider-dir <spider> \
        --device auto --n 256 --batch-size 256 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lora_tradeoff.files import write_json  # noqa: E402
from lora_tradeoff.formatting import SchemaLookup, format_split, select_fewshot_examples  # noqa: E402
from lora_tradeoff.generation import generate_sql  # noqa: E402
from lora_tradeoff.modeling import load_model_and_tokenizer  # noqa: E402
from lora_tradeoff.spider_data import locate_databases, read_spider_dir  # noqa: E402

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def prompt_defaults() -> dict:
    """The prompt section of the workflow config at its schema defaults (system turn, user template, few-shot)."""
    return {
        key: spec["default"]
        for key, spec in yaml.safe_load(SCHEMA.read_text())["properties"]["prompt"]["properties"].items()
    }


def spider_prompt_rows(spider_dir: Path, tokenizer, n: int, style: str = "few_shot") -> list[dict]:
    """The workflow's prompt rows (lora_tradeoff.formatting, default config) for ``n`` dev questions.

    The questions are drawn with seed 0 from all of dev (the workflow's
    spider.dev_limit sampling), so they span many databases, as the full dev set
    does, rather than the first database's. Rows longer than prompt.max_seq_len
    are dropped, as in the workflow.
    """
    prompt = prompt_defaults()
    spider = read_spider_dir(spider_dir)
    examples = []
    if style == "few_shot":
        examples = select_fewshot_examples(
            spider["train"],
            SchemaLookup(spider["tables"], {}),
            prompt["n_shot"],
            prompt["fewshot_seed"],
            prompt["fewshot_max_tables"],
        )
    kept, _ = format_split(
        items=spider["dev"],
        tables=spider["tables"],
        databases=locate_databases({item["db_id"] for item in spider["dev"]}, spider["database_dir"]),
        tokenizer=tokenizer,
        system=prompt["system"],
        user_template=prompt["user_template"],
        max_seq_len=prompt["max_seq_len"],
        limit=n,
        seed=0,
        examples=examples,
    )
    return kept


def naive_generate(model, tokenizer, rows: list[dict], max_new_tokens: int) -> list[list[int]]:
    """The reference: ``model.generate(do_sample=False)`` on one prompt at a time; new token ids per row."""
    outputs = []
    for row in rows:
        ids = tokenizer.apply_chat_template(row["messages"], add_generation_prompt=True, return_tensors="pt")[
            "input_ids"
        ]
        ids = ids.to(model.device)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        outputs.append(out[0, ids.shape[1] :].tolist())
    return outputs


def hf_batched_generate(
    model, tokenizer, rows: list[dict], max_new_tokens: int, batch_size: int, cache_implementation: str | None
) -> list[list[int]]:
    """The stock batched path: ``model.generate`` on left-padded batches, greedy, stopping at ``;``.

    ``cache_implementation`` None is transformers' dynamic cache; ``"static"`` preallocates it
    (transformers compiles the forward pass for it on CUDA). New token ids per row, cut at the
    first pad; rows in input order.
    """
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[list[int]] = []
    try:
        for start in range(0, len(rows), batch_size):
            texts = [
                tokenizer.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=False)
                for row in rows[start : start + batch_size]
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            out = model.generate(
                **batch,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=[";"],
                tokenizer=tokenizer,
                cache_implementation=cache_implementation,
            )
            for ids in out[:, batch["input_ids"].shape[1] :].tolist():
                outputs.append(ids[: ids.index(tokenizer.pad_token_id)] if tokenizer.pad_token_id in ids else ids)
    finally:
        tokenizer.padding_side = side
    return outputs


def time_anchor(model, tokenizer, rows, args, cache_implementation: str | None) -> dict:
    """:func:`hf_batched_generate` on every row; its figures."""
    device = model.device
    reset_peak(device)
    synchronize(device)
    started = time.perf_counter()
    outputs = hf_batched_generate(model, tokenizer, rows, args.max_new_tokens, args.batch_size, cache_implementation)
    synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "prompts": len(rows),
        "cache": cache_implementation or "dynamic",
        "seconds": round(seconds, 2),
        "q_per_s": round(len(rows) / seconds, 3),
        "new_tokens_per_s": round(sum(len(ids) for ids in outputs) / seconds, 1),
        "peak_memory": peak_memory(device),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)"
    # ru_maxrss is in KiB on Linux; it is the peak of the whole process so far.
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process max RSS so far)"


def time_ours(model, tokenizer, rows, args, cuda_graphs: bool) -> tuple[list[dict], dict]:
    """`generate_sql` on every row; its results and figures."""
    device = model.device
    reset_peak(device)
    synchronize(device)
    started = time.perf_counter()
    results = generate_sql(
        model, tokenizer, rows, args.max_new_tokens, args.batch_size, progress=print, cuda_graphs=cuda_graphs
    )
    synchronize(device)
    seconds = time.perf_counter() - started
    new_tokens = sum(row["new_tokens"] for row in results)
    stops = {
        reason: sum(row["stop_reason"] == reason for row in results)
        for reason in ("statement_end", "eos", "max_new_tokens")
    }
    figures = {
        "seconds": round(seconds, 2),
        "q_per_s": round(len(rows) / seconds, 2),
        "new_tokens_per_s": round(new_tokens / seconds, 1),
        "mean_new_tokens": round(new_tokens / len(rows), 1),
        "stops": stops,
        "peak_memory": peak_memory(device),
    }
    return results, figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / ".cache" / "test-model" / "checkpoint")
    parser.add_argument("--spider-dir", type=Path, default=REPO.parent / "shared" / "data" / "spider")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=256, help="dev questions for our path")
    parser.add_argument("--reference-n", type=int, default=16, help="first questions for the naive loop")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--style", choices=["few_shot", "zero_shot"], default="few_shot")
    parser.add_argument(
        "--anchors",
        default="dynamic,static",
        help="stock HF batched generate beside ours, by cache: dynamic, static (comma-separated; '' = none)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json-out", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model_dir, device=args.device)
    rows = spider_prompt_rows(args.spider_dir, tokenizer, args.n, args.style)
    device = model.device
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(model.dtype),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "prompts": len(rows),
        "style": args.style,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "mean_prompt_tokens": None,
    }
    print(json.dumps(report))

    generate_sql(model, tokenizer, rows[:2], max_new_tokens=4, batch_size=2)  # warm-up: kernels, allocator

    reference_rows = rows[: args.reference_n]
    reset_peak(device)
    synchronize(device)
    started = time.perf_counter()
    reference = naive_generate(model, tokenizer, reference_rows, args.max_new_tokens)
    synchronize(device)
    naive_seconds = time.perf_counter() - started
    naive_rate = len(reference_rows) / naive_seconds
    report["naive"] = {
        "prompts": len(reference_rows),
        "seconds": round(naive_seconds, 2),
        "q_per_s": round(naive_rate, 3),
        "new_tokens_per_s": round(sum(len(ids) for ids in reference) / naive_seconds, 1),
        "peak_memory": peak_memory(device),
    }
    print("naive generate, one prompt at a time:", json.dumps(report["naive"]))

    variants = [("ours", True)] + ([("ours_eager", False)] if device.type == "cuda" else [])
    outputs = {}
    for name, cuda_graphs in variants:
        outputs[name], report[name] = time_ours(model, tokenizer, rows, args, cuda_graphs)
        identical = sum(
            ref[: row["new_tokens"]] == row["output_token_ids"]
            for ref, row in zip(reference, outputs[name], strict=False)
        )
        report[name]["token_identical_to_naive"] = f"{identical}/{len(reference)}"
        print(
            f"generate_sql ({'CUDA graphs' if cuda_graphs and device.type == 'cuda' else 'eager'}):",
            json.dumps(report[name]),
        )
    results = outputs["ours"]
    for cache in [name for name in args.anchors.split(",") if name]:
        if cache not in ("dynamic", "static"):
            parser.error(f"--anchors: unknown cache {cache!r} (dynamic, static)")
        anchor = time_anchor(model, tokenizer, rows, args, None if cache == "dynamic" else "static")
        anchor["ours_ratio"] = round(report["ours"]["q_per_s"] / anchor["q_per_s"], 2)
        report[f"hf_{cache}"] = anchor
        print(f"HF generate, batched, {cache} cache:", json.dumps(anchor))
    report["mean_prompt_tokens"] = round(sum(row["prompt_tokens"] for row in results) / len(rows), 1)
    report["speedup_vs_naive"] = round(report["ours"]["q_per_s"] / naive_rate, 1)
    if "ours_eager" in outputs:
        report["graph_tokens_equal_eager"] = sum(
            a["output_token_ids"] == b["output_token_ids"] for a, b in zip(results, outputs["ours_eager"], strict=True)
        )
    print(
        f"speed-up {report['speedup_vs_naive']}x (q/s) over the naive loop; naive generates until eos or "
        "max_new_tokens, ours stops at statement end too."
    )
    print("BENCH_RESULT " + json.dumps(report))
    if args.json_out:
        write_json(args.json_out, report)
    return report


if __name__ == "__main__":
    main()
