"""summary.md, one renderer per section: each takes the summary (:mod:`lora_tradeoff.report.summary`).

A renderer returns the section's Markdown lines (none: the section is left out, e.g. the
curve when no run lists ``eval_steps``); :func:`render_summary` joins the sections of
:data:`SECTIONS` in order, with one blank line between them. Every number in the prose,
such as the questions per category behind the interval note, is read from the summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lora_tradeoff.config_check import LORA_ONLY_KEYS
from lora_tradeoff.report.frontier import (
    COLLAPSE,
    COLLAPSE_MDD_MULTIPLE,
    FAMILIES,
    FORGETTING,
    FORGETTING_BELOW_POINTS,
    FULL,
    NO_FORGETTING,
)
from lora_tradeoff.report.inputs import BASE_ZERO_SHOT
from lora_tradeoff.report.summary import mmlu_shots
from lora_tradeoff.spider.scoring import HARDNESS_LEVELS
from lora_tradeoff.stats import OVERALL, bootstrap_half_width_points

REFERENCE = "(reference)"  # the baseline's cells of a change against itself


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


def render_intro(summary: Mapping[str, Any]) -> list[str]:
    """The title, what the report measures and in which units, and the base model."""
    baseline = summary["baseline"]
    lines = [
        "# Fine-tuning trade-off report",
        "",
        "What fine-tuning (LoRA, QLoRA or full) buys (Spider execution accuracy, EX) and costs "
        f"(MMLU {mmlu_shots(summary)} accuracy), against "
        f"the baseline `{baseline}`. Accuracies in percent of questions; changes (Δ) in percentage points "
        f'("pts") against `{baseline}`, relative changes in percent of `{baseline}`\'s accuracy. Every number '
        "was checked against a recomputation from the per-question rows (spider_scored.csv, mmlu_scored.csv).",
    ]
    blocks = summary.get("sql_blocks") or ["first"]
    lines += [
        "",
        f"**SQL scored**: the {' / '.join(blocks)} SQL block of each answer (config generation.sql_block; "
        "first stops generation at the first statement end, last lets a model write a draft, then its final query).",
    ]
    model = summary.get("base_model") or {}
    if model:
        checksum = f", sha256 `{model['sha256']}`" if model.get("sha256") else ""
        lines += [
            "",
            f"**Base model**: {model['architecture']}, {model['n_parameters']:,} parameters as saved; source "
            f"`{model['source']}`: {model['origin']}{checksum}.",
        ]
    return lines


def render_headline(summary: Mapping[str, Any]) -> list[str]:
    """One row per model: Spider EX and MMLU overall, each with its change against the baseline."""
    baseline = summary["baseline"]
    spider, mmlu = summary["spider"], summary["mmlu"]

    def mmlu_overall(model: str) -> tuple[str, str]:
        entry = mmlu[model]
        if not entry["measured"]:
            return f"n/a (= {entry['same_as']})", "n/a"
        row = entry["categories"][OVERALL]
        if model == baseline:
            return _fmt(row["accuracy_pct"]), REFERENCE
        delta = f"{_signed(row['delta_points'])} {_interval(row['ci_low_points'], row['ci_high_points'])}"
        return _fmt(row["accuracy_pct"]), f"{delta}, MDD {_fmt(row.get('mdd_points'))}"

    rows = []
    for model in summary["models"]:
        entry = spider[model]
        overall, delta = mmlu_overall(model)
        rows.append(
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
    lines = [
        "## Headline",
        "",
        *markdown_table(
            [
                "model (Spider prompt)",
                "Spider EX %",
                "Δ EX pts [95% CI], MDD",
                "MMLU overall %",
                "Δ MMLU pts [95% CI], MDD",
            ],
            rows,
        ),
    ]
    truncated = {m: mmlu[m]["truncated_questions"] for m in summary["models"] if mmlu[m].get("truncated_questions")}
    if truncated:
        counts = ", ".join(f"`{m}` {n:,}" for m, n in truncated.items())
        lines += [
            "",
            f"MMLU prompts longer than the model's context were scored on their last tokens (their first tokens "
            f"dropped, as lm-evaluation-harness does); questions truncated: {counts}.",
        ]
    if any(not mmlu[m]["measured"] for m in summary["models"]):
        lines += [
            "",
            f"`{BASE_ZERO_SHOT}` is the baseline's weights with a zero-shot Spider prompt; MMLU does not use that "
            f"prompt, so its MMLU accuracy is `{baseline}`'s and is not measured again (n/a).",
        ]
    return lines


def _value(value: Any) -> str:
    """A swept value as written in the report: ``0.001``, ``1e-05``, ``q_proj+v_proj``."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(str(item) for item in value)
    return str(value)


