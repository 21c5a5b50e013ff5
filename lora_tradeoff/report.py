"""The report: what each LoRA run buys (Spider EX) and costs (MMLU), with its hyper-parameters and cost.

Inputs are the files the other rules write (see :func:`standard_paths`); nothing is
re-scored here. Every headline number is also recomputed straight from the per-item
CSV rows (:func:`recompute_headlines`) and :func:`write_report` refuses to write a
report whose numbers disagree with those rows.

Units: accuracies (EX, MMLU) are percentages of questions; changes are percentage
points ("points") against the baseline model, or percent of the baseline's accuracy
where marked relative.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lora_tradeoff.curve import curve_rows
from lora_tradeoff.replicates import across_seeds
from lora_tradeoff.spider_scoring import HARDNESS_LEVELS
from lora_tradeoff.stats import OVERALL, mcnemar_exact, minimum_detectable_difference, paired_bootstrap_ci

BASELINE = "base"
REFERENCE = "(reference)"  # the baseline's cells of a change against itself
BASE_ZERO_SHOT = "base_zero_shot"
Z_95 = 1.959963984540054
# Files write_report() writes into its output folder (rules/report.smk lists the same names).
FIGURES = ("mmlu_accuracy", "tradeoff", "tradeoff_curve", "spider_hardness", "train_loss")
FIGURE_FORMATS = ("png", "svg")
TABLE_FILES = ("summary.md", "summary.json", "failure_examples.md", "failure_examples.json")

# Failure examples: up to one question per kind, in this order, for every fine-tuned run.
FAILURE_KINDS: tuple[tuple[str, str], ...] = (
    ("regression", "the baseline answered it correctly, the run did not"),
    ("wrong_result", "the SQL ran but returned other rows (reason category wrong_result or row_count)"),
    ("exec_error", "the SQL did not run (reason category exec_error)"),
)
FAILURE_RULE = (
    "For every fine-tuned run, one question of each kind, in this order: "
    + "; ".join(f"({i}) {kind}: {text}" for i, (kind, text) in enumerate(FAILURE_KINDS, 1))
    + ". Of each kind the question with the lowest id is taken (ids are zero-padded, `dev-0042`, so string "
    "order is dev-set order), skipping questions already taken for an earlier kind of the same run; "
    "skipped questions (database missing) never qualify. A kind with no such question is left out."
)


# ----------------------------------------------------------------------------- inputs


@dataclass
class ReportInputs:
    """Everything the report reads, keyed by model (Spider, MMLU) or run (training)."""

    spider_scored: dict[str, pd.DataFrame]  # every evaluated model, baseline first
    spider_summary: dict[str, dict[str, Any]]
    mmlu_scored: dict[str, pd.DataFrame]  # baseline and runs (base_zero_shot has the base weights)
    regression: pd.DataFrame
    hyperparams: dict[str, dict[str, Any]]  # every fine-tuned run
    train_logs: dict[str, pd.DataFrame]
    # The base model's manifest (results/model/base_model.json): what the report says the model is.
    model_manifest: dict[str, Any] = field(default_factory=dict)
    # Where the per-item tables came from: recompute_from_items() reads them again, independently.
    item_paths: dict[str, dict[str, Path]] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(self.spider_scored)

    @property
    def runs(self) -> list[str]:
        return list(self.hyperparams)


def standard_paths(
    results_dir: Path | str, models: Sequence[str], mmlu_models: Sequence[str], runs: Sequence[str]
) -> dict[str, Any]:
    """The report's input paths in the workflow's layout under ``results_dir`` (keyword arguments of
    :func:`load_inputs`)."""
    root = Path(results_dir)
    return {
        "spider_scored": {m: root / m / "spider_scored.csv" for m in models},
        "spider_summary": {m: root / m / "spider_summary.json" for m in models},
        "mmlu_scored": {m: root / m / "mmlu_scored.csv" for m in mmlu_models},
        "regression": root / "mmlu" / "regression.csv",
        "hyperparams": {r: root / "runs" / r / "hyperparams.json" for r in runs},
        "train_logs": {r: root / "runs" / r / "train_log.csv" for r in runs},
        "model_manifest": root / "model" / "base_model.json",
    }


def _read_spider_scored(path: Path | str) -> pd.DataFrame:
    # keep_default_na=False: an empty prediction is "", not NaN; the numeric columns are converted below.
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["score"] = frame["score"].astype(float)
    return frame


def _read_mmlu_scored(path: Path | str) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame["correct"] = frame["correct"].astype(bool)
    return frame


def load_inputs(
    spider_scored: Mapping[str, Path | str],
    spider_summary: Mapping[str, Path | str],
    mmlu_scored: Mapping[str, Path | str],
    regression: Path | str,
    hyperparams: Mapping[str, Path | str],
    train_logs: Mapping[str, Path | str],
    model_manifest: Path | str | None = None,
) -> ReportInputs:
    """Read the files; the mapping order fixes the order of models and runs in every table and figure."""
    return ReportInputs(
        model_manifest=json.loads(Path(model_manifest).read_text()) if model_manifest else {},
        spider_scored={m: _read_spider_scored(p) for m, p in spider_scored.items()},
        spider_summary={m: json.loads(Path(p).read_text()) for m, p in spider_summary.items()},
        mmlu_scored={m: _read_mmlu_scored(p) for m, p in mmlu_scored.items()},
        regression=pd.read_csv(regression),
        hyperparams={r: json.loads(Path(p).read_text()) for r, p in hyperparams.items()},
        train_logs={r: pd.read_csv(p) for r, p in train_logs.items()},
        item_paths={
            "spider_scored": {m: Path(p) for m, p in spider_scored.items()},
            "mmlu_scored": {m: Path(p) for m, p in mmlu_scored.items()},
        },
    )


# ----------------------------------------------------------------------------- statistics


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion, as fractions; (nan, nan) for n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is not a point at 0 or n successes.
    """
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_half_width_points(n: int, discordant_share: float, z: float = Z_95) -> float:
    """Normal-approximation half-width, in points, of the paired-difference interval at no change.

    With a share ``d`` of questions on which exactly one of the two models is right and no net
    change, the difference of accuracies has standard error sqrt(d / n).
    """
    return 100 * z * math.sqrt(discordant_share / n)


