"""The report's numbers: every model's Spider and MMLU results and changes, and every run's cost.

:func:`build_summary` turns :class:`lora_tradeoff.report.inputs.ReportInputs` into one
JSON-ready dict (``summary.json``), which the sections (:mod:`lora_tradeoff.report.sections`)
and figures (:mod:`lora_tradeoff.report.plots`) render. The statistics are those of
:mod:`lora_tradeoff.stats`; Spider's change against the baseline is the same
:func:`lora_tradeoff.stats.paired_comparison` as each row of MMLU's regression.csv.

Units: accuracies (EX, MMLU) are percentages of questions; changes are percentage points
("points") against the baseline model, or percent of the baseline's accuracy where marked
relative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lora_tradeoff.report.frontier import frontier_rows, method_family, sweep_lines
from lora_tradeoff.report.inputs import BASE_ZERO_SHOT, BASELINE, ReportInputs
from lora_tradeoff.stats import OVERALL, paired_comparison, wilson_interval
from lora_tradeoff.training.curve import curve_rows
from lora_tradeoff.training.replicates import across_seeds


def _paired_spider(base: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Base and other model's scores side by side on the questions scored (not skipped) for both."""
    pairs = base[["id", "status", "score"]].merge(
        other[["id", "status", "score"]], on="id", suffixes=("_base", "_other"), validate="one_to_one"
    )
    if len(pairs) != len(base) or len(pairs) != len(other):
        raise ValueError("Spider tables of the baseline and another model cover different questions")
    return pairs[(pairs["status_base"] != "skipped") & (pairs["status_other"] != "skipped")]


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _spider_entry(model: str, inputs: ReportInputs, baseline: str, n_resamples: int, seed: int) -> dict[str, Any]:
    summary = inputs.spider_summary[model]
    entry: dict[str, Any] = {
        "ex_pct": _pct(summary["ex"]),
        **{key: summary[key] for key in ("n", "n_scored", "success", "failure", "skipped")},
        "by_hardness": {
            level: {"ex_pct": _pct(group["ex"]), **{k: v for k, v in group.items() if k != "ex"}}
            for level, group in summary["by_hardness"].items()
        },
        "by_reason_category": summary["by_reason_category"],
        "ignored_statements": summary.get("ignored_statements", 0),
    }
    pairs = _paired_spider(inputs.spider_scored[baseline], inputs.spider_scored[model])
    compared = paired_comparison(pairs["score_base"] == 1.0, pairs["score_other"] == 1.0, n_resamples, seed)
    entry.update(
        {
            "n_paired": compared.n,
            "delta_ex_points": 100 * (compared.accuracy - compared.base_accuracy) if compared.n else None,
            "delta_ci_low_points": 100 * compared.ci_low,
            "delta_ci_high_points": 100 * compared.ci_high,
            "base_only_correct": compared.base_only_correct,
            "other_only_correct": compared.other_only_correct,
            "mcnemar_p": compared.mcnemar_p,
            # :func:`minimum_detectable_difference` in points; None (JSON null, "n/a") where undefined.
            "mdd_points": None if math.isnan(compared.mdd) else 100 * compared.mdd,
        }
    )
    return entry


