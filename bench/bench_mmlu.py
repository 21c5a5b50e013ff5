"""Time the MMLU regression suite: seconds per model for the 150 x 4-shot questions.

    .venv/bin/python bench/bench_mmlu.py --model-dir .cache/test-model/checkpoint --device auto

Prints load time, scoring seconds, questions per second and peak memory (CUDA:
peak allocated; CPU: peak resident set of the process, model included).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lora_tradeoff.files import write_json  # noqa: E402
from lora_tradeoff.inference.batching import PAD_TOLERANCE, check_pad_tolerance  # noqa: E402
from lora_tradeoff.inference.engine import _plan_batches, _rows_for_requests  # noqa: E402
from lora_tradeoff.mmlu.data import read_mmlu_csv_dir  # noqa: E402
from lora_tradeoff.mmlu.scoring import format_prompt, loglikelihood_requests, score_mmlu, target_delimiter  # noqa: E402
from lora_tradeoff.mmlu.suite import group_by_subject, select_suite  # noqa: E402
from lora_tradeoff.model.loading import load_model_and_tokenizer  # noqa: E402


def _pad_tolerance(text: str) -> float:
    """argparse type: a number within [0, 1], checked before the model loads."""
    try:
        return check_pad_tolerance(float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared with check_mmlu_against_reference.py: model, data, suite, scoring."""
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--adapter-dir", type=Path, default=None)
    parser.add_argument("--mmlu-dir", type=Path, default=REPO.parent / "shared" / "data" / "mmlu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--suite", choices=("per_category", "full"), default="per_category")
    parser.add_argument("--per-category", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--n-shot", type=int, default=4)
    parser.add_argument("--use-chat-template", action="store_true")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--share-prefix", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--pad-tolerance", type=_pad_tolerance, default=PAD_TOLERANCE, help="within [0, 1]; see BatchedEngine"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def load_suite(args: argparse.Namespace) -> tuple[object, object, list[dict], list[str]]:
    """``(model, tokenizer, items, prompts)`` for the suite the arguments describe."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model_dir, args.adapter_dir, device=args.device)
    items = select_suite(
        read_mmlu_csv_dir(args.mmlu_dir, "test"), suite=args.suite, per_category=args.per_category, seed=args.seed
    )
    dev = group_by_subject(read_mmlu_csv_dir(args.mmlu_dir, "dev"))
    prompts = [format_prompt(item, dev, args.n_shot, args.use_chat_template, tokenizer) for item in items]
    return model, tokenizer, items, prompts


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _profile(run: object, device: str, path: Path) -> None:
    """One more run under torch.profiler; its operators by total time, CPU and (CUDA) GPU."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        run()
        _synchronize(device)
    sort = "cuda_time_total" if device.startswith("cuda") else "cpu_time_total"
    tables = [prof.key_averages().table(sort_by=key, row_limit=40) for key in dict.fromkeys((sort, "cpu_time_total"))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(tables))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_suite_arguments(parser)
    parser.add_argument("--mode", choices=("loglik", "generate"), default="loglik")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs; the fastest is reported")
    parser.add_argument("--warmup", action="store_true", help="score 4 questions untimed first (CUDA kernels)")
    parser.add_argument("--json-out", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile-out", type=Path, help="also profile one run (torch.profiler) and write its top operators here"
    )
    args = parser.parse_args(argv)
    if args.profile_out and args.profile_out.is_dir():
        parser.error(f"--profile-out {args.profile_out} is a folder; name a file in it, e.g. profile.txt")

    import torch

    start = time.perf_counter()
    model, tokenizer, items, prompts = load_suite(args)
    load_seconds = time.perf_counter() - start
    device = str(model.device)

    def run() -> list[dict]:
        return score_mmlu(
            model,
            tokenizer,
            items,
            prompts,
            args.batch_size,
            mode=args.mode,
            delimiter=target_delimiter(args.use_chat_template),
            share_prefix=args.share_prefix,
            pad_tolerance=args.pad_tolerance,
        )

    if args.warmup:
        score_mmlu(model, tokenizer, items[:4], prompts[:4], args.batch_size, mode=args.mode)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    timings = []
    for _ in range(args.repeats):
        _synchronize(device)
        start = time.perf_counter()
        rows = run()
        _synchronize(device)
        timings.append(time.perf_counter() - start)
    seconds = min(timings)
    tokenize_seconds = forwards = None
    if args.mode == "loglik":
        # Where the time goes: tokenization (CPU) timed apart (in the run it overlaps the forwards, all but the
        # first subject's), and the number of forwards the plan makes (the same subject by subject).
        delimiter = target_delimiter(args.use_chat_template)
        groups = [item["subject"] if args.share_prefix else "" for item in items]
        start = time.perf_counter()
        requests = loglikelihood_requests(tokenizer, prompts, delimiter, groups)
        tokenize_seconds = round(time.perf_counter() - start, 2)
        plan = _plan_batches(_rows_for_requests(requests), args.batch_size, args.pad_tolerance)
        forwards = sum(len(chunks) + (prefix > 0) for prefix, chunks in plan)
    if device.startswith("cuda"):
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux: KiB
    report = {
        "device": device,
        "threads": torch.get_num_threads(),
        "mode": args.mode,
        "share_prefix": args.share_prefix,
        "batch_size": args.batch_size,
        "suite": args.suite,
        "questions": len(items),
        "prompt_tokens": sum(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]),
        "load_seconds": round(load_seconds, 2),
        "seconds": round(seconds, 2),
        "all_seconds": [round(t, 2) for t in timings],
        "questions_per_second": round(len(items) / seconds, 2),
        "pad_tolerance": args.pad_tolerance,
        "tokenize_seconds": tokenize_seconds,
        "forwards": forwards,
        "peak_memory_mib": round(peak_mib),
        "accuracy": round(sum(row["correct"] for row in rows) / len(rows), 4),
    }
    # The figures first: a profile that cannot be written must not lose the timed run.
    print(json.dumps(report))
    if args.json_out:
        write_json(args.json_out, report)
    if args.profile_out:
        _profile(run, device, args.profile_out)
        print(f"profile: {args.profile_out}")
    return report


if __name__ == "__main__":
    main()
