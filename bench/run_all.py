r"""Every benchmark from one command, one table: each model's figures, the stock tools beside them in
the same run, each target and whether it was met.

Runs, each in its own process (its peak memory is its own, and one that fails does not
stop the others), for every ``--model``:

* bench_generation.py  generate_sql on all of Spider dev (3-shot) in one batch, against the naive
                       one-prompt loop and stock batched HF ``generate`` (dynamic and static cache)
                       on the same prompts; our q/s as a ratio to each;
* bench_training.py    real (non-padding) training tokens/s and peak memory per configuration,
                       each as a ratio to a plain TRL ``SFTTrainer`` on padded batches (the anchor):
                       LoRA (benchmark ``training``), and full fine-tuning (``full_training``: ours
                       against plain TRL full fine-tuning on padded batches, its own anchor, on the
                       same data in the same run; each row says whether it fits the 24 GB card);
* bench_mmlu.py        seconds per model for the 150-question 4-shot suite, and on a GPU for the
                       whole test split (14,042 questions);

and once, since it needs no model:

* bench_scoring.py     execution-accuracy scoring of all Spider dev, gold and mutated.

    python bench/run_all.py --model qwen2.5-coder-1.5b=results/model/base \
        --model smollm2-135m=smol/results/model/base --out docs/benchmarks.md
    python bench/run_all.py --quick --model .cache/test-model/checkpoint ...   # CPU-sized runs

With several GPUs visible, the models run side by side, each on a GPU of its own (its
benchmarks one after another there); the table and its JSON are rewritten after every benchmark,
so a run cut short keeps what it measured.

A model is recognised by its architecture (config.json: model_type, hidden size, layers), which
sets its targets (those of the issues, GPU figures) and its training configurations (LoRA and
full); an unknown one gets the table without targets. On a CPU the table still prints, and a target that belongs to
a GPU reads "n/a (CPU)".
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.bench_training import CONFIGS as TRAINING_CONFIGS  # noqa: E402
from bench.bench_training import config_method  # noqa: E402
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


@dataclass(frozen=True)
class ModelProfile:
    """What the table knows of a model it recognises: a label, its targets and its training configs.

    ``training_memory_gb``: the training target is judged on the fastest configuration whose peak
    memory is within it (None: on the fastest of all). ``training_anchor`` is the plain TRL
    configuration every LoRA training figure is divided by; ``full_training_anchor`` the plain TRL
    full fine-tuning every full one is divided by (full fine-tuning has no target of its own: its
    rows say whether they fit ``training_memory_gb``).
    """

    label: str
    generation_qps: Target | None = None
    mmlu_seconds: Target | None = None
    mmlu_full_seconds: Target | None = None
    training_tokens_per_s: Target | None = None
    training_memory_gb: float | None = None
    training_configs: str = "padded,grouped-64,packed-flex"
    training_anchor: str = "padded"
    full_training_configs: str = "full-padded-32,full-grouped-32"
    full_training_anchor: str = "full-padded-32"


def _gpu(goal: float, at_least: bool) -> Target:
    return Target(goal, at_least=at_least, gpu_only=True)


# Keyed by (model_type, hidden_size, num_hidden_layers) of the checkpoint's config.json.
# Targets: issue "Speed on the real model" (generation all of dev 3-shot: Qwen >= 250 q/s, SmolLM2
# >= 300; MMLU 150 x 4-shot on Qwen <= 3 s, the whole test split <= 60 s) and the earlier speed
# issues (SmolLM2: MMLU 150 <= 5 s, training >= 100,000 real tokens/s; Qwen: >= 40,000 within 24 GB).
PROFILES: dict[tuple[str, int, int], ModelProfile] = {
    ("qwen2", 1536, 28): ModelProfile(
        "Qwen2.5(-Coder)-1.5B",
        generation_qps=_gpu(250, at_least=True),
        mmlu_seconds=_gpu(3, at_least=False),
        mmlu_full_seconds=_gpu(60, at_least=False),
        training_tokens_per_s=_gpu(40_000, at_least=True),
        training_memory_gb=24,
        training_configs="padded-16,packed-flex-128-gc",
        training_anchor="padded-16",
        # Full fine-tuning: plain TRL at batch 32 (with recomputation: without it a 1.5B model does not
        # fit 80 GB), config/frontier.yaml's micro-batch 16, and 8-bit AdamW for a 24 GB card.
        full_training_configs="full-padded-32-gc,full-grouped-16-gc,full-grouped-16-gc-8bit,full-grouped-8-gc-8bit",
        full_training_anchor="full-padded-32-gc",
    ),
    ("llama", 576, 30): ModelProfile(
        "SmolLM2-135M",
        generation_qps=_gpu(300, at_least=True),
        mmlu_seconds=_gpu(5, at_least=False),
        training_tokens_per_s=_gpu(100_000, at_least=True),
        training_configs="padded,grouped-64-liger,packed-flex",
        # Full fine-tuning of 135M parameters needs no recomputation (the profile's default configs).
    ),
}
# On a CPU (no --training-configs / --full-training-configs): configurations that train there
# (no flex attention, Liger or 8-bit optimizer), SmolLM2's anchors among them.
CPU_TRAINING_CONFIGS = "padded,grouped"
CPU_FULL_TRAINING_CONFIGS = "full-padded-32,full-grouped-32"
SCORING_SECONDS = Target(5, at_least=False, gpu_only=False)


def model_profile(model_dir: Path) -> ModelProfile:
    """The profile of the checkpoint in ``model_dir`` (its config.json), or one without targets.

    Raises ValueError naming the folder when it holds no config.json or one that is not a JSON object.
    """
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{model_dir} holds no config.json: --model needs a Hugging Face checkpoint folder")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_file} is not JSON ({error}): is {model_dir} a Hugging Face checkpoint?") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} is not a JSON object: is {model_dir} a Hugging Face checkpoint?")
    key = (config.get("model_type"), config.get("hidden_size"), config.get("num_hidden_layers"))
    if key in PROFILES:
        return PROFILES[key]
    if None in key:
        return ModelProfile("architecture not recognised: config.json lacks model_type, hidden_size or layers")
    return ModelProfile(f"{key[0]}, {key[2]} layers x {key[1]}")


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def parse_model(text: str) -> tuple[str, Path]:
    """argparse type for ``--model``: ``NAME=DIR`` or ``DIR`` (named by its folder).

    NAME is letters, digits, '.', '_' and '-' (it names log files and table rows); text whose part
    before the first '=' is not such a name is all DIR (a folder may contain '=').
    """
    name, equals, folder = text.partition("=")
    if not (equals and MODEL_NAME.fullmatch(name)):
        name, folder = "", text
    if not folder:
        raise argparse.ArgumentTypeError(f"{text!r} names no folder: give NAME=DIR or DIR")
    path = Path(folder)
    name = name or path.resolve().name
    if not MODEL_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{text!r}: the folder's name {name!r} cannot name a model (letters, digits, '.', '_', '-'); give NAME=DIR"
        )
    return name, path


def run_bench(
    script: str, arguments: list[str], json_out: Path, log: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``bench/<script>`` with ``arguments`` (and ``env``), output to ``log``; its JSON figures.

    Raises BenchFailed when it exits non-zero or writes no JSON (its last lines go to stderr)."""
    command = [sys.executable, str(BENCH / script), *arguments]
    started = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, text=True, env=env)
    gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if env else ""
    seconds = time.perf_counter() - started
    print(f"{script}{gpu}: exit {process.returncode} in {seconds:.0f} s (log {log})", flush=True)
    if process.returncode != 0 or not json_out.exists():
        print("".join(log.read_text().splitlines(keepends=True)[-15:]), file=sys.stderr)
        raise BenchFailed(f"exit {process.returncode}, see {log}")
    return json.loads(json_out.read_text())