def _optional(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _mmlu_entry(model: str, inputs: ReportInputs) -> dict[str, Any]:
    rows = inputs.regression[inputs.regression["model"] == model]
    if rows.empty:
        raise ValueError(f"results/mmlu/regression.csv has no rows for model {model!r}")
    items = inputs.mmlu_scored[model]
    subjects: dict[str, Any] = {}
    if "level" in rows:
        for row in rows[rows["level"] == "subject"].to_dict("records"):
            subjects[row["subject"]] = {
                "category": row["category"],
                "n": int(row["n"]),
                "accuracy_pct": float(row["accuracy"]),
                "delta_points": float(row["delta_points"]),
                "ci_low_points": float(row["ci_low_points"]),
                "ci_high_points": float(row["ci_high_points"]),
                "mcnemar_p": float(row["mcnemar_p"]),
                "mdd_points": _optional(row["mdd_points"]),
            }
        rows = rows[rows["level"] != "subject"]
    categories: dict[str, Any] = {}
    for row in rows.to_dict("records"):
        subset = items if row["category"] == OVERALL else items[items["category"] == row["category"]]
        low, high = wilson_interval(int(subset["correct"].sum()), len(subset))
        categories[row["category"]] = {
            "n": int(row["n"]),
            "correct": int(subset["correct"].sum()),
            "accuracy_pct": float(row["accuracy"]),
            "wilson_low_pct": 100 * low,
            "wilson_high_pct": 100 * high,
            "delta_points": float(row["delta_points"]),
            "delta_relative_pct": None if pd.isna(row["delta_relative_pct"]) else float(row["delta_relative_pct"]),
            "ci_low_points": float(row["ci_low_points"]),
            "ci_high_points": float(row["ci_high_points"]),
            "base_only_correct": int(row["base_only_correct"]),
            "other_only_correct": int(row["other_only_correct"]),
            "mcnemar_p": float(row["mcnemar_p"]),
            "mdd_points": _optional(row.get("mdd_points")),
        }
    # Scored tables written before truncation was counted have no column: none was truncated then
    # either (a prompt over the context was scored as it was).
    truncated = int((items["truncated_tokens"] > 0).sum()) if "truncated_tokens" in items else 0
    return {"measured": True, "categories": categories, "subjects": subjects, "truncated_questions": truncated}


HYPERPARAMETER_KEYS = (
    "r",
    "alpha",
    "dropout",
    "target_modules",
    "layers_to_transform",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "weight_decay",
    "optim",
    "num_epochs",
    "max_steps",
    "per_device_batch_size",
    "grad_accumulation",
    "max_seq_len",
    "seed",
    "quantization",
    "packing",
    "gradient_checkpointing",
)


def hyperparameter_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters of one run from its hyperparams.json (the resolved spec and model facts)."""
    spec = record["spec"]
    return {
        "method_family": method_family(record),
        **{key: spec.get(key) for key in HYPERPARAMETER_KEYS},
        "effective_batch_size": record.get("effective_batch_size"),
        "resolved_target_modules": record.get("target_modules"),
        "bf16": record.get("bf16"),
        "trainable_parameters": record.get("trainable_parameters"),
        "total_parameters": record.get("total_parameters"),
        "trainable_share_pct": _pct(record.get("trainable_share")),
    }


def training_precision(record: Mapping[str, Any]) -> str | None:
    """How one run computed, from its hyperparams.json: the dtype of the model's weights as loaded
    (float32 for full fine-tuning's master weights; bfloat16, float16 or 4-bit for a frozen LoRA
    base), the trainable weights' dtype where it differs, the autocast (bf16, or fp16 with loss
    scaling) and the workflow's ``dtype`` setting where it was ``auto`` (records before that key
    existed say nothing of it)."""
    dtype = record.get("base_dtype")
    if dtype is None:
        return None
    parts = [f"{dtype} weights"]
    trainable = record.get("trainable_dtype")
    if trainable and trainable != dtype:
        parts.append(f"{trainable} trainable")
    if record.get("bf16"):
        parts.append("bf16 autocast")
    elif record.get("fp16"):
        parts.append("fp16 autocast + loss scaling")
    text = ", ".join(parts)
    if record.get("dtype_setting") == "auto" and record.get("dtype"):
        text += f" (dtype auto: {record['dtype']})"
    return text


def training_cost_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """What one run cost, from its hyperparams.json."""
    return {
        "device": record.get("device_name") or record.get("device"),
        "global_steps": record.get("global_steps"),
        "epochs": record.get("epochs"),
        "train_examples": record.get("train_examples"),
        "train_examples_too_long": record.get("train_examples_too_long"),
        "train_tokens_per_epoch": record.get("train_tokens_per_epoch"),
        "tokens_trained": record.get("tokens_trained_this_process"),
        "resumed": record.get("resumed"),
        "wall_time_s": record.get("wall_time_s"),
        "train_runtime_s": record.get("train_runtime_s"),
        "tokens_per_s": record.get("tokens_per_s"),
        "peak_gpu_memory_gb": record.get("peak_gpu_memory_gb"),
        "precision": training_precision(record),
        "final_loss": record.get("final_loss"),
        "versions": record.get("versions", {}),
    }


def mmlu_shots(summary: Mapping[str, Any]) -> str:
    """``"4-shot"``, ``"zero-shot"``: how the report names the MMLU prompts' solved examples."""
    n_shot = summary["mmlu_n_shot"]
    return "zero-shot" if n_shot == 0 else f"{n_shot}-shot"


