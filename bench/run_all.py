"""Every benchmark from one command, one table: each figure, its target and whether it was met.

Runs, each in its own process (its peak memory is its own, and one that fails does not
stop the others):

* bench_generation.py  generate_sql vs the naive one-prompt loop and stock batched HF
                       ``generate`` (dynamic and static cache), same prompts, same run;
* bench_training.py    real (non-padding) training tokens/s and peak memory per configuration;
* bench_mmlu.py        seconds per model for the 150-question 4-shot suite;
* bench_scoring.py     execution-accuracy scoring of all Spider dev, gold and mutated.

    python bench/run_all.py --model-dir results/model/base --out docs/results-h100/benchmarks.md
    python bench/run_all.py --quick ...     # CPU-sized: fewer prompts, questions and steps

The targets are those of the issues (GPU figures); on a CPU the table still prints, and a
target that belongs to a GPU reads "n/a (CPU)".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from lora_tradeoff.files import write_json  # noqa: E402


@dataclass(frozen=True)
class Target:
    """A figure's goal: ``value >= goal`` (``at_least``) or ``value <= goal``."""

    goal: float
    at_least: bool
    gpu_only: bool

    def describe(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.goal:g}"

    def met(self, value: float | None, on_gpu: bool) -> str:
        if value is None:
            return "no figure"
        if self.gpu_only and not on_gpu:
            return "n/a (CPU)"
        return "yes" if (value >= self.goal if self.at_least else value <= self.goal) else "NO"


GENERATION_QPS = Target(150, at_least=True, gpu_only=True)
TRAINING_TOKENS_PER_S = Target(100_000, at_least=True, gpu_only=True)
MMLU_SECONDS = Target(5, at_least=False, gpu_only=True)
SCORING_SECONDS = Target(5, at_least=False, gpu_only=False)


def run_bench(script: str, arguments: list[str], json_out: Path, log_dir: Path) -> dict[str, Any] | None:
    """Run ``bench/<script>`` with ``arguments``; its JSON figures, or None (its log says why)."""
    command = [sys.executable, str(BENCH / script), *arguments]
    started = time.perf_counter()
    log = log_dir / f"{Path(script).stem}.log"
    with log.open("w") as handle:
        process = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, text=True)
    print(f"{script}: exit {process.returncode} in {time.perf_counter() - started:.0f} s (log {log})", flush=True)
    if process.returncode != 0 or not json_out.exists():
        print("".join(log.read_text().splitlines(keepends=True)[-15:]), file=sys.stderr)
        return None
    return json.loads(json_out.read_text())