class BenchFailed(Exception):
    """A benchmark's process failed or wrote no figures; the message names its exit status and log."""


def _row(figure: str, value: float | None, target: Target | None = None, detail: str = "") -> dict[str, Any]:
    return {"figure": figure, "value": value, "target": target, "detail": detail}


def rows_for_generation(report: dict[str, Any] | None, profile: ModelProfile) -> list[dict[str, Any]]:
    """Our q/s (judged), the naive loop, and each stock anchor with our ratio to it."""
    if report is None:
        return [_row("generate_sql q/s", None, profile.generation_qps)]
    ours, naive = report["ours"], report["naive"]
    setting = (
        f"{report['prompts']} {report['style']} dev prompts (mean {report['mean_prompt_tokens']} tokens), "
        f"batch {report['batch_size']}, max_new_tokens {report['max_new_tokens']}, {report['dtype']}"
    )
    rows = [
        _row(
            f"generate_sql q/s, batch {report['batch_size']}",
            ours["q_per_s"],
            profile.generation_qps,
            f"{setting}; {ours['seconds']} s; {ours['new_tokens_per_s']} new tok/s; peak {ours['peak_memory']}",
        )
    ]
    same_batch = report.get("ours_at_anchor_batch")
    if same_batch:
        rows.append(
            _row(
                f"generate_sql q/s, batch {same_batch['batch_size']} (the anchors' batch)",
                same_batch["q_per_s"],
                detail=f"{same_batch['seconds']} s; peak {same_batch['peak_memory']}",
            )
        )
    for cache in ("dynamic", "static"):
        anchor = report.get(f"hf_{cache}")
        if not anchor:
            continue
        if "error" in anchor:
            rows.append(
                _row(f"stock HF generate q/s, batched, {cache} cache", None, detail=f"failed: {anchor['error']}")
            )
            continue
        detail = (
            f"same {anchor['prompts']} prompts, batch {anchor.get('batch_size', report['batch_size'])}, stops at ';'; "
            f"{anchor['seconds']} s; generate_sql is **{anchor['ours_ratio']}x**"
        )
        if same_batch:
            detail += f" (at the same batch {anchor['same_batch_ratio']}x)"
        if "compile_seconds" in anchor:
            detail += (
                f"; padded to {anchor['padded_to_tokens']} tokens for one compiled shape, whose first batch "
                f"took {anchor['compile_seconds']} s with the compile, not counted ({anchor['q_per_s_with_compile']} "
                "q/s counting it)"
            )
        rows.append(
            _row(
                f"stock HF generate q/s, batched, {cache} cache",
                anchor["q_per_s"],
                detail=f"{detail}; peak {anchor['peak_memory']}",
            )
        )
    rows.append(
        _row(
            "naive loop q/s",
            naive["q_per_s"],
            detail=f"first {naive['prompts']} prompts, one at a time; {naive['new_tokens_per_s']} new tok/s; "
            f"generate_sql is {report['speedup_vs_naive']}x; token-identical to it (cut at our stop): "
            f"{ours['token_identical_to_naive']}",
        )
    )
    if "ours_eager" in report:
        rows.append(
            _row(
                "generate_sql q/s without CUDA graphs",
                report["ours_eager"]["q_per_s"],
                detail=f"graph tokens equal eager on {report['graph_tokens_equal_eager']}/{report['prompts']} prompts",
            )
        )
    return rows