def _swept(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_value(value)}" for key, value in values.items()) or "—"


def _names(runs: Sequence[str]) -> str:
    return ", ".join(f"`{run}`" for run in runs)


def _verdict_policy() -> str:
    """The verdict rule in words, from :mod:`lora_tradeoff.report.frontier`'s thresholds."""
    times = "" if COLLAPSE_MDD_MULTIPLE == 1 else f"{COLLAPSE_MDD_MULTIPLE:g} times "
    return (
        f"**Verdict**: *{COLLAPSE}* when Δ EX and Δ MMLU are both drops larger than {times}their MDD "
        "(an MDD of n/a is never exceeded); else "
        f"*{FORGETTING}* when the 95% interval of Δ MMLU lies below {FORGETTING_BELOW_POINTS:g}; else "
        f"*{NO_FORGETTING}*, which is not proof of no change (see the MDD). **Pareto-optimal**: no other run "
        "has both changes at least as high and one higher."
    )


def _family_findings(family: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Where forgetting begins in one method family, which runs escape it, and its MMLU cost per EX point."""
    forgetting = [row for row in rows if row["verdict"] != NO_FORGETTING]  # rows by Δ MMLU, highest first
    clean = [row["run"] for row in rows if row["verdict"] == NO_FORGETTING]
    sentences = [f"**{family}** ({len(rows)} run{'s' if len(rows) != 1 else ''})."]
    if forgetting:
        first = forgetting[0]
        sentences.append(
            f"Forgetting begins at `{first['run']}` (Δ MMLU {_signed(first['delta_mmlu_overall_points'])} pts "
            f"{_interval(first['mmlu_ci_low_points'], first['mmlu_ci_high_points'])}, {first['verdict']})."
        )
        sentences.append(f"No forgetting detected: {_names(clean)}." if clean else "Every run shows forgetting.")
        collapsed = [row["run"] for row in rows if row["verdict"] == COLLAPSE]
        if collapsed:
            sentences.append(f"Collapse: {_names(collapsed)}.")
    else:
        sentences.append("No forgetting detected in any run.")
    costs = [row for row in rows if row["mmlu_cost_per_ex_point"] is not None]
    sentences.append(
        "MMLU cost per point of EX gained: "
        + (
            ", ".join(f"`{row['run']}` {_signed(row['mmlu_cost_per_ex_point'], 2)} MMLU pts per EX pt" for row in costs)
            if costs
            else "none detected"
        )
        + "."
    )
    return " ".join(sentences)


def _sweep_findings(line: Mapping[str, Any]) -> str:
    """The first swept value at which a sweep's verdict changes, or that it does not."""
    key, values, verdicts = line["key"], line["values"], line["verdicts"]
    where = f"Sweep `{line['sweep']}`" + (f" at {_swept(line['fixed'])}" if line["fixed"] else "")
    span = f"{key} {', '.join(_value(v) for v in values)}"
    change = next((i for i, verdict in enumerate(verdicts) if verdict != verdicts[0]), None)
    if change is None:
        return f"{where} ({span}): {verdicts[0]} at every value."
    return (
        f"{where} ({span}): {verdicts[0]} up to {key}={_value(values[change - 1])}; "
        f"{verdicts[change]} from {key}={_value(values[change])} (`{line['runs'][change]}`)."
    )


def render_frontier(summary: Mapping[str, Any]) -> list[str]:
    """The trade-off frontier: one row per run by Δ MMLU (least forgetting first), then findings from the rows."""
    rows = summary.get("frontier") or []
    if not rows:
        return []
    categories = [c for c in summary["mmlu_categories"] if c != OVERALL]
    table = markdown_table(
        [
            "run",
            "method",
            "swept values",
            "Δ EX pts [95% CI]",
            "MDD EX pts",
            "Δ MMLU pts [95% CI]",
            "MDD MMLU pts",
            *(f"Δ {category.replace('_', ' ')} pts" for category in categories),
            "Pareto-optimal",
            "verdict",
        ],
        [
            [
                row["run"],
                row["method_family"],
                _swept(row["swept_values"]),
                f"{_signed(row['delta_spider_ex_points'])} "
                f"{_interval(row['spider_ci_low_points'], row['spider_ci_high_points'])}",
                _fmt(row["spider_mdd_points"]),
                f"{_signed(row['delta_mmlu_overall_points'])} "
                f"{_interval(row['mmlu_ci_low_points'], row['mmlu_ci_high_points'])}",
                _fmt(row["mmlu_mdd_points"]),
                *(_signed(row["mmlu_categories"].get(c, {}).get("delta_points")) for c in categories),
                "yes" if row["pareto_optimal"] else "",
                row["verdict"],
            ]
            for row in rows
        ],
    )
    lines = [
        "## Trade-off frontier",
        "",
        f"Every fine-tuned run, by Δ MMLU overall (least forgetting first); changes in points against "
        f"{summary['baseline']} with 95% paired bootstrap intervals (figure: frontier.png). Per-category Δ "
        "MMLU intervals are in summary.json and the MMLU section.",
        "",
        *table,
        "",
        _verdict_policy(),
    ]
    for family in FAMILIES:
        members = [row for row in rows if row["method_family"] == family]
        if members:
            lines += ["", _family_findings(family, members)]
    findings = [_sweep_findings(line) for line in summary.get("frontier_lines") or []]
    if findings:
        lines += ["", " ".join(findings)]
    if any(row["replicate_of"] for row in rows):
        lines += [
            "",
            "Seed replicates are rows of their own; on a sweep's line a point with several seeds is their mean.",
        ]
    return lines


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


def render_spider(summary: Mapping[str, Any]) -> list[str]:
    """Spider EX of every model with its paired change, then EX by hardness and outcomes by reason."""
    baseline, models, spider = summary["baseline"], summary["models"], summary["spider"]
    lines = ["## Spider execution accuracy", ""]
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
    return lines + [
        "",
        f"Predictions with statements after the first (only the first runs, as in the official evaluator): {ignored}.",
    ]


def _interval_note(summary: Mapping[str, Any]) -> list[str]:
    """How to read the intervals, with the sizes of this suite (questions per category and overall)."""
    intervals = summary["intervals"]
    widths = [
        entry["categories"][c]["ci_high_points"] - entry["categories"][c]["ci_low_points"]
        for model, entry in summary["mmlu"].items()
        if entry["measured"] and model != summary["baseline"]
        for c in summary["mmlu_categories"]
        if c != OVERALL
    ]
    per_category = summary["mmlu_n_per_category"]
    ns = sorted(set(n for c, n in per_category.items() if c != OVERALL))
    questions = "question" if ns == [1] else "questions"
    observed = (
        f"Here, with n = {', '.join(map(str, ns))} {questions} per category, the intervals of the runs' category "
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
        + _noise_scale(ns, per_category.get(OVERALL))
        + "McNemar p is the exact two-sided test on the "
        'same discordant questions. Accuracy intervals (figures, "Wilson 95%") are 95% Wilson score intervals '
        "of one model's accuracy.",
    ]


def _noise_scale(category_ns: Sequence[int], n_overall: int | None) -> str:
    """What one question and the bootstrap's noise amount to at this suite's sizes (the smallest category)."""
    if not category_ns or not n_overall:
        return ""
    n = category_ns[0]
    at = f"n = {n:,} per category" if len(category_ns) == 1 else f"n = {n:,} (the smallest category)"
    ratio = n_overall / n
    narrower = f"√{ratio:.0f}" if ratio == round(ratio) else f"{math.sqrt(ratio):.1f} times"
    return (
        f"In the {n_overall:,}-question suite, at {at} one question is {100 / n:.3g} points, and with no true "
        "change and a share d of questions answered right by exactly one of the two models the interval is "
        f"about ±1.96·√(d/{n}): "
        f"±{bootstrap_half_width_points(n, 0.1):.1f} points at d = 10%, "
        f"±{bootstrap_half_width_points(n, 0.2):.1f} points at d = 20%; the overall row (n = {n_overall:,}) is "
        f"{narrower} narrower (±{bootstrap_half_width_points(n_overall, 0.2):.1f} at d = 20%). Changes per "
        f"category smaller than about {bootstrap_half_width_points(n, 0.2):.1f} points are therefore not "
        "distinguishable from noise at this size. "
    )


def _across(entry: Mapping[str, Any]) -> str:
    if entry["ci_low"] is None:
        return f"{_signed(entry['mean'])} (one seed)"
    return f"{_signed(entry['mean'])} {_interval(entry['ci_low'], entry['ci_high'])}, sd {_fmt(entry['sd'])}"


def render_curve(summary: Mapping[str, Any]) -> list[str]:
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
        f"Each run's weights after the steps in its `eval_steps`, then its final weights, evaluated like any run; "
        f"changes in points against {summary['baseline']} with 95% paired bootstrap intervals "
        "(figure: tradeoff_curve.png).",
        "",
        *markdown_table(["run", "step", "model", "Δ Spider EX pts [95% CI]", "Δ MMLU overall pts [95% CI]"], rows),
    ]


