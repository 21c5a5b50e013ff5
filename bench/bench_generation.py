"""Benchmark: `generate_sql` against the naive one-prompt-at-a-time ``model.generate`` loop.

Both run, in one process, on the same N real Spider dev questions (drawn with seed 0) with a
3-shot prompt (system turn, three fixed train examples, the question with its
schema), built by the workflow's own formatter with the config defaults. The
naive loop is what the seed notebooks did; it runs on the first
``--reference-n`` prompts only and its throughput is extrapolated to N. Beside them, the stock
batched path on all N prompts (``--anchors``): ``model.generate`` on left-padded batches of
``--anchor-batch-size`` (default ``--batch-size``), stopping at ``;``, with transformers' dynamic
and static caches; each prints our q/s as a ratio to it (``ours_ratio``). When the anchors' batch
differs from ours (the dynamic cache of all 1034 dev prompts in one batch does not fit a GPU), ours
runs at their batch too and the ratio at the same batch is printed beside (``same_batch_ratio``).
With the static cache transformers compiles the decode step for one shape, so every batch is
padded to the longest prompt and filled to the full batch (the way to avoid a recompile per batch);
its first batch runs once untimed, and the seconds it took with the compile are reported apart.

Runs standalone wherever torch, transformers and peft are installed (CPU or CUDA):

    python bench/bench_generation.py --model-dir <hf checkpoint> --spider-dir <spider> \
        --device auto --n 256 --batch-size 256 --max-new-tokens 128

``--profile-out FILE``: after the figures are printed (and written to ``--json-out``),
where our generation's time goes: one more run of ``generate_sql`` on the same N
questions with a `PhaseTimer` (wall seconds per phase, the device synchronised at
every phase boundary, so slower than the timed run; the per-batch decode steps and
slots left to finished rows), then a torch.profiler run on the first ``--profile-n``
questions (operators by self device time, and by self CPU time). Both go to FILE.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lora_tradeoff.files import write_json  # noqa: E402
from lora_tradeoff.inference.profiling import PhaseTimer, summarize_batch  # noqa: E402
from lora_tradeoff.model.loading import apply_liger_kernels, load_model_and_tokenizer  # noqa: E402
from lora_tradeoff.spider.data import locate_databases, read_spider_dir  # noqa: E402
from lora_tradeoff.spider.generation import generate_sql  # noqa: E402
from lora_tradeoff.spider.prompts import SchemaLookup, format_split, select_fewshot_examples  # noqa: E402

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def prompt_defaults() -> dict:
    """The prompt section of the workflow config at its schema defaults (system turn, user template, few-shot)."""
    return {
        key: spec["default"]
        for key, spec in yaml.safe_load(SCHEMA.read_text())["properties"]["prompt"]["properties"].items()
    }


def spider_prompt_rows(spider_dir: Path, tokenizer, n: int, style: str = "few_shot") -> list[dict]:
    """The workflow's prompt rows (lora_tradeoff.spider.prompts, default config) for ``n`` dev questions.

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
    model,
    tokenizer,
    rows: list[dict],
    max_new_tokens: int,
    batch_size: int,
    cache_implementation: str | None,
    pad_to: int | None = None,
) -> list[list[int]]:
    """The stock batched path: ``model.generate`` on left-padded batches, greedy, stopping at ``;``.

    ``cache_implementation`` None is transformers' dynamic cache; ``"static"`` preallocates it
    (transformers compiles the decode step for it on CUDA). ``pad_to``: every batch is padded to
    that many prompt tokens and filled to ``batch_size`` rows with copies of its last prompt (their
    outputs dropped), so a compiled step sees one shape. New token ids per row, cut at the first
    pad; rows in input order.
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
            real = len(texts)
            padding: dict = {"padding": True}
            if pad_to is not None:
                texts += texts[-1:] * (batch_size - real)
                padding = {"padding": "max_length", "max_length": pad_to}
            batch = tokenizer(texts, return_tensors="pt", add_special_tokens=False, **padding).to(model.device)
            out = model.generate(
                **batch,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=[";"],
                tokenizer=tokenizer,
                cache_implementation=cache_implementation,
            )
            for ids in out[:real, batch["input_ids"].shape[1] :].tolist():
                outputs.append(ids[: ids.index(tokenizer.pad_token_id)] if tokenizer.pad_token_id in ids else ids)
    finally:
        tokenizer.padding_side = side
    return outputs


def time_anchor(model, tokenizer, rows, max_new_tokens: int, batch_size: int, cache_implementation: str | None) -> dict:
    """:func:`hf_batched_generate` on every row in batches of ``batch_size``; its figures.

    The static cache runs with one padded shape (``pad_to`` the longest prompt), its first batch
    once untimed: ``compile_seconds`` is that batch's wall time with the compile, and ``q_per_s``
    is the timed run after it (the stock path at its best; ``q_per_s_with_compile`` counts both).
    """
    device = model.device
    reset_peak(device)
    figures: dict = {"prompts": len(rows), "cache": cache_implementation or "dynamic", "batch_size": batch_size}
    pad_to = None
    if cache_implementation == "static":
        pad_to = max(row["n_tokens"] for row in rows)
        figures["padded_to_tokens"] = pad_to
        synchronize(device)
        started = time.perf_counter()
        hf_batched_generate(model, tokenizer, rows[:batch_size], max_new_tokens, batch_size, "static", pad_to)
        synchronize(device)
        figures["compile_seconds"] = round(time.perf_counter() - started, 2)
    synchronize(device)
    started = time.perf_counter()
    outputs = hf_batched_generate(model, tokenizer, rows, max_new_tokens, batch_size, cache_implementation, pad_to)
    synchronize(device)
    seconds = time.perf_counter() - started
    figures |= {
        "seconds": round(seconds, 2),
        "q_per_s": round(len(rows) / seconds, 3),
        "new_tokens_per_s": round(sum(len(ids) for ids in outputs) / seconds, 1),
        "peak_memory": peak_memory(device),
    }
    if pad_to is not None:
        figures["q_per_s_with_compile"] = round(len(rows) / (seconds + figures["compile_seconds"]), 3)
    return figures


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


def time_ours(
    model, tokenizer, rows, args, cuda_graphs: bool, batch_size: int | None = None
) -> tuple[list[dict], dict]:
    """`generate_sql` on every row (batches of ``batch_size``, default ``--batch-size``); its results and figures."""
    device = model.device
    batch_size = batch_size or args.batch_size
    reset_peak(device)
    synchronize(device)
    started = time.perf_counter()
    results = generate_sql(
        model, tokenizer, rows, args.max_new_tokens, batch_size, progress=print, cuda_graphs=cuda_graphs
    )
    synchronize(device)
    seconds = time.perf_counter() - started
    new_tokens = sum(row["new_tokens"] for row in results)
    stops = {
        reason: sum(row["stop_reason"] == reason for row in results)
        for reason in ("statement_end", "eos", "max_new_tokens")
    }
    figures = {
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "q_per_s": round(len(rows) / seconds, 2),
        "new_tokens_per_s": round(new_tokens / seconds, 1),
        "mean_new_tokens": round(new_tokens / len(rows), 1),
        "stops": stops,
        "peak_memory": peak_memory(device),
    }
    return results, figures


# The phases of `PhaseTimer` by the part of generation they belong to; time in no phase counts as (e).
PHASE_GROUPS = (
    ("(a) host: tokenization, planning", ("tokenize", "plan", "stop_rule_setup")),
    ("(b) shared-prefix prefill", ("prefix_prefill",)),
    ("(c) per-question prefill", ("prefill", "batch_setup")),
    ("(d) decode", ("decode_replay", "decode_eager", "decode_warmup", "graph_capture", "drop_rows")),
    ("(e) other: stop checks, host syncs, post-processing", ("stop_check",)),
)


def profile_phases(model, tokenizer, rows, args, timed: dict, timed_results: list[dict]) -> tuple[str, dict]:
    """`generate_sql` on every row once more with a `PhaseTimer`; a readable breakdown and its figures.

    ``timed``: the timed run's figures (``report["ours"]``), ``timed_results``: its rows,
    to check that timing changed no token.
    """
    device = model.device
    timer = PhaseTimer((lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None)
    synchronize(device)
    started = time.perf_counter()
    results = generate_sql(model, tokenizer, rows, args.max_new_tokens, args.batch_size, timer=timer)
    synchronize(device)
    total = time.perf_counter() - started
    identical = sum(a["output_token_ids"] == b["output_token_ids"] for a, b in zip(results, timed_results, strict=True))
    batches = [summarize_batch(facts) for facts in timer.batches]
    phased = sum(timer.seconds.values())
    unphased = total - phased - timer.overhead_seconds
    known = {name for _, names in PHASE_GROUPS for name in names}
    # A phase no group names (a new one in the engine) is shown under (e), with the time in no phase.
    groups = [(title, list(names)) for title, names in PHASE_GROUPS]
    groups[-1][1].extend(name for name in timer.seconds if name not in known)
    group_seconds = {title: sum(timer.seconds.get(name, 0.0) for name in names) for title, names in groups}
    group_seconds[groups[-1][0]] += unphased
    data: dict = {
        "questions": len(rows),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "device": report_device(device),
        "synchronized_phases": device.type == "cuda",
        "profiled_seconds": round(total, 3),
        "profiled_q_per_s": round(len(rows) / total, 2),
        "timed_seconds": timed["seconds"],
        "timed_q_per_s": timed["q_per_s"],
        "tokens_identical_to_timed_run": f"{identical}/{len(rows)}",
        "timer_overhead_seconds": round(timer.overhead_seconds, 3),
        "phases": {
            name: {
                "seconds": round(timer.seconds[name], 4),
                "launch_seconds": round(timer.launch_seconds[name], 4),
                "calls": timer.calls[name],
            }
            for name in timer.seconds
        },
        "unphased_seconds": round(unphased, 4),
        "groups": {title: round(seconds, 4) for title, seconds in group_seconds.items()},
        "batches": batches,
    }
    slot_steps = sum(batch["slot_steps"] for batch in batches)
    wasted = sum(batch["wasted_slot_share"] * batch["slot_steps"] for batch in batches)
    data["decode_steps"] = sum(batch["decode_steps"] for batch in batches)
    data["wasted_slot_share"] = round(wasted / slot_steps, 4) if slot_steps else 0.0
    data["steps_mostly_finished"] = sum(batch["steps_mostly_finished"] for batch in batches)

    lines = [
        f"Phase breakdown: generate_sql on {len(rows)} questions, batch size {args.batch_size}, "
        f"max_new_tokens {args.max_new_tokens}, {data['device']}"
        + (", device synchronised at every phase boundary" if data["synchronized_phases"] else ""),
        f"profiled run {total:.3f} s ({data['profiled_q_per_s']} q/s); the timed run without timer "
        f"{timed['seconds']} s ({timed['q_per_s']} q/s); tokens identical to the timed run: "
        f"{data['tokens_identical_to_timed_run']}; timer bookkeeping {timer.overhead_seconds:.3f} s (excluded)",
        "launch ms/call: host time before the closing synchronisation (close to ms/call: the host is the limit)",
        "",
        f"{'phase':<52} {'seconds':>9} {'share':>7} {'calls':>7} {'ms/call':>10} {'launch ms/call':>15}",
    ]
    for title, names in groups:
        lines.append(f"{title:<52} {group_seconds[title]:>9.3f} {group_seconds[title] / total:>7.1%}")
        for name in names:
            if name in timer.seconds:
                seconds, calls = timer.seconds[name], timer.calls[name]
                lines.append(
                    f"  {name:<50} {seconds:>9.3f} {seconds / total:>7.1%} {calls:>7} "
                    f"{1000 * seconds / calls:>10.3f} {1000 * timer.launch_seconds[name] / calls:>15.3f}"
                )
    lines.append(
        f"  {'in no phase (progress, result rows, syncs between)':<50} {unphased:>9.3f} {unphased / total:>7.1%}"
    )
    lines += [
        "",
        f"decode steps {data['decode_steps']} in {len(batches)} batches; slot-steps left to finished rows "
        f"{data['wasted_slot_share']:.1%}; steps in which most rows had finished {data['steps_mostly_finished']}",
        "",
        f"{'batch':>5} {'rows':>5} {'prompt tok':>10} {'own tok':>8} {'prefill fw':>10} {'padded tok':>10} "
        f"{'new kept':>8} {'needed':>7} {'max need':>8} {'steps':>6} {'ms/step':>8} {'captures':>8} {'capture s':>9} "
        f"{'checks':>6} {'wasted':>7} {'mostly done':>11}  row drops (step, before, after)",
    ]
    for index, batch in enumerate(batches):
        lines.append(
            f"{index:>5} {batch['rows']:>5} {batch['prompt_tokens']:>10} {batch['own_prompt_tokens']:>8} "
            f"{batch['prefill_forwards']:>10} {batch['prefill_padded_tokens']:>10} {batch['new_tokens_kept']:>8} "
            f"{batch['new_tokens_needed']:>7} {batch['max_needed']:>8} {batch['decode_steps']:>6} "
            f"{batch['decode_ms_per_step'] or 0:>8.2f} {batch['graph_captures']:>8} "
            f"{batch['graph_capture_seconds']:>9.3f} {batch['stop_checks']:>6} {batch['wasted_slot_share']:>7.1%} "
            f"{batch['steps_mostly_finished']:>11}  {batch['row_drops']}"
        )
        lines.append(
            "      seconds: " + ", ".join(f"{name} {seconds:.3f}" for name, seconds in batch["seconds"].items())
        )
    return "\n".join(lines), data


def report_device(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


class _Records(logging.Handler):
    """Keeps the log records it is given (the engine's warnings, e.g. a CUDA graph capture that failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def profile_operators(model, tokenizer, rows, args) -> str:
    """torch.profiler over `generate_sql` on the first ``--profile-n`` rows (one batch); the top operators.

    On CUDA twice: eagerly (every step's operators launched one by one, as in ours_eager:
    which operators take the GPU time), then with CUDA graphs (the timed path: the steps'
    kernels run inside graph replays). Eager first, so that a capture the profiler breaks
    cannot cost the eager table; the engine's warnings are written under each table.
    """
    from torch.profiler import ProfilerActivity, profile

    device = model.device
    part = rows[: args.profile_n]
    batch_size = min(args.batch_size, len(part))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sorts = (["self_device_time_total"] if device.type == "cuda" else []) + ["self_cpu_time_total"]
    sections = []
    for cuda_graphs in [False, True] if device.type == "cuda" else [False]:
        title = f"torch.profiler: generate_sql on the first {len(part)} questions, batch size {batch_size}, " + (
            "CUDA graphs" if cuda_graphs else "eager"
        )
        records = _Records()
        engine_log = logging.getLogger("lora_tradeoff.inference.engine")
        engine_log.addHandler(records)
        try:
            with profile(activities=activities) as prof:
                started = time.perf_counter()
                generate_sql(model, tokenizer, part, args.max_new_tokens, batch_size, cuda_graphs=cuda_graphs)
                synchronize(device)
                seconds = time.perf_counter() - started
            averages = prof.key_averages()
            for sort in sorts:
                sections.append(
                    f"== {title} ({seconds:.2f} s under the profiler); top 30 by {sort} ==\n"
                    + averages.table(sort_by=sort, row_limit=30, max_name_column_width=80)
                )
        except Exception as error:  # a profiler failure must not lose the phase breakdown written before it
            sections.append(f"== {title}: torch.profiler failed: {type(error).__name__}: {error} ==")
        finally:
            engine_log.removeHandler(records)
        warnings = [record.getMessage() for record in records.records]
        sections.append(f"engine warnings during it: {warnings or 'none'}")
    return "\n\n".join(sections)


def parse_anchors(text: str) -> list[str]:
    """``--anchors``: comma-separated caches of the stock anchors, each "dynamic" or "static" ('' = none).

    Raises ValueError naming the first unknown one.
    """
    anchors = [name for name in text.split(",") if name]
    unknown = [name for name in anchors if name not in ("dynamic", "static")]
    if unknown:
        raise ValueError(f"--anchors: unknown cache {unknown[0]!r} (dynamic, static, or an empty string for none)")
    return anchors


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
    parser.add_argument(
        "--anchor-batch-size",
        type=int,
        help="batch of the stock anchors (default --batch-size); ours runs at it too when it differs",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json-out", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile-out",
        type=Path,
        help="after the figures, profile our generation (phase breakdown of all N, torch.profiler of --profile-n) here",
    )
    parser.add_argument("--profile-n", type=int, default=64, help="questions under torch.profiler (one batch)")
    parser.add_argument(
        "--liger",
        action="store_true",
        help="after the other runs, ours again with Liger's fused RMSNorm/RoPE/SwiGLU (CUDA, pip install liger-kernel)",
    )
    args = parser.parse_args(argv)
    if args.liger and args.profile_out:
        parser.error("--liger and --profile-out: profile in a run of its own (the profile is of the unfused model)")
    if args.profile_out and args.profile_out.is_dir():
        parser.error(f"--profile-out {args.profile_out} is a folder; name a file in it, e.g. profile.txt")
    if args.profile_n < 1:
        parser.error(f"--profile-n must be at least 1, got {args.profile_n}")
    if args.anchor_batch_size is not None and args.anchor_batch_size < 1:
        parser.error(f"--anchor-batch-size must be at least 1, got {args.anchor_batch_size}")
    # Checked before any run: an unknown name (say '' quoted inside a shell variable, which arrives as
    # the two characters '') would otherwise stop the script after the timed runs, before their JSON.
    try:
        anchors = parse_anchors(args.anchors)
    except ValueError as error:
        parser.error(str(error))

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model_dir, device=args.device)
    rows = spider_prompt_rows(args.spider_dir, tokenizer, args.n, args.style)
    device = model.device
    report: dict = {
        "device": report_device(device),
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
    anchor_batch = args.anchor_batch_size or args.batch_size
    if anchors and anchor_batch != args.batch_size:
        _, report["ours_at_anchor_batch"] = time_ours(model, tokenizer, rows, args, True, anchor_batch)
        print(f"generate_sql at the anchors' batch {anchor_batch}:", json.dumps(report["ours_at_anchor_batch"]))
    for cache in anchors:
        try:
            anchor = time_anchor(
                model, tokenizer, rows, args.max_new_tokens, anchor_batch, None if cache == "dynamic" else "static"
            )
        except Exception as error:  # the stock tool failing (out of memory, a compile error) is a figure too
            report[f"hf_{cache}"] = {
                "cache": cache,
                "batch_size": anchor_batch,
                "error": f"{type(error).__name__}: {error}"[:500],
            }
            print(f"HF generate, batched, {cache} cache, failed:", json.dumps(report[f"hf_{cache}"]))
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        anchor["ours_ratio"] = round(report["ours"]["q_per_s"] / anchor["q_per_s"], 2)
        same_batch = report.get("ours_at_anchor_batch", report["ours"])
        anchor["same_batch_ratio"] = round(same_batch["q_per_s"] / anchor["q_per_s"], 2)
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
    if args.liger:
        apply_liger_kernels(model)
        fused, report["ours_liger"] = time_ours(model, tokenizer, rows, args, True)
        report["ours_liger"]["ratio_to_unfused"] = round(report["ours_liger"]["q_per_s"] / report["ours"]["q_per_s"], 2)
        report["ours_liger"]["tokens_equal_unfused"] = sum(
            a["output_token_ids"] == b["output_token_ids"] for a, b in zip(results, fused, strict=True)
        )
        print("generate_sql (CUDA graphs, Liger's fused kernels):", json.dumps(report["ours_liger"]))
    print("BENCH_RESULT " + json.dumps(report))
    if args.json_out:
        write_json(args.json_out, report)
    if args.profile_out:
        # After the figures: a profile that fails must not lose the timed run.
        text, data = profile_phases(model, tokenizer, rows, args, report["ours"], results)
        print(text)
        args.profile_out.parent.mkdir(parents=True, exist_ok=True)
        args.profile_out.write_text(text + "\n\nPHASES_JSON " + json.dumps(data) + "\n")
        operators = profile_operators(model, tokenizer, rows, args)
        with args.profile_out.open("a") as out:
            out.write("\n" + operators + "\n")
        print(f"profile: {args.profile_out}")
    return report


if __name__ == "__main__":
    main()