def _method(row: dict[str, Any]) -> str:
    """A bench_training row's fine-tuning method: its own, or its config's (rows written before it was recorded)."""
    if isinstance(row.get("method"), str):
        return row["method"]
    return config_method(row["config"]) if row.get("config") in TRAINING_CONFIGS else "lora"


def rows_for_training(table: list[dict[str, Any]] | None, profile: ModelProfile) -> list[dict[str, Any]]:
    """Each LoRA configuration's real tokens/s as a ratio to the plain TRL anchor; the target judged on
    the fastest configuration within the profile's memory (or the fastest of all). Full fine-tuning
    rows in ``table`` (named in --training-configs) follow, divided by the full anchor."""
    lora = [row for row in table or [] if _method(row) == "lora"]
    full = [row for row in table or [] if _method(row) == "full"]
    return (_lora_rows(lora, profile) if lora or not full else []) + (_full_rows(full, profile) if full else [])


def rows_for_full_training(table: list[dict[str, Any]] | None, profile: ModelProfile) -> list[dict[str, Any]]:
    """Each full fine-tuning configuration's real tokens/s and peak memory as ratios to plain TRL full
    fine-tuning (the full anchor), and whether it fits the profile's memory."""
    return _full_rows([row for row in table or [] if _method(row) == "full"], profile)


