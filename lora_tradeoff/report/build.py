"""The report: what each fine-tuned run (LoRA, QLoRA, full) buys (Spider EX) and costs (MMLU), with its cost.

:func:`write_report` runs the report's steps in order, each in its own module:

1. inputs (:mod:`lora_tradeoff.report.inputs`): the files the other rules write, read once;
   nothing is re-scored;
2. statistics (:mod:`lora_tradeoff.report.summary`, with :mod:`lora_tradeoff.stats`): every
   number, as ``summary.json``, with the trade-off frontier (:mod:`lora_tradeoff.report.frontier`); each
   headline number and each frontier row's changes are also recomputed straight from the
   per-item CSV rows (:mod:`lora_tradeoff.report.checks`) and a report whose numbers disagree
   with those rows is not written;
3. sections (:mod:`lora_tradeoff.report.sections`, one renderer per section of ``summary.md``),
   failure examples (:mod:`lora_tradeoff.report.failures`), the same Markdown as HTML pages for
   ``snakemake --report`` (:mod:`lora_tradeoff.report.html`) and figures
   (:mod:`lora_tradeoff.report.plots`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lora_tradeoff.report.checks import headline_mismatches, recompute_from_items
from lora_tradeoff.report.failures import FAILURE_RULE, failure_examples, render_failure_examples
from lora_tradeoff.report.html import html_page
from lora_tradeoff.report.inputs import BASELINE, ReportInputs
from lora_tradeoff.report.plots import plot_all
from lora_tradeoff.report.sections import render_headline, render_summary
from lora_tradeoff.report.summary import build_summary

# Files write_report() writes into its output folder besides the figures (rules/report.smk lists the same names).
TABLE_FILES = (
    "summary.md",
    "summary.json",
    "failure_examples.md",
    "failure_examples.json",
    # The same tables as HTML pages, shown inside `snakemake --report` (lora_tradeoff/report/html.py).
    "summary.html",
    "headline.html",
    "failure_examples.html",
)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_report(
    inputs: ReportInputs,
    out_dir: Path | str,
    baseline: str = BASELINE,
    prompt_styles: Mapping[str, str] | None = None,
    n_resamples: int = 10_000,
    seed: int = 1234,
    replicates: Mapping[str, Sequence[str]] | None = None,
    checkpoints: Mapping[str, Mapping[str, Any]] | None = None,
    n_shot: int = 4,
    sweeps: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write :data:`TABLE_FILES` and every figure of :data:`lora_tradeoff.report.plots.FIGURES` into ``out_dir``.

    The arguments after ``out_dir`` are those of :func:`lora_tradeoff.report.summary.build_summary`.
    Raises ValueError, writing nothing, when a summary number disagrees with its recomputation
    from the per-item files the inputs were read from. Returns the summary.
    """
    summary = build_summary(inputs, baseline, prompt_styles, n_resamples, seed, replicates, checkpoints, n_shot, sweeps)
    recomputed = recompute_from_items(
        inputs.item_paths["spider_scored"], inputs.item_paths["mmlu_scored"], baseline=baseline
    )
    problems = headline_mismatches(summary, recomputed)
    if problems:
        raise ValueError("report numbers disagree with the per-item rows:\n  " + "\n  ".join(problems))
    examples = failure_examples(inputs.spider_scored, inputs.runs, baseline)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    summary_md, failures_md = render_summary(summary), render_failure_examples(examples, baseline)
    (out / "summary.md").write_text(summary_md)
    (out / "failure_examples.json").write_text(
        json.dumps({"rule": FAILURE_RULE, "examples": examples}, indent=2, default=_json_default) + "\n"
    )
    (out / "failure_examples.md").write_text(failures_md)
    (out / "summary.html").write_text(html_page("Fine-tuning trade-off report", summary_md))
    (out / "headline.html").write_text(html_page("Headline", "\n".join(render_headline(summary))))
    (out / "failure_examples.html").write_text(html_page("Failure examples", failures_md))
    plot_all(summary, inputs, out)
    return summary