def _paired_spider(base: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Base and other model's scores side by side on the questions scored (not skipped) for both."""
    pairs = base[["id", "status", "score"]].merge(
        other[["id", "status", "score"]], on="id", suffixes=("_base", "_other"), validate="one_to_one"
    )
    if len(pairs) != len(base) or len(pairs) != len(other):
        raise ValueError("Spider tables of the baseline and another model cover different questions")
    return pairs[(pairs["status_base"] != "skipped") & (pairs["status_other"] != "skipped")]


# ----------------------------------------------------------------------------- summary


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
    base_ok = pairs["score_base"].to_numpy() == 1.0
    other_ok = pairs["score_other"].to_numpy() == 1.0
    base_only, other_only = int(np.sum(base_ok & ~other_ok)), int(np.sum(~base_ok & other_ok))
    low, high = paired_bootstrap_ci(base_ok, other_ok, n_resamples, seed) if len(pairs) else (math.nan, math.nan)
    entry.update(
        {
            "n_paired": len(pairs),
            "delta_ex_points": 100 * (other_ok.mean() - base_ok.mean()) if len(pairs) else None,
            "delta_ci_low_points": 100 * low,
            "delta_ci_high_points": 100 * high,
            "base_only_correct": base_only,
            "other_only_correct": other_only,
            "mcnemar_p": mcnemar_exact(base_only, other_only),
            "mdd_points": _mdd_points(len(pairs), base_only + other_only) if model != baseline else None,
        }
    )
    return entry


def _mdd_points(n: int, discordant: int) -> float | None:
    """:func:`minimum_detectable_difference` in points; None where it is undefined (JSON null, "n/a")."""
    mdd = minimum_detectable_difference(n, discordant / n) if n else math.nan
    return None if math.isnan(mdd) else 100 * mdd


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
    return {"measured": True, "categories": categories, "subjects": subjects}


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
        **{key: spec.get(key) for key in HYPERPARAMETER_KEYS},
        "effective_batch_size": record.get("effective_batch_size"),
        "resolved_target_modules": record.get("target_modules"),
        "bf16": record.get("bf16"),
        "trainable_parameters": record.get("trainable_parameters"),
        "total_parameters": record.get("total_parameters"),
        "trainable_share_pct": _pct(record.get("trainable_share")),
    }


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
        "final_loss": record.get("final_loss"),
        "versions": record.get("versions", {}),
    }