def build_summary(
    inputs: ReportInputs,
    baseline: str = BASELINE,
    prompt_styles: Mapping[str, str] | None = None,
    n_resamples: int = 10_000,
    seed: int = 1234,
    replicates: Mapping[str, Sequence[str]] | None = None,
    checkpoints: Mapping[str, Mapping[str, Any]] | None = None,
    n_shot: int = 4,
    sweeps: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """All numbers of the report as one JSON-ready dict (see the module doc for units).

    ``spider[model]``: EX, raw success/failure/skipped counts, EX by hardness, and the change
    against ``baseline`` on the questions scored for both, with a paired bootstrap interval
    (``n_resamples``, ``seed``) and McNemar's exact p. ``mmlu[model]``: accuracy per category
    and overall with a Wilson interval, and the change, interval and p of regression.csv.
    ``base_zero_shot`` runs the base weights and MMLU prompts do not depend on the Spider prompt
    style, so it is not re-measured: its MMLU entry is ``{"measured": False, "same_as": base}``.
    ``replicates`` (``{run: [its seed replicates' run names]}``, see
    :mod:`lora_tradeoff.training.replicates`) gives ``replicates[run]``: :func:`replicate_entry`.
    ``checkpoints`` (``{model: {"run", "step"}}``, see :mod:`lora_tradeoff.training.curve`) names the
    models that are a run's adapter at a step; ``curve[run]`` is :func:`lora_tradeoff.training.curve.curve_rows`.
    ``sql_blocks``: the SQL blocks scored (config generation.sql_block; one value unless the
    models' summaries disagree).
    ``n_shot``: the MMLU prompts' solved examples (``config.mmlu.n_shot``), named in the prose.
    ``sweeps`` (``{sweep: {"keys", "runs", "values"}}``, see :mod:`lora_tradeoff.training.sweeps`) names the
    runs a hyper-parameter sweep made; ``frontier`` is :func:`lora_tradeoff.report.frontier.frontier_rows`
    (every run, its method family, swept values, Pareto flag and verdict) and ``frontier_lines``
    :func:`lora_tradeoff.report.frontier.sweep_lines`.
    Raises ValueError when the baseline has no Spider or MMLU results, or no Spider question scored.
    """
    if baseline not in inputs.spider_scored or baseline not in inputs.mmlu_scored:
        raise ValueError(f"the baseline {baseline!r} needs Spider and MMLU results")
    base_spider = inputs.spider_summary[baseline]
    if not base_spider["n_scored"]:
        # A question is skipped when its database is missing, and that is the same for every model.
        raise ValueError(
            f"Spider: none of the {base_spider['n']} dev questions of {baseline!r} was scored "
            f"({base_spider['skipped']} skipped: their databases are missing, see results/data/spider/databases.json), "
            "so there is no execution accuracy to compare; give spider the databases, or draw other questions "
            "(spider.dev_limit, spider.dev_seed)"
        )
    prompt_styles = dict(prompt_styles or {})
    spider = {m: _spider_entry(m, inputs, baseline, n_resamples, seed) for m in inputs.models}
    mmlu: dict[str, Any] = {}
    for model in inputs.models:
        if model in inputs.mmlu_scored:
            mmlu[model] = _mmlu_entry(model, inputs)
        elif model == BASE_ZERO_SHOT:
            mmlu[model] = {
                "measured": False,
                "same_as": baseline,
                "note": "same weights as the baseline; MMLU prompts do not depend on the Spider prompt style",
            }
        else:
            raise ValueError(f"no MMLU results for model {model!r}")
    categories = list(next(iter(mmlu.values()))["categories"]) if mmlu else []
    n_per_category = {c: mmlu[baseline]["categories"][c]["n"] for c in categories}
    checkpoints = dict(checkpoints or {})

    def changes(model: str) -> dict[str, Any]:
        return {
            "delta_spider_ex_points": spider[model]["delta_ex_points"],
            "spider_ci_low_points": spider[model]["delta_ci_low_points"],
            "spider_ci_high_points": spider[model]["delta_ci_high_points"],
            "delta_mmlu_overall_points": mmlu[model]["categories"][OVERALL]["delta_points"],
            "mmlu_ci_low_points": mmlu[model]["categories"][OVERALL]["ci_low_points"],
            "mmlu_ci_high_points": mmlu[model]["categories"][OVERALL]["ci_high_points"],
        }

    tradeoff = {run: changes(run) for run in inputs.runs}
    unmeasured = sorted(model for model in checkpoints if model not in spider or model not in inputs.mmlu_scored)
    if unmeasured:
        raise ValueError(f"checkpoints without Spider and MMLU results: {unmeasured}")
    curve = curve_rows(
        {**tradeoff, **{model: changes(model) for model in checkpoints}},
        checkpoints,
        {run: inputs.hyperparams[run].get("global_steps") for run in inputs.runs},
    )
    unknown = sorted({name for names in (replicates or {}).values() for name in names} - set(inputs.runs))
    if unknown:
        raise ValueError(f"replicates name runs without results: {unknown}")
    sweeps = {name: dict(entry) for name, entry in (sweeps or {}).items()}
    frontier = frontier_rows(inputs.runs, tradeoff, spider, mmlu, inputs.hyperparams, sweeps, replicates)
    return {
        "baseline": baseline,
        "base_model": describe_base_model(inputs.model_manifest),
        "models": inputs.models,
        "runs": inputs.runs,
        "replicates": {
            run: replicate_entry(names, tradeoff, inputs.hyperparams) for run, names in (replicates or {}).items()
        },
        "prompt_styles": {m: prompt_styles.get(m) for m in inputs.models},
        # Summaries written before generation.sql_block existed scored the first block.
        "sql_blocks": sorted({inputs.spider_summary[m].get("sql_block", "first") for m in inputs.models}),
        "spider": spider,
        "mmlu": mmlu,
        "mmlu_categories": categories,
        "mmlu_n_per_category": n_per_category,
        "mmlu_n_shot": n_shot,
        "tradeoff": tradeoff,
        "checkpoints": checkpoints,
        "curve": curve,
        "sweeps": sweeps,
        "frontier": frontier,
        "frontier_lines": sweep_lines(sweeps, frontier, replicates or {}),
        "hyperparameters": {run: hyperparameter_row(inputs.hyperparams[run]) for run in inputs.runs},
        "training_cost": {run: training_cost_row(inputs.hyperparams[run]) for run in inputs.runs},
        "intervals": {
            "bootstrap_resamples": n_resamples,
            "bootstrap_seed": seed,
            "delta": "95% paired percentile bootstrap of (model - baseline) accuracy over the same questions",
            "accuracy": "95% Wilson score interval of one model's accuracy",
        },
    }


def replicate_entry(
    names: Sequence[str], tradeoff: Mapping[str, Any], hyperparams: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """One run trained with several seeds: its replicates, and the spread of their changes.

    ``{"runs": names, "seeds": [each replicate's training seed, from hyperparams.json],
    "delta_spider_ex_points": ..., "delta_mmlu_overall_points": ...}``, each change as
    :func:`lora_tradeoff.training.replicates.across_seeds` of the replicates' changes (mean, sd, 95 %
    t-interval across seeds). Each replicate's own per-question interval is in ``tradeoff``.
    """
    return {
        "runs": list(names),
        "seeds": [hyperparams[name]["spec"].get("seed") for name in names],
        "delta_spider_ex_points": across_seeds([tradeoff[name]["delta_spider_ex_points"] for name in names]),
        "delta_mmlu_overall_points": across_seeds([tradeoff[name]["delta_mmlu_overall_points"] for name in names]),
    }


def describe_base_model(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the base model is and where it came from, from its manifest (``results/model/base_model.json``).

    Returns ``{architecture, n_parameters, source, origin, sha256}``; ``origin`` names the wheel(s),
    file, hub id or folder of the configured source, ``sha256`` the checked GGUF file's checksum
    (None for sources without one). An empty manifest gives an empty dict.
    """
    if not manifest:
        return {}
    source = manifest.get("source")
    if source == "gguf_wheel":
        wheel = manifest["wheel"]
        origin = f"{wheel['member']} in the PyPI wheel {wheel['package']}=={wheel['version']}"
    elif source == "gguf_wheel_parts":
        parts = manifest["parts"]
        origin = (
            f"a GGUF file split over {len(parts)} PyPI wheels, {parts[0]['package']} … {parts[-1]['package']} "
            f"({parts[0]['version']}), assembled in order"
        )
    elif source == "hf":
        origin = f"the hub model {manifest['id']} at revision {manifest.get('revision')}"
    elif source == "random_init":
        origin = (
            f"random weights in the architecture of {manifest.get('architecture')} (rehearsal: scores mean nothing)"
        )
    else:  # gguf_file, local
        origin = str(manifest.get("path"))
    return {
        "architecture": manifest.get("architecture"),
        "n_parameters": manifest.get("n_parameters"),
        "source": source,
        "origin": origin,
        "sha256": manifest.get("sha256"),
    }