def rows_for_generation(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    if report is None:
        return [{"benchmark": "generation", "figure": "q/s", "value": None, "target": GENERATION_QPS}]
    ours, naive = report["ours"], report["naive"]
    setting = (
        f"{report['prompts']} {report['style']} dev prompts (mean {report['mean_prompt_tokens']} tokens), "
        f"batch {report['batch_size']}, max_new_tokens {report['max_new_tokens']}, {report['dtype']}"
    )
    rows = [
        {
            "benchmark": "generation",
            "figure": "generate_sql q/s",
            "value": ours["q_per_s"],
            "target": GENERATION_QPS,
            "detail": f"{setting}; {ours['new_tokens_per_s']} new tok/s; peak {ours['peak_memory']}",
        },
        {
            "benchmark": "generation",
            "figure": "naive loop q/s",
            "value": naive["q_per_s"],
            "target": None,
            "detail": f"first {naive['prompts']} prompts, one at a time; {naive['new_tokens_per_s']} new tok/s",
        },
        {
            "benchmark": "generation",
            "figure": "speed-up vs naive",
            "value": report["speedup_vs_naive"],
            "target": None,
            "detail": f"token-identical to naive (cut at our stop): {ours['token_identical_to_naive']}",
        },
    ]
    for cache in ("dynamic", "static"):
        anchor = report.get(f"hf_{cache}")
        if anchor:
            rows.append(
                {
                    "benchmark": "generation",
                    "figure": f"stock HF generate q/s, batched, {cache} cache",
                    "value": anchor["q_per_s"],
                    "target": None,
                    "detail": f"same {anchor['prompts']} prompts and batch, stops at ';'; "
                    f"generate_sql is **{anchor['ours_ratio']}x**; peak {anchor['peak_memory']}",
                }
            )
    if "ours_eager" in report:
        eager = report["ours_eager"]
        rows.append(
            {
                "benchmark": "generation",
                "figure": "generate_sql q/s without CUDA graphs",
                "value": eager["q_per_s"],
                "target": None,
                "detail": f"graph tokens equal eager on {report['graph_tokens_equal_eager']}/"
                f"{report['prompts']} prompts",
            }
        )
    return rows


def rows_for_training(table: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    measured = [row for row in table or [] if isinstance(row.get("tokens_per_s"), (int, float))]
    if not measured:
        return [
            {
                "benchmark": "training",
                "figure": "real tokens/s",
                "value": None,
                "target": TRAINING_TOKENS_PER_S,
                "detail": "; ".join(f"{row['config']}: {row.get('error')}" for row in table or []),
            }
        ]
    rows = []
    best = max(measured, key=lambda row: row["tokens_per_s"])
    for row in measured:
        rows.append(
            {
                "benchmark": "training",
                "figure": f"real tokens/s, {row['config']}",
                "value": row["tokens_per_s"],
                "target": TRAINING_TOKENS_PER_S if row is best else None,
                "detail": f"batch {row['batch']}, peak {row['peak_mem_gb']} GB ({row['peak_mem_kind']}), "
                f"{row['step_ms']} ms/step",
            }
        )
    for row in table or []:
        if "error" in row and isinstance(row["error"], str):
            rows.append(
                {
                    "benchmark": "training",
                    "figure": f"real tokens/s, {row['config']}",
                    "value": None,
                    "target": None,
                    "detail": f"failed: {row['error']}",
                }
            )
    return rows


def seconds_row(
    benchmark: str, figure: str, report: dict[str, Any] | None, target: Target, describe: Callable[[dict], str]
) -> list[dict[str, Any]]:
    """The one row of a benchmark whose figure is its ``seconds`` (None when it failed)."""
    value = None if report is None else report["seconds"]
    detail = "" if report is None else describe(report)
    return [{"benchmark": benchmark, "figure": figure, "value": value, "target": target, "detail": detail}]


def rows_for_mmlu(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    return seconds_row(
        "mmlu",
        "seconds per model",
        report,
        MMLU_SECONDS,
        lambda r: (
            f"{r['questions']} questions, 4-shot log-likelihood, batch {r['batch_size']}; "
            f"{r['questions_per_second']} q/s; peak {r['peak_memory_mib']} MiB"
        ),
    )


def rows_for_scoring(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    return seconds_row(
        "scoring",
        "seconds for all of dev (x2)",
        report,
        SCORING_SECONDS,
        lambda r: (
            f"{r['pairs']} pairs (gold and mutated, all dev) with {r['workers']} workers: {r['pairs_per_s']} pairs/s"
        ),
    )


def markdown_table(rows: list[dict[str, Any]], on_gpu: bool) -> str:
    lines = ["| benchmark | figure | value | target | met | setting |", "|---|---|---|---|---|---|"]
    for row in rows:
        target: Target | None = row["target"]
        value = row["value"]
        lines.append(
            f"| {row['benchmark']} | {row['figure']} | {'—' if value is None else f'{value:,}'} | "
            f"{target.describe() if target else ''} | {target.met(value, on_gpu) if target else ''} | "
            f"{row.get('detail', '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="HF checkpoint of the base model")
    parser.add_argument("--spider-dir", type=Path, default=REPO.parent / "shared" / "data" / "spider")
    parser.add_argument("--mmlu-dir", type=Path, default=REPO.parent / "shared" / "data" / "mmlu")
    parser.add_argument("--quick", action="store_true", help="CPU-sized runs (minutes on 2 cores)")
    parser.add_argument("--only", default="generation,training,mmlu,scoring", help="comma-separated subset")
    parser.add_argument(
        "--training-configs",
        help="bench_training.py --configs (default: grouped-64,grouped-64-liger,packed-flex on CUDA; "
        "padded,grouped on CPU)",
    )
    parser.add_argument("--out", type=Path, help="write the table (markdown) and the raw figures (.json) here")
    args = parser.parse_args()

    import torch

    on_gpu = torch.cuda.is_available()
    training_configs = args.training_configs or (
        "grouped-64,grouped-64-liger,packed-flex" if on_gpu else "padded,grouped"
    )
    device = torch.cuda.get_device_name(0) if on_gpu else "cpu"
    model = ["--model-dir", str(args.model_dir)]
    if args.quick:
        generation = ["--n", "8", "--reference-n", "2", "--batch-size", "8", "--max-new-tokens", "32"]
        training = ["--batch-size", "2", "--warmup", "1", "--steps", "2", "--limit", "64", "--max-seq-len", "512"]
        mmlu = ["--per-category", "5", "--batch-size", "8"]
    else:
        generation = ["--n", "1034", "--reference-n", "16", "--batch-size", "512", "--max-new-tokens", "128"]
        training = ["--warmup", "3", "--steps", "10"]
        mmlu = ["--per-category", "50", "--batch-size", "64", "--warmup", "--repeats", "3"]
    only = set(args.only.split(","))
    raw: dict[str, Any] = {"device": device}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        log_dir = args.out.parent / "bench-logs" if args.out else scratch_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        # (name, script, its arguments, the option that names its JSON output, the rows it gives)
        benches = [
            (
                "generation",
                "bench_generation.py",
                [*model, "--spider-dir", str(args.spider_dir), *generation],
                "--json-out",
                rows_for_generation,
            ),
            (
                "training",
                "bench_training.py",
                [*model, "--spider-dir", str(args.spider_dir), "--configs", training_configs, *training],
                "--out",
                rows_for_training,
            ),
            ("mmlu", "bench_mmlu.py", [*model, "--mmlu-dir", str(args.mmlu_dir), *mmlu], "--json-out", rows_for_mmlu),
            ("scoring", "bench_scoring.py", ["--spider-dir", str(args.spider_dir)], "--json-out", rows_for_scoring),
        ]
        for name, script, arguments, out_option, to_rows in benches:
            if name in only:
                out = scratch_dir / f"{name}.json"
                raw[name] = run_bench(script, [*arguments, out_option, str(out)], out, log_dir)
                rows += to_rows(raw[name])
    table = f"Benchmarks on {device} (torch {torch.__version__}{', quick sizes' if args.quick else ''})\n\n"
    table += markdown_table(rows, on_gpu)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
        write_json(args.out.with_suffix(".json"), raw)


if __name__ == "__main__":
    main()