def build_summary(
    inputs: ReportInputs,
    baseline: str = BASELINE,
    prompt_styles: Mapping[str, str] | None = None,
    n_resamples: int = 10_000,
    seed: int = 1234,
    replicates: Mapping[str, Sequence[str]] | None = None,
    checkpoints: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """All numbers of the report as one JSON-ready dict (see the module doc for units).

    ``spider[model]``: EX, raw success/failure/skipped counts, EX by hardness, and the change
    against ``baseline`` on the questions scored for both, with a paired bootstrap interval
    (``n_resamples``, ``seed``) and McNemar's exact p. ``mmlu[model]``: accuracy per category
    and overall with a Wilson interval, and the change, interval and p of regression.csv.
    ``base_zero_shot`` runs the base weights and MMLU prompts do not depend on the Spider prompt
    style, so it is not re-measured: its MMLU entry is ``{"measured": False, "same_as": base}``.
    ``replicates`` (``{run: [its seed replicates' run names]}``, see
    :mod:`lora_tradeoff.replicates`) gives ``replicates[run]``: :func:`replicate_entry`.
    ``checkpoints`` (``{model: {"run", "step"}}``, see :mod:`lora_tradeoff.curve`) names the
    models that are a run's adapter at a step; ``curve[run]`` is :func:`lora_tradeoff.curve.curve_rows`.
    """
    if baseline not in inputs.spider_scored or baseline not in inputs.mmlu_scored:
        raise ValueError(f"the baseline {baseline!r} needs Spider and MMLU results")
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
    return {
        "baseline": baseline,
        "base_model": describe_base_model(inputs.model_manifest),
        "models": inputs.models,
        "runs": inputs.runs,
        "replicates": {
            run: replicate_entry(names, tradeoff, inputs.hyperparams) for run, names in (replicates or {}).items()
        },
        "prompt_styles": {m: prompt_styles.get(m) for m in inputs.models},
        "spider": spider,
        "mmlu": mmlu,
        "mmlu_categories": categories,
        "mmlu_n_per_category": n_per_category,
        "tradeoff": tradeoff,
        "checkpoints": checkpoints,
        "curve": curve,
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
    :func:`lora_tradeoff.replicates.across_seeds` of the replicates' changes (mean, sd, 95 %
    t-interval across seeds). Each replicate's own per-question interval is in ``tradeoff``.
    """
    return {
        "runs": list(names),
        "seeds": [hyperparams[name]["spec"].get("seed") for name in names],
        "delta_spider_ex_points": across_seeds([tradeoff[name]["delta_spider_ex_points"] for name in names]),
        "delta_mmlu_overall_points": across_seeds([tradeoff[name]["delta_mmlu_overall_points"] for name in names]),
    }


# ----------------------------------------------------------------------------- recomputation


def recompute_headlines(
    results_dir: Path | str, models: Sequence[str] | None = None, mmlu_models: Sequence[str] | None = None
) -> dict[str, Any]:
    """The headline numbers straight from the per-item rows under ``results_dir``.

    Reads ``<results_dir>/<model>/spider_scored.csv`` and ``mmlu_scored.csv`` of every model folder
    that has one (unless ``models`` / ``mmlu_models`` name them); see :func:`recompute_from_items`.
    """
    root = Path(results_dir)
    if models is None:
        models = sorted(p.parent.name for p in root.glob("*/spider_scored.csv"))
    if mmlu_models is None:
        mmlu_models = sorted(p.parent.name for p in root.glob("*/mmlu_scored.csv"))
    return recompute_from_items(
        {m: root / m / "spider_scored.csv" for m in models}, {m: root / m / "mmlu_scored.csv" for m in mmlu_models}
    )


def recompute_from_items(
    spider_scored: Mapping[str, Path | str], mmlu_scored: Mapping[str, Path | str]
) -> dict[str, Any]:
    """The headline numbers from the per-item CSV files, independently of the summaries, in percent.

    ``{"spider": {model: {"ex_pct", "n", "n_scored", "success", "failure", "skipped",
    "by_hardness": {level: ex_pct}}}, "mmlu": {model: {"n", "accuracy_pct", "by_category":
    {category: accuracy_pct}, "by_subject": {subject: accuracy_pct}}}}``. EX is the mean score of
    the rows whose status is not "skipped".
    """
    spider: dict[str, Any] = {}
    for model, path in spider_scored.items():
        rows = _read_spider_scored(path)
        scored = rows[rows["status"] != "skipped"]
        spider[model] = {
            "ex_pct": 100 * scored["score"].mean() if len(scored) else None,
            "n": len(rows),
            "n_scored": len(scored),
            **{status: int((rows["status"] == status).sum()) for status in ("success", "failure", "skipped")},
            "by_hardness": {
                str(level): 100 * group["score"].mean() for level, group in scored.groupby("hardness", sort=False)
            },
        }
    mmlu: dict[str, Any] = {}
    for model, path in mmlu_scored.items():
        rows = _read_mmlu_scored(path)
        mmlu[model] = {
            "n": len(rows),
            "accuracy_pct": 100 * rows["correct"].mean(),
            "by_category": {str(c): 100 * g["correct"].mean() for c, g in rows.groupby("category", sort=False)},
            "by_subject": {str(s): 100 * g["correct"].mean() for s, g in rows.groupby("subject", sort=False)}
            if "subject" in rows
            else {},
        }
    return {"spider": spider, "mmlu": mmlu}


def headline_mismatches(summary: Mapping[str, Any], recomputed: Mapping[str, Any], tol: float = 1e-4) -> list[str]:
    """Every summary number that differs from its recomputation from the item rows (empty: all agree).

    ``tol`` (percentage points) covers regression.csv's rounding to 4 decimals; one question
    of 10,000 moves an accuracy by 0.01 points, 100 times more.
    """
    problems = []

    def check(label: str, reported: Any, expected: Any) -> None:
        same = (reported is None and expected is None) or (
            reported is not None and expected is not None and abs(reported - expected) <= tol
        )
        if not same:
            problems.append(f"{label}: summary {reported!r} vs item rows {expected!r}")

    for model, entry in summary["spider"].items():
        rows = recomputed["spider"][model]
        for key in ("ex_pct", "n", "n_scored", "success", "failure", "skipped"):
            check(f"spider {model} {key}", entry[key], rows[key])
        for level, value in rows["by_hardness"].items():
            check(f"spider {model} {level} ex_pct", entry["by_hardness"].get(level, {}).get("ex_pct"), value)
    for model, entry in summary["mmlu"].items():
        if not entry["measured"]:
            continue
        rows = recomputed["mmlu"][model]
        check(f"mmlu {model} overall accuracy_pct", entry["categories"][OVERALL]["accuracy_pct"], rows["accuracy_pct"])
        check(f"mmlu {model} overall n", entry["categories"][OVERALL]["n"], rows["n"])
        for category, value in rows["by_category"].items():
            check(
                f"mmlu {model} {category} accuracy_pct",
                entry["categories"].get(category, {}).get("accuracy_pct"),
                value,
            )
        if entry.get("subjects"):
            for subject, value in rows["by_subject"].items():
                check(
                    f"mmlu {model} subject {subject} accuracy_pct",
                    entry["subjects"].get(subject, {}).get("accuracy_pct"),
                    value,
                )
    # The trade-off along training: each point's changes are differences of item-row accuracies
    # (Spider over the questions scored for both: checked where that is every scored question).
    baseline = summary.get("baseline")
    for run, rows in (summary.get("curve") or {}).items():
        for row in rows:
            model, spider_rows = row["model"], recomputed["spider"]
            n_paired = summary["spider"][model]["n_paired"]
            if spider_rows[model]["n_scored"] == spider_rows[baseline]["n_scored"] == n_paired:
                ex = spider_rows[model]["ex_pct"] - spider_rows[baseline]["ex_pct"]
                check(f"curve {run} step {row['step']} delta_spider_ex_points", row["delta_spider_ex_points"], ex)
            mmlu_rows = recomputed["mmlu"]
            delta = mmlu_rows[model]["accuracy_pct"] - mmlu_rows[baseline]["accuracy_pct"]
            check(f"curve {run} step {row['step']} delta_mmlu_overall_points", row["delta_mmlu_overall_points"], delta)
    return problems


# ----------------------------------------------------------------------------- failure examples


def failure_examples(
    spider_scored: Mapping[str, pd.DataFrame], runs: Sequence[str], baseline: str = BASELINE
) -> dict[str, list[dict[str, Any]]]:
    """Up to one example per kind of :data:`FAILURE_KINDS` for every run, by :data:`FAILURE_RULE`."""
    base = spider_scored[baseline].set_index("id")
    examples: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        rows = spider_scored[run].sort_values("id", kind="stable")
        failed = rows[rows["status"] == "failure"]
        base_status = failed["id"].map(base["status"])
        candidates = {
            "regression": failed[base_status == "success"],
            "wrong_result": failed[failed["reason_category"].isin(["wrong_result", "row_count"])],
            "exec_error": failed[failed["reason_category"] == "exec_error"],
        }
        taken: list[dict[str, Any]] = []
        for kind, description in FAILURE_KINDS:
            pool = candidates[kind]
            pool = pool[~pool["id"].isin([example["id"] for example in taken])]
            if pool.empty:
                continue
            row = pool.iloc[0]
            base_row = base.loc[row["id"]]
            taken.append(
                {
                    "run": run,
                    "kind": kind,
                    "kind_description": description,
                    "id": row["id"],
                    "db_id": row["db_id"],
                    "hardness": row["hardness"],
                    "question": row["question"],
                    "gold_sql": row["gold"],
                    "predicted_sql": row["extracted_sql"],
                    "raw_output": row["raw_output"],
                    "reason": row["reason"],
                    "reason_category": row["reason_category"],
                    "baseline_status": base_row["status"],
                    "baseline_reason": base_row["reason"],
                }
            )
        examples[run] = taken
    return examples


def render_failure_examples(examples: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str = BASELINE) -> str:
    lines = ["# Failure examples", "", f"**Selection rule.** {FAILURE_RULE}", ""]
    for run, chosen in examples.items():
        lines += [f"## {run}", ""]
        found = {example["kind"] for example in chosen}
        missing = [kind for kind, _ in FAILURE_KINDS if kind not in found]
        if not chosen:
            lines += [f"Nothing to show: no question of {run} is of any kind ({', '.join(missing)}).", ""]
        elif missing:
            lines += [f"No question of kind {', '.join(missing)} besides those shown.", ""]
        for example in chosen:
            predicted = example["predicted_sql"] or f"(no SQL extracted; raw output: {example['raw_output']!r})"
            lines += [
                f"### {example['kind']}: {example['id']} ({example['db_id']}, {example['hardness']})",
                "",
                f"*Kind:* {example['kind_description']}.",
                "",
                f"**Question:** {example['question']}",
                "",
                "**Gold SQL:**",
                "",
                "```sql",
                example["gold_sql"],
                "```",
                "",
                "**Predicted SQL:**",
                "",
                "```sql",
                predicted,
                "```",
                "",
                f"**Metric's reason:** {example['reason']} (`{example['reason_category']}`)",
                "",
                f"**{baseline} on this question:** {example['baseline_status']} ({example['baseline_reason']})",
                "",
            ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- markdown


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return str(value)


def _int(value: Any) -> str:
    return "n/a" if value is None else f"{value:,}"


def _signed(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def _p(value: float) -> str:
    return f"{value:.3g}"


def _interval(low: float, high: float) -> str:
    return f"[{_signed(low)}, {_signed(high)}]"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return lines + ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]


def _model_label(summary: Mapping[str, Any], model: str) -> str:
    style = summary["prompt_styles"].get(model)
    return f"{model} ({style.replace('_', '-')})" if style else model


def _interval_note(summary: Mapping[str, Any]) -> list[str]:
    intervals = summary["intervals"]
    widths = [
        entry["categories"][c]["ci_high_points"] - entry["categories"][c]["ci_low_points"]
        for model, entry in summary["mmlu"].items()
        if entry["measured"] and model != summary["baseline"]
        for c in summary["mmlu_categories"]
        if c != OVERALL
    ]
    ns = sorted(set(n for c, n in summary["mmlu_n_per_category"].items() if c != OVERALL))
    observed = (
        f"Here, with n = {', '.join(map(str, ns))} questions per category, the intervals of the runs' category "
        f"rows are {min(widths):.1f} to {max(widths):.1f} points wide. "
        if widths
        else ""
    )
    return [
        f'**Intervals.** "95% CI" of a change is a paired percentile bootstrap '
        f"({intervals['bootstrap_resamples']} resamples, seed {intervals['bootstrap_seed']}): the questions are "
        "resampled with replacement, each keeping its pair of outcomes (baseline, model), and the 2.5th and 97.5th "
        "percentiles of the accuracy difference are reported. It is an interval of the *difference* from the "
        "baseline, not of either accuracy; an interval that contains 0 means the change is within what "
        "resampling the same questions produces. "
        + observed
        + "In the 150-question suite, at n = 50 per category one question is 2 points, and with no true "
        "change and a share d of questions answered right by exactly one of the two models the interval is "
        "about ±1.96·√(d/50): "
        f"±{bootstrap_half_width_points(50, 0.1):.1f} points at d = 10%, "
        f"±{bootstrap_half_width_points(50, 0.2):.1f} points at d = 20%; the overall row (n = 150) is √3 narrower "
        f"(±{bootstrap_half_width_points(150, 0.2):.1f} at d = 20%). Changes of a few points per category are "
        "therefore not distinguishable from noise at this size. McNemar p is the exact two-sided test on the "
        'same discordant questions. Accuracy intervals (figures, "Wilson 95%") are 95% Wilson score intervals '
        "of one model's accuracy.",
    ]


def _mdd_note() -> list[str]:
    return [
        "**Smallest detectable change (MDD).** Next to each change: the smallest true change in points that a "
        "two-sided McNemar test at 5% would find with 80% power on these questions, given the observed share of "
        "questions that exactly one of the two models answers right (Connor 1987, normal approximation; "
        "`lora_tradeoff.stats.minimum_detectable_difference`). A change inside its interval and smaller than its "
        'MDD means "not measurable here", not "no change". n/a: no question differs between the two models, or '
        "too few questions to detect even a change of every differing question.",
    ]


# Per-subject rows are tabulated in summary.md only when every subject has this many questions
# (the full split's smallest subject has 100); below it they stay in regression.csv.
MIN_SUBJECT_N = 30


def _subject_table(summary: Mapping[str, Any]) -> list[str]:
    baseline = summary["baseline"]
    subjects = summary["mmlu"][baseline].get("subjects", {})
    if not subjects:
        return []
    if min(entry["n"] for entry in subjects.values()) < MIN_SUBJECT_N:
        return [
            "",
            f"Per-subject rows are in regression.csv (`level` subject); with fewer than {MIN_SUBJECT_N} questions "
            "in some subject they are not tabulated here.",
        ]
    runs = [m for m in summary["runs"] if summary["mmlu"].get(m, {}).get("measured")]

    def cell(run: str, subject: str) -> str:
        row = summary["mmlu"][run]["subjects"][subject]
        return (
            f"{_signed(row['delta_points'])} {_interval(row['ci_low_points'], row['ci_high_points'])}, "
            f"MDD {_fmt(row['mdd_points'])}"
        )

    return [
        "",
        "### MMLU per subject",
        "",
        *markdown_table(
            ["subject", "category", "n", f"{baseline} %", *(f"Δ {run} pts [95% CI], MDD" for run in runs)],
            [
                [
                    subject,
                    entry["category"],
                    entry["n"],
                    _fmt(entry["accuracy_pct"]),
                    *(cell(run, subject) for run in runs),
                ]
                for subject, entry in subjects.items()
            ],
        ),
    ]


def _across(entry: Mapping[str, Any]) -> str:
    if entry["ci_low"] is None:
        return f"{_signed(entry['mean'])} (one seed)"
    return f"{_signed(entry['mean'])} {_interval(entry['ci_low'], entry['ci_high'])}, sd {_fmt(entry['sd'])}"


def _curve_section(summary: Mapping[str, Any]) -> list[str]:
    """The table behind tradeoff_curve.png; nothing when no run lists ``eval_steps``."""
    if not summary.get("checkpoints"):
        return []
    rows = [
        [
            run,
            _int(row["step"]) + (" (final)" if row["final"] else ""),
            row["model"],
            f"{_signed(row['delta_spider_ex_points'])} "
            f"{_interval(row['spider_ci_low_points'], row['spider_ci_high_points'])}",
            f"{_signed(row['delta_mmlu_overall_points'])} "
            f"{_interval(row['mmlu_ci_low_points'], row['mmlu_ci_high_points'])}",
        ]
        for run, curve in summary["curve"].items()
        if len(curve) > 1
        for row in curve
    ]
    return [
        "## Trade-off along training",
        "",
        f"Each run's adapter after the steps in its `eval_steps`, then its final adapter, evaluated like any run; "
        f"changes in points against {summary['baseline']} with 95% paired bootstrap intervals "
        "(figure: tradeoff_curve.png).",
        "",
        *markdown_table(["run", "step", "model", "Δ Spider EX pts [95% CI]", "Δ MMLU overall pts [95% CI]"], rows),
        "",
    ]


def _replicate_section(summary: Mapping[str, Any]) -> list[str]:
    replicates = summary.get("replicates") or {}
    if not replicates:
        return []
    tradeoff = summary["tradeoff"]

    def per_seed(names: Sequence[str], key: str, low: str, high: str) -> str:
        return "; ".join(f"{_signed(tradeoff[n][key])} {_interval(tradeoff[n][low], tradeoff[n][high])}" for n in names)

    rows = [
        [
            run,
            ", ".join(str(seed) for seed in entry["seeds"]),
            _across(entry["delta_spider_ex_points"]),
            per_seed(entry["runs"], "delta_spider_ex_points", "spider_ci_low_points", "spider_ci_high_points"),
            _across(entry["delta_mmlu_overall_points"]),
            per_seed(entry["runs"], "delta_mmlu_overall_points", "mmlu_ci_low_points", "mmlu_ci_high_points"),
        ]
        for run, entry in replicates.items()
    ]
    return [
        "",
        "## Training-seed replicates",
        "",
        *markdown_table(
            [
                "run",
                "seeds",
                "Δ EX pts: mean [95% CI across seeds], sd",
                "Δ EX pts per seed [95% CI over questions]",
                "Δ MMLU pts: mean [95% CI across seeds], sd",
                "Δ MMLU pts per seed [95% CI over questions]",
            ],
            rows,
        ),
        "",
        "Each seed is a full run (`<run>_s<seed>`, its own adapter, scored on the same questions). The interval "
        "across seeds is mean ± t(0.975; k−1)·sd/√k over the k seeds' changes (Student's t): what another "
        "training seed could give. The per-seed intervals are the paired bootstrap over the questions: what "
        "other questions could give for that one adapter.",
    ]


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


def _base_model_lines(model: Mapping[str, Any]) -> list[str]:
    if not model:
        return []
    checksum = f", sha256 `{model['sha256']}`" if model.get("sha256") else ""
    return [
        f"**Base model**: {model['architecture']}, {model['n_parameters']:,} parameters as saved; source "
        f"`{model['source']}`: {model['origin']}{checksum}.",
        "",
    ]


def render_summary(summary: Mapping[str, Any]) -> str:
    """summary.md: headline, Spider, MMLU, hyper-parameters and training cost tables."""
    baseline = summary["baseline"]
    models, runs = summary["models"], summary["runs"]
    spider, mmlu = summary["spider"], summary["mmlu"]
    lines = [
        "# LoRA trade-off report",
        "",
        f"What LoRA fine-tuning buys (Spider execution accuracy, EX) and costs (MMLU 4-shot accuracy), against "
        f"the baseline `{baseline}`. Accuracies in percent of questions; changes (Δ) in percentage points "
        f'("pts") against `{baseline}`, relative changes in percent of `{baseline}`\'s accuracy. Every number '
        "was checked against a recomputation from the per-question rows (spider_scored.csv, mmlu_scored.csv).",
        "",
        *_base_model_lines(summary.get("base_model") or {}),
        "## Headline",
        "",
    ]

    def mmlu_overall(model: str) -> tuple[str, str]:
        entry = mmlu[model]
        if not entry["measured"]:
            return f"n/a (= {entry['same_as']})", "n/a"
        row = entry["categories"][OVERALL]
        if model == baseline:
            return _fmt(row["accuracy_pct"]), REFERENCE
        delta = f"{_signed(row['delta_points'])} {_interval(row['ci_low_points'], row['ci_high_points'])}"
        return _fmt(row["accuracy_pct"]), f"{delta}, MDD {_fmt(row.get('mdd_points'))}"

    headline_rows = []
    for model in models:
        entry = spider[model]
        overall, delta = mmlu_overall(model)
        headline_rows.append(
            [
                _model_label(summary, model),
                _fmt(entry["ex_pct"]),
                REFERENCE
                if model == baseline
                else f"{_signed(entry['delta_ex_points'])} "
                + _interval(entry["delta_ci_low_points"], entry["delta_ci_high_points"])
                + f", MDD {_fmt(entry.get('mdd_points'))}",
                overall,
                delta,
            ]
        )
    lines += markdown_table(
        [
            "model (Spider prompt)",
            "Spider EX %",
            "Δ EX pts [95% CI], MDD",
            "MMLU overall %",
            "Δ MMLU pts [95% CI], MDD",
        ],
        headline_rows,
    )
    if any(not mmlu[m]["measured"] for m in models):
        lines += [
            "",
            f"`{BASE_ZERO_SHOT}` is the baseline's weights with a zero-shot Spider prompt; MMLU does not use that "
            f"prompt, so its MMLU accuracy is `{baseline}`'s and is not measured again (n/a).",
        ]

    lines += _replicate_section(summary)
    lines += _curve_section(summary)
    lines += ["", "## Spider execution accuracy", ""]
    lines += markdown_table(
        [
            "model",
            "EX %",
            "success",
            "failure",
            "skipped",
            "n",
            "Δ EX pts",
            "95% CI",
            "only base right",
            "only model right",
            "McNemar p",
            "MDD pts",
        ],
        [
            [
                _model_label(summary, m),
                _fmt(spider[m]["ex_pct"]),
                spider[m]["success"],
                spider[m]["failure"],
                spider[m]["skipped"],
                spider[m]["n"],
                *(
                    [REFERENCE, "", "", "", "", ""]
                    if m == baseline
                    else [
                        _signed(spider[m]["delta_ex_points"]),
                        _interval(spider[m]["delta_ci_low_points"], spider[m]["delta_ci_high_points"]),
                        spider[m]["base_only_correct"],
                        spider[m]["other_only_correct"],
                        _p(spider[m]["mcnemar_p"]),
                        _fmt(spider[m].get("mdd_points")),
                    ]
                ),
            ]
            for m in models
        ],
    )
    lines += [
        "",
        "EX = success / (success + failure); skipped questions (database missing) are not in EX. "
        f"Δ and its interval are over the {spider[baseline]['n_paired']} questions scored for both models.",
        "",
        "### EX by hardness (% correct, correct/scored)",
        "",
    ]
    levels = [level for level in HARDNESS_LEVELS if any(level in spider[m]["by_hardness"] for m in models)]

    def hardness_cell(model: str, level: str) -> str:
        group = spider[model]["by_hardness"].get(level)
        if not group or not group["n_scored"]:
            return "n/a"
        return f"{_fmt(group['ex_pct'])} ({group['success']}/{group['n_scored']})"

    lines += markdown_table(["model", *levels], [[m, *(hardness_cell(m, level) for level in levels)] for m in models])
    reasons = sorted({reason for m in models for reason in spider[m]["by_reason_category"]})
    lines += ["", "### Outcomes by the metric's reason category (questions)", ""]
    lines += markdown_table(
        ["model", *reasons], [[m, *(spider[m]["by_reason_category"].get(r, 0) for r in reasons)] for m in models]
    )
    ignored = ", ".join(f"{m} {spider[m].get('ignored_statements', 0)}" for m in models)
    lines += [
        "",
        f"Predictions with statements after the first (only the first runs, as in the official evaluator): {ignored}.",
    ]

    lines += ["", "## MMLU 4-shot accuracy", ""]
    mmlu_rows = []
    for model in models:
        entry = mmlu[model]
        if not entry["measured"]:
            continue
        for category, row in entry["categories"].items():
            mmlu_rows.append(
                [
                    model,
                    category,
                    row["n"],
                    f"{_fmt(row['accuracy_pct'])} ({row['correct']}/{row['n']})",
                    f"[{_fmt(row['wilson_low_pct'])}, {_fmt(row['wilson_high_pct'])}]",
                    *(
                        [REFERENCE, "", "", "", "", "", ""]
                        if model == baseline
                        else [
                            _signed(row["delta_points"]),
                            _signed(row["delta_relative_pct"]),
                            _interval(row["ci_low_points"], row["ci_high_points"]),
                            row["base_only_correct"],
                            row["other_only_correct"],
                            _p(row["mcnemar_p"]),
                            _fmt(row.get("mdd_points")),
                        ]
                    ),
                ]
            )
    lines += markdown_table(
        [
            "model",
            "category",
            "n",
            "accuracy %",
            "Wilson 95% %",
            "Δ pts",
            "Δ relative %",
            "95% CI of Δ pts",
            "only base right",
            "only model right",
            "McNemar p",
            "MDD pts",
        ],
        mmlu_rows,
    )
    lines += ["", *_interval_note(summary), "", *_mdd_note(), *_subject_table(summary)]

    lines += ["", "## Hyper-parameters", ""]
    hyper = summary["hyperparameters"]
    keys = [
        ("r", "r (rank)"),
        ("alpha", "alpha"),
        ("dropout", "dropout"),
        ("target_modules", "target_modules (config)"),
        ("resolved_target_modules", "target_modules (resolved)"),
        ("layers_to_transform", "layers_to_transform"),
        ("learning_rate", "learning_rate"),
        ("lr_scheduler", "lr_scheduler"),
        ("warmup_ratio", "warmup_ratio"),
        ("weight_decay", "weight_decay"),
        ("num_epochs", "num_epochs"),
        ("max_steps", "max_steps (overrides epochs)"),
        ("per_device_batch_size", "per-device batch size"),
        ("grad_accumulation", "grad accumulation"),
        ("effective_batch_size", "effective batch size"),
        ("max_seq_len", "max_seq_len (tokens)"),
        ("seed", "seed"),
        ("quantization", "quantization"),
        ("bf16", "bf16"),
        ("packing", "packing"),
        ("gradient_checkpointing", "gradient checkpointing"),
        ("trainable_parameters", "trainable parameters"),
        ("total_parameters", "total parameters"),
        ("trainable_share_pct", "trainable share %"),
    ]

    def hyper_cell(run: str, key: str) -> str:
        value = hyper[run][key]
        if value is None and key == "layers_to_transform":
            return "all"
        if key == "trainable_share_pct" and value is not None:
            return f"{value:.3f}"
        if key in ("trainable_parameters", "total_parameters") and value is not None:
            return f"{value:,}"
        if key in ("learning_rate", "dropout", "warmup_ratio", "weight_decay", "num_epochs") and value is not None:
            return f"{value:g}"
        return _fmt(value, 3)

    lines += markdown_table(
        ["hyper-parameter", *runs], [[label, *(hyper_cell(r, k) for r in runs)] for k, label in keys]
    )

    lines += ["", "## Training cost", ""]
    cost = summary["training_cost"]
    lines += markdown_table(
        [
            "run",
            "device",
            "steps",
            "epochs",
            "train examples (too long, left out)",
            "tokens per epoch",
            "tokens trained",
            "wall time s",
            "tokens/s",
            "final loss",
        ],
        [
            [
                run,
                _fmt(cost[run]["device"]),
                _fmt(cost[run]["global_steps"]),
                _fmt(cost[run]["epochs"], 2),
                f"{_fmt(cost[run]['train_examples'])} ({_fmt(cost[run]['train_examples_too_long'])})",
                _int(cost[run]["train_tokens_per_epoch"]),
                _int(cost[run]["tokens_trained"]),
                _fmt(cost[run]["wall_time_s"]),
                _fmt(cost[run]["tokens_per_s"]),
                _fmt(cost[run]["final_loss"], 4),
            ]
            for run in runs
        ],
    )
    lines += [
        "",
        "Wall time: loading, training and saving the adapter; tokens trained: non-padding tokens (prompt and "
        "answer) the training process passed through the model (after a resume, only those since the resume); "
        "final loss: the last logged training loss (mean token cross-entropy of the answer tokens, nats).",
    ]
    packages = sorted({name for run in runs for name in cost[run]["versions"]})
    if packages:
        lines += ["", "### Library versions", ""]
        lines += markdown_table(
            ["run", *packages], [[run, *(cost[run]["versions"].get(p, "") for p in packages)] for run in runs]
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- everything


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
) -> dict[str, Any]:
    """Write :data:`TABLE_FILES` and every figure of :data:`FIGURES` (PNG and SVG) into ``out_dir``.

    Raises ValueError, writing nothing, when a summary number disagrees with its recomputation
    from the per-item files the inputs were read from. Returns the summary.
    """
    from lora_tradeoff.report_plots import plot_all

    summary = build_summary(inputs, baseline, prompt_styles, n_resamples, seed, replicates, checkpoints)
    recomputed = recompute_from_items(inputs.item_paths["spider_scored"], inputs.item_paths["mmlu_scored"])
    problems = headline_mismatches(summary, recomputed)
    if problems:
        raise ValueError("report numbers disagree with the per-item rows:\n  " + "\n  ".join(problems))
    examples = failure_examples(inputs.spider_scored, inputs.runs, baseline)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    (out / "summary.md").write_text(render_summary(summary))
    (out / "failure_examples.json").write_text(
        json.dumps({"rule": FAILURE_RULE, "examples": examples}, indent=2, default=_json_default) + "\n"
    )
    (out / "failure_examples.md").write_text(render_failure_examples(examples, baseline))
    plot_all(summary, inputs, out)
    return summary