def _measured_and_failed(table: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    measured = [row for row in table if isinstance(row.get("tokens_per_s"), (int, float))]
    return measured, [row for row in table if isinstance(row.get("error"), str)]


def _failed_rows(failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_row(f"real tokens/s, {row['config']}", None, detail=f"failed: {row['error']}") for row in failed]


def _lora_rows(table: list[dict[str, Any]], profile: ModelProfile) -> list[dict[str, Any]]:
    measured, failed = _measured_and_failed(table)
    if not measured:
        detail = "; ".join(f"{row['config']}: {row['error']}" for row in failed)
        return [_row("real tokens/s", None, profile.training_tokens_per_s, detail)]
    cap = profile.training_memory_gb
    eligible = [row for row in measured if cap is None or row["peak_mem_gb"] <= cap]
    judged = max(eligible, key=lambda row: row["tokens_per_s"]) if eligible else None
    anchor = next((row for row in measured if row["config"] == profile.training_anchor), None)
    rows = []
    for row in measured:
        detail = (
            f"batch {row['batch']}, peak {row['peak_mem_gb']} GB ({row['peak_mem_kind']}), {row['step_ms']} ms/step"
        )
        if row is anchor:
            detail += "; the plain TRL SFTTrainer on padded batches (the anchor)"
        elif anchor:
            detail += f"; **{row['tokens_per_s'] / anchor['tokens_per_s']:.2f}x** the anchor ({anchor['config']})"
        if row is judged and cap is not None:
            detail += f"; the fastest within {cap:g} GB"
        target = profile.training_tokens_per_s if row is judged else None
        rows.append(_row(f"real tokens/s, {row['config']}", row["tokens_per_s"], target, detail))
    if judged is None and profile.training_tokens_per_s:
        rows.append(_row(f"real tokens/s within {cap:g} GB", None, profile.training_tokens_per_s, "no configuration"))
    return rows + _failed_rows(failed)


def _full_rows(table: list[dict[str, Any]], profile: ModelProfile) -> list[dict[str, Any]]:
    """Full fine-tuning: no target; each row's ratios to the full anchor and, for GPU memory, its fit."""
    measured, failed = _measured_and_failed(table)
    if not measured:
        detail = "; ".join(f"{row['config']}: {row['error']}" for row in failed)
        return [_row("real tokens/s, full fine-tuning", None, detail=detail)]
    cap = profile.training_memory_gb

    def judged(row: dict[str, Any]) -> bool:  # GPU memory against a cap; a CPU's process RSS is no card's
        return cap is not None and row["peak_mem_kind"] == "cuda allocated"

    fitting = [row for row in measured if judged(row) and row["peak_mem_gb"] <= cap]
    fastest = max(fitting, key=lambda row: row["tokens_per_s"]) if fitting else None
    anchor = next((row for row in measured if row["config"] == profile.full_training_anchor), None)
    rows = []
    for row in measured:
        reserved = f", {row['peak_reserved_gb']} GB reserved" if row.get("peak_reserved_gb") is not None else ""
        detail = (
            f"batch {row['batch']}, optim {row.get('optim', '?')}, peak {row['peak_mem_gb']} GB "
            f"({row['peak_mem_kind']}{reserved}), {row['step_ms']} ms/step"
        )
        if row is anchor:
            detail += "; the plain TRL SFTTrainer, full fine-tuning on padded batches (the full anchor)"
        elif anchor:
            detail += (
                f"; **{row['tokens_per_s'] / anchor['tokens_per_s']:.2f}x** the full anchor's tokens/s "
                f"({anchor['config']}) at {row['peak_mem_gb'] / anchor['peak_mem_gb']:.2f}x its peak memory"
            )
        if judged(row):
            detail += f"; {'fits' if row['peak_mem_gb'] <= cap else 'over'} {cap:g} GB"
            if row is fastest:
                detail += f", the fastest within {cap:g} GB"
        rows.append(_row(f"real tokens/s, {row['config']}", row["tokens_per_s"], detail=detail))
    return rows + _failed_rows(failed)


def _mmlu_rows(figure: str, report: dict[str, Any] | None, target: Target | None) -> list[dict[str, Any]]:
    if report is None:
        return [_row(figure, None, target)]
    forwards = f", {report['forwards']} forwards" if report.get("forwards") else ""
    detail = (
        f"{report['questions']} questions, 4-shot log-likelihood, batch {report['batch_size']}{forwards}; "
        f"{report['questions_per_second']} q/s; accuracy {report['accuracy']}; peak {report['peak_memory_mib']} MiB"
    )
    return [_row(figure, report["seconds"], target, detail)]


def rows_for_mmlu(report: dict[str, Any] | None, profile: ModelProfile) -> list[dict[str, Any]]:
    suite = "suite" if report is None else report["questions"]  # 150, or 15 with --quick
    return _mmlu_rows(f"MMLU {suite} x 4-shot, seconds", report, profile.mmlu_seconds)


def rows_for_mmlu_full(report: dict[str, Any] | None, profile: ModelProfile) -> list[dict[str, Any]]:
    return _mmlu_rows("MMLU whole test split, seconds", report, profile.mmlu_full_seconds)


def rows_for_scoring(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    if report is None:
        return [_row("seconds for all of dev (x2)", None, SCORING_SECONDS)]
    detail = f"{report['pairs']} pairs (gold and mutated, all dev) with {report['workers']} workers: "
    return [
        _row(
            "seconds for all of dev (x2)",
            report["seconds"],
            SCORING_SECONDS,
            detail + f"{report['pairs_per_s']} pairs/s",
        )
    ]


def markdown_table(rows: list[dict[str, Any]], on_gpu: bool) -> str:
    """One line per row: model, benchmark, figure, value, target, met, setting."""
    lines = ["| model | benchmark | figure | value | target | met | setting |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        target: Target | None = row["target"]
        value = row["value"]
        shown = "—" if value is None else f"{value:,}"
        lines.append(
            f"| {row.get('model', '')} | {row.get('benchmark', '')} | {row['figure']} | {shown} | "
            f"{target.describe() if target else ''} | {target.met(value, on_gpu) if target else ''} | "
            f"{row.get('detail', '')} |"
        )
    return "\n".join(lines)


# name -> (script, the option that names its JSON output, rows from its figures)
MODEL_BENCHES: dict[str, tuple[str, str, Callable[[Any, ModelProfile], list[dict[str, Any]]]]] = {
    "generation": ("bench_generation.py", "--json-out", rows_for_generation),
    "training": ("bench_training.py", "--out", rows_for_training),
    "full_training": ("bench_training.py", "--out", rows_for_full_training),
    "mmlu": ("bench_mmlu.py", "--json-out", rows_for_mmlu),
    "mmlu_full": ("bench_mmlu.py", "--json-out", rows_for_mmlu_full),
}


def bench_arguments(
    name: str, args: argparse.Namespace, model_dir: Path, profile: ModelProfile, on_gpu: bool
) -> list[str]:
    """The command-line arguments of benchmark ``name`` for one model (GPU-sized, or CPU-sized with --quick)."""
    model = ["--model-dir", str(model_dir)]
    if name == "generation":
        sizes = ["--n", "8", "--reference-n", "2", "--batch-size", "8", "--max-new-tokens", "32"]
        if not args.quick:
            # All of dev in one batch; the stock anchors at 512, where the dynamic cache still fits an H200.
            sizes = ["--n", "1034", "--reference-n", "4", "--batch-size", "1034", "--anchor-batch-size", "512"]
            sizes += ["--max-new-tokens", "128"]
        return [*model, "--spider-dir", str(args.spider_dir), *sizes, "--anchors", args.anchors]
    if name in ("training", "full_training"):
        if name == "training":
            configs = args.training_configs or (profile.training_configs if on_gpu else CPU_TRAINING_CONFIGS)
        else:
            configs = args.full_training_configs or (
                profile.full_training_configs if on_gpu else CPU_FULL_TRAINING_CONFIGS
            )
        sizes = ["--warmup", "3", "--steps", "10"]
        if args.quick:
            sizes = ["--batch-size", "2", "--warmup", "1", "--steps", "2", "--limit", "64", "--max-seq-len", "512"]
        return [*model, "--spider-dir", str(args.spider_dir), "--configs", configs, *sizes]
    mmlu = [*model, "--mmlu-dir", str(args.mmlu_dir), "--pad-tolerance", "0.5"]
    if name == "mmlu":
        # The real-model config's settings (config/qwen2.5-coder-1.5b.yaml: batch 32, no shared prefix).
        sizes = ["--per-category", "5", "--batch-size", "8"] if args.quick else ["--batch-size", "32", "--warmup"]
        return [*mmlu, "--no-share-prefix", *sizes, *([] if args.quick else ["--repeats", "3"])]
    # mmlu_full: config/mmlu-full.yaml's settings.
    return [*mmlu, "--suite", "full", "--batch-size", "64"]


def visible_gpus(count: int) -> list[str]:
    """The ``count`` GPUs this process sees, as CUDA_VISIBLE_DEVICES names them for a child process."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [name.strip() for name in visible.split(",")] if visible else [str(index) for index in range(count)]
    names = [name for name in names if name]
    return names[:count]


def table_rows(raw: dict[str, Any], profiles: dict[str, ModelProfile]) -> list[dict[str, Any]]:
    """The rows of every figure in ``raw`` (run_all's JSON), model by model, then scoring."""
    rows: list[dict[str, Any]] = []
    for name, figures in raw["models"].items():
        label = f"{name} ({profiles[name].label})"
        for bench, (_, _, to_rows) in MODEL_BENCHES.items():
            if bench in figures:
                bench_rows = to_rows(figures[bench], profiles[name])
                rows += [{"model": label, "benchmark": bench, **_failed(row, raw, name, bench)} for row in bench_rows]
    if "scoring" in raw:
        bench_rows = rows_for_scoring(raw["scoring"])
        rows += [
            {"model": "(no model)", "benchmark": "scoring", **_failed(row, raw, "", "scoring")} for row in bench_rows
        ]
    return rows


def _failed(row: dict[str, Any], raw: dict[str, Any], name: str, bench: str) -> dict[str, Any]:
    """``row``, its setting saying where the failure's log is when benchmark ``bench`` failed."""
    failure = raw.get("failures", {}).get(f"{name}/{bench}")
    if failure and row["value"] is None and not row["detail"]:
        row = {**row, "detail": f"failed: {failure}"}
    return row


def render(raw: dict[str, Any], profiles: dict[str, ModelProfile], on_gpu: bool) -> str:
    """The markdown table of ``raw``, under a line naming the device, torch and how the models ran."""
    title = f"Benchmarks on {raw['device']} (torch {raw['torch']}{', quick sizes' if raw['quick'] else ''})"
    if raw["side_by_side_gpus"] > 1:
        title += f"; models side by side, each on a GPU of its own ({raw['side_by_side_gpus']} GPUs)"
    return f"{title}\n\n{markdown_table(table_rows(raw, profiles), on_gpu)}"


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> set[str]:
    """Everything that can be checked before any benchmark runs (parser.error names the option);
    the benchmarks ``--only`` names."""
    names = [name for name, _ in args.models]
    if len(set(names)) < len(names):
        parser.error(f"--model: two models named alike in {names}; name them, e.g. --model qwen=DIR")
    only = args.only.split(",")
    known = [*MODEL_BENCHES, "scoring"]
    unknown = [name for name in only if name not in known]
    if unknown:
        parser.error(f"--only: unknown benchmark {unknown[0]!r}; known: {', '.join(known)}")
    if args.anchors is not None:
        from bench.bench_generation import parse_anchors  # imports torch, as main does next

        try:
            parse_anchors(args.anchors)
        except ValueError as error:
            parser.error(str(error))
    if args.training_configs is not None:  # LoRA or full (full rows are divided by the full anchor)
        bad = [name for name in args.training_configs.split(",") if name not in TRAINING_CONFIGS]
        if bad:
            parser.error(f"--training-configs: unknown config {bad[0]!r}; known: {', '.join(TRAINING_CONFIGS)}")
    if args.full_training_configs is not None:
        full = [name for name in TRAINING_CONFIGS if config_method(name) == "full"]
        for name in args.full_training_configs.split(","):
            if name not in full:
                why = "a LoRA config (name it in --training-configs)" if name in TRAINING_CONFIGS else "unknown config"
                parser.error(f"--full-training-configs: {why} {name!r}; known: {', '.join(full)}")
    needs = {"spider_dir": {"generation", "training", "full_training", "scoring"}, "mmlu_dir": {"mmlu", "mmlu_full"}}
    for option, benches in needs.items():
        folder = getattr(args, option)
        if benches & set(only) and not folder.is_dir():
            flag = "--" + option.replace("_", "-")
            parser.error(f"{flag} {folder} is not a folder: point it at the data (default ../shared/data/...)")
    if args.out is not None:
        if args.out.is_dir():
            parser.error(
                f"--out {args.out} is a folder; name the table's file in it, e.g. {args.out / 'benchmarks.md'}"
            )
        if args.out.suffix == ".json":
            parser.error(f"--out {args.out}: the figures go to a .json beside the table; name the table, e.g. .md")
        try:
            (args.out.parent / "bench-logs").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            parser.error(f"--out {args.out}: cannot write there ({error})")
    return set(only)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        "--model-dir",
        dest="models",
        action="append",
        type=parse_model,
        required=True,
        help="NAME=DIR or DIR (an HF checkpoint folder, e.g. results/model/base); repeat for more models",
    )
    parser.add_argument("--spider-dir", type=Path, default=REPO.parent / "shared" / "data" / "spider")
    parser.add_argument("--mmlu-dir", type=Path, default=REPO.parent / "shared" / "data" / "mmlu")
    parser.add_argument("--quick", action="store_true", help="CPU-sized runs (minutes on 2 cores)")
    parser.add_argument(
        "--only",
        default=",".join([*MODEL_BENCHES, "scoring"]),
        help="comma-separated subset (mmlu_full runs on a GPU and not with --quick)",
    )
    parser.add_argument(
        "--anchors",
        help="bench_generation.py --anchors: stock HF generate by cache (default dynamic,static; dynamic with --quick)",
    )
    parser.add_argument(
        "--training-configs",
        help="bench_training.py --configs for every model, LoRA or full "
        f"(default: the model's own LoRA configs on CUDA; {CPU_TRAINING_CONFIGS} on CPU)",
    )
    parser.add_argument(
        "--full-training-configs",
        help="bench_training.py --configs of benchmark full_training for every model, full fine-tuning ones "
        f"(default: the model's own on CUDA; {CPU_FULL_TRAINING_CONFIGS} on CPU)",
    )
    parser.add_argument("--out", type=Path, help="write the table (markdown) and the raw figures (.json) here")
    args = parser.parse_args(argv)
    only = check_arguments(parser, args)
    profiles = {}
    for name, folder in args.models:
        try:
            profiles[name] = model_profile(folder)
        except ValueError as error:
            parser.error(f"--model {name}: {error}")
    if args.anchors is None:
        args.anchors = "dynamic" if args.quick else "dynamic,static"

    import torch

    on_gpu = torch.cuda.is_available()
    if (args.quick or not on_gpu) and "mmlu_full" in only:
        only.discard("mmlu_full")  # hours per model on a CPU
        print("mmlu_full left out: it runs on a GPU and not with --quick", file=sys.stderr)
        if not only:
            parser.error("--only mmlu_full: nothing left to run (the whole MMLU split runs on a GPU, without --quick)")
    gpus = visible_gpus(torch.cuda.device_count()) if on_gpu else []
    raw: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
        "torch": torch.__version__,
        "quick": args.quick,
        "side_by_side_gpus": min(len(gpus), len(args.models)),
        "models": {name: {"dir": str(folder), "label": profiles[name].label} for name, folder in args.models},
        "failures": {},
    }
    lock = threading.Lock()

    def write_outputs() -> str:
        """The table so far; written to --out after every benchmark, so a run cut short keeps its figures."""
        table = render(raw, profiles, on_gpu)
        if args.out:  # its folder was made by check_arguments, with bench-logs/ in it
            args.out.write_text(table + "\n")
            write_json(args.out.with_suffix(".json"), raw)
        return table

    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        log_dir = args.out.parent / "bench-logs" if args.out else scratch_dir
        free_gpus: queue.Queue[str] = queue.Queue()
        for gpu in gpus[: len(args.models)]:
            free_gpus.put(gpu)

        def bench_model(name: str, folder: Path) -> None:
            """One model's benchmarks, one after another, on a GPU of its own while it runs."""
            gpu = free_gpus.get() if gpus else None
            env = None if gpu is None else {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
            try:
                for bench, (script, out_option, _) in MODEL_BENCHES.items():
                    if bench in only:
                        out = scratch_dir / f"{name}-{bench}.json"
                        arguments = bench_arguments(bench, args, folder, profiles[name], on_gpu)
                        log = log_dir / f"{name}-{bench}.log"
                        try:
                            figures = run_bench(script, [*arguments, out_option, str(out)], out, log, env)
                        except BenchFailed as failure:
                            figures = None
                            raw["failures"][f"{name}/{bench}"] = str(failure)
                        with lock:
                            raw["models"][name][bench] = figures
                            write_outputs()
            finally:
                if gpu is not None:
                    free_gpus.put(gpu)

        with ThreadPoolExecutor(max_workers=max(1, raw["side_by_side_gpus"])) as pool:
            for done in [pool.submit(bench_model, name, folder) for name, folder in args.models]:
                done.result()
        if "scoring" in only:
            out = scratch_dir / "scoring.json"
            arguments = ["--spider-dir", str(args.spider_dir), "--json-out", str(out)]
            try:
                raw["scoring"] = run_bench("bench_scoring.py", arguments, out, log_dir / "scoring.log")
            except BenchFailed as failure:
                raw["scoring"] = None
                raw["failures"]["/scoring"] = str(failure)
    print(write_outputs())
    if raw["failures"]:
        failed = ", ".join(f"{key.strip('/')} ({why})" for key, why in raw["failures"].items())
        sys.exit(f"{len(raw['failures'])} benchmark(s) failed: {failed}")


if __name__ == "__main__":
    main()
