"""Every headline number of the report, recomputed straight from the per-item CSV rows.

:func:`lora_tradeoff.report.build.write_report` refuses to write a report whose summary
(:mod:`lora_tradeoff.report.summary`) disagrees with :func:`recompute_from_items`
(:func:`headline_mismatches`). The recomputation reads the files again and shares no
code with the summary beyond reading a CSV. The frontier's verdicts and Pareto flags are
policies, not numbers: they are derived again from the recomputed changes with the policy's
own functions (:func:`lora_tradeoff.report.frontier.frontier_verdict`,
:func:`lora_tradeoff.report.frontier.pareto_optimal`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lora_tradeoff.report.frontier import frontier_verdict, pareto_optimal
from lora_tradeoff.report.inputs import BASELINE, read_mmlu_scored, read_spider_scored
from lora_tradeoff.stats import OVERALL


def recompute_headlines(
    results_dir: Path | str,
    models: Sequence[str] | None = None,
    mmlu_models: Sequence[str] | None = None,
    baseline: str = BASELINE,
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
        {m: root / m / "spider_scored.csv" for m in models},
        {m: root / m / "mmlu_scored.csv" for m in mmlu_models},
        baseline=baseline,
    )


def _paired_delta_points(base: pd.Series, other: pd.Series) -> float | None:
    """Mean of ``other - base`` over the ids both have a value for, in points (None: no such id)."""
    both = pd.concat([base.rename("base"), other.rename("other")], axis=1, join="inner").dropna()
    return float(100 * (both["other"].mean() - both["base"].mean())) if len(both) else None


def recompute_from_items(
    spider_scored: Mapping[str, Path | str], mmlu_scored: Mapping[str, Path | str], baseline: str | None = None
) -> dict[str, Any]:
    """The headline numbers from the per-item CSV files, independently of the summaries, in percent.

    ``{"spider": {model: {"ex_pct", "n", "n_scored", "success", "failure", "skipped",
    "by_hardness": {level: ex_pct}}}, "mmlu": {model: {"n", "accuracy_pct", "by_category":
    {category: accuracy_pct}, "by_subject": {subject: accuracy_pct}}}}``. EX is the mean score of
    the rows whose status is not "skipped".

    With a ``baseline`` that has both files, also ``"deltas": {model: {"delta_spider_ex_points",
    "delta_mmlu_overall_points", "delta_mmlu_points": {category: points}}}`` for every model with
    both files: Spider's change over the question ids scored (not skipped) for both, MMLU's over the
    ids both answered (the same suite), each the difference of the mean outcomes in points.
    """
    spider_rows = {model: read_spider_scored(path) for model, path in spider_scored.items()}
    mmlu_rows = {model: read_mmlu_scored(path) for model, path in mmlu_scored.items()}
    spider: dict[str, Any] = {}
    for model, rows in spider_rows.items():
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
    for model, rows in mmlu_rows.items():
        mmlu[model] = {
            "n": len(rows),
            "accuracy_pct": 100 * rows["correct"].mean(),
            "by_category": {str(c): 100 * g["correct"].mean() for c, g in rows.groupby("category", sort=False)},
            "by_subject": {str(s): 100 * g["correct"].mean() for s, g in rows.groupby("subject", sort=False)}
            if "subject" in rows
            else {},
        }
    recomputed: dict[str, Any] = {"spider": spider, "mmlu": mmlu}
    if baseline is not None and baseline in spider_scored and baseline in mmlu_scored:
        recomputed["deltas"] = _deltas(spider_rows, mmlu_rows, baseline)
    return recomputed


def _deltas(
    spider_rows: Mapping[str, pd.DataFrame], mmlu_rows: Mapping[str, pd.DataFrame], baseline: str
) -> dict[str, Any]:
    """Each model's paired changes against ``baseline``, from the item rows already read."""

    def spider_scores(rows: pd.DataFrame) -> pd.Series:
        return rows[rows["status"] != "skipped"].set_index("id")["score"]

    def mmlu_outcomes(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.set_index("id")[["category", "correct"]]

    base_ex, base_mmlu = spider_scores(spider_rows[baseline]), mmlu_outcomes(mmlu_rows[baseline])
    deltas: dict[str, Any] = {}
    for model in spider_rows.keys() & mmlu_rows.keys():
        ex, answers = spider_scores(spider_rows[model]), mmlu_outcomes(mmlu_rows[model])
        deltas[model] = {
            "delta_spider_ex_points": _paired_delta_points(base_ex, ex),
            "delta_mmlu_overall_points": _paired_delta_points(base_mmlu["correct"], answers["correct"]),
            "delta_mmlu_points": {
                str(category): _paired_delta_points(group["correct"], answers["correct"].reindex(group.index))
                for category, group in base_mmlu.groupby("category", sort=False)
            },
        }
    return deltas


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
    problems += _frontier_mismatches(summary.get("frontier") or [], recomputed.get("deltas"), check)
    return problems


def _frontier_mismatches(
    rows: Sequence[Mapping[str, Any]],
    deltas: Mapping[str, Any] | None,
    check: Callable[[str, Any, Any], None],
) -> list[str]:
    """Each frontier row's changes against the item rows' (``check`` records a difference); then its
    verdict and Pareto flag derived again from those changes. Returns the problems ``check`` cannot
    express (no recomputation; a verdict or flag that differs)."""
    if not rows:
        return []
    if deltas is None:
        return ["frontier: no changes recomputed from the item rows (recompute_from_items needs the baseline)"]
    problems = []
    recomputed_points = {}
    for row in rows:
        run = row["run"]
        if run not in deltas:
            problems.append(f"frontier {run}: no Spider and MMLU item rows to recompute it from")
            continue
        expected = deltas[run]
        for key in ("delta_spider_ex_points", "delta_mmlu_overall_points"):
            check(f"frontier {run} {key}", row[key], expected[key])
        for category, value in expected["delta_mmlu_points"].items():
            reported = row["mmlu_categories"].get(category, {}).get("delta_points")
            check(f"frontier {run} {category} delta_points", reported, value)
        recomputed_points[run] = (expected["delta_mmlu_overall_points"], expected["delta_spider_ex_points"])
        verdict = frontier_verdict(
            {
                **row,
                "delta_spider_ex_points": expected["delta_spider_ex_points"],
                "delta_mmlu_overall_points": expected["delta_mmlu_overall_points"],
            }
        )
        if row["verdict"] != verdict:
            problems.append(f"frontier {run} verdict: summary {row['verdict']!r} vs item rows {verdict!r}")
    optimal = pareto_optimal(recomputed_points)
    for row in rows:
        if row["run"] in recomputed_points and row["pareto_optimal"] != (row["run"] in optimal):
            problems.append(
                f"frontier {row['run']} pareto_optimal: summary {row['pareto_optimal']!r} vs item rows "
                f"{row['run'] in optimal!r}"
            )
    return problems