def render_replicates(summary: Mapping[str, Any]) -> list[str]:
    """Runs trained with several seeds: the spread across seeds and each seed's own interval."""
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
        "Each seed is a full run (`<run>_s<seed>`, its own weights, scored on the same questions). The interval "
        "across seeds is mean ± t(0.975; k−1)·sd/√k over the k seeds' changes (Student's t): what another "
        "training seed could give. The per-seed intervals are the paired bootstrap over the questions: what "
        "other questions could give for that one set of weights.",
    ]


def render_mmlu(summary: Mapping[str, Any]) -> list[str]:
    """MMLU accuracy per category and overall of every model, its change, and how to read the intervals."""
    baseline = summary["baseline"]
    rows = []
    for model in summary["models"]:
        entry = summary["mmlu"][model]
        if not entry["measured"]:
            continue
        for category, row in entry["categories"].items():
            rows.append(
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
    table = markdown_table(
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
        rows,
    )
    return [
        f"## MMLU {mmlu_shots(summary)} accuracy",
        "",
        *table,
        "",
        *_interval_note(summary),
        "",
        *_mdd_note(),
        *_subject_table(summary),
    ]


HYPERPARAMETER_LABELS = (
    ("method_family", "method family"),
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
    ("optim", "optimizer"),
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
)


# Hyper-parameters of the adapter, which full fine-tuning has not got (its spec keeps their defaults).
LORA_ONLY_ROWS = (*LORA_ONLY_KEYS, "resolved_target_modules")


def render_hyperparameters(summary: Mapping[str, Any]) -> list[str]:
    """One column per run: its resolved hyper-parameters and parameter counts."""
    runs, hyper = summary["runs"], summary["hyperparameters"]

    def cell(run: str, key: str) -> str:
        value = hyper[run][key]
        if key in LORA_ONLY_ROWS and hyper[run]["method_family"] == FULL:
            return "unused (full)"
        if value is None and key == "layers_to_transform":
            return "all"
        if key == "trainable_share_pct" and value is not None:
            return f"{value:.3f}"
        if key in ("trainable_parameters", "total_parameters") and value is not None:
            return f"{value:,}"
        if key in ("learning_rate", "dropout", "warmup_ratio", "weight_decay", "num_epochs") and value is not None:
            return f"{value:g}"
        return _fmt(value, 3)

    table = markdown_table(
        ["hyper-parameter", *runs], [[label, *(cell(r, k) for r in runs)] for k, label in HYPERPARAMETER_LABELS]
    )
    return ["## Hyper-parameters", "", *table]


def render_training_cost(summary: Mapping[str, Any]) -> list[str]:
    """One row per run: device, steps, data, tokens, time and final loss; then the library versions."""
    runs, cost = summary["runs"], summary["training_cost"]
    lines = ["## Training cost", ""]
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
            "peak GPU memory GB",
            "precision",
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
                _fmt(cost[run].get("peak_gpu_memory_gb")),
                _fmt(cost[run].get("precision")),
                _fmt(cost[run]["final_loss"], 4),
            ]
            for run in runs
        ],
    )
    lines += [
        "",
        "Wall time: loading, training and saving the weights (adapter or whole model); tokens trained: "
        "non-padding tokens (prompt and answer) the training process passed through the model (after a resume, "
        "only those since the resume); "
        "final loss: the last logged training loss (mean token cross-entropy of the answer tokens, nats).",
    ]
    packages = sorted({name for run in runs for name in cost[run]["versions"]})
    if packages:
        lines += ["", "### Library versions", ""]
        lines += markdown_table(
            ["run", *packages], [[run, *(cost[run]["versions"].get(p, "") for p in packages)] for run in runs]
        )
    return lines


# summary.md, in this order.
SECTIONS: tuple[Callable[[Mapping[str, Any]], list[str]], ...] = (
    render_intro,
    render_headline,
    render_frontier,
    render_replicates,
    render_curve,
    render_spider,
    render_mmlu,
    render_hyperparameters,
    render_training_cost,
)


def render_summary(summary: Mapping[str, Any]) -> str:
    """summary.md: the sections of :data:`SECTIONS` that have something to say, a blank line apart."""
    blocks = [section(summary) for section in SECTIONS]
    return "\n\n".join("\n".join(block) for block in blocks if block) + "\n"
